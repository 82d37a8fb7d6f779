//! Who receives an event: the bus's subscriber index.
//!
//! Subscribers are indexed by tenant, then by the session they follow (or "every session of
//! the tenant"), so publishing touches only the subscribers that could possibly match rather
//! than every connection on the node. Each candidate's full filter (owner, event types) is
//! then checked, and the event is offered to its queue without waiting.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use uuid::Uuid;

use crate::{
    caller::TenantId,
    events::{EventFilter, PublishedEvent},
    subscriber::{Delivery, Offered, SubscriberQueue},
};

/// A subscriber's id, unique within this bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriberId(u64);

struct Subscriber {
    filter: EventFilter,
    queue: SubscriberQueue,
    /// Events held back while the subscriber's resume backlog is fetched from the broker:
    /// they go out after the backlog, so nothing overtakes or repeats it.
    held: Option<Vec<Arc<PublishedEvent>>>,
}

#[derive(Default)]
struct TenantIndex {
    by_session: HashMap<Uuid, HashSet<SubscriberId>>,
    /// Subscribers of every session of the tenant.
    every_session: HashSet<SubscriberId>,
}

impl TenantIndex {
    fn slot(&mut self, session_id: Option<Uuid>) -> &mut HashSet<SubscriberId> {
        match session_id {
            Some(id) => self.by_session.entry(id).or_default(),
            None => &mut self.every_session,
        }
    }

    fn remove(&mut self, id: SubscriberId, session_id: Option<Uuid>) {
        match session_id {
            Some(session) => {
                if let Some(set) = self.by_session.get_mut(&session) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.by_session.remove(&session);
                    }
                }
            }
            None => {
                self.every_session.remove(&id);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.by_session.is_empty() && self.every_session.is_empty()
    }
}

/// The subscribers of one bus.
#[derive(Default)]
pub(super) struct Fanout {
    next_id: u64,
    subscribers: HashMap<SubscriberId, Subscriber>,
    tenants: HashMap<TenantId, TenantIndex>,
    /// Scratch list reused by [`Fanout::deliver`] so publishing does not allocate.
    gone: Vec<SubscriberId>,
}

impl Fanout {
    pub fn add(&mut self, filter: EventFilter, queue: SubscriberQueue) -> SubscriberId {
        self.next_id += 1;
        let id = SubscriberId(self.next_id);
        self.index(id, &filter);
        self.subscribers.insert(
            id,
            Subscriber {
                filter,
                queue,
                held: None,
            },
        );
        id
    }

    /// Like [`Fanout::add`], but what the subscriber matches is held until
    /// [`Fanout::release`].
    pub fn add_held(&mut self, filter: EventFilter, queue: SubscriberQueue) -> SubscriberId {
        let id = self.add(filter, queue);
        if let Some(subscriber) = self.subscribers.get_mut(&id) {
            subscriber.held = Some(Vec::new());
        }
        id
    }

    /// Stops holding a subscriber's events and answers what was held (empty when it is
    /// gone).
    pub fn release(&mut self, id: SubscriberId) -> Vec<Arc<PublishedEvent>> {
        self.subscribers
            .get_mut(&id)
            .and_then(|subscriber| subscriber.held.take())
            .unwrap_or_default()
    }

    /// Replaces a subscriber's filter; false when it is no longer subscribed.
    pub fn refilter(&mut self, id: SubscriberId, filter: EventFilter) -> bool {
        let Some(old) = self.subscribers.get(&id).map(|s| s.filter.clone()) else {
            return false;
        };
        self.unindex(id, &old);
        self.index(id, &filter);
        if let Some(subscriber) = self.subscribers.get_mut(&id) {
            subscriber.filter = filter;
        }
        true
    }

    pub fn remove(&mut self, id: SubscriberId) {
        if let Some(subscriber) = self.subscribers.remove(&id) {
            self.unindex(id, &subscriber.filter);
        }
    }

    pub fn len(&self) -> usize {
        self.subscribers.len()
    }

    /// Offers `event` to every subscriber whose filter lets it through; forgets those that
    /// are gone. Returns how many queued it.
    pub fn deliver(&mut self, event: &Arc<PublishedEvent>) -> usize {
        let Some(index) = self.tenants.get(&event.tenant_id) else {
            return 0;
        };
        let session_subscribers = event
            .session_id
            .and_then(|session| index.by_session.get(&session));
        let candidates = index
            .every_session
            .iter()
            .chain(session_subscribers.into_iter().flatten());
        let mut queued = 0;
        for id in candidates {
            let Some(subscriber) = self.subscribers.get_mut(id) else {
                continue;
            };
            if !subscriber.filter.matches(event) {
                continue;
            }
            if let Some(held) = &mut subscriber.held {
                held.push(event.clone());
                continue;
            }
            match subscriber.queue.offer(Delivery::Event(event.clone())) {
                Offered::Queued => queued += 1,
                Offered::Dropped => {}
                Offered::Gone => self.gone.push(*id),
            }
        }
        let mut gone = std::mem::take(&mut self.gone);
        for id in gone.drain(..) {
            self.remove(id);
        }
        self.gone = gone;
        queued
    }

    /// Forgets subscribers whose reader has gone away without unsubscribing.
    pub fn drop_closed(&mut self) {
        let closed: Vec<_> = self
            .subscribers
            .iter()
            .filter(|(_, s)| s.queue.is_closed())
            .map(|(id, _)| *id)
            .collect();
        for id in closed {
            self.remove(id);
        }
    }

    fn index(&mut self, id: SubscriberId, filter: &EventFilter) {
        self.tenants
            .entry(filter.tenant_id.clone())
            .or_default()
            .slot(filter.session_id)
            .insert(id);
    }

    fn unindex(&mut self, id: SubscriberId, filter: &EventFilter) {
        if let Some(index) = self.tenants.get_mut(&filter.tenant_id) {
            index.remove(id, filter.session_id);
            if index.is_empty() {
                self.tenants.remove(&filter.tenant_id);
            }
        }
    }
}
