//! Which hosted atSigns are suspended (`at-server suspend`), as this node knows it.
//!
//! The store keeps the truth (`AtSignInfo::suspended`); the listener copies it here at start,
//! after every provisioning change (its own admin socket's, or another node's through the
//! store) and on every resync, so a connection can ask on each command without a store read.
//!
//! A suspended atSign is treated as the reference treats a paused server: every command on a
//! connection to it is answered with the paused-server error, AT0024 (`error:AT0024-Exception:
//! <atSign> is suspended` before authentication), and the connection is closed; connections already open when it is suspended get the same line and
//! are closed at once, monitors included. Its data stays as it was. The status check reads
//! AT0024 as `stopped`.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use at_common::error::{AtError, ErrorCode};
use at_common::AtSign;
use tokio::sync::watch;

/// The suspended atSigns; cheap to clone (one set per node).
#[derive(Clone)]
pub struct Suspensions {
    suspended: Arc<RwLock<HashSet<AtSign>>>,
    /// Bumped when an atSign becomes suspended, so its open connections look again.
    newly: Arc<watch::Sender<u64>>,
}

impl Default for Suspensions {
    fn default() -> Suspensions {
        Suspensions {
            suspended: Arc::default(),
            newly: Arc::new(watch::channel(0).0),
        }
    }
}

impl Suspensions {
    pub fn is_suspended(&self, atsign: &AtSign) -> bool {
        self.read().contains(atsign)
    }

    /// Records whether `atsign` is suspended now.
    pub fn set(&self, atsign: &AtSign, suspended: bool) {
        let changed = match suspended {
            true => self.write().insert(atsign.clone()),
            false => self.write().remove(atsign),
        };
        if changed {
            tracing::info!(%atsign, suspended, "suspension changed");
            if suspended {
                self.newly.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Replaces the whole set (a reload of every atSign).
    pub fn replace(&self, suspended: HashSet<AtSign>) {
        let added = {
            let mut set = self.write();
            let added = suspended.iter().any(|atsign| !set.contains(atsign));
            *set = suspended;
            added
        };
        if added {
            self.newly.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Changes each time an atSign becomes suspended.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.newly.subscribe()
    }

    /// What a connection to a suspended `atsign` is answered (it then closes).
    pub fn error(atsign: &AtSign) -> AtError {
        AtError::with_detail(ErrorCode::ServerPaused, format!("{atsign} is suspended"))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashSet<AtSign>> {
        self.suspended.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<AtSign>> {
        self.suspended.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_suspension_wakes_the_watchers_and_a_resume_does_not() {
        let suspensions = Suspensions::default();
        let (alice, bob) = (
            AtSign::parse("alice").unwrap(),
            AtSign::parse("bob").unwrap(),
        );
        let mut watch = suspensions.watch();
        watch.mark_unchanged();
        suspensions.set(&alice, true);
        assert!(suspensions.is_suspended(&alice) && !suspensions.is_suspended(&bob));
        assert!(watch.has_changed().unwrap());
        watch.mark_unchanged();
        suspensions.set(&alice, true);
        suspensions.set(&alice, false);
        assert!(!watch.has_changed().unwrap(), "no new suspension");
        suspensions.replace(HashSet::from([bob.clone()]));
        assert!(watch.has_changed().unwrap());
        assert!(suspensions.is_suspended(&bob) && !suspensions.is_suspended(&alice));
        assert_eq!(
            Suspensions::error(&bob).code(),
            ErrorCode::ServerPaused,
            "the reference's paused-server error"
        );
        assert!(Suspensions::error(&bob).closes_connection());
    }
}
