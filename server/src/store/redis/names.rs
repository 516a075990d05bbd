//! The names of every key and channel ([the layout](super)).

use super::*;

/// The names of one atSign's keys.
pub(super) struct Keys {
    pub records: String,
    pub commits: String,
    pub commit_ix: String,
    pub next_commit: String,
}

impl RedisStore {
    pub(super) fn atsigns_key(&self) -> String {
        format!("{}atserver:atsigns", self.prefix)
    }

    /// SNI label → atSign, kept beside the provisioning records.
    pub(super) fn labels_key(&self) -> String {
        format!("{}atserver:labels", self.prefix)
    }

    pub(super) fn notifications_channel(&self) -> String {
        format!("{}atserver:notifications", self.prefix)
    }

    pub(super) fn changes_channel(&self) -> String {
        format!("{}atserver:atsigns:changed", self.prefix)
    }

    pub(super) fn key(&self, atsign: &AtSign, what: &str) -> String {
        format!("{}atserver:{{{}}}:{what}", self.prefix, atsign.as_str())
    }

    pub(super) fn keys(&self, atsign: &AtSign) -> Keys {
        Keys {
            records: self.key(atsign, "records"),
            commits: self.key(atsign, "commits"),
            commit_ix: self.key(atsign, "commit_ix"),
            next_commit: self.key(atsign, "next_commit"),
        }
    }

    /// A notification log's order (zset: score at_ms, member id) and its rows (hash: id →
    /// `expires_ms:body`).
    pub(super) fn notification_keys(
        &self,
        atsign: &AtSign,
        log: NotificationLog,
    ) -> (String, String) {
        (
            self.key(atsign, &format!("notifications:{}", log.name())),
            self.key(atsign, &format!("notification_rows:{}", log.name())),
        )
    }

    pub(super) fn access_key(&self, atsign: &AtSign, kind: AccessKind) -> String {
        self.key(
            atsign,
            match kind {
                AccessKind::AtSign => "access:atsign",
                AccessKind::Key => "access:key",
            },
        )
    }

    /// Every key of `atsign`'s data.
    pub(super) fn all_keys(&self, atsign: &AtSign) -> Vec<String> {
        let keys = self.keys(atsign);
        let mut all = vec![
            keys.records,
            keys.commits,
            keys.commit_ix,
            keys.next_commit,
            self.access_key(atsign, AccessKind::AtSign),
            self.access_key(atsign, AccessKind::Key),
        ];
        for log in NotificationLog::BOTH {
            let (order, rows) = self.notification_keys(atsign, log);
            all.extend([order, rows]);
        }
        all
    }
}
