//! The ordered, time-bounded drain on SIGTERM/SIGINT:
//! readiness turns 503 → (drain delay, so load balancers notice) → the actor tree stops
//! taking new sessions → WebSocket clients get "going away" (1001) and SSE streams end →
//! the HTTP server stops accepting and gives in-flight requests up to
//! `shutdown_timeout_seconds` → the store writer's queue is flushed (bounded by the same
//! timeout) → the process exits. Later work adds executions and broker flush here, each
//! with its own bound.

use std::time::Duration;

use actix_web::dev::ServerHandle;

use crate::app::AppState;

/// Waits for SIGTERM or SIGINT and names it.
pub async fn signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for shutdown signals; stop the process with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Drains this node and stops its server.
pub async fn drain(state: &AppState, server: &ServerHandle, reason: &str) {
    let settings = &state.settings;
    tracing::info!(reason, "shutting down: readiness is now 503");
    state.lifecycle.begin_drain();
    tokio::time::sleep(Duration::from_secs_f64(settings.drain_delay_seconds)).await;

    let ask = Duration::from_millis(settings.actor_ask_timeout_ms);
    match tokio::time::timeout(ask, state.gateway.drain()).await {
        Ok(Ok(())) => tracing::info!("actor tree drained"),
        Ok(Err(error)) => tracing::warn!(%error, "actor tree did not drain cleanly"),
        Err(_) => tracing::warn!("actor tree did not drain within {ask:?}"),
    }

    // Clients of live streams reconnect through the load balancer, which no longer sends
    // them here after the drain delay.
    state.lifecycle.close_streams();

    // Graceful: waits for in-flight requests up to `shutdown_timeout_seconds`, then stops.
    server.stop(true).await;
    tracing::info!("HTTP server stopped");

    let limit = Duration::from_secs(settings.shutdown_timeout_seconds);
    match tokio::time::timeout(limit, state.gateway.flush()).await {
        Ok(()) => tracing::info!("store writes flushed"),
        Err(_) => tracing::warn!(
            pending = state.gateway.writer_stats().pending(),
            "store writes not flushed within {limit:?}"
        ),
    }
}
