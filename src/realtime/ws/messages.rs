//! The client messages of `/ws` (API.md "WebSocket"), each answered with one reply frame.
//!
//! Every message acts for the connection's caller and goes through the same gateway call
//! as its HTTP twin, so ownership and tenant checks are the ones the routes use: someone
//! else's session or execution is refused exactly like an unknown one. A message that is not
//! a JSON object, has no `type`, has an unknown `type` or lacks a field gets an
//! `invalid_message` error frame and the connection stays open.
//!
//! `session_id` may be left out of `execute_workflow`, `get_status` and `cancel_execution`
//! when the connection follows one session (`?session_id=` or `subscribe_events`).

use std::{collections::HashSet, sync::Arc};

use kailash_actors::events::EventType;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{Connection, error_frame};
use crate::{
    access, auth, cluster,
    http::{ApiError, ErrorCode, FieldError},
    limits::{self, Verdict},
    realtime::{StreamRequest, authorized_filter},
    routes::{capitalized, event_types_param},
};

/// Most rooms one connection may be in at once.
const MAX_ROOMS_PER_CONNECTION: usize = 16;
/// Longest room name, in characters.
const MAX_ROOM_ID_CHARS: usize = 128;

const MESSAGE_TYPES: &str = "ping, execute_workflow, subscribe_events, get_status, \
     cancel_execution, join_room, leave_room, room_message";

#[derive(Debug, Deserialize)]
struct ExecuteWorkflow {
    session_id: Option<String>,
    workflow_id: String,
    #[serde(default)]
    inputs: Map<String, Value>,
    #[serde(default)]
    config_overrides: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct SubscribeEvents {
    session_id: Option<String>,
    event_types: Option<EventTypes>,
}

/// `event_types` as a list (`["node.failed"]`) or the query form (`"a,b"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EventTypes {
    List(Vec<String>),
    Joined(String),
}

#[derive(Debug, Deserialize)]
struct ExecutionRef {
    session_id: Option<String>,
    execution_id: String,
}

#[derive(Debug, Deserialize)]
struct RoomRef {
    room_id: String,
}

#[derive(Debug, Deserialize)]
struct RoomMessage {
    room_id: String,
    #[serde(alias = "data")]
    message: Value,
}

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidMessage).with_detail(detail.into())
}

/// The message's fields as `T`; a missing or mistyped field names itself.
fn fields<T: DeserializeOwned>(kind: &str, message: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(message).map_err(|error| {
        let path = error.path().to_string();
        let why = error.into_inner().to_string();
        invalid(format!("Invalid {kind} message: {why}"))
            .with_errors(vec![FieldError { path, message: why }])
    })
}

impl Connection {
    /// Handles one text frame; the reply is always one frame (an error frame on failure).
    pub(super) async fn on_text(&mut self, text: &str) -> String {
        let message: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(error) => {
                return error_frame(None, &invalid(format!("Invalid JSON: {error}")));
            }
        };
        let Some(kind) = message
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            let detail = if message.is_object() {
                "A message needs a string `type`"
            } else {
                "A message must be a JSON object with a `type`"
            };
            return error_frame(None, &invalid(detail));
        };
        match self.dispatch(&kind, message).await {
            Ok(reply) => reply.to_string(),
            Err(error) => error_frame(Some(&kind), &error),
        }
    }

    /// The same check as the HTTP twin's: the credential is still live (not revoked), its
    /// tenant still active, and it grants the message's permission.
    async fn authorize(&self, kind: &str) -> Result<(), ApiError> {
        let Some(principal) = &self.principal else {
            return Ok(());
        };
        auth::ensure_live(&self.state, &principal.credential).await?;
        self.state.tenants.admit(&principal.caller.tenant_id)?;
        let resource = format!("ws:{kind}");
        let request = access::Request {
            resource: &resource,
            client_ip: None,
        };
        self.state
            .access
            .authorize(
                principal,
                access::ws_permission(kind),
                &access::abac::Target::Route {
                    method: "WS",
                    pattern: &resource,
                },
                request,
            )
            .await
    }

    /// Counts the message against the connection's rate limits, as a request.
    fn admit(&self) -> Result<(), ApiError> {
        let caller = self.principal.as_ref().map(|principal| &principal.caller);
        match self
            .state
            .limits
            .admit(&self.state, self.client_ip, caller, false)
        {
            Some(Verdict::Refused {
                name,
                limit,
                retry_after,
            }) => Err(limits::refusal(name, limit, retry_after)),
            _ => Ok(()),
        }
    }

    async fn dispatch(&mut self, kind: &str, message: Value) -> Result<Value, ApiError> {
        self.authorize(kind).await?;
        self.admit()?;
        match kind {
            "ping" => Ok(json!({"type": "pong", "timestamp": chrono::Utc::now()})),
            "execute_workflow" => self.execute(fields(kind, message)?).await,
            "subscribe_events" => self.subscribe(fields(kind, message)?).await,
            "get_status" => self.status(fields(kind, message)?).await,
            "cancel_execution" => self.cancel(fields(kind, message)?).await,
            "join_room" => self.join(fields(kind, message)?).await,
            "leave_room" => self.leave(fields(kind, message)?).await,
            "room_message" => self.relay(fields(kind, message)?).await,
            other => Err(invalid(format!(
                "Unknown message type '{}'; known types: {MESSAGE_TYPES}",
                other.chars().take(64).collect::<String>()
            ))),
        }
    }

    /// The session a message acts on: its own `session_id`, else the connection's.
    fn session_for(&self, named: Option<&str>) -> Result<Uuid, ApiError> {
        match named {
            Some(raw) => raw
                .parse()
                .map_err(|_| ApiError::new(ErrorCode::SessionNotFound)),
            None => self.filter.session_id.ok_or_else(|| {
                invalid(
                    "session_id is required: name it in the message or connect with ?session_id=",
                )
                .with_errors(vec![FieldError {
                    path: "session_id".into(),
                    message: "is required".into(),
                }])
            }),
        }
    }

    /// Sends the message's HTTP twin to the session's node when that is another node;
    /// `None`: the session is served here.
    async fn on_owner(
        &self,
        session_id: Uuid,
        method: &str,
        path_and_query: String,
        body: Option<Value>,
    ) -> Result<Option<Value>, ApiError> {
        let Some(cluster) = &self.state.cluster else {
            return Ok(None);
        };
        let Some(owner) = cluster
            .owner_elsewhere(&self.state.gateway, session_id)
            .await?
        else {
            return Ok(None);
        };
        let credential = self
            .credential
            .as_ref()
            .ok_or_else(|| ApiError::from(kailash_actors::GatewayError::ServedElsewhere))?;
        cluster
            .call(
                &owner.address,
                method,
                &path_and_query,
                body.as_ref(),
                credential,
            )
            .await
            .map(Some)
    }

    async fn execute(&self, msg: ExecuteWorkflow) -> Result<Value, ApiError> {
        let session_id = self.session_for(msg.session_id.as_deref())?;
        let twin = json!({"workflow_id": msg.workflow_id, "inputs": msg.inputs,
            "config_overrides": msg.config_overrides});
        let path = format!("/api/executions?session_id={session_id}");
        let (execution_id, workflow_id, created_at) =
            match self.on_owner(session_id, "POST", path, Some(twin)).await? {
                Some(run) => (
                    run["execution_id"].clone(),
                    run["workflow_id"].clone(),
                    run["created_at"].clone(),
                ),
                None => {
                    let run = self
                        .state
                        .gateway
                        .start_execution(
                            self.caller.clone(),
                            session_id,
                            msg.workflow_id,
                            msg.inputs,
                            msg.config_overrides,
                        )
                        .await?;
                    (
                        json!(run.execution_id),
                        json!(run.workflow_id),
                        json!(run.created_at),
                    )
                }
            };
        Ok(json!({
            "type": "execution_started",
            "execution_id": execution_id,
            "workflow_id": workflow_id,
            "session_id": session_id,
            "status": "started",
            "created_at": created_at,
        }))
    }

    async fn subscribe(&mut self, msg: SubscribeEvents) -> Result<Value, ApiError> {
        let event_types = match msg.event_types {
            None => None,
            Some(EventTypes::Joined(list)) => event_types_param(Some(&list))?,
            Some(EventTypes::List(names)) => event_types_param(Some(&names.join(",")))?,
        };
        let request = StreamRequest {
            session_id: msg.session_id.as_deref(),
            event_types,
        };
        let filter = authorized_filter(&self.state, &self.caller, request).await?;
        if !self
            .state
            .gateway
            .refilter(self.subscriber, filter.clone())
            .await?
        {
            return Err(ApiError::new(ErrorCode::Unavailable));
        }
        let reply = json!({
            "type": "subscribed",
            "session_id": filter.session_id,
            "event_types": sorted_names(filter.event_types.as_ref()),
        });
        self.filter = filter;
        Ok(reply)
    }

    async fn status(&self, msg: ExecutionRef) -> Result<Value, ApiError> {
        let session_id = self.session_for(msg.session_id.as_deref())?;
        let execution_id = execution_id(&msg)?;
        let path = format!("/api/executions/{execution_id}?session_id={session_id}");
        let snapshot = match self.on_owner(session_id, "GET", path, None).await? {
            Some(snapshot) => snapshot,
            None => json!(
                self.state
                    .gateway
                    .execution(self.caller.clone(), session_id, execution_id)
                    .await?
            ),
        };
        Ok(json!({
            "type": "status_update",
            "execution_id": execution_id,
            "status": snapshot,
        }))
    }

    async fn cancel(&self, msg: ExecutionRef) -> Result<Value, ApiError> {
        let session_id = self.session_for(msg.session_id.as_deref())?;
        let execution_id = execution_id(&msg)?;
        cluster::cancel_execution(&self.state, self.caller.clone(), session_id, execution_id)
            .await?;
        Ok(json!({"type": "execution_cancelled", "execution_id": execution_id}))
    }

    async fn join(&mut self, msg: RoomRef) -> Result<Value, ApiError> {
        let room_id = room_name(&msg.room_id)?;
        if !self.rooms.contains(&room_id) && self.rooms.len() >= MAX_ROOMS_PER_CONNECTION {
            return Err(ApiError::new(ErrorCode::TooManyRooms).with_detail(format!(
                "A connection may be in at most {MAX_ROOMS_PER_CONNECTION} rooms"
            )));
        }
        let members = self
            .state
            .gateway
            .join_room(&self.caller, room_id.clone(), self.id, self.queue.clone())
            .await?
            .map_err(|error| {
                ApiError::new(ErrorCode::RoomFull).with_detail(capitalized(&error.to_string()))
            })?;
        if !self.rooms.contains(&room_id) {
            self.rooms.push(room_id.clone());
        }
        let members: Vec<Value> = members
            .iter()
            .map(|m| json!({"user_id": &*m.user_id, "connection_id": m.connection_id}))
            .collect();
        Ok(json!({"type": "room_joined", "room_id": &*room_id, "members": members}))
    }

    async fn leave(&mut self, msg: RoomRef) -> Result<Value, ApiError> {
        let room_id = room_name(&msg.room_id)?;
        let was_member = self
            .state
            .gateway
            .leave_room(&self.caller, room_id.clone(), self.id)
            .await?;
        self.rooms.retain(|joined| *joined != room_id);
        if !was_member {
            return Err(ApiError::new(ErrorCode::RoomNotJoined));
        }
        Ok(json!({"type": "room_left", "room_id": &*room_id}))
    }

    async fn relay(&self, msg: RoomMessage) -> Result<Value, ApiError> {
        let room_id = room_name(&msg.room_id)?;
        self.state.limits.admit_event(&self.state, &self.caller)?;
        let recipients = self
            .state
            .gateway
            .send_to_room(&self.caller, room_id.clone(), self.id, msg.message)
            .await?
            .map_err(|_| ApiError::new(ErrorCode::RoomNotJoined))?;
        Ok(json!({"type": "room_message_sent", "room_id": &*room_id, "recipients": recipients}))
    }
}

fn execution_id(msg: &ExecutionRef) -> Result<Uuid, ApiError> {
    msg.execution_id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::ExecutionNotFound))
}

fn room_name(raw: &str) -> Result<Arc<str>, ApiError> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > MAX_ROOM_ID_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "room_id must be 1 to {MAX_ROOM_ID_CHARS} printable characters"
        ))
        .with_errors(vec![FieldError {
            path: "room_id".into(),
            message: "invalid room name".into(),
        }]));
    }
    Ok(Arc::from(name))
}

fn sorted_names(types: Option<&HashSet<EventType>>) -> Option<Vec<&'static str>> {
    types.map(|types| {
        let mut names: Vec<_> = types.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_bounded_and_printable() {
        assert_eq!(&*room_name(" design ").unwrap(), "design");
        assert!(room_name("").is_err());
        assert!(room_name("a\nb").is_err());
        assert!(room_name(&"x".repeat(MAX_ROOM_ID_CHARS + 1)).is_err());
    }

    #[test]
    fn missing_fields_are_named() {
        let error = fields::<ExecuteWorkflow>("execute_workflow", json!({"type": "x"}))
            .unwrap_err()
            .body();
        assert_eq!(error["code"], "invalid_message");
        assert!(error["detail"].as_str().unwrap().contains("workflow_id"));
    }

    #[test]
    fn event_types_take_both_forms() {
        let list: SubscribeEvents =
            serde_json::from_value(json!({"event_types": ["node.failed"]})).unwrap();
        assert!(matches!(list.event_types, Some(EventTypes::List(_))));
        let joined: SubscribeEvents =
            serde_json::from_value(json!({"event_types": "a,b"})).unwrap();
        assert!(matches!(joined.event_types, Some(EventTypes::Joined(_))));
    }
}
