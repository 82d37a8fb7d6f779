//! Prometheus metrics, named `kailash_<what>_<unit>` with low-cardinality labels (route
//! pattern, method, status; never ids). Owned by the app state and rendered at `/metrics`.
//!
//! HTTP metrics are recorded by the telemetry middleware as requests finish. Session
//! metrics mirror the actor tree's own counters, read when `/metrics` is scraped, so the
//! actors stay the one place those numbers live. Real-time metrics ([`RealtimeMetrics`])
//! are recorded by the transports as they deliver.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use kailash_actors::GatewayStats;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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
    /// Requests refused for a limit or quota, by limit (and tenant, with
    /// `metrics_by_tenant`).
    quota_rejections: IntCounterVec,
    by_tenant: bool,
    pub realtime: RealtimeMetrics,
    /// Serializes mirroring of the actor counters so two scrapes cannot both add a delta.
    mirror: Mutex<()>,
}

impl Metrics {
    /// `by_tenant`: label quota rejections with the tenant too (`metrics_by_tenant`).
    pub fn new(by_tenant: bool) -> Self {
        let registry = Registry::new();
        let labels: &[&str] = if by_tenant {
            &["limit", "tenant"]
        } else {
            &["limit"]
        };
        let quota_rejections = IntCounterVec::new(
            Opts::new(
                "kailash_quota_rejections_total",
                "Requests refused because a limit or quota was reached",
            ),
            labels,
        )
        .expect("valid metric");
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
            realtime: RealtimeMetrics::register(&registry),
            quota_rejections,
            by_tenant,
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
            Box::new(metrics.quota_rejections.clone()),
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

    /// Counts one refusal for `tenant_id`'s `limit` (a `TenantLimits` key, a rate limit of
    /// `limits`, or `allowed_node_types`; `tenant_id` empty for a client address's limit
    /// when the request named no tenant).
    pub fn quota_rejected(&self, limit: &str, tenant_id: &str) {
        if self.by_tenant {
            self.quota_rejections
                .with_label_values(&[limit, tenant_id])
                .inc();
        } else {
            self.quota_rejections.with_label_values(&[limit]).inc();
        }
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

/// How events leave the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Sse,
    Webhook,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::Webhook => "webhook",
        }
    }
}

/// One transport's metrics, resolved once so delivering an event costs a few atomics.
pub struct TransportMetrics {
    pub connections: IntGauge,
    pub delivered: IntCounter,
    pub slow_consumers_closed: IntCounter,
    pub latency: Histogram,
}

impl TransportMetrics {
    /// Counts one event written to a client, `published_at` being when the bus took it.
    pub fn delivered_one(&self, published_at: std::time::Instant) {
        self.delivered.inc();
        self.latency.observe(published_at.elapsed().as_secs_f64());
    }
}

/// What a webhook delivery attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    Delivered,
    /// An attempt failed and will be retried.
    Retried,
    GivenUp,
    /// The webhook's queue was full, so the event was never attempted.
    QueueFull,
}

impl WebhookOutcome {
    const ALL: [WebhookOutcome; 4] = [
        WebhookOutcome::Delivered,
        WebhookOutcome::Retried,
        WebhookOutcome::GivenUp,
        WebhookOutcome::QueueFull,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Delivered => "delivered",
            WebhookOutcome::Retried => "retried",
            WebhookOutcome::GivenUp => "given_up",
            WebhookOutcome::QueueFull => "queue_full",
        }
    }
}

/// Connections, deliveries, slow consumers and webhook outcomes, by transport.
pub struct RealtimeMetrics {
    websocket: TransportMetrics,
    sse: TransportMetrics,
    webhook: TransportMetrics,
    webhook_outcomes: IntCounterVec,
}

impl RealtimeMetrics {
    fn register(registry: &Registry) -> Self {
        let connections = IntGaugeVec::new(
            Opts::new(
                "kailash_realtime_connections",
                "Real-time clients connected",
            ),
            &["transport"],
        )
        .expect("valid metric");
        let delivered = IntCounterVec::new(
            Opts::new(
                "kailash_events_delivered_total",
                "Events written to real-time clients and webhooks",
            ),
            &["transport"],
        )
        .expect("valid metric");
        let slow = IntCounterVec::new(
            Opts::new(
                "kailash_slow_consumers_closed_total",
                "Clients closed because their outbound queue was full",
            ),
            &["transport"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "kailash_event_delivery_latency_seconds",
                "Time from publication on the bus to delivery",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
            ]),
            &["transport"],
        )
        .expect("valid metric");
        let webhook_outcomes = IntCounterVec::new(
            Opts::new(
                "kailash_webhook_deliveries_total",
                "Webhook delivery attempts and events, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(delivered.clone()),
            Box::new(slow.clone()),
            Box::new(latency.clone()),
            Box::new(webhook_outcomes.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        for outcome in WebhookOutcome::ALL {
            webhook_outcomes.with_label_values(&[outcome.as_str()]);
        }
        let transport = |t: Transport| TransportMetrics {
            connections: connections.with_label_values(&[t.as_str()]),
            delivered: delivered.with_label_values(&[t.as_str()]),
            slow_consumers_closed: slow.with_label_values(&[t.as_str()]),
            latency: latency.with_label_values(&[t.as_str()]),
        };
        Self {
            websocket: transport(Transport::WebSocket),
            sse: transport(Transport::Sse),
            webhook: transport(Transport::Webhook),
            webhook_outcomes,
        }
    }

    pub fn transport(&self, transport: Transport) -> &TransportMetrics {
        match transport {
            Transport::WebSocket => &self.websocket,
            Transport::Sse => &self.sse,
            Transport::Webhook => &self.webhook,
        }
    }

    pub fn webhook_outcome(&self, outcome: WebhookOutcome) {
        self.webhook_outcomes
            .with_label_values(&[outcome.as_str()])
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(false)
    }
}
