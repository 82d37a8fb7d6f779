//! The tenants as this node knows them: every [`TenantRecord`], held in memory because every
//! authenticated request asks whether its tenant exists and is active, and that answer must
//! cost a map lookup, not a database round trip.
//!
//! The records are written through the accounts store by `/api/admin/tenants` and put here
//! by the node that changed them; other nodes of a cluster re-read the whole table every 2 s
//! (`cluster::start_shared_state_sync`). The default tenant always exists: [`Tenants::open`]
//! creates it on first start, and it cannot be deactivated.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use chrono::Utc;
use kailash_actors::accounts::{AccountError, AccountResult, AccountStore, TenantRecord};
use tokio::sync::watch;

use crate::{
    app::AppState,
    http::{ApiError, ErrorCode},
};

/// The tenant table, by id.
pub struct Tenants {
    default_tenant: Arc<str>,
    table: RwLock<HashMap<String, Arc<TenantRecord>>>,
    /// Bumped whenever a tenant is deactivated here: each live connection (WebSocket, SSE)
    /// then looks its own tenant up again and closes if it is no longer active.
    deactivations: watch::Sender<u64>,
}

impl Tenants {
    /// An empty table until [`Tenants::open`]; `default_tenant` is the platform's.
    pub fn new(default_tenant: &str) -> Self {
        Self {
            default_tenant: default_tenant.into(),
            table: RwLock::default(),
            deactivations: watch::Sender::new(0),
        }
    }

    /// Reads every tenant from `store`, creating the default tenant when it is not there.
    pub async fn open(&self, store: &dyn AccountStore) -> AccountResult<()> {
        let default = TenantRecord::new(&*self.default_tenant, &*self.default_tenant, Utc::now());
        match store.insert_tenant(default).await {
            Ok(()) | Err(AccountError::Conflict) => {}
            Err(error) => return Err(error),
        }
        self.replace_all(store.all_tenants().await?);
        Ok(())
    }

    pub fn is_default(&self, tenant_id: &str) -> bool {
        tenant_id == &*self.default_tenant
    }

    pub fn get(&self, tenant_id: &str) -> Option<Arc<TenantRecord>> {
        self.read().get(tenant_id).cloned()
    }

    /// Every tenant, by id.
    pub fn list(&self) -> Vec<Arc<TenantRecord>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        all
    }

    /// Records a tenant this node created or changed.
    pub fn put(&self, record: TenantRecord) {
        self.write()
            .insert(record.tenant_id.clone(), Arc::new(record));
    }

    /// Makes the table exactly `records` (as the store holds them) and returns the ids of
    /// the tenants that were active here and are not any more, for their live work to end.
    pub fn replace_all(&self, records: Vec<TenantRecord>) -> Vec<String> {
        let mut table = self.write();
        let deactivated = records
            .iter()
            .filter(|r| !r.active && table.get(&r.tenant_id).is_some_and(|old| old.active))
            .map(|r| r.tenant_id.clone())
            .collect();
        *table = records
            .into_iter()
            .map(|r| (r.tenant_id.clone(), Arc::new(r)))
            .collect();
        deactivated
    }

    /// Whether `tenant_id` exists and is active.
    pub fn is_active(&self, tenant_id: &str) -> bool {
        self.read().get(tenant_id).is_some_and(|t| t.active)
    }

    /// Wakes whenever a tenant has been deactivated; see [`Tenants::is_active`].
    pub fn deactivations(&self) -> watch::Receiver<u64> {
        self.deactivations.subscribe()
    }

    /// Whether a credential naming `tenant_id` may act: 401 `invalid_token` for a tenant
    /// that does not exist, 403 `tenant_inactive` for a deactivated one.
    pub fn admit(&self, tenant_id: &str) -> Result<(), ApiError> {
        match self.read().get(tenant_id) {
            None => Err(ApiError::new(ErrorCode::InvalidToken)
                .with_detail("Invalid authentication credentials: unknown tenant")),
            Some(tenant) if !tenant.active => Err(ApiError::new(ErrorCode::TenantInactive)),
            Some(_) => Ok(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TenantRecord>>> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<TenantRecord>>> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Ends the live work of a tenant this node has just seen deactivated: its WebSocket
/// connections close (1008, "the tenant was deactivated"), its SSE streams end with
/// `stream.closed` (`tenant_inactive`), and its executions running on this node are
/// cancelled. Each node does this for the runs and connections it holds.
///
/// The runs are cancelled first, so their `workflow.cancelled` events are on their way
/// before the connections close (a connection may still close before writing them; the
/// event stays in the session's history).
pub async fn end_live_work(state: &AppState, tenant_id: &str) {
    match state.gateway.cancel_tenant_runs(tenant_id.into()).await {
        Ok(cancelled) => tracing::info!(tenant_id, cancelled, "tenant deactivated"),
        Err(error) => {
            tracing::error!(tenant_id, %error, "the deactivated tenant's runs were not cancelled")
        }
    }
    state.tenants.deactivations.send_modify(|n| *n += 1);
}
