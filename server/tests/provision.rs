//! `at-server provision | deprovision | list`, run as the real binary; directory entries checked
//! through the directory's own store code. The atServer's store is either backend; the
//! directory's is embedded.

mod support;

use std::path::Path;
use std::process::Output;

use at_common::{Address, AtSign};
use at_tests::process;
use at_tests::TempDir;
use support::{write_config, Backend};

struct Node {
    dir: TempDir,
    backend: Backend,
}

impl Node {
    fn new(backend: Backend, extra: &str) -> Node {
        let dir = TempDir::new("server-provision");
        let settings = format!(
            "data_dir = \"{0}/server\"\ndirectory_data_dir = \"{0}/directory\"\npublic_host = \"127.0.0.1\"\n{extra}",
            dir.path().display()
        );
        write_config(dir.path(), &settings, &backend);
        Node { dir, backend }
    }

    fn run(&self, args: &[&str]) -> Output {
        let config = self.dir.path().join("server.toml").display().to_string();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        process::run(Path::new(env!("CARGO_BIN_EXE_at-server")), &all, &[])
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn directory_entry(&self, atsign: &str) -> Option<Address> {
        let data = self.dir.path().join("directory");
        actix_rt::System::new().block_on(async move {
            let store = at_directory::store::open(&Default::default(), &data)
                .await
                .unwrap();
            store.get(&AtSign::parse(atsign).unwrap()).await.unwrap()
        })
    }
}

fn provision_gives_each_atsign_a_port_a_secret_and_a_directory_entry(backend: Backend) {
    let node = Node::new(backend, "port_range_start = 25000\nport_range_len = 2\n");
    let out = node.ok(&["provision", "@Alice"]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("provisioned @alice at 127.0.0.1:25000"));
    let secret = lines.next().unwrap().strip_prefix("cram secret: ").unwrap();
    assert_eq!(secret.len(), 128);
    assert!(secret
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(
        node.directory_entry("alice"),
        Some(Address::parse("127.0.0.1:25000").unwrap())
    );
    node.backend.check_used(&node.dir.path().join("server"));

    let out = node.ok(&["provision", "bob"]);
    assert!(
        out.starts_with("provisioned @bob at 127.0.0.1:25001\n"),
        "{out}"
    );
    assert_eq!(
        node.ok(&["list"]),
        "@alice teapot 127.0.0.1:25000\n@bob teapot 127.0.0.1:25001\n"
    );
}

fn provisioning_twice_or_past_the_port_range_is_refused(backend: Backend) {
    let node = Node::new(backend, "port_range_start = 25000\nport_range_len = 1\n");
    node.ok(&["provision", "@alice"]);
    let again = node.run(&["provision", "@alice"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("@alice is already provisioned"));
    let full = node.run(&["provision", "@bob"]);
    assert!(!full.status.success());
    assert!(String::from_utf8_lossy(&full.stderr).contains("every port of the range is taken"));
    assert_eq!(node.directory_entry("bob"), None);
}

fn deprovision_removes_the_atsign_its_entry_and_frees_its_port(backend: Backend) {
    let node = Node::new(backend, "port_range_start = 25000\nport_range_len = 2\n");
    node.ok(&["provision", "@alice"]);
    node.ok(&["provision", "@bob"]);
    assert_eq!(node.ok(&["deprovision", "alice"]), "deprovisioned @alice\n");
    assert_eq!(node.directory_entry("alice"), None);
    assert_eq!(node.ok(&["list"]), "@bob teapot 127.0.0.1:25001\n");
    let out = node.ok(&["provision", "@carol"]);
    assert!(
        out.starts_with("provisioned @carol at 127.0.0.1:25000\n"),
        "{out}"
    );
    let missing = node.run(&["deprovision", "@alice"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("@alice is not provisioned"));
}

fn with_an_sni_domain_the_directory_entry_is_the_atsigns_own_host_name(backend: Backend) {
    let node = Node::new(
        backend,
        "sni_domain = \"atsign.test\"\nlisten = \"0.0.0.0:6464\"\n",
    );
    let out = node.ok(&["provision", "@alice🛠"]);
    let address = node.directory_entry("alice🛠").unwrap();
    let label = address.host().strip_suffix(".atsign.test").unwrap();
    assert_eq!(label.len(), 36, "a uuid label: {address}");
    assert_eq!(address.port(), 6464);
    assert!(
        out.starts_with(&format!("provisioned @alice🛠 at {address}\n")),
        "{out}"
    );
}

fn bad_atsigns_are_refused_before_anything_is_written(backend: Backend) {
    let node = Node::new(backend, "port_range_start = 25000\nport_range_len = 2\n");
    let out = node.run(&["provision", "al ice"]);
    assert!(!out.status.success());
    assert_eq!(node.ok(&["list"]), "");
}

/// One `provision` of several atSigns: each gets its own result in the order asked, a failure
/// (bad name, already here, no port left) does not stop the others, and only the successes
/// are in the directory and the list.
fn a_batch_gives_each_atsign_its_own_result(backend: Backend) {
    let node = Node::new(backend, "port_range_start = 25000\nport_range_len = 3\n");
    node.ok(&["provision", "@bob"]);
    let out = node.run(&[
        "provision",
        "@alice",
        "@bob",
        "not valid!!",
        "@carol",
        "@dave",
        "@alice",
    ]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        "at-server: provisioned 2 of 6; 4 failed"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("cram secret: "))
        .collect();
    assert_eq!(
        lines,
        [
            "provisioned @alice at 127.0.0.1:25001",
            "@bob: not provisioned: @bob is already provisioned on this node",
            "not valid!!: not provisioned: \"not valid!!\": an atSign may not contain ' '",
            "provisioned @carol at 127.0.0.1:25002",
            "@dave: not provisioned: every port of the range is taken (1 atSigns)",
            "@alice: not provisioned: @alice is already provisioned on this node",
        ],
        "{stdout}"
    );
    assert_eq!(
        node.ok(&["list"]),
        "@alice teapot 127.0.0.1:25001\n@bob teapot 127.0.0.1:25000\n@carol teapot 127.0.0.1:25002\n"
    );
    assert_eq!(
        node.directory_entry("carol"),
        Some(Address::parse("127.0.0.1:25002").unwrap())
    );
    assert_eq!(node.directory_entry("dave"), None);
}

both_backends! {
    a_batch_gives_each_atsign_its_own_result,
    provision_gives_each_atsign_a_port_a_secret_and_a_directory_entry,
    provisioning_twice_or_past_the_port_range_is_refused,
    deprovision_removes_the_atsign_its_entry_and_frees_its_port,
    with_an_sni_domain_the_directory_entry_is_the_atsigns_own_host_name,
    bad_atsigns_are_refused_before_anything_is_written,
}
