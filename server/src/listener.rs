//! Accepting connections for every hosted atSign: one shared TLS port routed by SNI
//! (`<label>.<sni_domain>`), and one port per atSign from the optional port range for clients
//! without SNI. Connections and key stores are spread over one worker arbiter per CPU.
//!
//! Prints `listening on <addr>` for the shared port and `serving @atsign on <addr>` for each
//! per-atSign port once bound, so scripts and tests learn the real ports.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_rt::Arbiter;
use at_common::AtSign;
use at_directory::shutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::config::ServerConfig;
use crate::connection::actor::{Connection, Limits, Origin};
use crate::connection::admission::Ticket;
use crate::connection::throttle::Source;
use crate::http;
use crate::keystore::Hosts;
use crate::node::Node;
use crate::peer::PeerSettings;
use crate::store::Store;
use crate::{cache_refresh, maintenance};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(transparent)]
    Tls(#[from] at_common::tls::TlsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("the store failed: {0}")]
    StoreFailed(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How a listener finds the atSign a connection is for.
#[derive(Clone)]
enum Route {
    /// The shared port: by the TLS server name.
    BySni,
    /// A port of the range: always this atSign.
    Fixed(AtSign),
}

/// What the listener knows of the hosted atSigns from the store: SNI label → atSign (a miss
/// asks the store for that one label: a newly provisioned atSign), and which are suspended.
struct Hosted {
    domain: String,
    map: RwLock<HashMap<String, AtSign>>,
    store: Store,
    suspensions: crate::suspension::Suspensions,
}

impl Hosted {
    async fn reload(&self) -> Result<(), crate::store::StoreError> {
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
    fn forget(&self, atsign: &AtSign) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, served| served != atsign);
    }

    async fn resolve(&self, server_name: &str) -> Option<AtSign> {
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

/// Everything a worker needs to serve a connection.
struct Shared {
    tls: Option<TlsAcceptor>,
    hosts: Hosts,
    hosted: Hosted,
    limits: Arc<Limits>,
}

/// Binds every listener, then serves until SIGINT or SIGTERM.
pub async fn run(config: ServerConfig, store: Store) -> Result<(), ListenError> {
    let mut tls_config = config.tls.clone();
    if !config.sni_domain.is_empty() {
        tls_config
            .self_signed_names
            .push(format!("*.{}", config.sni_domain));
    }
    if !tls_config.self_signed_names.contains(&config.public_host) {
        tls_config
            .self_signed_names
            .push(config.public_host.clone());
    }
    let tls = at_common::tls::acceptor_verifying_clients(
        &tls_config,
        &config.data_dir,
        &config.peer_ca_files,
    )?
    .map(|(acceptor, source)| {
        tracing::info!(?source, "TLS ready");
        acceptor
    });
    let workers: Arc<Vec<Arbiter>> = Arc::new(
        (0..std::thread::available_parallelism().map_or(1, |n| n.get()))
            .map(|_| Arbiter::new())
            .collect(),
    );
    let (draining, draining_rx) = tokio::sync::watch::channel(false);
    // Told to stop (readiness off) before it stops accepting (`draining`).
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    let node = Node::start(
        &config,
        store.clone(),
        PeerSettings::from_config(&config, &tls_config)?,
        draining_rx,
        workers.iter().map(Arbiter::handle).collect(),
    );
    let shared = Arc::new(Shared {
        tls,
        hosted: Hosted {
            domain: config.sni_domain.to_ascii_lowercase(),
            map: RwLock::default(),
            store: store.clone(),
            suspensions: node.hosts.suspensions().clone(),
        },
        hosts: node.hosts,
        limits: node.limits,
    });
    shared.hosted.reload().await?;
    // Serving matters more than administering: without its socket the node still serves,
    // and the CLI then says the store is in use.
    let admin = admin::bind(&config.data_dir)
        .inspect_err(|error| {
            let path = admin::socket_path(&config.data_dir);
            tracing::error!(%error, path = %path.display(), "no admin socket: provision/deprovision/list need the server stopped");
        })
        .ok();

    let mut listeners = vec![(bind(config.listen).await?, Route::BySni)];
    for atsign in store.list_atsigns().await? {
        if let Some(port) = store.get_atsign(&atsign).await?.and_then(|i| i.port) {
            let addr = SocketAddr::new(config.listen.ip(), port);
            listeners.push((bind(addr).await?, Route::Fixed(atsign)));
        }
    }
    {
        let mut out = std::io::stdout().lock();
        for (listener, route) in &listeners {
            let addr = listener.local_addr().map_err(|source| ListenError::Bind {
                addr: config.listen,
                source,
            })?;
            let _ = match route {
                Route::BySni => writeln!(out, "listening on {addr}"),
                Route::Fixed(atsign) => writeln!(out, "serving {atsign} on {addr}"),
            };
        }
        if !config.metrics_listen.is_empty() {
            let addr: SocketAddr = config
                .metrics_listen
                .parse()
                .map_err(|e| ListenError::Config(format!("metrics_listen: {e}")))?;
            let bind_error = |source| ListenError::Bind { addr, source };
            let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
            let probes = http::Probes::new(
                store.clone(),
                shared.hosts.clone(),
                stopping_rx.clone(),
                Duration::from_millis(config.readiness_grace_millis),
            );
            let addr = http::serve(listener, probes).map_err(bind_error)?;
            let _ = writeln!(out, "metrics on {addr}");
        }
        let _ = out.flush();
    }
    // One round-robin over the workers for all listeners: with a port per atSign, each
    // listener may see a single connection, and its own counter would put them all on one.
    let accepting = Accepting {
        shared: Arc::clone(&shared),
        workers,
        next: Arc::new(AtomicUsize::new(0)),
    };
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
    // Both run on this thread: the admin socket's changes and other nodes' (via the store).
    let served = Rc::new(Served {
        accepting,
        ports: RefCell::new(ports),
        ip: config.listen.ip(),
    });
    actix_rt::spawn(maintenance::run(store.clone(), &config));
    let interval = Duration::from_secs(config.cache_refresh_interval_secs);
    let peers = shared.hosts.peers().clone();
    actix_rt::spawn(cache_refresh::run(store.clone(), peers, interval));
    if let Some(events) = store.watch_atsigns() {
        actix_rt::spawn(follow(events, store.clone(), Rc::clone(&served)));
    }
    if let Some(admin) = admin {
        let served = Rc::clone(&served);
        actix_rt::spawn(admin::serve(
            admin,
            config.clone(),
            store.clone(),
            shared.limits.admission.clone(),
            move |change| served.apply(change),
        ));
    }
    // Until SIGTERM/Ctrl-C, or the store failing for good (then the node exits non-zero, so
    // Kubernetes or systemd restarts it rather than it answering AT0002 to everyone).
    let failed = tokio::select! {
        signal = shutdown::signal() => {
            let pause = Duration::from_millis(config.shutdown_pause_millis);
            shutdown::pause(signal, pause, &stopping).await;
            None
        }
        why = store_failure(&store) => Some(why),
    };
    let _ = stopping.send(true);
    // Stop accepting, let each connection finish the command in flight and close, then return
    // (the store is flushed and closed when dropped), within the grace period.
    let grace = Duration::from_millis(config.shutdown_grace_millis);
    tracing::info!(
        open = shared.limits.admission.open(),
        ?grace,
        "shutting down"
    );
    shared_port.into_iter().for_each(|handle| handle.abort());
    served
        .ports
        .borrow_mut()
        .drain()
        .for_each(|(_, handle)| handle.abort());
    let _ = draining.send(true);
    let deadline = std::time::Instant::now() + grace;
    while shared.limits.admission.open() > 0 && std::time::Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let left = shared.limits.admission.open();
    if left > 0 {
        tracing::warn!(left, "grace period over; closing the remaining connections");
    }
    if let Err(error) = store.write_accesses().await {
        tracing::warn!(%error, "could not write the last access counts");
    }
    let _ = std::fs::remove_file(admin::socket_path(&config.data_dir));
    match failed {
        Some(why) => Err(ListenError::StoreFailed(why)),
        None => Ok(()),
    }
}

/// Resolves when the store says it can never answer again ([`Store::failure`]).
async fn store_failure(store: &Store) -> String {
    loop {
        if let Some(why) = store.failure() {
            tracing::error!(%why, "the store failed; shutting the node down");
            return why;
        }
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The atSigns this node serves on ports of their own, and what starts accept loops.
struct Served {
    accepting: Accepting,
    ports: RefCell<HashMap<AtSign, actix_rt::task::JoinHandle<()>>>,
    ip: std::net::IpAddr,
}

impl Served {
    fn apply(&self, change: admin::Change) {
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
async fn follow(
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

/// What starts accept loops: used at start-up and when the admin socket adds an atSign.
struct Accepting {
    shared: Arc<Shared>,
    workers: Arc<Vec<Arbiter>>,
    next: Arc<AtomicUsize>,
}

impl Accepting {
    fn spawn(&self, listener: TcpListener, route: Route) -> actix_rt::task::JoinHandle<()> {
        actix_rt::spawn(accept_loop(
            listener,
            route,
            Arc::clone(&self.shared),
            Arc::clone(&self.workers),
            Arc::clone(&self.next),
        ))
    }

    /// Serves what an admin command changed while running: a new atSign's own port starts
    /// accepting; a removed atSign's port closes, its key store stops, and its SNI name is
    /// forgotten. (A new atSign's SNI name is found by the reload on a miss.)
    fn apply(
        &self,
        change: admin::Change,
        ports: &mut HashMap<AtSign, actix_rt::task::JoinHandle<()>>,
        ip: std::net::IpAddr,
    ) {
        match change {
            admin::Change::Added { port: None, .. } => {}
            // Already served (this node provisioned it, and then heard of it from the store).
            admin::Change::Added { atsign, .. } if ports.contains_key(&atsign) => {}
            admin::Change::Added {
                atsign,
                port: Some(port),
            } => {
                let addr = SocketAddr::new(ip, port);
                let listener = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .and_then(TcpListener::from_std);
                match listener {
                    Ok(listener) => {
                        tracing::info!(%atsign, %addr, "serving a newly provisioned atSign");
                        let handle = self.spawn(listener, Route::Fixed(atsign.clone()));
                        ports.insert(atsign, handle);
                    }
                    Err(error) => {
                        tracing::error!(%atsign, %addr, %error, "cannot serve the new atSign's port until restarted");
                    }
                }
            }
            admin::Change::Suspension { atsign, suspended } => {
                self.shared.hosts.suspensions().set(&atsign, suspended);
            }
            admin::Change::Removed(atsign) => {
                self.shared.hosts.suspensions().set(&atsign, false);
                if let Some(handle) = ports.remove(&atsign) {
                    handle.abort();
                }
                self.shared.hosts.evict(&atsign);
                self.shared.hosted.forget(&atsign);
                tracing::info!(%atsign, "stopped serving a deprovisioned atSign");
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })
}

async fn accept_loop(
    listener: TcpListener,
    route: Route,
    shared: Arc<Shared>,
    workers: Arc<Vec<Arbiter>>,
    next: Arc<AtomicUsize>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                actix_rt::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(tcp) = tcp.into_std() else { continue };
        let (shared, route) = (Arc::clone(&shared), route.clone());
        let worker = next.fetch_add(1, Ordering::Relaxed) % workers.len();
        workers[worker].spawn(async move { begin(tcp, peer.ip(), route, shared).await });
    }
}

/// On a worker: the TLS handshake, routing, then a `Connection` (or the limit message).
async fn begin(
    tcp: std::net::TcpStream,
    address: std::net::IpAddr,
    route: Route,
    shared: Arc<Shared>,
) {
    let Ok(tcp) = TcpStream::from_std(tcp) else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    // Taken before the TLS handshake (bounded in time), so floods of handshakes are bounded too.
    let ticket = shared
        .limits
        .admission
        .enter(Source::of(Some(address)))
        .ok();
    match &shared.tls {
        Some(acceptor) => {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    _ => return,
                };
            let server_name = tls.get_ref().1.server_name().map(str::to_string);
            // Verified by the acceptor against the trusted CAs, when one was presented.
            let client_names = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(at_common::tls::peer_names)
                .unwrap_or_default();
            let atsign = match route {
                Route::Fixed(atsign) => Some(atsign),
                Route::BySni => match server_name {
                    Some(name) => shared.hosted.resolve(&name).await,
                    None => None,
                },
            };
            let origin = Origin::Network {
                address,
                client_names,
            };
            start(tls, atsign, origin, ticket, &shared).await;
        }
        None => {
            let atsign = match route {
                Route::Fixed(atsign) => Some(atsign),
                Route::BySni => None,
            };
            let origin = Origin::Network {
                address,
                client_names: Vec::new(),
            };
            start(tcp, atsign, origin, ticket, &shared).await;
        }
    }
}

async fn start<IO: AsyncRead + AsyncWrite + Unpin + 'static>(
    mut io: IO,
    atsign: Option<AtSign>,
    origin: Origin,
    ticket: Option<Ticket>,
    shared: &Shared,
) {
    let Some(ticket) = ticket else {
        let _ = io
            .write_all(&at_common::reply::connection_limit_line())
            .await;
        let _ = io.shutdown().await;
        return;
    };
    let Some(atsign) = atsign else {
        // No atSign is served under this name: there is no prompt to give.
        tracing::debug!("connection for no hosted atSign; closing");
        let _ = io.shutdown().await;
        return;
    };
    Connection::start(
        io,
        atsign,
        &shared.hosts,
        Arc::clone(&shared.limits),
        Some(ticket),
        origin,
    );
}
