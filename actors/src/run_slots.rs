//! A tenant's `max_concurrent_executions`: which of its runs hold a slot on this node and
//! which wait for one, first come first served. Owned by the [`TenantActor`]; an
//! [`ExecutionActor`] whose tenant has the limit asks for a slot as it starts
//! ([`AcquireRunSlot`]) and stays `started` — no node runs, no `workflow.started` — until it
//! is granted one ([`RunSlotGranted`]); it gives the slot (or its place in line) back when it
//! ends, however it ends ([`ReleaseRunSlot`]). So a tenant that starts more runs than its
//! limit waits behind its own limit while other tenants' runs go on.
//!
//! [`TenantActor`]: crate::tenant::TenantActor
//! [`ExecutionActor`]: crate::execution::ExecutionActor

use std::collections::{HashSet, VecDeque};

use actix::prelude::*;
use uuid::Uuid;

/// An execution asks for a slot; `grant` hears when it has one (at once if one is free).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AcquireRunSlot {
    pub execution_id: Uuid,
    pub grant: Recipient<RunSlotGranted>,
}

/// The execution may run now.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RunSlotGranted;

/// The execution ended: its slot, or its place in line, is free.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ReleaseRunSlot {
    pub execution_id: Uuid,
}

/// The running and the waiting runs of one tenant.
#[derive(Default)]
pub(crate) struct RunSlots {
    running: HashSet<Uuid>,
    waiting: VecDeque<(Uuid, Recipient<RunSlotGranted>)>,
}

impl RunSlots {
    /// Grants the slot now when fewer than `limit` run, else queues the request.
    pub fn acquire(&mut self, request: AcquireRunSlot, limit: Option<u64>) {
        self.waiting
            .push_back((request.execution_id, request.grant));
        self.grant_free(limit);
    }

    /// Frees the run's slot (or drops it from the line) and grants what became free.
    pub fn release(&mut self, execution_id: Uuid, limit: Option<u64>) {
        if !self.running.remove(&execution_id) {
            self.waiting.retain(|(id, _)| *id != execution_id);
        }
        self.grant_free(limit);
    }

    /// Grants slots in arrival order while any is free. The limit is read at each call,
    /// so a raised limit lets more in at the next acquire or release.
    fn grant_free(&mut self, limit: Option<u64>) {
        while limit.is_none_or(|max| (self.running.len() as u64) < max) {
            let Some((id, grant)) = self.waiting.pop_front() else {
                return;
            };
            self.running.insert(id);
            grant.do_send(RunSlotGranted);
        }
    }

    /// Runs waiting for a slot.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the grants it hears.
    struct Counter(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl Actor for Counter {
        type Context = Context<Self>;
    }

    impl Handler<RunSlotGranted> for Counter {
        type Result = ();

        fn handle(&mut self, _: RunSlotGranted, _: &mut Self::Context) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[actix::test]
    async fn runs_beyond_the_limit_wait_in_order_and_leaving_the_line_frees_nothing() {
        let granted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Counter(granted.clone()).start();
        let mut slots = RunSlots::default();
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            let grant = counter.clone().recipient();
            slots.acquire(
                AcquireRunSlot {
                    execution_id: *id,
                    grant,
                },
                Some(2),
            );
        }
        assert_eq!(slots.waiting(), 2);
        // The last in line gives up (cancelled while waiting): nobody else moves up.
        slots.release(ids[3], Some(2));
        assert_eq!(slots.waiting(), 1);
        // A running one ends: the next in line runs.
        slots.release(ids[0], Some(2));
        assert_eq!(slots.waiting(), 0);
        assert!(slots.running.contains(&ids[2]));
        // Without a limit everything runs.
        slots.release(ids[1], None);
        tokio::task::yield_now().await;
        actix::clock::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(granted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
