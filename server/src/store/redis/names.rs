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

    /// The channel of `atsign`'s notifications for monitors, in its own slot (sharded on a
    /// cluster, so its messages reach only the nodes of that slot and those that follow it).
    pub(super) fn notification_channel(&self, atsign: &AtSign) -> String {
        notification_channel(&self.prefix, atsign)
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

/// See [`RedisStore::notification_channel`]; also for the subscription task, which holds the
/// prefix but not the store.
pub(super) fn notification_channel(prefix: &str, atsign: &AtSign) -> String {
    format!("{prefix}atserver:{{{}}}:notifications", atsign.as_str())
}

/// The atSign whose [`notification_channel`] `channel` is; `None` for any other name.
pub(super) fn atsign_of_notification_channel(prefix: &str, channel: &[u8]) -> Option<AtSign> {
    let rest = channel.strip_prefix(prefix.as_bytes())?;
    let rest = rest.strip_prefix(b"atserver:{")?;
    let name = rest.strip_suffix(b"}:notifications")?;
    AtSign::parse(std::str::from_utf8(name).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_channel_names_its_atsign_and_nothing_else_does() {
        let bob = AtSign::parse("@bob").unwrap();
        let channel = notification_channel("p:", &bob);
        assert_eq!(channel, "p:atserver:{@bob}:notifications");
        assert_eq!(
            atsign_of_notification_channel("p:", channel.as_bytes()),
            Some(bob)
        );
        for other in [
            "q:atserver:{@bob}:notifications",
            "p:atserver:notifications",
            "p:atserver:atsigns:changed",
            "p:atserver:{@bob}:notifications:received",
            "p:atserver:{bob@}:notifications",
            "p:atserver:{}:notifications",
        ] {
            assert_eq!(
                atsign_of_notification_channel("p:", other.as_bytes()),
                None,
                "{other}"
            );
        }
        assert_eq!(
            atsign_of_notification_channel("p:", b"p:atserver:{@\xff}:notifications"),
            None
        );
    }
}
