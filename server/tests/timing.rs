//! ttl, ttb and ttr on the wire, as the owner, against the real binary over TLS
//! (docs/storage.md#key-lifetime, docs/protocol.md#metadata-fragment,
//! docs/storage.md#metadata-json): what reads and scans show before and after a key's times, and
//! the times in its metadata.
//!
//! Timing without flakiness: a key written with `ttl:T` at `sent` cannot expire before
//! `sent + T` (the server's clock started later), so a reply that *arrived* before `sent + T`
//! must still show it; after that the test polls, with a generous deadline, for the change.
//! The same holds for `ttb`. Exact times are checked in the metadata JSON, where the server's
//! own clock is used on both sides.

mod support;

use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use at_tests::client::Client;
use serde_json::Value;
use support::*;

/// How long a short-lived key lives or waits to be born, in milliseconds.
const SHORT_MS: u64 = 1500;
/// How long past its time a key may take to change on a loaded machine before the test fails.
const SLACK: Duration = Duration::from_secs(5);
/// How often to ask while waiting for a change.
const POLL: Duration = Duration::from_millis(100);

/// Which connection asks: the authenticated owner or an unauthenticated one.
#[derive(Clone, Copy)]
enum Who {
    Owner,
    Anyone,
}
use Who::{Anyone, Owner};

impl Who {
    /// The client of `self` and the end of its replies.
    fn pick<'a>(
        self,
        owner: &'a mut Client,
        anyone: &'a mut Client,
    ) -> (&'a mut Client, &'static str) {
        match self {
            Owner => (owner, "\n@alice@"),
            Anyone => (anyone, "\n@"),
        }
    }
}

/// Sends `line` and reads the reply up to `end` (newline and prompt); returns it and when it
/// arrived.
fn ask_timed(client: &mut Client, line: &str, end: &str) -> (String, Instant) {
    client.send(line.as_bytes());
    let reply = client.read_until(end.as_bytes());
    (reply, Instant::now())
}

/// Asks `line` until the reply is no longer `current`, for at most until `deadline`; returns
/// the new reply and when it arrived.
fn poll_until_changed(
    client: &mut Client,
    line: &str,
    end: &str,
    current: &str,
    deadline: Instant,
) -> (String, Instant) {
    loop {
        let (reply, at) = ask_timed(client, line, end);
        if reply != current {
            return (reply, at);
        }
        assert!(
            at < deadline,
            "{line:?} still answers {current:?} at the deadline"
        );
        sleep(POLL);
    }
}

/// `data:<json><end>` → the JSON (`end` is the newline and prompt).
fn json_of(reply: &str, end: &str) -> Value {
    let json = reply
        .strip_prefix("data:")
        .and_then(|rest| rest.strip_suffix(end))
        .unwrap_or_else(|| panic!("not a data reply: {reply:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// The owner's metadata of `key` (`llookup:meta`).
fn meta(owner: &mut Client, key: &str) -> Value {
    owner.send(format!("llookup:meta:{key}\n").as_bytes());
    json_of(&owner.read_until(b"\n@alice@"), "\n@alice@")
}

/// A metadata date, `yyyy-MM-dd HH:mm:ss.mmmZ` (docs/storage.md#metadata-json), as milliseconds
/// since the epoch.
fn millis(value: &Value) -> i64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a date: {value}"));
    let b = text.as_bytes();
    let shape_ok = text.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z';
    assert!(shape_ok, "not yyyy-MM-dd HH:mm:ss.mmmZ: {text}");
    let n = |range: std::ops::Range<usize>| -> i64 {
        text[range]
            .parse()
            .unwrap_or_else(|_| panic!("bad date {text}"))
    };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
}

fn wall_clock_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The field `name` of `json` as an integer.
fn int(json: &Value, name: &str) -> i64 {
    json[name]
        .as_i64()
        .unwrap_or_else(|| panic!("{name} is not an integer in {json}"))
}

// Pure arithmetic of the test's own: no server, no backend.
#[test]
fn metadata_dates_parse_as_utc_milliseconds() {
    assert_eq!(millis(&Value::from("1970-01-01 00:00:00.000Z")), 0);
    assert_eq!(
        millis(&Value::from("2024-10-24 01:35:02.123Z")),
        1_729_733_702_123
    );
    assert_eq!(
        millis(&Value::from("2000-02-29 23:59:59.999Z")),
        951_868_799_999
    );
}

fn a_ttl_key_is_readable_until_it_expires_then_reads_null_once_and_is_gone(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    let mut anyone = node.client();
    let before = wall_clock_millis();
    let sent = Instant::now();
    owner.ask(
        &format!("update:ttl:{SHORT_MS}:public:brief.app@alice v\n"),
        "data:0\n@alice@",
    );
    let expiry = sent + Duration::from_millis(SHORT_MS);

    // Before expiry every view shows it. A reply that came back after `expiry` proves
    // nothing either way, so it is only checked when it came back in time.
    let reads = [
        (Owner, "llookup:public:brief.app@alice\n", "data:v\n@alice@"),
        (Anyone, "lookup:brief.app@alice\n", "data:v\n@"),
        (
            Owner,
            "scan brief\n",
            "data:[\"public:brief.app@alice\"]\n@alice@",
        ),
        (Anyone, "scan brief\n", "data:[\"brief.app@alice\"]\n@"),
        (Owner, "llookup:public:brief.app@alice\n", "data:v\n@alice@"),
    ];
    let mut checked_in_time = 0;
    for (who, line, want) in reads {
        let (client, prompt) = who.pick(&mut owner, &mut anyone);
        let (reply, at) = ask_timed(client, line, prompt);
        if at < expiry {
            assert_eq!(reply, want, "{line:?} before expiry");
            checked_in_time += 1;
        }
    }
    owner.send(b"llookup:meta:public:brief.app@alice\n");
    let (reply, at) = (owner.read_until(b"\n@alice@"), Instant::now());
    if at < expiry {
        let m = json_of(&reply, "\n@alice@");
        let created = millis(&m["createdAt"]);
        assert!(
            (before - 1000..=wall_clock_millis() + 1000).contains(&created),
            "createdAt {created} is not now ({before}): {m}"
        );
        assert_eq!(m["updatedAt"], m["createdAt"], "{m}");
        assert_eq!(millis(&m["expiresAt"]), created + SHORT_MS as i64, "{m}");
        assert_eq!(int(&m, "ttl"), SHORT_MS as i64, "{m}");
        assert_eq!(int(&m, "version"), 0, "{m}");
        assert_eq!(m["status"], "active", "{m}");
        assert!(m.get("availableAt").is_none(), "{m}");
        assert!(m.get("ttb").is_none(), "{m}");
        checked_in_time += 1;
    }
    owner.send(b"llookup:all:public:brief.app@alice\n");
    let (reply, at) = (owner.read_until(b"\n@alice@"), Instant::now());
    if at < expiry {
        let all = json_of(&reply, "\n@alice@");
        assert_eq!(all["key"], "public:brief.app@alice", "{all}");
        assert_eq!(all["data"], "v", "{all}");
        let m = &all["metaData"];
        assert_eq!(
            millis(&m["expiresAt"]),
            millis(&m["createdAt"]) + SHORT_MS as i64,
            "{all}"
        );
        checked_in_time += 1;
    }
    // On any sane machine all of the above take a few milliseconds.
    assert!(
        checked_in_time > 0,
        "nothing came back within {SHORT_MS} ms"
    );

    // Scans drop it once it has expired (the record is still stored: scans only filter).
    let (reply, at) = poll_until_changed(
        &mut owner,
        "scan brief\n",
        "\n@alice@",
        "data:[\"public:brief.app@alice\"]\n@alice@",
        expiry + SLACK,
    );
    assert_eq!(reply, "data:[]\n@alice@");
    assert!(at >= expiry, "gone {:?} early", expiry - at);
    anyone.ask("scan brief\n", "data:[]\n@");
    // An expired key that is still stored reads `data:null` (docs/storage.md#key-lifetime: an
    // inactive key, not yet born or expired, reads data:null; a missing one is AT0015); the
    // server removes it on that read, so from then on it is missing: AT0015, worded as for any
    // missing key.
    owner.ask("llookup:public:brief.app@alice\n", "data:null\n@alice@");
    owner.ask(
        "llookup:public:brief.app@alice\n",
        "error:AT0015-key not found : public:brief.app@alice does not exist in keystore\n@alice@",
    );
    owner.ask(
        "llookup:meta:public:brief.app@alice\n",
        "error:AT0015-key not found : public:brief.app@alice does not exist in keystore\n@alice@",
    );
    anyone.ask(
        "lookup:brief.app@alice\n",
        "error:AT0015-Exception: public:brief.app@alice does not exist in keystore\n@",
    );
    owner.ask("scan brief\n", "data:[]\n@alice@");
}

fn an_expired_key_read_first_by_anyone_reads_null_then_is_missing(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    let mut anyone = node.client();
    let sent = Instant::now();
    owner.ask(
        &format!("update:ttl:{SHORT_MS}:public:gone@alice v\n"),
        "data:0\n@alice@",
    );
    let expiry = sent + Duration::from_millis(SHORT_MS);
    let (reply, at) = ask_timed(&mut anyone, "lookup:gone@alice\n", "\n@");
    if at < expiry {
        assert_eq!(reply, "data:v\n@");
    }
    let (reply, at) = poll_until_changed(
        &mut anyone,
        "lookup:gone@alice\n",
        "\n@",
        "data:v\n@",
        expiry + SLACK,
    );
    assert_eq!(reply, "data:null\n@");
    assert!(at >= expiry, "gone {:?} early", expiry - at);
    anyone.ask(
        "lookup:gone@alice\n",
        "error:AT0015-Exception: public:gone@alice does not exist in keystore\n@",
    );
    owner.ask(
        "llookup:public:gone@alice\n",
        "error:AT0015-key not found : public:gone@alice does not exist in keystore\n@alice@",
    );
}

fn a_ttb_key_reads_null_and_is_not_listed_until_it_is_born(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    let mut anyone = node.client();
    let sent = Instant::now();
    owner.ask(
        &format!("update:ttb:{SHORT_MS}:public:later.app@alice v\n"),
        "data:0\n@alice@",
    );
    let birth = sent + Duration::from_millis(SHORT_MS);

    // Before birth: stored, but every read is `data:null` and scans leave it out
    // (docs/storage.md#key-lifetime).
    let reads = [
        (
            Owner,
            "llookup:public:later.app@alice\n",
            "data:null\n@alice@",
        ),
        (
            Owner,
            "llookup:meta:public:later.app@alice\n",
            "data:null\n@alice@",
        ),
        (Anyone, "lookup:later.app@alice\n", "data:null\n@"),
        (Owner, "scan later\n", "data:[]\n@alice@"),
        (Anyone, "scan later\n", "data:[]\n@"),
        (
            Owner,
            "llookup:public:later.app@alice\n",
            "data:null\n@alice@",
        ),
    ];
    let mut checked_in_time = 0;
    for (who, line, want) in reads {
        let (client, prompt) = who.pick(&mut owner, &mut anyone);
        let (reply, at) = ask_timed(client, line, prompt);
        if at < birth {
            assert_eq!(reply, want, "{line:?} before birth");
            checked_in_time += 1;
        }
    }
    assert!(
        checked_in_time > 0,
        "nothing came back within {SHORT_MS} ms"
    );

    // Born: visible everywhere, never before its time.
    let (reply, at) = poll_until_changed(
        &mut owner,
        "llookup:public:later.app@alice\n",
        "\n@alice@",
        "data:null\n@alice@",
        birth + SLACK,
    );
    assert_eq!(reply, "data:v\n@alice@");
    assert!(at >= birth, "born {:?} early", birth - at);
    anyone.ask("lookup:later.app@alice\n", "data:v\n@");
    owner.ask("scan later\n", "data:[\"public:later.app@alice\"]\n@alice@");
    anyone.ask("scan later\n", "data:[\"later.app@alice\"]\n@");
    let m = meta(&mut owner, "public:later.app@alice");
    assert_eq!(int(&m, "ttb"), SHORT_MS as i64, "{m}");
    assert_eq!(
        millis(&m["availableAt"]),
        millis(&m["createdAt"]) + SHORT_MS as i64,
        "{m}"
    );
    assert!(m.get("expiresAt").is_none(), "{m}");
    assert!(m.get("ttl").is_none(), "{m}");
}

fn ttr_sets_refresh_at_in_seconds_and_ccd_defaults_to_false(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask("update:ttr:3600:public:fresh@alice v\n", "data:0\n@alice@");
    let m = meta(&mut owner, "public:fresh@alice");
    // ttr is seconds in the reference's arithmetic, not the spec's ms
    // (docs/protocol.md#metadata-fragment, docs/protocol.md#spec-and-reference).
    assert_eq!(
        millis(&m["refreshAt"]),
        millis(&m["updatedAt"]) + 3_600_000,
        "{m}"
    );
    assert_eq!(int(&m, "ttr"), 3600, "{m}");
    assert_eq!(m["ccd"], Value::Bool(false), "{m}");
    assert!(m.get("expiresAt").is_none(), "{m}");

    // ttr:-1 is "cache forever": no refreshAt; ccd as given.
    owner.ask(
        "update:ttr:-1:ccd:true:public:forever@alice v\n",
        "data:1\n@alice@",
    );
    let m = meta(&mut owner, "public:forever@alice");
    assert_eq!(int(&m, "ttr"), -1, "{m}");
    assert_eq!(m["ccd"], Value::Bool(true), "{m}");
    assert!(m.get("refreshAt").is_none(), "{m}");

    // Without ttr there is no ccd either (docs/protocol.md#metadata-fragment: ccd is null unless
    // ttr is set).
    owner.ask("update:public:plain@alice v\n", "data:2\n@alice@");
    let m = meta(&mut owner, "public:plain@alice");
    for absent in [
        "ttr",
        "ccd",
        "refreshAt",
        "ttl",
        "expiresAt",
        "ttb",
        "availableAt",
    ] {
        assert!(m.get(absent).is_none(), "{absent} in {m}");
    }
    // The key itself is an ordinary one: it reads and lists now.
    owner.ask("llookup:public:fresh@alice\n", "data:v\n@alice@");
    let mut anyone = node.client();
    anyone.ask("lookup:fresh@alice\n", "data:v\n@");
}

fn an_update_without_ttl_keeps_the_ttl_and_counts_it_from_the_new_update(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask(
        "update:ttl:600000:public:kept@alice one\n",
        "data:0\n@alice@",
    );
    let first = meta(&mut owner, "public:kept@alice");
    assert_eq!(
        millis(&first["expiresAt"]),
        millis(&first["createdAt"]) + 600_000,
        "{first}"
    );
    // Make the second update's clock visibly later than the first's.
    sleep(Duration::from_millis(20));
    // Metadata merge (docs/protocol.md#update): fields the command leaves out keep their values;
    // the times that follow from them are computed again from this update.
    owner.ask("update:public:kept@alice two\n", "data:1\n@alice@");
    let second = meta(&mut owner, "public:kept@alice");
    assert_eq!(int(&second, "ttl"), 600_000, "{second}");
    assert_eq!(second["createdAt"], first["createdAt"], "{second}");
    assert!(
        millis(&second["updatedAt"]) > millis(&first["updatedAt"]),
        "{first} then {second}"
    );
    assert_eq!(
        millis(&second["expiresAt"]),
        millis(&second["updatedAt"]) + 600_000,
        "{second}"
    );
    assert_eq!(int(&second, "version"), 1, "{second}");
    owner.ask("llookup:public:kept@alice\n", "data:two\n@alice@");

    // ttl:0 means "does not expire": ttl 0 is kept, expiresAt goes.
    owner.ask("update:ttl:0:public:kept@alice three\n", "data:2\n@alice@");
    let third = meta(&mut owner, "public:kept@alice");
    assert_eq!(int(&third, "ttl"), 0, "{third}");
    assert!(third.get("expiresAt").is_none(), "{third}");
    assert_eq!(int(&third, "version"), 2, "{third}");

    // update:meta merges the same way: a new ttl, the value untouched.
    owner.ask(
        "update:meta:public:kept@alice:ttl:900000\n",
        "data:3\n@alice@",
    );
    let fourth = meta(&mut owner, "public:kept@alice");
    assert_eq!(int(&fourth, "ttl"), 900_000, "{fourth}");
    assert_eq!(
        millis(&fourth["expiresAt"]),
        millis(&fourth["updatedAt"]) + 900_000,
        "{fourth}"
    );
    owner.ask("llookup:public:kept@alice\n", "data:three\n@alice@");
}

fn a_short_ttl_kept_by_a_later_update_still_expires(backend: Backend) {
    let node = Node::start(backend);
    let mut owner = cram_in(&node);
    owner.ask(
        &format!("update:ttl:{SHORT_MS}:public:again@alice one\n"),
        "data:0\n@alice@",
    );
    // The second update carries no ttl: the kept ttl counts from this update.
    let sent = Instant::now();
    owner.ask("update:public:again@alice two\n", "data:1\n@alice@");
    let expiry = sent + Duration::from_millis(SHORT_MS);
    let (reply, at) = ask_timed(&mut owner, "llookup:public:again@alice\n", "\n@alice@");
    if at < expiry {
        assert_eq!(reply, "data:two\n@alice@");
    }
    let (reply, at) = poll_until_changed(
        &mut owner,
        "llookup:public:again@alice\n",
        "\n@alice@",
        "data:two\n@alice@",
        expiry + SLACK,
    );
    assert_eq!(reply, "data:null\n@alice@");
    assert!(at >= expiry, "gone {:?} early", expiry - at);
}

both_backends! {
    a_ttl_key_is_readable_until_it_expires_then_reads_null_once_and_is_gone,
    an_expired_key_read_first_by_anyone_reads_null_then_is_missing,
    a_ttb_key_reads_null_and_is_not_listed_until_it_is_born,
    ttr_sets_refresh_at_in_seconds_and_ccd_defaults_to_false,
    an_update_without_ttl_keeps_the_ttl_and_counts_it_from_the_new_update,
    a_short_ttl_kept_by_a_later_update_still_expires,
}
