//! The verbs' behaviour: one plain async function per verb over a [`Store`], one file per verb.
//!
//! Each handler takes the typed command from `at_common::verb`, the atSign whose data it works
//! on (`me`) and, where time matters, `now_ms`; it returns the [`Reply`] to send or the
//! [`AtError`] to render. The caller (the KeyStore actor) has already checked that the
//! connection may run the verb (owner, peer or anyone); handlers do not look at the connection.
//! Grammar lives in `at_common::verb::<verb>`, behaviour here in `verbs::<verb>`.
//!
//! This module owns what the handlers share: the one mapping of [`StoreError`] to AT0002
//! (which closes the connection), the stored-key check of update and delete, and the
//! "is this record active" rule (ttb / ttl) with the removal of expired keys, which
//! `maintenance` uses too.

mod batch;
mod config;
mod delete;
mod enroll;
mod info;
mod keys;
mod llookup;
mod lookup;
mod lookup_remote;
mod noop;
mod notify;
mod notify_list;
mod otp;
mod plookup;
mod scan;
mod scan_remote;
mod stats;
mod sync;
pub(crate) mod update;
mod update_json;

pub use batch::{batch, Answer};
pub use config::config;
pub use delete::delete;
pub use enroll::{
    apkam_key, enroll, grant, screen, settle, ApkamKey, Asking, PasscodePenalty, Settled,
};
pub use info::info;
pub use keys::keys;
pub use llookup::llookup;
pub use lookup::{lookup_owner, lookup_peer, lookup_public};
pub use lookup_remote::lookup_remote;
pub use noop::{noop, NOOP_MAX_MILLIS};
pub use notify::{
    auto_notify, notify, notify_all, notify_remove, notify_status, receive, Change, Outbox,
};
pub use notify_list::{notify_fetch, notify_list};
pub use otp::{otp, redeem};
pub use plookup::plookup;
pub use scan::{scan_owner, scan_peer, scan_public};
pub use scan_remote::scan_remote;
pub use stats::{stats, StatsContext};
pub use sync::{sync, SYNC_PAGE_LIMIT};
pub use update::{update, update_meta};
pub use update_json::update_json;

use at_common::error::{AtError, ErrorCode};
use at_common::key::{AtKey, KeyKind};
use at_common::metadata::{EpochMillis, Metadata};
use at_common::AtSign;

pub(crate) use crate::lifetime::{active_or_expire, get_active, is_active};
use crate::store::{Mutation, Record, Store, StoreError};

/// The only place a store failure becomes a protocol error: AT0002, which closes the
/// connection (docs/protocol.md#which-errors-close). The cause is logged, never sent.
impl From<StoreError> for AtError {
    fn from(error: StoreError) -> AtError {
        if let StoreError::Refused(refusal) = error {
            return refusal;
        }
        tracing::error!(%error, "store failed");
        AtError::with_detail(ErrorCode::DataStore, "Internal server error")
    }
}

/// `value` as a key the server writes (enrollments, a device's keys): created when first written, updated now; its times
/// and their instants kept.
pub(crate) fn written(
    existing: Option<&Record>,
    value: String,
    me: &AtSign,
    now: EpochMillis,
) -> Record {
    Record {
        value: Some(value),
        metadata: Metadata::rewritten(existing.map(|r| r.metadata.clone()), me, now),
    }
}

/// Stores `value` under `key` with no commit entry (the reference's `skipCommit`).
pub(crate) async fn put_uncommitted(
    store: &Store,
    me: &AtSign,
    key: &str,
    value: String,
    now: EpochMillis,
) -> Result<(), StoreError> {
    let me_ = me.clone();
    store
        .modify(me, key, move |existing| {
            Ok(Mutation::Put {
                record: written(existing, value.clone(), &me_, now),
                op: None,
            })
        })
        .await
        .map(|_| ())
}

/// The key a verb of `me`'s owner stores or deletes: the canonical wire form of `key`, with
/// `me` as owner when none was given (`privatekey:` keys have no owner). Refuses another owner
/// (AT0016, `verb` names the command in the reference's message) and over-long keys.
pub(crate) fn owned_key(key: &AtKey, me: &AtSign, verb: &str) -> Result<String, AtError> {
    let key = match &key.owner {
        Some(owner) if owner != me => {
            return Err(AtError::with_detail(
                ErrorCode::InvalidKey,
                format!(
                    "Invalid {verb} command - sharedBy atsign {owner} should be same as current atsign {me}"
                ),
            ))
        }
        Some(_) => key.clone(),
        None if key.kind == KeyKind::PrivateKey => key.clone(),
        None => key.clone().with_owner(me.clone()),
    };
    let stored = key.to_string().to_lowercase();
    at_common::limits::check_key(&stored)?;
    Ok(stored)
}

/// AT0015 for a key that is not there: `key not found : <key> does not exist in keystore`.
pub(crate) fn key_not_found(key: &str) -> AtError {
    AtError::with_detail(
        ErrorCode::KeyNotFound,
        format!("{key} does not exist in keystore"),
    )
}

#[cfg(test)]
pub(crate) mod testing {
    //! A real embedded store in a temp dir, and exact reply bytes.

    use at_common::error::AtError;
    use at_common::reply::{ErrorStyle, Prompt, Reply};
    use at_common::verb::Command;
    use at_common::AtSign;
    use at_tests::TempDir;

    use crate::store::Store;

    /// 2024-10-24 01:35:02.123Z, the clock of most tests.
    pub const NOW: i64 = 1_729_733_702_123;

    pub struct Fixture {
        pub store: Store,
        pub me: AtSign,
        _dir: TempDir,
    }

    impl Fixture {
        /// Peers that reach no other server: the directory is a closed port.
        pub fn peers(&self) -> crate::peer::Peers {
            crate::peer::Peers::offline(self.store.clone())
        }

        /// A node over this store (key stores, router, in-process links; needs an actix
        /// system): atSigns hosted here are reached in-process, others are unreachable.
        pub fn node(&self) -> crate::node::Node {
            crate::node::Node::start(
                &crate::config::ServerConfig::default(),
                self.store.clone(),
                crate::peer::PeerSettings::offline(),
                vec![actix::Arbiter::current()],
            )
        }

        /// Provisions `atsign` on the same store: another atSign hosted here.
        pub async fn host(&self, atsign: &str) -> AtSign {
            let other = AtSign::parse(atsign).unwrap();
            let info = crate::store::conformance::info(other.name());
            self.store.create_atsign(&other, &info).await.unwrap();
            other
        }
    }

    pub async fn fixture() -> Fixture {
        let dir = TempDir::new("verbs");
        let store = crate::store::open(&Default::default(), dir.path())
            .await
            .expect("open store");
        Fixture {
            store,
            me: AtSign::parse("@alice").unwrap(),
            _dir: dir,
        }
    }

    /// The bytes the owner's connection would receive, prompt included.
    pub fn wire(me: &AtSign, result: Result<Reply, AtError>) -> String {
        let reply = result.unwrap_or_else(Reply::Error);
        let bytes = reply.render(&Prompt::Owner(me.clone()), ErrorStyle::Legacy);
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// Parses one command line; panics on a syntax error (tests only send good commands).
    pub fn command(line: &str) -> Command {
        Command::parse(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }
}
