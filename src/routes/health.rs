//! `GET /health` (the Kailash shape: status, components; 503 when unhealthy) and
//! `GET /health/detailed` (the seeds' health monitor: component checks, CPU/memory/disk,
//! sessions near their timeout, build and platform, and the store's latency, pool use and
//! writer backlog).

use std::time::Duration;

use actix_web::{HttpResponse, http::StatusCode, web};
use chrono::Utc;
use kailash_actors::{GatewayStats, store::StoreHealth};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{app::AppState, config::redact_url, host};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Status {
    fn http(self) -> StatusCode {
        match self {
            Status::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::OK,
        }
    }
}

/// Session use above these shares of `max_sessions` degrades, then fails, the check.
const SESSIONS_DEGRADED: f64 = 0.9;
const RESOURCES_DEGRADED_PERCENT: f64 = 90.0;

fn session_status(stats: &GatewayStats) -> Status {
    if stats.active_sessions as f64 >= stats.max_sessions as f64 * SESSIONS_DEGRADED {
        Status::Degraded
    } else {
        Status::Healthy
    }
}

fn configured(url: &Option<crate::config::Secret>) -> Option<String> {
    url.as_ref().map(|u| redact_url(u.expose()))
}

/// The store as its health check found it (URL redacted). A store that does not answer makes
/// the node unhealthy.
fn store_component(state: &AppState, store: &StoreHealth) -> (Status, Value) {
    let status = match store.problem {
        Some(_) => Status::Unhealthy,
        None => Status::Healthy,
    };
    (
        status,
        json!({
            "status": status,
            "kind": store.kind,
            "configured_url": configured(&state.settings.database_url),
            "error": store.problem,
        }),
    )
}

/// The broker: Redis when clustered, else the in-process bus. Redis not answering only
/// degrades the node, which serves alone until it does.
fn broker_component(state: &AppState) -> (Status, Value) {
    let Some(redis) = state.cluster.as_ref().map(|cluster| &cluster.redis) else {
        return (
            Status::Healthy,
            json!({"status": Status::Healthy, "kind": "in_process"}),
        );
    };
    let health = redis.health();
    let status = match health.problem {
        Some(_) => Status::Degraded,
        None => Status::Healthy,
    };
    (
        status,
        json!({
            "status": status,
            "kind": "redis",
            "configured_url": configured(&state.settings.redis_url),
            "node_id": redis.options().node_id,
            "error": health.problem,
            "since": health.since,
        }),
    )
}

/// The background writer's counters, for `/health/detailed` and `/api/stats`.
pub fn writer_json(state: &AppState) -> Value {
    let writer = state.gateway.writer_stats();
    json!({
        "writes_accepted": writer.accepted(),
        "writes_written": writer.written(),
        "writes_pending": writer.pending(),
        "events_written": writer.events_written(),
        "batches": writer.batches(),
        "failed_attempts": writer.failed_attempts(),
        "backpressure_waits": writer.backpressure_waits(),
        "failing": writer.failing(),
    })
}

pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let now = Utc::now();
    let (store_status, store) = store_component(&state, &state.gateway.store_health().await);
    let (broker_status, broker) = broker_component(&state);
    let (status, agent_ui, realtime) = match state.gateway.stats().await {
        Ok(stats) => {
            let sessions = session_status(&stats);
            (
                sessions.max(if stats.draining {
                    Status::Degraded
                } else {
                    Status::Healthy
                }),
                json!({
                    "status": sessions,
                    "active_sessions": stats.active_sessions,
                    "max_sessions": stats.max_sessions,
                    "draining": stats.draining,
                }),
                json!({"status": Status::Healthy, "events_emitted": stats.events_emitted}),
            )
        }
        Err(error) => {
            let failed = json!({"status": Status::Unhealthy, "error": error.to_string()});
            (Status::Unhealthy, failed.clone(), failed)
        }
    };
    let status = status.max(store_status).max(broker_status);
    HttpResponse::build(status.http()).json(json!({
        "status": status,
        "timestamp": now,
        "uptime_seconds": state.lifecycle.uptime().as_secs_f64(),
        "requests_processed": state.metrics.requests_processed(),
        "components": {
            "agent_ui": agent_ui,
            "realtime": realtime,
            "schema_registry": {"status": Status::Healthy, "node_types": state.gateway.node_registry().len()},
            "store": store,
            "broker": broker,
        },
    }))
}

#[derive(Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    message: String,
    details: Value,
}

pub async fn detailed(state: web::Data<AppState>) -> HttpResponse {
    let readings = host::read(&state.settings.data_dir, Duration::from_millis(200)).await;
    let health = state.gateway.store_health().await;
    let (store_status, mut store) = store_component(&state, &health);
    let (broker_status, broker) = broker_component(&state);
    store["latency_ms"] = json!(health.latency.as_secs_f64() * 1000.0);
    store["pool"] = json!({
        "size": health.pool_size,
        "available": health.pool_available,
        "in_use": health.pool_size.saturating_sub(health.pool_available),
        "max": health.pool_max,
    });
    store["writer"] = writer_json(&state);
    let mut checks = vec![
        Check {
            name: "store",
            status: store_status,
            message: match &health.problem {
                Some(problem) => format!("{} store unavailable: {problem}", health.kind),
                None => format!("{} store", health.kind),
            },
            details: store,
        },
        Check {
            name: "broker",
            status: broker_status,
            message: match (&state.cluster, &broker["error"]) {
                (None, _) => "in-process event bus".into(),
                (Some(_), Value::String(problem)) => format!("Redis unavailable: {problem}"),
                (Some(_), _) => "Redis".into(),
            },
            details: broker,
        },
    ];
    match state.gateway.stats().await {
        Ok(stats) => {
            checks.push(Check {
                name: "middleware",
                status: session_status(&stats),
                message: format!("{}/{} sessions", stats.active_sessions, stats.max_sessions),
                details: json!({
                    "active_sessions": stats.active_sessions,
                    "max_sessions": stats.max_sessions,
                    "tenants": stats.tenants,
                    "events_emitted": stats.events_emitted,
                    "draining": stats.draining,
                }),
            });
            checks.push(Check {
                name: "sessions",
                status: Status::Healthy,
                message: format!(
                    "{} active, {} near their idle timeout",
                    stats.active_sessions, stats.sessions_near_timeout
                ),
                details: json!({
                    "active": stats.active_sessions,
                    "near_timeout": stats.sessions_near_timeout,
                    "timeout_minutes": state.settings.session_timeout_minutes,
                    "created": stats.sessions_created,
                    "closed": stats.sessions_closed,
                    "expired": stats.sessions_expired,
                }),
            });
        }
        Err(error) => checks.push(Check {
            name: "middleware",
            status: Status::Unhealthy,
            message: format!("the actor tree did not answer: {error}"),
            details: Value::Null,
        }),
    }
    let strained = [
        readings.cpu_percent,
        readings.memory_percent,
        readings.disk_percent,
    ]
    .into_iter()
    .flatten()
    .any(|percent| percent > RESOURCES_DEGRADED_PERCENT);
    checks.push(Check {
        name: "system_resources",
        status: if strained {
            Status::Degraded
        } else {
            Status::Healthy
        },
        message: if strained {
            "system resources high"
        } else {
            "system resources normal"
        }
        .into(),
        details: serde_json::to_value(&readings).unwrap_or_default(),
    });
    let status = checks
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Healthy);
    HttpResponse::build(status.http()).json(json!({
        "status": status,
        "timestamp": Utc::now(),
        "uptime_seconds": state.lifecycle.uptime().as_secs_f64(),
        "started_at": state.lifecycle.started_at,
        "checks": checks,
        "system_info": host::build_and_platform(),
    }))
}
