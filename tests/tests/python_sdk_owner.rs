//! The real Python SDK (PyPI `atsdk`, package `at_client`), unchanged, against our binaries:
//! `at-directory` serving, `at-server` hosting `@alice` and `@bob`, each on a port of its own.
//! The script (`tests/python/python_sdk_owner.py`) onboards both with the SDK's own helpers, as
//! the upstream interop script chains them (directory lookup, CRAM with the provisioned secret,
//! PKAM and encryption key pairs, the keys file, both public keys stored, PKAM on that
//! connection, the CRAM secret deleted and CRAM then refused), then `AtClient` looks `@alice` up,
//! authenticates with PKAM, puts and gets a self key, a public key and a key shared with `@bob`
//! (the SDK fetches `publickey@bob` with `plookup`, answered by this node, which hosts @bob),
//! scans them with metadata, deletes them and finds them gone.
//!
//! Not covered: @bob reading the shared key on his own connection, and atSigns hosted on other
//! nodes (they need server-to-server, issue 6).
//!
//! Needs a Python with `atsdk` installed, named by `AT_PYTHON_SDK`; fails when it is
//! not set, and is skipped (with a `SKIPPED` line `cargo test` shows) only when it is `skip`,
//! never under `CI=true` (see `at_tests::python_named_by`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use at_tests::process::{run, workspace_binary, Running};
use at_tests::TempDir;

/// The SDK has no timeouts and spins forever on a closed connection: the script gets this long.
const SDK_TIMEOUT: Duration = Duration::from_secs(120);

/// A directory and an atServer hosting `@alice` on `port`, both serving.
struct System {
    dir: TempDir,
    port: u16,
    cram_secret: String,
    bob_secret: String,
    directory: Running,
    _server: Running,
}

impl System {
    fn start() -> System {
        let dir = TempDir::new("python-sdk-owner");
        let data = dir.path().display().to_string();
        let directory = Running::start(
            &workspace_binary("at-directory"),
            &[
                "--data-dir",
                &format!("{data}/directory"),
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "",
            ],
            &[],
            false,
        );
        // Both ports of the range, so no other test of this process is handed the second.
        let port = at_tests::free_ports(2);
        let config = dir.path().join("server.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{data}/server\"\ndirectory_data_dir = \"{data}/directory\"\n\
                 public_host = \"127.0.0.1\"\nlisten = \"127.0.0.1:0\"\n\
                 port_range_start = {port}\nport_range_len = 2\n"
            ),
        )
        .unwrap();
        let config = config.display().to_string();
        // The directory's embedded store is shared, so this registers both in the running
        // directory.
        let out = run(
            &workspace_binary("at-server"),
            &["--config", &config, "provision", "@alice", "@bob"],
            &[],
        );
        assert!(out.status.success(), "provision: {out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let mut lines = stdout.lines();
        assert_eq!(
            lines.next(),
            Some(format!("provisioned @alice at 127.0.0.1:{port}").as_str())
        );
        let cram_secret = lines
            .next()
            .and_then(|line| line.strip_prefix("cram secret: "))
            .expect("cram secret line")
            .to_string();
        let provisioned_bob = format!("provisioned @bob at 127.0.0.1:{}", port + 1);
        assert_eq!(lines.next(), Some(provisioned_bob.as_str()));
        let bob_secret = lines
            .next()
            .and_then(|line| line.strip_prefix("cram secret: "))
            .expect("bob's cram secret line")
            .to_string();
        let server = Running::start(
            &workspace_binary("at-server"),
            &["--config", &config, "serve"],
            &[("AT_SERVER_LOG", "warn")],
            false,
        );
        System {
            dir,
            port,
            cram_secret,
            bob_secret,
            directory,
            _server: server,
        }
    }

    /// Both CAs in one PEM file, for `SSL_CERT_FILE`.
    fn ca_bundle(&self) -> PathBuf {
        let mut pem = String::new();
        for ca in ["directory/tls/ca.pem", "server/tls/ca.pem"] {
            let path = self.dir.path().join(ca);
            pem.push_str(
                &std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            );
        }
        let bundle = self.dir.path().join("ca-bundle.pem");
        std::fs::write(&bundle, pem).unwrap();
        bundle
    }
}

#[test]
fn python_sdk_onboards_authenticates_and_puts_gets_deletes_self_public_and_shared_keys() {
    let Some(python) = at_tests::python_sdk() else {
        return;
    };
    let system = System::start();
    let ca_bundle = system.ca_bundle();
    let home = system.dir.path().join("home");
    let keys_dir = home.join(".atsign/keys");
    std::fs::create_dir_all(&keys_dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/python_sdk_owner.py");
    let root_port = system.directory.addr.port().to_string();
    let keys_arg = keys_dir.display().to_string();
    let (ok, stdout, stderr) = at_tests::run_python(
        &python,
        &script,
        &[
            "127.0.0.1",
            &root_port,
            "@alice",
            &system.cram_secret,
            &keys_arg,
            "@bob",
            &system.bob_secret,
        ],
        &[("SSL_CERT_FILE", &ca_bundle), ("HOME", &home)],
        SDK_TIMEOUT,
    );
    // The SDK's own SENT/RCVD transcript, for `--nocapture` and for failures.
    eprintln!("--- Python SDK transcript ---\n{stderr}--- results ---\n{stdout}");
    assert!(ok, "the Python SDK failed; results so far:\n{stdout}");
    let (port, bob_port) = (system.port, system.port + 1);
    assert_eq!(
        stdout,
        format!(
            "directory: @alice at 127.0.0.1:{port}\n\
             cram: success\n\
             stored pkam public key\n\
             stored encryption public key\n\
             pkam on the onboarding connection: success\n\
             deleted cram secret\n\
             cram after delete: AtUnauthenticatedException\n\
             directory: @bob at 127.0.0.1:{bob_port}\n\
             cram: success\n\
             stored pkam public key\n\
             stored encryption public key\n\
             pkam on the onboarding connection: success\n\
             deleted cram secret\n\
             cram after delete: AtUnauthenticatedException\n\
             pkam: authenticated=True\n\
             put note.myapp@alice: commit id\n\
             get note.myapp@alice: 'a secret note, with spaces'\n\
             ivNonce echoed: True\n\
             put public:location.myapp@alice: commit id\n\
             get public:location.myapp@alice: 'public value with spaces' cached=False\n\
             put @bob:phone.myapp@alice: commit id\n\
             get @bob:phone.myapp@alice: 'shared with bob, with spaces'\n\
             scan: SharedKey @bob:phone.myapp@alice encrypted=True\n\
             scan: SelfKey note.myapp@alice encrypted=True\n\
             scan: PublicKey public:location.myapp@alice encrypted=False\n\
             delete note.myapp@alice: commit id\n\
             delete public:location.myapp@alice: commit id\n\
             delete @bob:phone.myapp@alice: commit id\n\
             get note.myapp@alice after delete: AtKeyNotFoundException\n\
             get public:location.myapp@alice after delete: AtKeyNotFoundException\n\
             get @bob:phone.myapp@alice after delete: AtKeyNotFoundException\n"
        )
    );
    assert!(
        keys_dir.join("@alice_key.atKeys").is_file(),
        "the SDK saved its keys file"
    );
}
