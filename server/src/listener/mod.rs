//! Accepting connections for every hosted atSign: one shared TLS port routed by SNI
//! (`<label>.<sni_domain>`), and one port per atSign from the optional port range for clients
//! without SNI. Connections and key stores are spread over one worker arbiter per CPU.
//!
//! Prints `listening on <addr>` for the shared port and `serving @atsign on <addr>` for each
//! per-atSign port once bound, so scripts and tests learn the real ports.

mod accept;
mod hosted;
mod lean_tls;

use std::io::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_rt::Arbiter;
use at_common::config::TlsConfig;
use at_directory::shutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin;
use crate::config::ServerConfig;
use crate::http;
use crate::node::Node;
use crate::store::Store;
use crate::{cache_refresh, maintenance};
use accept::{Accepting, Route, Shared};
use hosted::{Hosted, Served};

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

/// Binds every listener, then serves until SIGINT or SIGTERM, or until the store fails for
/// good (then the node exits non-zero, so Kubernetes or systemd restarts it rather than it
/// answering AT0002 to everyone).
pub async fn run(config: ServerConfig, store: Store) -> Result<(), ListenError> {
    // Told to stop (readiness off) before it stops accepting and drains.
    let (stopping, stopping_rx) = watch::channel(false);
    let served = start(&config, &store, stopping_rx).await?;
    let failed = tokio::select! {
        signal = shutdown::signal() => {
            let pause = Duration::from_millis(config.shutdown_pause_millis);
            shutdown::pause(signal, pause, &stopping).await;
            None
        }
        why = store_failure(&store) => Some(why),
    };
    let _ = stopping.send(true);
    drain(&config, &store, &served).await;
    match failed {
        Some(why) => Err(ListenError::StoreFailed(why)),
        None => Ok(()),
    }
}

/// Builds the node, binds its ports, says where they are and starts the background jobs.
async fn start(
    config: &ServerConfig,
    store: &Store,
    stopping: watch::Receiver<bool>,
) -> Result<Rc<Served>, ListenError> {
    let tls_config = served_names(config);
    let tls = at_common::tls::server_config_verifying_clients(
        &tls_config,
        &config.data_dir,
        &config.peer_ca_files,
    )?
    .map(|(server, source)| {
        tracing::info!(?source, "TLS ready");
        server
    });
    let workers: Arc<Vec<Arbiter>> = Arc::new(
        (0..std::thread::available_parallelism().map_or(1, |n| n.get()))
            .map(|_| Arbiter::new())
            .collect(),
    );
    let node = Node::start(
        config,
        store.clone(),
        config.peer_settings(&tls_config)?,
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
    let listeners = bind_all(config, store).await?;
    let probes = match config.metrics_listen.is_empty() {
        true => None,
        false => {
            let probes = http::Probes::new(
                store.clone(),
                shared.hosts.clone(),
                stopping,
                Duration::from_millis(config.readiness_grace_millis),
            );
            Some(serve_probes(&config.metrics_listen, probes)?)
        }
    };
    announce(config, &listeners, probes)?;
    let served = Rc::new(Served::start(
        Accepting::new(shared, workers),
        listeners,
        config.listen.ip(),
    ));
    background(config, store, &served, admin);
    Ok(served)
}

/// The TLS settings with the names a self-signed certificate must carry: every atSign's SNI
/// name and the public host.
fn served_names(config: &ServerConfig) -> TlsConfig {
    let mut tls = config.tls.clone();
    if !config.sni_domain.is_empty() {
        tls.self_signed_names
            .push(format!("*.{}", config.sni_domain));
    }
    if !tls.self_signed_names.contains(&config.public_host) {
        tls.self_signed_names.push(config.public_host.clone());
    }
    tls
}

/// The shared (SNI) port, then a port of its own for each atSign that has one.
async fn bind_all(
    config: &ServerConfig,
    store: &Store,
) -> Result<Vec<(TcpListener, Route)>, ListenError> {
    let mut listeners = vec![(bind(config.listen).await?, Route::BySni)];
    for atsign in store.list_atsigns().await? {
        if let Some(port) = store.get_atsign(&atsign).await?.and_then(|i| i.port) {
            let addr = SocketAddr::new(config.listen.ip(), port);
            listeners.push((bind(addr).await?, Route::Fixed(atsign)));
        }
    }
    Ok(listeners)
}

/// The HTTP listener for `/metrics`, `/healthz`, `/readyz` and the status API.
fn serve_probes(listen: &str, probes: http::Probes) -> Result<SocketAddr, ListenError> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| ListenError::Config(format!("metrics_listen: {e}")))?;
    let bind_error = |source| ListenError::Bind { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    http::serve(listener, probes).map_err(bind_error)
}

/// Prints the bound addresses: what scripts and tests wait for.
fn announce(
    config: &ServerConfig,
    listeners: &[(TcpListener, Route)],
    probes: Option<SocketAddr>,
) -> Result<(), ListenError> {
    let mut out = std::io::stdout().lock();
    for (listener, route) in listeners {
        let addr = listener.local_addr().map_err(|source| ListenError::Bind {
            addr: config.listen,
            source,
        })?;
        let _ = match route {
            Route::BySni => writeln!(out, "listening on {addr}"),
            Route::Fixed(atsign) => writeln!(out, "serving {atsign} on {addr}"),
        };
    }
    if let Some(addr) = probes {
        let _ = writeln!(out, "metrics on {addr}");
    }
    let _ = out.flush();
    Ok(())
}

/// The jobs that run beside serving, on this thread: store maintenance, refreshing cached
/// keys, following provisioning changes made by other nodes (via the store) and by the admin
/// socket.
fn background(
    config: &ServerConfig,
    store: &Store,
    served: &Rc<Served>,
    admin: Option<tokio::net::UnixListener>,
) {
    actix_rt::spawn(maintenance::run(store.clone(), config.maintenance()));
    let interval = Duration::from_secs(config.cache_refresh_interval_secs);
    let hosts = &served.accepting.shared.hosts;
    let (peers, monitors) = (hosts.peers().clone(), hosts.monitors().clone());
    actix_rt::spawn(cache_refresh::run(store.clone(), peers, monitors, interval));
    if let Some(events) = store.watch_atsigns() {
        actix_rt::spawn(hosted::follow(events, store.clone(), Rc::clone(served)));
    }
    if let Some(admin) = admin {
        let served = Rc::clone(served);
        actix_rt::spawn(admin::serve(
            admin,
            config.clone(),
            store.clone(),
            served.accepting.shared.limits.admission.clone(),
            move |change| served.apply(change),
        ));
    }
}

/// Stops accepting, lets each connection finish the command in flight and close, within the
/// grace period; then writes the last access counts and removes the admin socket (the store
/// is flushed and closed when dropped).
async fn drain(config: &ServerConfig, store: &Store, served: &Served) {
    let grace = Duration::from_millis(config.shutdown_grace_millis);
    let admission = &served.accepting.shared.limits.admission;
    tracing::info!(open = admission.open(), ?grace, "shutting down");
    served.stop_accepting();
    admission.drain();
    shutdown::closed(|| admission.open(), grace).await;
    if let Err(error) = store.write_accesses().await {
        tracing::warn!(%error, "could not write the last access counts");
    }
    let _ = std::fs::remove_file(admin::socket_path(&config.data_dir));
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

async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })
}
