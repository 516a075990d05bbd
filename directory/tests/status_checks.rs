//! Status checks (`at_directory::status`) against scripted servers over real TLS sockets: the
//! exact requests a check sends, how each kind of answer (or silence) is classified, the
//! bounds on waiting, and the cache. The lifecycle against the real binaries is in
//! `tests/tests/status_lifecycle.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use at_common::config::{StoreConfig, TlsConfig};
use at_common::status::{AtSignStatus, RootStatus, ServerStatus};
use at_common::{Address, AtSign};
use at_directory::config::StatusConfig;
use at_directory::status::StatusService;
use at_tests::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How a scripted server answers one request line: `Some(reply)` or silence.
type Script = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A TLS server on loopback that greets with `@`, answers lines by its script, and records
/// what it was sent and how many connections it took.
struct Scripted {
    addr: SocketAddr,
    ca: PathBuf,
    connections: Arc<AtomicUsize>,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Scripted {
    async fn start(script: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Scripted {
        let dir = TempDir::new("status-scripted");
        let (acceptor, _) = at_common::tls::acceptor(&TlsConfig::default(), dir.path())
            .unwrap()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(script);
        let (count, record) = (Arc::clone(&connections), Arc::clone(&lines));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (acceptor, script, record) =
                    (acceptor.clone(), Arc::clone(&script), Arc::clone(&record));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = tls.write_all(b"@").await;
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = buffer.drain(..=end).collect();
                            let line = String::from_utf8_lossy(&line).trim().to_string();
                            record.lock().unwrap().push(line.clone());
                            match script(&line) {
                                Some(reply) => {
                                    let _ = tls.write_all(reply.as_bytes()).await;
                                }
                                // Silence: hold the connection open until the client leaves.
                                None => {
                                    let _ = tls.read(&mut chunk).await;
                                    std::future::pending::<()>().await;
                                }
                            }
                        }
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        Scripted {
            addr,
            ca: dir.path().join("tls/ca.pem"),
            connections,
            lines,
            _dir: dir,
        }
    }

    fn location(&self) -> String {
        self.addr.to_string()
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

/// An atServer as the reference answers an unauthenticated client: `scan` lists `keys`,
/// `lookup:publickey@alice` gives `public_key`.
fn atserver(keys: &'static str, public_key: &'static str) -> impl Fn(&str) -> Option<String> {
    move |line: &str| match line {
        "scan" => Some(format!("data:{keys}\n@")),
        "lookup:publickey@alice" => Some(format!("{public_key}\n@")),
        _ => Some("error:AT0003-Invalid syntax\n@".into()),
    }
}

fn alice() -> AtSign {
    AtSign::parse("@alice").unwrap()
}

/// A directory store (embedded, in `dir`) with `registrations`.
async fn store_with(dir: &TempDir, registrations: &[(&str, &str)]) -> at_directory::store::Store {
    let store = at_directory::store::open(&StoreConfig::default(), dir.path())
        .await
        .unwrap();
    for (atsign, address) in registrations {
        store
            .put(
                &AtSign::parse(atsign).unwrap(),
                &Address::parse(address).unwrap(),
            )
            .await
            .unwrap();
    }
    store
}

/// A loopback address nothing listens on (its listener is closed again at once).
fn closed_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// @alice's server is `unavailable` (503), decided when the check's `timeout_ms` ran out: not
/// before (the server said nothing wrong, only nothing), and not long after (generous slack
/// for a loaded machine: the point is that it is bounded at all).
async fn assert_server_unavailable_once_the_timeout_passed(
    service: &StatusService,
    timeout_ms: u64,
) {
    let began = Instant::now();
    let status = service.status(&alice()).await;
    let took = began.elapsed();
    assert_eq!(status.server_status, ServerStatus::Unavailable);
    assert_eq!(status.http_status(), 503);
    let timeout = Duration::from_millis(timeout_ms);
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(5),
        "unavailable after {took:?}, with a timeout of {timeout:?}"
    );
}

fn config(ca_files: Vec<PathBuf>, timeout_ms: u64, cache_ms: u64) -> StatusConfig {
    StatusConfig {
        ca_files,
        timeout_ms,
        cache_ms,
        ..StatusConfig::default()
    }
}

/// The service over a local store mapping @alice to `server`.
async fn service_for(
    server: &Scripted,
    dir: &TempDir,
    timeout_ms: u64,
    cache_ms: u64,
) -> StatusService {
    let store = store_with(dir, &[("@alice", &server.location())]).await;
    StatusService::new(
        &config(vec![server.ca.clone()], timeout_ms, cache_ms),
        Some(store),
        dir.path(),
        None,
    )
    .unwrap()
}

#[tokio::test]
async fn a_listed_public_key_with_a_value_is_activated_and_the_check_says_goodbye() {
    let server = Scripted::start(atserver(r#"["publickey@alice"]"#, "data:MIIBIjAN")).await;
    let dir = TempDir::new("status-activated");
    let status = service_for(&server, &dir, 5000, 0)
        .await
        .status(&alice())
        .await;
    assert_eq!(status.root_status, RootStatus::Found);
    assert_eq!(status.server_location, Some(server.location()));
    assert_eq!(status.server_status, ServerStatus::Activated);
    assert_eq!(status.http_status(), 200);
    // Exactly what at_server_status sends, then a polite exit.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.lines().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.lines(), ["scan", "lookup:publickey@alice", "exit"]);
}

#[tokio::test]
async fn a_listed_public_key_without_a_value_is_ready_which_is_a_teapot() {
    let server = Scripted::start(atserver(r#"["publickey@alice"]"#, "data:null")).await;
    let dir = TempDir::new("status-ready");
    let status = service_for(&server, &dir, 5000, 0)
        .await
        .status(&alice())
        .await;
    assert_eq!(status.server_status, ServerStatus::Ready);
    assert_eq!(status.status(), AtSignStatus::Teapot);
    assert_eq!(status.http_status(), 418);
}

#[tokio::test]
async fn only_the_owners_public_key_counts() {
    // A reference server lists its own signing key before onboarding: still a teapot.
    let server = Scripted::start(atserver(r#"["signing_publickey@alice"]"#, "data:x")).await;
    let dir = TempDir::new("status-teapot");
    let status = service_for(&server, &dir, 5000, 0)
        .await
        .status(&alice())
        .await;
    assert_eq!(status.server_status, ServerStatus::Teapot);
    assert_eq!(status.http_status(), 418);
    assert_eq!(server.lines()[0], "scan");
    assert!(!server.lines().iter().any(|l| l.starts_with("lookup")));
}

#[tokio::test]
async fn a_server_that_breaks_the_protocol_is_an_error() {
    for (scan, lookup) in [
        ("{not a list}", "data:x"),
        (r#"["publickey@alice"]"#, "hello"),
    ] {
        let server = Scripted::start(move |line: &str| {
            Some(match line {
                "scan" => format!("data:{scan}\n@"),
                _ => format!("{lookup}\n@"),
            })
        })
        .await;
        let dir = TempDir::new("status-broken");
        let status = service_for(&server, &dir, 5000, 0)
            .await
            .status(&alice())
            .await;
        assert_eq!(
            status.server_status,
            ServerStatus::Error,
            "{scan} / {lookup}"
        );
        assert_eq!(status.status(), AtSignStatus::Error);
        assert_eq!(status.http_status(), 500);
    }
}

#[tokio::test]
async fn a_silent_server_is_unavailable_once_the_timeout_passes() {
    let server = Scripted::start(|_: &str| None).await;
    let dir = TempDir::new("status-silent");
    let service = service_for(&server, &dir, 300, 0).await;
    assert_server_unavailable_once_the_timeout_passed(&service, 300).await;
}

#[tokio::test]
async fn a_server_that_accepts_tcp_but_never_speaks_tls_is_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let dir = TempDir::new("status-mute");
    let store = store_with(&dir, &[("@alice", &addr.to_string())]).await;
    let service =
        StatusService::new(&config(vec![], 300, 0), Some(store), dir.path(), None).unwrap();
    assert_server_unavailable_once_the_timeout_passed(&service, 300).await;
}

#[tokio::test]
async fn a_server_with_an_untrusted_certificate_or_no_listener_is_unavailable() {
    let server = Scripted::start(atserver(r#"["publickey@alice"]"#, "data:x")).await;
    let closed = closed_address();
    let dir = TempDir::new("status-untrusted");
    let store = store_with(
        &dir,
        &[
            ("@alice", &server.location()),
            ("@bob", &closed.to_string()),
        ],
    )
    .await;
    // Its CA is not trusted.
    let service =
        StatusService::new(&config(vec![], 2000, 0), Some(store), dir.path(), None).unwrap();
    let status = service.status(&alice()).await;
    assert_eq!(status.server_status, ServerStatus::Unavailable);
    assert!(
        server.lines().is_empty(),
        "nothing is sent over an unverified connection"
    );
    let bob = service.status(&AtSign::parse("@bob").unwrap()).await;
    assert_eq!(bob.server_status, ServerStatus::Unavailable);
    assert_eq!(bob.http_status(), 503);
}

#[tokio::test]
async fn a_remote_directory_is_asked_as_a_client_asks_it() {
    let server = Scripted::start(atserver("[]", "data:x")).await;
    let location = server.location();
    let directory = Scripted::start(move |line: &str| match line {
        "alice" => Some(format!("{location}\r\n@")),
        "garbage" => Some("error:AT0003-Invalid syntax\r\n@".into()),
        "@exit" => None,
        _ => Some("null\r\n@".into()),
    })
    .await;
    let dir = TempDir::new("status-remote");
    let remote = StatusConfig {
        directory: directory.location(),
        ..config(vec![server.ca.clone(), directory.ca.clone()], 2000, 0)
    };
    let service = StatusService::new(&remote, None, dir.path(), None).unwrap();

    let alice = service.status(&alice()).await;
    assert_eq!(alice.root_status, RootStatus::Found);
    assert_eq!(alice.server_status, ServerStatus::Teapot);
    assert_eq!(alice.http_status(), 418);
    let bob = service.status(&AtSign::parse("@bob").unwrap()).await;
    assert_eq!(bob.root_status, RootStatus::NotFound);
    assert_eq!(bob.http_status(), 404);
    let garbage = service.status(&AtSign::parse("@garbage").unwrap()).await;
    assert_eq!(garbage.root_status, RootStatus::Error);
    assert_eq!(garbage.http_status(), 500);
    // The name without its `@`, as the SDKs send it, and `@exit` after each answer.
    let lines = directory.lines();
    assert_eq!(lines[..2], ["alice", "@exit"]);
    assert!(lines.contains(&"bob".to_string()), "{lines:?}");

    // A directory that is not there: 502.
    let gone = closed_address();
    let down = StatusConfig {
        directory: gone.to_string(),
        ..config(vec![], 2000, 0)
    };
    let service = StatusService::new(&down, None, dir.path(), None).unwrap();
    let status = service.status(&AtSign::parse("@alice").unwrap()).await;
    assert_eq!(status.root_status, RootStatus::Unavailable);
    assert_eq!(status.server_location, None);
    assert_eq!(status.http_status(), 502);
}

#[tokio::test]
async fn answers_are_cached_per_atsign_and_concurrent_requests_share_one_check() {
    let server = Scripted::start(atserver(r#"["publickey@alice"]"#, "data:x")).await;
    let dir = TempDir::new("status-cache");
    let cached = service_for(&server, &dir, 5000, 60_000).await;
    let alice = alice();
    let requests = (0..20).map(|_| cached.status(&alice));
    let answers = futures_util::future::join_all(requests).await;
    // One check answered all twenty, identically: one connection, one conversation.
    assert_eq!(answers[0].http_status(), 200);
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.lines().len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.lines(), ["scan", "lookup:publickey@alice", "exit"]);
    assert_eq!(cached.status(&alice).await, answers[0]);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    assert_eq!(server.lines().len(), 3, "the cached answer asked nothing");

    // Without a cache every request is a check of its own.
    let dir = TempDir::new("status-nocache");
    let uncached = service_for(&server, &dir, 5000, 0).await;
    for _ in 0..3 {
        uncached.status(&alice).await;
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 4);
}
