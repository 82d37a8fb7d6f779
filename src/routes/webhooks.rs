//! `/api/webhooks`: register, list and unregister the caller's webhooks, and read a
//! webhook's recent deliveries. Delivery itself is in [`crate::realtime::webhooks`].

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{SessionQuery, event_types_param};
use crate::{
    app::AppState,
    auth::Identity,
    http::{ApiError, ErrorCode, JsonBody},
    realtime::webhooks::NewWebhook,
};

#[derive(Debug, Deserialize)]
pub struct RegisterWebhook {
    url: String,
    secret: Option<String>,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    session_id: Option<String>,
}

pub async fn register(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<SessionQuery>,
    JsonBody(body): JsonBody<RegisterWebhook>,
) -> Result<HttpResponse, ApiError> {
    let caller = identity.caller(query.user_id.as_deref());
    // The session may be named in the body or, like other session-scoped routes, the query.
    let session_id = body
        .session_id
        .as_deref()
        .or(query.session_id.as_deref())
        .map(|raw| {
            raw.parse::<Uuid>()
                .map_err(|_| ApiError::new(ErrorCode::SessionNotFound))
        })
        .transpose()?;
    let event_types = event_types_param(Some(&body.event_types.join(",")))?.unwrap_or_default();
    let view = state
        .webhooks
        .register(
            &caller,
            NewWebhook {
                url: body.url,
                secret: body.secret,
                event_types,
                headers: body.headers,
                session_id,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

pub async fn list(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<SessionQuery>,
) -> HttpResponse {
    let webhooks = state
        .webhooks
        .list(&identity.caller(query.user_id.as_deref()));
    HttpResponse::Ok().json(json!({"total": webhooks.len(), "webhooks": webhooks}))
}

fn webhook_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::new(ErrorCode::WebhookNotFound))
}

pub async fn unregister(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<SessionQuery>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state
        .webhooks
        .unregister(
            &identity.caller(query.user_id.as_deref()),
            webhook_id(&path)?,
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({"message": "Webhook unregistered"})))
}

pub async fn deliveries(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<SessionQuery>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (webhook, deliveries) = state.webhooks.deliveries(
        &identity.caller(query.user_id.as_deref()),
        webhook_id(&path)?,
    )?;
    Ok(HttpResponse::Ok().json(json!({
        "webhook": webhook,
        "total": deliveries.len(),
        "deliveries": deliveries,
    })))
}
