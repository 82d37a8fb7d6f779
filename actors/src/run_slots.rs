//! A tenant's `max_concurrent_executions`: which of its runs hold a slot on this node and
//! which wait for one, first come first served. Owned by the [`TenantActor`]; an
//! [`ExecutionActor`] whose tenant has the limit asks for a slot as it starts
//! ([`AcquireRunSlot`]) and stays `started` — no node runs, no `workflow.started` — until it
//! is granted one ([`RunSlotGranted`]); it gives the slot (or its place in line) back when it
//! ends, however it ends ([`ReleaseRunSlot`]). So a tenant that starts more runs than its
//! limit waits behind its own limit while other tenants' runs go on.
//!
//! In a cluster the limit holds across nodes: before the first in line is granted a slot
//! here, the tenant actor has Redis hold a lease for it in the tenant's cluster-wide count
//! (`Broker::hold`); while the cluster's slots are full, it asks again every
//! `RUN_SLOT_RETRY`, so a slot freed on any node is taken within that pause.
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
    /// Set while the cluster is asked for the first in line's slot (or is to be asked
    /// again), so one request is out at a time and the line keeps its order.
    pub asking: bool,
}

impl RunSlots {
    /// Puts a request at the end of the line.
    pub fn enqueue(&mut self, request: AcquireRunSlot) {
        self.waiting
            .push_back((request.execution_id, request.grant));
    }

    /// Frees the run's slot or drops it from the line; answers whether it held a slot.
    pub fn remove(&mut self, execution_id: Uuid) -> bool {
        if self.running.remove(&execution_id) {
            return true;
        }
        self.waiting.retain(|(id, _)| *id != execution_id);
        false
    }

    /// The first in line, when fewer than `limit` of the tenant's runs hold a slot here.
    /// The limit is read at each call, so a raised limit lets more in at the next call.
    pub fn next(&self, limit: Option<u64>) -> Option<Uuid> {
        let free = limit.is_none_or(|max| (self.running.len() as u64) < max);
        free.then(|| self.waiting.front().map(|(id, _)| *id))
            .flatten()
    }

    /// Grants the slot to `execution_id` if it is still first in line (it may have been
    /// cancelled while the cluster was asked); answers whether it was granted.
    pub fn grant(&mut self, execution_id: Uuid) -> bool {
        if self
            .waiting
            .front()
            .is_none_or(|(id, _)| *id != execution_id)
        {
            return false;
        }
        let (id, grant) = self.waiting.pop_front().expect("the first in line");
        self.running.insert(id);
        grant.do_send(RunSlotGranted);
        true
    }

    /// Grants slots in arrival order while any is free on this node.
    pub fn grant_free(&mut self, limit: Option<u64>) {
        while let Some(execution_id) = self.next(limit) {
            self.grant(execution_id);
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
            slots.enqueue(AcquireRunSlot {
                execution_id: *id,
                grant,
            });
            slots.grant_free(Some(2));
        }
        assert_eq!(slots.waiting(), 2);
        // The last in line gives up (cancelled while waiting): nobody else moves up.
        assert!(!slots.remove(ids[3]));
        slots.grant_free(Some(2));
        assert_eq!(slots.waiting(), 1);
        // A running one ends: the next in line runs.
        assert!(slots.remove(ids[0]));
        slots.grant_free(Some(2));
        assert_eq!(slots.waiting(), 0);
        assert!(slots.running.contains(&ids[2]));
        // Without a limit everything runs.
        slots.remove(ids[1]);
        slots.grant_free(None);
        tokio::task::yield_now().await;
        actix::clock::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(granted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
