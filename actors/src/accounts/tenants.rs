//! Tenant records: what a platform administrator says about one tenant — its name, whether
//! it is active, its feature switches, the node types it may use and its limits. The gateway
//! keeps every tenant in memory (they are few and read on every request) and writes changes
//! through the [`super::AccountStore`]; the tenant actors enforce the limits.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A tenant. Key: `tenant_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub tenant_id: String,
    pub name: String,
    /// A deactivated tenant's requests are refused; its data stays.
    pub active: bool,
    /// Feature switches (`ai_enabled`, `custom_nodes`, ...), each a boolean.
    pub features: Map<String, Value>,
    /// Node types its workflows may use; empty: every type.
    pub allowed_node_types: Vec<String>,
    pub limits: TenantLimits,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TenantRecord {
    /// A new active tenant with no limits of its own.
    pub fn new(tenant_id: impl Into<String>, name: impl Into<String>, now: DateTime<Utc>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            name: name.into(),
            active: true,
            features: Map::new(),
            allowed_node_types: Vec::new(),
            limits: TenantLimits::default(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether its workflows may use `node_type`.
    pub fn allows_node_type(&self, node_type: &str) -> bool {
        self.allowed_node_types.is_empty() || self.allowed_node_types.iter().any(|t| t == node_type)
    }
}

/// A tenant's limits; `None` is no limit of its own (the deployment's apply). The wire and
/// stored shape is an object with only the keys that are set; an unknown key is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_workflows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_nodes_per_workflow: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_executions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_execution_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_calls_per_day: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_second: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_websocket_connections: Option<u64>,
}

impl TenantLimits {
    /// Each limit by its key, set or not, in the documented order.
    pub fn entries(&self) -> [(&'static str, Option<u64>); 9] {
        [
            ("max_sessions", self.max_sessions),
            ("max_workflows", self.max_workflows),
            ("max_nodes_per_workflow", self.max_nodes_per_workflow),
            ("max_concurrent_executions", self.max_concurrent_executions),
            ("max_execution_seconds", self.max_execution_seconds),
            ("api_calls_per_day", self.api_calls_per_day),
            ("requests_per_second", self.requests_per_second),
            ("events_per_second", self.events_per_second),
            ("max_websocket_connections", self.max_websocket_connections),
        ]
    }
}

/// Every tenant record this node knows, by id: read by the tenant actors for their limits
/// and by the gateway for every request's admission, written by the gateway when a record
/// changes (see the gateway crate's `tenants` module). A tenant missing here has no limits
/// of its own.
#[derive(Debug, Default)]
pub struct TenantTable(RwLock<HashMap<String, Arc<TenantRecord>>>);

impl TenantTable {
    pub fn get(&self, tenant_id: &str) -> Option<Arc<TenantRecord>> {
        self.read().get(tenant_id).cloned()
    }

    /// The tenant's limits (none when it is not known).
    pub fn limits(&self, tenant_id: &str) -> TenantLimits {
        self.read()
            .get(tenant_id)
            .map(|t| t.limits)
            .unwrap_or_default()
    }

    /// Every tenant, by id.
    pub fn list(&self) -> Vec<Arc<TenantRecord>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        all
    }

    pub fn put(&self, record: TenantRecord) {
        self.write()
            .insert(record.tenant_id.clone(), Arc::new(record));
    }

    /// Makes the table exactly `records` and returns the ids of the tenants that were
    /// active here and are not any more.
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

    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<TenantRecord>>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<TenantRecord>>> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_keep_only_set_keys_and_refuse_unknown_ones() {
        let limits: TenantLimits =
            serde_json::from_value(serde_json::json!({"max_sessions": 3})).unwrap();
        assert_eq!(limits.max_sessions, Some(3));
        assert_eq!(
            serde_json::to_value(limits).unwrap(),
            serde_json::json!({"max_sessions": 3})
        );
        assert!(
            serde_json::from_value::<TenantLimits>(serde_json::json!({"max_users": 1})).is_err()
        );
    }
}
