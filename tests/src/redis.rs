//! A real `redis-server` for a test, on a free loopback port (no persistence, or an fsynced
//! append-only file; optionally also serving TLS on a second port, for benchmarks); killed
//! when dropped, and restartable in between.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TempDir;

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    port: u16,
    durable: bool,
    /// The TLS port and its self-signed certificate and key files, if it serves TLS.
    tls: Option<Tls>,
    /// What clients must `AUTH` with (`requirepass`), if anything.
    password: Option<String>,
    dir: TempDir,
}

#[derive(Clone)]
struct Tls {
    port: u16,
    cert: PathBuf,
    key: PathBuf,
    /// Clients must present a certificate issued by this CA (`--tls-auth-clients yes`).
    client_ca: Option<PathBuf>,
}

/// Files for a Redis served over TLS with client certificates, made under one directory: a
/// CA (`ca/ca.pem`), the server's certificate for 127.0.0.1 (`server/`), and a client's
/// (`client/`), each directory holding `cert.pem` and `key.pem`.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server: (PathBuf, PathBuf),
    pub client: (PathBuf, PathBuf),
}

impl TlsFiles {
    pub fn make(dir: &Path) -> TlsFiles {
        let (ca, ca_key) = at_common::tls::create_ca(&dir.join("ca")).expect("a CA");
        let pair = |name: &str, names: &[&str]| {
            let into = dir.join(name);
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            at_common::tls::issue(&into, &names, &ca, &ca_key).expect("a certificate");
            (into.join("cert.pem"), into.join("key.pem"))
        };
        TlsFiles {
            server: pair("server", &["127.0.0.1", "localhost"]),
            client: pair("client", &["atserver"]),
            ca,
        }
    }
}

impl RedisServer {
    /// Starts one without persistence; panics with a hint when `redis-server` is not installed.
    pub fn start() -> RedisServer {
        RedisServer::start_with(false, None, None)
    }

    /// Starts a durable one (as [`RedisServer::start_durable`]) that requires `password`
    /// (`requirepass`); its [`RedisServer::url`] carries it (`redis://:<password>@…`), as a
    /// deployment's would.
    pub fn start_durable_with_password(password: &str) -> RedisServer {
        RedisServer::start_with(true, None, Some(password))
    }

    /// Starts one without persistence that also serves TLS with `cert` and `key` (PEM files)
    /// on [`RedisServer::tls_port`]: a baseline that pays for TLS as the atServer does.
    pub fn start_tls(cert: &Path, key: &Path) -> RedisServer {
        RedisServer::start_with(false, Some((cert, key, None)), None)
    }

    /// Starts one that fsyncs its append-only file on every write (`appendfsync always`), so
    /// what it acknowledged survives [`RedisServer::kill`] and [`RedisServer::restart`].
    pub fn start_durable() -> RedisServer {
        RedisServer::start_with(true, None, None)
    }

    /// Starts one without persistence that also serves TLS with the server certificate of
    /// `files` on [`RedisServer::tls_port`], and accepts there only clients presenting a
    /// certificate of its CA: a managed Redis with encryption in transit and mutual TLS.
    pub fn start_tls_verifying_clients(files: &TlsFiles) -> RedisServer {
        let (cert, key) = &files.server;
        RedisServer::start_with(false, Some((cert, key, Some(&files.ca))), None)
    }

    fn start_with(
        durable: bool,
        files: Option<(&Path, &Path, Option<&Path>)>,
        password: Option<&str>,
    ) -> RedisServer {
        let dir = TempDir::new("redis");
        // Free ports handed to Redis (which cannot bind port 0 itself); retried if taken.
        for _attempt in 0..5 {
            let port = crate::free_port();
            let tls = files.map(|(cert, key, client_ca)| Tls {
                port: crate::free_port(),
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                client_ca: client_ca.map(Path::to_path_buf),
            });
            if let Some(child) = spawn(port, durable, tls.as_ref(), password, &dir) {
                return RedisServer {
                    child,
                    port,
                    durable,
                    tls,
                    password: password.map(str::to_string),
                    dir,
                };
            }
        }
        panic!("redis-server did not start");
    }

    /// SIGKILLs it, as a crash would (nothing is flushed on the way out).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and directory (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The port may linger for a moment after the kill.
            let password = self.password.as_deref();
            if let Some(child) = spawn(
                self.port,
                self.durable,
                self.tls.as_ref(),
                password,
                &self.dir,
            ) {
                self.child = child;
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not restart");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis://127.0.0.1:<port>` (`redis://:<password>@127.0.0.1:<port>` with a password).
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port of one started with [`RedisServer::start_tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|tls| tls.port)
    }
}

/// Starts `redis-server` on `port` and waits for its PONG; `None` if it exited (port taken).
fn spawn(
    port: u16,
    durable: bool,
    tls: Option<&Tls>,
    password: Option<&str>,
    dir: &TempDir,
) -> Option<Child> {
    let persistence: &[&str] = if durable {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &["--appendonly", "no"]
    };
    let mut child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
        ])
        .args(persistence)
        .args(tls.map_or_else(Vec::new, |tls| -> Vec<std::ffi::OsString> {
            let mut args: Vec<std::ffi::OsString> = vec![
                "--tls-port".into(),
                tls.port.to_string().into(),
                "--tls-cert-file".into(),
                tls.cert.clone().into_os_string(),
                "--tls-key-file".into(),
                tls.key.clone().into_os_string(),
            ];
            match &tls.client_ca {
                Some(ca) => args.extend([
                    "--tls-ca-cert-file".into(),
                    ca.clone().into_os_string(),
                    "--tls-auth-clients".into(),
                    "yes".into(),
                ]),
                None => args.extend(["--tls-auth-clients".into(), "no".into()]),
            }
            args
        }))
        .args(password.map_or_else(Vec::new, |password| vec!["--requirepass", password]))
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install -y redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        if ping(port, password) {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Whether a Redis on `port` answers `PING` (after `AUTH` with `password`).
pub(crate) fn ping(port: u16, password: Option<&str>) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let (request, want): (String, &[u8]) = match password {
        Some(password) => (format!("AUTH {password}\r\nPING\r\n"), b"+OK\r\n+PONG\r\n"),
        None => ("PING\r\n".into(), b"+PONG\r\n"),
    };
    let mut reply = vec![0u8; want.len()];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && reply == want
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
