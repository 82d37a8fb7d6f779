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
    ops::Deref,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use kailash_actors::{
    TenantId,
    accounts::{AccountError, AccountResult, AccountStore, TenantRecord, TenantTable},
    broker::{SharedBroker, TenantCount},
    engine::workflow::Workflow,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    app::AppState,
    http::{ApiError, ErrorCode, FieldError},
};

/// The tenant table (shared with the actor tree, whose tenant actors read their limits from
/// it), the default tenant, and the deactivation signal.
pub struct Tenants {
    default_tenant: Arc<str>,
    table: Arc<TenantTable>,
    /// Bumped whenever a tenant is deactivated here: each live connection (WebSocket, SSE)
    /// then looks its own tenant up again and closes if it is no longer active.
    deactivations: watch::Sender<u64>,
    /// Open WebSocket connections per tenant on this node (`max_websocket_connections`).
    connections: Arc<Mutex<HashMap<String, u64>>>,
}

/// What a refused WebSocket client is told to wait: connections come and go quickly.
const CONNECTION_RETRY_AFTER: Duration = Duration::from_secs(1);

/// One counted WebSocket connection of a tenant; dropping it gives the slot back.
pub struct ConnectionSlot {
    connections: Arc<Mutex<HashMap<String, u64>>>,
    tenant_id: String,
    /// Its lease in the tenant's cluster-wide count, in a cluster.
    lease: Option<(SharedBroker, Uuid)>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.tenant_id) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.tenant_id);
            }
        }
        if let Some((broker, lease)) = &self.lease {
            broker.let_go(
                TenantCount::WebSockets,
                &TenantId::from(self.tenant_id.clone()),
                *lease,
            );
        }
    }
}

impl Tenants {
    /// `table` (the actor tree's, empty until [`Tenants::open`]); `default_tenant` is the
    /// platform's.
    pub fn new(default_tenant: &str, table: Arc<TenantTable>) -> Self {
        Self {
            default_tenant: default_tenant.into(),
            table,
            deactivations: watch::Sender::new(0),
            connections: Arc::default(),
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

    /// Whether `tenant_id` exists and is active.
    pub fn is_active(&self, tenant_id: &str) -> bool {
        self.get(tenant_id).is_some_and(|t| t.active)
    }

    /// Wakes whenever a tenant has been deactivated; see [`Tenants::is_active`].
    pub fn deactivations(&self) -> watch::Receiver<u64> {
        self.deactivations.subscribe()
    }

    /// Counts a new WebSocket connection of `tenant_id`, or refuses it with 429
    /// `too_many_connections` when the tenant's `max_websocket_connections` are open on this
    /// node or, in a cluster (`broker`), on all nodes together (a lease per connection,
    /// renewed by the heartbeat; Redis away: this node's count alone decides). The node's
    /// count is kept whether or not the tenant has a limit, so a limit set later applies to
    /// the connections already open here; leases are taken only under a limit.
    pub async fn open_connection(
        &self,
        tenant_id: &str,
        broker: Option<SharedBroker>,
    ) -> Result<ConnectionSlot, ApiError> {
        let max = self.limits(tenant_id).max_websocket_connections;
        let refused = |max: u64| {
            ApiError::new(ErrorCode::TooManyConnections)
                .with_detail(format!(
                    "The tenant allows at most {max} WebSocket connections"
                ))
                .with_retry_after(CONNECTION_RETRY_AFTER)
        };
        {
            let mut counts = self.connections.lock().unwrap_or_else(|p| p.into_inner());
            let count = counts.entry(tenant_id.to_owned()).or_default();
            if let Some(max) = max
                && *count >= max
            {
                return Err(refused(max));
            }
            *count += 1;
        }
        // Counted here before Redis is asked, so it is given back however this ends.
        let mut slot = ConnectionSlot {
            connections: self.connections.clone(),
            tenant_id: tenant_id.to_owned(),
            lease: None,
        };
        if let (Some(broker), Some(max)) = (broker, max) {
            let lease = Uuid::new_v4();
            let tenant = TenantId::from(tenant_id.to_owned());
            match broker
                .hold(TenantCount::WebSockets, &tenant, lease, max)
                .await
            {
                Ok(true) => slot.lease = Some((broker, lease)),
                Ok(false) => return Err(refused(max)),
                Err(error) => {
                    tracing::warn!(%error, "could not count a WebSocket connection in Redis; counted on this node alone");
                }
            }
        }
        Ok(slot)
    }

    /// Whether a credential naming `tenant_id` may act: 401 `invalid_token` for a tenant
    /// that does not exist, 403 `tenant_inactive` for a deactivated one.
    pub fn admit(&self, tenant_id: &str) -> Result<(), ApiError> {
        match self.get(tenant_id) {
            None => Err(ApiError::new(ErrorCode::InvalidToken)
                .with_detail("Invalid authentication credentials: unknown tenant")),
            Some(tenant) if !tenant.active => Err(ApiError::new(ErrorCode::TenantInactive)),
            Some(_) => Ok(()),
        }
    }
}

/// Reads and writes of the records themselves go to the shared table.
impl Deref for Tenants {
    type Target = TenantTable;

    fn deref(&self) -> &TenantTable {
        &self.table
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

/// What a new workflow breaks of its tenant's rules: more nodes than
/// `max_nodes_per_workflow`, node types outside `allowed_node_types`. Each problem names
/// the node (`nodes[i].type`, or `nodes.<id>.type` for the keyed form) and, for the metric,
/// the limit it hit. Empty when the workflow is within them.
pub fn workflow_problems(
    tenant: &TenantRecord,
    workflow: &Workflow,
) -> Vec<(&'static str, FieldError)> {
    let mut problems = Vec::new();
    if let Some(max) = tenant.limits.max_nodes_per_workflow
        && workflow.nodes.len() as u64 > max
    {
        problems.push((
            "max_nodes_per_workflow",
            FieldError {
                path: "nodes".into(),
                message: format!(
                    "has {} nodes; the tenant allows at most {max}",
                    workflow.nodes.len()
                ),
            },
        ));
    }
    let listed = workflow
        .definition
        .get("nodes")
        .is_some_and(|n| n.is_array());
    for (i, node) in workflow.nodes.iter().enumerate() {
        if !tenant.allows_node_type(node.node_type) {
            let path = if listed {
                format!("nodes[{i}].type")
            } else {
                format!("nodes.{}.type", node.id)
            };
            problems.push((
                "allowed_node_types",
                FieldError {
                    path,
                    message: format!(
                        "node type '{}' is not allowed for this tenant",
                        node.node_type
                    ),
                },
            ));
        }
    }
    problems
}
