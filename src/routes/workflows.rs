//! `/api/workflows` (create, list, read) and `/api/schemas/*` (node and workflow schemas).
//! Validation runs here, on the request's worker thread, before any actor is asked.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{SessionQuery, optional_session, session_and_caller};
use crate::{
    access,
    app::AppState,
    auth::Identity,
    http::{ApiError, ErrorCode, FieldError, JsonBody},
    tenants,
};

pub async fn create(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<SessionQuery>,
    JsonBody(config): JsonBody<Value>,
) -> Result<HttpResponse, ApiError> {
    if !state.settings.enable_dynamic_workflows {
        return Err(ApiError::new(ErrorCode::DynamicWorkflowsDisabled));
    }
    let (session_id, caller) = session_and_caller(&identity, &query)?;
    let workflow = match state.gateway.parse_workflow(&config) {
        Ok(workflow) => workflow,
        Err(problems) => {
            // An unknown session answers 404 whatever the body holds.
            state.gateway.session(caller, session_id).await?;
            // A node type's own code (python_unavailable) says more than invalid_workflow.
            let code = problems
                .iter()
                .find_map(|p| p.code.and_then(ErrorCode::from_code))
                .unwrap_or(ErrorCode::InvalidWorkflow);
            return Err(ApiError::new(code)
                .with_detail(format!("The workflow has {} problem(s)", problems.len()))
                .with_errors(
                    problems
                        .into_iter()
                        .map(|p| FieldError {
                            path: p.path,
                            message: p.message,
                        })
                        .collect(),
                ));
        }
    };
    if let Some(tenant) = state.tenants.get(&caller.tenant_id) {
        let problems = tenants::workflow_problems(&tenant, &workflow);
        if !problems.is_empty() {
            // As above: an unknown session answers 404 whatever the body holds.
            state.gateway.session(caller, session_id).await?;
            for (limit, _) in &problems {
                state.metrics.quota_rejected(limit, &tenant.tenant_id);
            }
            return Err(ApiError::new(ErrorCode::InvalidWorkflow)
                .with_detail(format!("The workflow has {} problem(s)", problems.len()))
                .with_errors(problems.into_iter().map(|(_, problem)| problem).collect()));
        }
    }
    if let Identity::Authenticated(principal) = &identity {
        let resource = format!("POST /api/workflows workflow {}", workflow.name);
        let request = access::Request {
            resource: &resource,
            client_ip: None,
        };
        state
            .access
            .authorize_workflow(principal, &workflow, request)
            .await?;
    }
    let workflow = state
        .gateway
        .add_workflow(caller, session_id, workflow)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "workflow_id": workflow.workflow_id,
        "name": workflow.name,
        "session_id": session_id,
        "created_at": workflow.created_at,
        "version": workflow.version,
    })))
}

pub async fn list(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<SessionQuery>,
) -> Result<HttpResponse, ApiError> {
    let session_id = optional_session(&query)?;
    let caller = identity.caller(query.user_id.as_deref());
    let workflows = state.gateway.list_workflows(caller, session_id).await?;
    Ok(HttpResponse::Ok().json(json!({"total": workflows.len(), "workflows": workflows})))
}

async fn find(
    state: &AppState,
    identity: &Identity,
    query: &SessionQuery,
    workflow_id: String,
) -> Result<
    (
        std::sync::Arc<kailash_actors::engine::workflow::Workflow>,
        bool,
    ),
    ApiError,
> {
    let session_id = optional_session(query)?;
    let caller = identity.caller(query.user_id.as_deref());
    Ok(state
        .gateway
        .find_workflow(caller, session_id, workflow_id)
        .await?)
}

pub async fn get(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<SessionQuery>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (workflow, is_shared) = find(&state, &identity, &query, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(json!({
        "workflow_id": workflow.workflow_id,
        "schema": workflow.schema(state.gateway.node_registry()),
        "is_shared": is_shared,
    })))
}

pub async fn workflow_schema(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<SessionQuery>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (workflow, _) = find(&state, &identity, &query, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(json!({
        "workflow_id": workflow.workflow_id,
        "schema": workflow.schema(state.gateway.node_registry()),
    })))
}

#[derive(Debug, Deserialize)]
pub struct NodeTypesQuery {
    node_types: Option<String>,
}

pub async fn node_schemas(
    state: web::Data<AppState>,
    query: web::Query<NodeTypesQuery>,
) -> Result<HttpResponse, ApiError> {
    let wanted: Option<Vec<&str>> = query.node_types.as_deref().map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect()
    });
    let mut schemas = Map::new();
    let mut categories: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for schema in state.gateway.node_registry().schemas() {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.contains(&schema.node_type))
        {
            continue;
        }
        schemas.insert(
            schema.node_type.into(),
            serde_json::to_value(schema).map_err(ApiError::internal)?,
        );
        categories
            .entry(schema.category)
            .or_default()
            .push(schema.node_type);
    }
    Ok(HttpResponse::Ok()
        .json(json!({"total": schemas.len(), "schemas": schemas, "categories": categories})))
}

pub async fn node_schema(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let node_type = path.into_inner();
    let Some(node) = state.gateway.node_registry().get(&node_type) else {
        let hint = state
            .gateway
            .node_registry()
            .closest(&node_type)
            .map(|c| format!("; did you mean '{c}'?"))
            .unwrap_or_default();
        return Err(
            ApiError::new(ErrorCode::NodeTypeNotFound).with_detail(format!(
                "Unknown node type '{}'{hint}",
                super::sanitize(&node_type)
            )),
        );
    };
    Ok(HttpResponse::Ok()
        .json(json!({"node_type": node.schema().node_type, "schema": node.schema()})))
}
