//! [`MemoryStore`]: the embedded default's store. Nothing outlives the process, so it keeps
//! only what is read back while the process lives: sessions, workflow versions and the
//! newest [`HISTORY_PER_TENANT`] executions of each tenant (for
//! `GET /api/executions/history`), and webhook registrations. Events, node runs and webhook
//! deliveries are not copied: the bus already retains each session's history, the execution
//! snapshots carry each node's state and output, each webhook keeps its recent deliveries,
//! and there is no restart to load them for.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures_util::future::{BoxFuture, ready};
use uuid::Uuid;

use super::{
    ExecutionRecord, HistoryPage, HistoryQuery, NodeRunRecord, PruneCounts, SessionRecord, Store,
    StoreFuture, StoreHealth, WebhookDeliveryRecord, WebhookRecord, WorkflowRecord, Write,
};
use crate::{
    caller::TenantId, execution::ExecutionStatus, session::SessionSummary, store::EventRecord,
};

/// Finished executions kept per tenant; the oldest are forgotten first, so a long-running
/// embedded gateway does not grow without bound.
pub const HISTORY_PER_TENANT: usize = 10_000;

#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

/// Every map is keyed by tenant first: a read for one tenant cannot see another's rows.
#[derive(Default)]
struct Tables {
    sessions: HashMap<TenantId, BTreeMap<Uuid, (SessionRecord, bool)>>,
    workflows: HashMap<TenantId, Vec<WorkflowRecord>>,
    executions: HashMap<TenantId, HashMap<Uuid, ExecutionRecord>>,
    /// Finished executions of each tenant, oldest first.
    finished: HashMap<TenantId, VecDeque<Uuid>>,
    webhooks: HashMap<TenantId, BTreeMap<Uuid, WebhookRecord>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves plain maps behind; they are still usable.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn answer<T: Send + 'static>(value: T) -> StoreFuture<'static, T> {
        Box::pin(ready(Ok(value)))
    }
}

/// History order: creation time at the microsecond (what a cursor carries, and what
/// PostgreSQL keeps), then id.
fn newest_first_key(execution: &ExecutionRecord) -> (i64, Uuid) {
    let s = &execution.snapshot;
    (s.created_at.timestamp_micros(), s.execution_id)
}

impl Store for MemoryStore {
    fn create_session<'a>(&'a self, session: &'a SessionRecord) -> StoreFuture<'a, ()> {
        self.tables()
            .sessions
            .entry(session.tenant_id.clone())
            .or_default()
            .insert(session.session_id, (session.clone(), false));
        Self::answer(())
    }

    fn save_workflow<'a>(&'a self, workflow: &'a WorkflowRecord) -> StoreFuture<'a, ()> {
        self.tables()
            .workflows
            .entry(workflow.tenant_id.clone())
            .or_default()
            .push(workflow.clone());
        Self::answer(())
    }

    fn create_execution<'a>(&'a self, execution: &'a ExecutionRecord) -> StoreFuture<'a, ()> {
        self.tables()
            .executions
            .entry(execution.tenant_id.clone())
            .or_default()
            .insert(execution.snapshot.execution_id, execution.clone());
        Self::answer(())
    }

    fn write_batch<'a>(&'a self, batch: &'a [Write]) -> StoreFuture<'a, ()> {
        let mut tables = self.tables();
        for write in batch {
            match write {
                Write::Event(_) | Write::NodeRun(_) | Write::WebhookDelivery(_) => {}
                Write::ExecutionFinished(execution) => {
                    let tenant = &execution.tenant_id;
                    let id = execution.snapshot.execution_id;
                    let executions = tables.executions.entry(tenant.clone()).or_default();
                    if executions.get(&id).is_some_and(|stored| {
                        stored.snapshot.status.is_terminal() || stored.fence != execution.fence
                    }) {
                        // A terminal state is final, a raised fence too (see
                        // `Write::ExecutionFinished`).
                        continue;
                    }
                    executions.insert(id, execution.as_ref().clone());
                    let finished = tables.finished.entry(tenant.clone()).or_default();
                    finished.push_back(id);
                    let forget = finished.len().saturating_sub(HISTORY_PER_TENANT);
                    let forgotten: Vec<Uuid> = finished.drain(..forget).collect();
                    if let Some(executions) = tables.executions.get_mut(tenant) {
                        for id in forgotten {
                            executions.remove(&id);
                        }
                    }
                }
                Write::SessionTouched {
                    tenant_id,
                    session_id,
                    at,
                } => {
                    if let Some((session, _)) = tables
                        .sessions
                        .get_mut(tenant_id)
                        .and_then(|s| s.get_mut(session_id))
                    {
                        session.last_activity = session.last_activity.max(*at);
                    }
                }
                Write::SessionEnded {
                    tenant_id,
                    session_id,
                    ..
                } => {
                    if let Some(entry) = tables
                        .sessions
                        .get_mut(tenant_id)
                        .and_then(|s| s.get_mut(session_id))
                    {
                        entry.1 = true;
                    }
                }
            }
        }
        Self::answer(())
    }

    fn tenants(&self) -> StoreFuture<'_, Vec<TenantId>> {
        let tables = self.tables();
        let mut tenants: Vec<TenantId> = tables
            .sessions
            .keys()
            .chain(tables.executions.keys())
            .chain(tables.webhooks.keys())
            .cloned()
            .collect();
        tenants.sort();
        tenants.dedup();
        Self::answer(tenants)
    }

    fn active_sessions<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<SessionRecord>> {
        let mut sessions: Vec<SessionRecord> = self
            .tables()
            .sessions
            .get(tenant)
            .into_iter()
            .flat_map(|s| s.values())
            .filter(|(_, ended)| !ended)
            .map(|(session, _)| session.clone())
            .collect();
        sessions.sort_by_key(|s| (s.created_at, s.session_id));
        Self::answer(sessions)
    }

    fn session_summaries<'a>(
        &'a self,
        tenant: &'a str,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<SessionSummary>> {
        let tables = self.tables();
        let mut summaries: Vec<SessionSummary> = tables
            .sessions
            .get(tenant)
            .into_iter()
            .flat_map(|s| s.values())
            .filter(|(session, ended)| !ended && owner.is_none_or(|o| *session.user_id == *o))
            .map(|(session, _)| {
                let of_session = |id: Uuid| id == session.session_id;
                let workflows: std::collections::HashSet<&str> = tables
                    .workflows
                    .get(tenant)
                    .into_iter()
                    .flatten()
                    .filter(|w| of_session(w.session_id))
                    .map(|w| w.workflow_id.as_str())
                    .collect();
                let executions = tables
                    .executions
                    .get(tenant)
                    .into_iter()
                    .flat_map(|e| e.values())
                    .filter(|e| of_session(e.session_id))
                    .count();
                SessionSummary {
                    session_id: session.session_id,
                    user_id: session.user_id.clone(),
                    created_at: session.created_at,
                    workflow_count: workflows.len(),
                    execution_count: executions,
                }
            })
            .collect();
        summaries.sort_by_key(|s| (s.created_at, s.session_id));
        Self::answer(summaries)
    }

    fn active_session<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        let session = self
            .tables()
            .sessions
            .get(tenant)
            .and_then(|sessions| sessions.get(&session_id))
            .filter(|(_, ended)| !ended)
            .map(|(session, _)| session.clone());
        Self::answer(session)
    }

    fn workflows<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
    ) -> StoreFuture<'a, Vec<WorkflowRecord>> {
        let mut newest: BTreeMap<String, WorkflowRecord> = BTreeMap::new();
        for workflow in self.tables().workflows.get(tenant).into_iter().flatten() {
            if workflow.session_id == session_id
                && newest
                    .get(&workflow.workflow_id)
                    .is_none_or(|w| w.version < workflow.version)
            {
                newest.insert(workflow.workflow_id.clone(), workflow.clone());
            }
        }
        Self::answer(newest.into_values().collect())
    }

    fn workflow_versions<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
        workflow_id: &'a str,
    ) -> StoreFuture<'a, Vec<WorkflowRecord>> {
        let mut versions: Vec<WorkflowRecord> = self
            .tables()
            .workflows
            .get(tenant)
            .into_iter()
            .flatten()
            .filter(|w| w.session_id == session_id && w.workflow_id == workflow_id)
            .cloned()
            .collect();
        versions.sort_by_key(|w| w.version);
        Self::answer(versions)
    }

    fn executions<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<ExecutionRecord>> {
        let mut executions: Vec<ExecutionRecord> = self
            .tables()
            .executions
            .get(tenant)
            .into_iter()
            .flat_map(|e| e.values())
            .filter(|e| e.session_id == session_id)
            .cloned()
            .collect();
        executions.sort_by_key(|e| (e.snapshot.created_at, e.snapshot.execution_id));
        let skip = executions.len().saturating_sub(limit);
        Self::answer(executions.split_off(skip))
    }

    fn node_runs<'a>(
        &'a self,
        _tenant: &'a str,
        _execution_id: Uuid,
    ) -> StoreFuture<'a, Vec<NodeRunRecord>> {
        Self::answer(Vec::new())
    }

    fn recent_events<'a>(
        &'a self,
        _tenant: &'a str,
        _session_id: Uuid,
        _limit: usize,
    ) -> StoreFuture<'a, Vec<EventRecord>> {
        Self::answer(Vec::new())
    }

    fn fail_interrupted<'a>(
        &'a self,
        tenant: &'a str,
        session: Option<Uuid>,
        error: &'a str,
        at: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<ExecutionRecord>> {
        let mut failed = Vec::new();
        for execution in self
            .tables()
            .executions
            .get_mut(tenant)
            .into_iter()
            .flat_map(|e| e.values_mut())
            .filter(|e| !e.snapshot.status.is_terminal())
            .filter(|e| session.is_none_or(|id| e.session_id == id))
        {
            execution.snapshot.status = ExecutionStatus::Failed;
            execution.snapshot.error = Some(error.to_owned());
            execution.snapshot.completed_at = Some(at);
            execution.snapshot.current_node = None;
            execution.fence += 1;
            failed.push(execution.clone());
        }
        Self::answer(failed)
    }

    fn execution_history<'a>(
        &'a self,
        tenant: &'a str,
        query: &'a HistoryQuery,
    ) -> StoreFuture<'a, HistoryPage> {
        let mut matching: Vec<ExecutionRecord> = self
            .tables()
            .executions
            .get(tenant)
            .into_iter()
            .flat_map(|e| e.values())
            .filter(|e| {
                let s = &e.snapshot;
                query.user_id.as_deref().is_none_or(|u| *e.user_id == *u)
                    && query.status.is_none_or(|status| s.status == status)
                    && query
                        .workflow_id
                        .as_deref()
                        .is_none_or(|w| s.workflow_id == w)
                    && query.since.is_none_or(|since| s.created_at >= since)
                    && query.until.is_none_or(|until| s.created_at < until)
                    && query.cursor.is_none_or(|c| {
                        newest_first_key(e) < (c.created_at.timestamp_micros(), c.execution_id)
                    })
            })
            .cloned()
            .collect();
        matching.sort_by_key(|e| std::cmp::Reverse(newest_first_key(e)));
        matching.truncate(query.limit + 1);
        Self::answer(HistoryPage::from_newest_first(matching, query.limit))
    }

    fn prune<'a>(
        &'a self,
        tenant: &'a str,
        _events_before: DateTime<Utc>,
        executions_before: DateTime<Utc>,
    ) -> StoreFuture<'a, PruneCounts> {
        let mut tables = self.tables();
        let mut pruned = std::collections::HashSet::new();
        if let Some(executions) = tables.executions.get_mut(tenant) {
            executions.retain(|id, e| {
                let old = e
                    .snapshot
                    .completed_at
                    .is_some_and(|done| done < executions_before);
                if old {
                    pruned.insert(*id);
                }
                !old
            });
        }
        if let Some(finished) = tables.finished.get_mut(tenant) {
            finished.retain(|id| !pruned.contains(id));
        }
        Self::answer(PruneCounts {
            events: 0,
            executions: pruned.len() as u64,
        })
    }

    fn save_webhook<'a>(&'a self, webhook: &'a WebhookRecord) -> StoreFuture<'a, ()> {
        self.tables()
            .webhooks
            .entry(webhook.tenant_id.clone())
            .or_default()
            .insert(webhook.webhook_id, webhook.clone());
        Self::answer(())
    }

    fn delete_webhook<'a>(&'a self, tenant: &'a str, webhook_id: Uuid) -> StoreFuture<'a, bool> {
        let removed = self
            .tables()
            .webhooks
            .get_mut(tenant)
            .is_some_and(|webhooks| webhooks.remove(&webhook_id).is_some());
        Self::answer(removed)
    }

    fn webhooks<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<WebhookRecord>> {
        let mut webhooks: Vec<_> = self
            .tables()
            .webhooks
            .get(tenant)
            .map(|w| w.values().cloned().collect())
            .unwrap_or_default();
        webhooks.sort_by_key(|w| (w.created_at, w.webhook_id));
        Self::answer(webhooks)
    }

    fn webhook_deliveries<'a>(
        &'a self,
        _tenant: &'a str,
        _webhook_id: Uuid,
        _limit: usize,
    ) -> StoreFuture<'a, Vec<WebhookDeliveryRecord>> {
        // Not copied (see the module doc): the live webhook holds its recent deliveries.
        Self::answer(Vec::new())
    }

    fn health(&self) -> BoxFuture<'_, StoreHealth> {
        Box::pin(ready(StoreHealth {
            kind: "memory",
            problem: None,
            latency: Duration::ZERO,
            pool_size: 0,
            pool_available: 0,
            pool_max: 0,
        }))
    }
}
