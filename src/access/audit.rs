//! Writing and reading the audit log: every denial, login (either way), logout, lockout,
//! API key change, and user, role and policy change. Entries name who, what, on what and
//! the outcome — never a password, token or key.

use std::sync::Arc;

use kailash_actors::accounts::{AccountStore, AuditRecord, Outcome};

use crate::clock::Clock;

/// One thing to record; the log adds the id and the time.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub action: &'a str,
    pub outcome: Outcome,
    pub resource: Option<&'a str>,
    pub client_ip: Option<&'a str>,
}

pub struct AuditLog {
    store: Arc<dyn AccountStore>,
    clock: Arc<dyn Clock>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn AccountStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Records a successful action of `user_id`.
    pub async fn success(
        &self,
        tenant_id: &str,
        user_id: &str,
        action: &str,
        resource: Option<&str>,
        client_ip: Option<&str>,
    ) {
        self.record(AuditEvent {
            tenant_id,
            user_id,
            action,
            outcome: Outcome::Success,
            resource,
            client_ip,
        })
        .await;
    }

    /// Appends an entry. A store failure is logged, not raised: the action it describes has
    /// already been decided.
    pub async fn record(&self, event: AuditEvent<'_>) {
        let entry = AuditRecord {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: event.tenant_id.to_owned(),
            at: self.clock.now(),
            user_id: event.user_id.to_owned(),
            action: event.action.to_owned(),
            outcome: event.outcome,
            resource: event.resource.map(str::to_owned),
            client_ip: event.client_ip.map(str::to_owned),
        };
        if let Err(error) = self.store.append_audit(entry).await {
            tracing::error!(%error, action = event.action, "audit entry not written");
        }
    }
}
