//! The HTTP listener (`metrics_listen`): Prometheus `GET /metrics`, the probes `GET /healthz`
//! (200 while serving) and `GET /readyz` (200 when the store answers within a second, or has
//! failed for less than `readiness_grace_millis`; else 503), and the status API.
//!
//! # Status API
//! `GET /api/status/<atSign>` (`@alice`, `alice` or `%40alice`) answers the atSign's
//! [`AtStatus`] as JSON with its HTTP code: 200 activated, 418 teapot, 404 notFound, 503 atServer
//! not running, 502 directory down, 500 error. `HEAD` gives the same code and headers without
//! the body; any other method 405 with `Allow: GET, HEAD`; a path that is not an atSign 400.
//! `Cache-Control: max-age` says how long the answer is reused (`status.cache_ms`).

use std::net::SocketAddr;

use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpResponse, HttpServer};
use at_common::status::AtStatus;
use at_common::AtSign;

use crate::metrics::Metrics;
use crate::status::StatusService;
use crate::store::Store;

/// How long `/readyz` waits for the store.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves `/metrics`, `/healthz`, `/readyz` (and `/api/status/…` when `status` is given) on
/// `listener` until the actix system stops.
pub fn serve(
    listener: std::net::TcpListener,
    metrics: Metrics,
    store: Store,
    status: Option<StatusService>,
    readiness_grace: std::time::Duration,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let readiness = web::Data::new(StoreReadiness::new(readiness_grace));
    let stopping = web::Data::new(stopping);
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .app_data(web::Data::new(metrics.clone()))
            .app_data(web::Data::new(store.clone()))
            .app_data(readiness.clone())
            .app_data(stopping.clone())
            .route("/metrics", web::get().to(render_metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz));
        if let Some(status) = &status {
            app = app.app_data(web::Data::new(status.clone())).service(
                web::resource("/api/status/{atsign}")
                    .route(web::get().to(atsign_status))
                    .route(web::head().to(atsign_status))
                    .default_service(web::to(method_not_allowed)),
            );
        }
        app
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    actix_rt::spawn(server);
    Ok(addr)
}

/// `/healthz` (liveness): the process serves HTTP. The atServer answers the same way.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// `/readyz` (readiness) as "can this process serve", not "did the store just blink": `200
/// ready` when the store answers within [`READY_TIMEOUT`]; while it has been failing for less
/// than `grace` (`readiness_grace_millis`), still `200 ready: store failing for <n> ms: <why>`,
/// so one Redis restart does not take every replica out of its Service at once (clients would
/// then be refused instead of answered once Redis is back); failing longer, `503 not ready:
/// store: <why>`. The atServer answers the same way.
#[derive(Debug)]
pub struct StoreReadiness {
    grace: std::time::Duration,
    failing_since: std::sync::Mutex<Option<std::time::Instant>>,
}

impl StoreReadiness {
    pub fn new(grace: std::time::Duration) -> StoreReadiness {
        StoreReadiness {
            grace,
            failing_since: std::sync::Mutex::new(None),
        }
    }

    /// The answer to `/readyz`, `check` being the store's ping.
    pub async fn answer<E: std::fmt::Display>(
        &self,
        check: impl std::future::Future<Output = Result<(), E>>,
    ) -> HttpResponse {
        let why = match tokio::time::timeout(READY_TIMEOUT, check).await {
            Ok(Ok(())) => {
                *self.failing_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
                return HttpResponse::Ok()
                    .content_type("text/plain")
                    .body("ready\n");
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {} ms", READY_TIMEOUT.as_millis()),
        };
        let failing = {
            let mut since = self.failing_since.lock().unwrap_or_else(|e| e.into_inner());
            since.get_or_insert_with(std::time::Instant::now).elapsed()
        };
        if failing < self.grace {
            return HttpResponse::Ok().content_type("text/plain").body(format!(
                "ready: store failing for {} ms: {why}\n",
                failing.as_millis()
            ));
        }
        not_ready(format_args!("store: {why}"))
    }
}

/// `503 not ready: <why>`, the one shape of a `/readyz` refusal (the atServer's too).
pub fn not_ready(why: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .content_type("text/plain")
        .body(format!("not ready: {why}\n"))
}

/// The directory is ready when its store answers a lookup (see [`StoreReadiness`]), until it
/// is told to stop.
async fn readyz(
    store: web::Data<Store>,
    readiness: web::Data<StoreReadiness>,
    stopping: web::Data<tokio::sync::watch::Receiver<bool>>,
) -> HttpResponse {
    if *stopping.borrow() {
        return not_ready("shutting down");
    }
    let probe = AtSign::parse("@readyz").expect("a valid atSign");
    readiness
        .answer(async { store.get(&probe).await.map(|_| ()) })
        .await
}

async fn render_metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}

/// GET and HEAD: actix leaves the body out of a HEAD response but keeps its length.
async fn atsign_status(path: web::Path<String>, service: web::Data<StatusService>) -> HttpResponse {
    let at_sign = match AtSign::parse(&path) {
        Ok(at_sign) => at_sign,
        Err(e) => {
            let body = serde_json::json!({ "error": format!("not an atSign: {e}") });
            return HttpResponse::BadRequest()
                .content_type("application/json")
                .body(body.to_string());
        }
    };
    let status = service.status(&at_sign).await;
    respond(&status, service.cache_ttl().as_secs())
}

fn respond(status: &AtStatus, max_age: u64) -> HttpResponse {
    let code =
        StatusCode::from_u16(status.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(code)
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, format!("max-age={max_age}")))
        .body(status.to_json())
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "GET, HEAD"))
        .content_type("application/json")
        .body(r#"{"error":"only GET and HEAD are allowed"}"#)
}
