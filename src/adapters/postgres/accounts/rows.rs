//! Rows of the accounts tables as the port's records, and the column lists they are read
//! with.

use kailash_actors::accounts::{
    ApiKeyRecord, AuditRecord, PolicyRecord, RefreshRecord, RoleRecord, UserRecord,
};
use serde_json::Value;
use tokio_postgres::Row;

use super::audit::outcome_from_name;

pub const USER_COLUMNS: &str = "tenant_id, username, password_hash, roles, attributes, disabled, \
    failed_logins, locked_until, totp_secret, totp_enabled, created_at";

pub fn user_row(row: &Row) -> UserRecord {
    UserRecord {
        tenant_id: row.get(0),
        username: row.get(1),
        password_hash: row.get(2),
        roles: row.get(3),
        attributes: match row.get::<_, Value>(4) {
            Value::Object(map) => map,
            _ => Default::default(),
        },
        disabled: row.get(5),
        failed_logins: row.get::<_, i32>(6).max(0) as u32,
        locked_until: row.get(7),
        totp_secret: row.get(8),
        totp_enabled: row.get(9),
        created_at: row.get(10),
    }
}

pub fn refresh_row(row: &Row) -> RefreshRecord {
    RefreshRecord {
        jti: row.get(0),
        family_id: row.get(1),
        tenant_id: row.get(2),
        username: row.get(3),
        expires_at: row.get(4),
        used_at: row.get(5),
    }
}

pub const API_KEY_COLUMNS: &str = "tenant_id, key_id, username, name, key_hash, prefix, scopes, \
    created_at, expires_at, revoked_at";

pub fn api_key_row(row: &Row) -> ApiKeyRecord {
    ApiKeyRecord {
        tenant_id: row.get(0),
        key_id: row.get(1),
        username: row.get(2),
        name: row.get(3),
        key_hash: row.get(4),
        prefix: row.get(5),
        scopes: row.get(6),
        created_at: row.get(7),
        expires_at: row.get(8),
        revoked_at: row.get(9),
    }
}

pub fn role_row(row: &Row) -> RoleRecord {
    RoleRecord {
        tenant_id: row.get(0),
        name: row.get(1),
        permissions: row.get(2),
        denied_node_types: row.get(3),
        created_at: row.get(4),
    }
}

pub fn policy_row(row: &Row) -> PolicyRecord {
    PolicyRecord {
        tenant_id: row.get(0),
        policy_id: row.get(1),
        text: row.get(2),
        created_at: row.get(3),
    }
}

pub fn audit_row(row: &Row) -> AuditRecord {
    AuditRecord {
        tenant_id: row.get(0),
        id: row.get(1),
        at: row.get(2),
        user_id: row.get(3),
        action: row.get(4),
        outcome: outcome_from_name(row.get(5)),
        resource: row.get(6),
        client_ip: row.get(7),
    }
}
