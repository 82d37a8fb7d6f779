//! Role-based access: the permission names, the built-in roles, the tenants' custom roles
//! (cached in-process, written through to the accounts store) and what a set of role names
//! grants.
//!
//! A token whose roles name no role this tenant defines (tokens minted by the Python gateway
//! carry none, or `["user"]`) is given the deployment's default role, so existing Kailash
//! tokens keep working after the switch.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, RwLock},
};

use kailash_actors::accounts::RoleRecord;

/// Every permission a role can hold.
pub const PERMISSIONS: &[&str] = &[
    "session:create",
    "session:read",
    "session:close",
    "workflow:create",
    "workflow:read",
    "workflow:delete",
    "workflow:execute",
    "execution:read",
    "execution:cancel",
    "webhook:manage",
    "apikey:manage",
    "user:manage",
    "role:manage",
    "policy:manage",
    "audit:read",
];

/// Managing tenants (`/api/admin/tenants`): held only by the `admin`s of the platform
/// (default) tenant, never granted by a role (see `Access::grants`).
pub const TENANT_MANAGE: &str = "tenant:manage";

/// A role defined by the gateway itself.
pub struct BuiltinRole {
    pub name: &'static str,
    pub permissions: &'static [&'static str],
    pub denied_node_types: &'static [&'static str],
}

/// Node types that run arbitrary code: only roles trusted to write workflows may use them.
const CODE_NODES: &[&str] = &["PythonCodeNode", "DataTransformer"];

pub const BUILTIN_ROLES: &[BuiltinRole] = &[
    BuiltinRole {
        name: "admin",
        permissions: PERMISSIONS,
        denied_node_types: &[],
    },
    BuiltinRole {
        name: "developer",
        permissions: &[
            "session:create",
            "session:read",
            "session:close",
            "workflow:create",
            "workflow:read",
            "workflow:delete",
            "workflow:execute",
            "execution:read",
            "execution:cancel",
            "webhook:manage",
            "apikey:manage",
        ],
        denied_node_types: &[],
    },
    BuiltinRole {
        name: "operator",
        permissions: &[
            "session:create",
            "session:read",
            "session:close",
            "workflow:read",
            "workflow:execute",
            "execution:read",
            "execution:cancel",
            "apikey:manage",
        ],
        denied_node_types: CODE_NODES,
    },
    BuiltinRole {
        name: "viewer",
        permissions: &[
            "session:create",
            "session:read",
            "workflow:read",
            "execution:read",
        ],
        denied_node_types: CODE_NODES,
    },
];

pub fn builtin(name: &str) -> Option<&'static BuiltinRole> {
    BUILTIN_ROLES.iter().find(|r| r.name == name)
}

/// What a principal's roles add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The roles that counted (known to the tenant), or the default role.
    pub roles: Vec<String>,
    pub permissions: BTreeSet<String>,
    /// Node types barred by every counted role (a type is allowed if any role allows it).
    pub denied_node_types: BTreeSet<String>,
}

/// The custom roles of every tenant, kept in memory for per-request decisions.
#[derive(Default)]
pub struct Roles {
    custom: RwLock<HashMap<(String, String), Arc<RoleRecord>>>,
}

impl Roles {
    pub fn put(&self, record: RoleRecord) {
        let key = (record.tenant_id.clone(), record.name.clone());
        self.write().insert(key, Arc::new(record));
    }

    pub fn remove(&self, tenant_id: &str, name: &str) {
        self.write()
            .remove(&(tenant_id.to_owned(), name.to_owned()));
    }

    /// Makes the custom roles exactly `records` (as another node left them).
    pub fn replace_all(&self, records: Vec<RoleRecord>) {
        let fresh: HashMap<_, _> = records
            .into_iter()
            .map(|r| ((r.tenant_id.clone(), r.name.clone()), Arc::new(r)))
            .collect();
        let mut custom = self.write();
        if *custom != fresh {
            *custom = fresh;
        }
    }

    /// The tenant's custom roles, by name.
    pub fn custom_roles(&self, tenant_id: &str) -> Vec<Arc<RoleRecord>> {
        let mut roles: Vec<_> = self
            .custom
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|r| r.tenant_id == tenant_id)
            .cloned()
            .collect();
        roles.sort_by(|a, b| a.name.cmp(&b.name));
        roles
    }

    pub fn exists(&self, tenant_id: &str, name: &str) -> bool {
        builtin(name).is_some() || self.custom(tenant_id, name).is_some()
    }

    fn custom(&self, tenant_id: &str, name: &str) -> Option<Arc<RoleRecord>> {
        self.custom
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(tenant_id.to_owned(), name.to_owned()))
            .cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<(String, String), Arc<RoleRecord>>> {
        self.custom.write().unwrap_or_else(|p| p.into_inner())
    }

    /// What `names` grant in `tenant_id`; `default_role` when none of them is a role there.
    pub fn grants(&self, tenant_id: &str, names: &[String], default_role: &str) -> Grants {
        let mut grants = Grants::default();
        let mut denied: Option<BTreeSet<String>> = None;
        let mut add = |name: &str, permissions: Vec<String>, denied_types: Vec<String>| {
            grants.roles.push(name.to_owned());
            grants.permissions.extend(permissions);
            let denied_types: BTreeSet<String> = denied_types.into_iter().collect();
            denied = Some(match denied.take() {
                None => denied_types,
                Some(so_far) => so_far.intersection(&denied_types).cloned().collect(),
            });
        };
        let mut resolve = |name: &str| -> bool {
            if let Some(role) = builtin(name) {
                add(
                    name,
                    role.permissions.iter().map(|p| p.to_string()).collect(),
                    role.denied_node_types
                        .iter()
                        .map(|t| t.to_string())
                        .collect(),
                );
                true
            } else if let Some(role) = self.custom(tenant_id, name) {
                add(
                    name,
                    role.permissions.clone(),
                    role.denied_node_types.clone(),
                );
                true
            } else {
                false
            }
        };
        let mut any = false;
        for name in names {
            any |= resolve(name);
        }
        if !any {
            resolve(default_role);
        }
        grants.denied_node_types = denied.unwrap_or_default();
        grants
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_roles_fall_back_to_the_default_and_node_rules_combine() {
        let roles = Roles::default();
        let legacy = roles.grants("t", &["user".into()], "developer");
        assert_eq!(legacy.roles, ["developer"]);
        assert!(legacy.permissions.contains("workflow:create"));
        let viewer = roles.grants("t", &["viewer".into()], "developer");
        assert!(!viewer.permissions.contains("workflow:create"));
        assert!(viewer.denied_node_types.contains("PythonCodeNode"));
        let both = roles.grants("t", &["viewer".into(), "developer".into()], "developer");
        assert!(both.denied_node_types.is_empty());
        for role in BUILTIN_ROLES {
            assert!(role.permissions.iter().all(|p| PERMISSIONS.contains(p)));
        }
    }
}
