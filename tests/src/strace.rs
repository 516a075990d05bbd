//! `strace` attached to a running binary, and its trace read back as calls in the order they
//! happened: what the durability tests use to see, from outside the process, which system
//! calls an acknowledgement came after (and to make `fdatasync` fail on purpose).
//!
//! The trace is `strace -f -yy -o FILE`: one line per call, prefixed by the thread id, each
//! file descriptor decorated with what it is (`7</…/store/journals/0>`,
//! `9<TCP:[127.0.0.1:25000->127.0.0.1:40112]>`). A call interrupted by another thread's is
//! split in two lines (`<unfinished ...>`, `<... name resumed>`); [`Call`] keeps both
//! positions.
//!
//! Order: strace stops every traced thread at each call's entry and exit and handles one stop
//! at a time, and a call runs only after its entry stop was handled, so if a call's exit line
//! comes before another call's entry line, the first call had returned before the second one
//! started. That is the only order these tests rely on; timestamps are not used.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long attaching to every thread of a process may take.
const ATTACH_WITHIN: Duration = Duration::from_secs(20);

/// Whether `strace` can attach to a process here (it is installed, and ptrace is allowed).
/// If not: under `CI=true` a failure (`.ci/run` installs it, as root); elsewhere `false`,
/// after a `SKIPPED` line that `cargo test` shows.
pub fn available_or_skip() -> bool {
    let why = match can_attach() {
        Ok(()) => return true,
        Err(why) => why,
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}, and CI runs every test (.ci/run installs strace)");
    }
    crate::announce_skip(&format!("{why} (apt-get install -y strace; as root)"));
    false
}

/// Attaches to a `sleep` of this process's own, as the tests attach to a server they started.
fn can_attach() -> Result<(), String> {
    let installed = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        return Err("strace is not installed".into());
    }
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .spawn()
        .map_err(|e| format!("cannot start sleep: {e}"))?;
    let mut strace = Command::new("strace")
        .args(["-o", "/dev/null", "-p", &sleeper.id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start strace: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let outcome = loop {
        if every_thread_traced_by(sleeper.id(), strace.id()) {
            break Ok(());
        }
        if let Ok(Some(status)) = strace.try_wait() {
            break Err(format!("strace cannot attach to a process here ({status})"));
        }
        if Instant::now() >= deadline {
            break Err("strace did not attach to a process within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for child in [&mut strace, &mut sleeper] {
        let _ = child.kill();
        let _ = child.wait();
    }
    outcome
}

/// `strace` attached to one process (all its threads, and the threads it starts later).
pub struct Strace {
    child: Option<Child>,
    out: PathBuf,
}

impl Strace {
    /// Attaches to every thread of `pid` with `strace -f -yy -o <out> <options…>`, and returns
    /// once each of them is traced (so nothing the test does afterwards escapes the trace).
    pub fn attach(pid: u32, options: &[&str], out: &Path) -> Strace {
        let child = Command::new("strace")
            .args(["-f", "-yy", "-o"])
            .arg(out)
            .args(options)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start strace");
        let tracer = child.id();
        let mut strace = Strace {
            child: Some(child),
            out: out.to_path_buf(),
        };
        let deadline = Instant::now() + ATTACH_WITHIN;
        while !every_thread_traced_by(pid, tracer) {
            if let Some(status) = strace.child.as_mut().and_then(|c| c.try_wait().ok()?) {
                panic!("strace exited before attaching to {pid}: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "strace did not attach to every thread of {pid} within {ATTACH_WITHIN:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        strace
    }

    /// Detaches (SIGINT: strace lets the process go on, untraced) and returns the calls
    /// traced, in order.
    pub fn detach(mut self) -> Vec<Call> {
        let mut child = self.child.take().expect("attached");
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("strace did not detach within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&self.out).expect("the trace file");
        parse(&text)
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether every thread of `pid` has `tracer` as its tracer.
fn every_thread_traced_by(pid: u32, tracer: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in tasks.flatten() {
        any = true;
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let traced = status
            .lines()
            .find_map(|line| line.strip_prefix("TracerPid:"))
            .is_some_and(|id| id.trim() == tracer.to_string());
        if !traced {
            return false;
        }
    }
    any
}

/// One traced system call.
#[derive(Debug, Clone)]
pub struct Call {
    /// The thread that made it.
    pub tid: u32,
    pub name: String,
    /// Its first argument as strace printed it: for a file descriptor, with what it is
    /// (`7</tmp/…/journals/0>`).
    pub first_arg: String,
    /// What it returned: a number, or `-1` (see [`Call::error`]).
    pub result: i64,
    /// The error name of a failed call (`EIO`, `EAGAIN`), with ` (INJECTED)` when strace made
    /// it fail.
    pub error: Option<String>,
    /// Index of the line where it started (its entry).
    pub start: usize,
    /// Index of the line where it returned.
    pub end: usize,
}

impl Call {
    /// Whether it returned without an error.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// Whether its file descriptor is the TCP connection whose other end is `peer` (the
    /// client's own address).
    pub fn on_connection_from(&self, peer: std::net::SocketAddr) -> bool {
        self.first_arg.contains("<TCP:[") && self.first_arg.contains(&format!("->{peer}]"))
    }

    /// The path of its file descriptor, when it is a file (`7</a/b>` → `/a/b`).
    pub fn path(&self) -> Option<&str> {
        let inside = self.first_arg.split_once('<')?.1.strip_suffix('>')?;
        inside.starts_with('/').then_some(inside)
    }
}

/// The calls of a trace written with `-f -yy -o`, in the order they returned.
pub fn parse(text: &str) -> Vec<Call> {
    // Unfinished calls by thread: (name, text so far, start line).
    let mut open: std::collections::HashMap<u32, (String, String, usize)> = Default::default();
    let mut calls = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let Some((tid, rest)) = line.trim_start().split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(tid) = tid.parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            if let Some((name, args)) = head.split_once('(') {
                open.insert(tid, (name.to_string(), args.to_string(), index));
            }
            continue;
        }
        let (name, args, start) = match rest.strip_prefix("<... ") {
            Some(resumed) => {
                let Some((name, tail)) = resumed.split_once(" resumed>") else {
                    continue;
                };
                match open.remove(&tid) {
                    Some((_, args, start)) => (name.to_string(), format!("{args}{tail}"), start),
                    // Resumed from before the trace began (attached mid-call).
                    None => (name.to_string(), tail.to_string(), index),
                }
            }
            None => match rest.split_once('(') {
                Some((name, args)) => (name.to_string(), args.to_string(), index),
                None => continue,
            },
        };
        // `…) = 2`, the `=` aligned with spaces in front of it.
        let Some((call_args, outcome)) = args.rsplit_once(" = ") else {
            continue;
        };
        if !call_args.trim_end().ends_with(')') {
            continue;
        }
        let mut words = outcome.split_whitespace();
        let Some(result) = words.next().and_then(|r| r.parse::<i64>().ok()) else {
            continue;
        };
        let error = (result < 0).then(|| words.collect::<Vec<_>>().join(" "));
        let call_args = call_args.trim_end();
        let call_args = call_args.strip_suffix(')').unwrap_or(call_args);
        // An unfinished one-argument call leaves a space before its `)`.
        let first_arg = call_args.split(", ").next().unwrap_or("").trim_end();
        calls.push(Call {
            tid,
            name,
            first_arg: first_arg.to_string(),
            result,
            error,
            start,
            end: index,
        });
    }
    calls.sort_by_key(|call| call.end);
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_calls_keep_where_they_started_and_returned() {
        let trace = "\
101   write(7</d/store/journals/0>, \"ab\", 2 <unfinished ...>
102   sendto(9<TCP:[127.0.0.1:25000->127.0.0.1:40112]>, \"\\27\", 1, MSG_NOSIGNAL, NULL, 0) = 1
101   <... write resumed>)              = 2
101   fdatasync(7</d/store/journals/0>) = -1 EIO (Input/output error) (INJECTED)
101   fdatasync(7</d/store/journals/0> <unfinished ...>
101   <... fdatasync resumed>)          = 0
102   recvfrom(9<TCP:[127.0.0.1:25000->127.0.0.1:40112]>, 0x7f, 8192, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable)
101   +++ exited with 0 +++
";
        let calls = parse(trace);
        let names: Vec<_> = calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["sendto", "write", "fdatasync", "fdatasync", "recvfrom"]
        );
        assert_eq!((calls[1].start, calls[1].end, calls[1].result), (0, 2, 2));
        assert_eq!(calls[1].path(), Some("/d/store/journals/0"));
        assert_eq!(calls[2].path(), Some("/d/store/journals/0"));
        assert_eq!(calls[3].path(), Some("/d/store/journals/0"));
        assert!(calls[3].ok());
        let peer = "127.0.0.1:40112".parse().unwrap();
        assert!(calls[0].on_connection_from(peer) && calls[0].ok());
        assert!(!calls[1].on_connection_from(peer));
        assert_eq!(
            calls[2].error.as_deref(),
            Some("EIO (Input/output error) (INJECTED)")
        );
        assert_eq!(calls[4].error.as_deref().map(|e| &e[..6]), Some("EAGAIN"));
    }
}
