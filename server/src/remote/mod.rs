//! What this server knows of other atSigns and keeps for its owners: cached copies of their
//! keys ([`cache`]), reading their keys through that cache ([`fetch`]), and noticing that one
//! was reset ([`key_change`]). Peer links ([`crate::peer`]) are the transport; they report
//! what a new link learns through [`crate::peer::Observer`], which [`LinkObserver`] is.

pub mod cache;
pub mod fetch;
pub mod key_change;

use at_common::metadata::now_ms;
use at_common::AtSign;
use futures_util::future::LocalBoxFuture;

use crate::notifications::Monitors;
use crate::store::Store;

/// Takes in what new peer links learn of the other atSign's encryption public key: cached, or
/// handled as a reset when it changed ([`key_change`]).
pub struct LinkObserver {
    pub store: Store,
    pub monitors: Monitors,
}

impl crate::peer::Observer for LinkObserver {
    fn public_key(&self, me: &AtSign, other: &AtSign, reply: &str) -> LocalBoxFuture<'static, ()> {
        let (store, monitors) = (self.store.clone(), self.monitors.clone());
        let (me, other, reply) = (me.clone(), other.clone(), reply.to_string());
        Box::pin(async move {
            let learned = key_change::learn(&store, &monitors, &me, &other, &reply, now_ms()).await;
            if let Err(error) = learned {
                tracing::info!(%me, %other, %error, "could not take in the other atSign's public key");
            }
        })
    }
}
