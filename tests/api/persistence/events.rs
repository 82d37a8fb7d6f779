//! The packed event history (schemas V7, V12) through the `Store` port: pages cut per session,
//! at `seq` gaps and by size; every event back byte for byte and in order; a retried batch
//! that doubles nothing; reads across page boundaries; retention by whole pages; and the
//! history of a V5 database moved into pages by the migration.

use chrono::{DateTime, Duration, Utc};
use kailash_actors::store::{EventRecord, Store, Write};
use kailash_gateway::{app::connect, config::Settings};
use uuid::Uuid;

use serde_json::json;

use super::{
    PG_FAULT, apply_migrations, event_record, fresh_database, migrated_store, migrated_store_at,
};

/// An event of `session` whose JSON text is `len` bytes or more, with characters JSON quotes
/// and a newline in a string (compact JSON writes it `\n`: pages join events by newlines),
/// so byte-for-byte means something.
fn event(tenant: &str, session: Uuid, seq: u64, at: DateTime<Utc>, len: usize) -> EventRecord {
    let user = (!seq.is_multiple_of(3)).then_some("alice");
    let extra =
        json!({"text": "a \"quoted\", {braced} \\ line\nand the next", "pad": "é".repeat(len / 2)});
    event_record(tenant, session, seq, user, at, extra)
}

/// Now, to the microsecond (what PostgreSQL keeps), so stored events compare equal.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

async fn rows(url: &str, sql: &str) -> i64 {
    super::connect(url)
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[actix_web::test]
async fn packed_events_come_back_in_order_byte_for_byte_and_a_retry_doubles_nothing() {
    let _server_up = PG_FAULT.read().await;
    let (url, store) = migrated_store_at().await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let now = now();
    // Two sessions interleaved; session A has a gap (seq 11 never persisted here) and
    // events big enough that a batch needs several pages.
    let a_events: Vec<_> = (1..=10)
        .chain(12..=40)
        .map(|seq| event("t", a, seq, now, 700))
        .collect();
    let b_events: Vec<_> = (1..=5).map(|seq| event("t", b, seq, now, 10)).collect();
    let mut batch: Vec<Write> = Vec::new();
    for (i, e) in a_events.iter().enumerate() {
        batch.push(Write::Event(e.clone()));
        if let Some(b) = b_events.get(i) {
            batch.push(Write::Event(b.clone()));
        }
    }
    store.write_batch(&batch).await.unwrap();
    // Retried after an unknown outcome: the same pages, nothing doubled.
    store.write_batch(&batch).await.unwrap();

    let pages = rows(&url, "SELECT count(*) FROM event_pages").await;
    assert!(
        (4..20).contains(&pages),
        "39 + 5 events packed into a few pages, cut at the gap and by size: {pages}"
    );
    assert_eq!(rows(&url, "SELECT count(*) FROM events").await, 44);

    assert_eq!(store.recent_events("t", a, 1000).await.unwrap(), a_events);
    assert_eq!(store.recent_events("t", b, 1000).await.unwrap(), b_events);
    assert!(
        store
            .recent_events("other", a, 1000)
            .await
            .unwrap()
            .is_empty()
    );
    // The newest few, across a page boundary (no page holds exactly the last 13).
    assert_eq!(
        store.recent_events("t", a, 13).await.unwrap(),
        a_events[a_events.len() - 13..]
    );
    assert!(store.recent_events("t", a, 0).await.unwrap().is_empty());

    // A later batch continues the stream in a new page; reads see one stream.
    let later = event("t", a, 41, now, 10);
    store
        .write_batch(&[Write::Event(later.clone())])
        .await
        .unwrap();
    let newest = store.recent_events("t", a, 2).await.unwrap();
    assert_eq!(newest, [a_events.last().unwrap().clone(), later]);
}

#[actix_web::test]
async fn a_stored_event_that_does_not_decode_or_names_another_session_is_left_out() {
    let _server_up = PG_FAULT.read().await;
    let (url, store) = migrated_store_at().await;
    let (session, other) = (Uuid::new_v4(), Uuid::new_v4());
    let now = now();
    let first = event("t", session, 1, now, 10);
    let foreign = event("t", other, 3, now, 10);
    let last = event("t", session, 4, now, 10);
    // A page damaged by hand: a text that is no event, and another session's event.
    let page = [&*first.json, "not an event", &*foreign.json, &*last.json].join("\n");
    super::connect(&url)
        .await
        .execute(
            "INSERT INTO event_pages (tenant_id, session_id, first_seq, last_seq, published_at, \
             events) VALUES ('t', $1, 1, 4, now(), $2)",
            &[&session, &page],
        )
        .await
        .unwrap();
    assert_eq!(
        store.recent_events("t", session, 10).await.unwrap(),
        [first, last],
        "the page's readable events of this session, the rest left out"
    );
}

#[actix_web::test]
async fn reading_a_long_history_walks_back_page_by_page() {
    let _server_up = PG_FAULT.read().await;
    let store = migrated_store().await;
    let session = Uuid::new_v4();
    let now = now();
    // 150 batches of 2: more pages than one read fetches.
    let all: Vec<_> = (1..=300)
        .map(|seq| event("t", session, seq, now, 10))
        .collect();
    for pair in all.chunks(2) {
        let batch: Vec<_> = pair.iter().cloned().map(Write::Event).collect();
        store.write_batch(&batch).await.unwrap();
    }
    assert_eq!(store.recent_events("t", session, 1000).await.unwrap(), all);
    assert_eq!(
        store.recent_events("t", session, 201).await.unwrap(),
        all[99..]
    );
}

#[actix_web::test]
async fn retention_drops_whole_pages_once_their_newest_event_is_old() {
    let _server_up = PG_FAULT.read().await;
    let (url, store) = migrated_store_at().await;
    let session = Uuid::new_v4();
    let cutoff = now();
    let old = cutoff - Duration::hours(2);
    // Page 1: all old. Page 2: straddles the cutoff. Page 3: new.
    let page = |seqs: std::ops::RangeInclusive<u64>, at: &dyn Fn(u64) -> DateTime<Utc>| {
        seqs.map(|seq| Write::Event(event("t", session, seq, at(seq), 10)))
            .collect::<Vec<_>>()
    };
    store.write_batch(&page(1..=3, &|_| old)).await.unwrap();
    store
        .write_batch(&page(4..=6, &|seq| if seq < 6 { old } else { cutoff }))
        .await
        .unwrap();
    store
        .write_batch(&page(7..=8, &|_| cutoff + Duration::seconds(1)))
        .await
        .unwrap();
    store
        .write_batch(&[Write::Event(event("u", session, 1, old, 10))])
        .await
        .unwrap();

    let pruned = store.prune("t", cutoff, old).await.unwrap();
    assert_eq!(pruned.events, 3, "only the page whose events are all old");
    let left: Vec<u64> = store
        .recent_events("t", session, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(left, [4, 5, 6, 7, 8]);
    assert_eq!(
        store.recent_events("u", session, 100).await.unwrap().len(),
        1,
        "another tenant's history is its own"
    );
    assert_eq!(rows(&url, "SELECT count(*) FROM event_pages").await, 3);
}

#[actix_web::test]
async fn the_migration_moves_a_v5_history_into_pages_unchanged() {
    let _server_up = PG_FAULT.read().await;
    let url = fresh_database().await;
    apply_migrations(&url, 1..=5).await;
    let (session, other) = (Uuid::new_v4(), Uuid::new_v4());
    let now = now();
    // 250 events with a gap after 120, and another session's: rows as V5 wrote them.
    let history: Vec<_> = (1..=120)
        .chain(130..=259)
        .map(|seq| {
            event(
                "t",
                session,
                seq,
                now + Duration::milliseconds(seq as i64),
                40,
            )
        })
        .chain([event("t", other, 7, now, 40)])
        .collect();
    let client = super::connect(&url).await;
    for e in &history {
        client
            .execute(
                "INSERT INTO events VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &&*e.tenant_id,
                    &e.session_id,
                    &(e.seq as i64),
                    &e.event_id,
                    &e.event_type,
                    &e.user_id.as_deref(),
                    &e.published_at,
                    &&*e.json,
                ],
            )
            .await
            .unwrap();
    }
    apply_migrations(&url, 6..=7).await;
    // The rest, so the store (which acts as the V11 role) can read.
    apply_migrations(&url, 8..=12).await;

    // Pages of at most 100 consecutive events: 1-100, 101-120, 130-229, 230-259, and 7.
    assert_eq!(rows(&url, "SELECT count(*) FROM event_pages").await, 5);
    let store = connect(&url, &Settings::default()).unwrap();
    assert_eq!(
        store.recent_events("t", session, 1000).await.unwrap(),
        history[..250]
    );
    assert_eq!(store.recent_events("t", other, 10).await.unwrap().len(), 1);

    // V12 rewrote nothing: those pages keep V7's layout, and a page in V12's continues the
    // same stream (as during a rolling upgrade, when nodes of both versions write).
    let later = event("t", session, 260, now, 40);
    store
        .write_batch(&[Write::Event(later.clone())])
        .await
        .unwrap();
    let mut expected = history[..250].to_vec();
    expected.push(later);
    assert_eq!(
        store.recent_events("t", session, 1000).await.unwrap(),
        expected
    );
    assert_eq!(
        rows(
            &url,
            &format!("SELECT count(*) FROM events WHERE session_id = '{session}'")
        )
        .await,
        251
    );
}
