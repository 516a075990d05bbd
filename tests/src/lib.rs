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
