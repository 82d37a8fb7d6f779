//! [`Gateway`]: the typed handle through which the rest of the program talks to the actor
//! tree. Callers see async methods and [`GatewayError`]s, never actix types, and every ask
//! is bounded by a timeout so a stuck actor answers `Unavailable` instead of hanging.
//! What differs in a cluster is in [`cluster`]; events, subscriptions and rooms in
//! [`realtime`].

mod cluster;
mod realtime;
mod tenants;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use actix::{dev::ToEnvelope, prelude::*};
use serde_json::{Map, Value};
use tokio::time::timeout;
use uuid::Uuid;

pub use self::cluster::LocalSessions;
use crate::{
    accounts::TenantTable,
    broker::SharedBroker,
    bus::{BusConfig, BusStats, EventBus},
    caller::Caller,
    engine::{
        node::NodeRegistry,
        workflow::{Problem, Workflow, WorkflowLimits},
    },
    error::GatewayError,
    execution::{ExecutionSnapshot, ExecutionStatus, RunLimits, StopReason},
    registry::{
        CountRunning, CreateSession, Drain, ExecutionEnded, RegistryActor, ReserveExecution, Stats,
        StopAllRuns,
    },
    rooms::RoomHub,
    session::{
        AddWorkflow, CancelExecution, Describe, ExecutionSummary, FindWorkflow, GetExecution,
        ListExecutions, ListWorkflows, SessionActor, SessionDetail, SessionSummary, StartExecution,
        WorkflowSummary,
    },
    store::{
        HistoryPage, HistoryQuery, MemoryStore, Store, StoreHealth, StoreWriter,
        WebhookDeliveryRecord, WebhookRecord, Write, WriterStats,
    },
    tenant::{EndSession, ForSession, ListSessions},
};

/// What the actor tree needs to know; the gateway crate builds it from its settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Every node type workflows may use.
    pub node_registry: Arc<NodeRegistry>,
    /// Workflows every session may run, by id (loaded from the workflows directory).
    pub shared_workflows: BTreeMap<String, Arc<Workflow>>,
    pub run_limits: RunLimits,
    pub max_nodes_per_workflow: usize,
    pub max_executions_per_session: usize,
    pub max_concurrent_executions: usize,
    /// Finished executions a session keeps readable; older ones are forgotten first.
    pub finished_executions_per_session: usize,
    /// Node-wide limit on live sessions.
    pub max_sessions: usize,
    /// A session unused for this long expires.
    pub session_timeout: Duration,
    /// How long a caller waits for an actor's answer.
    pub ask_timeout: Duration,
    /// Bound of the registry's and tenants' mailboxes.
    pub mailbox_capacity: usize,
    pub bus: BusConfig,
    /// Most connections one collaboration room holds.
    pub max_room_members: usize,
    /// Most live sessions one user may hold in a tenant (0: no limit).
    pub concurrent_sessions_limit: usize,
    /// The tenants and their limits, shared with (and kept current by) the gateway crate.
    pub tenants: Arc<TenantTable>,
}

/// Where the tree keeps what must outlive the process, for how long, and what it shares with
/// the other nodes of a cluster.
pub struct Persistence {
    pub store: Arc<dyn Store>,
    /// The cluster's broker; `None`: a single node, events numbered in process.
    pub broker: Option<SharedBroker>,
    /// Writes the background writer holds before writers wait for room.
    pub writer_queue_len: usize,
    /// The retention job's ages and period; `None`: nothing is pruned.
    pub retention: Option<Retention>,
}

/// How long stored history is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Events older than this are deleted.
    pub events: Duration,
    /// Finished executions (and their node runs) older than this are deleted.
    pub executions: Duration,
    /// How often the job runs.
    pub every: Duration,
}

impl Persistence {
    /// The embedded default: an in-memory store, nothing pruned.
    pub fn in_memory() -> Self {
        Self {
            store: Arc::new(MemoryStore::new()),
            broker: None,
            writer_queue_len: 65_536,
            retention: None,
        }
    }
}

/// What sessions and executions share: read-only engine configuration and the addresses
/// executions report to.
pub(crate) struct EngineContext {
    pub node_registry: Arc<NodeRegistry>,
    pub shared_workflows: Arc<BTreeMap<String, Arc<Workflow>>>,
    pub run_limits: RunLimits,
    pub max_executions_per_session: usize,
    pub finished_executions_per_session: usize,
    pub bus: Addr<EventBus>,
    pub gateway: Addr<RegistryActor>,
    pub store: Arc<dyn Store>,
    pub writer: StoreWriter,
    /// The cluster's broker (session ownership); `None` on a single node.
    pub broker: Option<SharedBroker>,
    /// Which sessions have an actor on this node.
    pub local_sessions: Arc<LocalSessions>,
    /// Each tenant's limits.
    pub tenants: Arc<TenantTable>,
}

/// A cheap, cloneable handle on a running actor tree.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) registry: Addr<RegistryActor>,
    pub(crate) bus: Addr<EventBus>,
    rooms: Addr<RoomHub>,
    pub(crate) config: Arc<GatewayConfig>,
    shared_workflows: Arc<BTreeMap<String, Arc<Workflow>>>,
    pub(crate) store: Arc<dyn Store>,
    writer: StoreWriter,
    local_sessions: Arc<LocalSessions>,
    /// Whether a broker shares the store with other nodes.
    pub(crate) clustered: bool,
    broker: Option<SharedBroker>,
}

/// Counters across the tree.
#[derive(Debug, Clone, Copy)]
pub struct GatewayStats {
    pub active_sessions: usize,
    pub max_sessions: usize,
    pub sessions_near_timeout: usize,
    pub tenants: usize,
    pub sessions_created: u64,
    pub sessions_closed: u64,
    pub sessions_expired: u64,
    pub active_executions: usize,
    pub executions_finished: u64,
    pub shared_workflows: usize,
    pub events_emitted: u64,
    /// Events queued to subscribers, one per subscriber that received it.
    pub events_queued: u64,
    pub retained_event_streams: usize,
    pub subscribers: usize,
    pub draining: bool,
}

impl Gateway {
    /// Starts the registry and the event bus over an in-memory store. Must run inside an
    /// actix `System`.
    pub fn start(config: GatewayConfig) -> Self {
        Self::start_with(config, Persistence::in_memory())
    }

    /// Starts the tree over `persistence`. Call [`Gateway::restore`] next to load what the
    /// store holds. Must run inside an actix `System`.
    pub fn start_with(config: GatewayConfig, persistence: Persistence) -> Self {
        let config = Arc::new(config);
        let store = persistence.store;
        let writer = StoreWriter::start(store.clone(), persistence.writer_queue_len);
        let mut bus = EventBus::new(config.bus.clone()).persisting_to(writer.clone());
        if let Some(broker) = &persistence.broker {
            bus = bus.brokered_by(broker.clone());
        }
        let bus = bus.start();
        if let Some(broker) = &persistence.broker {
            broker.attach(bus.clone().recipient());
        }
        let shared_workflows = Arc::new(config.shared_workflows.clone());
        let local_sessions = Arc::new(LocalSessions::default());
        let registry = RegistryActor::create(|ctx| {
            let engine = Arc::new(EngineContext {
                node_registry: config.node_registry.clone(),
                shared_workflows: shared_workflows.clone(),
                run_limits: config.run_limits,
                max_executions_per_session: config.max_executions_per_session,
                finished_executions_per_session: config.finished_executions_per_session,
                bus: bus.clone(),
                gateway: ctx.address(),
                store: store.clone(),
                writer: writer.clone(),
                broker: persistence.broker.clone(),
                local_sessions: local_sessions.clone(),
                tenants: config.tenants.clone(),
            });
            RegistryActor::new(config.clone(), engine, bus.clone())
        });
        let rooms = RoomHub::new(config.max_room_members).start();
        if let Some(retention) = persistence.retention {
            crate::restore::start_retention(store.clone(), retention);
        }
        Self {
            registry,
            bus,
            rooms,
            config,
            shared_workflows,
            store,
            writer,
            local_sessions,
            clustered: persistence.broker.is_some(),
            broker: persistence.broker,
        }
    }

    /// Whether the store answers, its latency and pool use.
    pub async fn store_health(&self) -> StoreHealth {
        self.store.health().await
    }

    /// What the background writer has written, and whether it is failing.
    pub fn writer_stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    /// Waits until every write accepted so far is in the store.
    pub async fn flush(&self) {
        self.writer.flush().await;
    }

    /// Stores a webhook registration (the registry itself lives in the gateway crate).
    pub async fn save_webhook(&self, webhook: &WebhookRecord) -> Result<(), GatewayError> {
        Ok(self.store.save_webhook(webhook).await?)
    }

    /// Deletes a stored webhook registration; false when there was none.
    pub async fn delete_webhook(&self, tenant: &str, id: Uuid) -> Result<bool, GatewayError> {
        Ok(self.store.delete_webhook(tenant, id).await?)
    }

    /// Every stored webhook registration, tenant by tenant.
    pub async fn stored_webhooks(&self) -> Result<Vec<WebhookRecord>, GatewayError> {
        let mut webhooks = Vec::new();
        for tenant in self.store.tenants().await? {
            webhooks.extend(self.store.webhooks(&tenant).await?);
        }
        Ok(webhooks)
    }

    /// The newest `limit` stored deliveries of a webhook, oldest first.
    pub async fn webhook_deliveries(
        &self,
        tenant: &str,
        id: Uuid,
        limit: usize,
    ) -> Result<Vec<WebhookDeliveryRecord>, GatewayError> {
        Ok(self.store.webhook_deliveries(tenant, id, limit).await?)
    }

    /// Records how a webhook delivery ended (batched by the writer, like events).
    pub fn record_webhook_delivery(&self, delivery: WebhookDeliveryRecord) {
        self.writer
            .write(Write::WebhookDelivery(Box::new(delivery)));
    }

    /// A page of the caller's tenant's executions, newest first (`query.user_id` narrows
    /// it to one user; the gateway crate decides who may ask about whom).
    pub async fn execution_history(
        &self,
        caller: &Caller,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, GatewayError> {
        Ok(self
            .store
            .execution_history(&caller.tenant_id, query)
            .await?)
    }

    /// Every node type workflows may use.
    pub fn node_registry(&self) -> &NodeRegistry {
        &self.config.node_registry
    }

    async fn ask<A, M>(&self, addr: &Addr<A>, msg: M) -> Result<M::Result, GatewayError>
    where
        A: Actor + Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        match timeout(self.config.ask_timeout, addr.send(msg)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) | Err(_) => Err(GatewayError::Unavailable),
        }
    }

    pub async fn create_session(
        &self,
        caller: Caller,
        metadata: Value,
    ) -> Result<SessionSummary, GatewayError> {
        self.ask(&self.registry, CreateSession { caller, metadata })
            .await?
    }

    pub async fn session(
        &self,
        caller: Caller,
        session_id: Uuid,
    ) -> Result<SessionDetail, GatewayError> {
        self.for_session(caller, session_id, Describe).await
    }

    /// The caller's live sessions (the tenant's, for a caller who sees them all). In a
    /// cluster they live on many nodes, so the store answers.
    pub async fn list_sessions(&self, caller: Caller) -> Result<Vec<SessionSummary>, GatewayError> {
        if self.clustered {
            let owner = (!caller.sees_all_sessions).then_some(&*caller.user_id);
            return Ok(self
                .store
                .session_summaries(&caller.tenant_id, owner)
                .await?);
        }
        self.ask(&self.registry, ListSessions { caller }).await?
    }

    /// Closes a session the caller may see; returns once it has ended.
    pub async fn close_session(
        &self,
        caller: Caller,
        session_id: Uuid,
    ) -> Result<(), GatewayError> {
        self.ask(&self.registry, EndSession { caller, session_id })
            .await?
    }

    pub async fn stats(&self) -> Result<GatewayStats, GatewayError> {
        let registry = self.ask(&self.registry, Stats).await?;
        let bus = self.ask(&self.bus, BusStats).await?;
        Ok(GatewayStats {
            active_sessions: registry.active_sessions,
            max_sessions: self.config.max_sessions,
            sessions_near_timeout: registry.sessions_near_timeout,
            tenants: registry.tenants,
            sessions_created: registry.sessions_created,
            sessions_closed: registry.sessions_closed,
            sessions_expired: registry.sessions_expired,
            active_executions: registry.active_executions,
            executions_finished: registry.executions_finished,
            shared_workflows: self.shared_workflows.len(),
            events_emitted: bus.events_emitted,
            events_queued: bus.events_queued,
            retained_event_streams: bus.retained_streams,
            subscribers: bus.subscribers,
            draining: registry.draining,
        })
    }

    /// Parses and validates a workflow config against the node registry (no actor
    /// involved: validation is pure and runs on the caller's thread).
    pub fn parse_workflow(&self, config: &Value) -> Result<Workflow, Vec<Problem>> {
        Workflow::parse(
            config,
            &self.config.node_registry,
            WorkflowLimits {
                max_nodes: self.config.max_nodes_per_workflow,
            },
        )
    }

    async fn for_session<M>(
        &self,
        caller: Caller,
        session_id: Uuid,
        msg: M,
    ) -> Result<M::Result, GatewayError>
    where
        M: Message + Send + 'static,
        M::Result: Send + 'static,
        SessionActor: Handler<M>,
    {
        self.ask(
            &self.registry,
            ForSession {
                caller,
                session_id,
                msg,
            },
        )
        .await?
    }

    /// Adds a validated workflow to a session (a new version when the id exists there).
    pub async fn add_workflow(
        &self,
        caller: Caller,
        session_id: Uuid,
        workflow: Workflow,
    ) -> Result<Arc<Workflow>, GatewayError> {
        self.for_session(caller, session_id, AddWorkflow { workflow })
            .await?
    }

    /// The session's workflows and the shared ones; without a session, the shared ones.
    pub async fn list_workflows(
        &self,
        caller: Caller,
        session_id: Option<Uuid>,
    ) -> Result<Vec<WorkflowSummary>, GatewayError> {
        match session_id {
            Some(session_id) => self.for_session(caller, session_id, ListWorkflows).await,
            None => Ok(self
                .shared_workflows
                .values()
                .map(|w| WorkflowSummary::of(w, true))
                .collect()),
        }
    }

    /// A workflow the caller can run, and whether it is shared.
    pub async fn find_workflow(
        &self,
        caller: Caller,
        session_id: Option<Uuid>,
        workflow_id: String,
    ) -> Result<(Arc<Workflow>, bool), GatewayError> {
        let found = match session_id {
            Some(session_id) => {
                self.for_session(caller, session_id, FindWorkflow { workflow_id })
                    .await?
            }
            None => self
                .shared_workflows
                .get(&workflow_id)
                .map(|w| (w.clone(), true)),
        };
        found.ok_or(GatewayError::WorkflowNotFound)
    }

    /// Starts a run; the snapshot is the run as it was created.
    pub async fn start_execution(
        &self,
        caller: Caller,
        session_id: Uuid,
        workflow_id: String,
        inputs: Map<String, Value>,
        config_overrides: Map<String, Value>,
    ) -> Result<ExecutionSnapshot, GatewayError> {
        let execution_id = Uuid::new_v4();
        self.ask(&self.registry, ReserveExecution { execution_id })
            .await??;
        let limit = self.config.max_concurrent_executions;
        let fence = match &self.broker {
            None => Some(0),
            Some(broker) => broker
                .reserve_run(execution_id, limit)
                .await
                // Redis away: this node's own limit (above) is all that can be checked, and
                // nobody can take the session over until Redis returns.
                .unwrap_or(Some(0)),
        };
        let Some(fence) = fence else {
            self.registry.do_send(ExecutionEnded {
                execution_id,
                ran: false,
            });
            return Err(GatewayError::TooManyExecutions {
                limit,
                scope: "cluster",
            });
        };
        let started = self
            .for_session(
                caller,
                session_id,
                StartExecution {
                    execution_id,
                    fence,
                    workflow_id,
                    inputs,
                    config_overrides,
                },
            )
            .await
            .and_then(|result| result);
        if started.is_err() {
            self.registry.do_send(ExecutionEnded {
                execution_id,
                ran: false,
            });
        }
        started
    }

    pub async fn list_executions(
        &self,
        caller: Caller,
        session_id: Uuid,
    ) -> Result<Vec<ExecutionSummary>, GatewayError> {
        self.for_session(caller, session_id, ListExecutions).await
    }

    pub async fn execution(
        &self,
        caller: Caller,
        session_id: Uuid,
        execution_id: Uuid,
    ) -> Result<ExecutionSnapshot, GatewayError> {
        self.for_session(caller, session_id, GetExecution { execution_id })
            .await?
    }

    pub async fn cancel_execution(
        &self,
        caller: Caller,
        session_id: Uuid,
        execution_id: Uuid,
    ) -> Result<(), GatewayError> {
        self.for_session(caller, session_id, CancelExecution { execution_id })
            .await?
    }

    /// Stops taking new work. Existing sessions stay (they outlive a node once persisted).
    pub async fn drain(&self) -> Result<(), GatewayError> {
        self.ask(&self.registry, Drain).await
    }

    /// Executions running (or starting) on this node.
    pub async fn running_executions(&self) -> Result<usize, GatewayError> {
        self.ask(&self.registry, CountRunning).await
    }

    /// Ends every execution still running on this node as `failed`, with the error
    /// [`INTERRUPTED`](crate::execution::INTERRUPTED) and its `workflow.failed` event (a
    /// draining node whose deadline passed); returns how many were stopped.
    pub async fn interrupt_runs(&self) -> Result<usize, GatewayError> {
        let reason = StopReason {
            status: ExecutionStatus::Failed,
            error: crate::execution::INTERRUPTED,
        };
        self.ask(&self.registry, StopAllRuns { reason }).await
    }
}
