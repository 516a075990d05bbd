//! Accepting connections for every hosted atSign: one shared TLS port routed by SNI
//! (`<label>.<sni_domain>`), and one port per atSign from the optional port range for clients
//! without SNI. Connections and key stores are spread over one worker arbiter per CPU.
//!
//! Prints `listening on <addr>` for the shared port and `serving @atsign on <addr>` for each
//! per-atSign port once bound, so scripts and tests learn the real ports.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_rt::Arbiter;
use at_common::AtSign;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;
use crate::connection::actor::{Connection, Limits, Slot};
use crate::connection::throttle::AuthThrottle;
use crate::keystore::Hosts;
use crate::store::Store;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(transparent)]
    Tls(#[from] at_common::tls::TlsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
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

/// SNI label → atSign, loaded from the store and reloaded on a miss (a newly provisioned atSign).
struct Labels {
    domain: String,
    map: RwLock<HashMap<String, AtSign>>,
    store: Store,
}

impl Labels {
    async fn reload(&self) -> Result<(), crate::store::StoreError> {
        let mut fresh = HashMap::new();
        for atsign in self.store.list_atsigns().await? {
            if let Some(info) = self.store.get_atsign(&atsign).await? {
                fresh.insert(info.sni_label, atsign);
            }
        }
        *self.map.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
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
        self.reload().await.ok()?;
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&label)
            .cloned()
    }
}

/// Everything a worker needs to serve a connection.
struct Shared {
    tls: Option<TlsAcceptor>,
    hosts: Hosts,
    labels: Labels,
    limits: Arc<Limits>,
    open: Arc<AtomicUsize>,
    max: usize,
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
    let tls = at_common::tls::acceptor(&tls_config, &config.data_dir)?.map(|(acceptor, source)| {
        tracing::info!(?source, "TLS ready");
        acceptor
    });
    let workers: Arc<Vec<Arbiter>> = Arc::new(
        (0..std::thread::available_parallelism().map_or(1, |n| n.get()))
            .map(|_| Arbiter::new())
            .collect(),
    );
    let shared = Arc::new(Shared {
        tls,
        hosts: Hosts::new(
            store.clone(),
            Duration::from_secs(config.keystore_idle_secs),
            workers.iter().map(Arbiter::handle).collect(),
        ),
        labels: Labels {
            domain: config.sni_domain.to_ascii_lowercase(),
            map: RwLock::default(),
            store: store.clone(),
        },
        limits: Arc::new(Limits {
            started: std::time::Instant::now(),
            buffer_limit: config.buffer_limit,
            idle_unauthenticated: config.idle_limit(false),
            idle_authenticated: config.idle_limit(true),
            auth_throttle: Arc::new(AuthThrottle::new(config.throttle_limits())),
        }),
        open: Arc::new(AtomicUsize::new(0)),
        max: config.inbound_max_limit,
    });
    shared.labels.reload().await?;

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
        let _ = out.flush();
    }
    // One round-robin over the workers for all listeners: with a port per atSign, each
    // listener may see a single connection, and its own counter would put them all on one.
    let next = Arc::new(AtomicUsize::new(0));
    for (listener, route) in listeners {
        actix_rt::spawn(accept_loop(
            listener,
            route,
            Arc::clone(&shared),
            Arc::clone(&workers),
            Arc::clone(&next),
        ));
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    Ok(())
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
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                actix_rt::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(tcp) = tcp.into_std() else { continue };
        let (shared, route) = (Arc::clone(&shared), route.clone());
        let worker = next.fetch_add(1, Ordering::Relaxed) % workers.len();
        workers[worker].spawn(async move { begin(tcp, route, shared).await });
    }
}

/// On a worker: the TLS handshake, routing, then a `Connection` (or the limit message).
async fn begin(tcp: std::net::TcpStream, route: Route, shared: Arc<Shared>) {
    let Ok(tcp) = TcpStream::from_std(tcp) else {
        return;
    };
    let _ = tcp.set_nodelay(true);
    let slot = Slot::take(&shared.open, shared.max);
    match &shared.tls {
        Some(acceptor) => {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    _ => return,
                };
            let server_name = tls.get_ref().1.server_name().map(str::to_string);
            let atsign = match route {
                Route::Fixed(atsign) => Some(atsign),
                Route::BySni => match server_name {
                    Some(name) => shared.labels.resolve(&name).await,
                    None => None,
                },
            };
            start(tls, atsign, slot, &shared).await;
        }
        None => {
            let atsign = match route {
                Route::Fixed(atsign) => Some(atsign),
                Route::BySni => None,
            };
            start(tcp, atsign, slot, &shared).await;
        }
    }
}

async fn start<IO: AsyncRead + AsyncWrite + Unpin + 'static>(
    mut io: IO,
    atsign: Option<AtSign>,
    slot: Option<Slot>,
    shared: &Shared,
) {
    let Some(slot) = slot else {
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
    let keystore = shared.hosts.get(&atsign);
    Connection::start(io, atsign, keystore, Arc::clone(&shared.limits), slot);
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes sends).
async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
