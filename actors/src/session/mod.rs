//! `SessionActor`: one per live session; owns the session's record (owner, creation time,
//! metadata), its workflows, and its executions — the running ones as child
//! [`ExecutionActor`]s, the finished ones as their final snapshots.
//!
//! Owned by its [`TenantActor`], which routes every request here after checking that the
//! caller may see the session, and which tracks idle time. Messages: [`Describe`],
//! [`Summarize`], [`End`] (cancels running executions first), [`AddWorkflow`],
//! [`ListWorkflows`], [`FindWorkflow`], [`StartExecution`], [`ListExecutions`],
//! [`GetExecution`], [`CancelExecution`], [`CancelRuns`], and [`ExecutionFinished`] from its
//! executions (the run messages live in [`runs`]), and [`Relinquish`].
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
use serde_json::Value;
use uuid::Uuid;

mod runs;

pub use self::runs::ExecutionSummary;
pub(crate) use self::runs::{
    CancelExecution, ExecutionFinished, GetExecution, ListExecutions, StartExecution,
};

use crate::{
    caller::{TenantId, UserId},
    engine::workflow::Workflow,
    error::GatewayError,
    execution::{Abandon, CANCELLED, Cancel, ExecutionActor, ExecutionSnapshot, StopReason},
    handle::EngineContext,
    store::{SessionRecord, WorkflowRecord},
    tenant::{ChildStopped, CountWorkflow, TenantActor},
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

/// Stop every running execution as `reason` says (its tenant was deactivated, or its node
/// is shutting down); replies how many were still running. The session itself stays.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct CancelRuns {
    pub reason: StopReason,
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
        let new_id = match self.workflows.get(&workflow.workflow_id) {
            Some(previous) => {
                workflow.version = previous.version + 1;
                None
            }
            // A new id counts in the tenant's `max_workflows`; a new version does not.
            None => Some((self.parent.clone(), self.session_id)),
        };
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
            async move {
                if let Some((tenant, session_id)) = new_id {
                    tenant.send(CountWorkflow { session_id }).await??;
                }
                Ok::<_, GatewayError>(store.save_workflow(&record).await?)
            }
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
