//! Accept loops and what a worker does with an accepted socket: the TLS handshake (bounded in
//! time, after the admission ticket so handshake floods are bounded too), finding the atSign
//! by route, and starting its [`Connection`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_rt::Arbiter;
use at_common::AtSign;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::hosted::Hosted;
use super::lean_tls;
use crate::admin;
use crate::connection::actor::{Connection, Limits, Origin};
use crate::connection::admission::Ticket;
use crate::connection::throttle::Source;
use crate::keystore::Hosts;

/// How a listener finds the atSign a connection is for.
#[derive(Clone)]
pub(super) enum Route {
    /// The shared port: by the TLS server name.
    BySni,
    /// A port of the range: always this atSign.
    Fixed(AtSign),
}

/// Everything a worker needs to serve a connection.
pub(super) struct Shared {
    /// `None` when `tls.plain` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub hosts: Hosts,
    pub hosted: Hosted,
    pub limits: Arc<Limits>,
}

/// What starts accept loops: used at start-up and when the admin socket adds an atSign.
pub(super) struct Accepting {
    pub shared: Arc<Shared>,
    workers: Arc<Vec<Arbiter>>,
    next: Arc<AtomicUsize>,
}

impl Accepting {
    pub fn new(shared: Arc<Shared>, workers: Arc<Vec<Arbiter>>) -> Accepting {
        Accepting {
            shared,
            workers,
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn spawn(&self, listener: TcpListener, route: Route) -> actix_rt::task::JoinHandle<()> {
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
    pub fn apply(
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
        Some(config) => {
            let handshake = lean_tls::accept(tcp, Arc::clone(config));
            let tls = match tokio::time::timeout(Duration::from_secs(10), handshake).await {
                Ok(Ok(tls)) => tls,
                _ => return,
            };
            let server_name = tls.server_name().map(str::to_string);
            // Verified in the handshake against the trusted CAs, when one was presented.
            let client_names = tls
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
