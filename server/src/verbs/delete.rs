//! `delete` (docs/protocol.md#delete, docs/authentication.md#onboarding): the owner removes one
//! of its keys, or a cached copy.
//!
//! The key is built as for update ([`super::owned_key`]); `cached:` keys are taken as given,
//! since their owner is another atSign. The reply is `data:<commitId>` even when the key did
//! not exist (the store still writes a `-` entry), `data:-1` for uncommitted key classes.
//! `delete:privatekey:at_secret` ends onboarding: the CRAM secret is cleared from the
//! provisioning record, so CRAM is refused for good.
//!
//! # Errors
//! AT0009 `Cannot delete protected key: '<key>'` for the signing key pair, the encryption public
//! key and the PKAM public key; AT0016 for a key of another atSign.

use at_common::error::{AtError, ErrorCode};
use at_common::reply::Reply;
use at_common::verb::Delete;
use at_common::AtSign;

use super::owned_key;
use crate::reserved::{self, AT_SECRET, AT_SECRET_DELETED};
use crate::store::{Record, Store};

/// `delete[:priority:<p>][:cached]:<key>`.
pub async fn delete(store: &Store, me: &AtSign, cmd: &Delete) -> Result<Reply, AtError> {
    let key = if cmd.key.cached {
        cmd.key.to_string().to_lowercase()
    } else {
        owned_key(&cmd.key, me, "delete")?
    };
    if !cmd.key.cached && reserved::is_protected(&cmd.key.kind, &cmd.key.name, me) {
        return Err(AtError::with_detail(
            ErrorCode::Unauthorized,
            format!("Cannot delete protected key: '{key}'"),
        ));
    }
    if key == AT_SECRET {
        return disable_cram(store, me).await;
    }
    let commit_id = store.remove(me, &key).await?;
    Ok(Reply::Data(
        commit_id.map_or_else(|| "-1".to_string(), |id| id.to_string()),
    ))
}

/// `delete:privatekey:at_secret`: clears the CRAM secret, removes its key and leaves the
/// reference's marker; `data:-1` (never committed).
async fn disable_cram(store: &Store, me: &AtSign) -> Result<Reply, AtError> {
    if let Some(mut info) = store.get_atsign(me).await? {
        if info.cram_secret.is_some() {
            info.cram_secret = None;
            store.set_atsign_info(me, &info).await?;
        }
    }
    store.remove_uncommitted(me, AT_SECRET).await?;
    let marker = Record {
        value: Some("true".to_string()),
        metadata: Default::default(),
    };
    store
        .put_uncommitted(me, AT_SECRET_DELETED, &marker)
        .await?;
    Ok(Reply::Data("-1".to_string()))
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use super::*;
    use crate::store::{AtSignInfo, AtSignStatus, CommitOp};
    use crate::verbs::testing::{command, fixture, wire, Fixture, NOW};
    use crate::verbs::update;

    async fn run(f: &Fixture, line: &str) -> String {
        let result = match command(line) {
            Command::Delete(cmd) => delete(&f.store, &f.me, &cmd).await,
            Command::Update(cmd) => update(&f.store, &f.me, &cmd, NOW).await,
            other => panic!("not a delete: {other:?}"),
        };
        wire(&f.me, result)
    }

    #[tokio::test]
    async fn delete_replies_commit_id_even_for_a_missing_key() {
        let f = fixture().await;
        run(&f, "update:phone@alice 1").await;
        assert_eq!(run(&f, "delete:phone@alice").await, "data:1\n@alice@");
        assert!(f.store.get(&f.me, "phone@alice").await.unwrap().is_none());
        assert_eq!(run(&f, "delete:never@alice").await, "data:2\n@alice@");
        assert_eq!(
            run(&f, "delete:public:_hidden@alice").await,
            "data:-1\n@alice@"
        );
        let log = f.store.commits_since(&f.me, Some(0), 10).await.unwrap();
        assert!(log.iter().all(|e| e.op == CommitOp::Delete));
    }

    #[tokio::test]
    async fn protected_keys_are_at0009() {
        let f = fixture().await;
        for (line, key) in [
            (
                "delete:public:signing_publickey@alice",
                "public:signing_publickey@alice",
            ),
            (
                "delete:@alice:signing_privatekey@alice",
                "@alice:signing_privatekey@alice",
            ),
            ("delete:public:publickey@alice", "public:publickey@alice"),
            ("delete:at_pkam_publickey", "at_pkam_publickey@alice"),
        ] {
            assert_eq!(
                run(&f, line).await,
                format!("error:AT0009-UnAuthorized client in request : Cannot delete protected key: '{key}'\n@alice@"),
                "{line}"
            );
        }
        assert_eq!(
            run(&f, "delete:cached:public:publickey@bob").await,
            "data:0\n@alice@",
            "cached copies may go"
        );
    }

    #[tokio::test]
    async fn deleting_at_secret_disables_cram() {
        let f = fixture().await;
        let info = AtSignInfo {
            status: AtSignStatus::New,
            created_ms: NOW,
            sni_label: "alice".into(),
            cram_secret: Some("s3cret".into()),
            port: None,
            suspended: false,
        };
        f.store.create_atsign(&f.me, &info).await.unwrap();
        assert_eq!(
            run(&f, "delete:privatekey:at_secret").await,
            "data:-1\n@alice@"
        );
        let info = f.store.get_atsign(&f.me).await.unwrap().unwrap();
        assert_eq!(info.cram_secret, None);
        assert!(f
            .store
            .get(&f.me, AT_SECRET_DELETED)
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn delete_of_another_atsigns_key_is_at0016() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "delete:phone@bob").await,
            "error:AT0016-Invalid key : Invalid delete command - sharedBy atsign @bob should be same as current atsign @alice\n@alice@"
        );
    }
}
