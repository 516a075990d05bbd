//! "Writes are acknowledged only once fsynced" (README, the atServer), checked from outside the
//! process on the embedded store, with `strace` attached to a serving `at-server`:
//!
//! - every `update` on an owner connection is answered only after the store wrote it to its
//!   journal and an `fdatasync` of that journal returned successfully: in the trace, between
//!   the read of the request on the client's socket and the first write of the reply, every
//!   journal write is followed by a successful `fdatasync` of that file (the `kill -9` tests
//!   elsewhere would pass without any fsync: the page cache survives a killed process);
//! - with `fdatasync` made to fail (`strace -e inject=fdatasync:error=EIO`), the write is
//!   never acknowledged: the client gets `error:AT0002-…` and the connection closes; it is not
//!   visible to readers; and the store refuses every later write even once `fdatasync` works
//!   again (`StoreError::Fsync`: a disk that lost an fsync is not trusted).
//!
//! Redis-backed nodes are not traced: their durability is Redis's (`redis_faults.rs`).
//!
//! Needs `strace`, allowed to attach to a process (`.ci/run` installs it and runs as root);
//! without it these tests are skipped with a `SKIPPED` line outside CI, and fail under
//! `CI=true`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use at_tests::strace::{self, Call, Strace};
use support::{cram_in, Backend, Node};

/// What a client reads when the store fails under its command.
const AT0002: &[u8] = b"error:AT0002-DataStore exception : Internal server error\n@alice@";
/// Sequential updates traced.
const UPDATES: usize = 20;
/// The system calls that move bytes through a socket or a file, and the syncs.
const IO_CALLS: &str = "trace=read,readv,recvfrom,recvmsg,write,writev,sendto,sendmsg,\
                        pwrite64,pwritev,pwritev2,fdatasync,fsync,sync_file_range";

/// A node hosting @alice on the embedded store, its background maintenance out of the way
/// (so every journal write during a test is the test's own).
fn quiet_node() -> Node {
    let mut node = Node::start(Backend::embedded());
    node.reconfigure("maintenance_interval_secs = 86400\ncache_refresh_interval_secs = 86400\n");
    node
}

fn pid(node: &Node) -> u32 {
    node.running.as_ref().expect("serving").pid()
}

/// The node's embedded store directory, as the kernel names it (strace prints real paths).
fn store_dir(node: &Node) -> PathBuf {
    node.dir
        .path()
        .join("server/store")
        .canonicalize()
        .expect("the embedded store exists")
}

fn is_read(call: &Call) -> bool {
    matches!(
        call.name.as_str(),
        "read" | "readv" | "recvfrom" | "recvmsg"
    )
}

fn is_write(call: &Call) -> bool {
    matches!(
        call.name.as_str(),
        "write" | "writev" | "sendto" | "sendmsg" | "pwrite64" | "pwritev" | "pwritev2"
    )
}

fn in_store(call: &Call, store: &Path) -> bool {
    call.path()
        .is_some_and(|path| Path::new(path).starts_with(store))
}

/// For each request read on `client`'s connection and the first write of its reply: every
/// write to a file under `store` in between is followed, before the reply, by a successful
/// `fdatasync` (or `fsync`) of that file that started after the write returned, and there is
/// at least one such write. The number of replies so checked, or what broke the rule (with
/// the calls in between).
fn replies_follow_synced_journal_writes(
    calls: &[Call],
    client: SocketAddr,
    store: &Path,
) -> Result<usize, String> {
    let mut checked = 0;
    let mut request: Option<&Call> = None;
    for call in calls.iter().filter(|c| c.on_connection_from(client)) {
        if is_read(call) && call.result > 0 {
            request = Some(call);
            continue;
        }
        if !(is_write(call) && call.result > 0) {
            continue;
        }
        // The first write after a request: the reply begins.
        let Some(read) = request.take() else {
            continue;
        };
        let between: Vec<&Call> = calls
            .iter()
            .filter(|c| c.start > read.end && c.end < call.start)
            .collect();
        let shown = || {
            between
                .iter()
                .map(|c| format!("  {} {}({}) = {}", c.tid, c.name, c.first_arg, c.result))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let journal_writes: Vec<&&Call> = between
            .iter()
            .filter(|c| is_write(c) && in_store(c, store))
            .collect();
        if journal_writes.is_empty() {
            return Err(format!(
                "reply {checked}: no write to the store between the request and its reply:\n{}",
                shown()
            ));
        }
        for written in journal_writes {
            let synced = between.iter().any(|sync| {
                matches!(sync.name.as_str(), "fdatasync" | "fsync")
                    && sync.ok()
                    && sync.path() == written.path()
                    && sync.start > written.end
            });
            if !synced {
                return Err(format!(
                    "reply {checked}: {} written and not synced before the reply:\n{}",
                    written.first_arg,
                    shown()
                ));
            }
        }
        checked += 1;
    }
    Ok(checked)
}

#[test]
fn every_update_is_acknowledged_only_after_its_journal_write_was_fdatasynced() {
    if !strace::available_or_skip() {
        return;
    }
    let node = quiet_node();
    let mut alice = cram_in(&node);
    // The first write of a session may make keys (the signing key pair): done before tracing.
    assert!(alice
        .reply_to("update:public:warm@alice up", "\n@alice@")
        .starts_with("data:"));
    let trace = node.dir.path().join("updates.trace");
    let strace = Strace::attach(pid(&node), &["-e", IO_CALLS], &trace);
    for i in 0..UPDATES {
        let reply = alice.reply_to(&format!("update:public:k{i}@alice v{i}"), "\n@alice@");
        assert!(reply.starts_with("data:"), "update {i}: {reply}");
    }
    let calls = strace.detach();
    let checked =
        replies_follow_synced_journal_writes(&calls, alice.local_addr(), &store_dir(&node))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        checked,
        UPDATES,
        "one reply per update seen on {} in {} traced calls",
        alice.local_addr(),
        calls.len()
    );
    // And what was acknowledged reads back.
    alice.ask(
        &format!("llookup:public:k{}@alice\n", UPDATES - 1),
        &format!("data:v{}\n@alice@", UPDATES - 1),
    );
}

#[test]
fn a_write_whose_fdatasync_failed_is_refused_and_so_is_every_later_write() {
    if !strace::available_or_skip() {
        return;
    }
    let node = quiet_node();
    let mut writer = cram_in(&node);
    let mut reader = cram_in(&node);
    assert!(writer
        .reply_to("update:public:before@alice kept", "\n@alice@")
        .starts_with("data:"));

    // From now on every fdatasync fails with EIO.
    let trace = node.dir.path().join("eio.trace");
    let strace = Strace::attach(
        pid(&node),
        &[
            "-e",
            "trace=fdatasync,fsync",
            "-e",
            "inject=fdatasync:error=EIO",
        ],
        &trace,
    );
    writer.send(b"update:public:lost@alice never\n");
    writer.expect(AT0002);
    // Then the connection closes, as the reference closes it.
    writer.expect_closed(Duration::from_secs(5));
    let calls = strace.detach();
    let store = store_dir(&node);
    let failed: Vec<&Call> = calls
        .iter()
        .filter(|c| c.name == "fdatasync" && in_store(c, &store))
        .collect();
    assert!(
        !failed.is_empty()
            && failed.iter().all(|c| c
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("EIO") && e.ends_with("(INJECTED)"))),
        "the store's fdatasync was made to fail: {failed:?}"
    );

    // fdatasync works again (strace is gone), but the store no longer trusts the disk. What
    // was durable before still reads; the write that failed was never visible.
    reader.ask("llookup:public:before@alice\n", "data:kept\n@alice@");
    reader.ask(
        "llookup:public:lost@alice\n",
        "error:AT0015-key not found : public:lost@alice does not exist in keystore\n@alice@",
    );
    reader.send(b"update:public:after@alice refused\n");
    reader.expect(AT0002);
    // Then the connection closes, as the reference closes it.
    reader.expect_closed(Duration::from_secs(5));
}

/// The rule above, on traces written by hand: it holds for "journal write, fdatasync, reply",
/// and fails for a reply before the fdatasync, a failed fdatasync, and no journal write.
#[test]
fn the_sync_rule_rejects_a_reply_before_its_fdatasync() {
    let client: SocketAddr = "127.0.0.1:40112".parse().unwrap();
    let trace = |middle: &str| {
        format!(
            "7 recvfrom(9<TCP:[127.0.0.1:25000->127.0.0.1:40112]>, \"x\", 8192, 0, NULL, NULL) = 40\n\
             {middle}\
             7 sendto(9<TCP:[127.0.0.1:25000->127.0.0.1:40112]>, \"x\", 30, MSG_NOSIGNAL, NULL, 0) = 30\n"
        )
    };
    let store = Path::new("/d/store");
    let check = |middle: &str| {
        replies_follow_synced_journal_writes(&strace::parse(&trace(middle)), client, store)
    };
    let write = "8 write(12</d/store/journals/0>, \"x\", 90) = 90\n";
    let sync = "8 fdatasync(12</d/store/journals/0>) = 0\n";
    let failed = "8 fdatasync(12</d/store/journals/0>) = -1 EIO (Input/output error) (INJECTED)\n";
    assert_eq!(check(&format!("{write}{sync}")), Ok(1));
    assert!(check(write).is_err(), "no sync");
    assert!(check(&format!("{write}{failed}")).is_err(), "a failed sync");
    assert!(
        check(&format!("{sync}{write}")).is_err(),
        "synced before written"
    );
    assert!(check("").is_err(), "nothing written");
    // A reply whose sync comes after it (as a server acknowledging first would do).
    let late = format!("{}{sync}", trace(write));
    assert!(
        replies_follow_synced_journal_writes(&strace::parse(&late), client, store).is_err(),
        "synced after the reply"
    );
}
