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
    caller::TenantId,
    events::{Event, EventFilter, EventType, PublishedEvent},
};

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
            )
        }),
        events: Vec::new(),
    }
}

/// The `stream.gap` notice. Its `seq` is the last missed one (or the client's own when the
/// end is unknown), so a client that resumes from it does not hear of the same gap twice.
fn gap_event(
    tenant_id: TenantId,
    session_id: Option<Uuid>,
    from_seq: u64,
    to_seq: Option<u64>,
) -> Arc<PublishedEvent> {
    let mut event = Event::new(EventType::StreamGap, "event_bus", tenant_id);
    event.session_id = session_id;
    event.seq = to_seq.unwrap_or(from_seq - 1);
    event.metadata.insert("from_seq".into(), json!(from_seq));
    event.metadata.insert("to_seq".into(), json!(to_seq));
    event.metadata.insert(
        "reason".into(),
        json!("events after the client's last one are no longer retained"),
    );
    Arc::new(PublishedEvent::from_event(&event))
}
