//! Who is acting: the identity the gateway crate derived from a credential (or, in open
//! mode, from the request), reduced to what the actors need to decide visibility.

use std::sync::Arc;

/// A tenant's id. Cheap to clone: every session and event carries one.
pub type TenantId = Arc<str>;
/// A principal's user id (the token's `sub`).
pub type UserId = Arc<str>;

/// The principal a command is executed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    /// Open mode (local development) trusts the request and lets every caller see every
    /// session of the tenant, as the Python gateway did. Gated callers see only their own.
    pub sees_all_sessions: bool,
}

impl Caller {
    /// A caller authenticated by a credential: sees only what it owns.
    pub fn authenticated(tenant_id: impl Into<TenantId>, user_id: impl Into<UserId>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            user_id: user_id.into(),
            sees_all_sessions: false,
        }
    }

    /// A caller in open mode, named by the request itself.
    pub fn open(tenant_id: impl Into<TenantId>, user_id: impl Into<UserId>) -> Self {
        Self {
            sees_all_sessions: true,
            ..Self::authenticated(tenant_id, user_id)
        }
    }

    /// Whether this caller may see something owned by `owner` (within its own tenant).
    pub fn may_access(&self, owner: &str) -> bool {
        self.sees_all_sessions || *self.user_id == *owner
    }
}
