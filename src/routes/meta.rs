//! `GET /` (what this gateway is), `/ready`, `/metrics` and `/api/stats`.

use actix_web::{HttpResponse, web};
use kailash_actors::GatewayError;
use serde_json::json;

use crate::{
    app::AppState,
    config::AuthMode,
    http::{ApiError, ErrorCode},
    metrics::Transport,
};

pub async fn root(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": state.settings.title,
        "version": env!("CARGO_PKG_VERSION"),
        "status": "healthy",
        "uptime_seconds": state.lifecycle.uptime().as_secs_f64(),
        "auth": match state.auth.mode() { AuthMode::Gated => "gated", AuthMode::Open => "open" },
        "features": {
            "sessions": true,
            "real_time": true,
            "dynamic_workflows": state.settings.enable_dynamic_workflows,
            "webhooks": true,
        },
        "endpoints": {
            "sessions": "/api/sessions",
            "workflows": "/api/workflows",
            "schemas": "/api/schemas",
            "websocket": "/ws",
            "sse": "/events",
            "docs": "/docs",
        },
    }))
}

/// 200 once the node serves traffic; 503 while starting, draining, or while the store is
/// unavailable, so load balancers stop sending before the listener closes and while this
/// node cannot record anything.
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.lifecycle.is_draining() {
        return Err(GatewayError::Draining.into());
    }
    if !state.lifecycle.is_ready() {
        return Err(ApiError::new(ErrorCode::NotReady));
    }
    if let Some(problem) = state.gateway.store_health().await.problem {
        return Err(GatewayError::StoreUnavailable(problem).into());
    }
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let stats = state.gateway.stats().await?;
    state.metrics.mirror_gateway(&stats);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render()))
}

pub async fn stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let stats = state.gateway.stats().await?;
    let realtime = &state.metrics.realtime;
    Ok(HttpResponse::Ok().json(json!({
        "gateway": {
            "uptime_seconds": state.lifecycle.uptime().as_secs_f64(),
            "requests_processed": state.metrics.requests_processed(),
            "title": state.settings.title,
            "version": env!("CARGO_PKG_VERSION"),
        },
        "agent_ui": {
            "active_sessions": stats.active_sessions,
            "total_sessions_created": stats.sessions_created,
            "sessions_closed": stats.sessions_closed,
            "sessions_expired": stats.sessions_expired,
            "max_sessions": stats.max_sessions,
            "workflows_executed": stats.executions_finished,
            "events_emitted": stats.events_emitted,
            "active_executions": stats.active_executions,
            "shared_workflows": stats.shared_workflows,
        },
        "realtime": {
            "events_emitted": stats.events_emitted,
            "events_queued": stats.events_queued,
            "retained_event_streams": stats.retained_event_streams,
            "subscribers": stats.subscribers,
            "websocket_connections": realtime.transport(Transport::WebSocket).connections.get(),
            "sse_connections": realtime.transport(Transport::Sse).connections.get(),
            "events_delivered": {
                "websocket": realtime.transport(Transport::WebSocket).delivered.get(),
                "sse": realtime.transport(Transport::Sse).delivered.get(),
                "webhook": realtime.transport(Transport::Webhook).delivered.get(),
            },
            "slow_consumers_closed": realtime.transport(Transport::WebSocket).slow_consumers_closed.get()
                + realtime.transport(Transport::Sse).slow_consumers_closed.get(),
            "webhook_stats": state.webhooks.stats(),
        },
        "schema_registry": {
            "node_types": state.gateway.node_registry().len(),
        },
        "store": super::health::writer_json(&state),
    })))
}
