//! The run's slots: its node-wide `max_concurrent_executions` slot (the registry's) and, for
//! a tenant with its own limit, its tenant slot (the tenant actor's `run_slots`). A run of
//! such a tenant gives the node slot and the cluster lease the start reserved back while it
//! waits in its tenant's line, so waiting runs hold up no other tenant's, and takes both
//! again once granted.

use std::time::Duration;

use actix::prelude::*;

use super::{ExecutionActor, ExecutionStatus};
use crate::{
    registry::{ExecutionEnded, NodeSlot},
    run_slots::{AcquireRunSlot, ReleaseRunSlot, RunSlotGranted},
};

impl ExecutionActor {
    /// Gives back what the run held: its node-wide slot, and its tenant slot (or place in
    /// line).
    pub(super) fn end_slots(&self) {
        self.spec.gateway.do_send(ExecutionEnded {
            execution_id: self.spec.execution_id,
            ran: true,
        });
        if let Some(tenant) = &self.spec.run_slot {
            tenant.do_send(ReleaseRunSlot {
                execution_id: self.spec.execution_id,
            });
        }
    }
}

impl Actor for ExecutionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        match &self.spec.run_slot {
            // Stays `started` until its tenant has a slot for it, holding no node-wide slot
            // or cluster lease meanwhile (taken again when granted: `take_node_slot`).
            Some(tenant) => {
                self.spec.gateway.do_send(NodeSlot {
                    execution_id: self.spec.execution_id,
                    take: false,
                });
                tenant.do_send(AcquireRunSlot {
                    execution_id: self.spec.execution_id,
                    grant: ctx.address().recipient(),
                });
            }
            None => self.begin(ctx),
        }
    }
}

/// How long a run its tenant granted a slot waits before asking again for a node-wide slot
/// and cluster lease when the node (or cluster) runs `max_concurrent_executions` already.
const NODE_SLOT_RETRY: Duration = Duration::from_millis(100);

impl Handler<RunSlotGranted> for ExecutionActor {
    type Result = ();

    fn handle(&mut self, _: RunSlotGranted, ctx: &mut Self::Context) {
        self.take_node_slot(ctx);
    }
}

impl ExecutionActor {
    /// Runs once the node has a slot for it (asking again every `NODE_SLOT_RETRY` while the
    /// node is full). The registry keeps slots by run, so one taken as the run is cancelled
    /// is given back by its `ExecutionEnded`, which the registry hears after the take.
    fn take_node_slot(&mut self, ctx: &mut Context<Self>) {
        // A run cancelled while it waited has already given its place back.
        if self.status != ExecutionStatus::Started {
            return;
        }
        let take = self.spec.gateway.send(NodeSlot {
            execution_id: self.spec.execution_id,
            take: true,
        });
        ctx.spawn(take.into_actor(self).map(|taken, actor, ctx| {
            if actor.status != ExecutionStatus::Started {
                return;
            }
            if taken.unwrap_or(false) {
                actor.begin(ctx);
            } else {
                ctx.run_later(NODE_SLOT_RETRY, |actor, ctx| actor.take_node_slot(ctx));
            }
        }));
    }
}
