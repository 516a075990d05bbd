//! The HTTP listener (`metrics_listen`): Prometheus `GET /metrics`, and the status API.
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

/// Serves `/metrics` (and `/api/status/…` when `status` is given) on `listener` until the
/// actix system stops.
pub fn serve(
    listener: std::net::TcpListener,
    metrics: Metrics,
    status: Option<StatusService>,
) -> std::io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .app_data(web::Data::new(metrics.clone()))
            .route("/metrics", web::get().to(render_metrics));
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
