//! Server-to-server: how this node's atSigns reach other atSigns' servers, and how it checks
//! another server's `pol` (docs/authentication.md#pol, docs/storage.md#cached-keys).
//!
//! - [`Peers`]: the node's handle, cheap to clone: asks another atSign's server over a
//!   [`link::PeerLink`] (one per hosted atSign, other atSign and mode, reused until idle, at
//!   most `outbound_max_limit` open, least recently used closed first), and verifies `pol`
//!   claims ([`pol`]).
//! - Where the other server is: an atSign hosted on this cluster is served by this very node,
//!   so its link is a connection made in-process ([`InProcess`]): no TCP, no TLS, nothing
//!   else skipped. The link runs the same `from`, `pol` and requests, and the other atSign's
//!   connection the same checks (its block list first) and verbs, as over the network; so
//!   co-hosted atSigns see each other exactly as atSigns on separate servers do. Any other
//!   atSign's server is found through the directory and reached over TLS.
//! - Every step (directory lookup, TCP+TLS, each reply) is bounded by `peer_timeout_millis`
//!   and every reply by [`MAX_REPLY`] bytes: a peer that is silent, slow or floods costs a
//!   bounded wait and buffer, then an error on the one request that needed it.
//!
//! - Whether another server pipelines (its `info:brief` announces `"features":["pipelining"]`)
//!   is asked by the first pol link to it and remembered here for [`PIPELINING_KNOWN_FOR`], so
//!   the links that follow do not ask again ([`link`] says what pipelining changes).
//!
//! Errors, as the requesting client sees them: the directory has no such atSign, or its
//! server cannot be reached → AT0007; the handshake is refused → AT0008; the peer answers
//! nonsense or too much → AT0008 too (the peer is at fault, not the request). Their texts
//! name no address and no TLS detail; those are logged.

pub mod link;
mod pipe;
pub mod pol;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use at_common::error::{AtError, ErrorCode};
use at_common::{Address, AtSign};
use at_directory::client::{self, Failure};
use tokio_rustls::TlsConnector;

use crate::store::Store;
use link::{Ask, Mode, PeerLink};

/// The longest reply read from another server: a value can be large (the spec's buffer
/// limit is 10 MB per line); anything beyond is refused, not buffered.
pub const MAX_REPLY: usize = 10 * 1024 * 1024;

/// How long what another server said of pipelining is taken for granted: a server upgraded or
/// replaced in between is asked again after this.
pub const PIPELINING_KNOWN_FOR: Duration = Duration::from_secs(600);

/// The most servers whose pipelining is remembered (a few dozen bytes each); beyond, what is
/// out of date goes first, then everything.
const PIPELINING_REMEMBERED: usize = 65_536;

/// What peers need from the node's configuration.
#[derive(Clone)]
pub struct PeerSettings {
    /// The atDirectory, asked where other atSigns live.
    pub directory: Address,
    /// Trusts the directory's and other servers' certificates; presents this node's own.
    pub tls: TlsConnector,
    /// One step of a conversation.
    pub timeout: Duration,
    /// Idle links are closed after this.
    pub idle: Duration,
    /// Links open at once.
    pub max_links: usize,
    /// Whether pol links may pipeline to a server that announces it ([`link`]).
    pub pipelining: bool,
}

/// What the node does with what a new link learns (set when the node starts,
/// [`Peers::observe`]): the link is a transport and writes nothing itself.
pub trait Observer: Send + Sync {
    /// `other`'s server answered the first question of a new link of `me`'s,
    /// `lookup:all:publickey@other`, with `reply` (`data:…` or `error:…`, no prompt).
    fn public_key(
        &self,
        me: &AtSign,
        other: &AtSign,
        reply: &str,
    ) -> futures_util::future::LocalBoxFuture<'static, ()>;
}

/// How this node serves its own atSigns to its own peer links (set by whoever starts the
/// node's connections, [`Peers::serve_in_process`]).
pub trait InProcess: Send + Sync {
    /// A new connection to `atsign`'s server on this node, as a client over the network would
    /// see it from its first byte (the `@` prompt), but trusted as this node's own (no TLS,
    /// so no client certificate to check).
    fn connect(&self, atsign: &AtSign) -> tokio::io::DuplexStream;
}

impl PeerSettings {
    /// A directory that is a closed local port: every atSign not hosted here is unreachable
    /// at once. For tests of what is answered without the network.
    #[cfg(test)]
    pub fn offline() -> PeerSettings {
        let tls = at_common::tls::client_config(&[]).expect("client TLS");
        PeerSettings {
            directory: Address::parse("127.0.0.1:1").expect("address"),
            tls: TlsConnector::from(Arc::new(tls)),
            timeout: Duration::from_secs(2),
            idle: Duration::from_secs(60),
            max_links: 4,
            pipelining: true,
        }
    }
}

/// Why a request to another atServer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("the directory has no atServer for {0}")]
    NotFound(AtSign),
    #[error("{0}")]
    Unreachable(String),
    #[error("handshake with {who} failed: {why}")]
    Handshake { who: AtSign, why: String },
    /// It answered, but not the protocol (not text, too long).
    #[error("{0}")]
    Protocol(String),
    /// This server could not do its part: its store failed, or what it read (its signing key)
    /// was unusable. Kept whole for the logs; the client is told AT0002.
    #[error("this server: {0}")]
    Local(AtError),
}

impl From<PeerError> for AtError {
    fn from(error: PeerError) -> AtError {
        match &error {
            PeerError::NotFound(who) => AtError::with_detail(
                ErrorCode::SecondaryNotFound,
                format!("Unable to find secondary address for atSign:{}", who.name()),
            ),
            PeerError::Unreachable(why) => {
                AtError::with_detail(ErrorCode::SecondaryNotFound, why.clone())
            }
            PeerError::Handshake { .. } | PeerError::Protocol(_) => {
                AtError::with_detail(ErrorCode::HandshakeFailure, error.to_string())
            }
            PeerError::Local(_) => AtError::from(ErrorCode::DataStore),
        }
    }
}

impl From<AtError> for PeerError {
    fn from(error: AtError) -> PeerError {
        PeerError::Local(error)
    }
}

impl From<crate::store::StoreError> for PeerError {
    fn from(error: crate::store::StoreError) -> PeerError {
        PeerError::Local(error.into())
    }
}

/// Which link: who asks, whom, and how.
type LinkKey = (AtSign, AtSign, Mode);

struct Inner {
    settings: PeerSettings,
    /// Which atSigns this cluster hosts (their links are in-process), and the signing keys
    /// a pol link proves its atSign with.
    store: Store,
    links: Mutex<HashMap<LinkKey, (Addr<PeerLink>, Instant)>>,
    /// Per other atSign: whether its server announced pipelining, and when it said so.
    pipelining: Mutex<HashMap<AtSign, (bool, Instant)>>,
    in_process: OnceLock<Arc<dyn InProcess>>,
    observer: OnceLock<Arc<dyn Observer>>,
}

/// The node's links to other atServers. Cheap to clone.
#[derive(Clone)]
pub struct Peers(Arc<Inner>);

impl Peers {
    pub fn new(settings: PeerSettings, store: Store) -> Peers {
        Peers(Arc::new(Inner {
            settings,
            store,
            links: Mutex::default(),
            pipelining: Mutex::default(),
            in_process: OnceLock::new(),
            observer: OnceLock::new(),
        }))
    }

    /// From now on, what new links learn goes to `observer`. Set once, when the node starts;
    /// until then (and in tests without a node) it is not taken in.
    pub fn observe(&self, observer: Arc<dyn Observer>) {
        if self.0.observer.set(observer).is_err() {
            tracing::warn!("the link observer was set twice; the first is kept");
        }
    }

    /// Hands what a new link of `me` to `other` was answered to its first question to the
    /// observer, if one is set.
    pub(crate) async fn learned_public_key(&self, me: &AtSign, other: &AtSign, reply: &str) {
        if let Some(observer) = self.0.observer.get() {
            observer.public_key(me, other, reply).await;
        }
    }

    /// From now on, links to atSigns hosted on this cluster are made through `server`. Set
    /// once, when the node starts; until then (and in tests without a node) such links fail
    /// as unreachable.
    pub fn serve_in_process(&self, server: Arc<dyn InProcess>) {
        if self.0.in_process.set(server).is_err() {
            tracing::warn!("in-process serving was set twice; the first is kept");
        }
    }

    /// A new in-process connection to `other`'s server when `other` is hosted on this
    /// cluster; `None` when it lives elsewhere.
    pub(crate) async fn in_process(
        &self,
        other: &AtSign,
    ) -> Result<Option<tokio::io::DuplexStream>, PeerError> {
        if self.0.store.get_atsign(other).await?.is_none() {
            return Ok(None);
        }
        match self.0.in_process.get() {
            Some(server) => Ok(Some(server.connect(other))),
            None => Err(PeerError::Unreachable(format!(
                "{other}'s atServer is unreachable"
            ))),
        }
    }

    /// Peers whose directory is a closed local port ([`PeerSettings::offline`]), serving no
    /// atSign in-process. For tests of what is answered without the network.
    #[cfg(test)]
    pub fn offline(store: Store) -> Peers {
        Peers::new(PeerSettings::offline(), store)
    }

    pub fn settings(&self) -> &PeerSettings {
        &self.0.settings
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// Sends `line` to `other`'s server for `me` (after `from:@me` + `pol` when `mode` is
    /// [`Mode::Pol`]) and returns the reply line, prompt removed: `data:…` or `error:…`.
    pub async fn ask(
        &self,
        me: &AtSign,
        other: &AtSign,
        mode: Mode,
        line: String,
    ) -> Result<String, PeerError> {
        let link = self.link(me, other, mode);
        match link.send(Ask(line)).await {
            Ok(answer) => answer,
            // The link stopped under us (idle or evicted at that instant): not the peer's fault.
            Err(_) => Err(PeerError::Unreachable(format!(
                "{other}'s atServer is unreachable"
            ))),
        }
    }

    /// Whether `other`'s server pipelines, if it said so less than [`PIPELINING_KNOWN_FOR`] ago.
    pub(crate) fn pipelining_of(&self, other: &AtSign) -> Option<bool> {
        let known = self.0.pipelining.lock().unwrap_or_else(|e| e.into_inner());
        known
            .get(other)
            .filter(|(_, when)| when.elapsed() < PIPELINING_KNOWN_FOR)
            .map(|(pipelines, _)| *pipelines)
    }

    /// Remembers whether `other`'s server pipelines.
    pub(crate) fn remember_pipelining(&self, other: &AtSign, pipelines: bool) {
        let mut known = self.0.pipelining.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= PIPELINING_REMEMBERED && !known.contains_key(other) {
            known.retain(|_, (_, when)| when.elapsed() < PIPELINING_KNOWN_FOR);
            if known.len() >= PIPELINING_REMEMBERED {
                known.clear();
            }
        }
        known.insert(other.clone(), (pipelines, Instant::now()));
    }

    /// Open links now.
    pub fn open_links(&self) -> usize {
        let links = self.0.links.lock().unwrap_or_else(|e| e.into_inner());
        links.values().filter(|(addr, _)| addr.connected()).count()
    }

    /// The link for `(me, other, mode)`, started if needed; the least recently used one is
    /// closed first when `max_links` are open.
    fn link(&self, me: &AtSign, other: &AtSign, mode: Mode) -> Addr<PeerLink> {
        let key = (me.clone(), other.clone(), mode);
        let mut links = self.0.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|_, (addr, _)| addr.connected());
        if let Some((addr, used)) = links.get_mut(&key) {
            *used = Instant::now();
            return addr.clone();
        }
        if links.len() >= self.0.settings.max_links {
            let oldest = links
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone());
            if let Some((addr, _)) = oldest.and_then(|key| links.remove(&key)) {
                addr.do_send(link::Close);
            }
        }
        let addr = PeerLink::new(me.clone(), other.clone(), mode, self.clone()).start();
        links.insert(key, (addr.clone(), Instant::now()));
        addr
    }

    /// Whether a client certificate naming `names` may speak for `claimant`: it must name the
    /// host the directory gives for `claimant`'s server (docs/authentication.md#mutual-tls; exact
    /// or one-label wildcard match, where the reference accepts any name containing the host).
    pub async fn certificate_speaks_for(
        &self,
        claimant: &AtSign,
        names: &[String],
    ) -> Result<bool, PeerError> {
        if names.is_empty() {
            return Ok(false);
        }
        let address = self.locate(claimant).await?;
        Ok(at_common::tls::names_host(names, address.host()))
    }

    /// Where `who`'s atServer is, by the directory.
    pub async fn locate(&self, who: &AtSign) -> Result<Address, PeerError> {
        let settings = &self.0.settings;
        let found = self
            .bounded(
                "the atDirectory",
                client::locate(&settings.tls, &settings.directory, who),
            )
            .await?;
        found.ok_or_else(|| PeerError::NotFound(who.clone()))
    }

    /// `step` with `what` (the atDirectory, @bob's atServer), failing as unreachable once
    /// the timeout passes. Why it could not be reached (addresses, TLS) is logged, not told.
    async fn bounded<T>(
        &self,
        what: &str,
        step: impl std::future::Future<Output = Result<T, Failure>>,
    ) -> Result<T, PeerError> {
        let timeout = self.0.settings.timeout;
        match tokio::time::timeout(timeout, step).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(failure)) => Err(self.failed(what, failure)),
            Err(_) => Err(self.silent(what)),
        }
    }

    /// What a failed step with `what` is told as.
    pub(crate) fn failed(&self, what: &str, failure: Failure) -> PeerError {
        match failure {
            Failure::Protocol(why) => PeerError::Protocol(format!("{what}: {why}")),
            Failure::Unreachable(why) => {
                tracing::info!(what, %why, "a peer step failed");
                PeerError::Unreachable(format!("{what} is unreachable"))
            }
        }
    }

    /// What a step with `what` that passed the timeout is told as.
    pub(crate) fn silent(&self, what: &str) -> PeerError {
        PeerError::Unreachable(format!(
            "{what} did not answer within {} ms",
            self.0.settings.timeout.as_millis()
        ))
    }
}
