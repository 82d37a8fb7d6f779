//! The HTTP routes. Every resource answers unknown methods with 405 and the app answers
//! unknown paths with 404, both in the gateway's JSON error shape.

mod admin;
mod auth;
mod cluster;
mod events;
mod executions;
mod health;
mod history;
mod meta;
mod policies;
mod sessions;
mod tenants;
mod webhooks;
mod workflows;

pub(crate) use events::{capitalized, event_types_param};

use actix_web::{HttpRequest, HttpResponse, Resource, web};
use serde::Deserialize;
use uuid::Uuid;

use kailash_actors::Caller;

use crate::{
    auth::Identity,
    http::{ApiError, ErrorCode, FieldError},
    realtime,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(|error, _| {
        ApiError::new(ErrorCode::InvalidRequest)
            .with_detail(format!("Invalid query string: {error}"))
            .into()
    }))
    .service(resource("/").get(meta::root))
    .service(resource("/ready").get(meta::ready))
    .service(resource("/metrics").get(meta::metrics))
    .service(resource("/api/stats").get(meta::stats))
    .service(resource("/health").get(health::health))
    .service(resource("/health/detailed").get(health::detailed))
    .service(
        resource("/api/sessions")
            .get(sessions::list)
            .post(sessions::create),
    )
    .service(
        resource("/api/sessions/{session_id}")
            .get(sessions::get)
            .delete(sessions::close),
    )
    .service(resource("/api/events/recent").get(events::recent))
    .service(
        resource("/api/webhooks")
            .get(webhooks::list)
            .post(webhooks::register),
    )
    .service(resource("/api/webhooks/{webhook_id}").delete(webhooks::unregister))
    .service(resource("/api/webhooks/{webhook_id}/deliveries").get(webhooks::deliveries))
    .service(resource("/ws").get(realtime::ws_connect))
    .service(resource("/events").get(realtime::sse_stream))
    .service(
        resource("/api/workflows")
            .get(workflows::list)
            .post(workflows::create),
    )
    .service(resource("/api/workflows/{workflow_id}").get(workflows::get))
    .service(resource("/api/schemas/nodes").get(workflows::node_schemas))
    .service(resource("/api/schemas/nodes/{node_type}").get(workflows::node_schema))
    .service(resource("/api/schemas/workflows/{workflow_id}").get(workflows::workflow_schema))
    .service(
        resource("/api/executions")
            .get(executions::list)
            .post(executions::start),
    )
    // Before `{execution_id}`, which would otherwise take "history" as an id.
    .service(resource("/api/executions/history").get(history::history))
    .service(
        resource("/api/executions/{execution_id}")
            .get(executions::get)
            .delete(executions::cancel),
    )
    .service(resource("/.well-known/jwks.json").get(auth::jwks))
    .service(resource("/api/auth/login").post(auth::login))
    .service(resource("/api/auth/refresh").post(auth::refresh))
    .service(resource("/api/auth/logout").post(auth::logout))
    .service(resource("/api/auth/me").get(auth::me))
    .service(resource("/api/auth/mfa/enroll").post(auth::enroll_mfa))
    .service(resource("/api/auth/mfa/confirm").post(auth::confirm_mfa))
    .service(
        resource("/api/auth/api-keys")
            .get(auth::list_keys)
            .post(auth::create_key),
    )
    .service(resource("/api/auth/api-keys/{key_id}").delete(auth::revoke_key))
    .service(
        resource("/api/admin/users")
            .get(admin::list_users)
            .post(admin::create_user),
    )
    .service(
        resource("/api/admin/users/{username}")
            .get(admin::get_user)
            .patch(admin::update_user)
            .delete(admin::delete_user),
    )
    .service(resource("/api/admin/roles").get(admin::list_roles))
    .service(
        resource("/api/admin/roles/{name}")
            .put(admin::put_role)
            .delete(admin::delete_role),
    )
    .service(resource("/api/admin/audit").get(admin::audit_log))
    .service(
        resource("/api/admin/tenants")
            .get(tenants::list)
            .post(tenants::create),
    )
    .service(
        resource("/api/admin/tenants/{tenant_id}")
            .get(tenants::get)
            .patch(tenants::update),
    )
    .service(resource("/api/admin/tenants/{tenant_id}/deactivate").post(tenants::deactivate))
    .service(resource("/api/admin/tenants/{tenant_id}/activate").post(tenants::activate))
    .service(resource("/api/admin/nodes").get(cluster::nodes))
    .service(resource("/api/admin/policies").get(policies::list))
    .service(
        resource("/api/admin/policies/{policy_id}")
            .put(policies::put)
            .delete(policies::delete),
    )
    .default_service(web::to(not_found));
}

fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound)
        .with_detail(format!("No route for {}", sanitize(req.path()))))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::MethodNotAllowed)
        .with_detail(format!("{} is not allowed on this route", req.method())))
}

/// A caller-supplied path, shortened and stripped of control characters before it is echoed.
fn sanitize(path: &str) -> String {
    path.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The `?session_id=` (and, in open mode, `?user_id=`) of session-scoped routes.
#[derive(Debug, Deserialize)]
pub struct SessionQuery {
    session_id: Option<String>,
    user_id: Option<String>,
}

/// `session_id` when given: a malformed one names no session of the caller (404).
fn optional_session(query: &SessionQuery) -> Result<Option<Uuid>, ApiError> {
    query
        .session_id
        .as_deref()
        .map(|raw| {
            raw.parse()
                .map_err(|_| ApiError::new(ErrorCode::SessionNotFound))
        })
        .transpose()
}

/// The required session and the caller of a session-scoped request.
fn session_and_caller(
    identity: &Identity,
    query: &SessionQuery,
) -> Result<(Uuid, Caller), ApiError> {
    Ok((
        required_session(query)?,
        identity.caller(query.user_id.as_deref()),
    ))
}

fn required_session(query: &SessionQuery) -> Result<Uuid, ApiError> {
    optional_session(query)?.ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidRequest)
            .with_detail("The session_id query parameter is required")
            .with_errors(vec![FieldError {
                path: "session_id".into(),
                message: "is required".into(),
            }])
    })
}
