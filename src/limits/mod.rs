//! Request rate limits: per client address, per user, per tenant (a second's requests),
//! a tenant's `/api` calls per UTC day, and the events a tenant's clients send per second.
//!
//! [`enforce`] runs after the gate (so it knows the caller) and before a request is
//! forwarded to another node (so a request is counted once, where it arrived: the node it is
//! forwarded to does not count it again). Over a limit, the answer is 429 with the code
//! `<limit>_exceeded`, `Retry-After`, and the `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset` headers (IETF draft), which every counted response carries for its
//! tightest limit. Health probes and metrics are never limited. A WebSocket message counts
//! as a request of its connection's caller (an error frame with the same code).
//!
//! The client address is the peer's, or — when the peer is one of `trusted_proxies` — the
//! one those proxies recorded in `X-Forwarded-For` ([`TrustedProxies`]).
//!
//! Counting is [`counters`]'; in a cluster the counts are shared through Redis
//! ([`start_sync`]), so the limits hold across nodes.

mod counters;

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use actix_web::{
    Error, HttpMessage, HttpRequest,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
    web,
};

pub use self::counters::{Check, Counters, Pending, Verdict, Window};
use kailash_actors::{Caller, accounts::TenantLimits};

use crate::{
    app::AppState,
    auth::Identity,
    cidr::Cidr,
    config::Settings,
    http::{ApiError, ErrorCode},
};

/// How often a node shares its counts in a cluster. The limits hold across the cluster
/// give or take what the nodes admit in this long.
const SYNC_EVERY: Duration = Duration::from_millis(100);

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// From `trusted_proxies` (validated at load: every item parses).
    pub fn new(items: &[String]) -> Self {
        Self(
            items
                .iter()
                .filter_map(|item| Cidr::parse(item.trim()))
                .collect(),
        )
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the
    /// nearest address of `X-Forwarded-For` (read from the right) that is not a trusted
    /// proxy — what a client writes there itself is further left and never reached.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip().to_canonical();
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut nearest = peer;
        for header in req.headers().get_all("x-forwarded-for").rev() {
            let Ok(list) = header.to_str() else {
                return Some(nearest);
            };
            for hop in list.rsplit(',') {
                let Ok(hop) = hop.trim().parse::<IpAddr>() else {
                    return Some(nearest);
                };
                nearest = hop.to_canonical();
                if !self.trusts(nearest) {
                    return Some(nearest);
                }
            }
        }
        Some(nearest)
    }
}

/// This node's rate limits and their counters.
pub struct RateLimits {
    pub proxies: TrustedProxies,
    counters: Arc<Counters>,
    ip_per_second: u64,
    user_per_second: u64,
    tenant_per_second: u64,
    tenant_per_day: u64,
}

impl RateLimits {
    pub fn new(settings: &Settings) -> Self {
        Self {
            proxies: TrustedProxies::new(&settings.trusted_proxies),
            counters: Arc::default(),
            ip_per_second: u64::from(settings.ip_requests_per_second),
            user_per_second: u64::from(settings.user_requests_per_second),
            tenant_per_second: u64::from(settings.tenant_requests_per_second),
            tenant_per_day: settings.tenant_api_calls_per_day,
        }
    }

    /// The limits a request is counted against (none: not limited): from the client
    /// address `ip`, by an authenticated `caller` with its tenant's own limits (where the
    /// tenant sets none, the deployment's); `api_call`: a call the daily quota counts.
    fn checks(
        &self,
        ip: Option<IpAddr>,
        caller: Option<(&Caller, &TenantLimits)>,
        api_call: bool,
    ) -> Vec<Check> {
        let mut checks = Vec::new();
        if self.ip_per_second > 0
            && let Some(ip) = ip
        {
            checks.push(Check {
                name: "ip_requests_per_second",
                key: format!("ip:{ip}"),
                limit: self.ip_per_second,
                window: Window::Second,
            });
        }
        let Some((caller, tenant_limits)) = caller else {
            return checks;
        };
        let per_second = tenant_limits
            .requests_per_second
            .unwrap_or(self.tenant_per_second);
        let per_day = tenant_limits
            .api_calls_per_day
            .unwrap_or(self.tenant_per_day);
        // JSON-quoted parts: no id can make two keys meet.
        let tenant = serde_json::to_string(&*caller.tenant_id).expect("strings serialize");
        if self.user_per_second > 0 {
            let user = serde_json::to_string(&*caller.user_id).expect("strings serialize");
            checks.push(Check {
                name: "user_requests_per_second",
                key: format!("user:{tenant}:{user}"),
                limit: self.user_per_second,
                window: Window::Second,
            });
        }
        if per_second > 0 {
            checks.push(Check {
                name: "requests_per_second",
                key: format!("tenant:{tenant}"),
                limit: per_second,
                window: Window::Second,
            });
        }
        if per_day > 0 && api_call {
            checks.push(Check {
                name: "api_calls_per_day",
                key: format!("day:{tenant}"),
                limit: per_day,
                window: Window::Day,
            });
        }
        checks
    }

    /// Counts a request (or WebSocket message) of `caller` from `ip` against its limits.
    /// `None`: not limited.
    pub fn admit(
        &self,
        state: &AppState,
        ip: Option<IpAddr>,
        caller: Option<&Caller>,
        api_call: bool,
    ) -> Option<Verdict> {
        let tenant_limits = caller.map(|caller| state.tenants.limits(&caller.tenant_id));
        let checks = self.checks(ip, caller.zip(tenant_limits.as_ref()), api_call);
        if checks.is_empty() {
            return None;
        }
        let verdict = self.counters.take(&checks, now_secs());
        if let Verdict::Refused { name, .. } = verdict {
            let tenant = caller.map_or("", |caller| &*caller.tenant_id);
            state.metrics.quota_rejected(name, tenant);
        }
        Some(verdict)
    }

    /// Counts an event a client of `caller`'s tenant sends (a room message) against the
    /// tenant's `events_per_second`, when it sets one. The events the gateway itself
    /// publishes (a run's) are never limited: nothing of a run may be lost.
    pub fn admit_event(&self, state: &AppState, caller: &Caller) -> Result<(), ApiError> {
        let Some(limit) = state.tenants.limits(&caller.tenant_id).events_per_second else {
            return Ok(());
        };
        let tenant = serde_json::to_string(&*caller.tenant_id).expect("strings serialize");
        let check = Check {
            name: "events_per_second",
            key: format!("events:{tenant}"),
            limit,
            window: Window::Second,
        };
        match self.counters.take(&[check], now_secs()) {
            Verdict::Refused {
                name,
                limit,
                retry_after,
            } => {
                state.metrics.quota_rejected(name, &caller.tenant_id);
                Err(refusal(name, limit, retry_after))
            }
            Verdict::Allowed { .. } => Ok(()),
        }
    }
}

/// The error for a refusal (without its `RateLimit-*` headers).
pub fn refusal(name: &str, limit: u64, retry_after: u64) -> ApiError {
    ApiError::new(ErrorCode::rate_limit(name))
        .with_detail(format!(
            "Rate limit reached: {name} is {limit}; retry in {retry_after} s"
        ))
        .with_retry_after(Duration::from_secs(retry_after))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Probes and metrics: never limited (an orchestrator must always see the node).
fn exempt(path: &str) -> bool {
    path == "/ready" || path == "/metrics" || path.starts_with("/health")
}

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

fn set_headers(
    headers: &mut actix_web::http::header::HeaderMap,
    limit: u64,
    left: u64,
    reset: u64,
) {
    for (name, value) in [(LIMIT, limit), (REMAINING, left), (RESET, reset)] {
        headers.insert(name, HeaderValue::from(value));
    }
}

/// See the module docs.
pub async fn enforce(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let state = crate::app::state_of(&req);
    let forwarded = state
        .cluster
        .as_ref()
        .is_some_and(|cluster| cluster.forwarded_by_a_node(&req));
    let verdict = if exempt(req.path()) || forwarded {
        None
    } else {
        let extensions = req.extensions();
        let caller = match extensions.get::<Identity>() {
            Some(Identity::Authenticated(principal)) => Some(&principal.caller),
            _ => None,
        };
        state.limits.admit(
            &state,
            state.limits.proxies.client_ip(req.request()),
            caller,
            req.path().starts_with("/api/"),
        )
    };
    match verdict {
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body),
        Some(Verdict::Refused {
            name,
            limit,
            retry_after,
        }) => {
            let error = refusal(name, limit, retry_after);
            let mut response = actix_web::ResponseError::error_response(&error);
            set_headers(response.headers_mut(), limit, 0, retry_after);
            Ok(req.into_response(response))
        }
        Some(Verdict::Allowed {
            limit,
            remaining,
            reset,
        }) => {
            let mut response = next.call(req).await?.map_into_boxed_body();
            set_headers(response.headers_mut(), limit, remaining, reset);
            Ok(response)
        }
    }
}

/// Shares this node's counts through Redis in a cluster (every [`SYNC_EVERY`]); alone,
/// forgets the counters of ended windows every second.
pub fn start_sync(state: web::Data<AppState>) {
    actix_rt::spawn(async move {
        loop {
            let now = now_secs();
            let pending = state.limits.counters.pending(now);
            match &state.cluster {
                Some(cluster) if !pending.is_empty() => {
                    let adds = pending
                        .iter()
                        .map(|(_, p)| (p.counter.clone(), p.add, p.ttl_seconds))
                        .collect();
                    match cluster.redis.add_to_counters(adds).await {
                        Ok(totals) => state.limits.counters.synced(pending, totals),
                        Err(error) => {
                            tracing::debug!(%error, "rate counts not shared this time");
                        }
                    }
                    actix_rt::time::sleep(SYNC_EVERY).await;
                }
                Some(_) => actix_rt::time::sleep(SYNC_EVERY).await,
                None => actix_rt::time::sleep(Duration::from_secs(1)).await,
            }
        }
    });
}
