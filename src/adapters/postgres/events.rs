//! The event history, packed (schema V7, V12): a row of `event_pages` holds a run of one
//! session's events with consecutive `seq`s, as one batch of the writer brought them, so a
//! batch writes a row per session it touches instead of a row per event. A page keeps its
//! events' JSON texts joined by newlines, as one text (compact JSON has no raw newline);
//! everything else about an event is read back from its JSON. Pages in V7's layout (one
//! array per field, written before V12 or by a node of the previous version during a
//! rolling upgrade) are read through their payloads. This module packs a batch's
//! events into pages, and owns every read and delete of the history: a session's newest
//! events (restore, activating a session on another node) and retention.
//!
//! A page is cut where the session changes, where `seq` is not the previous one plus one, and
//! before its payloads pass [`PAGE_BYTES`]. The cut depends only on the batch, so a batch
//! retried after an unknown outcome makes the same pages, with the same keys, and the
//! insert's `ON CONFLICT DO NOTHING` retry (see `batch::Columns::write`) skips those written.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use kailash_actors::{
    TenantId,
    store::{EventRecord, StoreError},
};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{Db, executions::as_i64, store_error};

/// The payload bytes a page may hold: compressed (V7), a page this size stays inline in its
/// heap tuple, with no TOAST rows to write. A longer event gets a page of its own.
const PAGE_BYTES: usize = 6_000;

/// Pages fetched per round trip while reading a session's newest events backwards.
const PAGES_PER_READ: i64 = 64;

/// What separates a page's events (see the module docs).
const SEPARATOR: char = '\n';

/// A batch's events as pages, one entry per page in each column.
#[derive(Default)]
pub struct EventPages {
    tenant: Vec<String>,
    session: Vec<Uuid>,
    first_seq: Vec<i64>,
    last_seq: Vec<i64>,
    newest: Vec<DateTime<Utc>>,
    events: Vec<String>,
}

insert!(
    INSERT_PAGES,
    "INSERT INTO event_pages (tenant_id, session_id, first_seq, last_seq, published_at, events) \
    SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::int8[], $4::int8[], $5::timestamptz[], \
    $6::text[])"
);

impl EventPages {
    /// Packs `events` (in the batch's order, which is each session's `seq` order).
    pub fn of(mut events: Vec<&EventRecord>) -> Self {
        // Stable: each session's events keep their order.
        events.sort_by(|a, b| (&a.tenant_id, a.session_id).cmp(&(&b.tenant_id, b.session_id)));
        let mut pages = Self::default();
        let mut previous: Option<&EventRecord> = None;
        for event in events {
            let continues = previous.is_some_and(|p| {
                p.tenant_id == event.tenant_id
                    && p.session_id == event.session_id
                    && p.seq.checked_add(1) == Some(event.seq)
            });
            let fits = pages
                .events
                .last()
                .is_some_and(|page| page.len() + 1 + event.json.len() <= PAGE_BYTES);
            if continues && fits {
                pages.add(event);
            } else {
                pages.open_page(event);
            }
            previous = Some(event);
        }
        pages
    }

    fn open_page(&mut self, first: &EventRecord) {
        self.tenant.push(first.tenant_id.to_string());
        self.session.push(first.session_id);
        self.first_seq.push(as_i64(first.seq));
        self.last_seq.push(as_i64(first.seq));
        self.newest.push(first.published_at);
        self.events.push(String::from(&*first.json));
    }

    fn add(&mut self, event: &EventRecord) {
        let page = self.tenant.len() - 1;
        self.last_seq[page] = as_i64(event.seq);
        self.newest[page] = self.newest[page].max(event.published_at);
        let text = &mut self.events[page];
        text.push(SEPARATOR);
        text.push_str(&event.json);
    }

    pub fn is_empty(&self) -> bool {
        self.tenant.is_empty()
    }

    /// The insert (plain, or skipping pages already there) and its parameters.
    pub fn insert(&self, skip_existing: bool) -> (&'static str, Vec<&(dyn ToSql + Sync)>) {
        (
            INSERT_PAGES[usize::from(skip_existing)],
            vec![
                &self.tenant,
                &self.session,
                &self.first_seq,
                &self.last_seq,
                &self.newest,
                &self.events,
            ],
        )
    }
}

/// The newest `limit` events of a session's stream, oldest first: pages are read newest
/// first, a few at a time, until they hold `limit` events.
pub async fn recent(
    db: &Db,
    tenant: &TenantId,
    session_id: Uuid,
    limit: usize,
) -> Result<Vec<EventRecord>, StoreError> {
    let mut newest_first = Vec::new();
    let mut before = i64::MAX;
    while newest_first.len() < limit {
        let rows = db
            .query(
                "SELECT first_seq, COALESCE(events, array_to_string(payloads, E'\\n')) \
                 FROM event_pages \
                 WHERE tenant_id = $1 AND session_id = $2 AND first_seq < $3 \
                 ORDER BY first_seq DESC LIMIT $4",
                tenant,
                &[&session_id, &before, &PAGES_PER_READ],
            )
            .await?;
        for row in &rows {
            before = row.get(0);
            let mut page = unpack(tenant, session_id, row);
            page.reverse();
            newest_first.extend(page);
        }
        if rows.len() < usize::try_from(PAGES_PER_READ).unwrap_or(usize::MAX) {
            break;
        }
    }
    // Pages never overlap as the writer makes them; should two ever share a `seq`, the
    // stream still shows it once.
    let mut seen = HashSet::new();
    newest_first.retain(|event| seen.insert(event.seq));
    newest_first.truncate(limit);
    newest_first.reverse();
    Ok(newest_first)
}

/// A page's events, in `seq` order. Only event types this build knows can be replayed (the
/// names are the contract's); an event that does not decode is left out, and logged.
fn unpack(tenant: &TenantId, session_id: Uuid, row: &tokio_postgres::Row) -> Vec<EventRecord> {
    let events: &str = row.get(1);
    events
        .split(SEPARATOR)
        .filter_map(|json| match EventRecord::from_json(json) {
            Ok(event) if event.tenant_id == *tenant && event.session_id == session_id => {
                Some(event)
            }
            Ok(_) => {
                tracing::warn!(%session_id, "a stored event names another session; left out");
                None
            }
            Err(error) => {
                tracing::warn!(%session_id, %error, "a stored event does not decode; left out");
                None
            }
        })
        .collect()
}

/// Deletes the tenant's pages whose every event was published before `before`; answers how
/// many events went. A page that straddles the cutoff stays whole until its newest event is
/// old enough: retention keeps an event at most one page's span (one batch) longer.
pub async fn prune(
    tx: &Transaction<'_>,
    tenant: &str,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let statement = tx
        .prepare_cached(
            "WITH gone AS (DELETE FROM event_pages WHERE tenant_id = $1 AND published_at < $2 \
             RETURNING last_seq - first_seq + 1 AS events) \
             SELECT COALESCE(sum(events), 0)::int8 FROM gone",
        )
        .await
        .map_err(store_error)?;
    let row = tx
        .query_one(&statement, &[&tenant, &before])
        .await
        .map_err(store_error)?;
    Ok(row.get::<_, i64>(0).unsigned_abs())
}
