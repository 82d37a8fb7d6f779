//! `GET /api/events/recent`: the newest retained events the caller may see, filtered by
//! type and session.

use std::collections::HashSet;

use actix_web::{HttpResponse, web};
use kailash_actors::events::{EventFilter, EventType, parse_event_types};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::Identity,
    http::{ApiError, ErrorCode, FieldError},
};

const DEFAULT_COUNT: usize = 100;
const MAX_COUNT: usize = 1000;

#[derive(Debug, Deserialize)]
pub struct RecentQuery {
    count: Option<String>,
    event_types: Option<String>,
    session_id: Option<String>,
}

fn invalid(path: &str, message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest)
        .with_detail(format!("Invalid query parameter {path}"))
        .with_errors(vec![FieldError {
            path: path.into(),
            message,
        }])
}

/// Parses an `event_types` query value; an unknown name is a 400 naming it.
pub(crate) fn event_types_param(raw: Option<&str>) -> Result<Option<HashSet<EventType>>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(None);
    };
    parse_event_types(raw).map(Some).map_err(|error| {
        ApiError::new(ErrorCode::InvalidEventTypes)
            .with_detail(format!(
                "{}; known types: {}",
                capitalized(&error.to_string()),
                known_types()
            ))
            .with_errors(vec![FieldError {
                path: "event_types".into(),
                message: error.to_string(),
            }])
    })
}

pub(crate) fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn known_types() -> String {
    EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn recent(
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<RecentQuery>,
) -> Result<HttpResponse, ApiError> {
    let count = match query.count.as_deref() {
        None => DEFAULT_COUNT,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|c| (1..=MAX_COUNT).contains(c))
            .ok_or_else(|| {
                invalid(
                    "count",
                    format!("must be a whole number from 1 to {MAX_COUNT}"),
                )
            })?,
    };
    let event_types = event_types_param(query.event_types.as_deref())?;
    let session_id = query
        .session_id
        .as_deref()
        .map(|raw| {
            raw.parse::<Uuid>()
                .map_err(|_| invalid("session_id", "must be a UUID".into()))
        })
        .transpose()?;
    let filter = EventFilter {
        session_id,
        event_types: event_types.clone(),
        ..EventFilter::visible_to(&identity.caller(None))
    };
    let events = state.gateway.recent_events(filter, count).await?;
    let mut types: Option<Vec<&str>> =
        event_types.map(|types| types.iter().map(|t| t.as_str()).collect());
    if let Some(types) = types.as_mut() {
        types.sort_unstable();
    }
    let filters = json!({"event_types": types, "session_id": session_id, "count": count});
    // The events are JSON text already: splice them in rather than parse them again.
    let mut body =
        String::with_capacity(96 + events.iter().map(|e| e.json.len() + 1).sum::<usize>());
    body.push_str("{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&event.json);
    }
    body.push_str(&format!(
        "],\"total\":{},\"filters\":{filters}}}",
        events.len()
    ));
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}
