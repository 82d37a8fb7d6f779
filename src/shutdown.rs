//! The ordered, time-bounded drain on SIGTERM/SIGINT. Each step has its own bound, and the
//! deployment's grace period must exceed their sum (`tests/api/deploy.rs` checks k8s):
//!
//! 1. readiness turns 503, for `drain_delay_seconds`, so load balancers move new requests
//!    elsewhere;
//! 2. the actor tree stops taking new sessions and runs (503 `draining`), under the ask
//!    timeout;
//! 3. WebSocket clients get "going away" (1001, a reconnect hint as the reason) and SSE
//!    streams end with `stream.closed` (`going_away`): they reconnect through the load
//!    balancer and resume by `seq` on another node, which receives this node's events;
//! 4. running executions get `execution_drain_seconds` to finish; those still running then
//!    end `failed` with the interrupted error and their `workflow.failed` event (bounded
//!    by the ask timeout);
//! 5. the HTTP server stops accepting and gives in-flight requests up to
//!    `shutdown_timeout_seconds`;
//! 6. the store writer's queue is flushed (bounded by the same timeout), so the runs' final
//!    states are in the database before another node serves their sessions;
//! 7. in a cluster the node leaves (its queued events published, bounded by the ask
//!    timeout; its record deleted), so survivors take its sessions over within a sweep
//!    instead of waiting for its heartbeat to lapse.
//!
//! The HTTP server keeps serving until step 5 because other nodes forward requests for
//! this node's sessions here until it leaves.

use std::time::Duration;

use actix_web::dev::ServerHandle;

use crate::app::AppState;

/// How often the drain looks whether the running executions have finished.
const RUNS_POLL: Duration = Duration::from_millis(100);

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

    state.lifecycle.close_streams();

    finish_or_interrupt_runs(state).await;

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

    if let Some(cluster) = &state.cluster {
        match cluster.redis.leave(ask).await {
            Ok(()) => tracing::info!("left the cluster; survivors take this node's sessions"),
            Err(error) => tracing::warn!(%error,
                "could not leave the cluster; survivors take over once the heartbeat lapses"),
        }
    }
}

/// Step 4: waits up to `execution_drain_seconds` for this node's runs to end, then ends
/// the rest as interrupted and waits (up to the ask timeout) for them to report.
async fn finish_or_interrupt_runs(state: &AppState) {
    let settings = &state.settings;
    let deadline = Duration::from_secs_f64(settings.execution_drain_seconds);
    let ask = Duration::from_millis(settings.actor_ask_timeout_ms);
    if wait_for_runs(state, deadline).await {
        tracing::info!("every execution on this node has ended");
        return;
    }
    match state.gateway.interrupt_runs().await {
        Ok(stopped) => tracing::warn!(
            stopped,
            "executions still running after {deadline:?} were recorded failed (interrupted)"
        ),
        Err(error) => tracing::warn!(%error, "could not interrupt the running executions"),
    }
    if !wait_for_runs(state, ask).await {
        tracing::warn!("some executions did not report their end within {ask:?}");
    }
}

/// Whether this node's runs all ended within `limit`.
async fn wait_for_runs(state: &AppState, limit: Duration) -> bool {
    let until = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(0) = state.gateway.running_executions().await {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(RUNS_POLL).await;
    }
}
