//! The atServer's HTTP listener (`metrics_listen`; off when empty), apart from the protocol
//! port: probes for Kubernetes and Prometheus metrics.
//!
//! - `GET /healthz`: `200 ok` while the process serves HTTP at all (liveness).
//! - `GET /readyz`: `200 ready` when the store answers a ping within [`READY_TIMEOUT`];
//!   otherwise `503` with the reason (readiness: a node whose Redis is gone takes no traffic).
//!   The listener starts after the protocol listeners are bound, so "up" is implied.
//! - `GET /metrics`: Prometheus text: connections open, key stores in memory, peer links open.
//!   No label names an atSign or a key: cardinality stays bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};

use crate::keystore::Hosts;
use crate::store::Store;

/// How long `/readyz` waits for the store.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// What the endpoints read.
#[derive(Clone)]
pub struct Probes {
    pub store: Store,
    pub hosts: Hosts,
    /// Protocol connections open now.
    pub open: Arc<AtomicUsize>,
    metrics: Arc<Gauges>,
}

struct Gauges {
    registry: Registry,
    connections: IntGauge,
    keystores: IntGauge,
    peer_links: IntGauge,
}

impl Probes {
    pub fn new(store: Store, hosts: Hosts, open: Arc<AtomicUsize>) -> Probes {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let gauge = IntGauge::new(name, help).expect("a valid metric");
            registry
                .register(Box::new(gauge.clone()))
                .expect("registered once");
            gauge
        };
        let metrics = Gauges {
            connections: gauge("atserver_connections", "Protocol connections open now."),
            keystores: gauge(
                "atserver_keystores",
                "Hosted atSigns whose key store is in memory now.",
            ),
            peer_links: gauge(
                "atserver_peer_links",
                "Connections to other atServers open now.",
            ),
            registry,
        };
        Probes {
            store,
            hosts,
            open,
            metrics: Arc::new(metrics),
        }
    }

    fn render(&self) -> String {
        let m = &self.metrics;
        m.connections
            .set(i64::try_from(self.open.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        m.keystores
            .set(i64::try_from(self.hosts.running()).unwrap_or(i64::MAX));
        m.peer_links
            .set(i64::try_from(self.hosts.peers().open_links()).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        // Encoding gauges into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&m.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Serves the endpoints on `listener` until the actix system stops.
pub fn serve(listener: std::net::TcpListener, probes: Probes) -> std::io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(probes.clone()))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    actix_rt::spawn(server);
    Ok(addr)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(probes: web::Data<Probes>) -> HttpResponse {
    let unready = match tokio::time::timeout(READY_TIMEOUT, probes.store.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(format!("store: {error}")),
        Err(_) => Some(format!(
            "store: no answer within {} ms",
            READY_TIMEOUT.as_millis()
        )),
    };
    match unready {
        None => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
        Some(why) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("not ready: {why}\n")),
    }
}

async fn metrics(probes: web::Data<Probes>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(probes.render())
}
