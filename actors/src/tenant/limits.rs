//! The tenant's own limits as its actor enforces them — `max_workflows` ([`CountWorkflow`]),
//! `max_concurrent_executions` ([`AcquireRunSlot`] / [`ReleaseRunSlot`], see `run_slots`),
//! `max_sessions` (checked by [`StartSession`](super::StartSession) through
//! [`TenantActor::session_limit`]) — and what is done to all of its runs at once
//! ([`CancelTenantRuns`], when it is deactivated). The limits are read from the shared
//! tenant table at each decision, so a change applies without a message.

use actix::prelude::*;
use futures_util::future::join_all;
use uuid::Uuid;

use super::TenantActor;
use crate::{
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
/// stays counted until its session ends).
#[derive(Message)]
#[rtype(result = "Result<(), GatewayError>")]
pub(crate) struct CountWorkflow {
    pub session_id: Uuid,
}

impl Handler<CountWorkflow> for TenantActor {
    type Result = Result<(), GatewayError>;

    fn handle(&mut self, msg: CountWorkflow, _: &mut Self::Context) -> Self::Result {
        if let Some(max) = self.engine.tenants.limits(&self.tenant_id).max_workflows
            && self.workflows as u64 >= max
        {
            return Err(GatewayError::TenantMaxWorkflows { max });
        }
        if let Some(entry) = self.sessions.get_mut(&msg.session_id) {
            entry.workflows += 1;
            self.workflows += 1;
        }
        Ok(())
    }
}

impl Handler<AcquireRunSlot> for TenantActor {
    type Result = ();

    fn handle(&mut self, msg: AcquireRunSlot, _: &mut Self::Context) {
        let limit = self.engine.tenants.limits(&self.tenant_id);
        self.run_slots.acquire(msg, limit.max_concurrent_executions);
    }
}

impl Handler<ReleaseRunSlot> for TenantActor {
    type Result = ();

    fn handle(&mut self, msg: ReleaseRunSlot, _: &mut Self::Context) {
        let limit = self.engine.tenants.limits(&self.tenant_id);
        self.run_slots
            .release(msg.execution_id, limit.max_concurrent_executions);
    }
}
