"""Checks the Helm chart helm/atplatform with Helm's own engine and Kubernetes' schemas.

Usage: python helm_check.py REPO_ROOT OUT_DIR

Needs PyPI `helm-python-sdk` (Helm's Go SDK, bundled) and `kubernetes-validate` (the OpenAPI
schemas of each Kubernetes release). For each scenario below it:

- lints the chart with those values (`helm lint --strict --kube-version`): no warning, no error;
- renders it (offline, like `helm template`) and writes every manifest to OUT_DIR/<scenario>.yaml
  (the Rust test reads them);
- validates every manifest against Kubernetes KUBE_VERSION's schemas, strictly (unknown fields
  are errors). Custom resources (cert-manager Certificate/Issuer, Prometheus Operator
  ServiceMonitor) have no schema there: they get a small structural check of the fields this
  chart sets, written here;
- parses the generated server.toml and directory.toml and checks that every option is one the
  binaries know (the fields of ServerConfig, DirectoryConfig, StatusConfig, TlsConfig and
  StoreConfig in the Rust sources), with integers as integers;
- asserts the scenario's concrete expectations (probes, HPA bounds, NetworkPolicy, Secrets...).

Values that must be refused (schema violations, `fail` in templates) are rendered too and must
fail. Prints one `ok <what>` line per check and exits non-zero on the first failure.
"""

import base64
import json
import os
import re
import sys
import tomllib

import helm_python
import jsonschema
import kubernetes_validate
import yaml

KUBE_VERSION = "1.31.0"
# The image's user (deploy/Dockerfile `USER`), which the pods must run as.
IMAGE_USER = None
# The metrics the binaries register (registered_metrics), for the dashboard's queries.
METRICS = {}
# The values of the scenario being checked (with REQUIRED).
VALUES = {}
RELEASE = "rel"
NAMESPACE = "atns"
FULL = f"{RELEASE}-atplatform"

# Image digests the fixed scenario pins (made up: nothing is pulled).
DIGEST = "sha256:" + "ab" * 32
REDIS_DIGEST = "sha256:" + "cd" * 32

# Scenario name -> values.
# What every install must give (the chart has no default for it).
REQUIRED = {"server": {"sniDomain": "atservers.example.com"}}


def with_required(values):
    """`values` on top of REQUIRED (nested maps merged)."""
    def merge(base, over):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(
                out.get(key), dict) else value
        return out
    return merge(REQUIRED, values)


SCENARIOS = {
    "default": {},
    "custom": {
        "image": {"repository": "registry.example/at/atplatform", "tag": "1.2.3"},
        "redis": {"mode": "external", "externalUrl": "rediss://:pw@redis.example:6380/2",
                  "keyPrefix": "prod:",
                  "tls": {"caSecret": "redis-ca", "clientSecret": "redis-client"}},
        "certManager": {"enabled": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "networkPolicy": {"enabled": False},
        "server": {
            "sniDomain": "at.example.org",
            "publicHost": "lb.example.org",
            "service": {"type": "ClusterIP", "port": 443},
            "autoscaling": {"minReplicas": 3, "maxReplicas": 7,
                            "targetCPUUtilizationPercentage": 0,
                            "targetMemoryUtilizationPercentage": 80,
                            "targetConnectionsPerPod": 5000},
            "podDisruptionBudget": {"minAvailable": None, "maxUnavailable": 1},
            "shutdown": {"pauseSeconds": 5, "graceSeconds": 40},
            "settings": {"inbound_max_limit": 5000, "peer_client_certificate": "optional"},
            "extraEnv": [{"name": "AT_SERVER__KEYSTORE_IDLE_SECS", "value": "60"}],
        },
        "directory": {
            "replicas": 3,
            "host": "root.example.org",
            "service": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/8"],
                        "externalTrafficPolicy": "Local", "loadBalancerIP": "203.0.113.7",
                        "nodePort": 30064,
                        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}},
            "tlsNames": ["directory.example.org"],
        },
        "externalDns": {"enabled": True, "ttl": 60},
    },
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "grafanaDashboard": {"enabled": True, "namespace": "monitoring", "folder": "atProtocol",
                             "labels": {"team": "at"}},
    },
    "cert-manager-public": {
        "certManager": {"enabled": True,
                        "publicIssuerRef": {"name": "letsencrypt-dns01", "kind": "ClusterIssuer",
                                            "group": "cert-manager.io"}},
        "tls": {"extraCaSecret": "letsencrypt-staging-root"},
        "directory": {"host": "root.example.com", "service": {"type": "LoadBalancer"}},
        "externalDns": {"enabled": True},
    },
    "gitops": {
        "tls": {"existingSecret": "my-ca"},
        "redis": {"auth": {"existingSecret": "redis-pass", "existingSecretPasswordKey": "pw"}},
        "server": {"tls": {"existingSecret": "server-cert"}},
        "directory": {"tls": {"existingSecret": "directory-cert"}},
    },
    "fixed": {
        "tls": {"existingSecret": "my-ca"},
        "image": {"tag": "1.2.3", "digest": DIGEST},
        "redis": {"auth": {"enabled": False}, "persistence": {"storageClass": "fast"},
                  "image": {"digest": REDIS_DIGEST}},
        "server": {"autoscaling": {"enabled": False}, "replicas": 4,
                   "podDisruptionBudget": {"enabled": False}, "topologySpread": False,
                   "service": {"type": "NodePort", "port": 30464, "nodePort": 30464}},
        "directory": {"podDisruptionBudget": {"enabled": False},
                      "service": {"type": "NodePort"}},
        "externalDns": {"enabled": True},
        "serviceAccount": {"create": False},
    },
}

# The values of an install that gives nothing.
NOTHING = {}

# Values that must be refused, and a word the refusal must contain (each on top of REQUIRED
# but NOTHING).
REFUSED = [
    (NOTHING, "sniDomain"),
    ({"redis": {"mode": "cluster"}}, "mode"),
    ({"redis": {"mode": "external"}}, "externalUrl"),
    ({"server": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}, "minReplicas"),
    ({"server": {"settings": {"listen": "0.0.0.0:1"}}}, "listen"),
    ({"server": {"sniDomain": "bad domain"}}, "sniDomain"),
    ({"server": {"unknownOption": 1}}, "unknownOption"),
    ({"tls": {"caCert": "x"}}, "caKey"),
    ({"server": {"settings": {"shutdown_grace_millis": 1}}}, "shutdown_grace_millis"),
    ({"server": {"terminationGracePeriodSeconds": 30}}, "terminationGracePeriodSeconds"),
    ({"server": {"settings": {"inbound_max_limt": 5}}}, "inbound_max_limt"),
    ({"directory": {"settings": {"max_conections": 5}}}, "max_conections"),
    ({"grafanaDashboard": {"enabled": True, "uid": "x" * 41}}, "uid"),
    ({"directory": {"host": "root example"}}, "host"),
    ({"image": {"digest": "latest"}}, "digest"),
    ({"redis": {"image": {"digest": "sha256:123"}}}, "digest"),
    ({"directory": {"service": {"loadBalancerIP": "my-ip"}}}, "loadBalancerIP"),
    ({"certManager": {"publicIssuerRef": {"name": "le"}}}, "certManager.enabled"),
    ({"certManager": {"enabled": True, "publicIssuerRef": {"name": "le"}}}, "directory.host"),
    ({"certManager": {"enabled": True, "publicIssuerFor": ["redis"]}}, "publicIssuerFor"),
    ({"server": {"directoryAddress": "root.example.com"}}, "directoryAddress"),
    ({"redis": {"tls": {"caSecret": "x"}}}, "external"),
    ({"redis": {"mode": "external", "externalUrl": "redis://db:6379",
                "tls": {"caSecret": "x"}}}, "rediss://"),
]

# Custom resources: no schema in kubernetes-validate; these cover what the chart sets.
CRD_SCHEMAS = {
    ("cert-manager.io/v1", "Certificate"): {
        "type": "object",
        "required": ["spec"],
        "properties": {"spec": {
            "type": "object",
            "required": ["secretName", "issuerRef"],
            "additionalProperties": False,
            "properties": {
                "isCA": {"type": "boolean"},
                "commonName": {"type": "string", "maxLength": 64},
                "secretName": {"type": "string", "minLength": 1},
                "duration": {"type": "string", "pattern": "^([0-9]+(h|m|s))+$"},
                "renewBefore": {"type": "string", "pattern": "^([0-9]+(h|m|s))+$"},
                "privateKey": {"type": "object", "additionalProperties": False, "properties": {
                    "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                    "size": {"type": "integer"},
                    "encoding": {"enum": ["PKCS1", "PKCS8"]},
                    "rotationPolicy": {"enum": ["Never", "Always"]}}},
                "usages": {"type": "array", "items": {"type": "string"}},
                "dnsNames": {"type": "array", "minItems": 1,
                             "items": {"type": "string", "pattern": r"^(\*\.)?[a-z0-9.-]+$"}},
                "issuerRef": {"type": "object", "required": ["name"], "additionalProperties": False,
                              "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                             "group": {"type": "string"}}},
            }}},
    },
    ("cert-manager.io/v1", "Issuer"): {
        "type": "object",
        "required": ["spec"],
        "properties": {"spec": {"type": "object", "minProperties": 1, "maxProperties": 1}},
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["spec"],
        "properties": {"spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "properties": {
                    "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "namespaceSelector": {"type": "object", "properties": {
                    "matchNames": {"type": "array", "items": {"type": "string"}}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"}}}},
            }}},
    },
}
CRD_METADATA = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}


def ok(what):
    print(f"ok {what}", flush=True)


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    ok(what)


def struct_fields(source, struct):
    """The field names of `pub struct <struct> { ... }` in a Rust source file."""
    body = re.search(r"pub struct " + struct + r" \{(.*?)\n\}", source, re.S)
    assert body, f"struct {struct} not found"
    return set(re.findall(r"^\s*pub (\w+):", body.group(1), re.M))


def scalar_fields(source, struct):
    """The fields of a config struct that a chart `settings` map can set (not sections)."""
    body = re.search(r"pub struct " + struct + r" \{(.*?)\n\}", source, re.S)
    assert body, f"struct {struct} not found"
    sections = {"StoreConfig", "LogConfig", "TlsConfig", "StatusConfig"}
    return {name for name, kind in re.findall(r"^\s*pub (\w+): ([^,\n]+),", body.group(1), re.M)
            if kind.strip() not in sections}


def check_settings_schema(root, path):
    """The schema lists exactly the options the binaries know, so a typo in `settings` is
    refused by `helm install` instead of crash-looping the pod."""
    read = lambda p: open(os.path.join(root, p), encoding="utf-8").read()
    schema = json.load(open(os.path.join(path, "values.schema.json"), encoding="utf-8"))
    props = schema["properties"]
    for where, listed, source, struct in (
            ("server.settings", props["server"]["properties"]["settings"],
             "server/src/config.rs", "ServerConfig"),
            ("directory.settings", props["directory"]["properties"]["settings"],
             "directory/src/config.rs", "DirectoryConfig"),
            ("directory.status", props["directory"]["properties"]["status"],
             "directory/src/config.rs", "StatusConfig")):
        want = scalar_fields(read(source), struct)
        got = set(listed["propertyNames"]["enum"])
        check(got == want, f"schema: {where} lists the options of {struct} "
                           f"(missing {sorted(want - got)}, unknown {sorted(got - want)})")


# Labels a series gets from the scrape (Prometheus Operator's ServiceMonitor), beside its own.
SCRAPE_LABELS = {"namespace", "job", "pod", "instance", "service", "endpoint", "container"}
# What a dashboard's PromQL may name that is not a metric.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan"}


def registered_metrics(root):
    """Every metric name the binaries expose, from the registrations in their sources
    (`Opts::new("name", ..)`, `IntGauge::new("name", ..)`, `HistogramOpts::new(..)`...), with its
    label names: {exposed name: labels}. A histogram exposes name_bucket (with `le`), name_sum
    and name_count."""
    found = {}
    for crate in ("server", "directory", "common"):
        for base, _, files in os.walk(os.path.join(root, crate, "src")):
            for file in files:
                if not file.endswith(".rs"):
                    continue
                source = open(os.path.join(base, file), encoding="utf-8").read()
                for m in re.finditer(r'\b(HistogramOpts::new|Opts::new|opts|(?:Int)?(?:Gauge|Counter)'
                                     r'::new)\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"', source):
                    rest = source[m.end():]
                    rest = rest[:rest.find(".expect(")] if ".expect(" in rest else rest[:400]
                    labels = re.search(r"&\[([^\]]*)\]", rest)
                    labels = set(re.findall(r'"(\w+)"', labels.group(1))) if labels else set()
                    name = m.group(2)
                    if m.group(1) == "HistogramOpts::new":
                        found[name + "_bucket"] = labels | {"le"}
                        found[name + "_sum"] = labels
                        found[name + "_count"] = labels
                    else:
                        found[name] = labels
    return found


def promql_names(expr):
    """The metric names and the label names a PromQL expression uses."""
    labels = set()
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    for selector in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", selector))
    text = re.sub(r"\{[^}]*\}", " ", text)
    for grouping in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)",
                               text):
        labels |= set(re.findall(r"[a-zA-Z_]\w*", grouping))
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\$\w+", " ", text)  # dashboard variables
    names = {m.group(1) for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text)
             if not m.group(2) and m.group(1).lower() not in PROMQL_WORDS
             and not re.fullmatch(r"[0-9.e]+", m.group(1))}
    return names, labels


def check_dashboard(what, k, metrics, namespace):
    """The Grafana dashboard's ConfigMap: for the sidecar, and a dashboard whose every query names
    metrics the binaries export, with their labels."""
    cm = k[("ConfigMap", f"{FULL}-dashboard")]
    check(cm["metadata"]["namespace"] == namespace
          and cm["metadata"]["labels"]["grafana_dashboard"] == "1",
          f"{what}: dashboard ConfigMap in {namespace}, labelled grafana_dashboard: \"1\"")
    [(key, text)] = cm["data"].items()
    dashboard = json.loads(text)
    check(key.endswith(".json") and dashboard["uid"] and len(dashboard["uid"]) <= 40
          and NAMESPACE in dashboard["title"],
          f"{what}: the dashboard JSON parses, uid {dashboard['uid']} (at most 40 characters)")
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    check(len(ids) == len(set(ids)) and len(panels) >= 20,
          f"{what}: dashboard: {len(panels)} panels, each with its own id")
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert all(isinstance(g[a], int) for a in "xywh") and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']} overlaps another"
        cells |= mine
    ok(f"{what}: dashboard: every panel has a gridPos inside 24 columns, none overlapping")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    check(variables["datasource"]["type"] == "datasource"
          and variables["datasource"]["query"] == "prometheus"
          and variables["namespace"]["type"] == "query"
          and variables["namespace"]["current"]["value"] == NAMESPACE
          and {"server_job", "directory_job"} <= set(variables),
          f"{what}: dashboard variables: a Prometheus datasource, the namespace (this release's "
          f"first) and the jobs")
    exprs = []
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            assert 'namespace="$namespace"' in t["expr"], t["expr"]
            exprs.append((p["title"], t["expr"]))
    ok(f"{what}: dashboard: every panel queries ${{datasource}} in $namespace")
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${datasource}", v["name"]
            found = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", v["query"]["query"])
            exprs.append((f"variable {v['name']}", found.group(1)))
    used = set()
    for title, expr in exprs:
        names, labels = promql_names(expr)
        assert names, f"{title}: no metric in {expr}"
        unknown = names - set(metrics)
        assert not unknown, f"{title}: {sorted(unknown)} not registered by the binaries ({expr})"
        allowed = SCRAPE_LABELS.union(*(metrics[n] for n in names))
        assert labels <= allowed, f"{title}: labels {sorted(labels - allowed)} unknown in {expr}"
        for quantile in re.findall(r"histogram_quantile\(\s*[0-9.]+\s*,(.*)", expr):
            assert "_bucket" in quantile and re.search(r"by \([^)]*\ble\b", quantile), expr
        used |= names
    ok(f"{what}: dashboard: all {len(exprs)} queries name only metrics the binaries register "
       f"({len(used)} of {len(metrics)}), with their own labels; percentiles from _bucket by le")
    first = {"atserver_connections", "atserver_commands_total",
             "atserver_command_duration_seconds_bucket", "atserver_notifications_total",
             "atserver_notification_delivery_seconds_bucket", "atserver_peer_links",
             "atserver_store_errors_total", "atserver_redis_resubscriptions_total",
             "atdirectory_lookups_total", "atdirectory_lookup_duration_seconds_bucket"}
    check(first <= used, f"{what}: dashboard shows connections, commands, errors, latency, "
                         f"notifications, peers, store, Redis and directory lookups")


def known_options(root):
    read = lambda p: open(os.path.join(root, p), encoding="utf-8").read()
    common = read("common/src/config.rs")
    server = read("server/src/config.rs")
    directory = read("directory/src/config.rs")
    return {
        "server": struct_fields(server, "ServerConfig"),
        "directory": struct_fields(directory, "DirectoryConfig"),
        "status": struct_fields(directory, "StatusConfig"),
        "tls": struct_fields(common, "TlsConfig"),
        "store": struct_fields(common, "StoreConfig"),
    }


# Options the chart sets that the binaries are gaining in the same issue (the HTTP listener
# with /healthz and /readyz on the atServer): allowed even when the sources lack them yet.
PENDING = {"server": {"metrics_listen"}}


def check_options(toml_text, binary, options):
    config = tomllib.loads(toml_text)
    top = options[binary]
    for key, value in config.items():
        if isinstance(value, dict):
            section = {"directory_store": "store"}.get(key, key)
            assert key in top and section in options, f"{binary}: unknown section [{key}]"
            unknown = set(value) - options[section]
            assert not unknown, f"{binary}: unknown options in [{key}]: {unknown}"
        elif key not in top:
            assert key in PENDING.get(binary, set()), f"{binary}: unknown option {key}"
            print(f"note: {binary} option {key} is not in the sources yet (pending)")
        if isinstance(value, float):
            raise AssertionError(f"{binary}: {key} = {value} is a float")
    return config


def validate_manifest(doc, what):
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        jsonschema.validate(doc, CRD_SCHEMAS[key])
        jsonschema.validate(doc.get("metadata"), CRD_METADATA)
        return "crd"
    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    return "k8s"


def render(chart, values):
    chart.validate_schema(values)
    return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def lint(path, values, what):
    report = helm_python.lint(path, values, strict=True, namespace=NAMESPACE,
                              kube_version="v" + KUBE_VERSION)
    bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    check(not report.get("errors") and not bad, f"{what}: helm lint --strict clean "
          f"(kube {KUBE_VERSION}; {bad or report.get('errors') or 'info only'})")


def by_kind(docs):
    found = {}
    for doc in docs:
        found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


def container(deploy):
    return deploy["spec"]["template"]["spec"]["containers"][0]


def env_of(deploy):
    return {e["name"]: e for e in container(deploy).get("env", [])}


def redis_password_file(sts):
    """The Secret and key the chart's Redis reads its password from (a mounted file, fed to
    redis-server on its standard input), or None when it runs without one."""
    c = container(sts)
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    if "redis-auth" not in volumes:
        return None
    script = c["args"][0]
    assert c["command"] == ["sh", "-c"] and c["args"][1] == "redis-server", c
    assert script.startswith('exec redis-server - "$@" <<EOF\n') and \
        'requirepass "$(cat /etc/redis-auth/password)"\nEOF' in script, script
    assert {"name": "redis-auth", "mountPath": "/etc/redis-auth", "readOnly": True} in c[
        "volumeMounts"], c["volumeMounts"]
    secret = volumes["redis-auth"]["secret"]
    [item] = secret["items"]
    assert item["path"] == "password" and secret["defaultMode"] == 0o440, secret
    probes = (c["readinessProbe"]["exec"]["command"], c["livenessProbe"]["exec"]["command"])
    env = {e["name"]: e for e in c.get("env", [])}
    assert probes == (["redis-cli", "ping"],) * 2 and \
        env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == {
            "name": secret["secretName"], "key": item["key"]}, (probes, env)
    return secret["secretName"], item["key"]


def redis_password(k):
    """The Redis password this render knows (given, or generated into the chart's Secret)."""
    secret = k.get(("Secret", f"{FULL}-redis"))
    if secret and "password" in secret.get("data", {}):
        return base64.b64decode(secret["data"]["password"]).decode()
    return VALUES.get("redis", {}).get("auth", {}).get("password") or None


def check_no_secret_in_argv(what, k):
    """No container's command or arguments (what `ps` and /proc/<pid>/cmdline show) carry the
    Redis password, a reference to it, or a URL with a password; no plain env value holds it."""
    password = redis_password(k)
    pods = [doc for (kind, _), doc in k.items() if kind in ("Deployment", "StatefulSet")]
    for pod in pods:
        spec = pod["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            argv = " ".join(c.get("command", []) + c.get("args", []))
            probes = " ".join(" ".join(c.get(p, {}).get("exec", {}).get("command", []))
                              for p in ("readinessProbe", "livenessProbe", "startupProbe"))
            for text in (argv, probes):
                assert not password or password not in text, f"{c['name']}: password in argv"
                assert "REDIS_PASSWORD" not in text and "--requirepass" not in text \
                    and " -a " not in f" {text} " and not re.search(r"rediss?://[^@\s]*:[^@\s]*@", text), \
                    f"{c['name']}: a password in its arguments: {text}"
            for e in c.get("env", []):
                assert not password or password not in e.get("value", ""), f"{e['name']}: password"
    ok(f"{what}: no container's command, arguments or probes carry the Redis password "
       f"({'known' if password else 'none known'}) or a reference to it")


def check_redis_access(what, k, server, directory, server_toml, directory_toml):
    """How the directory and the nodes reach Redis. The chart's: its URL (no password) in the
    configuration and, with a password, store.redis_password_file naming the password Secret
    mounted as a file, nothing about Redis in the environment. An external one: its URL (which
    may hold a password) from a Secret through the environment, never in the configuration."""
    redis = VALUES.get("redis", {})
    external = redis.get("mode") == "external"
    auth = redis.get("auth", {}).get("enabled", True)
    stores = (("server", server, "AT_SERVER__STORE__REDIS_URL", server_toml["store"]),
              ("server", server, "AT_SERVER__DIRECTORY_STORE__REDIS_URL",
               server_toml["directory_store"]),
              ("directory", directory, "AT_DIRECTORY__STORE__REDIS_URL", directory_toml["store"]))
    for name, deploy, var, store in stores:
        env = env_of(deploy)
        assert store["backend"] == "redis", store
        assert "REDIS_PASSWORD" not in env, env
        volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in container(deploy)["volumeMounts"]}
        if external:
            url = VALUES["redis"].get("existingSecret") or f"{FULL}-redis"
            key = VALUES["redis"].get("existingSecretKey", "redis-url") if VALUES["redis"].get(
                "existingSecret") else "redis-url"
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": url, "key": key}, env[var]
            assert "redis_url" not in store and "redis_password_file" not in store, store
            assert "redis-auth" not in volumes, volumes
        else:
            assert var not in env, env
            assert store["redis_url"] == f"redis://{FULL}-redis.{NAMESPACE}.svc:6379/0", store
            if auth:
                ref = redis_password_file(k[("StatefulSet", f"{FULL}-redis")])
                assert store["redis_password_file"] == "/etc/atplatform/redis-auth/password"
                assert mounts["redis-auth"] == "/etc/atplatform/redis-auth", mounts
                secret = volumes["redis-auth"]["secret"]
                assert (secret["secretName"], secret["items"][0]["key"]) == ref, (secret, ref)
                assert secret["items"][0]["path"] == "password", secret
            else:
                assert "redis_password_file" not in store and "redis-auth" not in volumes
    how = ("its URL from a Secret in the environment" if external else
           "its URL (no password) in the config, the password from the Secret as a file "
           "(store.redis_password_file)" if auth else "its URL in the config, no password")
    ok(f"{what}: the directory and the nodes reach Redis by {how}")


def common_checks(what, k, options):
    server = k[("Deployment", f"{FULL}-server")]
    directory = k[("Deployment", f"{FULL}-directory")]
    for name, deploy in (("server", server), ("directory", directory)):
        c = container(deploy)
        sc = c["securityContext"]
        pod_sc = deploy["spec"]["template"]["spec"]["securityContext"]
        check(sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
              and sc["capabilities"]["drop"] == ["ALL"] and not sc["allowPrivilegeEscalation"]
              and pod_sc["runAsNonRoot"] and pod_sc["runAsUser"] == IMAGE_USER,
              f"{what}: {name} runs as the image's non-root user, read-only root, no capabilities")
        startup = c["startupProbe"]
        check(startup["httpGet"]["path"] == "/healthz"
              and startup["periodSeconds"] * startup["failureThreshold"] >= 300,
              f"{what}: {name} has 5 minutes to start before liveness applies")
        probes = (c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"])
        check(probes[0]["path"] == "/readyz" and probes[1]["path"] == "/healthz"
              and probes[0]["port"] == "metrics"
              and any(p["name"] == "metrics" and p["containerPort"] == 9464 for p in c["ports"]),
              f"{what}: {name} readiness GET /readyz, liveness GET /healthz on port 9464")
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        check(mounts.get("cluster-ca") == "/etc/atplatform/ca" and mounts.get("data") == "/data",
              f"{what}: {name} mounts the cluster CA and a writable /data")
    env = env_of(server)
    pods = [server, directory] + [doc for (kind, _), doc in k.items() if kind == "StatefulSet"]
    check_no_secret_in_argv(what, k)
    check(all(len(pod["spec"]["template"]["metadata"]["annotations"]
                  .get("checksum/redis-secret", "")) == 64 for pod in pods),
          f"{what}: every pod restarts when the Redis Secret changes (checksum/redis-secret)")
    check(env["AT_SERVER_CONFIG"]["value"] == "/etc/atplatform/server.toml",
          f"{what}: AT_SERVER_CONFIG set, so `kubectl exec ... at-server provision` finds it")
    server_toml = check_options(k[("ConfigMap", f"{FULL}-server")]["data"]["server.toml"],
                                "server", options)
    directory_toml = check_options(
        k[("ConfigMap", f"{FULL}-directory")]["data"]["directory.toml"], "directory", options)
    check_redis_access(what, k, server, directory, server_toml, directory_toml)
    check(directory_toml["store"]["backend"] == "redis",
          f"{what}: directory.toml: [store] on redis")
    leaf = {"cert_file": "/etc/atplatform/tls/cert.pem", "key_file": "/etc/atplatform/tls/key.pem"}
    trusted = ["/etc/atplatform/ca/ca.pem"] + (
        ["/etc/atplatform/extra-ca/ca.pem"] if VALUES.get("tls", {}).get("extraCaSecret") else [])
    for name, deploy, toml in (("server", server, server_toml),
                               ("directory", directory, directory_toml)):
        source = cert_source(VALUES, name)
        volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in container(deploy)["volumeMounts"]}
        paths = [i["path"] for i in volumes["cluster-ca"]["secret"]["items"]]
        secret_paths = {v["secret"]["secretName"]: [i["path"] for i in v["secret"].get("items", [])]
                        for v in volumes.values() if "secret" in v}
        if source == "self":
            check(toml["tls"] == {"ca_file": "/etc/atplatform/ca/ca.pem",
                                  "ca_key_file": "/etc/atplatform/ca/ca-key.pem",
                                  **({"self_signed_names": toml["tls"]["self_signed_names"]}
                                     if name == "directory" else {})}
                  and paths == ["ca.pem", "ca-key.pem"] and "tls" not in volumes,
                  f"{what}: {name} issues its certificate from the cluster CA (mounts its key)")
        else:
            secret = (VALUES[name]["tls"]["existingSecret"] if source == "secret"
                      else f"{FULL}-{name}-tls")
            check(toml["tls"] == leaf and paths == ["ca.pem"]
                  and not any("ca-key.pem" in p for p in secret_paths.values())
                  and volumes["tls"]["secret"]["secretName"] == secret
                  and [i["key"] for i in volumes["tls"]["secret"]["items"]] == ["tls.crt", "tls.key"]
                  and mounts["tls"] == "/etc/atplatform/tls",
                  f"{what}: {name} serves its certificate from the Secret {secret} ({source}); "
                  f"no CA key in the pod")
        check([mounts.get(v) for v in ("cluster-ca", "extra-ca")][:len(trusted)]
              == ["/etc/atplatform/ca", "/etc/atplatform/extra-ca"][:len(trusted)],
              f"{what}: {name} mounts the CA files it trusts: {trusted}")
    check(server_toml["peer_ca_files"][:len(trusted)] == trusted
          and server_toml["directory_ca_file"] == "/etc/atplatform/ca/ca.pem"
          and directory_toml["status"]["ca_files"] == trusted,
          f"{what}: the cluster CA (and tls.extraCaSecret) trusted for peers, the directory and "
          f"status checks")
    if cert_source(VALUES, "directory") == "public":
        directory_at = f"{VALUES['directory']['host']}:64"
    else:
        directory_at = f"{FULL}-directory.{NAMESPACE}.svc:64"
    check(server_toml["directory"] == directory_at,
          f"{what}: server.toml: directory is {directory_at}")
    if cert_source(VALUES, "directory") == "self":
        check(f"{FULL}-directory.{NAMESPACE}.svc" in directory_toml["tls"]["self_signed_names"],
              f"{what}: directory.toml: its certificate names its Service")
    check(server_toml["authenticated_idle_time_millis"] == 2592000000,
          f"{what}: server.toml: large integers stay integers")
    lookup = k[("Service", f"{FULL}-directory")]["spec"]["ports"]
    check([(p["port"], p["targetPort"]) for p in lookup] == [(64, "lookup")],
          f"{what}: directory Service serves port 64 only")
    return server, server_toml


def cert_source(values, component):
    """Where a component's serving certificate comes from, as the chart decides it: its own
    Secret, cert-manager's public issuer, cert-manager's CA issuer, or issued in the pod."""
    if values.get(component, {}).get("tls", {}).get("existingSecret"):
        return "secret"
    cm = values.get("certManager", {})
    if cm.get("enabled") and cm.get("publicIssuerRef") and component in cm.get(
            "publicIssuerFor", ["server", "directory"]):
        return "public"
    return "cluster" if cm.get("enabled") else "self"


def shutdown_checks(what, k, server, pause, grace):
    """The pod's grace period covers the node's pause and drain, which server.toml sets."""
    server_toml = tomllib.loads(k[("ConfigMap", f"{FULL}-server")]["data"]["server.toml"])
    check(server_toml["shutdown_pause_millis"] == pause * 1000
          and server_toml["shutdown_grace_millis"] == grace * 1000
          and server["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
          == pause + grace + 5,
          f"{what}: shutdown pause {pause} s + drain {grace} s, pod grace period {pause + grace + 5} s")


def scenario_default(k, options):
    what = "default"
    server, _ = common_checks(what, k, options)
    check("replicas" not in server["spec"], f"{what}: server replicas left to the HPA")
    hpa = k[("HorizontalPodAutoscaler", f"{FULL}-server")]
    check((hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
          and hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu",
          f"{what}: HPA 2..10 replicas on CPU")
    check(hpa["spec"]["behavior"]["scaleDown"]["policies"] == [
        {"type": "Pods", "value": 1, "periodSeconds": 300}]
          and hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600,
          f"{what}: HPA scales down one pod per 5 minutes after 10 quiet minutes")
    check(k[("PodDisruptionBudget", f"{FULL}-server")]["spec"] == {
        "maxUnavailable": 1, "selector": server["spec"]["selector"]},
        f"{what}: server PDB maxUnavailable 1 (never blocks a drain)")
    shutdown_checks(what, k, server, pause=10, grace=20)
    default_toml = tomllib.loads(k[("ConfigMap", f"{FULL}-server")]["data"]["server.toml"])
    check(not any(key.startswith(("redis_ca", "redis_client")) for key in default_toml["store"])
          and not any(v["name"] in ("redis-ca", "redis-client")
                      for v in server["spec"]["template"]["spec"]["volumes"]),
          f"{what}: no Redis TLS files by default")
    for component in ("server", "directory"):
        deploy = k[("Deployment", f"{FULL}-{component}")]
        spread = deploy["spec"]["template"]["spec"]["topologySpreadConstraints"]
        selector = deploy["spec"]["selector"]["matchLabels"]
        check([c["topologyKey"] for c in spread]
              == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
              and all(c["whenUnsatisfiable"] == "ScheduleAnyway" and c["maxSkew"] == 1
                      and c["labelSelector"]["matchLabels"] == selector for c in spread),
              f"{what}: {component} spread softly over zones then nodes, by its own selector")
    check(k[("Service", f"{FULL}-server")]["spec"]["type"] == "LoadBalancer"
          and k[("Service", f"{FULL}-server")]["spec"]["ports"][0]["port"] == 6464,
          f"{what}: server Service is a LoadBalancer on 6464")
    sts = k[("StatefulSet", f"{FULL}-redis")]
    args = container(sts)["args"]
    check(args[args.index("--appendonly") + 1] == "yes"
          and args[args.index("--appendfsync") + 1] == "always"
          and redis_password_file(sts) == (f"{FULL}-redis", "password"),
          f"{what}: Redis appendonly yes, appendfsync always, password required")
    check(sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
          == "8Gi", f"{what}: Redis PVC from volumeClaimTemplates")
    check(k[("Service", f"{FULL}-redis")]["spec"]["type"] == "ClusterIP"
          and "clusterIP" not in k[("Service", f"{FULL}-redis")]["spec"]
          and k[("Service", f"{FULL}-redis-headless")]["spec"]["clusterIP"] == "None"
          and sts["spec"]["serviceName"] == f"{FULL}-redis-headless",
          f"{what}: Redis reached through a ClusterIP Service; the StatefulSet's is headless")
    redis = container(sts)
    check(args[args.index("--maxmemory") + 1] == "640mb"
          and args[args.index("--maxmemory-policy") + 1] == "noeviction"
          and redis["resources"]["requests"]["memory"] == redis["resources"]["limits"]["memory"]
          and redis["livenessProbe"]["exec"]["command"] == ["redis-cli", "ping"],
          f"{what}: Redis bounded (maxmemory, noeviction), memory request = limit, "
          f"liveness asks redis-cli ping")
    secret = k[("Secret", f"{FULL}-redis")]["data"]
    url = base64.b64decode(secret["redis-url"]).decode()
    password = base64.b64decode(secret["password"]).decode()
    check(url == f"redis://:{password}@{FULL}-redis.{NAMESPACE}.svc:6379/0" and len(password) == 32,
          f"{what}: Redis URL Secret carries the generated password")
    policy = k[("NetworkPolicy", f"{FULL}-redis")]["spec"]
    redis_labels = sts["spec"]["template"]["metadata"]["labels"]
    check(all(redis_labels.get(l) == v for l, v in policy["podSelector"]["matchLabels"].items())
          and policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis",
          f"{what}: NetworkPolicy selects the Redis pods")
    peer = policy["ingress"][0]["from"][0]["podSelector"]
    check(len(policy["ingress"]) == 1 and len(policy["ingress"][0]["from"]) == 1
          and peer["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
          and peer["matchExpressions"] == [{"key": "app.kubernetes.io/component",
                                            "operator": "In", "values": ["directory", "server"]}],
          f"{what}: NetworkPolicy lets in only this release's directory and server pods")
    ca = k[("Secret", f"{FULL}-ca")]["data"]
    key_pem = base64.b64decode(ca["ca-key.pem"]).decode()
    key_der = base64.b64decode("".join(key_pem.strip().splitlines()[1:-1]))
    # PKCS#8 of an Ed25519 key: SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, ... }. Not
    # ECDSA: Helm writes that as SEC1 ("EC PRIVATE KEY"), which the binaries' CA loader refuses.
    check(key_pem.startswith("-----BEGIN PRIVATE KEY-----")
          and key_der.startswith(bytes.fromhex("302e020100300506032b6570"))
          and base64.b64decode(ca["ca.pem"]).startswith(b"-----BEGIN CERTIFICATE-----"),
          f"{what}: generated cluster CA Secret (an Ed25519 key in PKCS#8, which the binaries read)")
    notes = k[("NOTES", "txt")]
    check("Point a wildcard DNS record *.atservers.example.com at the load balancer" in notes
          and "not reachable from outside the cluster" in notes
          and "an Ingress cannot carry it" in notes
          and "set directory.service.type=LoadBalancer" in notes
          and "kubectl port-forward -n atns svc/rel-atplatform-directory 6464:64" in notes
          and "rel-atplatform-directory.atns.svc:64" in notes,
          f"{what}: NOTES: wildcard DNS at the servers' load balancer; the ClusterIP directory "
          f"is in-cluster only (no Ingress for raw TLS: LoadBalancer or TCP passthrough)")
    check(not any(kind in ("ServiceMonitor", "Certificate") for kind, _ in k)
          and ("ConfigMap", f"{FULL}-dashboard") not in k,
          f"{what}: no ServiceMonitor, Certificate or dashboard by default")


def scenario_custom(k, options):
    what = "custom"
    server, server_toml = common_checks(what, k, options)
    check(container(server)["image"] == "registry.example/at/atplatform:1.2.3",
          f"{what}: image repository and tag")
    hpa = k[("HorizontalPodAutoscaler", f"{FULL}-server")]["spec"]
    check((hpa["minReplicas"], hpa["maxReplicas"]) == (3, 7)
          and [m["type"] for m in hpa["metrics"]] == ["Resource", "Pods"]
          and hpa["metrics"][0]["resource"]["name"] == "memory"
          and hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
          and hpa["metrics"][1]["pods"] == {"metric": {"name": "atserver_connections"},
                                            "target": {"type": "AverageValue",
                                                       "averageValue": "5000"}},
          f"{what}: HPA 3..7 replicas on memory 80% and 5000 connections per pod")
    check(k[("PodDisruptionBudget", f"{FULL}-server")]["spec"] == {
        "maxUnavailable": 1, "selector": server["spec"]["selector"]},
        f"{what}: server PDB maxUnavailable 1")
    shutdown_checks(what, k, server, pause=5, grace=40)
    redis_files = {"redis_ca_file": "/etc/atplatform/redis-ca/ca.pem",
                   "redis_client_cert_file": "/etc/atplatform/redis-client/cert.pem",
                   "redis_client_key_file": "/etc/atplatform/redis-client/key.pem"}
    directory_toml = tomllib.loads(
        k[("ConfigMap", f"{FULL}-directory")]["data"]["directory.toml"])
    check(all(server_toml[section].get(key) == path
              for section in ("store", "directory_store") for key, path in redis_files.items())
          and all(directory_toml["store"].get(key) == path for key, path in redis_files.items()),
          f"{what}: rediss:// with the Redis CA and client certificate files in both configs")
    for component in ("server", "directory"):
        deploy = k[("Deployment", f"{FULL}-{component}")]
        volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in container(deploy)["volumeMounts"]}
        check(volumes["redis-ca"]["secret"]["secretName"] == "redis-ca"
              and volumes["redis-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.pem"}]
              and volumes["redis-client"]["secret"]["secretName"] == "redis-client"
              and mounts["redis-ca"] == "/etc/atplatform/redis-ca"
              and mounts["redis-client"] == "/etc/atplatform/redis-client",
              f"{what}: {component} mounts the Redis CA and client certificate Secrets")
    check(not any(kind in ("StatefulSet", "NetworkPolicy") for kind, _ in k),
          f"{what}: external Redis: no StatefulSet, no NetworkPolicy")
    check(base64.b64decode(k[("Secret", f"{FULL}-redis")]["data"]["redis-url"]).decode()
          == "rediss://:pw@redis.example:6380/2", f"{what}: external Redis URL in its Secret")
    check(server_toml["store"]["key_prefix"] == "prod:" and server_toml["sni_domain"]
          == "at.example.org" and server_toml["public_host"] == "lb.example.org"
          and server_toml["public_port"] == 443 and server_toml["inbound_max_limit"] == 5000
          and server_toml["peer_client_certificate"] == "optional",
          f"{what}: server.toml follows the values")
    cert = k[("Certificate", f"{FULL}-ca")]["spec"]
    check(cert["isCA"] and cert["privateKey"]["encoding"] == "PKCS8"
          and cert["issuerRef"]["name"] == f"{FULL}-selfsigned"
          and ("Issuer", f"{FULL}-selfsigned") in k
          and ("Secret", f"{FULL}-ca") not in k, f"{what}: cert-manager makes the CA")
    items = server["spec"]["template"]["spec"]["volumes"]
    ca_volume = next(v for v in items if v["name"] == "cluster-ca")["secret"]
    check(ca_volume["secretName"] == cert["secretName"]
          and {i["key"]: i["path"] for i in ca_volume["items"]} == {"tls.crt": "ca.pem"},
          f"{what}: cert-manager's CA certificate mounted as ca.pem, its key nowhere")
    issuer = k[("Issuer", f"{FULL}-ca-issuer")]["spec"]
    leaf = k[("Certificate", f"{FULL}-server-tls")]["spec"]
    check(issuer == {"ca": {"secretName": cert["secretName"]}}
          and leaf["issuerRef"]["name"] == f"{FULL}-ca-issuer"
          and leaf["dnsNames"][:2] == ["*.at.example.org", "at.example.org"]
          and "lb.example.org" in leaf["dnsNames"]
          and leaf["usages"] == ["digital signature", "server auth", "client auth"]
          and leaf["privateKey"]["encoding"] == "PKCS8",
          f"{what}: cert-manager issues the nodes' wildcard certificate from the cluster CA")
    directory_leaf = k[("Certificate", f"{FULL}-directory-tls")]["spec"]
    check("root.example.org" in directory_leaf["dnsNames"]
          and f"{FULL}-directory.{NAMESPACE}.svc" in directory_leaf["dnsNames"],
          f"{what}: and the directory's, for its Service and directory.tlsNames")
    monitor = k[("ServiceMonitor", FULL)]
    selected = [name for (kind, name), doc in k.items() if kind == "Service" and all(
        doc["metadata"]["labels"].get(l) == v
        for l, v in monitor["spec"]["selector"]["matchLabels"].items())]
    check(sorted(selected) == [f"{FULL}-directory-http", f"{FULL}-server-http"]
          and monitor["metadata"]["labels"]["release"] == "prometheus",
          f"{what}: ServiceMonitor scrapes the two metrics Services")
    service = k[("Service", f"{FULL}-directory")]
    directory = service["spec"]
    check(directory["type"] == "LoadBalancer" and directory["externalTrafficPolicy"] == "Local"
          and directory["loadBalancerSourceRanges"] == ["10.0.0.0/8"]
          and directory["loadBalancerIP"] == "203.0.113.7"
          and directory["ports"][0]["nodePort"] == 30064,
          f"{what}: directory Service as a LoadBalancer (reserved address, source ranges, node port)")
    check(service["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
        "external-dns.alpha.kubernetes.io/hostname": "root.example.org",
        "external-dns.alpha.kubernetes.io/ttl": "60"}
          and "annotations" not in k[("Service", f"{FULL}-server")]["metadata"],
          f"{what}: external-dns names directory.host on the directory's LoadBalancer (not on a "
          f"ClusterIP Service), beside its own annotations")
    check(directory_leaf["dnsNames"][0] == "root.example.org"
          and "directory.example.org" in directory_leaf["dnsNames"],
          f"{what}: directory.host first on the directory's certificate, then tlsNames")
    notes = k[("NOTES", "txt")]
    check("Point the SDKs at root.example.org:64" in notes
          and "kubectl get svc -n atns rel-atplatform-directory -o jsonpath='{.status.loadBalancer"
          in notes and "external-dns makes it" in notes
          and "reachable inside the cluster only" in notes and "TCP passthrough" in notes,
          f"{what}: NOTES: DNS for directory.host at the directory's load balancer, SDKs at "
          f"host:64; the ClusterIP atServers need a TCP passthrough")


def scenario_monitoring(k, options):
    what = "monitoring"
    common_checks(what, k, options)
    monitor = k[("ServiceMonitor", FULL)]
    selected = [name for (kind, name), doc in k.items() if kind == "Service" and all(
        doc["metadata"]["labels"].get(l) == v
        for l, v in monitor["spec"]["selector"]["matchLabels"].items())]
    check(sorted(selected) == [f"{FULL}-directory-http", f"{FULL}-server-http"]
          and monitor["metadata"]["labels"]["release"] == "prometheus",
          f"{what}: ServiceMonitor scrapes the two metrics Services")
    check_dashboard(what, k, METRICS, "monitoring")
    cm = k[("ConfigMap", f"{FULL}-dashboard")]["metadata"]
    check(cm["annotations"] == {"grafana_folder": "atProtocol"} and cm["labels"]["team"] == "at",
          f"{what}: dashboard in the Grafana folder atProtocol (annotation), extra labels")


def scenario_cert_manager_public(k, options):
    what = "cert-manager-public"
    server, server_toml = common_checks(what, k, options)
    issuer = {"name": "letsencrypt-dns01", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    leaf = k[("Certificate", f"{FULL}-server-tls")]["spec"]
    directory_leaf = k[("Certificate", f"{FULL}-directory-tls")]["spec"]
    check(leaf["issuerRef"] == issuer and directory_leaf["issuerRef"] == issuer
          and leaf["dnsNames"] == ["*.atservers.example.com", "atservers.example.com"]
          and directory_leaf["dnsNames"] == ["root.example.com"]
          and "duration" not in leaf and leaf["privateKey"]["encoding"] == "PKCS8",
          f"{what}: the public issuer issues the nodes' wildcard and the directory's certificate, "
          f"for public names only (no .svc, no localhost: an ACME CA could not verify them)")
    check(k[("Certificate", f"{FULL}-ca")]["spec"]["isCA"]
          and k[("Issuer", f"{FULL}-ca-issuer")]["spec"]["ca"]["secretName"] == f"{FULL}-ca",
          f"{what}: the cluster CA stays, trusted for peers beside the system's roots")
    check(server_toml["directory"] == "root.example.com:64",
          f"{what}: the nodes reach the directory by directory.host, the name on its certificate")
    volumes = {v["name"]: v["secret"] for v in server["spec"]["template"]["spec"]["volumes"]
               if "secret" in v}
    check(volumes["extra-ca"]["secretName"] == "letsencrypt-staging-root"
          and volumes["extra-ca"]["items"] == [{"key": "ca.crt", "path": "ca.pem"}],
          f"{what}: tls.extraCaSecret mounted and trusted (a public root not in the system's)")
    notes = k[("NOTES", "txt")]
    check("The server certificate is publicly trusted" in notes
          and "The directory certificate is publicly trusted" in notes
          and "base64 -d > ca.pem" not in notes
          and "Point the SDKs at root.example.com:64" in notes,
          f"{what}: NOTES: clients need no CA file; SDKs at root.example.com:64")
    annotations = k[("Service", f"{FULL}-directory")]["metadata"]["annotations"]
    check(annotations == {"external-dns.alpha.kubernetes.io/hostname": "root.example.com"}
          and k[("Service", f"{FULL}-server")]["metadata"]["annotations"]
          == {"external-dns.alpha.kubernetes.io/hostname": "*.atservers.example.com"},
          f"{what}: external-dns makes root.example.com and *.atservers.example.com")


def scenario_gitops(k, options):
    what = "gitops"
    server, _ = common_checks(what, k, options)
    check(not any(kind in ("Certificate", "Issuer") for kind, _ in k),
          f"{what}: the nodes' and the directory's certificates are your Secrets, used as they are")
    notes = k[("NOTES", "txt")]
    check("The server certificate is yours (server.tls.existingSecret)" in notes
          and "base64 -d > ca.pem" not in notes, f"{what}: NOTES: clients trust your issuer")
    check(not any(kind == "Secret" for kind, _ in k),
          f"{what}: nothing generated: no Secret rendered (CA and Redis password are yours)")
    volumes = {v["name"]: v for v in server["spec"]["template"]["spec"]["volumes"]}
    check(volumes["redis-auth"]["secret"]["secretName"] == "redis-pass"
          and volumes["redis-auth"]["secret"]["items"] == [{"key": "pw", "path": "password"}],
          f"{what}: the nodes read the Redis password from your Secret, as a file")
    sts = k[("StatefulSet", f"{FULL}-redis")]
    redis_env = {e["name"]: e for e in container(sts)["env"]}
    check(redis_env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == {"name": "redis-pass", "key": "pw"}
          and redis_password_file(sts) == ("redis-pass", "pw"),
          f"{what}: Redis takes its password from the same Secret (a file; REDISCLI_AUTH)")


def scenario_fixed(k, options):
    what = "fixed"
    server, server_toml = common_checks(what, k, options)
    check(server["spec"]["replicas"] == 4 and not any(
        kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceAccount")
        for kind, _ in k), f"{what}: 4 fixed replicas, no HPA, PDB or ServiceAccount")
    check("topologySpreadConstraints" not in server["spec"]["template"]["spec"],
          f"{what}: no topology spread when turned off")
    volumes = server["spec"]["template"]["spec"]["volumes"]
    check(next(v for v in volumes if v["name"] == "cluster-ca")["secret"]["secretName"] == "my-ca"
          and ("Secret", f"{FULL}-ca") not in k, f"{what}: the existing CA Secret is mounted")
    sts = k[("StatefulSet", f"{FULL}-redis")]
    check(all(container(k[("Deployment", f"{FULL}-{c}")])["image"] == f"atplatform@{DIGEST}"
              for c in ("server", "directory"))
          and container(sts)["image"] == f"docker.io/library/redis@{REDIS_DIGEST}",
          f"{what}: images pinned by digest (image.digest, redis.image.digest): repository@digest")
    server_service = k[("Service", f"{FULL}-server")]
    check(server_service["spec"]["type"] == "NodePort"
          and server_service["spec"]["ports"][0]["nodePort"] == 30464
          and server_toml["public_port"] == 30464
          and server_service["metadata"]["annotations"] == {
              "external-dns.alpha.kubernetes.io/hostname": "*.atservers.example.com"}
          and "annotations" not in k[("Service", f"{FULL}-directory")]["metadata"],
          f"{what}: server NodePort 30464 = public_port; external-dns names the wildcard; the "
          f"directory without a host gets no name")
    notes = k[("NOTES", "txt")]
    check("the node port must be the same number" in notes and "as set" in notes
          and "Point a DNS record <directory host> at your nodes' addresses" in notes
          and "Set directory.host to that DNS name" in notes,
          f"{what}: NOTES: NodePort instructions for both, and a reminder of directory.host")
    check(container(sts)["command"] == ["redis-server"] and redis_password_file(sts) is None
          and "env" not in container(sts)
          and sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast",
          f"{what}: Redis without password, on StorageClass fast")


def main():
    root, out = sys.argv[1], sys.argv[2]
    path = os.path.join(root, "helm", "atplatform")
    options = known_options(root)
    check_settings_schema(root, path)
    global IMAGE_USER
    dockerfile = open(os.path.join(root, "deploy", "Dockerfile"), encoding="utf-8").read()
    IMAGE_USER = int(re.search(r"^USER (\d+):\d+$", dockerfile, re.M).group(1))
    for arg in ("RUST_IMAGE", "RUNTIME_IMAGE"):
        default = re.search(rf"^ARG {arg}=(\S+)$", dockerfile, re.M).group(1)
        check(re.search(rf"--build-arg {arg}=\S+@sha256:<digest>", dockerfile)
              and ("@" not in default or re.fullmatch(r"[^@]+@sha256:[0-9a-f]{64}", default)),
              f"deploy/Dockerfile: {arg} ({default}) can be pinned by digest, as documented")
    os.makedirs(out, exist_ok=True)
    chart = helm_python.Chart.load(path)
    ok(f"chart {chart.name} {chart.version} loaded (Helm SDK {helm_python.helm_sdk_version()},"
       f" kubernetes-validate {kubernetes_validate.__version__})")
    global METRICS
    METRICS = registered_metrics(root)
    check(len(METRICS) >= 20 and "atserver_connections" in METRICS
          and "atdirectory_lookup_duration_seconds_bucket" in METRICS,
          f"{len(METRICS)} metric series names registered in the sources")
    checks = {"default": scenario_default, "custom": scenario_custom, "gitops": scenario_gitops,
              "fixed": scenario_fixed, "monitoring": scenario_monitoring,
              "cert-manager-public": scenario_cert_manager_public}
    for name, values in SCENARIOS.items():
        values = with_required(values)
        lint(path, values, name)
        rendered = render(chart, values)
        if name == "gitops":
            check(render(chart, values) == rendered,
                  f"{name}: two renders are the same (nothing random or looked up)")
        if name == "default":
            check(render(chart, values) != rendered,
                  f"{name}: two offline renders differ (generated CA and password), which is "
                  f"why the gitops values exist")
        docs, counts = [], {"k8s": 0, "crd": 0}
        with open(os.path.join(out, f"{name}.yaml"), "w", encoding="utf-8") as f:
            for template, text in sorted(rendered.items()):
                if template.endswith("NOTES.txt"):
                    f.write(f"# NOTES\n# " + text.replace("\n", "\n# ") + "\n")
                    continue
                if not text.strip():
                    continue
                # Helm's own text, as `helm template` prints it.
                f.write(f"---\n# Source: {template}\n{text.strip()}\n")
                for doc in yaml.safe_load_all(text):
                    if not doc:
                        continue
                    try:
                        counts[validate_manifest(doc, name)] += 1
                    except Exception as e:
                        raise AssertionError(
                            f"{name}: {template}: {doc['kind']} {doc['metadata']['name']}: {e}")
                    docs.append(doc)
        k = by_kind(docs)
        check(len(k) == len(docs), f"{name}: no two manifests share kind and name")
        k[("NOTES", "txt")] = next(text for template, text in rendered.items()
                                   if template.endswith("NOTES.txt"))
        ok(f"{name}: {counts['k8s']} manifests valid for Kubernetes {KUBE_VERSION} (strict), "
           f"{counts['crd']} custom resources structurally valid")
        global VALUES
        VALUES = values
        checks[name](k, options)
    for values, word in REFUSED:
        try:
            render(chart, values if values is NOTHING else with_required(values))
        except (helm_python.HelmValuesError, helm_python.HelmRenderError) as e:
            check(word in str(e), f"refused {values}: {str(e).strip().splitlines()[-1]}")
            continue
        raise AssertionError(f"accepted {values}")
    print("all checks passed")


if __name__ == "__main__":
    main()
