//! `KeyStore`: the actor that owns one hosted atSign's data. Every read and write of that
//! atSign's keys goes through it, and its handlers are atomic (one message at a time, even
//! across awaits), so one atSign's writes are applied in the order they arrive and never
//! interleave. It stops itself after `idle` without messages; [`Hosts`] starts it again on the
//! next use, which is also how a failed key store is restarted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use at_common::error::{AtError, ErrorCode};
use at_common::reply::Reply;
use at_common::verb::Command;
use at_common::AtSign;

use crate::store::{Store, StoreError};

/// Where the owner's PKAM public key is kept (the reference's key name).
pub const PKAM_PUBLIC_KEY: &str = "privatekey:at_pkam_publickey";

/// What `cram` and `pkam` check a proof against.
#[derive(Debug, Clone, Default)]
pub struct AuthMaterial {
    /// `None` once onboarding deleted it (`delete:privatekey:at_secret`).
    pub cram_secret: Option<String>,
    pub pkam_public_key: Option<String>,
}

/// Asks for the [`AuthMaterial`] of the atSign.
#[derive(Message)]
#[rtype(result = "Result<AuthMaterial, AtError>")]
pub struct GetAuthMaterial;

/// Runs a verb (already authorized by the connection) against the atSign's data.
#[derive(Message)]
#[rtype(result = "Result<Reply, AtError>")]
pub struct Run {
    pub command: Command,
    /// Whether the connection is the owner's (cram/pkam); otherwise it is unauthenticated.
    pub owner: bool,
}

/// One hosted atSign's key store.
pub struct KeyStore {
    me: AtSign,
    store: Store,
    idle: Duration,
    last_used: Instant,
}

impl KeyStore {
    pub fn new(me: AtSign, store: Store, idle: Duration) -> KeyStore {
        KeyStore {
            me,
            store,
            idle,
            last_used: Instant::now(),
        }
    }
}

impl Actor for KeyStore {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let check = (self.idle / 4).max(Duration::from_millis(100));
        ctx.run_interval(check, |act, ctx| {
            if act.last_used.elapsed() >= act.idle {
                tracing::debug!(atsign = %act.me, "key store idle; stopping");
                ctx.stop();
            }
        });
    }
}

impl Handler<GetAuthMaterial> for KeyStore {
    type Result = AtomicResponse<Self, Result<AuthMaterial, AtError>>;

    fn handle(&mut self, _: GetAuthMaterial, _: &mut Context<Self>) -> Self::Result {
        self.last_used = Instant::now();
        let (store, me) = (self.store.clone(), self.me.clone());
        AtomicResponse::new(Box::pin(
            async move {
                let info = store.get_atsign(&me).await.map_err(datastore)?;
                let pkam = store.get(&me, PKAM_PUBLIC_KEY).await.map_err(datastore)?;
                Ok(AuthMaterial {
                    cram_secret: info.and_then(|i| i.cram_secret),
                    pkam_public_key: pkam.and_then(|r| r.value),
                })
            }
            .into_actor(self),
        ))
    }
}

impl Handler<Run> for KeyStore {
    type Result = AtomicResponse<Self, Result<Reply, AtError>>;

    fn handle(&mut self, run: Run, _: &mut Context<Self>) -> Self::Result {
        self.last_used = Instant::now();
        let (store, me) = (self.store.clone(), self.me.clone());
        AtomicResponse::new(Box::pin(
            async move { dispatch(&store, &me, &run.command, run.owner).await }.into_actor(self),
        ))
    }
}

/// The one place a verb meets its handler (an exhaustive match: a new verb is a compile error
/// until it is routed).
async fn dispatch(
    store: &Store,
    me: &AtSign,
    command: &Command,
    owner: bool,
) -> Result<Reply, AtError> {
    // The data verbs are routed here as their handlers land (issue 3 in progress); until
    // then they are refused as the reference refuses a verb it does not know.
    let _ = (store, me, command, owner);
    Err(AtError::syntax("invalid command"))
}

/// A store failure: AT0002, which closes the connection (the reference's DataStoreException).
pub fn datastore(error: StoreError) -> AtError {
    tracing::error!(%error, "store failed");
    AtError::with_detail(ErrorCode::DataStore, "datastore failure")
}

/// The registry of running key stores: atSign → `Addr<KeyStore>`, started on first use on one
/// arbiter, started again when stopped (idle) or failed.
#[derive(Clone)]
pub struct Hosts {
    running: Arc<Mutex<HashMap<AtSign, Addr<KeyStore>>>>,
    store: Store,
    idle: Duration,
    arbiter: actix::ArbiterHandle,
}

impl Hosts {
    pub fn new(store: Store, idle: Duration, arbiter: actix::ArbiterHandle) -> Hosts {
        Hosts {
            running: Arc::default(),
            store,
            idle,
            arbiter,
        }
    }

    /// The key store of `atsign`, started if it is not running.
    pub fn get(&self, atsign: &AtSign) -> Addr<KeyStore> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(addr) = running.get(atsign).filter(|a| a.connected()) {
            return addr.clone();
        }
        let (me, store, idle) = (atsign.clone(), self.store.clone(), self.idle);
        let addr =
            KeyStore::start_in_arbiter(&self.arbiter, move |_| KeyStore::new(me, store, idle));
        running.insert(atsign.clone(), addr.clone());
        addr
    }

    /// How many key stores are in memory now.
    pub fn running(&self) -> usize {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.values().filter(|a| a.connected()).count()
    }
}
