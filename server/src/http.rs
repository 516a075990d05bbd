//! The atServer's HTTP listener (`metrics_listen`; off when empty), apart from the protocol
//! port: probes for Kubernetes and Prometheus metrics.
//!
//! - `GET /healthz`: `200 ok` while the process serves HTTP at all (liveness).
//! - `GET /readyz`: `200 ready` when the store answers a ping within a second, or has been
//!   failing for less than `readiness_grace_millis`; otherwise `503` with the reason
//!   (readiness: a node whose Redis is gone for good takes no traffic; a blip takes none out);
//!   `503 not ready: shutting down` from SIGTERM on, while the node still serves through its
//!   pause (`shutdown_pause_millis`), so the load balancer takes it out before it stops
//!   accepting.
//!   The listener starts after the protocol listeners are bound, so "up" is implied.
//! - `GET /metrics`: Prometheus text, every metric of [`crate::metrics`].

use std::net::SocketAddr;

use actix_web::{web, App, HttpResponse, HttpServer};
use at_directory::http::{healthz, not_ready, StoreReadiness, READY_TIMEOUT};

use crate::keystore::Hosts;
use crate::metrics::metrics;
use crate::store::Store;

/// What the endpoints read.
#[derive(Clone)]
pub struct Probes {
    pub store: Store,
    pub hosts: Hosts,
    /// True once the node has been told to stop.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    pub readiness: std::sync::Arc<StoreReadiness>,
}

impl Probes {
    pub fn new(
        store: Store,
        hosts: Hosts,
        stopping: tokio::sync::watch::Receiver<bool>,
        readiness_grace: std::time::Duration,
    ) -> Probes {
        Probes {
            store,
            hosts,
            stopping,
            readiness: std::sync::Arc::new(StoreReadiness::new(readiness_grace)),
        }
    }

    /// Sets the gauges read at scrape time, then renders every metric.
    async fn render(&self) -> String {
        let m = metrics();
        m.keystores
            .set(i64::try_from(self.hosts.running()).unwrap_or(i64::MAX));
        m.peer_links
            .set(i64::try_from(self.hosts.peers().open_links()).unwrap_or(i64::MAX));
        if let Ok(Ok(atsigns)) =
            tokio::time::timeout(READY_TIMEOUT, self.store.list_atsigns()).await
        {
            m.atsigns
                .set(i64::try_from(atsigns.len()).unwrap_or(i64::MAX));
        }
        m.render()
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
            .route("/metrics", web::get().to(render_metrics))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    actix_rt::spawn(server);
    Ok(addr)
}

/// The node is ready when its store answers a ping, until it is told to stop.
async fn readyz(probes: web::Data<Probes>) -> HttpResponse {
    if *probes.stopping.borrow() {
        return not_ready("shutting down");
    }
    // A store that can never answer again (the node is exiting) is not a blip.
    if let Some(why) = probes.store.failure() {
        return not_ready(format_args!("store: {why}"));
    }
    probes.readiness.answer(probes.store.ping()).await
}

async fn render_metrics(probes: web::Data<Probes>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(probes.render().await)
}
