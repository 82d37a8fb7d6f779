//! `/api/executions`: start, list, read and cancel runs of a session's workflows.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{SessionQuery, session_and_caller};
use crate::{
    app::AppState,
    auth::Identity,
    cluster,
    http::{ApiError, ErrorCode, JsonBody},
};

#[derive(Debug, Deserialize)]
pub struct StartExecution {
    workflow_id: String,
    #[serde(default)]
    inputs: Map<String, Value>,
    #[serde(default)]
    config_overrides: Map<String, Value>,
}

pub async fn start(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<SessionQuery>,
    JsonBody(body): JsonBody<StartExecution>,
) -> Result<HttpResponse, ApiError> {
    let (session_id, caller) = session_and_caller(&identity, &query)?;
    let run = state
        .gateway
        .start_execution(
            caller,
            session_id,
            body.workflow_id,
            body.inputs,
            body.config_overrides,
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "execution_id": run.execution_id,
        "workflow_id": run.workflow_id,
        "status": "started",
        "created_at": run.created_at,
        "progress": 0.0,
    })))
}

pub async fn list(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<SessionQuery>,
) -> Result<HttpResponse, ApiError> {
    let (session_id, caller) = session_and_caller(&identity, &query)?;
    let executions = state.gateway.list_executions(caller, session_id).await?;
    Ok(HttpResponse::Ok().json(json!({"total": executions.len(), "executions": executions})))
}

fn execution_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::new(ErrorCode::ExecutionNotFound))
}

pub async fn get(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<SessionQuery>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (session_id, caller) = session_and_caller(&identity, &query)?;
    let snapshot = state
        .gateway
        .execution(caller, session_id, execution_id(&path)?)
        .await?;
    Ok(HttpResponse::Ok().json(snapshot))
}

pub async fn cancel(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<SessionQuery>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (session_id, caller) = session_and_caller(&identity, &query)?;
    cluster::cancel_execution(&state, caller, session_id, execution_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(json!({"message": "Execution cancelled"})))
}
