//! Each session's event stream: its next `seq` and its retained history, which is what a
//! reconnecting client resumes from (`Last-Event-ID`).
//!
//! History is bounded twice: at most `history_len` events, none older than `retention`.
//! The stream itself outlives its session by `retention`, so a client that reconnects just
//! after a session closed still gets the closing events.

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;
use uuid::Uuid;

use crate::{
    broker::BrokerError,
    caller::TenantId,
    events::{Event, EventFilter, EventType, PublishedEvent},
    store::EventRecord,
};

/// Why a resuming client missed events it can no longer get.
pub(super) const NOT_RETAINED: &str = "events after the client's last one are no longer retained";

#[derive(Default)]
pub(super) struct SessionStream {
    pub next_seq: u64,
    history: VecDeque<Arc<PublishedEvent>>,
    pub ended_at: Option<Instant>,
}

/// What a resuming subscriber gets before the live stream.
#[derive(Debug, Default)]
pub struct Backlog {
    /// `stream.gap`, first, when some of what the client missed is no longer retained.
    pub gap: Option<Arc<PublishedEvent>>,
    /// The retained events after the client's last one that its filter lets through.
    pub events: Vec<Arc<PublishedEvent>>,
}

impl SessionStream {
    /// Appends `event`, dropping what falls outside the bounds.
    pub fn retain(&mut self, event: Arc<PublishedEvent>, history_len: usize, retention: Duration) {
        if history_len == 0 {
            return;
        }
        if self.history.len() == history_len {
            self.history.pop_front();
        }
        self.history.push_back(event);
        self.drop_older_than(retention);
    }

    pub fn drop_older_than(&mut self, retention: Duration) {
        let Some(cutoff) = Instant::now().checked_sub(retention) else {
            return;
        };
        while self
            .history
            .front()
            .is_some_and(|oldest| oldest.published_at < cutoff)
        {
            self.history.pop_front();
        }
    }

    /// Whether this node's history holds everything after `last_seq`: it was retained here
    /// and no `stream.gap` (events this node missed) lies in it.
    pub fn covers(&self, last_seq: u64) -> bool {
        if last_seq >= self.next_seq {
            return true;
        }
        self.history.front().is_some_and(|e| e.seq <= last_seq + 1)
            && !self
                .history
                .iter()
                .any(|e| e.seq > last_seq && e.event_type == EventType::StreamGap)
    }

    /// Everything after `last_seq` that `filter` lets through, and a gap notice when events
    /// after `last_seq` are no longer retained.
    pub fn backlog_after(&self, last_seq: u64, filter: &EventFilter) -> Backlog {
        let newest = self.next_seq;
        let first_retained = self.history.front().map_or(newest + 1, |e| e.seq);
        let gap = (last_seq < newest && first_retained > last_seq + 1).then(|| {
            gap_event(
                filter.tenant_id.clone(),
                filter.session_id,
                last_seq + 1,
                Some(first_retained - 1),
                NOT_RETAINED,
            )
        });
        let events = self
            .history
            .iter()
            .filter(|e| e.seq > last_seq && filter.matches(e))
            .cloned()
            .collect();
        Backlog { gap, events }
    }
}

/// A resume for a stream this bus does not hold at all: everything after `last_seq` is lost
/// (or the session is unknown here), so the client hears of a gap with no known end.
pub(super) fn unknown_stream_backlog(last_seq: u64, filter: &EventFilter) -> Backlog {
    Backlog {
        gap: (last_seq > 0).then(|| {
            gap_event(
                filter.tenant_id.clone(),
                filter.session_id,
                last_seq + 1,
                None,
                NOT_RETAINED,
            )
        }),
        events: Vec::new(),
    }
}

/// The `stream.gap` notice. Its `seq` is the last missed one (or the client's own when the
/// end is unknown), so a client that resumes from it does not hear of the same gap twice.
pub(super) fn gap_event(
    tenant_id: TenantId,
    session_id: Option<Uuid>,
    from_seq: u64,
    to_seq: Option<u64>,
    reason: &'static str,
) -> Arc<PublishedEvent> {
    let mut event = Event::new(EventType::StreamGap, "event_bus", tenant_id);
    event.session_id = session_id;
    event.seq = to_seq.unwrap_or(from_seq - 1);
    event.metadata.insert("from_seq".into(), json!(from_seq));
    event.metadata.insert("to_seq".into(), json!(to_seq));
    event.metadata.insert("reason".into(), json!(reason));
    Arc::new(PublishedEvent::from_event(&event))
}

/// Why a node's clients missed events: the broker numbered them while this node was not
/// hearing from it.
pub(super) const MISSED: &str = "events published while this node was cut off from the broker";

/// Why a resume could not be served: the broker's shared history could not be read.
const UNREADABLE: &str = "the shared event history could not be read";

/// The backlog of a subscriber whose resume this node could not serve from its own
/// history: the broker's shared history after `last_seq` (`fetched`), then what arrived live
/// while it was read (`held`, without what `fetched` already has), with a gap notice first
/// when the oldest event either holds is not the next one.
pub(super) fn shared_backlog(
    fetched: Result<Vec<EventRecord>, BrokerError>,
    held: Vec<Arc<PublishedEvent>>,
    last_seq: u64,
    filter: &EventFilter,
) -> Backlog {
    let (fetched, reason) = match fetched {
        Ok(records) => (records, NOT_RETAINED),
        Err(_) => (Vec::new(), UNREADABLE),
    };
    let newest_fetched = fetched.last().map_or(last_seq, |record| record.seq);
    let first = fetched
        .first()
        .map(|record| record.seq)
        .or_else(|| held.first().map(|event| event.seq));
    let gap = match first {
        Some(first) if first > last_seq + 1 => Some(gap_event(
            filter.tenant_id.clone(),
            filter.session_id,
            last_seq + 1,
            Some(first - 1),
            reason,
        )),
        None if reason == UNREADABLE && last_seq > 0 => Some(gap_event(
            filter.tenant_id.clone(),
            filter.session_id,
            last_seq + 1,
            None,
            reason,
        )),
        _ => None,
    };
    let events = fetched
        .iter()
        .filter(|record| record.seq > last_seq)
        .map(|record| Arc::new(PublishedEvent::restored(record)))
        .filter(|event| filter.matches(event))
        .chain(held.into_iter().filter(|event| event.seq > newest_fetched))
        .collect();
    Backlog { gap, events }
}
