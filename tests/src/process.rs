//! Starting our binaries as a user would, and stopping them.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a binary gets to print `listening on`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running binary; killed when dropped.
pub struct Running {
    child: Child,
    /// The address from `listening on <addr>`.
    pub addr: SocketAddr,
    /// The address from `metrics on <addr>`, when it printed one.
    pub metrics: Option<SocketAddr>,
    /// What it printed up to then (its last awaited line included).
    pub printed: Vec<String>,
}

impl Running {
    /// Starts `program args…` and waits for its `listening on` line (and `metrics on`, if `want_metrics`).
    pub fn start(
        program: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        want_metrics: bool,
    ) -> Running {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut addr = None;
        let mut metrics = None;
        let mut printed = Vec::new();
        while addr.is_none() || (want_metrics && metrics.is_none()) {
            let line = match rx.recv_timeout(START_TIMEOUT) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!("{} printed no `listening on` line", program.display());
                }
            };
            if let Some(rest) = line.strip_prefix("listening on ") {
                addr = Some(rest.trim().parse().expect("listening address"));
            } else if let Some(rest) = line.strip_prefix("metrics on ") {
                metrics = Some(rest.trim().parse().expect("metrics address"));
            }
            printed.push(line);
        }
        Running {
            child,
            addr: addr.expect("checked above"),
            metrics,
            printed,
        }
    }

    /// The process id, e.g. to send it a signal.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (what Kubernetes sends to stop a pod).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM {}", self.child.id());
    }

    /// Waits up to `within` for the process to exit; its exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process and waits for it to exit.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `program args…` to completion (an admin command) and returns what it printed.
pub fn run(program: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null());
    for (key, value) in envs {
        command.env(key, value);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
}

/// A workspace binary next to the running test executable (`target/<profile>/<name>`),
/// for tests outside the crate that owns it (those use `CARGO_BIN_EXE_<name>`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("target/<profile>/…");
    // Tests run from `target/<profile>/deps/`, benchmark binaries from `target/<profile>/`.
    let profile_dir = match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("target/<profile>/deps/.."),
        _ => dir,
    };
    profile_dir.join(name)
}
