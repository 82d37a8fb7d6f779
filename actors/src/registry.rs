//! `RegistryActor`: one per process; owns the address book of tenant actors, the node-wide
//! session count that enforces `max_sessions`, the lifetime session totals, and the
//! draining flag.
//!
//! Owned by the process ([`Gateway::start`](crate::Gateway::start)). Messages:
//! [`CreateSession`], any [`TenantRequest`] (forwarded to the caller's tenant),
//! [`SessionEnded`] from tenants, [`Stats`], [`Drain`], [`CountRunning`], [`StopAllRuns`].

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use actix::{dev::ToEnvelope, prelude::*};
use futures_util::future::{join_all, ready};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    bus::EventBus,
    caller::{Caller, TenantId},
    error::GatewayError,
    execution::StopReason,
    handle::{EngineContext, GatewayConfig},
    session::SessionSummary,
    tenant::{
        CancelTenantRuns, CountNearTimeout, EndSession, ForSession, GiveUp, ListSessions,
        RestoreSession, StartSession, TakeOver, TenantActor,
    },
};

pub(crate) struct RegistryActor {
    config: Arc<GatewayConfig>,
    engine: Arc<EngineContext>,
    bus: Addr<EventBus>,
    tenants: HashMap<TenantId, Addr<TenantActor>>,
    /// Sessions alive (or being created) on this node; the count `max_sessions` bounds.
    active_sessions: usize,
    /// Executions holding a node-wide slot (running, or starting) on this node; bounded by
    /// `max_concurrent_executions`. Runs waiting for their tenant's slot hold none.
    node_slots: HashSet<Uuid>,
    /// Every run accepted on this node and not yet ended, waiting ones included: what a
    /// drain waits for, or interrupts.
    runs: HashSet<Uuid>,
    totals: SessionTotals,
    draining: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct SessionTotals {
    created: u64,
    closed: u64,
    expired: u64,
    executions: u64,
}

impl RegistryActor {
    pub(crate) fn new(
        config: Arc<GatewayConfig>,
        engine: Arc<EngineContext>,
        bus: Addr<EventBus>,
    ) -> Self {
        Self {
            config,
            engine,
            bus,
            tenants: HashMap::new(),
            active_sessions: 0,
            node_slots: HashSet::new(),
            runs: HashSet::new(),
            totals: SessionTotals::default(),
            draining: false,
        }
    }

    fn tenant(&mut self, tenant_id: &TenantId, registry: Addr<Self>) -> Addr<TenantActor> {
        self.tenants
            .entry(tenant_id.clone())
            .or_insert_with(|| {
                TenantActor::new(
                    tenant_id.clone(),
                    self.config.clone(),
                    self.engine.clone(),
                    registry,
                    self.bus.clone(),
                )
                .start()
            })
            .clone()
    }
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.config.mailbox_capacity);
    }
}

/// Create a session for the caller, if the node has room for one.
#[derive(Message)]
#[rtype(result = "Result<SessionSummary, GatewayError>")]
pub(crate) struct CreateSession {
    pub caller: Caller,
    pub metadata: Value,
}

impl Handler<CreateSession> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<SessionSummary, GatewayError>>;

    fn handle(&mut self, msg: CreateSession, ctx: &mut Self::Context) -> Self::Result {
        if self.draining {
            return Box::pin(fut::ready(Err(GatewayError::Draining)));
        }
        if self.active_sessions >= self.config.max_sessions {
            return Box::pin(fut::ready(Err(GatewayError::MaxSessionsReached {
                limit: self.config.max_sessions,
                // Slots free up as idle sessions expire; that is checked this often.
                retry_after: self
                    .config
                    .expiry_sweep_interval()
                    .max(Duration::from_secs(1)),
            })));
        }
        // Reserve the slot now so concurrent creates cannot overshoot the limit.
        self.active_sessions += 1;
        let tenant = self.tenant(&msg.caller.tenant_id, ctx.address());
        let start = StartSession {
            caller: msg.caller,
            metadata: msg.metadata,
        };
        Box::pin(
            async move { tenant.send(start).await? }
                .into_actor(self)
                .map(|result, registry, _| {
                    match result {
                        Ok(_) => registry.totals.created += 1,
                        Err(_) => registry.active_sessions -= 1,
                    }
                    result
                }),
        )
    }
}

/// Bring back a stored session at start; it takes a slot whatever `max_sessions` says (it
/// existed before the restart).
impl Handler<RestoreSession> for RegistryActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: RestoreSession, ctx: &mut Self::Context) -> Self::Result {
        self.active_sessions += 1;
        let tenant = self.tenant(&msg.record.tenant_id, ctx.address());
        Box::pin(async move {
            // Only a stopped tenant fails to answer, and then the session has nowhere to go.
            let _ = tenant.send(msg).await;
        })
    }
}

/// A request the registry forwards to the caller's tenant actor.
pub(crate) trait TenantRequest:
    Message<Result = Result<Self::Reply, GatewayError>> + Send + 'static
{
    type Reply: Send + 'static;

    fn tenant_id(&self) -> &TenantId;

    /// The answer when the tenant has no actor (it never had a session on this node);
    /// `None`: start the tenant, which may find the session in the store.
    fn without_tenant() -> Option<Result<Self::Reply, GatewayError>>;
}

impl<M> TenantRequest for ForSession<M>
where
    M: Message + Send + 'static,
    M::Result: Send + 'static,
{
    type Reply = M::Result;

    fn tenant_id(&self) -> &TenantId {
        &self.caller.tenant_id
    }

    fn without_tenant() -> Option<Result<M::Result, GatewayError>> {
        None
    }
}

impl TenantRequest for EndSession {
    type Reply = ();

    fn tenant_id(&self) -> &TenantId {
        &self.caller.tenant_id
    }

    fn without_tenant() -> Option<Result<(), GatewayError>> {
        None
    }
}

impl TenantRequest for TakeOver {
    type Reply = bool;

    fn tenant_id(&self) -> &TenantId {
        &self.tenant_id
    }

    fn without_tenant() -> Option<Result<bool, GatewayError>> {
        None
    }
}

impl TenantRequest for GiveUp {
    type Reply = ();

    fn tenant_id(&self) -> &TenantId {
        &self.tenant_id
    }

    fn without_tenant() -> Option<Result<(), GatewayError>> {
        Some(Ok(()))
    }
}

impl TenantRequest for CancelTenantRuns {
    type Reply = usize;

    fn tenant_id(&self) -> &TenantId {
        &self.tenant_id
    }

    fn without_tenant() -> Option<Result<usize, GatewayError>> {
        Some(Ok(0))
    }
}

impl TenantRequest for ListSessions {
    type Reply = Vec<SessionSummary>;

    fn tenant_id(&self) -> &TenantId {
        &self.caller.tenant_id
    }

    fn without_tenant() -> Option<Result<Vec<SessionSummary>, GatewayError>> {
        Some(Ok(Vec::new()))
    }
}

impl<M> Handler<M> for RegistryActor
where
    M: TenantRequest,
    TenantActor: Handler<M>,
    <TenantActor as Actor>::Context: ToEnvelope<TenantActor, M>,
{
    type Result = ResponseFuture<Result<M::Reply, GatewayError>>;

    fn handle(&mut self, msg: M, ctx: &mut Self::Context) -> Self::Result {
        let tenant = match self.tenants.get(msg.tenant_id()).cloned() {
            Some(tenant) => tenant,
            None => match M::without_tenant() {
                Some(answer) => return Box::pin(ready(answer)),
                None => self.tenant(&msg.tenant_id().clone(), ctx.address()),
            },
        };
        Box::pin(async move { tenant.send(msg).await? })
    }
}

/// A tenant activated a stored session on this node (see `TenantActor::activate`): it
/// takes a slot whatever `max_sessions` says, as a restored one does.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SessionActivated;

impl Handler<SessionActivated> for RegistryActor {
    type Result = ();

    fn handle(&mut self, _: SessionActivated, _: &mut Self::Context) {
        self.active_sessions += 1;
    }
}

/// A tenant forgot one of its sessions; its slot is free again.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SessionEnded {
    pub how: SessionEnd,
}

/// How a session left this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    Closed,
    Expired,
    /// Another node took it over while this one was cut off; it lives on there.
    GivenUp,
}

impl Handler<SessionEnded> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, _: &mut Self::Context) {
        self.active_sessions = self.active_sessions.saturating_sub(1);
        match msg.how {
            SessionEnd::Closed => self.totals.closed += 1,
            SessionEnd::Expired => self.totals.expired += 1,
            SessionEnd::GivenUp => {}
        }
    }
}

/// Session counts for `/api/stats`, `/health` and `/metrics`.
#[derive(Message)]
#[rtype(result = "RegistrySnapshot")]
pub(crate) struct Stats;

#[derive(Debug, Clone, Copy, MessageResponse)]
pub(crate) struct RegistrySnapshot {
    pub active_sessions: usize,
    pub sessions_near_timeout: usize,
    pub tenants: usize,
    pub sessions_created: u64,
    pub sessions_closed: u64,
    pub sessions_expired: u64,
    pub active_executions: usize,
    pub executions_finished: u64,
    pub draining: bool,
}

impl Handler<Stats> for RegistryActor {
    type Result = ResponseActFuture<Self, RegistrySnapshot>;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> Self::Result {
        let tenants: Vec<_> = self.tenants.values().cloned().collect();
        Box::pin(
            async move {
                join_all(tenants.iter().map(|tenant| tenant.send(CountNearTimeout)))
                    .await
                    .into_iter()
                    .filter_map(Result::ok)
                    .sum::<usize>()
            }
            .into_actor(self)
            .map(|near_timeout, registry, _| RegistrySnapshot {
                active_sessions: registry.active_sessions,
                sessions_near_timeout: near_timeout,
                tenants: registry.tenants.len(),
                sessions_created: registry.totals.created,
                sessions_closed: registry.totals.closed,
                sessions_expired: registry.totals.expired,
                active_executions: registry.node_slots.len(),
                executions_finished: registry.totals.executions,
                draining: registry.draining,
            }),
        )
    }
}

/// Reserve a node-wide execution slot before a session starts a run.
#[derive(Message)]
#[rtype(result = "Result<(), GatewayError>")]
pub(crate) struct ReserveExecution {
    pub execution_id: Uuid,
}

impl Handler<ReserveExecution> for RegistryActor {
    type Result = Result<(), GatewayError>;

    fn handle(&mut self, msg: ReserveExecution, _: &mut Self::Context) -> Self::Result {
        if self.draining {
            return Err(GatewayError::Draining);
        }
        if !self.take_node_slot(msg.execution_id) {
            return Err(GatewayError::TooManyExecutions {
                limit: self.config.max_concurrent_executions,
                scope: "gateway node",
            });
        }
        self.runs.insert(msg.execution_id);
        Ok(())
    }
}

impl RegistryActor {
    /// Takes a node-wide slot for the run, if one is free; answers whether it holds one.
    fn take_node_slot(&mut self, execution_id: Uuid) -> bool {
        if self.node_slots.len() >= self.config.max_concurrent_executions {
            return self.node_slots.contains(&execution_id);
        }
        self.node_slots.insert(execution_id);
        true
    }
}

/// A run queued behind its tenant's `max_concurrent_executions` gives its node-wide slot and
/// its cluster-wide lease back while it waits (`take: false`), so it holds up no other
/// tenant's run here or elsewhere, and asks for both again once its tenant grants it a slot
/// (`take: true`; answers whether it holds both: an accepted run is not refused for
/// draining). With Redis away the node's own slot is all that can be checked, as at a start.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct NodeSlot {
    pub execution_id: Uuid,
    pub take: bool,
}

impl Handler<NodeSlot> for RegistryActor {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: NodeSlot, _: &mut Self::Context) -> Self::Result {
        let execution_id = msg.execution_id;
        if !msg.take {
            self.node_slots.remove(&execution_id);
            if let Some(broker) = &self.engine.broker {
                broker.end_run(execution_id);
            }
            return Box::pin(fut::ready(false));
        }
        if !self.take_node_slot(execution_id) {
            return Box::pin(fut::ready(false));
        }
        let Some(broker) = self.engine.broker.clone() else {
            return Box::pin(fut::ready(true));
        };
        let limit = self.config.max_concurrent_executions;
        Box::pin(broker.resume_run(execution_id, limit).into_actor(self).map(
            move |leased, actor, _| {
                let ended_meanwhile = !actor.node_slots.contains(&execution_id);
                match leased {
                    // The run ended while its lease was being taken: give that back too.
                    Ok(true) if ended_meanwhile => {
                        if let Some(broker) = &actor.engine.broker {
                            broker.end_run(execution_id);
                        }
                        false
                    }
                    Ok(true) | Err(_) => !ended_meanwhile,
                    // The cluster runs its limit: the run asks again later.
                    Ok(false) => {
                        actor.node_slots.remove(&execution_id);
                        false
                    }
                }
            },
        ))
    }
}

/// An execution ended (`ran`), or a reserved slot went unused: its node-wide slot (if it
/// held one) and its cluster-wide lease are free again.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ExecutionEnded {
    pub execution_id: Uuid,
    pub ran: bool,
}

impl Handler<ExecutionEnded> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: ExecutionEnded, _: &mut Self::Context) {
        self.node_slots.remove(&msg.execution_id);
        self.runs.remove(&msg.execution_id);
        if let Some(broker) = &self.engine.broker {
            broker.end_run(msg.execution_id);
        }
        self.totals.executions += u64::from(msg.ran);
    }
}

/// How many executions run, start or wait for their tenant's slot on this node; cheaper
/// than [`Stats`], for a drain to poll.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct CountRunning;

impl Handler<CountRunning> for RegistryActor {
    type Result = usize;

    fn handle(&mut self, _: CountRunning, _: &mut Self::Context) -> usize {
        self.runs.len()
    }
}

/// Stop every run on this node as `reason` says, tenant by tenant; replies how many were
/// still running (shutdown, past the drain deadline).
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct StopAllRuns {
    pub reason: StopReason,
}

impl Handler<StopAllRuns> for RegistryActor {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, msg: StopAllRuns, _: &mut Self::Context) -> Self::Result {
        let stops: Vec<_> = self
            .tenants
            .iter()
            .map(|(tenant_id, tenant)| {
                tenant.send(CancelTenantRuns {
                    tenant_id: tenant_id.clone(),
                    reason: msg.reason,
                })
            })
            .collect();
        Box::pin(async move {
            join_all(stops)
                .await
                .into_iter()
                .filter_map(|stopped| stopped.ok()?.ok())
                .sum()
        })
    }
}

/// Stop taking new sessions and executions (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain;

impl Handler<Drain> for RegistryActor {
    type Result = ();

    fn handle(&mut self, _: Drain, _: &mut Self::Context) {
        self.draining = true;
    }
}
