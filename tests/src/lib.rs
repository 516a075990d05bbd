//! # at-tests: what every wire test needs
//!
//! - [`process`]: start one of our binaries, learn its port from its `listening on` line, stop it.
//! - [`redis`]: a real `redis-server` on a free loopback port, gone when dropped.
//! - [`redis_cluster`]: a real Redis Cluster (three masters, three replicas) on loopback.
//! - [`proxy`]: a loopback TCP proxy a test can cut (one client losing its server).
//! - [`balancer`]: a loopback "Service" sending new connections to the nodes its `/readyz`
//!   polls find ready, with a Kubernetes-like lag (rolling updates).
//! - [`bench`]: what the benchmark binaries share (TLS connector, `/proc` readings).
//! - [`client`]: a blocking TLS (or plain) client that asserts exact bytes, with timeouts.
//! - [`fake_peer`]: a scripted fake atServer over TLS that records what it is sent.
//! - [`servers`]: independent atServers that reach each other (cluster CA, one directory).
//! - [`scenes`]: @alice and @bob on one node, on two nodes sharing Redis, or on two servers.
//! - [`local_cluster`]: `deploy/local-cluster.sh`'s Redis, directory and three nodes, on ports of
//!   their own.
//! - [`http`]: a raw HTTP/1.1 client for the HTTP endpoints (status API, metrics), with deadlines.
//! - [`strace`]: `strace` attached to a running binary, its trace read back in order.
//! - [`apkam`]: a device's `pkam` signature made with `ring` from a test key, and a monitor read
//!   notification by notification (APKAM device flows).
//!
//! Blocking std sockets on purpose: a test reads like the transcript it checks, and no test
//! runtime can hide an ordering bug of the server's. Every read has a deadline.

pub mod apkam;
pub mod balancer;
pub mod bench;
pub mod client;
pub mod fake_peer;
pub mod http;
pub mod local_cluster;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod redis_cluster;
pub mod scenes;
pub mod servers;
pub mod strace;

use std::path::PathBuf;

/// A loopback port free right now, for servers that cannot bind port 0 themselves, such as a
/// per-atSign port range.
///
/// Not the kernel's pick (`bind(0)`): that comes from the ephemeral range, which the kernel
/// also hands to outgoing connections, so a test's own clients could take the port before its
/// server binds it. These come from below that range (20000–32767), from a per-process
/// random start, never twice in one process, and are probed before being handed out.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// `count` consecutive loopback ports free right now (a per-atSign port range), the first
/// returned; picked as [`free_port`] picks one, never handed out twice in one process.
pub fn free_ports(count: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_768;
    static NEXT: std::sync::OnceLock<AtomicU32> = std::sync::OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        AtomicU32::new(
            nanos
                .wrapping_mul(31)
                .wrapping_add(std::process::id() * 7919)
                % COUNT,
        )
    });
    let count = u32::from(count.max(1));
    for _ in 0..COUNT {
        // Reserved at once, so threads asking together never get overlapping ranges.
        let start = next.fetch_add(count, Ordering::Relaxed) % COUNT;
        if start + count > COUNT {
            continue;
        }
        let free = (start..start + count)
            .all(|n| std::net::TcpListener::bind(("127.0.0.1", (FIRST + n) as u16)).is_ok());
        if free {
            return (FIRST + start) as u16;
        }
    }
    panic!(
        "no {count} free loopback ports in {FIRST}..{}",
        FIRST + COUNT
    )
}

/// The Python with the SDK (PyPI `atsdk`) that the SDK tests run, named by `AT_PYTHON_SDK`
/// (`.ci/run` makes one); `None` when the test is to be skipped (see [`python_named_by`]).
pub fn python_sdk() -> Option<String> {
    python_named_by("AT_PYTHON_SDK", "a python with atsdk==0.2.81 installed")
}

/// The Python named by the environment variable `var`, with what a test needs (`holding`).
///
/// A test needing it runs only when `var` names it. Unset, the test fails (saying how to make
/// one, or how to skip), so that a machine without it never reports the test as passed. Set
/// to `skip`, the test is skipped on purpose: `None`, after a `SKIPPED <test>` line that
/// `cargo test` shows (see [`announce_skip`]). Under `CI=true` nothing may be skipped.
pub fn python_named_by(var: &str, holding: &str) -> Option<String> {
    let in_ci = std::env::var("CI").as_deref() == Ok("true");
    match std::env::var(var) {
        Ok(value) if value == "skip" && in_ci => {
            panic!("{var}=skip under CI=true: CI runs every test (see .ci/run)")
        }
        Ok(value) if value == "skip" => {
            announce_skip(&format!("{var}=skip ({holding} is needed)"));
            None
        }
        Ok(python) => Some(python),
        Err(_) => panic!(
            "{var} is not set: set it to {holding} (.ci/run makes one under target/), \
             or to `skip` to skip this test"
        ),
    }
}

/// Says, where `cargo test` shows it whatever the outcome, that the running test is skipped
/// and why: `SKIPPED <test name>: <why>` on the process's standard error. (`eprintln!` would
/// be captured with the test's output, which is shown only for a failure; a skipped test
/// reports `ok`, so this line is what tells it from a pass.)
pub fn announce_skip(why: &str) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    // One write, so the line does not interleave with the test harness's own output.
    let line = format!("SKIPPED {test}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Runs `python script args…` with `envs`, killing it after `timeout` (the SDK has no
/// timeouts and spins forever on a closed connection); returns
/// (success, stdout, stderr).
pub fn run_python(
    python: &str,
    script: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &std::path::Path)],
    timeout: std::time::Duration,
) -> (bool, String, String) {
    let mut command = std::process::Command::new(python);
    command
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("run the Python SDK");
    // Drain both pipes while waiting: the verbose transcript can outgrow a pipe's buffer.
    let mut stdout_pipe = child.stdout.take().expect("piped stdout");
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let stdout_reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout_pipe, &mut out);
        out
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr_pipe, &mut out);
        out
    });
    let deadline = std::time::Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait for python");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let stdout = String::from_utf8_lossy(&stdout_reader.join().unwrap()).into_owned();
    let mut stderr = String::from_utf8_lossy(&stderr_reader.join().unwrap()).into_owned();
    if timed_out {
        stderr.push_str(&format!("\n(killed after {timeout:?})\n"));
    }
    (status.success() && !timed_out, stdout, stderr)
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
