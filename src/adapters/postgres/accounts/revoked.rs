//! The revoked token ids one node knows of, so that checking a token on every request
//! mostly needs no database round trip and keeps working while the database is away.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};

/// The revoked ids this node has written or read, until they expire.
///
/// Every authenticated request asks whether its token is revoked. A hit here answers without
/// the database; a miss asks the database (another node may have revoked it). With the
/// database away, a miss answers "not revoked" instead of refusing every request: the gap
/// is a token revoked through another node while the database was unreachable, for at most
/// that token's remaining lifetime — the price of serving while the database is down. (With
/// a broker, revocations will reach every node's set directly.)
#[derive(Clone, Default)]
pub struct RevokedIds(Arc<Mutex<HashMap<String, DateTime<Utc>>>>);

impl RevokedIds {
    fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, DateTime<Utc>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
