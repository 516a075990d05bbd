//! What the listener knows of the hosted atSigns, and keeping it in line with the store: the
//! SNI names, the suspended atSigns and the ports of their own, as this node's admin socket
//! and every other node sharing the store change them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::RwLock;
use std::time::Duration;

use at_common::AtSign;

use super::accept::{Accepting, Route};
use crate::admin;
use crate::store::Store;

/// What the listener knows of the hosted atSigns from the store: SNI label → atSign (a miss
/// asks the store for that one label: a newly provisioned atSign), and which are suspended.
pub(super) struct Hosted {
    pub domain: String,
    pub map: RwLock<HashMap<String, AtSign>>,
    pub store: Store,
    pub suspensions: crate::suspension::Suspensions,
}

impl Hosted {
    pub async fn reload(&self) -> Result<(), crate::store::StoreError> {
        let mut fresh = HashMap::new();
        let mut suspended = std::collections::HashSet::new();
        for atsign in self.store.list_atsigns().await? {
            if let Some(info) = self.store.get_atsign(&atsign).await? {
                if info.suspended {
                    suspended.insert(atsign.clone());
                }
                fresh.insert(info.sni_label, atsign);
            }
        }
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        self.suspensions.replace(suspended);
        Ok(())
    }

    /// Drops `atsign`'s name (deprovisioned).
    pub fn forget(&self, atsign: &AtSign) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, served| served != atsign);
    }

    pub async fn resolve(&self, server_name: &str) -> Option<AtSign> {
        let name = server_name.to_ascii_lowercase();
        let label = name.strip_suffix(&format!(".{}", self.domain))?.to_string();
        let known = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&label)
            .cloned();
        if known.is_some() {
            return known;
        }
        // Provisioned since the last load (maybe by another node): one lookup, not a reload,
        // so names that match nothing cost little.
        let found = self.store.atsign_by_label(&label).await.ok()??;
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(label, found.clone());
        Some(found)
    }
}

/// The atSigns this node serves on ports of their own, and what starts accept loops.
pub(super) struct Served {
    pub accepting: Accepting,
    shared_port: Option<actix_rt::task::JoinHandle<()>>,
    ports: RefCell<HashMap<AtSign, actix_rt::task::JoinHandle<()>>>,
    ip: std::net::IpAddr,
}

impl Served {
    /// Starts accepting on every listener: one round-robin over the workers for all of them
    /// (with a port per atSign, each listener may see a single connection, and its own
    /// counter would put them all on one worker).
    pub fn start(
        accepting: Accepting,
        listeners: Vec<(tokio::net::TcpListener, Route)>,
        ip: std::net::IpAddr,
    ) -> Served {
        let mut ports = HashMap::new();
        let mut shared_port = None;
        for (listener, route) in listeners {
            let handle = accepting.spawn(listener, route.clone());
            match route {
                Route::Fixed(atsign) => {
                    ports.insert(atsign, handle);
                }
                Route::BySni => shared_port = Some(handle),
            }
        }
        Served {
            accepting,
            shared_port,
            ports: RefCell::new(ports),
            ip,
        }
    }

    /// Closes every listening socket (draining).
    pub fn stop_accepting(&self) {
        self.shared_port.iter().for_each(|handle| handle.abort());
        self.ports
            .borrow_mut()
            .drain()
            .for_each(|(_, handle)| handle.abort());
    }

    pub fn apply(&self, change: admin::Change) {
        self.accepting
            .apply(change, &mut self.ports.borrow_mut(), self.ip)
    }

    /// Brings `atsign` in line with the store: served if provisioned, forgotten if not.
    async fn sync(&self, store: &Store, atsign: &AtSign) -> Result<(), crate::store::StoreError> {
        match store.get_atsign(atsign).await? {
            Some(info) => {
                self.apply(admin::Change::Suspension {
                    atsign: atsign.clone(),
                    suspended: info.suspended,
                });
                let serving = self.ports.borrow().contains_key(atsign);
                if info.port.is_some() && !serving {
                    self.apply(admin::Change::Added {
                        atsign: atsign.clone(),
                        port: info.port,
                    });
                }
            }
            None => self.apply(admin::Change::Removed(atsign.clone())),
        }
        Ok(())
    }

    /// Brings every atSign in line with the store (after events may have been missed).
    async fn resync(&self, store: &Store) -> Result<(), crate::store::StoreError> {
        let hosted = store.list_atsigns().await?;
        let still: std::collections::HashSet<&AtSign> = hosted.iter().collect();
        let gone: Vec<AtSign> = self
            .ports
            .borrow()
            .keys()
            .filter(|atsign| !still.contains(atsign))
            .cloned()
            .collect();
        for atsign in gone {
            self.apply(admin::Change::Removed(atsign));
        }
        for atsign in &hosted {
            self.sync(store, atsign).await?;
        }
        self.accepting.shared.hosted.reload().await
    }
}

/// Follows provisioning changes made by any node sharing the store: a new atSign's port starts
/// here too, a removed one's stops, its key store and SNI name go.
pub(super) async fn follow(
    mut events: tokio::sync::mpsc::Receiver<crate::store::AtSignsEvent>,
    store: Store,
    served: Rc<Served>,
) {
    use crate::store::AtSignsEvent;
    while let Some(event) = events.recv().await {
        let synced = match &event {
            AtSignsEvent::Changed(atsign) => served.sync(&store, atsign).await,
            AtSignsEvent::Resync => served.resync(&store).await,
        };
        if let Err(error) = synced {
            // The store failed under this one change: look at everything again once it is
            // back, so the change is not lost (a reconnect would also bring a resync).
            tracing::warn!(?event, %error, "could not follow a provisioning change; resyncing");
            let mut delay = Duration::from_millis(500);
            while let Err(error) = served.resync(&store).await {
                tracing::warn!(%error, "resync failed; trying again");
                actix_rt::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
