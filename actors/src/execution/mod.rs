//! `ExecutionActor`: one per run of a workflow. Owns the run's [`RunPlan`], starts each node
//! as soon as its inputs are ready (independent branches run concurrently), enforces the
//! per-node and per-execution time limits, obeys cancel, emits every workflow and node event,
//! and reports its final snapshot to its session before stopping.
//!
//! Its session commits the run to the store before starting it; the run hands each node's
//! outcome and its own final state to the store writer (batched, in order).
//!
//! Owned by its [`SessionActor`]. Messages: [`Snapshot`], [`Cancel`]. Each node's future is
//! polled by this actor's context behind `catch_unwind`, so a panic there becomes a
//! `node.failed` event, and cancel drops the future (an HTTP call in flight with it).

mod slots;

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::{
    bus::{EventBus, Publish},
    caller::{TenantId, UserId},
    engine::{
        node::{NodeCall, NodeError, NodeOutput, NodeRegistry},
        plan::{Next, NodeState, RunInputs, RunPlan},
        workflow::Workflow,
    },
    events::{Event, EventDetail, EventType, NodeDetail, RunRef, WorkflowDetail},
    registry::RegistryActor,
    session::{ExecutionFinished, SessionActor},
    store::{ExecutionRecord, Fence, NodeRunRecord, StoreWriter, Write},
    tenant::TenantActor,
};

/// Where a run is. A terminal status never changes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    Started,
    Running,
    Completed,
    Failed,
    Cancelled,
    Timeout,
}

impl ExecutionStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, ExecutionStatus::Started | ExecutionStatus::Running)
    }
}

/// A run as `GET /api/executions/{id}` shows it.
#[derive(Debug, Clone, Serialize, MessageResponse)]
pub struct ExecutionSnapshot {
    pub execution_id: Uuid,
    pub workflow_id: String,
    pub workflow_name: String,
    pub status: ExecutionStatus,
    pub progress: f64,
    pub current_node: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub outputs: Map<String, Value>,
    pub error: Option<String>,
    pub node_states: Map<String, Value>,
}

/// Time limits of one run.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// Default per-node limit; a node's own `timeout` parameter (seconds) replaces it.
    pub node_timeout: Duration,
    pub execution_timeout: Duration,
}

impl RunLimits {
    /// These limits under a tenant's `max_execution_seconds`, which caps the whole run's
    /// time (a node's own limit still ends it sooner).
    pub(crate) fn capped(self, max_execution_seconds: Option<u64>) -> Self {
        match max_execution_seconds {
            Some(seconds) => Self {
                execution_timeout: self.execution_timeout.min(Duration::from_secs(seconds)),
                ..self
            },
            None => self,
        }
    }
}

/// Everything an execution needs to start.
pub(crate) struct ExecutionSpec {
    pub execution_id: Uuid,
    /// The token every state write of the run carries (see [`Fence`]).
    pub fence: Fence,
    pub workflow: Arc<Workflow>,
    pub inputs: RunInputs,
    /// The request's `inputs` and `config_overrides`, as the store records them.
    pub request: Arc<(Value, Value)>,
    pub session_id: Uuid,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub registry: Arc<NodeRegistry>,
    pub limits: RunLimits,
    pub bus: Addr<EventBus>,
    pub session: Addr<SessionActor>,
    pub gateway: Addr<RegistryActor>,
    pub writer: StoreWriter,
    /// The tenant whose `max_concurrent_executions` this run must get a slot of before it
    /// runs (see `run_slots`); `None` when the tenant has no such limit.
    pub run_slot: Option<Addr<TenantActor>>,
}

pub(crate) struct ExecutionActor {
    spec: ExecutionSpec,
    plan: RunPlan,
    status: ExecutionStatus,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    error: Option<String>,
    /// A node hit its time limit: the run ends as `timeout`, not `failed`.
    node_timed_out: bool,
    /// The run's identity, as every event carries it.
    run: RunRef,
    /// Running nodes: how to abort their task (cancel, timeouts) and when they started.
    running: HashMap<usize, (SpawnHandle, Instant)>,
}

type NodeResult = Result<NodeOutput, NodeFailure>;

/// What a node event reports beyond the node's identity.
#[derive(Debug, Default)]
struct NodeOutcome {
    inputs: Value,
    outputs: Value,
    execution_time_ms: Option<f64>,
    error: Option<String>,
}

/// How a node run ended without output.
#[derive(Debug)]
enum NodeFailure {
    Error(NodeError),
    TimedOut(Duration),
}

impl ExecutionActor {
    pub(crate) fn new(spec: ExecutionSpec) -> Self {
        let plan = RunPlan::new(&spec.workflow);
        let run = RunRef {
            workflow_id: spec.workflow.workflow_id.as_str().into(),
            workflow_name: spec.workflow.name.as_str().into(),
            execution_id: spec.execution_id,
        };
        Self {
            run,
            spec,
            plan,
            status: ExecutionStatus::Started,
            created_at: Utc::now(),
            started_at: None,
            completed_at: None,
            error: None,
            node_timed_out: false,
            running: HashMap::new(),
        }
    }

    fn node_id(&self, node: usize) -> &str {
        &self.spec.workflow.nodes[node].id
    }

    /// A node that is running now (the earliest declared, so the answer is stable).
    fn current_node(&self) -> Option<String> {
        self.running
            .keys()
            .min()
            .map(|&n| self.node_id(n).to_owned())
    }

    pub(crate) fn snapshot(&self) -> ExecutionSnapshot {
        let workflow = &self.spec.workflow;
        let outputs = (0..workflow.nodes.len())
            .filter_map(|n| {
                Some((
                    self.node_id(n).to_owned(),
                    Value::Object(self.plan.output(n)?.clone()),
                ))
            })
            .collect();
        let node_states = self
            .plan
            .states()
            .iter()
            .enumerate()
            .map(|(n, state)| (self.node_id(n).to_owned(), json!(state)))
            .collect();
        ExecutionSnapshot {
            execution_id: self.spec.execution_id,
            workflow_id: workflow.workflow_id.clone(),
            workflow_name: workflow.name.clone(),
            status: self.status,
            progress: self.plan.progress(),
            current_node: self.current_node(),
            created_at: self.created_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
            outputs,
            error: self.error.clone(),
            node_states,
        }
    }

    /// The run as the store records it.
    pub(crate) fn record(&self, snapshot: ExecutionSnapshot) -> ExecutionRecord {
        ExecutionRecord {
            tenant_id: self.spec.tenant_id.clone(),
            session_id: self.spec.session_id,
            user_id: self.spec.user_id.clone(),
            inputs: self.spec.request.0.clone(),
            config_overrides: self.spec.request.1.clone(),
            snapshot,
            fence: self.spec.fence,
        }
    }

    /// Hands a node's final outcome to the store writer.
    fn record_node_run(&self, status: &'static str, node: usize, outcome: &NodeOutcome) {
        let spec = &self.spec.workflow.nodes[node];
        let finished_at = Utc::now();
        let started_at = outcome
            .execution_time_ms
            .map(|ms| finished_at - chrono::Duration::microseconds((ms * 1000.0) as i64));
        self.spec.writer.write(Write::NodeRun(NodeRunRecord {
            tenant_id: self.spec.tenant_id.clone(),
            execution_id: self.spec.execution_id,
            node_id: spec.id.clone(),
            node_type: spec.node_type.into(),
            status: status.into(),
            started_at,
            finished_at,
            execution_time_ms: outcome.execution_time_ms,
            outputs: outcome.outputs.clone(),
            error: outcome.error.clone(),
            fence: self.spec.fence,
        }));
    }

    fn publish(&self, event_type: EventType, detail: EventDetail) {
        let mut event = Event::new(event_type, "execution", self.spec.tenant_id.clone())
            .in_session(self.spec.session_id, self.spec.user_id.clone());
        event.detail = Some(detail);
        self.spec.bus.do_send(Publish(event));
    }

    fn publish_workflow_event(&self, event_type: EventType, data: Value) {
        self.publish(
            event_type,
            EventDetail::Workflow(WorkflowDetail {
                run: self.run.clone(),
                progress_percent: self.plan.progress(),
                current_node: self.current_node(),
                data,
                error: self.error.clone(),
            }),
        );
    }

    fn publish_node_event(&self, event_type: EventType, node: usize, outcome: NodeOutcome) {
        match event_type {
            EventType::NodeCompleted => self.record_node_run("completed", node, &outcome),
            EventType::NodeFailed => self.record_node_run("failed", node, &outcome),
            EventType::NodeSkipped => self.record_node_run("skipped", node, &outcome),
            _ => {}
        }
        let spec = &self.spec.workflow.nodes[node];
        self.publish(
            event_type,
            EventDetail::Node(NodeDetail {
                run: self.run.clone(),
                node_id: spec.id.clone(),
                node_type: spec.node_type,
                node_name: spec.name.clone(),
                inputs: outcome.inputs,
                outputs: outcome.outputs,
                execution_time_ms: outcome.execution_time_ms,
                error: outcome.error,
            }),
        );
    }

    /// Starts every node that is ready; finishes the run when nothing is left.
    fn advance(&mut self, ctx: &mut Context<Self>) {
        if self.status.is_terminal() {
            return;
        }
        let workflow = self.spec.workflow.clone();
        let ready = self
            .plan
            .take_ready(&workflow, &self.spec.registry, &self.spec.inputs);
        for next in ready {
            match next {
                Next::Run {
                    node,
                    params,
                    inputs,
                } => self.start_node(node, params, inputs, ctx),
                Next::Skip { node } => {
                    self.publish_node_event(EventType::NodeSkipped, node, NodeOutcome::default());
                    self.publish_progress();
                }
                Next::Fail { node, error } => self.node_failed(node, error, None, ctx),
            }
        }
        if self.plan.is_done() && !self.status.is_terminal() {
            let failed = self.plan.states().contains(&NodeState::Failed);
            let status = match (self.node_timed_out, failed) {
                (true, _) => ExecutionStatus::Timeout,
                (false, true) => ExecutionStatus::Failed,
                (false, false) => ExecutionStatus::Completed,
            };
            self.finish(status, ctx);
        }
    }

    fn start_node(
        &mut self,
        node: usize,
        params: Map<String, Value>,
        inputs: Map<String, Value>,
        ctx: &mut Context<Self>,
    ) {
        let spec = &self.spec.workflow.nodes[node];
        let Some(node_type) = self.spec.registry.get(spec.node_type).cloned() else {
            // take_ready only returns Run for registered types.
            return;
        };
        let limit = params
            .get("timeout")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(self.spec.limits.node_timeout, Duration::from_secs_f64);
        let call = NodeCall {
            node_id: spec.id.to_string(),
            params,
        };
        let run = async move {
            match tokio::time::timeout(limit, node_type.run(call)).await {
                Ok(result) => result.map_err(NodeFailure::Error),
                Err(_) => Err(NodeFailure::TimedOut(limit)),
            }
        };
        let outcome = NodeOutcome {
            inputs: Value::Object(inputs),
            ..NodeOutcome::default()
        };
        self.publish_node_event(EventType::NodeStarted, node, outcome);
        // Polled by this actor's context: no task per node. A panic is caught at the poll
        // and becomes `node.failed`; cancel drops the future through its spawn handle.
        let handle = ctx.spawn(
            AssertUnwindSafe(run)
                .catch_unwind()
                .into_actor(self)
                .map(move |result, actor, ctx| actor.node_settled(node, result.ok(), ctx)),
        );
        self.running.insert(node, (handle, Instant::now()));
    }

    /// A node's run ended: record its result (`None`: it panicked). After the run ended
    /// (cancel or a time limit), there is nothing left to record.
    fn node_settled(&mut self, node: usize, result: Option<NodeResult>, ctx: &mut Context<Self>) {
        let Some((_, started)) = self.running.remove(&node) else {
            return;
        };
        if self.status.is_terminal() {
            return;
        }
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Some(Ok(output)) => {
                self.plan.complete(node, output.clone());
                let outcome = NodeOutcome {
                    outputs: Value::Object(output),
                    execution_time_ms: Some(elapsed_ms),
                    ..NodeOutcome::default()
                };
                self.publish_node_event(EventType::NodeCompleted, node, outcome);
                self.publish_progress();
                self.advance(ctx);
            }
            Some(Err(NodeFailure::Error(error))) => {
                self.node_failed(node, error.message, Some(elapsed_ms), ctx)
            }
            Some(Err(NodeFailure::TimedOut(limit))) => {
                // The run ends now, as `timeout`, whatever else is still running.
                self.node_timed_out = true;
                let message = format!("timed out after {} s", limit.as_secs_f64());
                self.node_failed(node, message, Some(elapsed_ms), ctx);
                self.finish(ExecutionStatus::Timeout, ctx);
            }
            None => self.node_failed(node, "the node panicked".to_owned(), Some(elapsed_ms), ctx),
        }
    }

    fn node_failed(
        &mut self,
        node: usize,
        message: String,
        elapsed_ms: Option<f64>,
        ctx: &mut Context<Self>,
    ) {
        let node_id = self.node_id(node).to_owned();
        if self.plan.state(node) != NodeState::Failed {
            let skipped = self.plan.fail(node);
            let outcome = NodeOutcome {
                execution_time_ms: elapsed_ms,
                error: Some(message.clone()),
                ..NodeOutcome::default()
            };
            self.publish_node_event(EventType::NodeFailed, node, outcome);
            for dependent in skipped {
                self.publish_node_event(EventType::NodeSkipped, dependent, NodeOutcome::default());
            }
        }
        self.error
            .get_or_insert_with(|| format!("node '{node_id}' failed: {message}"));
        self.publish_progress();
        self.advance(ctx);
    }

    fn publish_progress(&self) {
        self.publish_workflow_event(EventType::WorkflowProgress, Value::Null);
    }

    /// Ends the run with `status` (once): stops running nodes, emits the terminal event,
    /// hands the final snapshot to the session and stops.
    fn finish(&mut self, status: ExecutionStatus, ctx: &mut Context<Self>) {
        if self.status.is_terminal() {
            return;
        }
        for (_, (handle, _)) in self.running.drain() {
            ctx.cancel_future(handle);
        }
        if status != ExecutionStatus::Completed {
            self.plan.cancel_unfinished();
        }
        self.status = status;
        self.completed_at = Some(Utc::now());
        let (event_type, data) = match status {
            ExecutionStatus::Completed => (
                EventType::WorkflowCompleted,
                json!({"outputs": self.snapshot().outputs}),
            ),
            ExecutionStatus::Failed => (EventType::WorkflowFailed, Value::Null),
            ExecutionStatus::Cancelled => (EventType::WorkflowCancelled, Value::Null),
            ExecutionStatus::Timeout => (EventType::WorkflowTimeout, Value::Null),
            ExecutionStatus::Started | ExecutionStatus::Running => {
                unreachable!("finish takes a terminal status")
            }
        };
        self.publish_workflow_event(event_type, data);
        let snapshot = self.snapshot();
        self.spec.writer.write(Write::ExecutionFinished(Box::new(
            self.record(snapshot.clone()),
        )));
        self.spec.session.do_send(ExecutionFinished { snapshot });
        self.end_slots();
        ctx.stop();
    }
}

impl ExecutionActor {
    /// Runs: `workflow.started`, the run's time limit (counted from now, not from when it
    /// was queued), the first ready nodes.
    fn begin(&mut self, ctx: &mut Context<Self>) {
        self.status = ExecutionStatus::Running;
        self.started_at = Some(Utc::now());
        self.publish_workflow_event(EventType::WorkflowStarted, Value::Null);
        let limit = self.spec.limits.execution_timeout;
        ctx.run_later(limit, move |actor, ctx| {
            actor.error.get_or_insert_with(|| {
                format!(
                    "the execution exceeded its limit of {} s",
                    limit.as_secs_f64()
                )
            });
            actor.finish(ExecutionStatus::Timeout, ctx);
        });
        self.advance(ctx);
    }
}

/// The run as it is now.
#[derive(Message)]
#[rtype(result = "ExecutionSnapshot")]
pub(crate) struct Snapshot;

impl Handler<Snapshot> for ExecutionActor {
    type Result = ExecutionSnapshot;

    fn handle(&mut self, _: Snapshot, _: &mut Self::Context) -> ExecutionSnapshot {
        self.snapshot()
    }
}

/// Stop the run now, silently: its session was taken over by another node, which recorded
/// it failed (see `tenant::GiveUp`). Only this node's slot for it is given back.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Abandon;

impl Handler<Abandon> for ExecutionActor {
    type Result = ();

    fn handle(&mut self, _: Abandon, ctx: &mut Self::Context) {
        for (_, (handle, _)) in self.running.drain() {
            ctx.cancel_future(handle);
        }
        self.end_slots();
        ctx.stop();
    }
}

/// Stop the run now, ending it as `reason` says (its error stays that of a node that failed
/// first); replies whether it was still running.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Cancel {
    pub reason: StopReason,
}

/// How a run stopped from outside ends: its terminal status and its error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StopReason {
    pub status: ExecutionStatus,
    pub error: &'static str,
}

/// A run cancelled by its caller (or with its session).
pub(crate) const CANCELLED: StopReason = StopReason {
    status: ExecutionStatus::Cancelled,
    error: "cancelled",
};

/// A run still going when its node's drain deadline passed: it did not finish, and nobody
/// asked for that, so it failed (see `Gateway::interrupt_runs`).
pub const INTERRUPTED: &str =
    "interrupted: the gateway node running this execution shut down before it finished";

impl Handler<Cancel> for ExecutionActor {
    type Result = bool;

    fn handle(&mut self, msg: Cancel, ctx: &mut Self::Context) -> bool {
        if self.status.is_terminal() {
            return false;
        }
        self.error
            .get_or_insert_with(|| msg.reason.error.to_owned());
        self.finish(msg.reason.status, ctx);
        true
    }
}
