//! `Metrics`: what the directory tells Prometheus, in a registry of its own (one per `run`).
//!
//! - `atdirectory_connections`: connections open now (gauge).
//! - `atdirectory_connections_rejected_total`: connections refused for `max_connections`.
//! - `atdirectory_lookups_total{result}`: lookups by result, `hit`, `miss`, `invalid` (not an
//!   atSign) or `error` (the store failed).
//! - `atdirectory_lookup_duration_seconds`: time from request line to answer, without the
//!   deliberate delay of throttled misses.
//! - `atdirectory_status_checks_total{status}`: status checks made (not answered from the
//!   cache), by overall status: `notFound`, `teapot`, `activated`, `unavailable`, `error`.
//! - `atdirectory_status_check_duration_seconds`: time a status check took.
//! - `atdirectory_status_cache_hits_total`: status requests answered from the cache.

use std::time::Duration;

use at_common::status::AtSignStatus;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// How a lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    Hit,
    Miss,
    Invalid,
    /// An empty line (a liveness check), answered `null` and not counted as a miss.
    Empty,
    Error,
}

impl LookupResult {
    const ALL: [LookupResult; 5] = [
        LookupResult::Hit,
        LookupResult::Miss,
        LookupResult::Invalid,
        LookupResult::Empty,
        LookupResult::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            LookupResult::Hit => "hit",
            LookupResult::Miss => "miss",
            LookupResult::Invalid => "invalid",
            LookupResult::Empty => "empty",
            LookupResult::Error => "error",
        }
    }
}

/// The directory's metrics; cheap to clone (every field is a shared handle).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub connections: IntGauge,
    pub rejected: IntCounter,
    /// `atdirectory_lookups_total` per result, in [`LookupResult::ALL`] order, looked up
    /// once here rather than by label on every lookup.
    lookups: [IntCounter; 5],
    latency: Histogram,
    /// `atdirectory_status_checks_total` per status, in [`AtSignStatus::ALL`] order.
    status_checks: [IntCounter; 5],
    status_latency: Histogram,
    pub status_cache_hits: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let connections = IntGauge::new("atdirectory_connections", "Connections open now.")
            .expect("valid metric");
        let rejected = IntCounter::new(
            "atdirectory_connections_rejected_total",
            "Connections refused because max_connections were open.",
        )
        .expect("valid metric");
        let lookups = IntCounterVec::new(
            Opts::new("atdirectory_lookups_total", "Lookups by result."),
            &["result"],
        )
        .expect("valid metric");
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "atdirectory_lookup_duration_seconds",
                "Time from request to answer, throttling delays excluded.",
            )
            .buckets(vec![
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.5, 1.0,
            ]),
        )
        .expect("valid metric");
        let status_checks = IntCounterVec::new(
            Opts::new(
                "atdirectory_status_checks_total",
                "Status checks made (not answered from the cache), by overall status.",
            ),
            &["status"],
        )
        .expect("valid metric");
        let status_latency = Histogram::with_opts(
            HistogramOpts::new(
                "atdirectory_status_check_duration_seconds",
                "Time a status check took (directory lookup and atServer).",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");
        let status_cache_hits = IntCounter::new(
            "atdirectory_status_cache_hits_total",
            "Status requests answered from the cache.",
        )
        .expect("valid metric");
        for metric in [
            Box::new(connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rejected.clone()),
            Box::new(lookups.clone()),
            Box::new(latency.clone()),
            Box::new(status_checks.clone()),
            Box::new(status_latency.clone()),
            Box::new(status_cache_hits.clone()),
        ] {
            registry.register(metric).expect("metric registered once");
        }
        // Every result shows up from the start, at 0, so dashboards need no special case.
        let lookups = LookupResult::ALL.map(|result| lookups.with_label_values(&[result.label()]));
        let status_checks =
            AtSignStatus::ALL.map(|status| status_checks.with_label_values(&[status.name()]));
        Metrics {
            registry,
            connections,
            rejected,
            lookups,
            latency,
            status_checks,
            status_latency,
            status_cache_hits,
        }
    }

    /// Counts one lookup.
    pub fn lookup(&self, result: LookupResult, took: Duration) {
        self.lookups[result as usize].inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// Counts one status check.
    pub fn status_check(&self, status: AtSignStatus, took: Duration) {
        self.status_checks[status as usize].inc();
        self.status_latency.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
