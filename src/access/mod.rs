//! Authorization, decided in one place before a request reaches an actor.
//!
//! [`Access::authorize`] is the only decision point: the HTTP gate calls it for every
//! non-public route (the permission comes from [`required`], the route table below) and the
//! WebSocket connection calls it for every client message ([`ws_permission`]). A denial is
//! audited and answered 403 `forbidden` without saying why.
//!
//! A route with no row in the table is refused to everyone but holders of every permission,
//! so a new route is closed until it is given a permission here.
//!
//! The deployment's strategy picks the checks: `rbac` (the permission from the caller's
//! roles), `abac` (the Cedar policies in [`abac`]) or `hybrid` (both must allow).

pub mod abac;
pub mod audit;
pub mod rbac;

use std::sync::Arc;

use actix_web::http::Method;
use kailash_actors::{
    Caller,
    accounts::{AccountStore, Outcome},
    engine::workflow::Workflow,
};

use crate::{
    clock::Clock,
    config::AccessStrategy,
    http::{ApiError, ErrorCode},
};
use abac::{Policies, Subject, Target};
use audit::{AuditEvent, AuditLog};
use rbac::{Grants, Roles};

/// How a verified principal authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A bearer token; `family` when the gateway minted it at a login.
    Token {
        jti: String,
        family: Option<String>,
        expires_at: i64,
    },
    ApiKey {
        key_id: String,
    },
}

/// A verified caller and what it may do.
#[derive(Debug, Clone)]
pub struct Principal {
    pub caller: Caller,
    pub grants: Arc<Grants>,
    pub credential: Credential,
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Any authenticated caller.
    Authenticated,
    Permission(&'static str),
    /// No row for the route: only a caller holding every permission passes.
    Unlisted,
}

/// The permission each route needs, by method and route pattern. A method a listed route
/// does not serve needs nothing: the route answers 405 itself.
pub fn required(method: &Method, pattern: Option<&str>) -> Requirement {
    use Requirement::{Authenticated, Permission};
    let Some(pattern) = pattern else {
        // No route matches: the 404 handler answers.
        return Authenticated;
    };
    let m = method.as_str();
    match (m, pattern) {
        (_, "/" | "/api/stats" | "/api/auth/logout" | "/api/auth/me") => Authenticated,
        ("POST", "/api/sessions") => Permission("session:create"),
        ("GET", "/api/sessions" | "/api/sessions/{session_id}" | "/api/events/recent")
        | ("GET", "/ws" | "/events") => Permission("session:read"),
        ("DELETE", "/api/sessions/{session_id}") => Permission("session:close"),
        ("POST", "/api/workflows") => Permission("workflow:create"),
        ("GET", p) if p.starts_with("/api/workflows") || p.starts_with("/api/schemas/") => {
            Permission("workflow:read")
        }
        ("POST", "/api/executions") => Permission("workflow:execute"),
        (
            "GET",
            "/api/executions" | "/api/executions/history" | "/api/executions/{execution_id}",
        ) => Permission("execution:read"),
        ("DELETE", "/api/executions/{execution_id}") => Permission("execution:cancel"),
        (_, p) if p.starts_with("/api/webhooks") => Permission("webhook:manage"),
        (_, p) if p.starts_with("/api/auth/api-keys") => Permission("apikey:manage"),
        (_, p) if p.starts_with("/api/admin/users") => Permission("user:manage"),
        (_, p) if p.starts_with("/api/admin/roles") => Permission("role:manage"),
        (_, p) if p.starts_with("/api/admin/policies") => Permission("policy:manage"),
        (_, p) if p.starts_with("/api/admin/tenants") => Permission(rbac::TENANT_MANAGE),
        ("GET", "/api/admin/audit") => Permission("audit:read"),
        (_, p) if is_listed(p) => Authenticated,
        _ => Requirement::Unlisted,
    }
}

/// Patterns with a row above (for methods they do not serve).
fn is_listed(pattern: &str) -> bool {
    [
        "/api/sessions",
        "/api/events/recent",
        "/ws",
        "/events",
        "/api/workflows",
        "/api/schemas/",
        "/api/executions",
        "/api/admin/audit",
    ]
    .iter()
    .any(|p| pattern.starts_with(p))
}

/// The permission each WebSocket message needs: its HTTP twin's.
pub fn ws_permission(kind: &str) -> Requirement {
    match kind {
        "execute_workflow" => Requirement::Permission("workflow:execute"),
        "get_status" => Requirement::Permission("execution:read"),
        "cancel_execution" => Requirement::Permission("execution:cancel"),
        "subscribe_events" | "join_room" | "leave_room" | "room_message" => {
            Requirement::Permission("session:read")
        }
        _ => Requirement::Authenticated,
    }
}

/// The decision point, and the audit log it writes denials to.
pub struct Access {
    pub strategy: AccessStrategy,
    pub roles: Roles,
    pub policies: Policies,
    pub default_role: String,
    pub audit: AuditLog,
    /// Where ABAC reads the caller's account attributes.
    pub accounts: Arc<dyn AccountStore>,
    pub clock: Arc<dyn Clock>,
    /// The default tenant, whose administrators administer the platform.
    pub platform_tenant: Arc<str>,
}

/// Where a decision is asked from, for the audit entry.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// What was attempted: `METHOD /path` or `ws:<message type>`.
    pub resource: &'a str,
    pub client_ip: Option<&'a str>,
}

impl Access {
    /// What `roles` grant in `tenant_id`: their permissions, plus [`rbac::TENANT_MANAGE`]
    /// for an `admin` of the platform tenant. That permission is no role's to give (it is
    /// not in [`rbac::PERMISSIONS`]), so a tenant's own administrator cannot reach it
    /// through a custom role.
    pub fn grants(&self, tenant_id: &str, roles: &[String]) -> Grants {
        let mut grants = self.roles.grants(tenant_id, roles, &self.default_role);
        if tenant_id == &*self.platform_tenant && grants.roles.iter().any(|r| r == "admin") {
            grants.permissions.insert(rbac::TENANT_MANAGE.to_owned());
        }
        grants
    }

    /// Whether `principal` meets `requirement` (no audit).
    pub fn allows(&self, principal: &Principal, requirement: Requirement) -> bool {
        let permissions = &principal.grants.permissions;
        match requirement {
            Requirement::Authenticated => true,
            Requirement::Permission(permission) => permissions.contains(permission),
            Requirement::Unlisted => rbac::PERMISSIONS.iter().all(|p| permissions.contains(*p)),
        }
    }

    /// Allows `requirement` on `target` as the strategy says, or audits the denial and
    /// answers 403 `forbidden`.
    pub async fn authorize(
        &self,
        principal: &Principal,
        requirement: Requirement,
        target: &Target<'_>,
        request: Request<'_>,
    ) -> Result<(), ApiError> {
        let action = match requirement {
            Requirement::Permission(permission) => permission,
            Requirement::Authenticated => "authenticated",
            Requirement::Unlisted => "unlisted",
        };
        // Policy administration is decided by roles alone: a bad policy set must not lock
        // out the administrators who would fix it.
        let strategy = match requirement {
            Requirement::Permission("policy:manage") => AccessStrategy::Rbac,
            _ => self.strategy,
        };
        let allowed = match strategy {
            AccessStrategy::Rbac => self.allows(principal, requirement),
            AccessStrategy::Abac => {
                self.policies_allow(principal, action, target, request)
                    .await?
            }
            AccessStrategy::Hybrid => {
                self.allows(principal, requirement)
                    && self
                        .policies_allow(principal, action, target, request)
                        .await?
            }
        };
        if allowed {
            return Ok(());
        }
        Err(self.deny(principal, action, request).await)
    }

    /// The Cedar decision, with the caller's account attributes (none for a token whose
    /// user has no account here).
    async fn policies_allow(
        &self,
        principal: &Principal,
        action: &str,
        target: &Target<'_>,
        request: Request<'_>,
    ) -> Result<bool, ApiError> {
        let caller = &principal.caller;
        let account = self
            .accounts
            .user(&caller.tenant_id, &caller.user_id)
            .await
            .map_err(ApiError::internal)?;
        let attributes = account.map(|a| a.attributes).unwrap_or_default();
        let subject = Subject {
            user_id: &caller.user_id,
            tenant_id: &caller.tenant_id,
            roles: &principal.grants.roles,
            attributes: &attributes,
        };
        Ok(self.policies.allows(
            &subject,
            action,
            target,
            self.clock.now(),
            request.client_ip,
        ))
    }

    /// The checks a new workflow gets beyond `workflow:create`: the node-level rules of the
    /// caller's roles (always), and the policies on the workflow's own attributes (`abac`
    /// and `hybrid`).
    pub async fn authorize_workflow(
        &self,
        principal: &Principal,
        workflow: &Workflow,
        request: Request<'_>,
    ) -> Result<(), ApiError> {
        let denied = &principal.grants.denied_node_types;
        if workflow.nodes.iter().any(|n| denied.contains(n.node_type)) {
            return Err(self.deny(principal, "workflow:node_type", request).await);
        }
        if self.strategy == AccessStrategy::Rbac {
            return Ok(());
        }
        let target = Target::Workflow {
            name: &workflow.name,
            metadata: &workflow.metadata,
            node_types: workflow.nodes.iter().map(|n| n.node_type).collect(),
        };
        let action = "workflow:create";
        if self
            .policies_allow(principal, action, &target, request)
            .await?
        {
            return Ok(());
        }
        Err(self.deny(principal, action, request).await)
    }

    /// Audits a denial of `action` and gives the 403 to answer with.
    pub async fn deny(
        &self,
        principal: &Principal,
        action: &str,
        request: Request<'_>,
    ) -> ApiError {
        self.audit
            .record(AuditEvent {
                tenant_id: &principal.caller.tenant_id,
                user_id: &principal.caller.user_id,
                action,
                outcome: Outcome::Denied,
                resource: Some(request.resource),
                client_ip: request.client_ip,
            })
            .await;
        ApiError::new(ErrorCode::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_their_permission_and_unknown_routes_are_closed() {
        assert_eq!(
            required(&Method::POST, Some("/api/sessions")),
            Requirement::Permission("session:create")
        );
        assert_eq!(
            required(&Method::PUT, Some("/api/sessions")),
            Requirement::Authenticated
        );
        assert_eq!(
            required(&Method::GET, Some("/api/brand-new")),
            Requirement::Unlisted
        );
        assert_eq!(required(&Method::GET, None), Requirement::Authenticated);
    }
}
