//! The cache refresh job over real TLS between two atServers (@alice on A, @bob on B, one
//! directory, one cluster CA), with A's job running every second: cached copies whose
//! `refreshAt` has come are asked of @bob's server again without anyone looking them up. A
//! changed public key is kept anew, a shared key @bob deleted (without `ccd`, so no notification
//! removed it) is dropped, and a copy with ttr −1 is never asked for again. Each server on its
//! embedded store, and each on a Redis of its own.

use at_tests::servers::{eventually, AliceAndBob, Store};
use at_tests::TempDir;

const AT_ALICE: &str = "\n@alice@";
const AT_BOB: &str = "\n@bob@";

#[test]
fn due_cached_copies_are_asked_for_again_on_embedded_stores() {
    due_cached_copies_are_asked_for_again(Store::Embedded);
}

#[test]
fn due_cached_copies_are_asked_for_again_each_on_its_own_redis() {
    due_cached_copies_are_asked_for_again(Store::OwnRedis);
}

fn due_cached_copies_are_asked_for_again(store: Store) {
    let dir = TempDir::new("cache-refresh");
    let settings = "peer_timeout_millis = 3000\ncache_refresh_interval_secs = 1";
    let mut scene =
        AliceAndBob::start_on(dir.path(), settings, "peer_timeout_millis = 3000", store);
    let (alice, bob) = (&mut scene.alice, &mut scene.bob);

    for line in [
        "update:ttr:1:public:location@bob paris",
        "update:ttr:1:@alice:phone@bob 1",
        "update:ttr:-1:public:forever@bob v1",
    ] {
        assert!(bob.reply_to(line, AT_BOB).starts_with("data:"), "{line}");
    }
    assert_eq!(
        alice.reply_to("plookup:location@bob", AT_ALICE),
        "data:paris"
    );
    assert_eq!(alice.reply_to("lookup:phone@bob", AT_ALICE), "data:1");
    assert_eq!(alice.reply_to("plookup:forever@bob", AT_ALICE), "data:v1");

    for line in [
        "update:ttr:1:public:location@bob london",
        "delete:@alice:phone@bob",
        "update:ttr:-1:public:forever@bob v2",
    ] {
        assert!(bob.reply_to(line, AT_BOB).starts_with("data:"), "{line}");
    }
    // Nobody looks them up on A: the job does.
    eventually(|| alice.reply_to("llookup:cached:public:location@bob", AT_ALICE) == "data:london");
    eventually(|| {
        alice.reply_to("llookup:cached:@alice:phone@bob", AT_ALICE)
            == "error:AT0015-key not found : cached:@alice:phone@bob does not exist in keystore"
    });
    assert_eq!(
        alice.reply_to("llookup:cached:public:forever@bob", AT_ALICE),
        "data:v1",
        "ttr -1: kept as it was"
    );
    scene.a.stop();
    scene.b.stop();
}
