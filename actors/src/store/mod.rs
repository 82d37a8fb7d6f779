//! The `Store` port: everything the actor tree keeps beyond one process's life — sessions,
//! workflow versions, executions, node runs and the event history — and the one way the
//! actors reach it.
//!
//! Two adapters implement it: [`MemoryStore`] (the embedded default; what the actors keep
//! in memory is all there is) and the PostgreSQL adapter in the gateway crate
//! (`src/adapters/postgres/`). Creation paths await the store ([`Store::create_session`],
//! [`Store::save_workflow`], [`Store::create_execution`]), so a reply that says something was
//! created means it is committed. High-volume facts (events, node runs, finished executions,
//! session activity) go through the bounded, ordered [`StoreWriter`], which batches them
//! into [`Store::write_batch`] calls and retries a batch until it is written.
//!
//! Every tenant-owned record carries its `tenant_id`, and every method that reads takes the
//! tenant it reads for: nothing answers across tenants except [`Store::tenants`], which
//! start-up recovery and the retention job use to visit each tenant in turn.

mod memory;
mod records;
mod writer;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::{caller::TenantId, session::SessionSummary};

pub use self::{
    memory::MemoryStore,
    records::{
        EventRecord, ExecutionRecord, Fence, HistoryCursor, HistoryPage, HistoryQuery,
        NodeRunRecord, PruneCounts, SessionRecord, WebhookDeliveryRecord, WebhookRecord,
        WorkflowRecord, Write,
    },
    writer::{StoreWriter, WriterStats},
};

/// What a store method answers.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Why the store could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or did not answer in time; retrying later may work.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store answered with an error that retrying will not fix.
    #[error("the store refused the request: {0}")]
    Failed(String),
}

/// The store's state as `/health` and `/health/detailed` report it.
#[derive(Debug, Clone)]
pub struct StoreHealth {
    /// `memory` or `postgres`.
    pub kind: &'static str,
    /// `None` when healthy; otherwise why not.
    pub problem: Option<String>,
    /// Round trip of a trivial query (zero for the in-memory store).
    pub latency: Duration,
    /// Connections open, idle and allowed (zeros for the in-memory store).
    pub pool_size: usize,
    pub pool_available: usize,
    pub pool_max: usize,
}

/// The persistence port. Object safe: the actors hold an `Arc<dyn Store>`.
pub trait Store: Send + Sync + 'static {
    /// Records a new session. Awaited before the session is reported created.
    fn create_session<'a>(&'a self, session: &'a SessionRecord) -> StoreFuture<'a, ()>;

    /// Records a workflow version. Awaited before the workflow is reported created.
    fn save_workflow<'a>(&'a self, workflow: &'a WorkflowRecord) -> StoreFuture<'a, ()>;

    /// Records a new execution (status `running`). Awaited before the run starts.
    fn create_execution<'a>(&'a self, execution: &'a ExecutionRecord) -> StoreFuture<'a, ()>;

    /// Applies a batch of writes, in order, all or nothing. Idempotent: the writer retries
    /// a batch whose outcome it could not learn.
    fn write_batch<'a>(&'a self, batch: &'a [Write]) -> StoreFuture<'a, ()>;

    /// Every tenant that has something stored.
    fn tenants(&self) -> StoreFuture<'_, Vec<TenantId>>;

    /// The tenant's sessions that have not ended, oldest first.
    fn active_sessions<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<SessionRecord>>;

    /// The tenant's live sessions (of `owner` only, when given) as `GET /api/sessions`
    /// lists them, oldest first: the listing of a cluster, whose sessions live on many nodes.
    fn session_summaries<'a>(
        &'a self,
        tenant: &'a str,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<SessionSummary>>;

    /// One session, if it has not ended (a node activating a session another node
    /// created, or one whose node was lost).
    fn active_session<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
    ) -> StoreFuture<'a, Option<SessionRecord>>;

    /// The newest version of each workflow of a session.
    fn workflows<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
    ) -> StoreFuture<'a, Vec<WorkflowRecord>>;

    /// Every version of one workflow of a session, oldest first.
    fn workflow_versions<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
        workflow_id: &'a str,
    ) -> StoreFuture<'a, Vec<WorkflowRecord>>;

    /// The newest `limit` executions of a session, oldest first.
    fn executions<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<ExecutionRecord>>;

    /// The node runs of an execution, in the order they ended.
    fn node_runs<'a>(
        &'a self,
        tenant: &'a str,
        execution_id: Uuid,
    ) -> StoreFuture<'a, Vec<NodeRunRecord>>;

    /// The newest `limit` events of a session's stream, oldest first.
    fn recent_events<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<EventRecord>>;

    /// Marks the tenant's still-running executions (of one session, with `session`)
    /// `failed` with `error` (they were running when a gateway stopped, or on a node that
    /// was lost) and answers them as they are now.
    fn fail_interrupted<'a>(
        &'a self,
        tenant: &'a str,
        session: Option<Uuid>,
        error: &'a str,
        at: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<ExecutionRecord>>;

    /// A page of the tenant's executions, newest first.
    fn execution_history<'a>(
        &'a self,
        tenant: &'a str,
        query: &'a HistoryQuery,
    ) -> StoreFuture<'a, HistoryPage>;

    /// Deletes the tenant's events published before `events_before`, and its finished
    /// executions (with their node runs) that completed before `executions_before`.
    fn prune<'a>(
        &'a self,
        tenant: &'a str,
        events_before: DateTime<Utc>,
        executions_before: DateTime<Utc>,
    ) -> StoreFuture<'a, PruneCounts>;

    /// Records a webhook registration. Awaited before the webhook is reported registered.
    fn save_webhook<'a>(&'a self, webhook: &'a WebhookRecord) -> StoreFuture<'a, ()>;

    /// Deletes a webhook registration and its recorded deliveries; false when there was none.
    fn delete_webhook<'a>(&'a self, tenant: &'a str, webhook_id: Uuid) -> StoreFuture<'a, bool>;

    /// The tenant's webhook registrations, oldest first.
    fn webhooks<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<WebhookRecord>>;

    /// The newest `limit` recorded deliveries of a webhook, oldest first.
    fn webhook_deliveries<'a>(
        &'a self,
        tenant: &'a str,
        webhook_id: Uuid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<WebhookDeliveryRecord>>;

    /// Whether the store answers, how fast, and how its connections are used.
    fn health(&self) -> BoxFuture<'_, StoreHealth>;
}
