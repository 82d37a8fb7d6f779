//! `SessionActor`: one per live session; owns the session's record (owner, creation time,
//! metadata), its workflows, and its executions — the running ones as child
//! [`ExecutionActor`]s, the finished ones as their final snapshots.
//!
//! Owned by its [`TenantActor`], which routes every request here after checking that the
//! caller may see the session, and which tracks idle time. Messages: [`Describe`],
//! [`Summarize`], [`End`] (cancels running executions first), [`AddWorkflow`],
//! [`ListWorkflows`], [`FindWorkflow`], [`StartExecution`], [`ListExecutions`],
//! [`GetExecution`], [`CancelExecution`], [`CancelRuns`], and [`ExecutionFinished`] from its
//! executions.
//! On stop it tells its parent ([`ChildStopped`]).
//!
//! A new workflow version and a new execution are committed to the store before they are
//! reported; both handlers run atomically (the session takes no other message meanwhile), so
//! versions and the running-execution limit stay consistent with what is stored.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{
    caller::{TenantId, UserId},
    engine::{plan::RunInputs, workflow::Workflow},
    error::GatewayError,
    execution::{
        Abandon, CANCELLED, Cancel, ExecutionActor, ExecutionSnapshot, ExecutionSpec,
        ExecutionStatus, Snapshot,
    },
    handle::EngineContext,
    store::{Fence, SessionRecord, WorkflowRecord},
    tenant::{ChildStopped, TenantActor},
};

pub(crate) struct SessionActor {
    session_id: Uuid,
    tenant_id: TenantId,
    owner: UserId,
    created_at: DateTime<Utc>,
    metadata: Arc<Value>,
    parent: Addr<TenantActor>,
    engine: Arc<EngineContext>,
    workflows: HashMap<String, Arc<Workflow>>,
    executions: HashMap<Uuid, ExecutionSlot>,
    /// Finished executions, oldest first, so the oldest is forgotten beyond the bound.
    finished: VecDeque<Uuid>,
}

enum ExecutionSlot {
    Running {
        addr: Addr<ExecutionActor>,
        workflow_id: String,
        created_at: DateTime<Utc>,
    },
    Finished(Box<ExecutionSnapshot>),
}

impl SessionActor {
    pub(crate) fn new(
        record: SessionRecord,
        parent: Addr<TenantActor>,
        engine: Arc<EngineContext>,
    ) -> Self {
        Self {
            session_id: record.session_id,
            tenant_id: record.tenant_id,
            owner: record.user_id,
            created_at: record.created_at,
            metadata: Arc::new(record.metadata),
            parent,
            engine,
            workflows: HashMap::new(),
            executions: HashMap::new(),
            finished: VecDeque::new(),
        }
    }

    /// A restored session's workflows and finished executions (oldest first).
    pub(crate) fn with_history(
        mut self,
        workflows: Vec<Arc<Workflow>>,
        finished: Vec<ExecutionSnapshot>,
    ) -> Self {
        for workflow in workflows {
            self.workflows
                .insert(workflow.workflow_id.clone(), workflow);
        }
        for snapshot in finished {
            self.finished.push_back(snapshot.execution_id);
            self.executions.insert(
                snapshot.execution_id,
                ExecutionSlot::Finished(Box::new(snapshot)),
            );
        }
        self
    }

    pub(crate) fn summary(&self) -> SessionSummary {
        SessionSummary {
            session_id: self.session_id,
            user_id: self.owner.clone(),
            created_at: self.created_at,
            workflow_count: self.workflows.len(),
            execution_count: self.executions.len(),
        }
    }

    fn running(&self) -> impl Iterator<Item = &Addr<ExecutionActor>> {
        self.executions.values().filter_map(|slot| match slot {
            ExecutionSlot::Running { addr, .. } => Some(addr),
            ExecutionSlot::Finished(_) => None,
        })
    }

    /// The session's own workflow with this id, else the shared one.
    fn workflow(&self, workflow_id: &str) -> Option<(Arc<Workflow>, bool)> {
        self.workflows
            .get(workflow_id)
            .map(|w| (w.clone(), false))
            .or_else(|| {
                self.engine
                    .shared_workflows
                    .get(workflow_id)
                    .map(|w| (w.clone(), true))
            })
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.parent.do_send(ChildStopped {
            session_id: self.session_id,
        });
    }
}

/// A session as `GET /api/sessions` lists it.
#[derive(Debug, Clone, Serialize, MessageResponse)]
pub struct SessionSummary {
    pub session_id: Uuid,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub workflow_count: usize,
    pub execution_count: usize,
}

/// A session as `GET /api/sessions/{id}` shows it.
#[derive(Debug, Clone, Serialize, MessageResponse)]
pub struct SessionDetail {
    pub session_id: Uuid,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub active: bool,
    pub workflows: Vec<String>,
    pub active_executions: usize,
    pub metadata: Arc<Value>,
}

#[derive(Message)]
#[rtype(result = "SessionSummary")]
pub(crate) struct Summarize;

impl Handler<Summarize> for SessionActor {
    type Result = SessionSummary;

    fn handle(&mut self, _: Summarize, _: &mut Self::Context) -> SessionSummary {
        self.summary()
    }
}

#[derive(Message)]
#[rtype(result = "SessionDetail")]
pub(crate) struct Describe;

impl Handler<Describe> for SessionActor {
    type Result = SessionDetail;

    fn handle(&mut self, _: Describe, _: &mut Self::Context) -> SessionDetail {
        let mut workflows: Vec<String> = self.workflows.keys().cloned().collect();
        workflows.sort();
        SessionDetail {
            session_id: self.session_id,
            user_id: self.owner.clone(),
            created_at: self.created_at,
            active: true,
            workflows,
            active_executions: self.running().count(),
            metadata: self.metadata.clone(),
        }
    }
}

/// Cancel the running executions, then stop; replies whether the session ended. An idle
/// expiry (`only_if_idle`) does not end a session whose executions are still running: a
/// client watching a long run is using its session.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct End {
    pub only_if_idle: bool,
}

impl Handler<End> for SessionActor {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: End, _: &mut Self::Context) -> Self::Result {
        let running: Vec<_> = self.running().cloned().collect();
        if msg.only_if_idle && !running.is_empty() {
            return Box::pin(fut::ready(false));
        }
        Box::pin(
            async move {
                join_all(
                    running
                        .iter()
                        .map(|execution| execution.send(Cancel { reason: CANCELLED })),
                )
                .await;
            }
            .into_actor(self)
            .map(|(), _, ctx| {
                ctx.stop();
                true
            }),
        )
    }
}

/// Cancel every running execution with `reason` (its tenant was deactivated); replies how
/// many were still running. The session itself stays.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct CancelRuns {
    pub reason: &'static str,
}

impl Handler<CancelRuns> for SessionActor {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: CancelRuns, _: &mut Self::Context) -> Self::Result {
        let running: Vec<_> = self.running().cloned().collect();
        let reason = msg.reason;
        Box::pin(async move {
            join_all(
                running
                    .iter()
                    .map(|execution| execution.send(Cancel { reason })),
            )
            .await
            .into_iter()
            .filter(|cancelled| matches!(cancelled, Ok(true)))
            .count()
        })
    }
}

/// Stop at once, with the running executions, without publishing or writing anything:
/// another node serves this session now (see `tenant::GiveUp`).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Relinquish;

impl Handler<Relinquish> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: Relinquish, ctx: &mut Self::Context) {
        for execution in self.running() {
            execution.do_send(Abandon);
        }
        ctx.stop();
    }
}

/// Add (or replace, as a new version) a validated workflow.
#[derive(Message)]
#[rtype(result = "Result<Arc<Workflow>, GatewayError>")]
pub(crate) struct AddWorkflow {
    pub workflow: Workflow,
}

impl Handler<AddWorkflow> for SessionActor {
    type Result = AtomicResponse<Self, Result<Arc<Workflow>, GatewayError>>;

    fn handle(&mut self, msg: AddWorkflow, _: &mut Self::Context) -> Self::Result {
        let mut workflow = msg.workflow;
        if let Some(previous) = self.workflows.get(&workflow.workflow_id) {
            workflow.version = previous.version + 1;
        }
        let record = WorkflowRecord {
            tenant_id: self.tenant_id.clone(),
            session_id: self.session_id,
            workflow_id: workflow.workflow_id.clone(),
            version: workflow.version,
            definition: workflow.definition.clone(),
            created_at: workflow.created_at,
        };
        let store = self.engine.store.clone();
        AtomicResponse::new(Box::pin(
            async move { store.save_workflow(&record).await }
                .into_actor(self)
                .map(move |stored, session, _| {
                    stored?;
                    let workflow = Arc::new(workflow);
                    session
                        .workflows
                        .insert(workflow.workflow_id.clone(), workflow.clone());
                    Ok(workflow)
                }),
        ))
    }
}

/// A workflow as `GET /api/workflows` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowSummary {
    pub workflow_id: String,
    pub name: String,
    pub description: String,
    pub is_shared: bool,
    pub node_count: usize,
}

impl WorkflowSummary {
    pub fn of(workflow: &Workflow, is_shared: bool) -> Self {
        Self {
            workflow_id: workflow.workflow_id.clone(),
            name: workflow.name.clone(),
            description: workflow.description.clone(),
            is_shared,
            node_count: workflow.nodes.len(),
        }
    }
}

/// The session's workflows, then the shared ones it does not shadow.
#[derive(Message)]
#[rtype(result = "Vec<WorkflowSummary>")]
pub(crate) struct ListWorkflows;

impl Handler<ListWorkflows> for SessionActor {
    type Result = MessageResult<ListWorkflows>;

    fn handle(&mut self, _: ListWorkflows, _: &mut Self::Context) -> Self::Result {
        let mut own: Vec<_> = self
            .workflows
            .values()
            .map(|w| WorkflowSummary::of(w, false))
            .collect();
        own.sort_by(|a, b| a.workflow_id.cmp(&b.workflow_id));
        let shared = self
            .engine
            .shared_workflows
            .values()
            .filter(|w| !self.workflows.contains_key(&w.workflow_id))
            .map(|w| WorkflowSummary::of(w, true));
        MessageResult(own.into_iter().chain(shared).collect())
    }
}

/// A workflow this session can run, and whether it is shared.
#[derive(Message)]
#[rtype(result = "Option<(Arc<Workflow>, bool)>")]
pub(crate) struct FindWorkflow {
    pub workflow_id: String,
}

impl Handler<FindWorkflow> for SessionActor {
    type Result = MessageResult<FindWorkflow>;

    fn handle(&mut self, msg: FindWorkflow, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.workflow(&msg.workflow_id))
    }
}

/// Start a run of a workflow. The registry has already reserved its node-wide slot.
#[derive(Message)]
#[rtype(result = "Result<ExecutionSnapshot, GatewayError>")]
pub(crate) struct StartExecution {
    /// Chosen by the handle, which holds the run's cluster-wide slot under it.
    pub execution_id: Uuid,
    /// The run's fencing token, from its lease.
    pub fence: Fence,
    pub workflow_id: String,
    pub inputs: Map<String, Value>,
    pub config_overrides: Map<String, Value>,
}

impl SessionActor {
    /// Each overridden node's config, as the run would see it, through its type's own
    /// check: what a workflow could not be created with, a run cannot be started with.
    fn check_overrides(
        &self,
        workflow: &Workflow,
        overrides: &Map<String, Value>,
    ) -> Result<(), GatewayError> {
        for node in &workflow.nodes {
            let Some(Value::Object(changes)) = overrides.get(&*node.id) else {
                continue;
            };
            let Some(node_type) = self.engine.node_registry.get(node.node_type) else {
                continue;
            };
            let mut config = node.config.clone();
            config.extend(changes.clone());
            if let Some(problem) = node_type.check_config(&config).into_iter().next() {
                return Err(GatewayError::InvalidOverride {
                    node_id: node.id.to_string(),
                    parameter: problem.parameter,
                    message: problem.message,
                });
            }
        }
        Ok(())
    }
}

impl Handler<StartExecution> for SessionActor {
    type Result = AtomicResponse<Self, Result<ExecutionSnapshot, GatewayError>>;

    fn handle(&mut self, msg: StartExecution, ctx: &mut Self::Context) -> Self::Result {
        let execution = match self.prepare_execution(msg, ctx) {
            Ok(execution) => execution,
            Err(error) => return AtomicResponse::new(Box::pin(fut::ready(Err(error)))),
        };
        let snapshot = execution.snapshot();
        let record = execution.record(snapshot.clone());
        let store = self.engine.store.clone();
        // Committed before it runs: a run the client hears of is in the store, and one that a
        // crash interrupts is found there (and failed) on the next start.
        AtomicResponse::new(Box::pin(
            async move { store.create_execution(&record).await }
                .into_actor(self)
                .map(move |stored, session, _| {
                    stored?;
                    let addr = execution.start();
                    session.executions.insert(
                        snapshot.execution_id,
                        ExecutionSlot::Running {
                            addr,
                            workflow_id: snapshot.workflow_id.clone(),
                            created_at: snapshot.created_at,
                        },
                    );
                    Ok(snapshot)
                }),
        ))
    }
}

impl SessionActor {
    /// Checks a start request against the session's limits and builds the (not yet
    /// started) execution.
    fn prepare_execution(
        &self,
        msg: StartExecution,
        ctx: &mut Context<Self>,
    ) -> Result<ExecutionActor, GatewayError> {
        let (workflow, _) = self
            .workflow(&msg.workflow_id)
            .ok_or(GatewayError::WorkflowNotFound)?;
        let limit = self.engine.max_executions_per_session;
        if self.running().count() >= limit {
            return Err(GatewayError::TooManyExecutions {
                limit,
                scope: "session",
            });
        }
        self.check_overrides(&workflow, &msg.config_overrides)?;
        let inputs = RunInputs::new(&workflow, &msg.inputs, &msg.config_overrides);
        Ok(ExecutionActor::new(ExecutionSpec {
            execution_id: msg.execution_id,
            fence: msg.fence,
            workflow,
            inputs,
            request: Arc::new((
                Value::Object(msg.inputs),
                Value::Object(msg.config_overrides),
            )),
            session_id: self.session_id,
            tenant_id: self.tenant_id.clone(),
            user_id: self.owner.clone(),
            registry: self.engine.node_registry.clone(),
            limits: self.engine.run_limits.capped(
                self.engine
                    .tenants
                    .limits(&self.tenant_id)
                    .max_execution_seconds,
            ),
            bus: self.engine.bus.clone(),
            session: ctx.address(),
            gateway: self.engine.gateway.clone(),
            writer: self.engine.writer.clone(),
        }))
    }
}

/// An execution as `GET /api/executions` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionSummary {
    pub execution_id: Uuid,
    pub workflow_id: String,
    pub status: ExecutionStatus,
    pub progress: f64,
    pub created_at: DateTime<Utc>,
}

impl From<&ExecutionSnapshot> for ExecutionSummary {
    fn from(snapshot: &ExecutionSnapshot) -> Self {
        Self {
            execution_id: snapshot.execution_id,
            workflow_id: snapshot.workflow_id.clone(),
            status: snapshot.status,
            progress: snapshot.progress,
            created_at: snapshot.created_at,
        }
    }
}

/// Every execution of the session, oldest first.
#[derive(Message)]
#[rtype(result = "Vec<ExecutionSummary>")]
pub(crate) struct ListExecutions;

impl Handler<ListExecutions> for SessionActor {
    type Result = ResponseFuture<Vec<ExecutionSummary>>;

    fn handle(&mut self, _: ListExecutions, _: &mut Self::Context) -> Self::Result {
        let mut finished = Vec::new();
        let mut running = Vec::new();
        for (id, slot) in &self.executions {
            match slot {
                ExecutionSlot::Finished(snapshot) => {
                    finished.push(ExecutionSummary::from(snapshot.as_ref()))
                }
                ExecutionSlot::Running {
                    addr,
                    workflow_id,
                    created_at,
                } => {
                    running.push((addr.clone(), *id, workflow_id.clone(), *created_at));
                }
            }
        }
        Box::pin(async move {
            let asked = join_all(running.into_iter().map(
                |(addr, id, workflow_id, created_at)| async move {
                    match addr.send(Snapshot).await {
                        Ok(snapshot) => ExecutionSummary::from(&snapshot),
                        // It finished while we asked; its final snapshot is on its way.
                        Err(_) => ExecutionSummary {
                            execution_id: id,
                            workflow_id,
                            status: ExecutionStatus::Running,
                            progress: 100.0,
                            created_at,
                        },
                    }
                },
            ))
            .await;
            let mut all: Vec<_> = finished.into_iter().chain(asked).collect();
            all.sort_by_key(|e| (e.created_at, e.execution_id));
            all
        })
    }
}

/// One execution of the session.
#[derive(Message)]
#[rtype(result = "Result<ExecutionSnapshot, GatewayError>")]
pub(crate) struct GetExecution {
    pub execution_id: Uuid,
}

impl Handler<GetExecution> for SessionActor {
    type Result = ResponseActFuture<Self, Result<ExecutionSnapshot, GatewayError>>;

    fn handle(&mut self, msg: GetExecution, _: &mut Self::Context) -> Self::Result {
        let id = msg.execution_id;
        match self.executions.get(&id) {
            None => Box::pin(fut::ready(Err(GatewayError::ExecutionNotFound))),
            Some(ExecutionSlot::Finished(snapshot)) => {
                Box::pin(fut::ready(Ok(snapshot.as_ref().clone())))
            }
            Some(ExecutionSlot::Running { addr, .. }) => {
                let addr = addr.clone();
                Box::pin(
                    async move { addr.send(Snapshot).await }
                        .into_actor(self)
                        .map(move |asked, session, _| {
                            // An execution that stopped while we asked has sent its final snapshot.
                            asked.or_else(|_| match session.executions.get(&id) {
                                Some(ExecutionSlot::Finished(snapshot)) => {
                                    Ok(snapshot.as_ref().clone())
                                }
                                _ => Err(GatewayError::Unavailable),
                            })
                        }),
                )
            }
        }
    }
}

/// Cancel one execution of the session.
#[derive(Message)]
#[rtype(result = "Result<(), GatewayError>")]
pub(crate) struct CancelExecution {
    pub execution_id: Uuid,
}

impl Handler<CancelExecution> for SessionActor {
    type Result = ResponseFuture<Result<(), GatewayError>>;

    fn handle(&mut self, msg: CancelExecution, _: &mut Self::Context) -> Self::Result {
        match self.executions.get(&msg.execution_id) {
            None => Box::pin(async { Err(GatewayError::ExecutionNotFound) }),
            Some(ExecutionSlot::Finished(_)) => {
                Box::pin(async { Err(GatewayError::ExecutionNotRunning) })
            }
            Some(ExecutionSlot::Running { addr, .. }) => {
                let addr = addr.clone();
                Box::pin(async move {
                    match addr.send(Cancel { reason: CANCELLED }).await {
                        Ok(true) => Ok(()),
                        // It finished first.
                        Ok(false) | Err(_) => Err(GatewayError::ExecutionNotRunning),
                    }
                })
            }
        }
    }
}

/// An execution ended; keep its final snapshot (within the session's bound).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ExecutionFinished {
    pub snapshot: ExecutionSnapshot,
}

impl Handler<ExecutionFinished> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: ExecutionFinished, _: &mut Self::Context) {
        let id = msg.snapshot.execution_id;
        self.executions
            .insert(id, ExecutionSlot::Finished(Box::new(msg.snapshot)));
        self.finished.push_back(id);
        while self.finished.len() > self.engine.finished_executions_per_session {
            if let Some(oldest) = self.finished.pop_front() {
                self.executions.remove(&oldest);
            }
        }
    }
}
