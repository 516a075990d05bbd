//! Background maintenance against the real binary over TLS (docs/storage.md#expiry-and-compaction):
//! a key whose ttl has passed is removed although nobody reads it, and `sync` shows its `-`
//! entry.
//!
//! Bounded in time: with `maintenance_interval_secs = 1` the key expires a second after it is
//! written and a round runs every second, so it is gone after about two; the test polls `sync`
//! (which reads the log without removing anything) for at most [`DEADLINE`].

mod support;

use std::thread::sleep;
use std::time::{Duration, Instant};

use support::*;

/// How long the removal may take on a loaded machine before the test fails.
const DEADLINE: Duration = Duration::from_secs(8);
/// How often to ask meanwhile.
const POLL: Duration = Duration::from_millis(200);

fn an_expired_key_that_nobody_reads_is_removed_with_a_delete_entry(backend: Backend) {
    let mut node = Node::start(backend);
    node.reconfigure("maintenance_interval_secs = 1\n");
    let mut owner = cram_in(&node);
    owner.ask("update:public:kept.maint@alice v\n", "data:0\n@alice@");
    owner.ask(
        "update:ttl:1000:public:gone.maint@alice v\n",
        "data:1\n@alice@",
    );

    let deleted = r#"{"atKey":"public:gone.maint@alice","value":null,"metadata":null,"commitId":2,"operation":"-"}"#;
    let kept = r#"data:[{"atKey":"public:kept.maint@alice","value":"v","metadata":{"#;
    let end = format!("\"commitId\":0,\"operation\":\"*\"}},{deleted}]\n@alice@");
    // One pass removes the key (the delete entry) and then compacts the log (the update's
    // entry goes): a sync between the two sees both, so wait for the end state.
    let asked = Instant::now();
    let log = loop {
        owner.send(b"sync:from:-1:limit:10\n");
        let reply = owner.read_until(b"\n@alice@");
        if (reply.starts_with(kept) && reply.ends_with(&end)) || asked.elapsed() > DEADLINE {
            break reply;
        }
        sleep(POLL);
    };
    assert!(
        log.starts_with(kept) && log.ends_with(&end),
        "no delete entry after the kept key's within {DEADLINE:?}: {log}"
    );
    // Removed, not only hidden: an expired key still stored reads as `data:null`.
    owner.ask(
        "llookup:public:gone.maint@alice\n",
        "error:AT0015-key not found : public:gone.maint@alice does not exist in keystore\n@alice@",
    );
    owner.ask("llookup:public:kept.maint@alice\n", "data:v\n@alice@");
}

both_backends! {
    an_expired_key_that_nobody_reads_is_removed_with_a_delete_entry,
}
