//! `config` (docs/protocol.md#config): the owner's block list, and the reference's testing-mode
//! settings, which a production server refuses.
//!
//! The block list is stored as the reference stores it ([`crate::blocklist`]).
//! [`crate::access::admit_peer`] is what `from:@other` asks before anything else, and what
//! every request of another atSign's pol connection asks again: a block takes effect at once,
//! on connections already open too, on every node (the list is read from the store).
//!
//! # Format
//! ```text
//! config:block:add:@bob @carol   → data:success   (the owner's own atSign is left out)
//! config:block:remove:@bob       → data:success   (data:null when nothing is blocked)
//! config:block:show              → data:["@bob","@carol"]   (data:null when empty)
//! config:set:<name>=<v> | config:reset:<name> | config:print:<name>
//!                                → data:testing mode disabled by default
//! ```
//!
//! # Errors
//! AT0010 for a setting the reference does not know, worded as the Dart error it raises;
//! AT0002 (closes) for a stored block list that is not its JSON ([`crate::blocklist`]).

use crate::blocklist::{edit, load};
use crate::store::{Store, StoreError};
use at_common::error::{AtError, ErrorCode};
use at_common::reply::Reply;
use at_common::verb::Config;
use at_common::AtSign;

/// What the reference answers `config:set|reset|print` with outside its testing mode; this
/// server has no testing mode.
const TESTING_MODE_OFF: &str = "testing mode disabled by default";

/// The reference's `ModifiableConfigs` (3.0.52): the names `set|reset|print` accept.
const MODIFIABLE_CONFIGS: [&str; 11] = [
    "inboundMaxLimit",
    "commitLogCompactionFrequencyMins",
    "accessLogCompactionFrequencyMins",
    "notificationKeyStoreCompactionFrequencyMins",
    "autoNotify",
    "maxNotificationRetries",
    "checkCertificateReload",
    "shouldReloadCertificates",
    "doCacheRefreshNow",
    "maxRequestsPerTimeFrame",
    "timeFrameInMills",
];

/// `config:…` for the owner of `me`.
pub async fn config(store: &Store, me: &AtSign, cmd: &Config) -> Result<Reply, AtError> {
    match cmd {
        Config::BlockShow => {
            let list = load(store, me).await?;
            if list.is_empty() {
                return Ok(Reply::Null);
            }
            let json = serde_json::to_string(&list).map_err(StoreError::from)?;
            Ok(Reply::Data(json))
        }
        Config::BlockAdd(signs) => {
            // The reference drops the owner's own atSign; if nothing is left it stores nothing.
            let others: Vec<&AtSign> = signs.iter().filter(|s| *s != me).collect();
            if others.is_empty() {
                return Ok(success());
            }
            let others: Vec<String> = others.iter().map(|s| s.to_string()).collect();
            edit(store, me, move |mut list| {
                for sign in &others {
                    if !list.contains(sign) {
                        list.push(sign.clone());
                    }
                }
                Some(list)
            })
            .await?;
            Ok(success())
        }
        Config::BlockRemove(signs) => {
            let signs: Vec<String> = signs.iter().map(|s| s.to_string()).collect();
            let wrote = edit(store, me, move |list| {
                // The reference writes nothing and answers with its null result.
                if list.is_empty() {
                    return None;
                }
                Some(list.into_iter().filter(|s| !signs.contains(s)).collect())
            })
            .await?;
            Ok(if wrote { success() } else { Reply::Null })
        }
        Config::Set(assignment) => {
            // The reference looks the name up before it looks at the value.
            let mut parts = assignment.split('=');
            known_setting(parts.next().unwrap_or_default())?;
            if parts.next().is_none() {
                // `newConfig[1]` of a one-element list.
                return Err(dart_error(
                    "RangeError (index): Index out of range: index should be less than 1: 1",
                ));
            }
            Ok(Reply::Data(TESTING_MODE_OFF.into()))
        }
        Config::Reset(name) | Config::Print(name) => {
            known_setting(name)?;
            Ok(Reply::Data(TESTING_MODE_OFF.into()))
        }
    }
}

fn success() -> Reply {
    Reply::Data("success".into())
}

/// The reference's `ModifiableConfigs.values.byName(name)`.
fn known_setting(name: &str) -> Result<(), AtError> {
    if MODIFIABLE_CONFIGS.contains(&name) {
        return Ok(());
    }
    let quoted = serde_json::to_string(name).unwrap_or_default();
    Err(dart_error(&format!(
        "Invalid argument (name): No enum value with that name: {quoted}"
    )))
}

/// A Dart `Error` thrown in a handler: the reference answers it as `InternalServerError`
/// (AT0010), which keeps the connection open.
fn dart_error(text: &str) -> AtError {
    AtError::with_detail(ErrorCode::InternalServerError, text)
}

#[cfg(test)]
mod tests {
    use at_common::verb::Command;

    use super::*;
    use crate::access::admit_peer;
    use crate::blocklist::is_blocked;
    use crate::store::Record;
    use crate::verbs::testing::{command, fixture, wire, Fixture};

    async fn run(f: &Fixture, line: &str) -> String {
        let Command::Config(cmd) = command(line) else {
            panic!("not a config command: {line}")
        };
        wire(&f.me, config(&f.store, &f.me, &cmd).await)
    }

    fn sign(s: &str) -> AtSign {
        AtSign::parse(s).unwrap()
    }

    #[tokio::test]
    async fn show_of_an_empty_block_list_is_data_null() {
        let f = fixture().await;
        assert_eq!(run(&f, "config:block:show").await, "data:null\n@alice@");
    }

    #[tokio::test]
    async fn add_then_show_lists_atsigns_in_the_order_added_without_duplicates() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "config:block:add:@bob @carol").await,
            "data:success\n@alice@"
        );
        assert_eq!(
            run(&f, "config:block:add:@dave @bob").await,
            "data:success\n@alice@"
        );
        assert_eq!(
            run(&f, "config:block:show").await,
            "data:[\"@bob\",\"@carol\",\"@dave\"]\n@alice@"
        );
    }

    #[tokio::test]
    async fn the_block_list_is_stored_as_the_reference_stores_it_and_never_committed() {
        let f = fixture().await;
        run(&f, "config:block:add:@bob").await;
        let record = f
            .store
            .get(&f.me, "private:blocklist@alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.value.as_deref(), Some(r#"{"blockList":["@bob"]}"#));
        assert_eq!(f.store.last_commit_id(&f.me).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_owner_cannot_block_itself() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "config:block:add:@alice").await,
            "data:success\n@alice@"
        );
        assert_eq!(run(&f, "config:block:show").await, "data:null\n@alice@");
        assert!(f
            .store
            .get(&f.me, "private:blocklist@alice")
            .await
            .unwrap()
            .is_none());
        run(&f, "config:block:add:@alice @bob").await;
        assert_eq!(
            run(&f, "config:block:show").await,
            "data:[\"@bob\"]\n@alice@"
        );
    }

    #[tokio::test]
    async fn remove_unblocks_and_an_emptied_list_shows_null() {
        let f = fixture().await;
        run(&f, "config:block:add:@bob @carol").await;
        assert_eq!(
            run(&f, "config:block:remove:@bob @zed").await,
            "data:success\n@alice@"
        );
        assert_eq!(
            run(&f, "config:block:show").await,
            "data:[\"@carol\"]\n@alice@"
        );
        assert_eq!(
            run(&f, "config:block:remove:@carol").await,
            "data:success\n@alice@"
        );
        assert_eq!(run(&f, "config:block:show").await, "data:null\n@alice@");
    }

    #[tokio::test]
    async fn remove_with_nothing_blocked_is_data_null_as_in_the_reference() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "config:block:remove:@bob").await,
            "data:null\n@alice@"
        );
    }

    #[tokio::test]
    async fn atsigns_are_matched_case_folded() {
        let f = fixture().await;
        run(&f, "config:block:add:@Bob").await;
        assert!(is_blocked(&f.store, &f.me, &sign("@bob")).await.unwrap());
        assert!(is_blocked(&f.store, &f.me, &sign("@BOB")).await.unwrap());
        assert!(!is_blocked(&f.store, &f.me, &sign("@carol")).await.unwrap());
        run(&f, "config:block:remove:@BOB").await;
        assert!(!is_blocked(&f.store, &f.me, &sign("@bob")).await.unwrap());
    }

    #[tokio::test]
    async fn a_blocked_atsign_is_refused_with_at0013_unable_to_connect_which_closes() {
        use at_common::reply::{ErrorStyle, Prompt};
        let f = fixture().await;
        assert!(admit_peer(&f.store, &f.me, &sign("@bob")).await.is_ok());
        run(&f, "config:block:add:@bob").await;
        let error = admit_peer(&f.store, &f.me, &sign("@bob"))
            .await
            .unwrap_err();
        assert!(error.closes_connection());
        assert_eq!(
            Reply::Error(error.clone()).render(&Prompt::Unauthenticated, ErrorStyle::Legacy),
            &b"error:AT0013-Exception: Unable to connect\n@"[..]
        );
        assert_eq!(
            Reply::Error(error).render(&Prompt::Unauthenticated, ErrorStyle::Json),
            &br#"error:{"errorCode":"AT0013","errorDescription":"Exception: Unable to connect"}
@"#[..]
        );
        assert!(admit_peer(&f.store, &f.me, &sign("@carol")).await.is_ok());
    }

    #[tokio::test]
    async fn a_corrupt_stored_block_list_is_at0002() {
        let f = fixture().await;
        let record = Record {
            value: Some("not json".into()),
            ..Record::default()
        };
        f.store
            .put_uncommitted(&f.me, "private:blocklist@alice", &record)
            .await
            .unwrap();
        assert_eq!(
            run(&f, "config:block:show").await,
            "error:AT0002-DataStore exception : Internal server error\n@alice@"
        );
        assert!(is_blocked(&f.store, &f.me, &sign("@bob")).await.is_err());
    }

    #[tokio::test]
    async fn settings_are_refused_as_outside_the_reference_testing_mode() {
        let f = fixture().await;
        for line in [
            "config:set:inboundMaxLimit=10",
            "config:reset:autoNotify",
            "config:print:maxNotificationRetries",
        ] {
            assert_eq!(
                run(&f, line).await,
                "data:testing mode disabled by default\n@alice@",
                "{line}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_settings_are_at0010_worded_as_the_dart_error() {
        let f = fixture().await;
        assert_eq!(
            run(&f, "config:print:nothing").await,
            "error:AT0010-Internal server error : Invalid argument (name): No enum value with that name: \"nothing\"\n@alice@"
        );
        assert_eq!(
            run(&f, "config:set:nothing=1").await,
            "error:AT0010-Internal server error : Invalid argument (name): No enum value with that name: \"nothing\"\n@alice@"
        );
        assert_eq!(
            run(&f, "config:set:autoNotify").await,
            "error:AT0010-Internal server error : RangeError (index): Index out of range: index should be less than 1: 1\n@alice@"
        );
    }
}
