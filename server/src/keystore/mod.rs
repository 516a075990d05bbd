//! `KeyStore`: the actor that owns one hosted atSign's data. Every read and write of that
//! atSign's keys goes through it. Verbs run concurrently; each write is one atomic
//! read-modify-write in the store, applied in the store's order with its commit id, so writes
//! never interleave, and a connection's own commands are answered in order (it waits for each
//! reply).
//!
//! It owns what this node holds of the atSign while it is in use: its open connections
//! ([`Attach`]; they are told what concerns them all, [`Told`]), its monitors ([`monitors`])
//! and what its devices' enrollments allow ([`grants`]). It stops itself after `idle` without messages once no connection is open;
//! [`Hosts`] starts it again on the next use, which is also how a failed key store is
//! restarted.

mod grants;
mod monitors;

pub use monitors::{Subscribe, Subscribed, Subscription, STATS_PERIOD};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use at_common::error::{AtError, ErrorCode};
use at_common::metadata::now_ms;
use at_common::reply::Reply;
use at_common::verb::{Command, Operation};
use at_common::AtSign;

use crate::access::{self, Asker, View};
use crate::notifications::{EnrollmentEnded, Monitors};
use crate::peer::Peers;
use crate::router::NotificationRouter;
use crate::store::{AtSignStatus, Store};
use crate::verbs;
use crate::verbs::Change;
use grants::Grants;

/// What `cram` and `pkam` check a proof against.
#[derive(Debug, Clone, Default)]
pub struct AuthMaterial {
    /// `None` once onboarding deleted it (`delete:privatekey:at_secret`).
    pub cram_secret: Option<String>,
    pub pkam_public_key: Option<String>,
    /// The asked-for APKAM enrollment's key and status; `None` if there is no such enrollment.
    pub enrollment: Option<verbs::ApkamKey>,
}

/// Asks for the [`AuthMaterial`] of the atSign, with that of an APKAM enrollment
/// (`pkam:enrollmentId:<id>:…`) if one is named.
#[derive(Message, Default)]
#[rtype(result = "Result<AuthMaterial, AtError>")]
pub struct GetAuthMaterial {
    pub enrollment_id: Option<String>,
}

/// Asks whether `from:<atSign>` may go on: refused (AT0013) by the owner's block list
/// (`config:block`, [`access::admit_peer`]).
#[derive(Message)]
#[rtype(result = "Result<(), AtError>")]
pub struct AdmitPeer(pub AtSign);

/// Runs a verb (already authorized by the connection) against the atSign's data.
#[derive(Message)]
#[rtype(result = "Result<Reply, AtError>")]
pub struct Run {
    pub command: Command,
    /// What [`access::decide`] allowed the command to see: the owner's view, a peer's, or the
    /// public one.
    pub view: View,
    /// Who asks: an owner's APKAM enrollment, if it logged in with one, is read before the
    /// command runs ([`access::Grant`]); `enroll` also needs how the owner logged in.
    pub asker: Asker,
    /// Inbound connections open on the node now (`stats` id 1).
    pub inbound: usize,
    /// On a pipelined peer connection, the command's place in the order of what others see
    /// (a received notification's monitor line, its cached key): [`crate::turn`].
    pub turn: Option<crate::turn::Turn>,
}

/// Makes the atSign's signing key pair if it has none yet ([`crate::signing`]): asked when
/// its owner authenticates.
#[derive(Message)]
#[rtype(result = "Result<(), AtError>")]
pub struct EnsureSigningKeys;

/// Stops the key store at once (its atSign was deprovisioned).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// A connection to this atSign opened (`id`, unique on the node): the key store runs while any
/// is open, and tells each of them what concerns them all ([`Told`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub id: u64,
    pub connection: Recipient<Told>,
}

/// The connection [`Attach`]ed as this id closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach(pub u64);

/// The connection [`Attach`]ed as this id is logged in with an APKAM enrollment: it is to be
/// told if that enrollment is revoked, on this node or another ([`Monitors::attend`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enrolled(pub u64);

/// What a key store tells each of its atSign's connections.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum Told {
    /// The atSign was deprovisioned and its key store stopped for good; what the connection is
    /// still asked gets errors, and nothing is written for the removed atSign.
    Deprovisioned,
    /// APKAM enrollment (id) was revoked, on this node or another: its connections close.
    EnrollmentEnded(String),
    /// The atSign was suspended: each connection is told (AT0024) and closes.
    Suspended,
}

/// The atSign was suspended ([`Hosts::close_suspended`]): the key store tells its connections.
#[derive(Message)]
#[rtype(result = "()")]
struct Suspended;

/// One hosted atSign's key store: runs its commands, and owns what this node holds of the
/// atSign while it is in use: the count of its open connections and its monitors.
pub struct KeyStore {
    me: AtSign,
    services: Services,
    idle: Duration,
    last_used: Instant,
    /// This node's connections to the atSign that are open now: while there is one, the key
    /// store does not stop for being idle (a quiet connection's next command finds it).
    connections: HashMap<u64, Recipient<Told>>,
    /// Those of them logged in with an APKAM enrollment ([`Enrolled`]): while there is one,
    /// the node follows what every node says of the atSign's sessions.
    enrolled: std::collections::HashSet<u64>,
    /// The atSign's monitor connections on this node ([`monitors`]).
    monitors: monitors::Local,
    /// What its devices' enrollments allow, as last read ([`grants`]).
    grants: Arc<Grants>,
}

impl KeyStore {
    pub fn new(me: AtSign, services: Services, idle: Duration) -> KeyStore {
        KeyStore {
            me,
            services,
            idle,
            last_used: Instant::now(),
            connections: HashMap::new(),
            enrolled: std::collections::HashSet::new(),
            monitors: monitors::Local::default(),
            grants: Arc::default(),
        }
    }
}

impl Actor for KeyStore {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let check = (self.idle / 4).max(Duration::from_millis(100));
        ctx.run_interval(check, |act, ctx| {
            if act.connections.is_empty() && act.last_used.elapsed() >= act.idle {
                tracing::debug!(atsign = %act.me, "key store idle; stopping");
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if self.monitors.is_watched() {
            self.services.monitors.forget(&self.me);
        }
        if !self.enrolled.is_empty() {
            self.services.monitors.leave(&self.me);
        }
    }
}

impl Handler<GetAuthMaterial> for KeyStore {
    type Result = ResponseFuture<Result<AuthMaterial, AtError>>;

    fn handle(&mut self, ask: GetAuthMaterial, _: &mut Context<Self>) -> Self::Result {
        self.last_used = Instant::now();
        let (store, me) = (self.services.store.clone(), self.me.clone());
        Box::pin(async move {
            let info = store.get_atsign(&me).await?;
            let pkam = store.get(&me, crate::reserved::PKAM_PUBLIC_KEY).await?;
            let enrollment = match &ask.enrollment_id {
                Some(id) => verbs::apkam_key(&store, &me, id, now_ms()).await?,
                None => None,
            };
            Ok(AuthMaterial {
                cram_secret: info.and_then(|i| i.cram_secret),
                pkam_public_key: pkam.and_then(|r| r.value),
                enrollment,
            })
        })
    }
}

impl Handler<AdmitPeer> for KeyStore {
    type Result = ResponseFuture<Result<(), AtError>>;

    fn handle(&mut self, AdmitPeer(who): AdmitPeer, _: &mut Context<Self>) -> Self::Result {
        self.last_used = Instant::now();
        let (store, me) = (self.services.store.clone(), self.me.clone());
        Box::pin(async move { access::admit_peer(&store, &me, &who).await })
    }
}

impl Handler<EnsureSigningKeys> for KeyStore {
    type Result = ResponseFuture<Result<(), AtError>>;

    fn handle(&mut self, _: EnsureSigningKeys, _: &mut Context<Self>) -> Self::Result {
        self.last_used = Instant::now();
        let (store, me) = (self.services.store.clone(), self.me.clone());
        Box::pin(async move { crate::signing::ensure(&store, &me).await })
    }
}

impl Handler<Attach> for KeyStore {
    type Result = ();

    fn handle(&mut self, attach: Attach, _: &mut Context<Self>) {
        self.connections.insert(attach.id, attach.connection);
    }
}

impl Handler<Enrolled> for KeyStore {
    type Result = ();

    /// With its first connection logged in with an enrollment the key store follows what every
    /// node says of the atSign's sessions ([`Monitors::attend`]); other connections are never
    /// told anything another node says.
    fn handle(&mut self, Enrolled(id): Enrolled, ctx: &mut Context<Self>) {
        if !self.connections.contains_key(&id) {
            return;
        }
        if self.enrolled.is_empty() {
            let here: Recipient<EnrollmentEnded> = ctx.address().recipient();
            self.services.monitors.attend(&self.me, here);
        }
        self.enrolled.insert(id);
    }
}

impl Handler<Detach> for KeyStore {
    type Result = ();

    fn handle(&mut self, Detach(id): Detach, _: &mut Context<Self>) {
        self.connections.remove(&id);
        if self.enrolled.remove(&id) && self.enrolled.is_empty() {
            self.services.monitors.leave(&self.me);
        }
        self.last_used = Instant::now();
    }
}

impl Handler<EnrollmentEnded> for KeyStore {
    type Result = ();

    /// A revoked enrollment: every connection is told; those logged in with it close.
    fn handle(&mut self, ended: EnrollmentEnded, _: &mut Context<Self>) {
        self.grants.forget(&ended.0);
        for connection in self.connections.values() {
            connection.do_send(Told::EnrollmentEnded(ended.0.clone()));
        }
    }
}

impl Handler<Suspended> for KeyStore {
    type Result = ();

    fn handle(&mut self, _: Suspended, _: &mut Context<Self>) {
        for connection in self.connections.values() {
            connection.do_send(Told::Suspended);
        }
    }
}

impl Handler<Stop> for KeyStore {
    type Result = ();

    /// Deprovisioned: its connections are told, then it stops.
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        for connection in self.connections.values() {
            connection.do_send(Told::Deprovisioned);
        }
        ctx.stop();
    }
}

impl Handler<Run> for KeyStore {
    type Result = ResponseFuture<Result<Reply, AtError>>;

    /// Verbs run concurrently: a read never waits behind another connection's write, and
    /// writes of one atSign share fsyncs. Each write is one atomic read-modify-write in the
    /// store ([`Store::modify`]), which also orders them and hands out their commit ids.
    fn handle(&mut self, run: Run, ctx: &mut Context<Self>) -> Self::Result {
        self.last_used = Instant::now();
        let (services, me, this) = (self.services.clone(), self.me.clone(), ctx.address());
        let grants = Arc::clone(&self.grants);
        Box::pin(async move { dispatch(&services, (&this, &grants), &me, &run).await })
    }
}

/// What the verbs of a key store work with.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub monitors: Monitors,
    pub peers: Peers,
    pub router: Addr<NotificationRouter>,
    /// What an atSign keeps of what others send it.
    pub quota: Arc<crate::notifications::QuotaKeeper>,
    /// How fast other atSigns can make this node's atSigns receive notifications.
    pub pace: std::sync::Arc<crate::pace::NotifyPace>,
    /// How long a wrong enrollment passcode waits before it is refused.
    pub penalty: std::sync::Arc<verbs::PasscodePenalty>,
    /// Which atSigns are suspended: their connections are refused.
    pub suspensions: crate::suspension::Suspensions,
}

/// The one place a verb meets its handler: an exhaustive match, so a new verb is a compile
/// error until it is routed. Who is asking (owner, another atSign's server, anyone) picks the
/// view of lookup and scan; another atSign's server is asked again whether it is blocked.
/// `keystore`: the key store running it, and its devices' grants.
async fn dispatch(
    services: &Services,
    keystore: (&Addr<KeyStore>, &Grants),
    me: &AtSign,
    run: &Run,
) -> Result<Reply, AtError> {
    let (this, grants) = keystore;
    let Services {
        store,
        monitors,
        peers,
        router,
        ..
    } = services;
    if let View::Peer(peer) = &run.view {
        access::admit_peer(store, me, peer).await?;
    }
    let outbox = verbs::Outbox {
        store,
        monitors,
        router,
    };
    let now = now_ms();
    let grant = device_grant(grants, store, me, run, now).await?;
    let grant = grant.as_ref();
    match &run.command {
        Command::Update(c) => {
            let reply = verbs::update(store, me, c, now).await;
            written(&outbox, this, me, (&c.key, Change::Updated), reply, now).await
        }
        Command::UpdateMeta(c) => {
            let reply = verbs::update_meta(store, me, c, now).await;
            written(&outbox, this, me, (&c.key, Change::MetaUpdated), reply, now).await
        }
        Command::Llookup(c) => verbs::llookup(store, me, c, now).await,
        Command::Lookup(c) => match &run.view {
            View::Owner if c.owner != *me => {
                verbs::lookup_remote(store, peers, monitors, me, c, now).await
            }
            View::Owner => verbs::lookup_owner(store, me, c, now).await,
            View::Peer(peer) => verbs::lookup_peer(store, me, peer, c, now).await,
            View::Public => verbs::lookup_public(store, me, c, now).await,
        },
        Command::Scan(c) => match &run.view {
            View::Owner => match &c.for_atsign {
                Some(other) if other != me => verbs::scan_remote(peers, me, other, c).await,
                _ => verbs::scan_owner(store, me, c, grant, now).await,
            },
            View::Peer(peer) => verbs::scan_peer(store, me, peer, c, now).await,
            View::Public => verbs::scan_public(store, me, c, now).await,
        },
        Command::Delete(c) => {
            let reply = verbs::delete(store, me, c).await?;
            if c.key.to_string() == crate::reserved::AT_SECRET {
                activate(store, me).await?;
            }
            written(&outbox, this, me, (&c.key, Change::Deleted), Ok(reply), now).await
        }
        Command::Stats(c) => {
            let context = verbs::StatsContext {
                inbound: run.inbound,
                outbound: peers.open_links(),
            };
            verbs::stats(store, me, c, context).await
        }
        Command::Sync(c) => verbs::sync(store, me, c, grant).await,
        Command::Config(c) => verbs::config(store, me, c).await,
        Command::UpdateJson(c) => stats_after(
            this,
            Operation::Update,
            verbs::update_json(store, me, c, now).await,
        ),
        Command::Plookup(c) => verbs::plookup(store, peers, monitors, me, c, now).await,
        Command::Batch(c) => batch(services, keystore, me, c, run).await,
        // APKAM enrollments, screened by the connection first (a request gets here from a
        // cram owner, to be approved at once); refused inside a batch (above).
        Command::Enroll(c) => enroll(services, grants, me, c, (&run.asker, grant), now).await,
        // Notifications: the owner's to send; another server's (pol) received from it.
        Command::Notify(c) => match &run.view {
            View::Owner => verbs::notify(&outbox, me, c, now).await,
            View::Peer(peer) => receive(services, me, peer, c, run.turn.as_ref()).await,
            View::Public => not_routed(),
        },
        Command::NotifyList(c) => match &run.view {
            View::Owner => verbs::notify_list(store, me, None, c, grant, now).await,
            View::Peer(peer) => verbs::notify_list(store, me, Some(peer), c, None, now).await,
            View::Public => not_routed(),
        },
        Command::NotifyStatus(c) => verbs::notify_status(store, me, c, grant, now).await,
        Command::NotifyAll(c) => verbs::notify_all(&outbox, me, c, now).await,
        Command::NotifyFetch(c) => verbs::notify_fetch(store, me, c, grant, now).await,
        Command::NotifyRemove(c) => verbs::notify_remove(store, me, c, grant).await,
        Command::Otp(c) => verbs::otp(store, me, c, grant, now).await,
        Command::Keys(c) => verbs::keys(store, me, c, grant, now).await,
        // The connection answers these itself; they never reach a key store.
        Command::From(_)
        | Command::Pol
        | Command::Cram(_)
        | Command::Pkam(_)
        | Command::Info(_)
        | Command::Noop(_)
        | Command::Monitor(_)
        | Command::Exit => not_routed(),
    }
}

/// For a device logged in with an APKAM enrollment: what it may do now (an enrollment gone or
/// expired ends the connection), with `run`'s key outside its namespaces refused.
async fn device_grant(
    grants: &Grants,
    store: &Store,
    me: &AtSign,
    run: &Run,
    now: i64,
) -> Result<Option<access::Grant>, AtError> {
    let (View::Owner, Some(id)) = (&run.view, run.asker.enrollment()) else {
        return Ok(None);
    };
    let grant = grants.of(store, me, id, now).await?;
    access::authorize(&grant, me, &run.command)?;
    Ok(Some(grant))
}

/// `enroll`, asked by `asker` (logged in with `grant`'s enrollment, if any); an enrollment may
/// have changed, so the devices' next commands read theirs again.
async fn enroll(
    services: &Services,
    grants: &Grants,
    me: &AtSign,
    cmd: &at_common::verb::Enroll,
    (asker, grant): (&Asker, Option<&access::Grant>),
    now: i64,
) -> Result<Reply, AtError> {
    let asking = verbs::Asking {
        asker,
        grant,
        monitors: &services.monitors,
        penalty: &services.penalty,
    };
    let reply = verbs::enroll(&services.store, me, cmd, &asking, now).await;
    grants.forget_all();
    reply
}

/// What a command gets that [`access::decide`] did not let through to here, or that the
/// connection answers itself: never sent, so an internal error if it ever is.
fn not_routed() -> Result<Reply, AtError> {
    Err(ErrorCode::InternalServerException.into())
}

/// After an owner's write of `key` (`change`) answered `reply`: if it succeeded, autoNotify of
/// the atSign the key is shared with, then the stats notification to the owner's monitors. The
/// write stands whatever happens here, so a failure to notify is logged, not answered.
async fn written(
    outbox: &verbs::Outbox<'_>,
    this: &Addr<KeyStore>,
    me: &AtSign,
    (key, change): (&at_common::key::AtKey, Change),
    reply: Result<Reply, AtError>,
    now: i64,
) -> Result<Reply, AtError> {
    if reply.is_ok() {
        if let Err(error) = verbs::auto_notify(outbox, me, key, change, now).await {
            tracing::warn!(%me, %error, "could not notify the atSign a key is shared with");
        }
    }
    let operation = match change {
        Change::Deleted => Operation::Delete,
        Change::Updated | Change::MetaUpdated => Operation::Update,
    };
    stats_after(this, operation, reply)
}

/// Each command of a batch goes through [`dispatch`], as if sent alone by the owner (only the
/// owner may send a batch), with the enrollment the owner logged in with.
async fn batch(
    services: &Services,
    keystore: (&Addr<KeyStore>, &Grants),
    me: &AtSign,
    cmd: &at_common::verb::Batch,
    run: &Run,
) -> Result<Reply, AtError> {
    let (inbound, asker) = (run.inbound, &run.asker);
    let one = |command| -> verbs::Answer<'_> {
        Box::pin(async move {
            // enroll needs the connection's checks (how it logged in, its enrollment, request
            // limits), which a batch entry does not pass: answered as the other verbs the
            // connection itself answers.
            if matches!(command, Command::Enroll(_)) {
                return Err(ErrorCode::InternalServerException.into());
            }
            let run = Run {
                command,
                view: View::Owner,
                asker: asker.clone(),
                inbound,
                turn: None,
            };
            dispatch(services, keystore, me, &run).await
        })
    };
    verbs::batch(cmd, one).await
}

/// A notification from `peer`'s server (pol). Paced here, not refused: the peer's connection
/// answers in order, so its link slows to the sender's budget (a batch's notifications each
/// take their turn).
async fn receive(
    services: &Services,
    me: &AtSign,
    peer: &AtSign,
    cmd: &at_common::verb::Notify,
    turn: Option<&crate::turn::Turn>,
) -> Result<Reply, AtError> {
    let wait = services.pace.reserve(peer, std::time::Instant::now());
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let Services {
        store,
        monitors,
        quota,
        ..
    } = services;
    verbs::receive(store, monitors, quota, (me, peer), cmd, turn, now_ms()).await
}

/// After a write that made commit entry `data:<id>`: the stats notification to the owner's
/// monitors on every node, paced by this key store ([`monitors::StatsChanged`]).
fn stats_after(
    this: &Addr<KeyStore>,
    operation: Operation,
    reply: Result<Reply, AtError>,
) -> Result<Reply, AtError> {
    if let Ok(Reply::Data(id)) = &reply {
        if let Some(commit_id) = id.parse::<i64>().ok().filter(|id| *id >= 0) {
            this.do_send(monitors::StatsChanged {
                commit_id,
                operation,
            });
        }
    }
    reply
}

/// Onboarding is complete once the CRAM secret is deleted: the atSign is activated.
async fn activate(store: &Store, me: &AtSign) -> Result<(), AtError> {
    if let Some(mut info) = store.get_atsign(me).await? {
        if info.status != AtSignStatus::Active {
            info.status = AtSignStatus::Active;
            store.set_atsign_info(me, &info).await?;
        }
    }
    Ok(())
}

/// The registry of running key stores: atSign → `Addr<KeyStore>`, started on first use on one
/// of the given arbiters (picked by the atSign, so key stores spread over the cores), started
/// again when stopped (idle) or failed.
///
/// A handle: every connection keeps one, so a clone is one reference count, not a copy of the
/// node's services (whose actor addresses each allocate when cloned).
#[derive(Clone)]
pub struct Hosts(Arc<Registry>);

struct Registry {
    running: Mutex<HashMap<AtSign, Addr<KeyStore>>>,
    services: Services,
    idle: Duration,
    arbiters: Box<[actix::ArbiterHandle]>,
}

impl Hosts {
    /// `arbiters` must not be empty.
    pub fn new(services: Services, idle: Duration, arbiters: Vec<actix::ArbiterHandle>) -> Hosts {
        assert!(!arbiters.is_empty(), "key stores need an arbiter");
        Hosts(Arc::new(Registry {
            running: Mutex::default(),
            services,
            idle,
            arbiters: arbiters.into(),
        }))
    }

    /// The key store of `atsign`, started if it is not running.
    pub fn get(&self, atsign: &AtSign) -> Addr<KeyStore> {
        let mut running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(addr) = running.get(atsign).filter(|a| a.connected()) {
            return addr.clone();
        }
        let (me, services, idle) = (atsign.clone(), self.0.services.clone(), self.0.idle);
        let arbiter = &self.0.arbiters[shard(atsign, self.0.arbiters.len())];
        let addr = KeyStore::start_in_arbiter(arbiter, move |_| KeyStore::new(me, services, idle));
        running.insert(atsign.clone(), addr.clone());
        addr
    }

    /// Stops `atsign`'s key store, if running (it was deprovisioned): connections still open
    /// for it get errors from now on instead of writing to an atSign that is gone.
    pub fn evict(&self, atsign: &AtSign) {
        let mut running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(addr) = running.remove(atsign) {
            addr.do_send(Stop);
        }
    }

    /// This node's monitor connections.
    pub fn monitors(&self) -> &Monitors {
        &self.0.services.monitors
    }

    /// This node's links to other atServers.
    pub fn peers(&self) -> &Peers {
        &self.0.services.peers
    }

    /// Which of this node's atSigns are suspended.
    pub fn suspensions(&self) -> &crate::suspension::Suspensions {
        &self.0.services.suspensions
    }

    /// Each time an atSign becomes suspended, tells the key stores of the suspended atSigns
    /// running here, which tell their connections ([`Told::Suspended`]); for as long as the
    /// registry is in use (spawned once per node). One watcher per node, not one per
    /// connection.
    ///
    /// No connection misses it: a connection attaches to its key store before its first
    /// command, whose check sees a suspension made before it; one made after is told here
    /// after the attach, in the key store's order.
    pub fn close_suspended(&self) -> impl std::future::Future<Output = ()> + 'static {
        let mut newly = self.suspensions().watch();
        let registry = Arc::downgrade(&self.0);
        async move {
            while newly.changed().await.is_ok() {
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                let suspensions = &registry.services.suspensions;
                let running = registry.running.lock().unwrap_or_else(|e| e.into_inner());
                for (_, keystore) in running.iter().filter(|(a, _)| suspensions.is_suspended(a)) {
                    keystore.do_send(Suspended);
                }
            }
        }
    }

    /// How many key stores are in memory now.
    pub fn running(&self) -> usize {
        let running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        running.values().filter(|a| a.connected()).count()
    }
}

/// Which of `n` arbiters hosts `atsign`'s key store: stable for the process's life.
fn shard(atsign: &AtSign, n: usize) -> usize {
    use std::hash::{BuildHasher, RandomState};
    static HASHER: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    (HASHER.get_or_init(RandomState::new).hash_one(atsign) % n as u64) as usize
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use at_common::reply::{ErrorStyle, Prompt};
    use at_tests::TempDir;

    pub(super) async fn hosts(dir: &TempDir, idle: Duration) -> Hosts {
        let store = crate::store::open(&Default::default(), dir.path())
            .await
            .unwrap();
        hosts_on(store, idle)
    }

    /// [`hosts`] over `store`.
    pub(super) fn hosts_on(store: Store, idle: Duration) -> Hosts {
        let peers = Peers::offline(store.clone());
        let services = Services {
            monitors: Monitors::start(store.clone()),
            router: NotificationRouter::new(store.clone(), peers.clone(), idle).start(),
            peers,
            store,
            quota: std::sync::Arc::new(crate::notifications::QuotaKeeper::new(
                crate::config::ServerConfig::default().notification_quota(),
            )),
            pace: std::sync::Arc::new(crate::pace::NotifyPace::new(
                crate::config::ServerConfig::default().notify_pace(),
            )),
            penalty: Default::default(),
            suspensions: Default::default(),
        };
        Hosts::new(services, idle, vec![actix::Arbiter::current()])
    }

    pub(super) fn run(line: &str) -> Run {
        Run {
            command: Command::parse(line).unwrap(),
            view: View::Owner,
            asker: Asker::Owner {
                via: crate::access::OwnerAuth::Cram,
                enrollment: None,
            },
            inbound: 1,
            turn: None,
        }
    }

    #[actix_rt::test]
    async fn an_idle_key_store_stops_and_the_next_use_starts_it_again_with_its_data() {
        let dir = TempDir::new("keystore-idle");
        let hosts = hosts(&dir, Duration::from_millis(200)).await;
        let alice = AtSign::parse("@alice").unwrap();
        let first = hosts.get(&alice);
        let reply = first
            .send(run("update:public:k@alice v"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            reply.render(&Prompt::Owner(alice.clone()), ErrorStyle::Legacy),
            &b"data:0\n@alice@"[..]
        );
        assert_eq!(hosts.running(), 1);

        actix_rt::time::sleep(Duration::from_millis(600)).await;
        assert!(!first.connected(), "an idle key store keeps running");
        assert_eq!(hosts.running(), 0);

        let second = hosts.get(&alice);
        let reply = second
            .send(run("llookup:public:k@alice"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            reply.render(&Prompt::Owner(alice), ErrorStyle::Legacy),
            &b"data:v\n@alice@"[..]
        );
    }

    /// A stand-in connection that counts the [`Told::Deprovisioned`] it is told.
    #[derive(Default)]
    struct DeprovisionedCount(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl Actor for DeprovisionedCount {
        type Context = Context<Self>;
    }

    impl Handler<Told> for DeprovisionedCount {
        type Result = ();

        fn handle(&mut self, told: Told, _: &mut Context<Self>) {
            if told == Told::Deprovisioned {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    #[actix_rt::test]
    async fn a_deprovisioned_atsigns_key_store_tells_its_connections_and_stops() {
        let dir = TempDir::new("keystore-evict");
        let hosts = hosts(&dir, Duration::from_secs(60)).await;
        let alice = AtSign::parse("@alice").unwrap();
        let store = hosts.get(&alice);
        let told = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for id in [1, 2] {
            let connection = DeprovisionedCount(std::sync::Arc::clone(&told)).start();
            let connection = connection.recipient();
            store.send(Attach { id, connection }).await.unwrap();
        }
        hosts.evict(&alice);
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(told.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert!(!store.connected());
    }

    #[actix_rt::test]
    async fn a_key_store_with_a_connection_open_stays_however_idle() {
        let dir = TempDir::new("keystore-attached");
        let hosts = hosts(&dir, Duration::from_millis(200)).await;
        let alice = AtSign::parse("@alice").unwrap();
        let store = hosts.get(&alice);
        let connection = DeprovisionedCount::default().start();
        let connection = connection.clone().recipient();
        store.send(Attach { id: 7, connection }).await.unwrap();
        actix_rt::time::sleep(Duration::from_millis(600)).await;
        assert!(store.connected(), "stopped with a connection open");
        store.send(Detach(7)).await.unwrap();
        actix_rt::time::sleep(Duration::from_millis(600)).await;
        assert!(!store.connected(), "kept running with no connection, idle");
    }

    #[actix_rt::test]
    async fn one_key_store_per_atsign() {
        let dir = TempDir::new("keystore-per-atsign");
        let hosts = hosts(&dir, Duration::from_secs(60)).await;
        let (alice, bob) = (
            AtSign::parse("@alice").unwrap(),
            AtSign::parse("@bob").unwrap(),
        );
        assert_eq!(hosts.get(&alice), hosts.get(&alice));
        assert_ne!(hosts.get(&alice), hosts.get(&bob));
        assert_eq!(hosts.running(), 2);
    }
}
