//! The accounts port: the rows identity and access control keep — users (argon2id hash,
//! roles, attributes, lockout state, TOTP secret), refresh-token families, revoked token ids,
//! API keys (hashed), custom roles, ABAC policies, the audit log and the tenants — and the
//! [`AccountStore`] trait the gateway crate reads and writes them through.
//!
//! The trait is row-shaped on purpose: every method is one simple SQL statement in a
//! database adapter (an insert, a keyed select, a conditional update with `RETURNING`), and
//! everything returned is an owned copy. Hashing, token formats and policy evaluation live
//! in the gateway crate; this crate only stores what it is given. Everything tenant-owned
//! carries its `tenant_id`, and every keyed lookup includes it.

mod memory;
mod tenants;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use memory::MemoryAccounts;
pub use tenants::{TenantLimits, TenantRecord, TenantTable};

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// An insert met an existing row with the same key.
    #[error("already exists")]
    Conflict,
    /// An update named a row that does not exist.
    #[error("not found")]
    NotFound,
    /// The backing store failed; the message is for logs only.
    #[error("account store unavailable: {0}")]
    Unavailable(String),
}

pub type AccountResult<T> = Result<T, AccountError>;

/// The accounts share the store's database: when it fails, the accounts are unavailable.
impl From<crate::store::StoreError> for AccountError {
    fn from(error: crate::store::StoreError) -> Self {
        AccountError::Unavailable(error.to_string())
    }
}

/// A user account. Key: (`tenant_id`, `username`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub tenant_id: String,
    pub username: String,
    /// PHC string of an argon2id hash.
    pub password_hash: String,
    pub roles: Vec<String>,
    /// ABAC attributes (department, clearance, location, ...).
    pub attributes: Map<String, Value>,
    pub disabled: bool,
    pub failed_logins: u32,
    pub locked_until: Option<DateTime<Utc>>,
    /// Base32 TOTP secret once enrolment started; `totp_enabled` once confirmed.
    pub totp_secret: Option<String>,
    pub totp_enabled: bool,
    pub created_at: DateTime<Utc>,
}

/// One refresh token of a family (a login and its rotations). Key: `jti`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    pub jti: String,
    pub family_id: String,
    pub tenant_id: String,
    pub username: String,
    pub expires_at: DateTime<Utc>,
    /// Set when the token was exchanged; a second exchange is reuse.
    pub used_at: Option<DateTime<Utc>>,
}

/// What exchanging a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    Unknown,
    /// First use: the token is now marked used.
    Fresh(RefreshRecord),
    /// It had been used before: the family must be revoked.
    Reused(RefreshRecord),
}

/// A revoked token id (`jti`) or token family id, kept until the tokens it stops expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedId {
    pub id: String,
    pub expires_at: DateTime<Utc>,
}

/// An API key. Only the SHA-256 of the secret is stored. Key: `key_id`; looked up by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub tenant_id: String,
    pub username: String,
    pub name: String,
    /// Hex SHA-256 of the whole key.
    pub key_hash: String,
    /// The first characters of the key, shown in listings so owners can tell keys apart.
    pub prefix: String,
    /// Permissions the key is limited to (within its owner's); empty: all of the owner's.
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A custom role. Key: (`tenant_id`, `name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub tenant_id: String,
    pub name: String,
    pub permissions: Vec<String>,
    /// Node types this role may not put in a workflow.
    pub denied_node_types: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// An ABAC policy (Cedar text). Key: (`tenant_id`, `policy_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub tenant_id: String,
    pub policy_id: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// Whether an audited action was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

/// One audit log entry. Append-only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: String,
    pub tenant_id: String,
    pub at: DateTime<Utc>,
    /// The acting (or, for a failed login, the named) user.
    pub user_id: String,
    /// What was attempted, e.g. `auth.login`, `session:create`, `policy.update`.
    pub action: String,
    pub outcome: Outcome,
    /// What it was attempted on (a path, a key id, a policy id), if anything.
    pub resource: Option<String>,
    pub client_ip: Option<String>,
}

/// A filter over one tenant's audit log; `None` fields match everything. Newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditQuery {
    pub tenant_id: String,
    pub user_id: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
}

/// Where identity rows live. Implementations must make [`AccountStore::record_failed_login`]
/// and [`AccountStore::use_refresh`] atomic: concurrent logins and refreshes race on them.
pub trait AccountStore: Send + Sync {
    /// `Conflict` when the user exists.
    fn insert_user(&self, user: UserRecord) -> BoxFuture<'_, AccountResult<()>>;
    fn user(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> BoxFuture<'_, AccountResult<Option<UserRecord>>>;
    /// Replaces the row (matched by tenant and username); `NotFound` when there is none.
    fn update_user(&self, user: UserRecord) -> BoxFuture<'_, AccountResult<()>>;
    fn delete_user(&self, tenant_id: &str, username: &str) -> BoxFuture<'_, AccountResult<bool>>;
    fn list_users(&self, tenant_id: &str) -> BoxFuture<'_, AccountResult<Vec<UserRecord>>>;
    /// Counts one failed login; when the count reaches `max_failures` the account is locked
    /// until `lock_until` and the count restarts. Returns the lock end when this failure locked
    /// it. Unknown users: `Ok(None)`.
    fn record_failed_login(
        &self,
        tenant_id: &str,
        username: &str,
        max_failures: u32,
        lock_until: DateTime<Utc>,
    ) -> BoxFuture<'_, AccountResult<Option<DateTime<Utc>>>>;
    /// Clears the failure count and any lock (after a successful login).
    fn clear_failed_logins(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> BoxFuture<'_, AccountResult<()>>;

    fn insert_refresh(&self, token: RefreshRecord) -> BoxFuture<'_, AccountResult<()>>;
    /// Marks the refresh token used at `now`, saying whether it already was.
    fn use_refresh(
        &self,
        jti: &str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, AccountResult<RefreshUse>>;

    fn revoke(&self, revoked: RevokedId) -> BoxFuture<'_, AccountResult<()>>;
    /// Whether any of `ids` is revoked.
    fn any_revoked(&self, ids: &[&str]) -> BoxFuture<'_, AccountResult<bool>>;
    /// Forgets revocations whose tokens have expired by `now`.
    fn purge_revoked(&self, now: DateTime<Utc>) -> BoxFuture<'_, AccountResult<()>>;

    fn insert_api_key(&self, key: ApiKeyRecord) -> BoxFuture<'_, AccountResult<()>>;
    fn api_key_by_hash(&self, key_hash: &str)
    -> BoxFuture<'_, AccountResult<Option<ApiKeyRecord>>>;
    fn list_api_keys(
        &self,
        tenant_id: &str,
        username: &str,
    ) -> BoxFuture<'_, AccountResult<Vec<ApiKeyRecord>>>;
    /// Sets `revoked_at` on the owner's live key; false when there is none.
    fn revoke_api_key(
        &self,
        tenant_id: &str,
        username: &str,
        key_id: &str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, AccountResult<bool>>;

    /// Inserts or replaces.
    fn put_role(&self, role: RoleRecord) -> BoxFuture<'_, AccountResult<()>>;
    fn delete_role(&self, tenant_id: &str, name: &str) -> BoxFuture<'_, AccountResult<bool>>;
    /// Every tenant's custom roles (loaded once at start).
    fn all_roles(&self) -> BoxFuture<'_, AccountResult<Vec<RoleRecord>>>;

    /// Inserts or replaces.
    fn put_policy(&self, policy: PolicyRecord) -> BoxFuture<'_, AccountResult<()>>;
    fn delete_policy(&self, tenant_id: &str, policy_id: &str)
    -> BoxFuture<'_, AccountResult<bool>>;
    /// Every tenant's stored policies (loaded once at start).
    fn all_policies(&self) -> BoxFuture<'_, AccountResult<Vec<PolicyRecord>>>;

    /// `Conflict` when the tenant exists.
    fn insert_tenant(&self, tenant: TenantRecord) -> BoxFuture<'_, AccountResult<()>>;
    /// Replaces the row (matched by `tenant_id`); `NotFound` when there is none.
    fn update_tenant(&self, tenant: TenantRecord) -> BoxFuture<'_, AccountResult<()>>;
    /// Every tenant (loaded at start, and re-read in a cluster).
    fn all_tenants(&self) -> BoxFuture<'_, AccountResult<Vec<TenantRecord>>>;

    fn append_audit(&self, entry: AuditRecord) -> BoxFuture<'_, AccountResult<()>>;
    fn query_audit(&self, query: AuditQuery) -> BoxFuture<'_, AccountResult<Vec<AuditRecord>>>;
}
