//! `plookup` of an atSign's public keys, by the owner (docs/protocol.md#plookup,
//! docs/storage.md#cached-keys).
//!
//! As the reference: from the cache (`cached:public:<key>@<owner>`, [`crate::remote::cache`]) unless
//! `bypassCache:true`, else by an unauthenticated `lookup:all:<key>@<owner>` on the owner's
//! atServer, whose answer is cached as the key's ttr says (public keys without ttr for 24 h).
//! `me`'s own keys are read directly and never cached; an atSign hosted on this cluster is
//! asked in-process, with the bytes the network lookup would bring back (how the SDKs fetch
//! `publickey@bob` to share a key with @bob). See [`crate::remote::fetch`] for the common path.
//!
//! # Format
//! As `lookup` of `public:<key>@owner`: `data:<value>`; `meta` → metadata JSON; `all` →
//! `data:{"key":"public:<key>@owner","data":…,"metaData":{…}}`.
//!
//! # Errors
//! AT0015 when there is nothing to read, worded as the reference words the remote lookup's
//! failure: `key not found : Exception: public:<key>@owner does not exist in keystore` for a
//! missing key (the owner's server's unauthenticated error text, passed on), and
//! `key not found : remoteLookUp: remote atServer returned String value 'null' for <key>@owner`
//! for one not yet born or expired. AT0007/AT0008 when the owner's server cannot be reached
//! or refuses.

use at_common::error::AtError;
use at_common::metadata::EpochMillis;
use at_common::reply::{ErrorStyle, Prompt, Reply};
use at_common::verb::{Lookup, LookupOp, Plookup};
use at_common::AtSign;

use super::llookup::render;
use super::lookup_public;
use crate::notifications::Monitors;
use crate::peer::link::Mode;
use crate::peer::Peers;
use crate::remote::cache::Cached;
use crate::remote::fetch::{fetch_through_cache, read_fetched, Source};
use crate::store::Store;

/// `plookup:[bypassCache:<b>:][meta:|all:]<key>@<owner>` on an owner connection.
pub async fn plookup(
    store: &Store,
    peers: &Peers,
    monitors: &Monitors,
    me: &AtSign,
    cmd: &Plookup,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    let other = &cmd.owner;
    let shown = format!("public:{}{other}", cmd.key);
    let record = if other == me {
        // No server asks itself: its own answer to `lookup:all`, as another server would get it.
        let lookup = Lookup {
            bypass_cache: None,
            op: Some(LookupOp::All),
            key: cmd.key.clone(),
            owner: other.clone(),
        };
        let line = line_of(lookup_public(store, me, &lookup, now_ms).await);
        read_fetched(&line, &cmd.key, other)?
    } else {
        let cached_key = format!("cached:{shown}");
        let bypass = cmd.bypass_cache == Some(true);
        let source = Source {
            store,
            peers,
            monitors,
            me,
            other,
            mode: Mode::Anonymous,
        };
        fetch_through_cache(
            source,
            &cmd.key,
            bypass,
            (&cached_key, Cached::Public),
            now_ms,
        )
        .await?
    };
    Ok(render(&shown, &record, cmd.op))
}

/// A reply as a peer that is not the owner reads it, without the prompt.
fn line_of(reply: Result<Reply, AtError>) -> String {
    let bytes = reply
        .unwrap_or_else(Reply::Error)
        .render(&Prompt::Unauthenticated, ErrorStyle::Legacy);
    let text = String::from_utf8_lossy(&bytes);
    text.trim_end_matches('@').trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use at_common::metadata::now_ms;

    use super::*;
    use crate::verbs::testing::{command, fixture, wire, Fixture, NOW};
    use crate::verbs::update;

    async fn run(f: &Fixture, line: &str, now: i64) -> String {
        let result = match command(line) {
            Command::Plookup(cmd) => {
                let monitors = Monitors::start(f.store.clone());
                plookup(&f.store, &f.peers(), &monitors, &f.me, &cmd, now).await
            }
            Command::Update(cmd) => update(&f.store, &f.me, &cmd, now).await,
            other => panic!("not a plookup: {other:?}"),
        };
        wire(&f.me, result)
    }

    #[tokio::test]
    async fn plookup_of_own_key_reads_the_public_key() {
        let f = fixture().await;
        run(&f, "update:public:publickey@alice MIIB", NOW).await;
        run(&f, "update:phone@alice self", NOW).await;
        assert_eq!(
            run(&f, "plookup:publickey@alice", NOW).await,
            "data:MIIB\n@alice@"
        );
        assert_eq!(
            run(&f, "plookup:bypassCache:true:PublicKey@alice", NOW).await,
            "data:MIIB\n@alice@"
        );
        let all = run(&f, "plookup:all:publickey@alice", NOW).await;
        assert!(
            all.starts_with(
                "data:{\"key\":\"public:publickey@alice\",\"data\":\"MIIB\",\"metaData\":{\"createdBy\":\"@alice\""
            ),
            "{all}"
        );
        let meta = run(&f, "plookup:meta:publickey@alice", NOW).await;
        assert!(meta.starts_with("data:{\"createdBy\":\"@alice\""), "{meta}");
    }

    #[tokio::test]
    async fn plookup_of_a_missing_or_private_key_is_at0015_as_the_remote_lookup_words_it() {
        let f = fixture().await;
        run(&f, "update:phone@alice self only", NOW).await;
        for name in ["phone", "fax"] {
            assert_eq!(
                run(&f, &format!("plookup:{name}@alice"), NOW).await,
                format!(
                    "error:AT0015-key not found : Exception: public:{name}@alice does not exist in keystore\n@alice@"
                )
            );
        }
    }

    #[tokio::test]
    async fn plookup_of_an_unborn_or_expired_key_is_at0015() {
        let f = fixture().await;
        run(&f, "update:ttb:1000:public:later@alice v", NOW).await;
        assert_eq!(
            run(&f, "plookup:later@alice", NOW).await,
            "error:AT0015-key not found : remoteLookUp: remote atServer returned String value 'null' for later@alice\n@alice@"
        );
        assert_eq!(
            run(&f, "plookup:later@alice", NOW + 1000).await,
            "data:v\n@alice@"
        );
    }

    #[tokio::test]
    async fn plookup_resolves_references_as_lookup_does() {
        let f = fixture().await;
        run(&f, "update:public:card@alice atsign://public:name", NOW).await;
        run(&f, "update:public:name@alice Alice", NOW).await;
        assert_eq!(
            run(&f, "plookup:card@alice", NOW).await,
            "data:Alice\n@alice@"
        );
    }

    #[actix_rt::test]
    async fn plookup_of_an_atsign_hosted_elsewhere_is_at0007_when_its_server_cannot_be_found() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "plookup:publickey@bob", NOW).await,
            "error:AT0007-Secondary server not found : the atDirectory is unreachable\n@alice@",
            "no address or TLS detail"
        );
    }

    #[actix_rt::test]
    async fn plookup_of_an_atsign_hosted_on_this_node_reads_its_public_view() {
        let f = fixture().await;
        let bob = f.host("@bob").await;
        let node = f.node();
        let (peers, monitors) = (node.hosts.peers(), node.hosts.monitors());
        let run = |line: &'static str| {
            let (store, me) = (f.store.clone(), f.me.clone());
            async move {
                let Command::Plookup(cmd) = command(line) else {
                    panic!("{line}")
                };
                wire(
                    &me,
                    plookup(&store, peers, monitors, &me, &cmd, now_ms()).await,
                )
            }
        };
        let key = crate::store::Record {
            value: Some("MIIBIjAN".into()),
            metadata: Default::default(),
        };
        f.store
            .put(
                &bob,
                "public:publickey@bob",
                &key,
                crate::store::CommitOp::UpdateAll,
            )
            .await
            .unwrap();
        assert_eq!(run("plookup:publickey@bob").await, "data:MIIBIjAN\n@alice@");
        // bob's private keys are not his public view.
        f.store
            .put(&bob, "secret@bob", &key, crate::store::CommitOp::UpdateAll)
            .await
            .unwrap();
        assert_eq!(
            run("plookup:secret@bob").await,
            "error:AT0015-key not found : Exception: public:secret@bob does not exist in keystore\n@alice@"
        );
        assert!(
            f.store
                .get(&f.me, "public:publickey@bob")
                .await
                .unwrap()
                .is_none(),
            "bob's key is not alice's"
        );
    }
}
