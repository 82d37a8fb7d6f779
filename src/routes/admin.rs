//! `/api/admin/*`: users and their roles, custom roles, and the audit log — all within the
//! administrator's own tenant. Each change is audited.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use kailash_actors::accounts::{AccountError, AuditQuery, Outcome, RoleRecord, UserRecord};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::auth::principal;
use crate::{
    access::{
        Principal,
        rbac::{BUILTIN_ROLES, PERMISSIONS, builtin},
    },
    app::AppState,
    auth::{self, Identity, login::store_error},
    config::MIN_PASSWORD_CHARS,
    http::{ApiError, ErrorCode, FieldError, JsonBody},
};

const MAX_NAME_CHARS: usize = 64;
const MAX_AUDIT_LIMIT: usize = 1000;

/// Audits a successful administrative change.
pub(super) async fn audit(
    state: &AppState,
    req: &HttpRequest,
    who: &Principal,
    action: &str,
    on: &str,
) {
    let ip = auth::client_ip(req);
    let (tenant_id, user_id) = (&who.caller.tenant_id, &who.caller.user_id);
    let audit = &state.access.audit;
    audit
        .success(tenant_id, user_id, action, Some(on), ip.as_deref())
        .await;
}

pub(super) fn invalid(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(ErrorCode::InvalidRequest)
        .with_detail("The request body has invalid fields")
        .with_errors(errors))
}

pub(super) fn field(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c))
}

fn user_json(user: &UserRecord) -> Value {
    json!({
        "username": user.username,
        "tenant_id": user.tenant_id,
        "roles": user.roles,
        "attributes": user.attributes,
        "disabled": user.disabled,
        "locked_until": user.locked_until,
        "mfa_enabled": user.totp_enabled,
        "created_at": user.created_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    attributes: Option<Map<String, Value>>,
    #[serde(default)]
    disabled: Option<bool>,
}

impl UserChange {
    fn problems(&self, state: &AppState, tenant_id: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(password) = &self.password
            && password.chars().count() < MIN_PASSWORD_CHARS
        {
            errors.push(field(
                "password",
                format!("must be at least {MIN_PASSWORD_CHARS} characters"),
            ));
        }
        for (i, role) in self.roles.iter().flatten().enumerate() {
            if !state.access.roles.exists(tenant_id, role) {
                errors.push(field(format!("roles[{i}]"), "is not a role"));
            }
        }
        errors
    }
}

pub async fn list_users(
    state: web::Data<AppState>,
    identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = &principal(&identity)?.caller.tenant_id;
    let users = state
        .accounts
        .list_users(tenant_id)
        .await
        .map_err(store_error)?;
    let users: Vec<_> = users.iter().map(user_json).collect();
    Ok(HttpResponse::Ok().json(json!({"total": users.len(), "users": users})))
}

pub async fn create_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    JsonBody(body): JsonBody<UserChange>,
) -> Result<HttpResponse, ApiError> {
    let admin = principal(&identity)?;
    let tenant_id = admin.caller.tenant_id.to_string();
    let mut errors = body.problems(&state, &tenant_id);
    let username = body.username.clone().unwrap_or_default();
    if !valid_name(&username) {
        errors.push(field(
            "username",
            "is required: 1 to 64 letters, digits or _-.@",
        ));
    }
    if body.password.is_none() {
        errors.push(field("password", "is required"));
    }
    invalid(errors)?;
    let password_hash = state
        .passwords
        .hash(body.password.unwrap_or_default())
        .await
        .map_err(ApiError::internal)?;
    let user = UserRecord {
        tenant_id,
        username,
        password_hash,
        roles: body.roles.unwrap_or_default(),
        attributes: body.attributes.unwrap_or_default(),
        disabled: body.disabled.unwrap_or(false),
        failed_logins: 0,
        locked_until: None,
        totp_secret: None,
        totp_enabled: false,
        created_at: Utc::now(),
    };
    match state.accounts.insert_user(user.clone()).await {
        Err(AccountError::Conflict) => return Err(ApiError::new(ErrorCode::UserExists)),
        other => other.map_err(store_error)?,
    }
    audit(&state, &req, admin, "user.create", &user.username).await;
    Ok(HttpResponse::Created().json(user_json(&user)))
}

async fn find_user(
    state: &AppState,
    admin: &Principal,
    name: &str,
) -> Result<UserRecord, ApiError> {
    state
        .accounts
        .user(&admin.caller.tenant_id, name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound))
}

pub async fn get_user(
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = find_user(&state, principal(&identity)?, &path).await?;
    Ok(HttpResponse::Ok().json(user_json(&user)))
}

pub async fn update_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
    JsonBody(body): JsonBody<UserChange>,
) -> Result<HttpResponse, ApiError> {
    let admin = principal(&identity)?;
    let mut user = find_user(&state, admin, &path).await?;
    let mut errors = body.problems(&state, &user.tenant_id);
    if body.username.is_some() {
        errors.push(field("username", "cannot be changed"));
    }
    invalid(errors)?;
    if let Some(password) = body.password {
        user.password_hash = state
            .passwords
            .hash(password)
            .await
            .map_err(ApiError::internal)?;
    }
    if let Some(roles) = body.roles {
        user.roles = roles;
    }
    if let Some(attributes) = body.attributes {
        user.attributes = attributes;
    }
    if let Some(disabled) = body.disabled {
        user.disabled = disabled;
    }
    state
        .accounts
        .update_user(user.clone())
        .await
        .map_err(|e| match e {
            AccountError::NotFound => ApiError::new(ErrorCode::UserNotFound),
            other => store_error(other),
        })?;
    audit(&state, &req, admin, "user.update", &user.username).await;
    Ok(HttpResponse::Ok().json(user_json(&user)))
}

pub async fn delete_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let admin = principal(&identity)?;
    if !state
        .accounts
        .delete_user(&admin.caller.tenant_id, &path)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::new(ErrorCode::UserNotFound));
    }
    audit(&state, &req, admin, "user.delete", &path).await;
    Ok(HttpResponse::Ok().json(json!({"message": "User deleted"})))
}

pub async fn list_roles(
    state: web::Data<AppState>,
    identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = &principal(&identity)?.caller.tenant_id;
    let mut roles: Vec<Value> = BUILTIN_ROLES
        .iter()
        .map(|r| {
            json!({"name": r.name, "builtin": true, "permissions": r.permissions,
                   "denied_node_types": r.denied_node_types})
        })
        .collect();
    roles.extend(state.access.roles.custom_roles(tenant_id).iter().map(|r| {
        json!({"name": r.name, "builtin": false, "permissions": r.permissions,
               "denied_node_types": r.denied_node_types, "created_at": r.created_at})
    }));
    Ok(HttpResponse::Ok().json(json!({"total": roles.len(), "roles": roles})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    permissions: Vec<String>,
    #[serde(default)]
    denied_node_types: Vec<String>,
}

pub async fn put_role(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
    JsonBody(body): JsonBody<RoleBody>,
) -> Result<HttpResponse, ApiError> {
    let admin = principal(&identity)?;
    if builtin(&path).is_some() {
        return Err(
            ApiError::new(ErrorCode::RoleInUse).with_detail("Built-in roles cannot be changed")
        );
    }
    let mut errors = Vec::new();
    if !valid_name(&path) {
        errors.push(field("name", "must be 1 to 64 letters, digits or _-.@"));
    }
    for (i, permission) in body.permissions.iter().enumerate() {
        if !PERMISSIONS.contains(&permission.as_str()) {
            errors.push(field(format!("permissions[{i}]"), "is not a permission"));
        }
    }
    for (i, node_type) in body.denied_node_types.iter().enumerate() {
        if state.gateway.node_registry().get(node_type).is_none() {
            errors.push(field(
                format!("denied_node_types[{i}]"),
                "is not a node type",
            ));
        }
    }
    invalid(errors)?;
    let role = RoleRecord {
        tenant_id: admin.caller.tenant_id.to_string(),
        name: path.clone(),
        permissions: body.permissions,
        denied_node_types: body.denied_node_types,
        created_at: Utc::now(),
    };
    state
        .accounts
        .put_role(role.clone())
        .await
        .map_err(store_error)?;
    state.access.roles.put(role.clone());
    audit(&state, &req, admin, "role.put", &role.name).await;
    Ok(
        HttpResponse::Ok().json(json!({"name": role.name, "builtin": false,
        "permissions": role.permissions, "denied_node_types": role.denied_node_types,
        "created_at": role.created_at})),
    )
}

pub async fn delete_role(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let admin = principal(&identity)?;
    if builtin(&path).is_some() {
        return Err(
            ApiError::new(ErrorCode::RoleInUse).with_detail("Built-in roles cannot be deleted")
        );
    }
    if !state
        .accounts
        .delete_role(&admin.caller.tenant_id, &path)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::new(ErrorCode::RoleNotFound));
    }
    state.access.roles.remove(&admin.caller.tenant_id, &path);
    audit(&state, &req, admin, "role.delete", &path).await;
    Ok(HttpResponse::Ok().json(json!({"message": "Role deleted"})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    user: Option<String>,
    action: Option<String>,
    outcome: Option<Outcome>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<usize>,
}

pub async fn audit_log(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = principal(&identity)?.caller.tenant_id.to_string();
    let query = query.into_inner();
    let entries = state
        .accounts
        .query_audit(AuditQuery {
            tenant_id,
            user_id: query.user,
            action: query.action,
            outcome: query.outcome,
            since: query.since,
            until: query.until,
            limit: query.limit.unwrap_or(100).clamp(1, MAX_AUDIT_LIMIT),
        })
        .await
        .map_err(store_error)?;
    Ok(HttpResponse::Ok().json(json!({"total": entries.len(), "entries": entries})))
}
