//! Accepting connections: the connection limit, the TLS handshake, and spreading sessions over
//! worker threads (one actix arbiter per CPU by default; each arbiter is single-threaded).
//!
//! Prints `listening on <addr>` (and `metrics on <addr>`) on stdout once bound, so scripts and
//! tests that asked for port 0 learn the real port.

use std::io::Write as _;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use actix_rt::Arbiter;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::config::DirectoryConfig;
use crate::metrics::Metrics;
use crate::session::{Policy, Session, Slot};
use crate::status::StatusService;
use crate::store::Store;
use crate::Error;

/// Everything a worker needs to serve a connection, but its store handle.
struct Shared {
    metrics: Metrics,
    policy: Arc<Policy>,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
}

/// Binds, then serves until SIGINT or SIGTERM.
pub async fn run(config: DirectoryConfig, store: Store) -> Result<(), Error> {
    let tls = match at_common::tls::acceptor(&config.tls, &config.data_dir)? {
        Some((acceptor, source)) => {
            tracing::info!(?source, "TLS ready");
            Some(acceptor)
        }
        None => {
            tracing::warn!("serving plain TCP: tls.plain is set");
            None
        }
    };
    let metrics = Metrics::new();
    // Told to stop: `/readyz` answers 503 from then on; then, after the pause, draining.
    let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
    let (draining, draining_rx) = tokio::sync::watch::channel(false);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(io_error(format!("binding {}", config.listen)))?;
    let local = listener
        .local_addr()
        .map_err(io_error("local address".into()))?;
    let metrics_addr = match config.metrics_listen {
        Some(addr) => Some(serve_http(addr, &config, &store, &metrics, stopping_rx)?),
        None => None,
    };
    let shared = Arc::new(Shared {
        metrics: metrics.clone(),
        policy: Arc::new(Policy {
            idle_timeout: config.idle_timeout(),
            miss_delay: Duration::from_millis(config.miss_delay_ms),
            max_misses: config.max_misses,
            buffer_limit: config.buffer_limit,
            draining: draining_rx,
        }),
        tls,
        handshake_timeout: Duration::from_secs(config.handshake_timeout_secs),
    });
    let mut workers = Vec::with_capacity(config.worker_count());
    for _ in 0..config.worker_count() {
        let worker = Arbiter::new();
        let store = worker_store(&worker, &config, &store).await?;
        workers.push((worker, store));
    }
    // Only now: `listening on` tells scripts and tests the directory serves, which it cannot
    // before every worker has its store.
    announce(local, metrics_addr);
    let open = Arc::new(AtomicUsize::new(0));
    let workers = Arc::new(workers);
    let accepting = actix_rt::spawn(accept_loop(
        listener,
        Arc::clone(&shared),
        Arc::clone(&workers),
        Arc::clone(&open),
        config.max_connections,
    ));
    let signal = crate::shutdown::signal().await;
    let pause = Duration::from_millis(config.shutdown_pause_millis);
    crate::shutdown::pause(signal, pause, &stopping).await;
    // Stop accepting; each session answers its lookup in flight and closes, within the grace.
    accepting.abort();
    let grace = Duration::from_millis(config.shutdown_grace_millis);
    let open = || open.load(std::sync::atomic::Ordering::Acquire);
    tracing::info!(open = open(), ?grace, "shutting down");
    let _ = draining.send(true);
    crate::shutdown::closed(open, grace).await;
    for (worker, _) in workers.iter() {
        worker.stop();
    }
    Ok(())
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// The HTTP listener: `/metrics`, `/healthz`, `/readyz` and, when enabled, the status API.
fn serve_http(
    addr: std::net::SocketAddr,
    config: &DirectoryConfig,
    store: &Store,
    metrics: &Metrics,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<std::net::SocketAddr, Error> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(io_error(format!("binding {addr}")))?;
    let status = match config.status.enabled {
        true => Some(StatusService::new(
            &config.status,
            Some(store.clone()),
            &config.data_dir,
            Some(metrics.clone()),
        )?),
        false => None,
    };
    crate::http::serve(
        listener,
        metrics.clone(),
        store.clone(),
        status,
        Duration::from_millis(config.readiness_grace_millis),
        stopping,
    )
    .map_err(io_error("HTTP server".into()))
}

/// Hands each accepted connection to the next worker, until aborted.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    workers: Arc<Vec<(Arbiter, Store)>>,
    open: Arc<AtomicUsize>,
    max_connections: usize,
) {
    let mut next = 0usize;
    loop {
        let (tcp, _peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                actix_rt::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = Slot::take(&open, max_connections, &shared.metrics);
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(error) => {
                tracing::warn!(%error, "could not hand a connection to a worker");
                continue;
            }
        };
        let (worker, store) = &workers[next % workers.len()];
        let (store, shared) = (store.clone(), Arc::clone(&shared));
        worker.spawn(async move { begin(tcp, slot, store, shared).await });
        next = next.wrapping_add(1);
    }
}

/// The store handle a worker's sessions use. The embedded store is one in-memory view shared
/// by all workers. A Redis connection runs its I/O task on the thread that opened it, so each
/// worker opens its own: otherwise every lookup would hop to the accepting thread and back.
async fn worker_store(
    worker: &Arbiter,
    config: &DirectoryConfig,
    shared: &Store,
) -> Result<Store, Error> {
    if config.store.backend == at_common::config::Backend::Embedded {
        return Ok(shared.clone());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (store_config, data_dir) = (config.store.clone(), config.data_dir.clone());
    worker.spawn(async move {
        let _ = tx.send(crate::store::open(&store_config, &data_dir).await);
    });
    let opened = rx.await.map_err(|_| Error::Io {
        context: "starting a worker".into(),
        source: std::io::Error::other("worker thread stopped"),
    })?;
    Ok(opened?)
}

fn announce(local: std::net::SocketAddr, metrics_addr: Option<std::net::SocketAddr>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {local}");
    if let Some(addr) = metrics_addr {
        let _ = writeln!(out, "metrics on {addr}");
    }
    let _ = out.flush();
}

/// On a worker: TLS handshake, then a session (or the limit message).
async fn begin(tcp: std::net::TcpStream, slot: Option<Slot>, store: Store, shared: Arc<Shared>) {
    let tcp = match TcpStream::from_std(tcp) {
        Ok(tcp) => tcp,
        Err(error) => {
            tracing::warn!(%error, "could not register a connection with its worker");
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    match &shared.tls {
        Some(acceptor) => {
            match tokio::time::timeout(shared.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => start(tls, slot, store, &shared).await,
                Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
        None => start(tcp, slot, store, &shared).await,
    }
}

async fn start<IO: AsyncRead + AsyncWrite + Unpin + 'static>(
    mut io: IO,
    slot: Option<Slot>,
    store: Store,
    shared: &Shared,
) {
    match slot {
        Some(slot) => {
            Session::start(
                io,
                store,
                shared.metrics.clone(),
                Arc::clone(&shared.policy),
                slot,
            );
        }
        None => {
            shared.metrics.rejected.inc();
            // Told as the atServer tells it, so clients see one message for one condition.
            let _ = io
                .write_all(&at_common::reply::connection_limit_line())
                .await;
            let _ = io.shutdown().await;
        }
    }
}
