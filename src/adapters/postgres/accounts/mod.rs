//! The PostgreSQL adapter of the accounts port ([`PgAccounts`]): users, refresh tokens,
//! revoked token ids, API keys, custom roles, policies and the audit log (schema
//! `V2__accounts.sql`), and the tenants (`V6__tenants.sql`, [`tenants`]). It shares the
//! [`PgStore`]'s pool and runtime.
//!
//! Tenant-owned rows are keyed by tenant first and every statement on them binds the tenant
//! as `$1` (the [`scoped`] convention). Refresh tokens, revoked ids and API keys are found by
//! their random ids or key hash, which is what a caller presents; their rows record the
//! tenant, and the gateway checks it against the token. The two races the port names are
//! closed with row locks inside one transaction: counting failed logins, and exchanging a
//! refresh token (exactly one of two concurrent exchanges sees it fresh).

mod audit;
mod revoked;
mod rows;
mod tenants;

use std::{future::Future, sync::Arc};

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use kailash_actors::accounts::{
    AccountError, AccountResult, AccountStore, ApiKeyRecord, AuditQuery, AuditRecord, PolicyRecord,
    RefreshRecord, RefreshUse, RevokedId, RoleRecord, TenantRecord, UserRecord,
};
use serde_json::Value;
use tokio_postgres::{Row, error::SqlState, types::ToSql};

use self::{
    audit::{AuditWriter, outcome_name},
    revoked::RevokedIds,
    rows::{
        API_KEY_COLUMNS, USER_COLUMNS, api_key_row, audit_row, policy_row, refresh_row, role_row,
        user_row,
    },
};
use super::{Db, PgStore, Scope, begin, pipelined, scoped};

/// The accounts on PostgreSQL.
pub struct PgAccounts {
    store: Arc<PgStore>,
    audit: AuditWriter,
    revoked: RevokedIds,
}

impl PgAccounts {
    /// Accounts on `store`'s database (migrated with it).
    pub fn new(store: Arc<PgStore>) -> Self {
        let audit = AuditWriter::start(store.db.clone(), store.runtime_handle());
        let revoked = RevokedIds::default();
        store
            .runtime_handle()
            .spawn(revoked::mirror(store.db.clone(), revoked.clone()));
        Self {
            store,
            audit,
            revoked,
        }
    }

    /// Runs `work` on the store's runtime, like every statement of the adapter.
    fn run<T, F, Fut>(&self, work: F) -> BoxFuture<'static, AccountResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(Db) -> Fut,
        Fut: Future<Output = AccountResult<T>> + Send + 'static,
    {
        self.store.with_db(work)
    }
}

/// A statement's failure as the port reports it: a duplicate key is a `Conflict`, anything
/// else leaves the store unavailable for this call (the cause is for the logs).
fn account_error(error: tokio_postgres::Error) -> AccountError {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        AccountError::Conflict
    } else {
        AccountError::Unavailable(error.to_string())
    }
}

/// Runs one prepared statement acting for `scope` on a pooled connection and returns its
/// rows.
async fn query(
    db: &Db,
    scope: Scope<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> AccountResult<Vec<Row>> {
    db.rows_or(account_error, scope, sql, params).await
}

/// Runs one prepared statement on `tenant`'s rows: `tenant` is bound as `$1`, `params`
/// follow, and the transaction acts for `tenant`.
async fn tenant_query(
    db: &Db,
    tenant: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> AccountResult<Vec<Row>> {
    query(db, Scope::Tenant(tenant), sql, &scoped(&tenant, params)).await
}

/// The revoked ones among `ids`, two per statement (`id IN ($1, $2)`; callers pass a
/// token's jti and its login family) rather than `id = ANY($1)`: the server re-planned the
/// array form on every call, which cost it more than the lookup on this once-per-request
/// path.
async fn revoked_rows(db: &Db, ids: &[String]) -> AccountResult<Vec<Row>> {
    let sql = "SELECT id, expires_at FROM revoked_tokens WHERE id IN ($1, $2)";
    let mut rows = Vec::new();
    for pair in ids.chunks(2) {
        rows.extend(
            query(
                db,
                Scope::AllTenants,
                sql,
                &[&pair[0], &pair[pair.len() - 1]],
            )
            .await?,
        );
    }
    Ok(rows)
}

/// The user's columns after the key, in `USER_COLUMNS` order, as `$3..$11`.
async fn write_user(db: &Db, sql: &str, user: &UserRecord) -> AccountResult<u64> {
    let attributes = Value::Object(user.attributes.clone());
    let failed_logins = user.failed_logins.min(i32::MAX as u32) as i32;
    let client = db.client().await?;
    let statement = client.prepare_cached(sql).await.map_err(account_error)?;
    let params = scoped(
        &user.tenant_id,
        &[
            &user.username,
            &user.password_hash,
            &user.roles,
            &attributes,
            &user.disabled,
            &failed_logins,
            &user.locked_until,
            &user.totp_secret,
            &user.totp_enabled,
            &user.created_at,
        ],
    );
    let scope = Scope::Tenant(&user.tenant_id);
    pipelined(&client, scope, client.execute(&statement, &params))
        .await
        .map_err(account_error)
}

impl AccountStore for PgAccounts {
    fn insert_user(&self, user: UserRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.run(|db| async move {
            let sql = format!(
                "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            );
            write_user(&db, &sql, &user).await.map(drop)
        })
    }

    fn user(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> BoxFuture<'_, AccountResult<Option<UserRecord>>> {
        let (tenant, username) = (tenant_id.to_owned(), username.to_owned());
        self.run(|db| async move {
            let sql =
                format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND username = $2");
            let rows = tenant_query(&db, &tenant, &sql, &[&username]).await?;
            Ok(rows.first().map(user_row))
        })
    }

    fn update_user(&self, user: UserRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.run(|db| async move {
            let sql = "UPDATE users SET password_hash = $3, roles = $4, attributes = $5, \
                disabled = $6, failed_logins = $7, locked_until = $8, totp_secret = $9, \
                totp_enabled = $10, created_at = $11 WHERE tenant_id = $1 AND username = $2";
            match write_user(&db, sql, &user).await? {
                0 => Err(AccountError::NotFound),
                _ => Ok(()),
            }
        })
    }

    fn delete_user(&self, tenant_id: &str, username: &str) -> BoxFuture<'_, AccountResult<bool>> {
        let (tenant, username) = (tenant_id.to_owned(), username.to_owned());
        self.run(|db| async move {
            let sql = "DELETE FROM users WHERE tenant_id = $1 AND username = $2 RETURNING 1";
            Ok(!tenant_query(&db, &tenant, sql, &[&username])
                .await?
                .is_empty())
        })
    }

    fn list_users(&self, tenant_id: &str) -> BoxFuture<'_, AccountResult<Vec<UserRecord>>> {
        let tenant = tenant_id.to_owned();
        self.run(|db| async move {
            let sql =
                format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY username");
            Ok(tenant_query(&db, &tenant, &sql, &[])
                .await?
                .iter()
                .map(user_row)
                .collect())
        })
    }

    fn record_failed_login(
        &self,
        tenant_id: &str,
        username: &str,
        max_failures: u32,
        lock_until: DateTime<Utc>,
    ) -> BoxFuture<'_, AccountResult<Option<DateTime<Utc>>>> {
        let (tenant, username) = (tenant_id.to_owned(), username.to_owned());
        let max_failures = max_failures.min(i32::MAX as u32) as i32;
        self.run(move |db| async move {
            // The first update takes the row lock: concurrent failures count one after another.
            let mut client = db.client().await?;
            let tx = begin(&mut client, Scope::Tenant(&tenant))
                .await
                .map_err(account_error)?;
            let count = tx
                .query_opt(
                    "UPDATE users SET failed_logins = failed_logins + 1 \
                     WHERE tenant_id = $1 AND username = $2 RETURNING failed_logins",
                    &scoped(&tenant, &[&username]),
                )
                .await
                .map_err(account_error)?;
            let locked = match count {
                Some(row) if row.get::<_, i32>(0) >= max_failures => {
                    tx.execute(
                        "UPDATE users SET failed_logins = 0, locked_until = $3 \
                         WHERE tenant_id = $1 AND username = $2",
                        &scoped(&tenant, &[&username, &lock_until]),
                    )
                    .await
                    .map_err(account_error)?;
                    Some(lock_until)
                }
                _ => None,
            };
            tx.commit().await.map_err(account_error)?;
            Ok(locked)
        })
    }

    fn clear_failed_logins(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> BoxFuture<'_, AccountResult<()>> {
        let (tenant, username) = (tenant_id.to_owned(), username.to_owned());
        self.run(|db| async move {
            let sql = "UPDATE users SET failed_logins = 0, locked_until = NULL \
                WHERE tenant_id = $1 AND username = $2";
            tenant_query(&db, &tenant, sql, &[&username])
                .await
                .map(drop)
        })
    }

    fn insert_refresh(&self, token: RefreshRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.run(|db| async move {
            let sql = "INSERT INTO refresh_tokens \
                (jti, family_id, tenant_id, username, expires_at, used_at) \
                VALUES ($1, $2, $3, $4, $5, $6)";
            query(
                &db,
                Scope::Tenant(&token.tenant_id),
                sql,
                &[
                    &token.jti,
                    &token.family_id,
                    &token.tenant_id,
                    &token.username,
                    &token.expires_at,
                    &token.used_at,
                ],
            )
            .await
            .map(drop)
        })
    }

    fn use_refresh(
        &self,
        jti: &str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, AccountResult<RefreshUse>> {
        let jti = jti.to_owned();
        self.run(move |db| async move {
            // The token is found by its id, which is what names its tenant.
            let mut client = db.client().await?;
            let tx = begin(&mut client, Scope::AllTenants)
                .await
                .map_err(account_error)?;
            let found = tx
                .query_opt(
                    "SELECT jti, family_id, tenant_id, username, expires_at, used_at \
                     FROM refresh_tokens WHERE jti = $1 FOR UPDATE",
                    &[&jti],
                )
                .await
                .map_err(account_error)?;
            let outcome = match found.as_ref().map(refresh_row) {
                None => RefreshUse::Unknown,
                Some(token) if token.used_at.is_some() => RefreshUse::Reused(token),
                Some(mut token) => {
                    tx.execute(
                        "UPDATE refresh_tokens SET used_at = $2 WHERE jti = $1",
                        &[&jti, &now],
                    )
                    .await
                    .map_err(account_error)?;
                    token.used_at = Some(now);
                    RefreshUse::Fresh(token)
                }
            };
            tx.commit().await.map_err(account_error)?;
            Ok(outcome)
        })
    }

    fn revoke(&self, revoked: RevokedId) -> BoxFuture<'_, AccountResult<()>> {
        let known = self.revoked.clone();
        self.run(|db| async move {
            let sql = "INSERT INTO revoked_tokens (id, expires_at) VALUES ($1, $2) \
                ON CONFLICT (id) DO UPDATE SET revoked_at = now(), \
                expires_at = GREATEST(revoked_tokens.expires_at, EXCLUDED.expires_at)";
            query(
                &db,
                Scope::AllTenants,
                sql,
                &[&revoked.id, &revoked.expires_at],
            )
            .await?;
            known.remember(revoked.id, revoked.expires_at);
            Ok(())
        })
    }

    fn any_revoked(&self, ids: &[&str]) -> BoxFuture<'_, AccountResult<bool>> {
        if self.revoked.any(ids, Utc::now()) {
            return Box::pin(std::future::ready(Ok(true)));
        }
        if self.revoked.fresh() {
            // The mirror holds every revocation up to a second ago (see `RevokedIds`).
            return Box::pin(std::future::ready(Ok(false)));
        }
        let ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        let known = self.revoked.clone();
        self.run(|db| async move {
            match revoked_rows(&db, &ids).await {
                Ok(rows) => {
                    for row in &rows {
                        known.remember(row.get(0), row.get(1));
                    }
                    Ok(!rows.is_empty())
                }
                // See `RevokedIds`: with the database away, what this node knows decides.
                Err(AccountError::Unavailable(reason)) => {
                    tracing::warn!(%reason, "revocation check answered from this node's revocations: the database is unavailable");
                    Ok(false)
                }
                Err(error) => Err(error),
            }
        })
    }

    fn purge_revoked(&self, now: DateTime<Utc>) -> BoxFuture<'_, AccountResult<()>> {
        self.revoked.forget_expired(now);
        self.run(move |db| async move {
            query(
                &db,
                Scope::AllTenants,
                "DELETE FROM revoked_tokens WHERE expires_at <= $1",
                &[&now],
            )
            .await?;
            query(
                &db,
                Scope::AllTenants,
                "DELETE FROM refresh_tokens WHERE expires_at <= $1",
                &[&now],
            )
            .await?;
            Ok(())
        })
    }

    fn insert_api_key(&self, key: ApiKeyRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.run(|db| async move {
            let sql = format!(
                "INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            );
            let params: [&(dyn ToSql + Sync); 9] = [
                &key.key_id,
                &key.username,
                &key.name,
                &key.key_hash,
                &key.prefix,
                &key.scopes,
                &key.created_at,
                &key.expires_at,
                &key.revoked_at,
            ];
            tenant_query(&db, &key.tenant_id, &sql, &params)
                .await
                .map(drop)
        })
    }

    fn api_key_by_hash(
        &self,
        key_hash: &str,
    ) -> BoxFuture<'_, AccountResult<Option<ApiKeyRecord>>> {
        let key_hash = key_hash.to_owned();
        self.run(|db| async move {
            let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1");
            Ok(query(&db, Scope::AllTenants, &sql, &[&key_hash])
                .await?
                .first()
                .map(api_key_row))
        })
    }

    fn list_api_keys(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> BoxFuture<'_, AccountResult<Vec<ApiKeyRecord>>> {
        let (tenant, username) = (tenant_id.to_owned(), username.to_owned());
        self.run(|db| async move {
            let sql = format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND username = $2 \
                 ORDER BY created_at, key_id"
            );
            let rows = tenant_query(&db, &tenant, &sql, &[&username]).await?;
            Ok(rows.iter().map(api_key_row).collect())
        })
    }

    fn revoke_api_key(
        &self,
        tenant_id: &str,
        username: &str,
        key_id: &str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, AccountResult<bool>> {
        let (tenant, username, key_id) =
            (tenant_id.to_owned(), username.to_owned(), key_id.to_owned());
        self.run(move |db| async move {
            let sql = "UPDATE api_keys SET revoked_at = $4 WHERE tenant_id = $1 \
                AND username = $2 AND key_id = $3 AND revoked_at IS NULL RETURNING 1";
            let rows = tenant_query(&db, &tenant, sql, &[&username, &key_id, &now]).await?;
            Ok(!rows.is_empty())
        })
    }

    fn put_role(&self, role: RoleRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.run(|db| async move {
            let sql = "INSERT INTO roles (tenant_id, name, permissions, denied_node_types, created_at) \
                VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, name) DO UPDATE SET \
                permissions = EXCLUDED.permissions, denied_node_types = EXCLUDED.denied_node_types, \
                created_at = EXCLUDED.created_at";
            let params: [&(dyn ToSql + Sync); 4] = [
                &role.name,
                &role.permissions,
                &role.denied_node_types,
                &role.created_at,
            ];
            tenant_query(&db, &role.tenant_id, sql, &params)
                .await
                .map(drop)
        })
    }

    fn delete_role(&self, tenant_id: &str, name: &str) -> BoxFuture<'_, AccountResult<bool>> {
        let (tenant, name) = (tenant_id.to_owned(), name.to_owned());
        self.run(|db| async move {
            let sql = "DELETE FROM roles WHERE tenant_id = $1 AND name = $2 RETURNING 1";
            Ok(!tenant_query(&db, &tenant, sql, &[&name]).await?.is_empty())
        })
    }

    fn all_roles(&self) -> BoxFuture<'_, AccountResult<Vec<RoleRecord>>> {
        self.run(|db| async move {
            let sql = "SELECT tenant_id, name, permissions, denied_node_types, created_at \
                FROM roles ORDER BY tenant_id, name";
            Ok(query(&db, Scope::AllTenants, sql, &[])
                .await?
                .iter()
                .map(role_row)
                .collect())
        })
    }

    fn put_policy(&self, policy: PolicyRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.run(|db| async move {
            let sql = "INSERT INTO policies (tenant_id, policy_id, text, created_at) \
                VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, policy_id) DO UPDATE SET \
                text = EXCLUDED.text, created_at = EXCLUDED.created_at";
            let params: [&(dyn ToSql + Sync); 3] =
                [&policy.policy_id, &policy.text, &policy.created_at];
            tenant_query(&db, &policy.tenant_id, sql, &params)
                .await
                .map(drop)
        })
    }

    fn delete_policy(
        &self,
        tenant_id: &str,
        policy_id: &str,
    ) -> BoxFuture<'_, AccountResult<bool>> {
        let (tenant, policy_id) = (tenant_id.to_owned(), policy_id.to_owned());
        self.run(|db| async move {
            let sql = "DELETE FROM policies WHERE tenant_id = $1 AND policy_id = $2 RETURNING 1";
            Ok(!tenant_query(&db, &tenant, sql, &[&policy_id])
                .await?
                .is_empty())
        })
    }

    fn all_policies(&self) -> BoxFuture<'_, AccountResult<Vec<PolicyRecord>>> {
        self.run(|db| async move {
            let sql = "SELECT tenant_id, policy_id, text, created_at FROM policies \
                ORDER BY tenant_id, policy_id";
            Ok(query(&db, Scope::AllTenants, sql, &[])
                .await?
                .iter()
                .map(policy_row)
                .collect())
        })
    }

    fn insert_tenant(&self, tenant: TenantRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.run(|db| async move { tenants::write(&db, &tenant, true).await.map(drop) })
    }

    fn update_tenant(&self, tenant: TenantRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.run(|db| async move {
            match tenants::write(&db, &tenant, false).await? {
                0 => Err(AccountError::NotFound),
                _ => Ok(()),
            }
        })
    }

    fn all_tenants(&self) -> BoxFuture<'_, AccountResult<Vec<TenantRecord>>> {
        self.run(|db| async move { tenants::all(&db).await })
    }

    fn append_audit(&self, entry: AuditRecord) -> BoxFuture<'_, AccountResult<()>> {
        Box::pin(self.audit.append(entry))
    }

    fn query_audit(&self, query_: AuditQuery) -> BoxFuture<'_, AccountResult<Vec<AuditRecord>>> {
        self.run(|db| async move {
            let outcome = query_.outcome.map(outcome_name);
            let limit = query_.limit.min(i64::MAX as usize) as i64;
            let sql = "SELECT tenant_id, id, at, user_id, action, outcome, resource, client_ip \
                FROM audit_log WHERE tenant_id = $1 \
                AND ($2::text IS NULL OR user_id = $2) AND ($3::text IS NULL OR action = $3) \
                AND ($4::text IS NULL OR outcome = $4) \
                AND ($5::timestamptz IS NULL OR at >= $5) AND ($6::timestamptz IS NULL OR at <= $6) \
                ORDER BY at DESC, id DESC LIMIT $7";
            let rows = tenant_query(
                &db,
                &query_.tenant_id,
                sql,
                &[
                    &query_.user_id,
                    &query_.action,
                    &outcome,
                    &query_.since,
                    &query_.until,
                    &limit,
                ],
            )
            .await?;
            Ok(rows.iter().map(audit_row).collect())
        })
    }
}
