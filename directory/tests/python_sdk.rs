//! The Python SDK's own root-lookup code (PyPI `atsdk`, `AtRootConnection`) against the real
//! binary, unchanged: proof that "the reference SDKs' lookup code works" is not just our reading
//! of it. Needs a Python with `atsdk` installed, named by `AT_PYTHON_SDK`; `.ci/run` makes one.
//! Fails when it is not set; skipped (with a `SKIPPED` line `cargo test` shows) only when it is
//! `skip`, never under `CI=true` (see `at_tests::python_named_by`).

mod support;

use std::process::Command;

use support::{Backend, Directory};

#[test]
fn python_sdk_finds_registered_atsigns_over_one_connection() {
    let Some(python) = at_tests::python_sdk() else {
        return;
    };
    let dir = Directory::start(
        Backend::embedded(),
        "",
        &[
            ("@alice", "alice.example.com:25000"),
            ("bob🛠", "127.0.0.1:6464"),
        ],
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sdk/python_root_lookup.py"
    );
    let port = dir.running().addr.port().to_string();
    let out = Command::new(python)
        .args([
            script,
            "127.0.0.1",
            &port,
            "@Alice",
            "bob🛠",
            "ghost",
            "alice",
        ])
        .env("SSL_CERT_FILE", dir.ca_file())
        .output()
        .expect("run the Python SDK");
    assert!(
        out.status.success(),
        "SDK failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "@Alice alice.example.com:25000\n@bob🛠 127.0.0.1:6464\n@ghost not-found\n@alice alice.example.com:25000\n"
    );
}
