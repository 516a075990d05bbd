//! `plookup` of the public keys of `me` and of the other atSigns hosted on this node, by the
//! owner (notes §3.3).
//!
//! The reference serves every plookup the same way: from its cache, else by an unauthenticated
//! `lookup:all:<key>@<owner>` on the owner's atServer (`proxy_lookup_verb_handler.dart`,
//! `caching/cache_manager.dart`). For `me`'s own keys that lookup reaches this very server, so
//! the answer is `lookup`'s public view ([`super::lookup_public`]), and nothing is cached (the
//! reference never caches its own keys). The same holds for an atSign hosted on this node: its
//! atServer is this process, asked directly (how the SDKs fetch `publickey@bob` to share a key
//! with @bob). Any other atSign's key needs the peer link (issue 6) and is refused here, as
//! every verb not served yet is.
//!
//! # Format
//! As `lookup` of `public:<key>@me`: `data:<value>`; `meta` → metadata JSON; `all` →
//! `data:{"key":"public:<key>@me","data":…,"metaData":{…}}`.
//!
//! # Errors
//! AT0015 when there is nothing to read, worded as the reference words the remote lookup's
//! failure: `key not found : Exception: public:<key>@me does not exist in keystore` for a
//! missing key (the remote's unauthenticated error text, passed on), and
//! `key not found : remoteLookUp: remote atServer returned String value 'null' for <key>@me`
//! for one not yet born or expired. AT0003 `invalid command` for the key of an atSign not
//! hosted on this node.

use at_common::error::{AtError, ErrorCode};
use at_common::metadata::EpochMillis;
use at_common::reply::Reply;
use at_common::verb::{Lookup, Plookup};
use at_common::AtSign;

use super::lookup_public;
use crate::store::Store;

/// `plookup:[bypassCache:<b>:][meta:|all:]<key>@<owner>` on an owner connection.
pub async fn plookup(
    store: &Store,
    me: &AtSign,
    cmd: &Plookup,
    now_ms: EpochMillis,
) -> Result<Reply, AtError> {
    let owner = &cmd.owner;
    // The owner's atServer answers a plookup with its public view. When that atServer is this
    // node (the owner is hosted here too), it is asked directly, with the same answer the
    // network lookup would bring back; elsewhere it needs the peer link (issue 6), refused
    // until then like any verb not served yet.
    if owner != me && store.get_atsign(owner).await?.is_none() {
        return Err(AtError::syntax("invalid command"));
    }
    let lookup = Lookup {
        bypass_cache: cmd.bypass_cache,
        op: cmd.op,
        key: cmd.key.clone(),
        owner: owner.clone(),
    };
    match lookup_public(store, owner, &lookup, now_ms).await {
        Ok(Reply::Null) => Err(AtError::with_detail(
            ErrorCode::KeyNotFound,
            format!(
                "remoteLookUp: remote atServer returned String value 'null' for {}{owner}",
                cmd.key
            ),
        )),
        Err(error) if error.code() == ErrorCode::KeyNotFound => Err(AtError::with_detail(
            ErrorCode::KeyNotFound,
            format!("Exception: {}", error.message()),
        )),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use super::*;
    use crate::verbs::testing::{command, fixture, wire, Fixture, NOW};
    use crate::verbs::update;

    async fn run(f: &Fixture, line: &str, now: i64) -> String {
        let result = match command(line) {
            Command::Plookup(cmd) => plookup(&f.store, &f.me, &cmd, now).await,
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

    #[tokio::test]
    async fn plookup_of_an_atsign_hosted_elsewhere_is_refused_until_peer_lookups_exist() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "plookup:publickey@bob", NOW).await,
            "error:AT0003-Invalid syntax : invalid command\n@alice@"
        );
    }

    #[tokio::test]
    async fn plookup_of_an_atsign_hosted_on_this_node_reads_its_public_view() {
        let f = fixture().await;
        let bob = AtSign::parse("@bob").unwrap();
        f.store
            .create_atsign(&bob, &crate::store::conformance::info("bob"))
            .await
            .unwrap();
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
        assert_eq!(
            run(&f, "plookup:publickey@bob", NOW).await,
            "data:MIIBIjAN\n@alice@"
        );
        // bob's private keys are not his public view.
        f.store
            .put(&bob, "secret@bob", &key, crate::store::CommitOp::UpdateAll)
            .await
            .unwrap();
        assert_eq!(
            run(&f, "plookup:secret@bob", NOW).await,
            "error:AT0015-key not found : Exception: public:secret@bob does not exist in keystore\n@alice@"
        );
        assert!(
            f.store
                .get(&f.me, "public:publickey@bob")
                .await
                .unwrap()
                .is_none(),
            "nothing cached"
        );
    }
}
