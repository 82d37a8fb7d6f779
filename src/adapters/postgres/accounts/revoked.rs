//! The revoked token ids one node knows of — a mirror of the table, kept fresh — so that
//! checking a token on every request needs no database round trip and keeps working while
//! the database is away.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::{Db, Scope, query};

/// How often the mirror reads what was revoked since its last read.
const MIRROR_EVERY: Duration = Duration::from_secs(1);
/// How long after its last successful read the mirror still answers a miss by itself.
const FRESH_FOR: Duration = Duration::from_secs(3);
/// How far back each read looks before the newest revocation it has seen: a revocation
/// committed late with an earlier timestamp is still found.
const OVERLAP_SECONDS: i64 = 10;

/// The revoked ids this node has written or read, until they expire.
///
/// Every authenticated request asks whether its token is revoked. A hit here answers without
/// the database. [`mirror`] reads every revocation (at start, then what is new every
/// second), so while it is fresh a miss answers "not revoked" without the database either:
/// a token revoked through another node is refused here within about a second. When the
/// mirror is stale, a miss asks the database; with the database away too, a miss answers
/// "not revoked" instead of refusing every request — the gap is a token revoked through
/// another node while the database was unreachable, for at most that token's remaining
/// lifetime, the price of serving while the database is down.
#[derive(Clone, Default)]
pub struct RevokedIds(Arc<Mirror>);

#[derive(Default)]
struct Mirror {
    ids: Mutex<HashMap<String, DateTime<Utc>>>,
    /// When the mirror last read the table whole or what was new.
    synced_at: Mutex<Option<Instant>>,
}

impl RevokedIds {
    fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, DateTime<Utc>>> {
        self.0
            .ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the mirror read the table recently enough to answer a miss by itself.
    pub fn fresh(&self) -> bool {
        self.0
            .synced_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|at| at.elapsed() <= FRESH_FOR)
    }

    pub fn remember(&self, id: String, expires_at: DateTime<Utc>) {
        let mut ids = self.ids();
        let until = ids.entry(id).or_insert(expires_at);
        *until = (*until).max(expires_at);
    }

    pub fn any(&self, ids: &[&str], now: DateTime<Utc>) -> bool {
        let known = self.ids();
        ids.iter()
            .any(|id| known.get(*id).is_some_and(|until| *until > now))
    }

    pub fn forget_expired(&self, now: DateTime<Utc>) {
        self.ids().retain(|_, until| *until > now);
    }
}

/// Keeps `known` a mirror of the revoked ids, until the runtime stops.
pub async fn mirror(db: Db, known: RevokedIds) {
    let mut newest: Option<DateTime<Utc>> = None;
    loop {
        let since = newest.map(|at| at - chrono::Duration::seconds(OVERLAP_SECONDS));
        match revoked_since(&db, since).await {
            Ok(rows) => {
                for row in &rows {
                    known.remember(row.get(0), row.get(1));
                    let at: DateTime<Utc> = row.get(2);
                    newest = Some(newest.map_or(at, |seen| seen.max(at)));
                }
                *known
                    .0
                    .synced_at
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
            }
            Err(error) => tracing::debug!(%error, "revocations not mirrored this time"),
        }
        tokio::time::sleep(MIRROR_EVERY).await;
    }
}

/// The unexpired revocations made since `since` (all of them for `None`).
async fn revoked_since(
    db: &Db,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Row>, kailash_actors::accounts::AccountError> {
    // Revoked ids belong to no tenant (a revocation is found by the id a token carries).
    query(
        db,
        Scope::AllTenants,
        "SELECT id, expires_at, revoked_at FROM revoked_tokens \
         WHERE ($1::timestamptz IS NULL OR revoked_at > $1) AND expires_at > now()",
        &[&since],
    )
    .await
}
