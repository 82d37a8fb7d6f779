//! Start-up recovery and the retention job: the two things the tree does with its store
//! that no request asks for.
//!
//! [`Gateway::restore`] runs once, before the server takes traffic: for each stored tenant
//! it fails the executions a stopped gateway left running (recording a `workflow.failed`
//! event for each), then brings back every session that had not ended — its workflows (the
//! newest version of each), its newest finished executions, and its event stream, so `seq`
//! continues and `Last-Event-ID` resumes.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use serde_json::Value;

use crate::{
    Gateway,
    bus::{Publish, RestoreStream},
    engine::{
        node::NodeRegistry,
        workflow::{Workflow, WorkflowLimits},
    },
    error::GatewayError,
    events::{Event, EventDetail, EventType, RunRef, WorkflowDetail},
    handle::Retention,
    store::{ExecutionRecord, Store, WorkflowRecord},
    tenant::RestoreSession,
};

/// The `error` of an execution that was running when its gateway stopped.
pub const INTERRUPTED: &str = "the gateway stopped while this execution was running";

/// The `error` of an execution whose node was lost while it ran (found when another node
/// took its session over).
pub const NODE_LOST: &str = "the gateway node running this execution was lost";

/// What a restore brought back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    pub sessions: usize,
    pub workflows: usize,
    pub executions: usize,
    pub events: usize,
    /// Executions found running and marked failed.
    pub interrupted: usize,
}

impl Gateway {
    /// Loads what the store holds into the tree (see the module docs). Call once, after
    /// [`Gateway::start_with`] and before taking traffic.
    ///
    /// In a cluster nothing is loaded here: other nodes may be running the stored sessions,
    /// so each is activated on demand by the node that owns it (see the tenant actor).
    pub async fn restore(&self) -> Result<Restored, GatewayError> {
        let store = self.store.clone();
        let mut restored = Restored::default();
        if self.clustered {
            return Ok(restored);
        }
        for tenant in store.tenants().await? {
            let interrupted = store
                .fail_interrupted(&tenant, None, INTERRUPTED, Utc::now())
                .await?;
            for session in store.active_sessions(&tenant).await? {
                let session_id = session.session_id;
                let workflows = parse_stored_workflows(
                    store.workflows(&tenant, session_id).await?,
                    &self.config.node_registry,
                );
                let finished: Vec<_> = store
                    .executions(
                        &tenant,
                        session_id,
                        self.config.finished_executions_per_session,
                    )
                    .await?
                    .into_iter()
                    .filter(|e| e.snapshot.status.is_terminal())
                    .map(|e| e.snapshot)
                    .collect();
                let events = store
                    .recent_events(&tenant, session_id, self.config.bus.history_len)
                    .await?;
                restored.sessions += 1;
                restored.workflows += workflows.len();
                restored.executions += finished.len();
                restored.events += events.len();
                self.bus.send(RestoreStream { session_id, events }).await?;
                self.registry
                    .send(RestoreSession {
                        record: session,
                        workflows,
                        finished,
                    })
                    .await?;
            }
            restored.interrupted += interrupted.len();
            for execution in &interrupted {
                self.bus.send(Publish(interrupted_event(execution))).await?;
            }
        }
        Ok(restored)
    }
}

/// Re-parses stored workflow definitions with today's node registry. A definition that
/// no longer parses (a node type was removed) is left out, with a warning.
pub(crate) fn parse_stored_workflows(
    records: Vec<WorkflowRecord>,
    node_registry: &NodeRegistry,
) -> Vec<Arc<Workflow>> {
    // Accepted once under whatever limit applied then; not refused now for its size.
    let limits = WorkflowLimits {
        max_nodes: usize::MAX,
    };
    records
        .into_iter()
        .filter_map(
            |record| match Workflow::parse(&record.definition, node_registry, limits) {
                Ok(mut workflow) => {
                    workflow.workflow_id = record.workflow_id;
                    workflow.version = record.version;
                    workflow.created_at = record.created_at;
                    Some(Arc::new(workflow))
                }
                Err(problems) => {
                    tracing::warn!(
                        workflow_id = record.workflow_id,
                        session_id = %record.session_id,
                        problems = problems.len(),
                        "a stored workflow no longer parses; it is not restored"
                    );
                    None
                }
            },
        )
        .collect()
}

/// Records the terminal event of a run a stopped gateway left running.
pub(crate) fn interrupted_event(execution: &ExecutionRecord) -> Event {
    let snapshot = &execution.snapshot;
    let mut event = Event::new(
        EventType::WorkflowFailed,
        "execution",
        execution.tenant_id.clone(),
    )
    .in_session(execution.session_id, execution.user_id.clone());
    event.detail = Some(EventDetail::Workflow(WorkflowDetail {
        run: RunRef {
            workflow_id: snapshot.workflow_id.as_str().into(),
            workflow_name: snapshot.workflow_name.as_str().into(),
            execution_id: snapshot.execution_id,
        },
        progress_percent: snapshot.progress,
        current_node: None,
        data: Value::Null,
        error: snapshot.error.clone(),
    }));
    event
}

/// Starts the retention job: every `retention.every`, each tenant's events and finished
/// executions older than their ages are deleted. A failed pass is logged and retried at the
/// next period.
pub(crate) fn start_retention(store: Arc<dyn Store>, retention: Retention) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(retention.every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(error) = prune_once(store.as_ref(), retention).await {
                tracing::warn!(%error, "the retention pass failed; it runs again next period");
            }
        }
    });
}

async fn prune_once(store: &dyn Store, retention: Retention) -> Result<(), GatewayError> {
    let now = Utc::now();
    let age = |d: Duration| {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
    };
    for tenant in store.tenants().await? {
        let pruned = store
            .prune(&tenant, age(retention.events), age(retention.executions))
            .await?;
        if pruned.events + pruned.executions > 0 {
            tracing::info!(
                tenant = %tenant,
                events = pruned.events,
                executions = pruned.executions,
                "retention pruned old history"
            );
        }
    }
    Ok(())
}
