//! What the atServer tells Prometheus (`/metrics` on `metrics_listen`), process-wide: every
//! actor records into the one [`metrics()`]. No label names an atSign or a key, so the number
//! of series stays bounded whatever is hosted.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `atserver_connections` | gauge | `state`: unauthenticated, owner, peer, monitor |
//! | `atserver_commands_total` | counter | `verb`, `result` (`ok` or the error code) |
//! | `atserver_command_duration_seconds` | histogram | `verb` |
//! | `atserver_bytes_total` | counter | `direction`: in, out |
//! | `atserver_keystores` | gauge | key stores in memory |
//! | `atserver_atsigns` | gauge | atSigns hosted |
//! | `atserver_notifications_total` | counter | `event`: queued, delivered, failed, expired |
//! | `atserver_notification_delivery_seconds` | histogram | notify → delivered to another atServer |
//! | `atserver_peer_links` | gauge | connections to other atServers open |
//! | `atserver_peer_handshake_failures_total` | counter | |
//! | `atserver_store_operations_total` | counter | `backend`, `kind`: read, write |
//! | `atserver_store_errors_total` | counter | `backend` |
//! | `atserver_redis_resubscriptions_total` | counter | Redis subscriptions lost and made again |
//! | `atserver_redis_notifications_dropped_total` | counter | published notifications dropped on arrival: the node read them too slowly ([`crate::store::feed`]) |

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    pub connections: IntGaugeVec,
    pub commands: IntCounterVec,
    pub command_duration: HistogramVec,
    pub bytes: IntCounterVec,
    pub keystores: IntGauge,
    pub atsigns: IntGauge,
    pub notifications: IntCounterVec,
    pub delivery_duration: Histogram,
    pub peer_links: IntGauge,
    pub handshake_failures: IntCounter,
    pub store_operations: IntCounterVec,
    pub store_errors: IntCounterVec,
    pub redis_resubscriptions: IntCounter,
    pub redis_notifications_dropped: IntCounter,
}

/// The one set of metrics of this process.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: C) -> C {
            r.register(Box::new(c.clone()))
                .expect("each metric registered once");
            c
        }
        let opts = |name: &str, help: &str| Opts::new(name, help);
        Metrics {
            connections: register(
                &registry,
                IntGaugeVec::new(opts("atserver_connections", "Protocol connections open, by state."), &["state"])
                    .expect("metric"),
            ),
            commands: register(
                &registry,
                IntCounterVec::new(
                    opts("atserver_commands_total", "Commands answered, by verb and result (ok or the error code)."),
                    &["verb", "result"],
                )
                .expect("metric"),
            ),
            command_duration: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new("atserver_command_duration_seconds", "Time from a command's line to its reply, by verb.")
                        .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                    &["verb"],
                )
                .expect("metric"),
            ),
            bytes: register(
                &registry,
                IntCounterVec::new(opts("atserver_bytes_total", "Protocol bytes read (in) and written (out)."), &["direction"])
                    .expect("metric"),
            ),
            keystores: register(&registry, IntGauge::new("atserver_keystores", "Key stores in memory.").expect("metric")),
            atsigns: register(&registry, IntGauge::new("atserver_atsigns", "atSigns hosted.").expect("metric")),
            notifications: register(
                &registry,
                IntCounterVec::new(
                    opts("atserver_notifications_total", "Notifications to other atServers: queued, delivered, failed attempts, expired undelivered."),
                    &["event"],
                )
                .expect("metric"),
            ),
            delivery_duration: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new("atserver_notification_delivery_seconds", "From notify to delivery on another atServer.")
                        .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0]),
                )
                .expect("metric"),
            ),
            peer_links: register(&registry, IntGauge::new("atserver_peer_links", "Connections to other atServers open.").expect("metric")),
            handshake_failures: register(
                &registry,
                IntCounter::new("atserver_peer_handshake_failures_total", "Handshakes (from/pol) refused by another atServer.").expect("metric"),
            ),
            store_operations: register(
                &registry,
                IntCounterVec::new(opts("atserver_store_operations_total", "Key reads and writes, by backend."), &["backend", "kind"])
                    .expect("metric"),
            ),
            store_errors: register(
                &registry,
                IntCounterVec::new(opts("atserver_store_errors_total", "Store operations that failed, by backend."), &["backend"])
                    .expect("metric"),
            ),
            redis_resubscriptions: register(
                &registry,
                IntCounter::new("atserver_redis_resubscriptions_total", "Redis subscriptions lost and made again.").expect("metric"),
            ),
            redis_notifications_dropped: register(
                &registry,
                IntCounter::new(
                    "atserver_redis_notifications_dropped_total",
                    "Notifications from Redis pub/sub dropped on arrival: this node read them too slowly (their monitors end and replay).",
                )
                .expect("metric"),
            ),
            registry,
        }
    }

    /// The Prometheus text of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
