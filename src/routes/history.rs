//! `GET /api/executions/history`: the caller's executions from the store, newest first,
//! filtered and cursor-paginated. `user_id=` names another user of the tenant, for admins
//! (and in open mode); everyone else sees only their own.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use kailash_actors::{
    execution::ExecutionStatus,
    store::{HistoryCursor, HistoryQuery},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    app::AppState,
    auth::Identity,
    http::{ApiError, ErrorCode, FieldError},
};

/// Page size when `limit` is not given, and the largest allowed.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    status: Option<String>,
    workflow_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    user_id: Option<String>,
}

/// Every bad parameter at once, as one `invalid_request`.
fn parse(params: HistoryParams) -> Result<HistoryQuery, ApiError> {
    let mut errors = Vec::new();
    let mut bad = |path: &str, message: String| {
        errors.push(FieldError {
            path: path.into(),
            message,
        })
    };
    let time = |raw: Option<String>, path: &str, bad: &mut dyn FnMut(&str, String)| {
        raw.and_then(|raw| match DateTime::parse_from_rfc3339(&raw) {
            Ok(at) => Some(at.with_timezone(&Utc)),
            Err(_) => {
                bad(path, format!("'{raw}' is not an RFC 3339 time"));
                None
            }
        })
    };
    let status = params.status.and_then(|raw| {
        ExecutionStatus::parse(&raw).or_else(|| {
            bad(
                "status",
                "must be one of started, running, completed, failed, cancelled, timeout".into(),
            );
            None
        })
    });
    let since = time(params.since, "since", &mut bad);
    let until = time(params.until, "until", &mut bad);
    let limit = match params.limit {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<usize>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
            _ => {
                bad(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIMIT}"),
                );
                DEFAULT_LIMIT
            }
        },
    };
    let cursor = params.cursor.and_then(|raw| {
        HistoryCursor::decode(&raw).or_else(|| {
            bad("cursor", "is not a cursor this endpoint returned".into());
            None
        })
    });
    if !errors.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidRequest)
            .with_detail("The history query has invalid parameters")
            .with_errors(errors));
    }
    Ok(HistoryQuery {
        user_id: params.user_id,
        status,
        workflow_id: params.workflow_id,
        since,
        until,
        limit,
        cursor,
    })
}

pub async fn history(
    state: web::Data<AppState>,
    identity: Identity,
    params: web::Query<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    let mut query = parse(params.into_inner())?;
    let caller = identity.caller(None);
    match query.user_id.as_deref() {
        Some(other) if other != &*caller.user_id && !identity.may_read_other_users() => {
            return Err(ApiError::new(ErrorCode::Forbidden)
                .with_detail("Only admins may read other users' execution history"));
        }
        Some(_) => {}
        // Open mode trusts the request and shows the whole tenant, as its session list does.
        None if caller.sees_all_sessions => {}
        None => query.user_id = Some(caller.user_id.to_string()),
    }
    let page = state.gateway.execution_history(&caller, &query).await?;
    let executions: Vec<_> = page
        .executions
        .iter()
        .map(|e| {
            let s = &e.snapshot;
            json!({
                "execution_id": s.execution_id,
                "session_id": e.session_id,
                "user_id": e.user_id,
                "workflow_id": s.workflow_id,
                "workflow_name": s.workflow_name,
                "status": s.status,
                "progress": s.progress,
                "created_at": s.created_at,
                "started_at": s.started_at,
                "completed_at": s.completed_at,
                "error": s.error,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "executions": executions,
        "count": executions.len(),
        "limit": query.limit,
        "next_cursor": page.next_cursor.map(|c| c.encode()),
    })))
}
