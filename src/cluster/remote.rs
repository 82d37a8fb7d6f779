//! Acting on a session another node serves, over Redis: cancelling one of its runs. A
//! cancel sent to any node reaches the node running the execution as a request on that
//! node's control channel (see `adapters::redis::control`), and the answer comes back the
//! same way.
//!
//! The asking node has authenticated and authorized the caller (the gate ran there); the
//! serving node checks the caller's access to the session as for its own requests, so a
//! request names the caller, never a decision.

use std::time::Duration;

use actix_web::web;
use kailash_actors::Caller;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::error_from_answer;
use crate::{
    app::AppState,
    http::{ApiError, ErrorCode},
};

/// How long a node waits for another node's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// What one node asks another.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum NodeRequest {
    Cancel {
        tenant_id: String,
        user_id: String,
        sees_all_sessions: bool,
        session_id: Uuid,
        execution_id: Uuid,
    },
}

/// Cancels a run wherever its session is served: here, or on its node over Redis.
pub async fn cancel_execution(
    state: &AppState,
    caller: Caller,
    session_id: Uuid,
    execution_id: Uuid,
) -> Result<(), ApiError> {
    let owner = match &state.cluster {
        Some(cluster) => cluster
            .owner_elsewhere(&state.gateway, session_id)
            .await?
            .map(|owner| (cluster, owner)),
        None => None,
    };
    let Some((cluster, owner)) = owner else {
        return Ok(state
            .gateway
            .cancel_execution(caller, session_id, execution_id)
            .await?);
    };
    let request = NodeRequest::Cancel {
        tenant_id: caller.tenant_id.to_string(),
        user_id: caller.user_id.to_string(),
        sees_all_sessions: caller.sees_all_sessions,
        session_id,
        execution_id,
    };
    let body = serde_json::to_value(&request).expect("a request serializes");
    let answer = cluster
        .redis
        .ask(&owner.node_id, body, ANSWER_WITHIN)
        .await
        .map_err(|error| {
            tracing::warn!(%error, node_id = %owner.node_id, "asking the session's node failed");
            ApiError::new(ErrorCode::Unavailable)
                .with_detail("The node serving this session did not answer; retry")
                .with_retry_after(Duration::from_secs(1))
        })?;
    match answer.get("error") {
        None => Ok(()),
        Some(error) => Err(error_from_answer(error)),
    }
}

/// Serves the requests other nodes send this one, each in its own task, until the gateway
/// stops. Answers `{}` for done, `{"error": <error body>}` otherwise.
pub fn start_serving_other_nodes(state: web::Data<AppState>) {
    let Some(mut requests) = state
        .cluster
        .as_ref()
        .and_then(|cluster| cluster.redis.take_requests())
    else {
        return;
    };
    actix_rt::spawn(async move {
        while let Some(request) = requests.recv().await {
            let state = state.clone();
            actix_rt::spawn(async move {
                let done = match serde_json::from_value(request.body.clone()) {
                    Ok(NodeRequest::Cancel {
                        tenant_id,
                        user_id,
                        sees_all_sessions,
                        session_id,
                        execution_id,
                    }) => {
                        let caller = Caller {
                            tenant_id: tenant_id.into(),
                            user_id: user_id.into(),
                            sees_all_sessions,
                        };
                        state
                            .gateway
                            .cancel_execution(caller, session_id, execution_id)
                            .await
                            .map_err(ApiError::from)
                    }
                    Err(error) => Err(ApiError::new(ErrorCode::InvalidRequest)
                        .with_detail(format!("An unreadable request from another node: {error}"))),
                };
                request.answer(match done {
                    Ok(()) => json!({}),
                    Err(error) => json!({ "error": error.body() }),
                });
            });
        }
    });
}
