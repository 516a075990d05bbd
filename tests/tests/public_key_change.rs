//! Another atSign resets (a new encryption key pair), over real TLS between two atServers: @alice
//! on A, @bob on B, one directory, one cluster CA.
//!
//! When A fetches `publickey@bob` and it differs from its cached copy, A tells @alice's clients
//! as the reference does: an `atsign_pk_changed` event at `<µs>.events.__atserver@alice` and on
//! her `:selfNotifications` monitors (live and replayed; not on other monitors), her `shared_key.bob@alice` renamed `shared_key.bob.until.<ms>@alice` (so clients
//! cut a new one), and the cached key replaced. A fetch that finds the same key changes nothing.
//! Every new link from A to B asks for the key first, so a reset is noticed on the next
//! contact, not only by an explicit `plookup`. Each server on its embedded store, and each on a
//! Redis of its own.

use std::time::Duration;

use at_tests::client::{line_without_time, Client};
use at_tests::servers::{AliceAndBob, Store};
use at_tests::TempDir;

const AT_ALICE: &str = "\n@alice@";
const AT_BOB: &str = "\n@bob@";

/// The keys of @alice's `scan` reply that `keep` accepts.
fn scanned(alice: &mut Client, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let reply = alice.reply_to("scan", AT_ALICE);
    let list = reply.strip_prefix("data:").expect("a data reply");
    list.split('"')
        .skip(1)
        .step_by(2)
        .filter(|key| keep(key))
        .map(str::to_string)
        .collect()
}

fn events(alice: &mut Client) -> Vec<String> {
    scanned(alice, |key| key.ends_with(".events.__atserver@alice"))
}

#[test]
fn a_reset_atsign_is_noticed_and_told_to_the_owner_on_embedded_stores() {
    a_reset_atsign_is_noticed_and_told_to_the_owner(Store::Embedded);
}

#[test]
fn a_reset_atsign_is_noticed_and_told_to_the_owner_each_on_its_own_redis() {
    a_reset_atsign_is_noticed_and_told_to_the_owner(Store::OwnRedis);
}

fn a_reset_atsign_is_noticed_and_told_to_the_owner(store: Store) {
    let dir = TempDir::new("public-key-change");
    let quick = "peer_timeout_millis = 3000";
    let AliceAndBob {
        cluster: _cluster,
        ca,
        mut a,
        mut b,
        alice_secret,
        bob_secret: _,
        mut alice,
        mut bob,
    } = AliceAndBob::start_on(dir.path(), quick, quick, store);
    // The event is the atServer's own notice: only monitors that ask for those get it.
    let mut monitor = a.connect(&ca);
    monitor.cram_in("@alice", &alice_secret);
    monitor.send(b"monitor:selfNotifications\n");
    let mut plain_monitor = a.connect(&ca);
    plain_monitor.cram_in("@alice", &alice_secret);
    plain_monitor.send(b"monitor\n");

    // First contact: cached forever, nothing else.
    assert!(bob
        .reply_to("update:public:publickey@bob KEY-1", AT_BOB)
        .starts_with("data:"));
    assert_eq!(
        alice.reply_to("plookup:publickey@bob", AT_ALICE),
        "data:KEY-1"
    );
    let meta = alice.reply_to("llookup:meta:cached:public:publickey@bob", AT_ALICE);
    assert!(meta.contains("\"ttr\":-1"), "{meta}");
    assert!(alice
        .reply_to("update:shared_key.bob@alice SHARED-1", AT_ALICE)
        .starts_with("data:"));
    assert_eq!(
        alice.reply_to("plookup:bypassCache:true:publickey@bob", AT_ALICE),
        "data:KEY-1"
    );
    assert!(events(&mut alice).is_empty(), "the same key is no change");

    // @bob resets: the next fetch finds a new key.
    assert!(bob
        .reply_to("update:public:publickey@bob KEY-2", AT_BOB)
        .starts_with("data:"));
    assert_eq!(
        alice.reply_to("plookup:bypassCache:true:publickey@bob", AT_ALICE),
        "data:KEY-2"
    );
    let event = r#"{"category":"atProtocol","name":"atsign_pk_changed","data":{"atSign":"@bob"}}"#;
    let found = events(&mut alice);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        alice.reply_to(&format!("llookup:{}", found[0]), AT_ALICE),
        format!("data:{event}")
    );
    // Stats notifications (id -1) come too, after each write; the event's is the one that counts.
    let mut seen = String::new();
    while !seen.contains(".events.__atserver@alice\",") {
        seen.push_str(&monitor.next_line());
    }
    let line = seen
        .lines()
        .find(|line| line.contains(".events.__atserver@alice\","))
        .map(|line| line_without_time(&format!("{line}\n")))
        .expect("the event's notification");
    let id_at = line.find("\"id\":\"").expect("an id") + 6;
    let id = &line[id_at..id_at + 36];
    assert_eq!(
        line,
        format!(
            "notification: {{\"id\":\"{id}\",\"from\":\"@alice\",\"to\":\"@alice\",\"key\":\"{}\",\
             \"value\":{},\"operation\":\"update\",\"epochMillis\":<time>,\
             \"messageType\":\"MessageType.key\",\"isEncrypted\":false,\"metadata\":{{\
             \"encKeyName\":null,\"encAlgo\":null,\"ivNonce\":null,\"skeEncKeyName\":null,\
             \"skeEncAlgo\":null,\"sharedKeyEnc\":null}}}}\n",
            found[0],
            json_string(event)
        )
    );
    let plain =
        String::from_utf8_lossy(&plain_monitor.read_for(Duration::from_millis(500))).into_owned();
    assert!(!plain.contains(".events.__atserver"), "{plain}");
    // Replayed too, to the same monitors only; not listed as received.
    let mut replaying = a.connect(&ca);
    replaying.cram_in("@alice", &alice_secret);
    replaying.send(b"monitor:selfNotifications:0\n");
    let mut replayed = String::new();
    while !replayed.contains(".events.__atserver@alice\",") {
        replayed.push_str(&replaying.next_line());
    }
    let mut replaying = a.connect(&ca);
    replaying.cram_in("@alice", &alice_secret);
    replaying.send(b"monitor:0\n");
    let replayed =
        String::from_utf8_lossy(&replaying.read_for(Duration::from_millis(500))).into_owned();
    assert!(!replayed.contains(".events.__atserver"), "{replayed}");
    assert_eq!(alice.reply_to("notify:list", AT_ALICE), "data:null");
    assert_eq!(
        alice.reply_to("llookup:shared_key.bob@alice", AT_ALICE),
        "error:AT0015-key not found : shared_key.bob@alice does not exist in keystore"
    );
    let retired = scanned(&mut alice, |key| key.starts_with("shared_key.bob.until."));
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert_eq!(
        alice.reply_to(&format!("llookup:{}", retired[0]), AT_ALICE),
        "data:SHARED-1"
    );
    assert_eq!(
        alice.reply_to("llookup:cached:public:publickey@bob", AT_ALICE),
        "data:KEY-2"
    );

    // Again, found by a new link (pol, for lookup), with no plookup asked.
    assert!(bob
        .reply_to("update:@alice:phone@bob 555", AT_BOB)
        .starts_with("data:"));
    assert!(bob
        .reply_to("update:public:publickey@bob KEY-3", AT_BOB)
        .starts_with("data:"));
    assert_eq!(alice.reply_to("lookup:phone@bob", AT_ALICE), "data:555");
    assert_eq!(
        alice.reply_to("llookup:cached:public:publickey@bob", AT_ALICE),
        "data:KEY-3"
    );
    assert_eq!(events(&mut alice).len(), 2);
    let retired = scanned(&mut alice, |key| key.starts_with("shared_key.bob"));
    assert_eq!(
        retired.len(),
        1,
        "no shared key was left to rename: {retired:?}"
    );
    a.stop();
    b.stop();
}

/// `text` as a JSON string literal (the event's quotes escaped).
fn json_string(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\\\""))
}
