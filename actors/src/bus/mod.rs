//! The in-process event bus: the one place events are numbered, retained, counted and
//! fanned out.
//!
//! Owns, per session, the next `seq` and a bounded history ([`history`]), the subscribers
//! of this node (WebSocket connections, SSE streams, webhook dispatchers; [`fanout`]) and a
//! node-wide ring of the most recent events for `GET /api/events/recent`.
//!
//! Because one actor numbers, retains and fans out each event in one step, a subscriber that
//! registers with [`Subscribe`] and a resume point gets the retained backlog and then the live
//! stream with no event missing or repeated between the two.
//!
//! With a [`StoreWriter`], every session event is also handed to the store as it is numbered
//! (same order, same JSON text), and [`RestoreStream`] reloads a session's stream from the
//! store at start, so `seq` continues and `Last-Event-ID` resumes across restarts.
//!
//! Messages: [`Publish`] (fire and forget), [`Subscribe`], [`Refilter`], [`Unsubscribe`],
//! [`RecentEvents`], [`BusStats`], [`RestoreStream`]. Owned by the process (started by
//! [`Gateway::start`](crate::Gateway::start)); every actor that observes a fact holds its
//! address.

mod fanout;
mod history;
#[cfg(test)]
mod tests;

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;

use self::{
    fanout::Fanout,
    history::{MISSED, SessionStream, gap_event, shared_backlog, unknown_stream_backlog},
};
pub use self::{fanout::SubscriberId, history::Backlog};
use crate::{
    broker::{FromBroker, Outbound, SessionKey, SharedBroker},
    events::{Event, EventFilter, EventType, PublishedEvent},
    sharded::ShardedMap,
    store::{EventRecord, StoreWriter, Write},
    subscriber::SubscriberQueue,
};

/// How much the bus keeps.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Events kept per session stream.
    pub history_len: usize,
    /// How long events are retained, and an ended session's stream with them.
    pub retention: Duration,
    /// Size of the node-wide recent-events ring.
    pub recent_capacity: usize,
}

pub struct EventBus {
    config: BusConfig,
    streams: ShardedMap<SessionStream>,
    /// `seq` for events that belong to no session (system events).
    system_seq: u64,
    recent: VecDeque<Arc<PublishedEvent>>,
    fanout: Fanout,
    published_total: u64,
    queued_total: u64,
    /// Where session events are persisted; `None` in tests of the bus alone.
    writer: Option<StoreWriter>,
    /// The cluster's broker, which numbers session events and shares them with every node;
    /// `None` on a single node.
    broker: Option<SharedBroker>,
}

impl EventBus {
    pub fn new(config: BusConfig) -> Self {
        Self {
            recent: VecDeque::with_capacity(config.recent_capacity.min(4096)),
            config,
            streams: ShardedMap::new(),
            system_seq: 0,
            fanout: Fanout::default(),
            published_total: 0,
            queued_total: 0,
            writer: None,
            broker: None,
        }
    }

    /// Persists every session event through `writer`.
    pub fn persisting_to(mut self, writer: StoreWriter) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Numbers events through `broker`, which shares them with every node.
    pub fn brokered_by(mut self, broker: SharedBroker) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Numbers `event` on this node and fans it out (no broker, a system event, or the
    /// broker could not take it).
    fn publish_locally(&mut self, mut event: Event) {
        let counter = match event.session_id {
            Some(id) => {
                &mut self
                    .streams
                    .get_or_insert_with(id, SessionStream::default)
                    .next_seq
            }
            None => &mut self.system_seq,
        };
        *counter += 1;
        event.seq = *counter;
        let published = Arc::new(PublishedEvent::from_event(&event));
        let record = event.session_id.map(|session_id| EventRecord {
            tenant_id: event.tenant_id.clone(),
            session_id,
            seq: event.seq,
            event_id: event.id,
            event_type: event.event_type.as_str(),
            user_id: event.user_id.clone(),
            published_at: event.timestamp,
            json: published.json.clone(),
        });
        self.accept(published, record);
    }

    /// Takes an event the broker numbered. What this node has already seen of the session
    /// is skipped (so nothing is delivered twice); a jump in `seq` means events this node
    /// missed, which its clients hear of as `stream.gap` first.
    fn accept_numbered(&mut self, record: EventRecord, own: bool) {
        let stream = self
            .streams
            .get_or_insert_with(record.session_id, SessionStream::default);
        if record.seq <= stream.next_seq {
            return;
        }
        let missed = (stream.next_seq > 0 && record.seq > stream.next_seq + 1)
            .then_some(stream.next_seq + 1);
        stream.next_seq = record.seq;
        if let Some(from_seq) = missed {
            let gap = gap_event(
                record.tenant_id.clone(),
                Some(record.session_id),
                from_seq,
                Some(record.seq - 1),
                MISSED,
            );
            self.accept(gap, None);
        }
        let published = Arc::new(PublishedEvent {
            published_here: own,
            ..PublishedEvent::restored(&record)
        });
        if own
            && matches!(
                published.event_type,
                EventType::SessionClosed | EventType::SessionExpired
            )
            && let (Some(broker), Some(user_id)) = (&self.broker, &record.user_id)
        {
            broker.release(&SessionKey {
                tenant_id: record.tenant_id.clone(),
                user_id: user_id.clone(),
                session_id: record.session_id,
            });
        }
        self.accept(published, own.then_some(record));
    }

    /// Retains, persists (`record`, when this node owns the event) and fans out one
    /// numbered event.
    fn accept(&mut self, published: Arc<PublishedEvent>, record: Option<EventRecord>) {
        if let (Some(writer), Some(record)) = (&self.writer, record) {
            writer.write(Write::Event(record));
        }
        if let Some(stream) = published
            .session_id
            .and_then(|id| self.streams.get_mut(&id))
        {
            if matches!(
                published.event_type,
                EventType::SessionClosed | EventType::SessionExpired
            ) {
                stream.ended_at = Some(Instant::now());
            }
            stream.retain(
                published.clone(),
                self.config.history_len,
                self.config.retention,
            );
        }
        self.queued_total += self.fanout.deliver(&published) as u64;
        if self.recent.len() == self.config.recent_capacity {
            self.recent.pop_front();
        }
        if self.config.recent_capacity > 0 {
            self.recent.push_back(published);
        }
        self.published_total += 1;
    }

    /// Ages out old history, forgets ended streams past retention and subscribers whose
    /// reader went away.
    fn sweep(&mut self) {
        let retention = self.config.retention;
        let cutoff = Instant::now().checked_sub(retention);
        self.streams.retain(|_, stream| {
            stream.drop_older_than(retention);
            match (stream.ended_at, cutoff) {
                (Some(ended), Some(cutoff)) => ended > cutoff,
                _ => true,
            }
        });
        self.fanout.drop_closed();
    }
}

impl Actor for EventBus {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        let sweep_every =
            (self.config.retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        ctx.run_interval(sweep_every, |bus, _| bus.sweep());
    }
}

/// Number, retain and fan out one event. With a broker, a session event is numbered by the
/// broker and fanned out when it comes back ([`FromBroker`]), on every node alike.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub Event);

impl Handler<Publish> for EventBus {
    type Result = ();

    fn handle(&mut self, Publish(mut event): Publish, _: &mut Self::Context) {
        match (&self.broker, event.session_id) {
            (Some(broker), Some(session_id)) => {
                // The broker stamps the real `seq` into this placeholder.
                event.seq = 0;
                let json = PublishedEvent::from_event(&event).json;
                let floor = self.streams.get_mut(&session_id).map_or(0, |s| s.next_seq);
                broker.publish(Outbound { event, json, floor });
            }
            _ => self.publish_locally(event),
        }
    }
}

impl Handler<FromBroker> for EventBus {
    type Result = ();

    fn handle(&mut self, message: FromBroker, _: &mut Self::Context) {
        match message {
            FromBroker::Event { record, own } => self.accept_numbered(record, own),
            FromBroker::Unpublished(events) => {
                for outbound in events {
                    self.publish_locally(outbound.event);
                }
            }
        }
    }
}

/// Reloads a session's stream from stored events (oldest first) at start: its `seq`
/// continues after the newest, and its history is what a resuming client gets.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RestoreStream {
    pub session_id: uuid::Uuid,
    pub events: Vec<EventRecord>,
}

impl Handler<RestoreStream> for EventBus {
    type Result = ();

    fn handle(&mut self, msg: RestoreStream, _: &mut Self::Context) {
        let stream = self
            .streams
            .get_or_insert_with(msg.session_id, SessionStream::default);
        for record in msg.events {
            stream.next_seq = stream.next_seq.max(record.seq);
            stream.retain(
                Arc::new(PublishedEvent::restored(&record)),
                self.config.history_len,
                self.config.retention,
            );
        }
    }
}

/// Registers a subscriber: every event published from now on that `filter` lets through is
/// offered to `queue`. With `resume_after` (the last `seq` the client saw) and a session in
/// the filter, the reply carries what it missed, to be sent before anything from the queue.
#[derive(Message)]
#[rtype(result = "Subscription")]
pub struct Subscribe {
    pub filter: EventFilter,
    pub resume_after: Option<u64>,
    pub queue: SubscriberQueue,
}

/// A registered subscriber and its backlog.
#[derive(Debug, MessageResponse)]
pub struct Subscription {
    pub id: SubscriberId,
    pub backlog: Backlog,
}

impl Handler<Subscribe> for EventBus {
    type Result = ResponseActFuture<Self, Subscription>;

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) -> Self::Result {
        let resume = msg.resume_after.zip(msg.filter.session_id);
        let local = resume.map(|(last_seq, session)| {
            (
                last_seq,
                session,
                self.streams.get_mut(&session).map(|s| s.covers(last_seq)),
            )
        });
        let backlog = match (local, &self.broker) {
            // What this node missed may be in the broker's shared history: hold the live
            // events for this subscriber until that backlog is read.
            (Some((last_seq, session, None | Some(false))), Some(broker)) => {
                let id = self.fanout.add_held(msg.filter.clone(), msg.queue);
                let fetch = broker.events_after(session, last_seq);
                return Box::pin(fetch.into_actor(self).map(move |fetched, bus, _| {
                    let held = bus.fanout.release(id);
                    let backlog = shared_backlog(fetched, held, last_seq, &msg.filter);
                    Subscription { id, backlog }
                }));
            }
            (Some((last_seq, session, _)), _) => match self.streams.get_mut(&session) {
                Some(stream) => stream.backlog_after(last_seq, &msg.filter),
                None => unknown_stream_backlog(last_seq, &msg.filter),
            },
            (None, _) => Backlog::default(),
        };
        let id = self.fanout.add(msg.filter, msg.queue);
        Box::pin(fut::ready(Subscription { id, backlog }))
    }
}

/// Replaces a subscriber's filter (a WebSocket's `subscribe_events`). Answers false when
/// the subscriber is gone.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Refilter {
    pub id: SubscriberId,
    pub filter: EventFilter,
}

impl Handler<Refilter> for EventBus {
    type Result = bool;

    fn handle(&mut self, msg: Refilter, _: &mut Self::Context) -> bool {
        self.fanout.refilter(msg.id, msg.filter)
    }
}

/// Forgets a subscriber.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub SubscriberId);

impl Handler<Unsubscribe> for EventBus {
    type Result = ();

    fn handle(&mut self, Unsubscribe(id): Unsubscribe, _: &mut Self::Context) {
        self.fanout.remove(id);
    }
}

/// The newest `count` retained events matching `filter`, oldest first.
#[derive(Message)]
#[rtype(result = "Vec<Arc<PublishedEvent>>")]
pub struct RecentEvents {
    pub filter: EventFilter,
    pub count: usize,
}

impl Handler<RecentEvents> for EventBus {
    type Result = Vec<Arc<PublishedEvent>>;

    fn handle(&mut self, msg: RecentEvents, _: &mut Self::Context) -> Self::Result {
        let mut newest_first: Vec<_> = self
            .recent
            .iter()
            .rev()
            .filter(|event| msg.filter.matches(event))
            .take(msg.count)
            .cloned()
            .collect();
        newest_first.reverse();
        newest_first
    }
}

/// Counters for `/api/stats` and `/health`.
#[derive(Message)]
#[rtype(result = "BusSnapshot")]
pub struct BusStats;

#[derive(Debug, Clone, Copy, MessageResponse)]
pub struct BusSnapshot {
    pub events_emitted: u64,
    /// Events queued to subscribers (one per subscriber that received it).
    pub events_queued: u64,
    pub retained_streams: usize,
    pub subscribers: usize,
}

impl Handler<BusStats> for EventBus {
    type Result = BusSnapshot;

    fn handle(&mut self, _: BusStats, _: &mut Self::Context) -> BusSnapshot {
        BusSnapshot {
            events_emitted: self.published_total,
            events_queued: self.queued_total,
            retained_streams: self.streams.len(),
            subscribers: self.fanout.len(),
        }
    }
}
