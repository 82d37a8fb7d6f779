//! The session's runs: starting one ([`StartExecution`], committed to the store before it
//! starts), listing and reading them, cancelling one, and taking in a run's final snapshot
//! ([`ExecutionFinished`]).

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{ExecutionSlot, SessionActor};
use crate::{
    engine::{plan::RunInputs, workflow::Workflow},
    error::GatewayError,
    execution::{
        CANCELLED, Cancel, ExecutionActor, ExecutionSnapshot, ExecutionSpec, ExecutionStatus,
        Snapshot,
    },
    store::Fence,
};

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
        let tenant_limits = self.engine.tenants.limits(&self.tenant_id);
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
            run_slot: tenant_limits
                .max_concurrent_executions
                .map(|_| self.parent.clone()),
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
