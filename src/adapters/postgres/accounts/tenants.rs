//! The tenant rows (`tenants`, schema V1 + `V6__tenants.sql`) as the port's records.
//!
//! A tenant row also appears implicitly when a tenant stores its first session
//! (`sessions::add_tenant`, which predates V6): such a row has no `name` and reads as named
//! by its id, active, with no limits.

use kailash_actors::accounts::{AccountResult, TenantRecord};
use serde_json::Value;
use tokio_postgres::{Row, types::ToSql};

use super::{Db, Scope, query};

const COLUMNS: &str =
    "tenant_id, name, active, features, allowed_node_types, limits, created_at, updated_at";

fn tenant_row(row: &Row) -> TenantRecord {
    let tenant_id: String = row.get(0);
    TenantRecord {
        name: row
            .get::<_, Option<String>>(1)
            .unwrap_or_else(|| tenant_id.clone()),
        tenant_id,
        active: row.get(2),
        features: match row.get::<_, Value>(3) {
            Value::Object(map) => map,
            _ => Default::default(),
        },
        allowed_node_types: row.get(4),
        // Written from `TenantLimits` only; a row edited by hand into something else reads as
        // "no limits" rather than failing every request of the tenant.
        limits: serde_json::from_value(row.get(5)).unwrap_or_default(),
        created_at: row.get(6),
        updated_at: row.get(7),
    }
}

/// Inserts (`insert`) or updates the row, binding the columns in `COLUMNS` order.
pub async fn write(db: &Db, tenant: &TenantRecord, insert: bool) -> AccountResult<u64> {
    let sql = if insert {
        "INSERT INTO tenants (tenant_id, name, active, features, allowed_node_types, limits, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    } else {
        "UPDATE tenants SET name = $2, active = $3, features = $4, allowed_node_types = $5, \
         limits = $6, created_at = $7, updated_at = $8 WHERE tenant_id = $1 RETURNING 1"
    };
    let features = Value::Object(tenant.features.clone());
    let limits = serde_json::to_value(tenant.limits).unwrap_or_default();
    let params: [&(dyn ToSql + Sync); 8] = [
        &tenant.tenant_id,
        &tenant.name,
        &tenant.active,
        &features,
        &tenant.allowed_node_types,
        &limits,
        &tenant.created_at,
        &tenant.updated_at,
    ];
    // Tenant records are the platform administrators' (and the shared table's) alone.
    let rows = query(db, Scope::AllTenants, sql, &params).await?;
    Ok(if insert { 1 } else { rows.len() as u64 })
}

pub async fn all(db: &Db) -> AccountResult<Vec<TenantRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM tenants ORDER BY tenant_id");
    Ok(query(db, Scope::AllTenants, &sql, &[])
        .await?
        .iter()
        .map(tenant_row)
        .collect())
}
