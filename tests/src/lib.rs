//! # at-tests: what every wire test needs
//!
//! - [`process`]: start one of our binaries, learn its port from its `listening on` line, stop it.
//! - [`redis`]: a real `redis-server` on a free loopback port, gone when dropped.
//! - [`bench`]: what the benchmark binaries share (TLS connector, `/proc` readings).
//! - [`client`]: a blocking TLS (or plain) client that asserts exact bytes, with timeouts.
//!
//! Blocking std sockets on purpose: a test reads like the transcript it checks, and no test
//! runtime can hide an ordering bug of the server's. Every read has a deadline.

pub mod bench;
pub mod client;
pub mod process;
pub mod redis;

use std::path::PathBuf;

/// A loopback port free right now (the kernel's pick), for servers that cannot bind port 0
/// themselves, such as a per-atSign port range.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The Python with the SDK (PyPI `atsdk`) that the SDK tests run, named by `AT_PYTHON_SDK`
/// (`.ci/run` makes one). `None`, with a notice, when it is not set outside CI; under
/// `CI=true` a missing one is a failure, so CI can never skip these tests silently.
pub fn python_sdk() -> Option<String> {
    match std::env::var("AT_PYTHON_SDK") {
        Ok(python) => Some(python),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must set AT_PYTHON_SDK to a python with atsdk installed (see .ci/run)")
        }
        Err(_) => {
            eprintln!("skipping: AT_PYTHON_SDK is not set (see .ci/run)");
            None
        }
    }
}

/// A fresh, empty directory under the system temp dir, unique per call; removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("at-tests-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
