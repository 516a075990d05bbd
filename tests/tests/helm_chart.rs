//! The Helm chart `helm/atplatform`, checked with Helm's own engine (PyPI `helm-python-sdk`,
//! which bundles Helm's Go SDK) and Kubernetes' API schemas (PyPI `kubernetes-validate`):
//! `tests/python/helm_check.py` lints the chart (`--strict`, Kubernetes 1.31), renders it with
//! every realistic set of values ([`SCENARIOS`]), validates every manifest strictly against
//! Kubernetes 1.31's schemas (custom resources, ServiceMonitor and cert-manager's Certificate and
//! Issuer, get a structural check of the fields the chart sets), checks that every option of the
//! generated `server.toml` and `directory.toml` is one the binaries know, asserts what each
//! scenario must contain, and renders values that must be refused. This test then reads the
//! rendered manifests it wrote and checks a few things again on the text.
//!
//! Not covered: installing into a cluster (no API server, no admission, no image), and the
//! custom resources against their real CRD schemas.
//!
//! Needs a Python with both packages, named by `AT_HELM_PYTHON`; fails when it is not set,
//! and is skipped (with a `SKIPPED` line `cargo test` shows) only when it is `skip`, never under
//! `CI=true` (see `at_tests::python_named_by`).

use std::path::Path;
use std::time::Duration;

use at_tests::TempDir;

/// The value sets `helm_check.py` renders: the defaults; an external Redis by URL and by Secret
/// (with its password from a Secret as a file); an external Redis Cluster by seed URLs (TLS,
/// password Secret) and by Secret; cert-manager with the cluster CA and with a public (ACME)
/// issuer; ServiceMonitor and Grafana dashboard; six fixed replicas; one replica; resources of
/// one's own; a Redis password given, and from a Secret; GitOps (existing Secrets, rendered
/// twice the same).
const SCENARIOS: [&str; 14] = [
    "default",
    "external-url",
    "external-secret",
    "redis-cluster",
    "redis-cluster-secret",
    "cert-manager",
    "cert-manager-public",
    "monitoring",
    "six-replicas",
    "one-replica",
    "resources",
    "redis-password",
    "redis-password-secret",
    "gitops",
];

/// The Python with `helm-python-sdk` and `kubernetes-validate`.
fn helm_python() -> Option<String> {
    at_tests::python_named_by(
        "AT_HELM_PYTHON",
        "a python with helm-python-sdk==0.2.2 and kubernetes-validate==1.37.0",
    )
}

/// The manifests of one rendered scenario, split at `---`, with their `# Source:` lines.
fn manifests(out: &Path, scenario: &str) -> Vec<String> {
    let text = std::fs::read_to_string(out.join(format!("{scenario}.yaml")))
        .unwrap_or_else(|e| panic!("{scenario}.yaml: {e}"));
    text.split("\n---\n")
        .map(str::to_string)
        .filter(|doc| doc.contains("kind: "))
        .collect()
}

/// The one manifest of `kind` named `name`.
fn find<'a>(docs: &'a [String], kind: &str, name: &str) -> &'a str {
    let matching: Vec<&String> = docs
        .iter()
        .filter(|doc| {
            doc.lines().any(|l| l == format!("kind: {kind}"))
                && doc.lines().any(|l| l == format!("  name: {name}"))
        })
        .collect();
    assert_eq!(matching.len(), 1, "{kind} {name}: {matching:?}");
    matching[0]
}

fn kinds(docs: &[String]) -> Vec<&str> {
    docs.iter()
        .filter_map(|doc| doc.lines().find_map(|l| l.strip_prefix("kind: ")))
        .collect()
}

#[test]
fn helm_chart_lints_renders_and_validates_against_kubernetes_schemas() {
    let Some(python) = helm_python() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("tests/python/helm_check.py");
    let out = TempDir::new("helm-chart");
    let root_arg = root.display().to_string();
    let out_arg = out.path().display().to_string();
    let (ok, stdout, stderr) = at_tests::run_python(
        &python,
        &script,
        &[&root_arg, &out_arg],
        &[],
        Duration::from_secs(300),
    );
    assert!(
        ok,
        "helm_check.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    for scenario in SCENARIOS {
        assert!(
            stdout.contains(&format!(
                "ok {scenario}: helm lint --strict clean (kube 1.31.0"
            )) && stdout.contains(&format!("ok {scenario}: no two manifests share")),
            "{scenario} not linted and validated:\n{stdout}"
        );
        // What every install must hold, asserted by helm_check.py in each scenario.
        for property in [
            "no container's command, arguments or probes carry the Redis password",
            "every pod carries checksum/config",
            "(at least both)",
            "replicas at the fewest",
        ] {
            let prefix = format!("ok {scenario}: ");
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with(&prefix) && l.contains(property)),
                "{scenario}: {property} not checked:\n{stdout}"
            );
        }
        let text = std::fs::read_to_string(out.path().join(format!("{scenario}.yaml"))).unwrap();
        assert!(
            !text.contains("--requirepass") && !text.contains("$(REDIS_PASSWORD)"),
            "{scenario}: a Redis password in arguments:\n{text}"
        );
    }
    assert!(
        stdout.contains("ok gitops: two renders are the same"),
        "{stdout}"
    );
    assert!(
        stdout.matches("ok refused ").count() >= 40,
        "bad values not all refused:\n{stdout}"
    );
    // A Redis Cluster: without seeds, with seeds but another mode, with URLs that would split
    // into others once joined by commas, or mixing TLS and plain, it is refused.
    for refusal in [
        "redis.mode is cluster: set redis.cluster.urls (seed URLs) or redis.cluster.existingSecret",
        "redis.cluster is for a Redis Cluster: set redis.mode to cluster",
        "'redis://h1:6379,redis://evil:1' does not match pattern",
        "redis.cluster.urls mixes rediss:// and redis:// URLs",
        "redis.tls needs rediss:// redis.cluster.urls",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok refused ") && l.contains(refusal)),
            "{refusal}: not refused:\n{stdout}"
        );
    }

    // Default values: Redis in a StatefulSet behind a NetworkPolicy, an HPA 2..10.
    let docs = manifests(out.path(), "default");
    let server = find(&docs, "Deployment", "rel-atplatform-server");
    let probe = |name: &str| {
        let start = server.find(&format!("          {name}:\n")).expect(name);
        let block: String = server[start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("            "))
            .collect::<Vec<_>>()
            .join("\n");
        block
    };
    let readiness = probe("readinessProbe");
    assert!(
        readiness.contains("httpGet:\n              path: /readyz\n              port: metrics"),
        "{readiness}"
    );
    let liveness = probe("livenessProbe");
    assert!(liveness.contains("path: /healthz"), "{liveness}");
    assert!(server.contains("containerPort: 9464"), "{server}");
    assert!(server.contains("readOnlyRootFilesystem: true"), "{server}");
    assert!(server.contains("runAsNonRoot: true"), "{server}");
    // The chart's Redis: no Redis URL or password in the environment; the password as a file.
    assert!(
        !server.contains("REDIS_URL") && !server.contains("REDIS_PASSWORD"),
        "{server}"
    );
    assert!(
        server.contains("- name: redis-auth\n              mountPath: /etc/atplatform/redis-auth"),
        "{server}"
    );
    let hpa = find(&docs, "HorizontalPodAutoscaler", "rel-atplatform-server");
    assert!(hpa.contains("apiVersion: autoscaling/v2"), "{hpa}");
    assert!(hpa.contains("minReplicas: 2\n  maxReplicas: 10"), "{hpa}");
    let pdb = find(&docs, "PodDisruptionBudget", "rel-atplatform-server");
    assert!(pdb.contains("apiVersion: policy/v1"), "{pdb}");
    let policy = find(&docs, "NetworkPolicy", "rel-atplatform-redis");
    assert!(
        policy.contains("  podSelector:\n    matchLabels:\n      app.kubernetes.io/name: atplatform\n      app.kubernetes.io/instance: rel\n      app.kubernetes.io/component: redis"),
        "{policy}"
    );
    assert!(
        policy.contains("values: [\"directory\", \"server\"]"),
        "{policy}"
    );
    let redis = find(&docs, "StatefulSet", "rel-atplatform-redis");
    assert!(
        redis.contains("- --appendonly\n            - \"yes\"\n"),
        "{redis}"
    );
    assert!(
        redis.contains("- --appendfsync\n            - \"always\"\n"),
        "{redis}"
    );
    assert!(redis.contains("volumeClaimTemplates:"), "{redis}");
    // The password reaches redis-server on its standard input, from a mounted file.
    assert!(
        redis.contains("exec redis-server - \"$@\" <<EOF")
            && redis.contains("requirepass \"$(cat /etc/redis-auth/password)\"")
            && !redis.contains("REDIS_PASSWORD")
            && !redis.contains("--requirepass"),
        "{redis}"
    );
    let config = find(&docs, "ConfigMap", "rel-atplatform-server");
    assert!(
        config.contains("    [store]\n    backend = \"redis\"\n")
            && config.contains("    [directory_store]\n    # provision registers")
            && config.contains(
                "    redis_url = \"redis://rel-atplatform-redis.atns.svc:6379/0\"\n    redis_password_file = \"/etc/atplatform/redis-auth/password\"\n"
            ),
        "{config}"
    );
    let notes = std::fs::read_to_string(out.path().join("default.yaml")).unwrap();
    assert!(
        notes.contains(
            "kubectl exec -n atns deploy/rel-atplatform-server -- at-server provision @alice"
        ),
        "NOTES.txt: {notes}"
    );
    // The directory is a ClusterIP by default: NOTES.txt says how to expose raw TLS.
    assert!(
        notes.contains("an Ingress cannot carry it")
            && notes.contains("set directory.service.type=LoadBalancer"),
        "NOTES.txt: {notes}"
    );
    let default_kinds = kinds(&docs);
    assert!(!default_kinds.contains(&"ServiceMonitor") && !default_kinds.contains(&"Certificate"));

    // An external Redis: no StatefulSet or NetworkPolicy; an HPA 3..7.
    let docs = manifests(out.path(), "external-url");
    let external_kinds = kinds(&docs);
    for kind in ["StatefulSet", "NetworkPolicy"] {
        assert!(
            !external_kinds.contains(&kind),
            "{kind} rendered: {external_kinds:?}"
        );
    }
    let hpa = find(&docs, "HorizontalPodAutoscaler", "rel-atplatform-server");
    assert!(hpa.contains("minReplicas: 3\n  maxReplicas: 7"), "{hpa}");

    // An external Redis Cluster: its seeds, comma-separated, from the chart's Secret into the
    // one variable per store the binaries read as a list; the password and the CA as files.
    let docs = manifests(out.path(), "redis-cluster");
    let cluster_kinds = kinds(&docs);
    assert!(
        !cluster_kinds.contains(&"StatefulSet") && !cluster_kinds.contains(&"NetworkPolicy"),
        "{cluster_kinds:?}"
    );
    let from_secret = |var: &str| {
        format!(
            "- name: {var}\n              valueFrom:\n                secretKeyRef:\n                  \
             name: rel-atplatform-redis\n                  key: redis-cluster\n"
        )
    };
    let server = find(&docs, "Deployment", "rel-atplatform-server");
    for var in [
        "AT_SERVER__STORE__REDIS_CLUSTER",
        "AT_SERVER__DIRECTORY_STORE__REDIS_CLUSTER",
    ] {
        assert!(server.contains(&from_secret(var)), "{var}: {server}");
    }
    assert!(!server.contains("REDIS_URL"), "{server}");
    let directory = find(&docs, "Deployment", "rel-atplatform-directory");
    assert!(
        directory.contains(&from_secret("AT_DIRECTORY__STORE__REDIS_CLUSTER")),
        "{directory}"
    );
    // helm_check.py decodes the Secret: the seeds, comma-separated, its only entry.
    assert!(
        stdout.contains("ok redis-cluster: the seed URLs, comma-separated, are the chart's Redis Secret's only entry")
            && stdout.contains("one comma-separated variable the binaries read as a list"),
        "{stdout}"
    );
    let config = find(&docs, "ConfigMap", "rel-atplatform-server");
    assert!(
        config.contains(
            "    redis_password_file = \"/etc/atplatform/redis-auth/password\"\n    \
             redis_ca_file = \"/etc/atplatform/redis-ca/ca.pem\"\n    \
             redis_wait_replicas = 1\n    redis_wait_timeout_ms = 500\n"
        ) && !config.contains("redis_cluster =")
            && !config.contains("redis_url ="),
        "{config}"
    );
    assert!(
        server.contains("secretName: cluster-pass") && server.contains("- key: pw\n"),
        "{server}"
    );
    // Seeds from a Secret of yours: its name and key, and no Secret of the chart's.
    let docs = manifests(out.path(), "redis-cluster-secret");
    let server = find(&docs, "Deployment", "rel-atplatform-server");
    assert!(
        server.contains("name: my-cluster\n                  key: seeds\n"),
        "{server}"
    );
    assert!(
        !docs
            .iter()
            .any(|d| d.contains("\nkind: Secret\n")
                && d.contains("\n  name: rel-atplatform-redis\n")),
        "a Redis Secret of the chart's"
    );

    // cert-manager: the CA and the serving certificates; no CA key in a serving pod.
    let docs = manifests(out.path(), "cert-manager");
    let cert_manager_kinds = kinds(&docs);
    for kind in ["Certificate", "Issuer"] {
        assert!(
            cert_manager_kinds.contains(&kind),
            "{kind} missing: {cert_manager_kinds:?}"
        );
    }
    for name in ["rel-atplatform-server", "rel-atplatform-directory"] {
        let deployment = find(&docs, "Deployment", name);
        assert!(!deployment.contains("ca-key.pem"), "{deployment}");
    }
    let monitor = find(
        &manifests(out.path(), "monitoring"),
        "ServiceMonitor",
        "rel-atplatform",
    )
    .to_string();
    assert!(
        monitor.contains("apiVersion: monitoring.coreos.com/v1"),
        "{monitor}"
    );

    // The Grafana dashboard: a ConfigMap the sidecar finds by its label, in its namespace.
    let docs = manifests(out.path(), "monitoring");
    let dashboard = find(&docs, "ConfigMap", "rel-atplatform-dashboard");
    assert!(
        dashboard.contains("  namespace: monitoring\n")
            && dashboard.contains("    grafana_dashboard: \"1\"\n")
            && dashboard.contains("\"uid\": \"${datasource}\"")
            && dashboard.contains("histogram_quantile("),
        "{dashboard}"
    );
    assert!(
        stdout.contains("ok monitoring: dashboard: all ")
            && stdout.contains("name only metrics the binaries register"),
        "dashboard queries not checked against the registered metrics:\n{stdout}"
    );

    // A public issuer: the serving certificates name public names only, from that issuer.
    let docs = manifests(out.path(), "cert-manager-public");
    for name in ["rel-atplatform-server-tls", "rel-atplatform-directory-tls"] {
        let certificate = find(&docs, "Certificate", name);
        assert!(
            certificate.contains("    kind: ClusterIssuer\n    name: letsencrypt-dns01")
                && !certificate.contains(".svc")
                && !certificate.contains("localhost"),
            "{certificate}"
        );
    }
    let config = find(&docs, "ConfigMap", "rel-atplatform-server");
    assert!(
        config.contains("directory = \"root.example.com:64\"") && !config.contains("ca_key_file"),
        "{config}"
    );

    // Fixed replicas: no HPA, and the Deployment says how many.
    let docs = manifests(out.path(), "six-replicas");
    assert!(!kinds(&docs).contains(&"HorizontalPodAutoscaler"));
    let server = find(&docs, "Deployment", "rel-atplatform-server");
    assert!(server.contains("\n  replicas: 6\n"), "{server}");

    // One replica: the PDB still lets a node drain.
    let docs = manifests(out.path(), "one-replica");
    let server = find(&docs, "Deployment", "rel-atplatform-server");
    assert!(server.contains("\n  replicas: 1\n"), "{server}");
    let pdb = find(&docs, "PodDisruptionBudget", "rel-atplatform-server");
    assert!(pdb.contains("  maxUnavailable: 1\n"), "{pdb}");

    // The CA Helm generates (ECDSA P-256, its key in SEC1) is one the binaries issue from: a
    // directory given it serves a certificate that verifies against it.
    let generated = out.path().join("generated-ca");
    let (ca, key) = (generated.join("ca.pem"), generated.join("ca-key.pem"));
    let data = TempDir::new("helm-generated-ca");
    let directory = at_tests::servers::directory_with_env(
        data.path(),
        None,
        false,
        &[
            ("AT_DIRECTORY__TLS__CA_FILE", &ca.display().to_string()),
            ("AT_DIRECTORY__TLS__CA_KEY_FILE", &key.display().to_string()),
        ],
    );
    let mut client = at_tests::client::Client::tls_named(directory.addr, &ca, "localhost");
    client.expect(b"@");
    directory.stop();
}
