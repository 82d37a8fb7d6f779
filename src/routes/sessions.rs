//! `/api/sessions`: create, list, read and close the caller's sessions.
//!
//! Ownership is decided by the tenant actor; here a session that is unknown, not the
//! caller's, or not even a well-formed id all answer the same 404.

use actix_web::{HttpResponse, web};
use kailash_actors::GatewayError;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::Identity,
    http::{ApiError, ErrorCode, FieldError, JsonBody},
};

/// Longest `user_id` open mode accepts from a request.
const MAX_USER_ID_LEN: usize = 256;

#[derive(Debug, Deserialize)]
pub struct CreateSession {
    /// Trusted in open mode only; gated mode takes the principal from the token.
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

pub async fn create(
    state: web::Data<AppState>,
    identity: Identity,
    JsonBody(body): JsonBody<CreateSession>,
) -> Result<HttpResponse, ApiError> {
    if body
        .user_id
        .as_ref()
        .is_some_and(|u| u.len() > MAX_USER_ID_LEN)
    {
        return Err(ApiError::new(ErrorCode::InvalidRequest)
            .with_detail("The request body has invalid fields")
            .with_errors(vec![FieldError {
                path: "user_id".into(),
                message: format!("must be at most {MAX_USER_ID_LEN} characters"),
            }]));
    }
    let caller = identity.caller(body.user_id.as_deref());
    let tenant_id = caller.tenant_id.clone();
    let metadata = Value::Object(body.metadata.unwrap_or_default());
    let session = state
        .gateway
        .create_session(caller, metadata)
        .await
        .inspect_err(|error| {
            if let GatewayError::TenantMaxSessions { .. } = error {
                state.metrics.quota_rejected("max_sessions", &tenant_id);
            }
        })?;
    Ok(HttpResponse::Ok().json(json!({
        "session_id": session.session_id,
        "user_id": session.user_id,
        "created_at": session.created_at,
        "active": true,
    })))
}

pub async fn list(
    state: web::Data<AppState>,
    identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let sessions = state.gateway.list_sessions(identity.caller(None)).await?;
    Ok(HttpResponse::Ok().json(json!({"total": sessions.len(), "sessions": sessions})))
}

fn session_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::new(ErrorCode::SessionNotFound))
}

pub async fn get(
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    let session = state.gateway.session(identity.caller(None), id).await?;
    Ok(HttpResponse::Ok().json(session))
}

pub async fn close(
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = session_id(&path)?;
    state
        .gateway
        .close_session(identity.caller(None), id)
        .await?;
    Ok(HttpResponse::Ok().json(json!({"message": "Session closed"})))
}
