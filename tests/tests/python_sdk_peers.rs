//! The real Python SDK (PyPI `atsdk`, package `at_client`), unchanged, with two atSigns on two
//! atServers: `@alice` on server A, `@bob` on server B, both found through one `at-directory`,
//! the servers trusting each other through one cluster CA (as in `peers.rs`). The script
//! (`tests/python/python_sdk_peers.py`) onboards both as `python_sdk_owner.py` does, then:
//!
//! - @alice's client puts a key shared with @bob: the SDK fetches `publickey@bob` with
//!   `plookup`, which A answers by asking B;
//! - @bob's client, on B, gets it: `lookup:shared_key@alice` and `lookup:all:phone.myapp@alice`,
//!   which B fetches from A over a pol-authenticated link; the SDK decrypts the original value;
//! - @alice's client notifies @bob with the SDK's `notify`; @bob's SDK monitor on B receives it
//!   and `handle_event` decrypts it. The monitor also gets the autoNotify of @alice's two puts
//!   (values included, as the Dart server sends them): the shared key, which the SDK decrypts
//!   to the one `lookup` gave, and the shared value, which it decrypts with that key.
//!
//! Needs a Python with `atsdk` installed, named by `AT_PYTHON_SDK`; fails when it is
//! not set, and is skipped (with a `SKIPPED` line `cargo test` shows) only when it is `skip`,
//! never under `CI=true` (see `at_tests::python_named_by`).

use std::path::Path;
use std::time::{Duration, Instant};

use at_tests::servers::Cluster;
use at_tests::TempDir;

/// The SDK has no timeouts and spins forever on a closed connection: the script gets this long.
const SDK_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn python_sdk_shares_and_notifies_between_atsigns_on_two_servers() {
    let Some(python) = at_tests::python_sdk() else {
        return;
    };
    let dir = TempDir::new("python-sdk-peers");
    let cluster = Cluster::start(dir.path());
    let (mut a, alice_secret) = cluster.server("a", "@alice", "");
    let (mut b, bob_secret) = cluster.server("b", "@bob", "");
    a.start();
    b.start();

    // The SDK trusts what SSL_CERT_FILE names: the directory's CA and the cluster CA.
    let mut pem = String::new();
    for ca in [cluster.directory_ca(), cluster.ca()] {
        pem.push_str(
            &std::fs::read_to_string(&ca).unwrap_or_else(|e| panic!("{}: {e}", ca.display())),
        );
    }
    let ca_bundle = dir.path().join("ca-bundle.pem");
    std::fs::write(&ca_bundle, pem).unwrap();
    let home = dir.path().join("home");
    let keys_dir = home.join(".atsign/keys");
    std::fs::create_dir_all(&keys_dir).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/python_sdk_peers.py");
    let root_port = cluster.directory_addr().port().to_string();
    let keys_arg = keys_dir.display().to_string();
    let started = Instant::now();
    let (ok, stdout, stderr) = at_tests::run_python(
        &python,
        &script,
        &[
            "127.0.0.1",
            &root_port,
            &keys_arg,
            "@alice",
            &alice_secret,
            "@bob",
            &bob_secret,
        ],
        &[("SSL_CERT_FILE", &ca_bundle), ("HOME", &home)],
        SDK_TIMEOUT,
    );
    // The SDK's own SENT/RCVD transcript, for `--nocapture` and for failures.
    eprintln!(
        "--- Python SDK transcript ---\n{stderr}--- results ({:?}) ---\n{stdout}",
        started.elapsed()
    );
    assert!(ok, "the Python SDK failed; results so far:\n{stdout}");
    let onboarded = |atsign: &str, port: u16| {
        format!(
            "directory: {atsign} at 127.0.0.1:{port}\n\
             cram: success\n\
             stored pkam public key\n\
             stored encryption public key\n\
             pkam on the onboarding connection: success\n\
             deleted cram secret\n\
             cram after delete: AtUnauthenticatedException\n"
        )
    };
    assert_eq!(
        stdout,
        format!(
            "{}{}\
             @alice pkam: authenticated=True\n\
             @bob pkam: authenticated=True\n\
             put @bob:phone.myapp@alice: commit id\n\
             @bob get @bob:phone.myapp@alice: 'shared with bob, with spaces'\n\
             notify @bob:message.myapp@alice: id is a uuid=True\n\
             monitor: SHARED_KEY_NOTIFICATION @bob:shared_key@alice from @alice to @bob \
             operation=update value\n\
             monitor: UPDATE_NOTIFICATION @bob:phone.myapp@alice from @alice to @bob \
             operation=update value\n\
             monitor: UPDATE_NOTIFICATION @bob:message.myapp@alice from @alice to @bob \
             operation=update value\n\
             shared key from the notification = looked up: True\n\
             decrypted @bob:phone.myapp@alice: 'shared with bob, with spaces' \
             id is the notify's: False\n\
             decrypted @bob:message.myapp@alice: 'hello bob, from alice' \
             id is the notify's: True\n",
            onboarded("@alice", a.port),
            onboarded("@bob", b.port),
        )
    );
}
