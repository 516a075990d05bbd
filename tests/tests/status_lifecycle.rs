//! The atSign status check (`GET /api/status/<atSign>` on the directory's metrics listener, and
//! `at-directory status`) against real binaries and real sockets, with exact codes and bodies:
//!
//! - the lifecycle of `@alice`: unknown (404), provisioned on a running server (418 teapot),
//!   CRAM-authenticated only (still 418), `public:publickey@alice` stored (200 activated); the
//!   path forms `@alice`, `alice`, `%40alice`; HEAD; 405 with `Allow` for other methods; 400 for
//!   an invalid atSign; the server stopped (503) and started again (200); deprovisioned (404);
//! - a "front" directory asking another one over TLS: the same answers while that one runs, 502
//!   once it is down; the CLI's exit codes (0 activated, 3 teapot, 4 notFound, 5 unavailable)
//!   and its JSON;
//! - bounded waits: an atServer address and a directory that accept connections and never
//!   answer give 503 and 502 within `timeout_ms` plus slack.
//!
//! Registrations reach a running directory through its on-disk store within about a second,
//! so every transition is polled (bounded) before the full body is asserted.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use at_tests::client::Client;
use at_tests::http::{self, Response};
use at_tests::process::{workspace_binary, Running};
use at_tests::TempDir;

/// `status.timeout_ms` of every directory here: the bound of each step of a check.
const STEP_TIMEOUT_MS: u64 = 1000;
/// What a check bounded by [`STEP_TIMEOUT_MS`] may take beyond it on a busy 2-core machine.
const SLACK: Duration = Duration::from_secs(4);
/// How long a transition (a registration reaching the directory, a process starting or
/// stopping) may take to show in the status.
const TRANSITION_WAIT: Duration = Duration::from_secs(10);
/// How long an admin or CLI command may run.
const COMMAND_WAIT: Duration = Duration::from_secs(30);

/// Any base64 text will do for the keys: the status only asks whether one is there.
const PUBLIC_KEY: &str = include_str!("../../common/testdata/auth/rsa_public_spki.b64");

fn toml_str(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// The JSON the API and the CLI answer with, keys in their fixed order.
fn status_json(
    atsign: &str,
    location: Option<&str>,
    root: &str,
    server: &str,
    status: &str,
    code: u16,
) -> String {
    let location = location.map_or("null".to_string(), |l| format!("\"{l}\""));
    format!(
        "{{\"atSign\":\"{atsign}\",\"serverLocation\":{location},\"rootStatus\":\"{root}\",\
         \"serverStatus\":\"{server}\",\"status\":\"{status}\",\"httpStatus\":{code}}}"
    )
}

fn not_found_json(atsign: &str) -> String {
    status_json(atsign, None, "notFound", "unavailable", "notFound", 404)
}

/// An atServer whose data lives in `<dir>/server` and registers its atSigns in the directory
/// store `<dir>/directory`, with a port of its own for each of up to two atSigns.
struct Server {
    config: PathBuf,
    port: u16,
    ca: PathBuf,
    running: Option<Running>,
}

impl Server {
    fn new(dir: &Path) -> Server {
        // Both ports of the range, so no other test of this process is handed the second.
        let port = at_tests::free_ports(2);
        let config = dir.join("server.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {}\ndirectory_data_dir = {}\npublic_host = \"127.0.0.1\"\n\
                 listen = \"127.0.0.1:0\"\nport_range_start = {port}\nport_range_len = 2\n",
                toml_str(&dir.join("server")),
                toml_str(&dir.join("directory")),
            ),
        )
        .unwrap();
        Server {
            config,
            port,
            ca: dir.join("server/tls/ca.pem"),
            running: None,
        }
    }

    /// Starts `serve`; its first start also makes the TLS CA the directories must trust.
    fn start(&mut self) {
        assert!(self.running.is_none(), "already running");
        let config = self.config.display().to_string();
        self.running = Some(Running::start(
            &workspace_binary("at-server"),
            &["--config", &config, "serve"],
            &[("AT_SERVER_LOG", "warn")],
            false,
        ));
        assert!(self.ca.is_file(), "{} was made", self.ca.display());
    }

    fn stop(&mut self) {
        self.running.take().expect("running").stop();
    }

    fn admin(&self, args: &[&str]) -> Output {
        let config = self.config.display().to_string();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        run_bounded(&workspace_binary("at-server"), &all)
    }

    /// Provisions `atsign` (the `n`th, 0-based, so on `port + n`); returns its CRAM secret.
    fn provision(&self, atsign: &str, n: u16) -> String {
        let out = self.admin(&["provision", atsign]);
        assert!(out.status.success(), "provision {atsign}: {out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let mut lines = stdout.lines();
        let want = format!("provisioned {atsign} at 127.0.0.1:{}", self.port + n);
        assert_eq!(lines.next(), Some(want.as_str()), "{stdout}");
        lines
            .next()
            .and_then(|line| line.strip_prefix("cram secret: "))
            .unwrap_or_else(|| panic!("no cram secret line: {stdout}"))
            .to_string()
    }

    fn location(&self, n: u16) -> String {
        format!("127.0.0.1:{}", self.port + n)
    }

    /// A TLS connection to the `n`th atSign's port that has read the `@` prompt.
    fn connect(&self, n: u16) -> Client {
        let mut client = Client::tls(([127, 0, 0, 1], self.port + n).into(), &self.ca);
        client.expect(b"@");
        client
    }
}

/// Sends an `update:` and asserts a `data:<commit id>` reply.
fn update(client: &mut Client, atsign: &str, line: &str) {
    client.send(line.as_bytes());
    let prompt = format!("\n{atsign}@");
    let reply = client.read_until(prompt.as_bytes());
    let number = reply
        .strip_prefix("data:")
        .and_then(|r| r.strip_suffix(&prompt))
        .unwrap_or_else(|| panic!("{line:?}: {reply:?}"));
    // A commit id, or -1 for keys kept out of the commit log (`privatekey:`).
    assert!(number.parse::<i64>().is_ok(), "{line:?}: {reply:?}");
}

/// The whole onboarding of the `n`th atSign: CRAM, PKAM key, then its public encryption key.
fn activate(server: &Server, atsign: &str, n: u16, secret: &str) {
    let mut client = server.connect(n);
    client.cram_in(atsign, secret);
    update(
        &mut client,
        atsign,
        &format!(
            "update:privatekey:at_pkam_publickey {}\n",
            PUBLIC_KEY.trim()
        ),
    );
    update(
        &mut client,
        atsign,
        &format!("update:public:publickey{atsign} {}\n", PUBLIC_KEY.trim()),
    );
}

/// Writes a directory configuration with a `[status]` section; `upstream` is
/// `status.directory` ("" answers from the local store).
fn directory_config(path: &Path, upstream: &str, ca_files: &[&Path]) {
    let ca_files: Vec<String> = ca_files.iter().map(|ca| toml_str(ca)).collect();
    std::fs::write(
        path,
        format!(
            "[status]\nenabled = true\ndirectory = \"{upstream}\"\nca_files = [{}]\n\
             timeout_ms = {STEP_TIMEOUT_MS}\ncache_ms = 0\n",
            ca_files.join(", ")
        ),
    )
    .unwrap();
}

/// `at-directory serve` on loopback ports, with `config`; `running.metrics` serves the API.
fn start_directory(data_dir: &Path, config: &Path) -> Running {
    let data_dir = data_dir.display().to_string();
    let config = config.display().to_string();
    Running::start(
        &workspace_binary("at-directory"),
        &[
            "--config",
            &config,
            "--data-dir",
            &data_dir,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[("AT_DIRECTORY_LOG", "warn")],
        true,
    )
}

fn api(directory: &Running) -> SocketAddr {
    directory.metrics.expect("metrics listener")
}

fn send(addr: SocketAddr, method: &str, path: &str) -> Response {
    http::request(addr, method, path).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// GETs `path` every 100 ms until it answers `code` (bounded), and returns that answer.
fn await_code(addr: SocketAddr, path: &str, code: u16) -> Response {
    let deadline = Instant::now() + TRANSITION_WAIT;
    loop {
        let last = http::request(addr, "GET", path);
        match &last {
            Ok(response) if response.status == code => return response.clone(),
            _ if Instant::now() >= deadline => panic!(
                "GET {path}: no {code} within {TRANSITION_WAIT:?}; last: {:?}",
                last.map(|r| (r.status, r.text()))
            ),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Asserts a complete status answer: code, JSON content type, exact body.
fn assert_status(response: &Response, code: u16, body: &str) {
    assert_eq!(response.status, code, "{}", response.text());
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "Content-Type: {content_type:?}"
    );
    assert_eq!(response.text(), body);
}

/// Asserts that HEAD answers `code` and no body (read to EOF, so a stray body would show).
fn assert_head(addr: SocketAddr, path: &str, code: u16) {
    let head = send(addr, "HEAD", path);
    assert_eq!(head.status, code, "HEAD {path}");
    assert!(head.body.is_empty(), "HEAD body: {:?}", head.text());
}

/// Runs a command to completion, killing it after [`COMMAND_WAIT`].
fn run_bounded(program: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    // Drain both pipes meanwhile, so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + COMMAND_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{} {args:?} ran over {COMMAND_WAIT:?}", program.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_thread.join().unwrap(),
        stderr: err_thread.join().unwrap(),
    }
}

/// `at-directory [global…] status <atsign> [args…]`: (exit code, stdout).
fn cli_status(global: &[&str], atsign: &str, args: &[&str]) -> (i32, String, Duration) {
    let mut all = global.to_vec();
    all.extend_from_slice(&["status", atsign]);
    all.extend_from_slice(args);
    let started = Instant::now();
    let out = run_bounded(&workspace_binary("at-directory"), &all);
    let took = started.elapsed();
    let code = out.status.code().unwrap_or(-1);
    eprintln!(
        "at-directory {all:?} -> {code} in {took:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, String::from_utf8(out.stdout).unwrap(), took)
}

/// A loopback listener that accepts connections and never writes a byte, holding each one
/// open: a server that is "up" but never answers. Lives until the test process ends.
fn silent_listener() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    addr
}

#[test]
fn status_follows_an_atsign_from_unknown_to_activated_stopped_and_deprovisioned() {
    let dir = TempDir::new("status-lifecycle");
    let mut server = Server::new(dir.path());
    server.start();
    let config = dir.path().join("directory.toml");
    directory_config(&config, "", &[&server.ca]);
    let directory = start_directory(&dir.path().join("directory"), &config);
    let api = api(&directory);
    let path = "/api/status/@alice";
    let location = server.location(0);
    let located = |server_status: &str, status: &str, code: u16| {
        status_json(
            "@alice",
            Some(&location),
            "found",
            server_status,
            status,
            code,
        )
    };

    // Unknown to the directory; HEAD gives the same code without the body.
    assert_status(&await_code(api, path, 404), 404, &not_found_json("@alice"));
    assert_head(api, path, 404);

    // Provisioned on the running server (through its admin socket): up, nobody onboarded.
    let secret = server.provision("@alice", 0);
    let teapot = located("teapot", "teapot", 418);
    assert_status(&await_code(api, path, 418), 418, &teapot);

    // Authenticated with CRAM, then a PKAM key stored, but no encryption public key yet.
    let mut client = server.connect(0);
    client.cram_in("@alice", &secret);
    assert_status(&send(api, "GET", path), 418, &teapot);
    update(
        &mut client,
        "@alice",
        &format!(
            "update:privatekey:at_pkam_publickey {}\n",
            PUBLIC_KEY.trim()
        ),
    );
    assert_status(&send(api, "GET", path), 418, &teapot);

    // The public encryption key makes it activated.
    update(
        &mut client,
        "@alice",
        &format!("update:public:publickey@alice {}\n", PUBLIC_KEY.trim()),
    );
    drop(client);
    let activated = located("activated", "activated", 200);
    assert_status(&await_code(api, path, 200), 200, &activated);
    // The same answer for every spelling of the atSign, and for HEAD without the body.
    for other in ["/api/status/alice", "/api/status/%40alice"] {
        assert_status(&send(api, "GET", other), 200, &activated);
    }
    assert_head(api, path, 200);

    // Only GET and HEAD.
    for method in ["POST", "PUT", "DELETE"] {
        let response = send(api, method, path);
        assert_eq!(response.status, 405, "{method}: {}", response.text());
        assert_eq!(response.header("allow"), Some("GET, HEAD"), "{method}");
    }

    // Not an atSign.
    let invalid = send(api, "GET", "/api/status/no%20spaces");
    assert_eq!(invalid.status, 400, "{}", invalid.text());

    // Server stopped: still registered, not reachable.
    server.stop();
    assert_status(
        &await_code(api, path, 503),
        503,
        &located("unavailable", "unavailable", 503),
    );

    // Started again: activated again (the keys are on disk).
    server.start();
    assert_status(&await_code(api, path, 200), 200, &activated);

    // Deprovisioned: unregistered from the directory.
    let out = server.admin(&["deprovision", "@alice"]);
    assert!(out.status.success(), "deprovision: {out:?}");
    assert_status(&await_code(api, path, 404), 404, &not_found_json("@alice"));
}

/// `at-server suspend` / `resume` on a running server: a suspended atSign refuses every
/// command with the reference's paused-server error (AT0024) and closes, its open connections
/// are told and closed at once, the status API says `stopped` (503), its data is kept, and
/// `resume` brings it back as it was. `list` shows it, `list --usage --json` counts its keys
/// and its open connections.
#[test]
fn a_suspended_atsign_is_stopped_refuses_everything_keeps_its_data_and_resumes() {
    let dir = TempDir::new("status-suspend");
    let mut server = Server::new(dir.path());
    server.start();
    let config = dir.path().join("directory.toml");
    directory_config(&config, "", &[&server.ca]);
    let directory = start_directory(&dir.path().join("directory"), &config);
    let api = api(&directory);
    let path = "/api/status/@alice";
    let location = server.location(0);
    let secret = server.provision("@alice", 0);
    activate(&server, "@alice", 0, &secret);
    let activated = status_json(
        "@alice",
        Some(&location),
        "found",
        "activated",
        "activated",
        200,
    );
    assert_status(&await_code(api, path, 200), 200, &activated);

    let mut owner = server.connect(0);
    owner.cram_in("@alice", &secret);
    update(&mut owner, "@alice", "update:kept@alice still here\n");
    let mut anonymous = server.connect(0);

    // Usage while the owner is connected: its keys and its one owner connection.
    let out = server.admin(&["list", "--usage", "--json"]);
    assert!(out.status.success(), "list --usage --json: {out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let alice = &listed[0];
    assert_eq!(alice["atSign"], "@alice", "{listed}");
    assert_eq!(alice["status"], "activated", "{listed}");
    assert_eq!(alice["suspended"], false, "{listed}");
    assert_eq!(alice["address"], location.as_str(), "{listed}");
    // public:publickey, privatekey:at_pkam_publickey, kept, and the signing keys made at login.
    assert!(alice["usage"]["keys"].as_u64().unwrap() >= 3, "{listed}");
    assert!(
        alice["usage"]["bytes"].as_u64().unwrap() > (2 * PUBLIC_KEY.trim().len()) as u64,
        "{listed}"
    );
    assert_eq!(alice["usage"]["connections"], 1, "{listed}");

    let out = server.admin(&["suspend", "@alice"]);
    assert!(out.status.success(), "suspend: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "suspended @alice\n");
    // Open connections are told, then closed, authenticated or not.
    // The reference's renderings of its paused-server exception, with our message: on an
    // authenticated connection, and on one that is not.
    let refusal = "error:AT0024-Server is paused : @alice is suspended\n";
    let refused = "error:AT0024-Exception: @alice is suspended\n@";
    assert_eq!(
        owner.read_until(b"@alice@"),
        format!("{refusal}@alice@"),
        "the owner's connection"
    );
    owner.expect_closed(Duration::from_secs(5));
    assert_eq!(anonymous.read_until(b"\n@"), refused);
    anonymous.expect_closed(Duration::from_secs(5));
    // A new connection: every command, a login first of all, gets the same, then the close.
    let mut again = server.connect(0);
    again.send(b"from:@alice\n");
    assert_eq!(again.read_until(b"\n@"), refused);
    again.expect_closed(Duration::from_secs(5));

    let stopped = status_json(
        "@alice",
        Some(&location),
        "found",
        "stopped",
        "unavailable",
        503,
    );
    assert_status(&await_code(api, path, 503), 503, &stopped);
    let out = server.admin(&["list"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("@alice suspended {location}\n")
    );

    // Resumed: served again with its data, activated again.
    let out = server.admin(&["resume", "@alice"]);
    assert!(out.status.success(), "resume: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "resumed @alice\n");
    assert_status(&await_code(api, path, 200), 200, &activated);
    let mut back = server.connect(0);
    back.cram_in("@alice", &secret);
    back.ask("llookup:kept@alice\n", "data:still here\n@alice@");

    // The suspension is in the store: a restarted server still refuses a suspended atSign.
    drop(back);
    assert!(server.admin(&["suspend", "@alice"]).status.success());
    server.stop();
    server.start();
    let mut after = server.connect(0);
    after.send(b"from:@alice\n");
    assert_eq!(after.read_until(b"\n@"), refused);
    // Unknown atSigns are an error.
    let out = server.admin(&["suspend", "@nobody"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("@nobody is not provisioned"),
        "{out:?}"
    );
}

/// `provision --from-file --json`, as a registrar calls it: one JSON result per atSign on
/// standard output (address and CRAM secret, or why not), going on past failures, the file's
/// comments and blank lines skipped, a failure exit and a summary when any failed.
#[test]
fn bulk_provisioning_reports_each_atsign_and_goes_on_past_failures() {
    let dir = TempDir::new("status-bulk");
    let mut server = Server::new(dir.path());
    server.start();
    let file = dir.path().join("atsigns.txt");
    std::fs::write(
        &file,
        "# registrar batch 7\n@bob\n\n@carol   # paid\nnot valid!!\n@bob\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let out = server.admin(&["provision", "--from-file", &file, "--json"]);
    assert!(!out.status.success(), "two of four failed: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("provisioned 2 of 4; 2 failed"),
        "{out:?}"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    assert_eq!(results.len(), 4, "{stdout}");
    for (n, atsign) in ["@bob", "@carol"].iter().enumerate() {
        assert_eq!(results[n]["atSign"], *atsign, "{stdout}");
        assert_eq!(results[n]["address"], server.location(n as u16).as_str());
        let secret = results[n]["cramSecret"].as_str().unwrap();
        assert_eq!(secret.len(), 128, "{stdout}");
        // The secret is the one the atSign's server takes.
        let mut client = server.connect(n as u16);
        client.cram_in(atsign, secret);
    }
    assert_eq!(results[2]["atSign"], "not valid!!", "{stdout}");
    assert!(results[2]["error"].is_string(), "{stdout}");
    assert_eq!(results[3]["atSign"], "@bob", "{stdout}");
    assert!(
        results[3]["error"]
            .as_str()
            .unwrap()
            .contains("@bob is already provisioned"),
        "{stdout}"
    );
    // Without --json, the same lines as `provision` prints, and the failures named.
    let again = dir.path().join("again.txt");
    std::fs::write(&again, "@carol\n").unwrap();
    let out = server.admin(&["provision", "--from-file", &again.display().to_string()]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "@carol: not provisioned: @carol is already provisioned on this node\n"
    );
}

#[test]
fn a_front_directory_relays_the_status_and_reports_its_directory_down_as_502() {
    let dir = TempDir::new("status-front");
    let mut server = Server::new(dir.path());
    server.start();
    let back_config = dir.path().join("directory.toml");
    directory_config(&back_config, "", &[&server.ca]);
    let back = start_directory(&dir.path().join("directory"), &back_config);
    let back_ca = dir.path().join("directory/tls/ca.pem");
    let back_addr = format!("127.0.0.1:{}", back.addr.port());

    // @alice activated, @bob provisioned only, @nobody unknown.
    let secret = server.provision("@alice", 0);
    server.provision("@bob", 1);
    activate(&server, "@alice", 0, &secret);
    let alice = status_json(
        "@alice",
        Some(&server.location(0)),
        "found",
        "activated",
        "activated",
        200,
    );
    let bob = status_json(
        "@bob",
        Some(&server.location(1)),
        "found",
        "teapot",
        "teapot",
        418,
    );
    assert_status(
        &await_code(api(&back), "/api/status/@alice", 200),
        200,
        &alice,
    );
    assert_status(&await_code(api(&back), "/api/status/@bob", 418), 418, &bob);

    let front_config = dir.path().join("front.toml");
    directory_config(&front_config, &back_addr, &[&back_ca, &server.ca]);
    let front = start_directory(&dir.path().join("front"), &front_config);
    let front_api = api(&front);
    // While the back directory runs, the front answers as it does.
    assert_status(
        &await_code(front_api, "/api/status/@alice", 200),
        200,
        &alice,
    );
    assert_status(&send(front_api, "GET", "/api/status/@bob"), 418, &bob);
    assert_status(
        &send(front_api, "GET", "/api/status/@nobody"),
        404,
        &not_found_json("@nobody"),
    );

    // The CLI asking the running directory: exit codes 0, 3, 4, and the JSON.
    let cli_data = dir.path().join("cli").display().to_string();
    let (back_ca_arg, server_ca_arg) = (
        back_ca.display().to_string(),
        server.ca.display().to_string(),
    );
    let remote = [
        "--directory",
        &back_addr,
        "--ca-file",
        &back_ca_arg,
        "--ca-file",
        &server_ca_arg,
        "--timeout-ms",
        "1000",
    ];
    let global = ["--data-dir", cli_data.as_str()];
    let (code, stdout, _) = cli_status(&global, "@alice", &remote);
    assert_eq!((code, stdout), (0, format!("{alice}\n")));
    let (code, stdout, _) = cli_status(&global, "@bob", &remote);
    assert_eq!((code, stdout), (3, format!("{bob}\n")));
    let (code, stdout, _) = cli_status(&global, "@nobody", &remote);
    assert_eq!(
        (code, stdout),
        (4, format!("{}\n", not_found_json("@nobody")))
    );

    // The CLI answering step 1 from the local store, like `list`.
    let back_data = dir.path().join("directory").display().to_string();
    let (code, stdout, _) = cli_status(
        &["--data-dir", &back_data],
        "alice",
        &["--ca-file", &server_ca_arg, "--timeout-ms", "1000"],
    );
    assert_eq!((code, stdout), (0, format!("{alice}\n")));

    // The back directory down: the front says so with 502, the CLI with exit code 5.
    back.stop();
    let down = status_json(
        "@alice",
        None,
        "unavailable",
        "unavailable",
        "unavailable",
        502,
    );
    assert_status(
        &await_code(front_api, "/api/status/@alice", 502),
        502,
        &down,
    );
    let (code, stdout, took) = cli_status(&global, "@alice", &remote);
    assert_eq!((code, stdout), (5, format!("{down}\n")));
    assert!(
        took < Duration::from_millis(STEP_TIMEOUT_MS) + SLACK,
        "{took:?}"
    );
}

#[test]
fn silent_servers_and_directories_are_reported_within_the_timeout() {
    let dir = TempDir::new("status-timeouts");
    let data = dir.path().join("directory");
    let data_arg = data.display().to_string();

    // (a) @carol registered at an address that accepts and never speaks.
    let silent_server = silent_listener();
    let carol_at = silent_server.to_string();
    let out = run_bounded(
        &workspace_binary("at-directory"),
        &["--data-dir", &data_arg, "register", "@carol", &carol_at],
    );
    assert!(out.status.success(), "register: {out:?}");
    let config = dir.path().join("directory.toml");
    directory_config(&config, "", &[]);
    let directory = start_directory(&data, &config);
    let started = Instant::now();
    let response = send(api(&directory), "GET", "/api/status/@carol");
    let took = started.elapsed();
    assert_status(
        &response,
        503,
        &status_json(
            "@carol",
            Some(&carol_at),
            "found",
            "unavailable",
            "unavailable",
            503,
        ),
    );
    assert!(
        took < Duration::from_millis(STEP_TIMEOUT_MS) + SLACK,
        "server check took {took:?}"
    );

    // (b) A front whose directory accepts and never speaks.
    let silent_directory = silent_listener().to_string();
    let front_config = dir.path().join("front.toml");
    directory_config(&front_config, &silent_directory, &[]);
    let front = start_directory(&dir.path().join("front"), &front_config);
    let down = status_json(
        "@carol",
        None,
        "unavailable",
        "unavailable",
        "unavailable",
        502,
    );
    let started = Instant::now();
    let response = send(api(&front), "GET", "/api/status/@carol");
    let took = started.elapsed();
    assert_status(&response, 502, &down);
    assert!(
        took < Duration::from_millis(STEP_TIMEOUT_MS) + SLACK,
        "directory lookup took {took:?}"
    );

    // The CLI, likewise bounded.
    let cli_data = dir.path().join("cli").display().to_string();
    let (code, stdout, took) = cli_status(
        &["--data-dir", &cli_data],
        "@carol",
        &["--directory", &silent_directory, "--timeout-ms", "1000"],
    );
    assert_eq!((code, stdout), (5, format!("{down}\n")));
    assert!(
        took < Duration::from_millis(STEP_TIMEOUT_MS) + SLACK,
        "CLI took {took:?}"
    );
}
