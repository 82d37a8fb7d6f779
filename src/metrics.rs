//! Prometheus metrics, named `kailash_<what>_<unit>` with low-cardinality labels (route
//! pattern, method, status; never ids). Owned by the app state and rendered at `/metrics`.
//!
//! HTTP metrics are recorded by the telemetry middleware as requests finish. Session
//! metrics mirror the actor tree's own counters, read when `/metrics` is scraped, so the
//! actors stay the one place those numbers live.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use kailash_actors::GatewayStats;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    requests_processed: AtomicU64,
    sessions_active: IntGauge,
    sessions_created: IntCounter,
    sessions_closed: IntCounter,
    sessions_expired: IntCounter,
    events_published: IntCounter,
    /// Serializes mirroring of the actor counters so two scrapes cannot both add a delta.
    mirror: Mutex<()>,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("kailash_http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "kailash_http_request_duration_seconds",
                "Time from request to response head",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["method", "route"],
        )
        .expect("valid metric");
        let sessions_active =
            IntGauge::new("kailash_sessions_active", "Sessions alive on this node")
                .expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let metrics = Self {
            sessions_created: counter("kailash_sessions_created_total", "Sessions created"),
            sessions_closed: counter("kailash_sessions_closed_total", "Sessions closed"),
            sessions_expired: counter(
                "kailash_sessions_expired_total",
                "Sessions expired while idle",
            ),
            events_published: counter(
                "kailash_events_published_total",
                "Events published on the bus",
            ),
            registry,
            http_requests,
            http_duration,
            requests_processed: AtomicU64::new(0),
            sessions_active,
            mirror: Mutex::new(()),
        };
        for collector in [
            Box::new(metrics.http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.http_duration.clone()),
            Box::new(metrics.sessions_active.clone()),
            Box::new(metrics.sessions_created.clone()),
            Box::new(metrics.sessions_closed.clone()),
            Box::new(metrics.sessions_expired.clone()),
            Box::new(metrics.events_published.clone()),
        ] {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        metrics
    }

    /// Records one answered request. `route` is the matched pattern, never the raw path.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests_processed.fetch_add(1, Ordering::Relaxed);
        let status = status.to_string();
        self.http_requests
            .with_label_values(&[method, route, &status])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    pub fn requests_processed(&self) -> u64 {
        self.requests_processed.load(Ordering::Relaxed)
    }

    /// Mirrors the actor tree's counters into the exported metrics.
    pub fn mirror_gateway(&self, stats: &GatewayStats) {
        let _one_at_a_time = self
            .mirror
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.sessions_active.set(stats.active_sessions as i64);
        for (counter, total) in [
            (&self.sessions_created, stats.sessions_created),
            (&self.sessions_closed, stats.sessions_closed),
            (&self.sessions_expired, stats.sessions_expired),
            (&self.events_published, stats.events_emitted),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
