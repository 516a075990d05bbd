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
/// for tests outside the crate that owns it (those use `CARGO_BIN_EXE_<name>`), checked to be
/// built from the sources as they are now.
///
/// Nothing makes cargo build another package's binary for this crate's tests, so
/// `cargo test -p at-tests` would otherwise run whatever binary an earlier build left. So,
/// once per test process and binary, the binary must be newer than every source file cargo
/// recorded it was built from (its dep-info, `target/<profile>/<name>.d`: the same files and
/// the same comparison cargo's own freshness check uses). If it is not, under cargo (`CARGO`
/// is set, as `cargo test` and `cargo run` set it) it is built now with
/// `cargo build -p <package> --bin <name>` in the same profile and target directory, and
/// checked again; without cargo, or if it is still stale, the test fails saying so.
///
/// (Building unconditionally would be simpler, but `cargo build -p at-server` resolves
/// features without the dev-dependencies `cargo test --workspace` brings in, so it rebuilds
/// the binary, and the next `cargo test` rebuilds it back: a minute or two each time.)
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("target/<profile>/…");
    // Tests run from `target/<profile>/deps/`, benchmark binaries from `target/<profile>/`.
    let profile_dir = match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("target/<profile>/deps/.."),
        _ => dir,
    };
    let binary = profile_dir.join(name);
    if let Err(why) = ensure_fresh(name, profile_dir, &binary) {
        panic!("{why}");
    }
    binary
}

/// The package that builds binary `name`.
fn package_of(name: &str) -> &'static str {
    match name {
        "at-server" => "at-server",
        "at-directory" => "at-directory",
        other => panic!("workspace_binary: no package known for {other}"),
    }
}

/// [`workspace_binary`]'s freshness guarantee, once per process and binary.
fn ensure_fresh(name: &str, profile_dir: &Path, binary: &Path) -> Result<(), String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static DONE: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    // Held while building: tests of one process asking at once wait for one build.
    let mut done = DONE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(outcome) = done.get(name) {
        return outcome.clone();
    }
    let outcome = match (stale_because(binary), std::env::var_os("CARGO")) {
        (None, _) => Ok(()),
        (Some(why), None) => Err(format!(
            "{why}: build it (`cargo build --workspace`), or run the tests under cargo, which \
             builds it"
        )),
        (Some(_), Some(cargo)) => cargo_build(&cargo, package_of(name), name, profile_dir)
            .and_then(|()| match stale_because(binary) {
                None => Ok(()),
                Some(why) => Err(format!("{why}, even after cargo built it")),
            }),
    };
    done.insert(name.to_string(), outcome.clone());
    outcome
}

/// Why `binary` is not current: missing, no dep-info, or older than a file it is built from.
fn stale_because(binary: &Path) -> Option<String> {
    let built = match std::fs::metadata(binary).and_then(|m| m.modified()) {
        Ok(built) => built,
        Err(e) => return Some(format!("{} cannot be read ({e})", binary.display())),
    };
    let dep_info = binary.with_extension("d");
    let text = match std::fs::read_to_string(&dep_info) {
        Ok(text) => text,
        Err(e) => return Some(format!("{} cannot be read ({e})", dep_info.display())),
    };
    for source in dep_info_sources(&text) {
        match std::fs::metadata(&source).and_then(|m| m.modified()) {
            Ok(changed) if changed <= built => {}
            Ok(_) => {
                return Some(format!(
                    "{} is older than {}",
                    binary.display(),
                    source.display()
                ))
            }
            Err(_) => {
                return Some(format!(
                    "{} was built from {}, which is gone",
                    binary.display(),
                    source.display()
                ))
            }
        }
    }
    None
}

/// The prerequisites of a Makefile-style dep-info file (`target: a.rs b\ c.rs …`).
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let Some((_, prerequisites)) = line.split_once(": ") else {
            continue;
        };
        let mut current = String::new();
        let mut chars = prerequisites.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => current.extend(chars.next()),
                ' ' => {
                    if !current.is_empty() {
                        sources.push(PathBuf::from(std::mem::take(&mut current)));
                    }
                }
                other => current.push(other),
            }
        }
        if !current.is_empty() {
            sources.push(PathBuf::from(current));
        }
    }
    sources
}

/// `cargo build -p <package> --bin <name>` into `profile_dir` (its profile, its target dir).
fn cargo_build(
    cargo: &std::ffi::OsStr,
    package: &str,
    name: &str,
    profile_dir: &Path,
) -> Result<(), String> {
    let profile = profile_dir
        .file_name()
        .and_then(|p| p.to_str())
        .ok_or("target/<profile> has no name")?;
    let target_dir = profile_dir
        .parent()
        .ok_or("target/<profile> has no parent")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root (this crate is <root>/tests)");
    let mut command = Command::new(cargo);
    command
        .args(["build", "--quiet", "-p", package, "--bin", name])
        .current_dir(root)
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null());
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    let out = command
        .output()
        .map_err(|e| format!("running cargo to build {name}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build -p {package} --bin {name} ({profile}) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_lists_every_prerequisite_with_escaped_spaces() {
        let text = "/t/debug/at-server: /w/a.rs /w/my\\ dir/b.rs\n\n/w/a.rs:\n";
        assert_eq!(
            dep_info_sources(text),
            [PathBuf::from("/w/a.rs"), PathBuf::from("/w/my dir/b.rs")]
        );
    }

    #[test]
    fn a_binary_older_than_a_source_is_stale_and_a_newer_one_is_not() {
        let dir = crate::TempDir::new("freshness");
        let (source, binary) = (dir.path().join("main.rs"), dir.path().join("bin"));
        std::fs::write(&source, "fn main() {}").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&binary, "built").unwrap();
        std::fs::write(
            binary.with_extension("d"),
            format!("{}: {}\n", binary.display(), source.display()),
        )
        .unwrap();
        assert_eq!(stale_because(&binary), None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&source, "fn main() { changed() }").unwrap();
        let why = stale_because(&binary).expect("stale");
        assert!(why.contains("is older than"), "{why}");
        std::fs::remove_file(binary.with_extension("d")).unwrap();
        assert!(
            stale_because(&binary).is_some(),
            "no dep-info: not known fresh"
        );
    }
}
