//! `/api/admin/policies`: the Cedar policies in force for the administrator's tenant — the
//! shipped ones (read-only, from `policies_path`) and the tenant's own, which are validated
//! (a bad one is a 400 naming line and column) and audited on every change.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use kailash_actors::accounts::PolicyRecord;
use serde::Deserialize;
use serde_json::json;

use super::{admin::audit, auth::principal};
use crate::{
    access::abac,
    app::AppState,
    auth::{Identity, login::store_error},
    http::{ApiError, ErrorCode, FieldError, JsonBody},
};

pub async fn list(
    state: web::Data<AppState>,
    identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = &principal(&identity)?.caller.tenant_id;
    let (shipped, stored) = state.access.policies.listing(tenant_id);
    let shipped: Vec<_> = shipped
        .into_iter()
        .map(|(source, text)| json!({"source": source, "text": text}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "strategy": state.settings.access_strategy,
        "shipped": shipped,
        "policies": stored,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    text: String,
}

pub async fn put(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
    JsonBody(body): JsonBody<PolicyBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = principal(&identity)?.caller.tenant_id.to_string();
    let policy_id = path.into_inner();
    if policy_id.is_empty()
        || policy_id.len() > 64
        || !policy_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        return Err(
            ApiError::new(ErrorCode::InvalidRequest).with_errors(vec![FieldError {
                path: "policy_id".into(),
                message: "must be 1 to 64 letters, digits or _-.".into(),
            }]),
        );
    }
    let parsed = abac::parse(&policy_id, &body.text).map_err(|errors| {
        ApiError::new(ErrorCode::InvalidPolicy)
            .with_detail(format!("The policy does not parse: {}", errors[0].message))
            .with_errors(errors)
    })?;
    if parsed.policies().next().is_none() {
        return Err(ApiError::new(ErrorCode::InvalidPolicy).with_detail("The text holds no policy"));
    }
    let record = PolicyRecord {
        tenant_id,
        policy_id,
        text: body.text,
        created_at: Utc::now(),
    };
    state
        .accounts
        .put_policy(record.clone())
        .await
        .map_err(store_error)?;
    state.access.policies.put(record.clone());
    audit(
        &state,
        &req,
        principal(&identity)?,
        "policy.put",
        &record.policy_id,
    )
    .await;
    Ok(HttpResponse::Ok().json(record))
}

pub async fn delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = principal(&identity)?.caller.tenant_id.to_string();
    if !state
        .accounts
        .delete_policy(&tenant_id, &path)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::new(ErrorCode::PolicyNotFound));
    }
    state.access.policies.remove(&tenant_id, &path);
    audit(&state, &req, principal(&identity)?, "policy.delete", &path).await;
    Ok(HttpResponse::Ok().json(json!({"message": "Policy deleted"})))
}
