//! The in-process event bus: the one place events are numbered, retained and counted.
//!
//! Owns, per session, the next `seq` and a bounded history (the last `history_len` events,
//! kept for `retention` after the session ends so a reconnecting client can resume), plus a
//! node-wide ring of the most recent events for `GET /api/events/recent`.
//!
//! Messages: [`Publish`] (fire and forget), [`RecentEvents`], [`BusStats`].
//! Owned by the process (started by [`Gateway::start`](crate::Gateway::start)); every actor
//! that observes a fact holds its address.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::prelude::*;

use crate::{
    events::{Event, EventFilter, EventType, PublishedEvent},
    sharded::ShardedMap,
};

/// How much the bus keeps.
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Events kept per session stream.
    pub history_len: usize,
    /// How long an ended session's stream is kept for late resumes.
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
    published_total: u64,
}

#[derive(Default)]
struct SessionStream {
    next_seq: u64,
    history: VecDeque<Arc<PublishedEvent>>,
    ended_at: Option<Instant>,
}

impl EventBus {
    pub fn new(config: BusConfig) -> Self {
        Self {
            recent: VecDeque::with_capacity(config.recent_capacity.min(4096)),
            config,
            streams: ShardedMap::new(),
            system_seq: 0,
            published_total: 0,
        }
    }

    fn next_seq(&mut self, event: &Event) -> u64 {
        let counter = match event.session_id {
            Some(id) => {
                let stream = self.streams.get_or_insert_with(id, SessionStream::default);
                if matches!(
                    event.event_type,
                    EventType::SessionClosed | EventType::SessionExpired
                ) {
                    stream.ended_at = Some(Instant::now());
                }
                &mut stream.next_seq
            }
            None => &mut self.system_seq,
        };
        *counter += 1;
        *counter
    }

    fn drop_expired_streams(&mut self) {
        let Some(cutoff) = Instant::now().checked_sub(self.config.retention) else {
            return;
        };
        self.streams
            .retain(|_, stream| stream.ended_at.is_none_or(|at| at > cutoff));
    }
}

impl Actor for EventBus {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        let sweep_every =
            (self.config.retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        ctx.run_interval(sweep_every, |bus, _| bus.drop_expired_streams());
    }
}

/// Number, retain and fan out one event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub Event);

impl Handler<Publish> for EventBus {
    type Result = ();

    fn handle(&mut self, Publish(mut event): Publish, _: &mut Self::Context) {
        event.seq = self.next_seq(&event);
        let published = Arc::new(PublishedEvent::from_event(&event));
        if let Some(stream) = event.session_id.and_then(|id| self.streams.get_mut(&id)) {
            if stream.history.len() == self.config.history_len {
                stream.history.pop_front();
            }
            if self.config.history_len > 0 {
                stream.history.push_back(published.clone());
            }
        }
        if self.recent.len() == self.config.recent_capacity {
            self.recent.pop_front();
        }
        if self.config.recent_capacity > 0 {
            self.recent.push_back(published);
        }
        self.published_total += 1;
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
    pub retained_streams: usize,
}

impl Handler<BusStats> for EventBus {
    type Result = BusSnapshot;

    fn handle(&mut self, _: BusStats, _: &mut Self::Context) -> BusSnapshot {
        BusSnapshot {
            events_emitted: self.published_total,
            retained_streams: self.streams.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::Caller;

    fn bus(history_len: usize, recent_capacity: usize) -> Addr<EventBus> {
        EventBus::new(BusConfig {
            history_len,
            retention: Duration::from_secs(60),
            recent_capacity,
        })
        .start()
    }

    fn session_event(session: Uuid, user: &str) -> Event {
        Event::new(EventType::SessionCreated, "test", "t".into()).in_session(session, user.into())
    }

    #[actix_rt::test]
    async fn seq_counts_per_session_and_recent_is_bounded() {
        let bus = bus(10, 3);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for session in [a, a, b, a] {
            bus.send(Publish(session_event(session, "u")))
                .await
                .unwrap();
        }
        let all = Caller::open("t", "u");
        let recent = bus
            .send(RecentEvents {
                filter: EventFilter::visible_to(&all),
                count: 10,
            })
            .await
            .unwrap();
        let seqs: Vec<_> = recent
            .iter()
            .map(|e| (e.session_id.unwrap(), e.seq))
            .collect();
        assert_eq!(
            seqs,
            vec![(a, 2), (b, 1), (a, 3)],
            "ring keeps the newest 3, oldest first"
        );
        assert_eq!(bus.send(BusStats).await.unwrap().events_emitted, 4);
    }

    #[actix_rt::test]
    async fn recent_respects_the_filter_and_count() {
        let bus = bus(10, 100);
        let session = Uuid::new_v4();
        for user in ["alice", "bob", "alice", "alice"] {
            bus.do_send(Publish(session_event(session, user)));
        }
        let alice = EventFilter::visible_to(&Caller::authenticated("t", "alice"));
        let recent = bus
            .send(RecentEvents {
                filter: alice,
                count: 2,
            })
            .await
            .unwrap();
        assert_eq!(recent.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    }
}
