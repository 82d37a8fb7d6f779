//! `/api/auth/*`: login, refresh, logout, who am I, TOTP enrolment, and the caller's own
//! API keys.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use jsonwebtoken::jwk::JwkSet;
use kailash_actors::accounts::{ApiKeyRecord, UserRecord};
use serde::Deserialize;
use serde_json::json;

use crate::{
    access::{Principal, rbac::PERMISSIONS},
    app::AppState,
    auth::{self, Identity, api_keys, login, mfa},
    http::{ApiError, ErrorCode, FieldError, JsonBody},
};

/// The public keys that verify the gateway's RS256/EdDSA tokens (none under HS256).
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let keys = state
        .auth
        .keys()
        .map(|k| k.jwks())
        .unwrap_or(JwkSet { keys: Vec::new() });
    HttpResponse::Ok().json(keys)
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<login::LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let ip = auth::client_ip(&req);
    let pair = login::login(&state, body, ip.as_deref()).await?;
    Ok(HttpResponse::Ok().json(pair))
}

#[derive(Debug, Deserialize)]
pub struct RefreshRequest {
    refresh_token: String,
}

pub async fn refresh(
    req: HttpRequest,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let ip = auth::client_ip(&req);
    let pair = login::refresh(&state, &body.refresh_token, ip.as_deref()).await?;
    Ok(HttpResponse::Ok().json(pair))
}

/// The principal behind a gated request; open mode has none to log out or own keys.
pub(super) fn principal(identity: &Identity) -> Result<&Principal, ApiError> {
    match identity {
        Identity::Authenticated(principal) => Ok(principal),
        Identity::Open { .. } => Err(ApiError::new(ErrorCode::InvalidRequest)
            .with_detail("This route needs gated mode: the gateway runs with auth_mode=open")),
    }
}

pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let ip = auth::client_ip(&req);
    login::logout(&state, principal(&identity)?, ip.as_deref()).await?;
    Ok(HttpResponse::Ok().json(json!({"message": "Logged out"})))
}

pub async fn me(identity: Identity) -> Result<HttpResponse, ApiError> {
    let principal = principal(&identity)?;
    Ok(HttpResponse::Ok().json(json!({
        "user_id": &*principal.caller.user_id,
        "tenant_id": &*principal.caller.tenant_id,
        "roles": principal.grants.roles,
        "permissions": principal.grants.permissions,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    expires_in_days: Option<u32>,
}

fn key_json(key: &ApiKeyRecord) -> serde_json::Value {
    json!({
        "key_id": key.key_id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": key.scopes,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    })
}

pub async fn create_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    JsonBody(body): JsonBody<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    let principal = principal(&identity)?;
    let mut errors = Vec::new();
    if body.name.trim().is_empty() || body.name.len() > 100 {
        errors.push(FieldError {
            path: "name".into(),
            message: "must be 1 to 100 characters".into(),
        });
    }
    // A key can only narrow its owner's permissions, never add to them.
    for (i, scope) in body.scopes.iter().enumerate() {
        if !PERMISSIONS.contains(&scope.as_str()) || !principal.grants.permissions.contains(scope) {
            errors.push(FieldError {
                path: format!("scopes[{i}]"),
                message: "is not a permission you hold".into(),
            });
        }
    }
    if body.expires_in_days == Some(0) {
        errors.push(FieldError {
            path: "expires_in_days".into(),
            message: "must be at least 1".into(),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidRequest)
            .with_detail("The request body has invalid fields")
            .with_errors(errors));
    }
    let new_key = api_keys::generate();
    let now = Utc::now();
    let record = ApiKeyRecord {
        key_id: uuid::Uuid::new_v4().to_string(),
        tenant_id: principal.caller.tenant_id.to_string(),
        username: principal.caller.user_id.to_string(),
        name: body.name,
        key_hash: new_key.hash,
        prefix: new_key.prefix,
        scopes: body.scopes,
        created_at: now,
        expires_at: body
            .expires_in_days
            .map(|days| now + chrono::Duration::days(days.into())),
        revoked_at: None,
    };
    state
        .accounts
        .insert_api_key(record.clone())
        .await
        .map_err(login::store_error)?;
    let ip = auth::client_ip(&req);
    let key_id = Some(record.key_id.as_str());
    let audit = &state.access.audit;
    audit
        .success(
            &record.tenant_id,
            &record.username,
            "apikey.create",
            key_id,
            ip.as_deref(),
        )
        .await;
    let mut body = key_json(&record);
    body["api_key"] = json!(new_key.secret);
    Ok(HttpResponse::Created().json(body))
}

pub async fn list_keys(
    state: web::Data<AppState>,
    identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let caller = &principal(&identity)?.caller;
    let keys = state
        .accounts
        .list_api_keys(&caller.tenant_id, &caller.user_id)
        .await
        .map_err(login::store_error)?;
    let keys: Vec<_> = keys.iter().map(key_json).collect();
    Ok(HttpResponse::Ok().json(json!({"total": keys.len(), "api_keys": keys})))
}

pub async fn revoke_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = &principal(&identity)?.caller;
    let revoked = state
        .accounts
        .revoke_api_key(&caller.tenant_id, &caller.user_id, &path, Utc::now())
        .await
        .map_err(login::store_error)?;
    if !revoked {
        return Err(ApiError::new(ErrorCode::ApiKeyNotFound));
    }
    let ip = auth::client_ip(&req);
    let audit = &state.access.audit;
    audit
        .success(
            &caller.tenant_id,
            &caller.user_id,
            "apikey.revoke",
            Some(&path),
            ip.as_deref(),
        )
        .await;
    Ok(HttpResponse::Ok().json(json!({"message": "API key revoked"})))
}

/// Starts TOTP enrolment with the password: a new secret (shown once) that logins need once
/// [`confirm_mfa`] proves the authenticator app has it.
pub async fn enroll_mfa(
    req: HttpRequest,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<login::LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let ip = auth::client_ip(&req);
    let mut user =
        login::authenticate(&state, body, login::SecondFactor::None, ip.as_deref()).await?;
    if user.totp_enabled {
        return Err(ApiError::new(ErrorCode::InvalidRequest)
            .with_detail("MFA is already enabled for this account"));
    }
    let secret = mfa::new_secret();
    user.totp_secret = Some(secret.clone());
    state
        .accounts
        .update_user(user.clone())
        .await
        .map_err(login::store_error)?;
    mfa_audit(&state, &user, "mfa.enroll", ip.as_deref()).await;
    Ok(HttpResponse::Ok().json(json!({
        "secret": secret,
        "otpauth_url": mfa::otpauth_url(&state.settings.title, &user.username, &secret),
    })))
}

/// Completes enrolment: password and a code from the new secret turn MFA on.
pub async fn confirm_mfa(
    req: HttpRequest,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<login::LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let ip = auth::client_ip(&req);
    let mut user =
        login::authenticate(&state, body, login::SecondFactor::Pending, ip.as_deref()).await?;
    user.totp_enabled = true;
    state
        .accounts
        .update_user(user.clone())
        .await
        .map_err(login::store_error)?;
    mfa_audit(&state, &user, "mfa.enable", ip.as_deref()).await;
    Ok(HttpResponse::Ok().json(json!({"message": "MFA enabled"})))
}

async fn mfa_audit(state: &AppState, user: &UserRecord, action: &str, ip: Option<&str>) {
    let audit = &state.access.audit;
    audit
        .success(&user.tenant_id, &user.username, action, None, ip)
        .await;
}
