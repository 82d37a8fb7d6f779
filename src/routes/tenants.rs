//! `/api/admin/tenants`: the platform administrators' view of every tenant — create, list,
//! read, change, deactivate and activate. Only callers holding `tenant:manage` (the `admin`s
//! of the default tenant) reach these handlers; the gate refuses everyone else. Each change
//! is audited in the administrator's own tenant and takes effect on this node at once (on
//! the others of a cluster within the shared-state sync's 2 s).

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use kailash_actors::accounts::{AccountError, TenantLimits, TenantRecord};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    admin::{audit, field, invalid},
    auth::principal,
};
use crate::{
    app::AppState,
    auth::{Identity, login::store_error},
    http::{ApiError, ErrorCode, FieldError, JsonBody},
    tenants,
};

const MAX_ID_CHARS: usize = 64;
const MAX_TENANT_NAME_CHARS: usize = 128;

fn tenant_json(tenant: &TenantRecord) -> Value {
    json!({
        "tenant_id": tenant.tenant_id,
        "name": tenant.name,
        "active": tenant.active,
        "features": tenant.features,
        "allowed_node_types": tenant.allowed_node_types,
        "limits": tenant.limits,
        "created_at": tenant.created_at,
        "updated_at": tenant.updated_at,
    })
}

/// The body of `POST` (every field but `name` optional) and `PATCH` (each given field
/// replaces the stored one whole; `tenant_id` cannot change). `active` is not a field:
/// deactivation has effects of its own and its own route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    limits: Option<TenantLimits>,
    #[serde(default)]
    features: Option<Map<String, Value>>,
    #[serde(default)]
    allowed_node_types: Option<Vec<String>>,
}

impl TenantBody {
    /// Every problem with the fields that are present.
    fn problems(&self, state: &AppState) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(name) = &self.name
            && (name.trim().is_empty() || name.chars().count() > MAX_TENANT_NAME_CHARS)
        {
            errors.push(field("name", "must be 1 to 128 characters, not blank"));
        }
        for (key, value) in self.limits.iter().flat_map(TenantLimits::entries) {
            if value == Some(0) {
                errors.push(field(
                    format!("limits.{key}"),
                    "must be at least 1 (leave it out for no limit)",
                ));
            }
        }
        for (key, value) in self.features.iter().flatten() {
            if !value.is_boolean() {
                errors.push(field(format!("features.{key}"), "must be true or false"));
            }
        }
        let registry = state.gateway.node_registry();
        for (i, node_type) in self.allowed_node_types.iter().flatten().enumerate() {
            if registry.get(node_type).is_none() {
                errors.push(field(
                    format!("allowed_node_types[{i}]"),
                    "is not a node type",
                ));
            }
        }
        errors
    }

    /// Applies the fields that are present to `tenant`.
    fn apply(self, tenant: &mut TenantRecord) {
        if let Some(name) = self.name {
            tenant.name = name;
        }
        if let Some(limits) = self.limits {
            tenant.limits = limits;
        }
        if let Some(features) = self.features {
            tenant.features = features;
        }
        if let Some(types) = self.allowed_node_types {
            tenant.allowed_node_types = types;
        }
    }
}

/// Tenant ids travel in tokens, keys and logs: letters, digits and `_-.` only.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

fn find(state: &AppState, tenant_id: &str) -> Result<TenantRecord, ApiError> {
    state
        .tenants
        .get(tenant_id)
        .map(|t| (*t).clone())
        .ok_or_else(|| ApiError::new(ErrorCode::TenantNotFound))
}

/// Writes a changed tenant through to the store, then to this node's table.
async fn save(state: &AppState, tenant: TenantRecord) -> Result<(), ApiError> {
    state
        .accounts
        .update_tenant(tenant.clone())
        .await
        .map_err(|e| match e {
            AccountError::NotFound => ApiError::new(ErrorCode::TenantNotFound),
            other => store_error(other),
        })?;
    state.tenants.put(tenant);
    Ok(())
}

pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let tenants: Vec<_> = state
        .tenants
        .list()
        .iter()
        .map(|t| tenant_json(t))
        .collect();
    HttpResponse::Ok().json(json!({"total": tenants.len(), "tenants": tenants}))
}

pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    JsonBody(body): JsonBody<TenantBody>,
) -> Result<HttpResponse, ApiError> {
    let admin = principal(&identity)?;
    let mut errors = body.problems(&state);
    if body.name.is_none() {
        errors.push(field("name", "is required"));
    }
    if let Some(id) = &body.tenant_id
        && !valid_id(id)
    {
        errors.push(field("tenant_id", "must be 1 to 64 letters, digits or _-."));
    }
    invalid(errors)?;
    let tenant_id = body
        .tenant_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut tenant = TenantRecord::new(tenant_id, "", Utc::now());
    body.apply(&mut tenant);
    match state.accounts.insert_tenant(tenant.clone()).await {
        Err(AccountError::Conflict) => return Err(ApiError::new(ErrorCode::TenantExists)),
        other => other.map_err(store_error)?,
    }
    state.tenants.put(tenant.clone());
    audit(&state, &req, admin, "tenant.create", &tenant.tenant_id).await;
    Ok(HttpResponse::Created().json(tenant_json(&tenant)))
}

pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(tenant_json(&find(&state, &path)?)))
}

pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
    JsonBody(body): JsonBody<TenantBody>,
) -> Result<HttpResponse, ApiError> {
    let admin = principal(&identity)?;
    let mut tenant = find(&state, &path)?;
    let mut errors = body.problems(&state);
    if body.tenant_id.is_some() {
        errors.push(field("tenant_id", "cannot be changed"));
    }
    invalid(errors)?;
    body.apply(&mut tenant);
    tenant.updated_at = Utc::now();
    save(&state, tenant.clone()).await?;
    audit(&state, &req, admin, "tenant.update", &tenant.tenant_id).await;
    Ok(HttpResponse::Ok().json(tenant_json(&tenant)))
}

pub async fn deactivate(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_active(req, state, identity, path, false).await
}

pub async fn activate(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_active(req, state, identity, path, true).await
}

/// Turns a tenant on or off. Idempotent: a tenant already in that state is answered as it
/// is. Deactivating ends the tenant's live work ([`tenants::end_live_work`]).
async fn set_active(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
    active: bool,
) -> Result<HttpResponse, ApiError> {
    let admin = principal(&identity)?;
    let mut tenant = find(&state, &path)?;
    if !active && state.tenants.is_default(&tenant.tenant_id) {
        return Err(ApiError::new(ErrorCode::DefaultTenant));
    }
    if tenant.active != active {
        tenant.active = active;
        tenant.updated_at = Utc::now();
        save(&state, tenant.clone()).await?;
        let action = if active {
            "tenant.activate"
        } else {
            "tenant.deactivate"
        };
        audit(&state, &req, admin, action, &tenant.tenant_id).await;
        if !active {
            tenants::end_live_work(&state, &tenant.tenant_id).await;
        }
    }
    Ok(HttpResponse::Ok().json(tenant_json(&tenant)))
}
