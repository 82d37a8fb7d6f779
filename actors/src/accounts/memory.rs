//! [`MemoryAccounts`]: the in-process adapter of the accounts port, for the single-node
//! embedded default and the tests. One mutex over all tables: every call is a few map
//! operations, never held across an await.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use chrono::{DateTime, Utc};
use futures_util::future::{BoxFuture, FutureExt, ready};

use super::{
    AccountError, AccountResult, AccountStore, ApiKeyRecord, AuditQuery, AuditRecord, PolicyRecord,
    RefreshRecord, RefreshUse, RevokedId, RoleRecord, TenantRecord, UserRecord,
};

type Key = (String, String);

fn key(tenant_id: &str, name: &str) -> Key {
    (tenant_id.to_owned(), name.to_owned())
}

#[derive(Default)]
struct Tables {
    users: HashMap<Key, UserRecord>,
    refresh: HashMap<String, RefreshRecord>,
    revoked: HashMap<String, DateTime<Utc>>,
    api_keys: HashMap<String, ApiKeyRecord>,
    roles: HashMap<Key, RoleRecord>,
    policies: HashMap<Key, PolicyRecord>,
    audit: Vec<AuditRecord>,
    tenants: HashMap<String, TenantRecord>,
}

/// Accounts kept in memory; lost on restart.
#[derive(Default)]
pub struct MemoryAccounts {
    tables: Mutex<Tables>,
}

impl MemoryAccounts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on the tables and wraps its answer as the port's future.
    fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Tables) -> AccountResult<T>,
    ) -> BoxFuture<'_, AccountResult<T>> {
        let mut tables: MutexGuard<'_, Tables> =
            self.tables.lock().unwrap_or_else(|p| p.into_inner());
        ready(f(&mut tables)).boxed()
    }
}

impl AccountStore for MemoryAccounts {
    fn insert_user(&self, user: UserRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.with(move |t| {
            let k = key(&user.tenant_id, &user.username);
            if t.users.contains_key(&k) {
                return Err(AccountError::Conflict);
            }
            t.users.insert(k, user);
            Ok(())
        })
    }

    fn user(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> BoxFuture<'_, AccountResult<Option<UserRecord>>> {
        let k = key(tenant_id, username);
        self.with(move |t| Ok(t.users.get(&k).cloned()))
    }

    fn update_user(&self, user: UserRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.with(move |t| {
            let row = t
                .users
                .get_mut(&key(&user.tenant_id, &user.username))
                .ok_or(AccountError::NotFound)?;
            *row = user;
            Ok(())
        })
    }

    fn delete_user(&self, tenant_id: &str, username: &str) -> BoxFuture<'_, AccountResult<bool>> {
        let k = key(tenant_id, username);
        self.with(move |t| Ok(t.users.remove(&k).is_some()))
    }

    fn list_users(&self, tenant_id: &str) -> BoxFuture<'_, AccountResult<Vec<UserRecord>>> {
        let tenant_id = tenant_id.to_owned();
        self.with(move |t| {
            let mut users: Vec<_> = t
                .users
                .values()
                .filter(|u| u.tenant_id == tenant_id)
                .cloned()
                .collect();
            users.sort_by(|a, b| a.username.cmp(&b.username));
            Ok(users)
        })
    }

    fn record_failed_login(
        &self,
        tenant_id: &str,
        username: &str,
        max_failures: u32,
        lock_until: DateTime<Utc>,
    ) -> BoxFuture<'_, AccountResult<Option<DateTime<Utc>>>> {
        let k = key(tenant_id, username);
        self.with(move |t| {
            let Some(user) = t.users.get_mut(&k) else {
                return Ok(None);
            };
            user.failed_logins += 1;
            if user.failed_logins < max_failures {
                return Ok(None);
            }
            user.failed_logins = 0;
            user.locked_until = Some(lock_until);
            Ok(Some(lock_until))
        })
    }

    fn clear_failed_logins(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> BoxFuture<'_, AccountResult<()>> {
        let k = key(tenant_id, username);
        self.with(move |t| {
            if let Some(user) = t.users.get_mut(&k) {
                user.failed_logins = 0;
                user.locked_until = None;
            }
            Ok(())
        })
    }

    fn insert_refresh(&self, token: RefreshRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.with(move |t| match t.refresh.entry(token.jti.clone()) {
            std::collections::hash_map::Entry::Occupied(_) => Err(AccountError::Conflict),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(token);
                Ok(())
            }
        })
    }

    fn use_refresh(
        &self,
        jti: &str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, AccountResult<RefreshUse>> {
        let jti = jti.to_owned();
        self.with(move |t| {
            Ok(match t.refresh.get_mut(&jti) {
                None => RefreshUse::Unknown,
                Some(token) if token.used_at.is_some() => RefreshUse::Reused(token.clone()),
                Some(token) => {
                    token.used_at = Some(now);
                    RefreshUse::Fresh(token.clone())
                }
            })
        })
    }

    fn revoke(&self, revoked: RevokedId) -> BoxFuture<'_, AccountResult<()>> {
        self.with(move |t| {
            t.revoked.insert(revoked.id, revoked.expires_at);
            Ok(())
        })
    }

    fn any_revoked(&self, ids: &[&str]) -> BoxFuture<'_, AccountResult<bool>> {
        let found = {
            let tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
            ids.iter().any(|id| tables.revoked.contains_key(*id))
        };
        ready(Ok(found)).boxed()
    }

    fn purge_revoked(&self, now: DateTime<Utc>) -> BoxFuture<'_, AccountResult<()>> {
        self.with(move |t| {
            t.revoked.retain(|_, expires_at| *expires_at > now);
            t.refresh.retain(|_, token| token.expires_at > now);
            Ok(())
        })
    }

    fn insert_api_key(&self, api_key: ApiKeyRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.with(move |t| {
            if t.api_keys.values().any(|k| k.key_hash == api_key.key_hash)
                || t.api_keys.contains_key(&api_key.key_id)
            {
                return Err(AccountError::Conflict);
            }
            t.api_keys.insert(api_key.key_id.clone(), api_key);
            Ok(())
        })
    }

    fn api_key_by_hash(
        &self,
        key_hash: &str,
    ) -> BoxFuture<'_, AccountResult<Option<ApiKeyRecord>>> {
        let key_hash = key_hash.to_owned();
        self.with(move |t| {
            Ok(t.api_keys
                .values()
                .find(|k| k.key_hash == key_hash)
                .cloned())
        })
    }

    fn list_api_keys(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> BoxFuture<'_, AccountResult<Vec<ApiKeyRecord>>> {
        let (tenant_id, username) = (tenant_id.to_owned(), username.to_owned());
        self.with(move |t| {
            let mut keys: Vec<_> = t
                .api_keys
                .values()
                .filter(|k| k.tenant_id == tenant_id && k.username == username)
                .cloned()
                .collect();
            keys.sort_by_key(|k| k.created_at);
            Ok(keys)
        })
    }

    fn revoke_api_key(
        &self,
        tenant_id: &str,
        username: &str,
        key_id: &str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, AccountResult<bool>> {
        let (tenant_id, username, key_id) =
            (tenant_id.to_owned(), username.to_owned(), key_id.to_owned());
        self.with(move |t| {
            Ok(match t.api_keys.get_mut(&key_id) {
                Some(k)
                    if k.tenant_id == tenant_id
                        && k.username == username
                        && k.revoked_at.is_none() =>
                {
                    k.revoked_at = Some(now);
                    true
                }
                _ => false,
            })
        })
    }

    fn put_role(&self, role: RoleRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.with(move |t| {
            t.roles.insert(key(&role.tenant_id, &role.name), role);
            Ok(())
        })
    }

    fn delete_role(&self, tenant_id: &str, name: &str) -> BoxFuture<'_, AccountResult<bool>> {
        let k = key(tenant_id, name);
        self.with(move |t| Ok(t.roles.remove(&k).is_some()))
    }

    fn all_roles(&self) -> BoxFuture<'_, AccountResult<Vec<RoleRecord>>> {
        self.with(|t| Ok(t.roles.values().cloned().collect()))
    }

    fn put_policy(&self, policy: PolicyRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.with(move |t| {
            t.policies
                .insert(key(&policy.tenant_id, &policy.policy_id), policy);
            Ok(())
        })
    }

    fn delete_policy(
        &self,
        tenant_id: &str,
        policy_id: &str,
    ) -> BoxFuture<'_, AccountResult<bool>> {
        let k = key(tenant_id, policy_id);
        self.with(move |t| Ok(t.policies.remove(&k).is_some()))
    }

    fn all_policies(&self) -> BoxFuture<'_, AccountResult<Vec<PolicyRecord>>> {
        self.with(|t| Ok(t.policies.values().cloned().collect()))
    }

    fn insert_tenant(&self, tenant: TenantRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.with(move |t| {
            if t.tenants.contains_key(&tenant.tenant_id) {
                return Err(AccountError::Conflict);
            }
            t.tenants.insert(tenant.tenant_id.clone(), tenant);
            Ok(())
        })
    }

    fn update_tenant(&self, tenant: TenantRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.with(move |t| match t.tenants.get_mut(&tenant.tenant_id) {
            Some(row) => {
                *row = tenant;
                Ok(())
            }
            None => Err(AccountError::NotFound),
        })
    }

    fn all_tenants(&self) -> BoxFuture<'_, AccountResult<Vec<TenantRecord>>> {
        self.with(|t| Ok(t.tenants.values().cloned().collect()))
    }

    fn append_audit(&self, entry: AuditRecord) -> BoxFuture<'_, AccountResult<()>> {
        self.with(move |t| {
            t.audit.push(entry);
            Ok(())
        })
    }

    fn query_audit(&self, query: AuditQuery) -> BoxFuture<'_, AccountResult<Vec<AuditRecord>>> {
        self.with(move |t| {
            Ok(t.audit
                .iter()
                .rev()
                .filter(|e| {
                    e.tenant_id == query.tenant_id
                        && query.user_id.as_ref().is_none_or(|u| *u == e.user_id)
                        && query.action.as_ref().is_none_or(|a| *a == e.action)
                        && query.outcome.is_none_or(|o| o == e.outcome)
                        && query.since.is_none_or(|s| e.at >= s)
                        && query.until.is_none_or(|u| e.at <= u)
                })
                .take(query.limit)
                .cloned()
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserRecord {
        UserRecord {
            tenant_id: "t".into(),
            username: name.into(),
            password_hash: "h".into(),
            roles: vec![],
            attributes: Default::default(),
            disabled: false,
            failed_logins: 0,
            locked_until: None,
            totp_secret: None,
            totp_enabled: false,
            created_at: Utc::now(),
        }
    }

    #[actix_rt::test]
    async fn failures_lock_at_the_limit_and_refresh_tokens_are_used_once() {
        let store = MemoryAccounts::new();
        store.insert_user(user("a")).await.unwrap();
        assert_eq!(
            store.insert_user(user("a")).await,
            Err(AccountError::Conflict)
        );
        let until = Utc::now();
        for _ in 0..2 {
            assert_eq!(
                store.record_failed_login("t", "a", 3, until).await,
                Ok(None)
            );
        }
        assert_eq!(
            store.record_failed_login("t", "a", 3, until).await,
            Ok(Some(until))
        );
        assert_eq!(
            store.record_failed_login("t", "nobody", 3, until).await,
            Ok(None)
        );

        let token = RefreshRecord {
            jti: "j".into(),
            family_id: "f".into(),
            tenant_id: "t".into(),
            username: "a".into(),
            expires_at: Utc::now(),
            used_at: None,
        };
        store.insert_refresh(token).await.unwrap();
        assert!(matches!(
            store.use_refresh("j", until).await,
            Ok(RefreshUse::Fresh(_))
        ));
        assert!(matches!(
            store.use_refresh("j", until).await,
            Ok(RefreshUse::Reused(_))
        ));
        assert_eq!(store.use_refresh("x", until).await, Ok(RefreshUse::Unknown));
    }
}
