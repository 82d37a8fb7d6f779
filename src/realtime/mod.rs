//! Real-time delivery: the WebSocket endpoint (`/ws`), Server-Sent Events (`/events`) and
//! webhooks. Each live client is a subscriber of the event bus with its own bounded queue;
//! this module owns turning a request into an authorized subscription and an event into the
//! bytes each transport writes.
//!
//! Visibility is decided once, here, for every transport: a subscription's filter starts as
//! everything its caller may see ([`EventFilter::visible_to`]) and is only ever narrowed by
//! what the client asks for. A session named by the client must be one the caller may read,
//! checked with the same actor call as `GET /api/sessions/{id}`, so someone else's session is
//! refused exactly like an unknown one.

mod sse;
pub mod webhooks;

mod ws;

use std::collections::HashSet;

use kailash_actors::{
    Caller, GatewayError,
    events::{EventFilter, EventType},
};
use serde::Deserialize;
use uuid::Uuid;

pub use self::{sse::stream as sse_stream, ws::connect as ws_connect};
use crate::{
    app::AppState,
    http::{ApiError, ErrorCode},
    routes::event_types_param,
};

/// The query of `/ws` and `/events`.
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    session_id: Option<String>,
    event_types: Option<String>,
    /// WebSocket resume: the last `seq` the client received of `session_id` (SSE takes it
    /// as `Last-Event-ID`, which browsers send by themselves).
    last_seq: Option<u64>,
    /// Trusted only in open mode (see [`crate::auth::Identity::caller`]).
    user_id: Option<String>,
}

/// What a client asked to receive, before it is checked.
#[derive(Debug, Default)]
struct StreamRequest<'a> {
    session_id: Option<&'a str>,
    event_types: Option<HashSet<EventType>>,
}

/// The filter for `request`, once the caller is known to be allowed its session.
async fn authorized_filter(
    state: &AppState,
    caller: &Caller,
    request: StreamRequest<'_>,
) -> Result<EventFilter, ApiError> {
    let session_id = match request.session_id.filter(|raw| !raw.is_empty()) {
        None => None,
        Some(raw) => {
            let id: Uuid = raw
                .parse()
                .map_err(|_| ApiError::new(ErrorCode::SessionNotFound))?;
            state.gateway.check_session_access(caller, id).await?;
            Some(id)
        }
    };
    Ok(EventFilter {
        session_id,
        event_types: request.event_types,
        ..EventFilter::visible_to(caller)
    })
}

impl StreamQuery {
    fn request(&self) -> Result<StreamRequest<'_>, ApiError> {
        Ok(StreamRequest {
            session_id: self.session_id.as_deref(),
            event_types: event_types_param(self.event_types.as_deref())?,
        })
    }
}

/// Refuses new streams while the node drains, so clients reconnect to another node.
fn refuse_when_draining(state: &AppState) -> Result<(), ApiError> {
    if state.lifecycle.is_draining() {
        return Err(GatewayError::Draining.into());
    }
    Ok(())
}
