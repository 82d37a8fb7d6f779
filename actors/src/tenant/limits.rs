//! The tenant's own limits as its actor enforces them — `max_workflows` ([`CountWorkflow`]),
//! `max_concurrent_executions` ([`AcquireRunSlot`] / [`ReleaseRunSlot`], see `run_slots`),
//! `max_sessions` (checked by [`StartSession`](super::StartSession) through
//! [`TenantActor::session_limit`]) — and what is done to all of its runs at once
//! ([`CancelTenantRuns`], when it is deactivated). The limits are read from the shared
//! tenant table at each decision, so a change applies without a message. In a cluster the
//! counts are also kept in the broker (`Broker::claim`, `count_workflow`, `hold`), so they
//! hold across nodes; this node's own count is checked first, and decides alone while the
//! broker is unreachable.

use std::time::Duration;

use actix::prelude::*;
use futures_util::future::join_all;
use uuid::Uuid;

use super::TenantActor;
use crate::{
    broker::{SessionKey, TenantCount},
    caller::TenantId,
    error::GatewayError,
    execution::StopReason,
    run_slots::{AcquireRunSlot, ReleaseRunSlot},
    session::CancelRuns,
};

impl TenantActor {
    /// The tenant's `max_sessions` when this node's live sessions (and starts in flight)
    /// have reached it.
    pub(super) fn session_limit(&self) -> Option<u64> {
        let max = self.engine.tenants.limits(&self.tenant_id).max_sessions?;
        (self.sessions_per_owner.values().sum::<usize>() as u64 >= max).then_some(max)
    }
}

/// Stop every running execution of the tenant's sessions on this node as `reason` says (the
/// tenant was deactivated, or the node is shutting down); replies how many were stopped.
#[derive(Message)]
#[rtype(result = "Result<usize, GatewayError>")]
pub(crate) struct CancelTenantRuns {
    pub tenant_id: TenantId,
    pub reason: StopReason,
}

impl Handler<CancelTenantRuns> for TenantActor {
    type Result = ResponseFuture<Result<usize, GatewayError>>;

    fn handle(&mut self, msg: CancelTenantRuns, _: &mut Self::Context) -> Self::Result {
        let sessions: Vec<_> = self.sessions.values().map(|e| e.addr.clone()).collect();
        let reason = msg.reason;
        Box::pin(async move {
            let cancelled = join_all(sessions.iter().map(|s| s.send(CancelRuns { reason }))).await;
            Ok(cancelled.into_iter().filter_map(Result::ok).sum())
        })
    }
}

/// A session is about to add a workflow with a new id: counts it in the tenant's
/// `max_workflows`, or refuses it. Counted before the session stores it, so concurrent
/// additions in different sessions cannot overshoot (one whose store write then fails
/// stays counted until its session ends). In a cluster it is counted in Redis too, against
/// the tenant's workflows on every node; with Redis away, this node's count alone decides.
#[derive(Message)]
#[rtype(result = "Result<(), GatewayError>")]
pub(crate) struct CountWorkflow {
    pub session_id: Uuid,
}

impl Handler<CountWorkflow> for TenantActor {
    type Result = ResponseActFuture<Self, Result<(), GatewayError>>;

    fn handle(&mut self, msg: CountWorkflow, _: &mut Self::Context) -> Self::Result {
        let max = self.engine.tenants.limits(&self.tenant_id).max_workflows;
        if let Some(max) = max
            && self.workflows as u64 >= max
        {
            return Box::pin(fut::ready(Err(GatewayError::TenantMaxWorkflows { max })));
        }
        let Some(entry) = self.sessions.get_mut(&msg.session_id) else {
            return Box::pin(fut::ready(Ok(())));
        };
        // Counted here at once, so additions on this node cannot overshoot while Redis is
        // asked.
        entry.workflows += 1;
        self.workflows += 1;
        let Some(broker) = &self.engine.broker else {
            return Box::pin(fut::ready(Ok(())));
        };
        let session = SessionKey {
            tenant_id: self.tenant_id.clone(),
            user_id: entry.owner.clone(),
            session_id: msg.session_id,
        };
        let counted = broker.count_workflow(&session, max);
        Box::pin(counted.into_actor(self).map(move |counted, tenant, _| {
            match counted {
                Ok(true) => Ok(()),
                Ok(false) => {
                    // A session that ended meanwhile gave this workflow back with the rest.
                    if let Some(entry) = tenant.sessions.get_mut(&msg.session_id) {
                        entry.workflows -= 1;
                        tenant.workflows -= 1;
                    }
                    Err(GatewayError::TenantMaxWorkflows {
                        max: max.unwrap_or_default(),
                    })
                }
                Err(error) => {
                    tracing::warn!(%error, "could not count a workflow in Redis; counted on this node alone");
                    Ok(())
                }
            }
        }))
    }
}

/// How long the first in line waits before asking the cluster again for a slot when all
/// of the tenant's slots are held (on any node).
const RUN_SLOT_RETRY: Duration = Duration::from_millis(250);

impl TenantActor {
    /// Grants the run slots that are free: on this node alone, or — in a cluster, for a
    /// tenant with a limit — each once Redis holds the run's lease in the tenant's
    /// cluster-wide count. Redis away: this node's count alone decides.
    fn grant_run_slots(&mut self, ctx: &mut Context<Self>) {
        let limit = self
            .engine
            .tenants
            .limits(&self.tenant_id)
            .max_concurrent_executions;
        let (Some(broker), Some(max)) = (self.engine.broker.clone(), limit) else {
            return self.run_slots.grant_free(limit);
        };
        if self.run_slots.asking {
            return;
        }
        let Some(execution_id) = self.run_slots.next(limit) else {
            return;
        };
        self.run_slots.asking = true;
        let held = broker.hold(TenantCount::Runs, &self.tenant_id, execution_id, max);
        ctx.spawn(held.into_actor(self).map(move |held, tenant, ctx| {
            match held {
                Ok(false) => {
                    ctx.run_later(RUN_SLOT_RETRY, |tenant, ctx| {
                        tenant.run_slots.asking = false;
                        tenant.grant_run_slots(ctx);
                    });
                    return;
                }
                Ok(true) => {}
                Err(error) => {
                    tracing::warn!(%error, "could not count a run in Redis; counted on this node alone");
                }
            }
            tenant.run_slots.asking = false;
            if !tenant.run_slots.grant(execution_id) {
                // Cancelled while Redis was asked.
                broker.let_go(TenantCount::Runs, &tenant.tenant_id, execution_id);
            }
            tenant.grant_run_slots(ctx);
        }));
    }
}

impl Handler<AcquireRunSlot> for TenantActor {
    type Result = ();

    fn handle(&mut self, msg: AcquireRunSlot, ctx: &mut Self::Context) {
        self.run_slots.enqueue(msg);
        self.grant_run_slots(ctx);
    }
}

impl Handler<ReleaseRunSlot> for TenantActor {
    type Result = ();

    fn handle(&mut self, msg: ReleaseRunSlot, ctx: &mut Self::Context) {
        if self.run_slots.remove(msg.execution_id)
            && let Some(broker) = &self.engine.broker
        {
            broker.let_go(TenantCount::Runs, &self.tenant_id, msg.execution_id);
        }
        self.grant_run_slots(ctx);
    }
}
