//! The event model: what every subscriber (WebSocket, SSE, webhooks, recent-events queries)
//! receives, and the filter that decides who may see what.
//!
//! An [`Event`] is built by the actor that observed the fact, handed to the
//! [`EventBus`](crate::bus::EventBus) once, and serialized exactly once there into a
//! [`PublishedEvent`], which is what history and fan-out share.

use std::{collections::HashSet, fmt, str::FromStr, sync::Arc, time::Instant};

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::caller::{Caller, TenantId, UserId};

macro_rules! event_types {
    ($($variant:ident => $name:literal,)*) => {
        /// Every event type of the wire contract (API.md "Events"), by its dotted name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventType { $($variant,)* }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name,)* }
            }
        }
    };
}

event_types! {
    WorkflowCreated => "workflow.created",
    WorkflowStarted => "workflow.started",
    WorkflowProgress => "workflow.progress",
    WorkflowCompleted => "workflow.completed",
    WorkflowFailed => "workflow.failed",
    WorkflowCancelled => "workflow.cancelled",
    WorkflowTimeout => "workflow.timeout",
    NodeStarted => "node.started",
    NodeProgress => "node.progress",
    NodeCompleted => "node.completed",
    NodeFailed => "node.failed",
    NodeSkipped => "node.skipped",
    SessionCreated => "session.created",
    SessionClosed => "session.closed",
    SessionExpired => "session.expired",
    SystemStatus => "system.status",
    SystemWarning => "system.warning",
    SystemError => "system.error",
    DataUpdated => "data.updated",
    DataValidated => "data.validated",
    UiInputRequired => "ui.input_required",
    UiApprovalRequired => "ui.approval_required",
    UiChoiceRequired => "ui.choice_required",
    UiConfirmationRequired => "ui.confirmation_required",
    StreamGap => "stream.gap",
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given is not an event type of the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type '{0}'")]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| UnknownEventType(name.to_owned()))
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Parses a comma-separated `event_types` query value. Empty parts are ignored; any unknown
/// name fails the whole value (the contract answers 400 rather than silently matching less).
pub fn parse_event_types(list: &str) -> Result<HashSet<EventType>, UnknownEventType> {
    list.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(EventType::from_str)
        .collect()
}

/// One event as it goes on the wire. `seq` is assigned by the bus.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: Uuid,
    pub seq: u64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub timestamp: DateTime<Utc>,
    pub priority: &'static str,
    pub source: &'static str,
    pub target: Option<String>,
    pub session_id: Option<Uuid>,
    pub user_id: Option<UserId>,
    pub tenant_id: TenantId,
    pub metadata: Map<String, Value>,
    /// The type-specific fields (`workflow_id`, `node_id`, ...), flattened into the object.
    #[serde(flatten)]
    pub detail: Option<EventDetail>,
}

/// The type-specific part of an event. Typed rather than a map: events are built on the
/// engine's hot path, and a struct serializes without building anything first.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EventDetail {
    Workflow(WorkflowDetail),
    Node(NodeDetail),
}

/// Which run an event belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct RunRef {
    pub workflow_id: Arc<str>,
    pub workflow_name: Arc<str>,
    pub execution_id: Uuid,
}

/// `workflow.*` fields.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowDetail {
    #[serde(flatten)]
    pub run: RunRef,
    pub progress_percent: f64,
    pub current_node: Option<String>,
    pub data: Value,
    pub error: Option<String>,
}

/// `node.*` fields.
#[derive(Debug, Clone, Serialize)]
pub struct NodeDetail {
    #[serde(flatten)]
    pub run: RunRef,
    pub node_id: Arc<str>,
    pub node_type: &'static str,
    pub node_name: Arc<str>,
    pub inputs: Value,
    pub outputs: Value,
    pub execution_time_ms: Option<f64>,
    pub error: Option<String>,
}

impl Event {
    /// A new event of `event_type`, observed now by `source`, within `tenant_id`.
    pub fn new(event_type: EventType, source: &'static str, tenant_id: TenantId) -> Self {
        Self {
            id: Uuid::new_v4(),
            seq: 0,
            event_type,
            timestamp: Utc::now(),
            priority: "normal",
            source,
            target: None,
            session_id: None,
            user_id: None,
            tenant_id,
            metadata: Map::new(),
            detail: None,
        }
    }

    pub fn in_session(mut self, session_id: Uuid, user_id: UserId) -> Self {
        self.session_id = Some(session_id);
        self.user_id = Some(user_id);
        self
    }
}

/// An event after publication: serialized once, shared by history and every subscriber.
/// Keeps the few fields that filters need next to the JSON text.
#[derive(Debug)]
pub struct PublishedEvent {
    pub seq: u64,
    /// When the bus published it: history ages out by it, and transports measure delivery
    /// latency from it.
    pub published_at: Instant,
    pub event_type: EventType,
    pub session_id: Option<Uuid>,
    pub tenant_id: TenantId,
    pub user_id: Option<UserId>,
    /// The event as JSON text, exactly as it goes on the wire.
    pub json: Box<str>,
    /// Published by this node (false for what the broker brought from other nodes).
    pub published_here: bool,
}

impl PublishedEvent {
    pub fn from_event(event: &Event) -> Self {
        // One allocation of about the right size: events are serialized on the engine's
        // hot path, and growing a small buffer step by step shows up in profiles.
        let mut buffer = Vec::with_capacity(1024);
        serde_json::to_writer(&mut buffer, event)
            .expect("an Event is plain data and always serializes");
        let json = String::from_utf8(buffer)
            .expect("serde_json writes UTF-8")
            .into_boxed_str();
        Self {
            seq: event.seq,
            published_at: Instant::now(),
            event_type: event.event_type,
            session_id: event.session_id,
            tenant_id: event.tenant_id.clone(),
            user_id: event.user_id.clone(),
            json,
            published_here: true,
        }
    }
}

impl PublishedEvent {
    /// An event already numbered — loaded from the store, or brought by the broker — aged
    /// as it was: history retention counts from when it was first published.
    pub fn restored(record: &crate::store::EventRecord) -> Self {
        let age = (Utc::now() - record.published_at)
            .to_std()
            .unwrap_or_default();
        let now = Instant::now();
        Self {
            seq: record.seq,
            published_at: now.checked_sub(age).unwrap_or(now),
            event_type: record.event_type.parse().unwrap_or(EventType::SystemStatus),
            session_id: Some(record.session_id),
            tenant_id: record.tenant_id.clone(),
            user_id: record.user_id.clone(),
            json: record.json.clone(),
            published_here: true,
        }
    }
}

/// What a subscriber asked for, bounded by what its caller may see.
#[derive(Debug, Clone)]
pub struct EventFilter {
    pub tenant_id: TenantId,
    /// `Some(user)`: only that user's events (and the tenant's events that name no user).
    pub owner: Option<UserId>,
    pub session_id: Option<Uuid>,
    /// `None`: every type.
    pub event_types: Option<HashSet<EventType>>,
    /// Only events this node published (in a cluster every node receives every event; a
    /// webhook, registered on every node, must be delivered once: by the publishing node).
    pub published_here: bool,
}

impl EventFilter {
    /// Everything `caller` may see; narrow it with the public fields.
    pub fn visible_to(caller: &Caller) -> Self {
        Self {
            tenant_id: caller.tenant_id.clone(),
            owner: (!caller.sees_all_sessions).then(|| caller.user_id.clone()),
            session_id: None,
            event_types: None,
            published_here: false,
        }
    }

    pub fn matches(&self, event: &PublishedEvent) -> bool {
        event.tenant_id == self.tenant_id
            && (!self.published_here || event.published_here)
            && match (&self.owner, &event.user_id) {
                (Some(owner), Some(user)) => owner == user,
                _ => true,
            }
            && self
                .session_id
                .is_none_or(|id| event.session_id == Some(id))
            && self
                .event_types
                .as_ref()
                .is_none_or(|types| types.contains(&event.event_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(*t));
        }
        assert!(
            parse_event_types("session.created, ,node.failed")
                .unwrap()
                .len()
                == 2
        );
        assert_eq!(
            parse_event_types("session.created,bogus"),
            Err(UnknownEventType("bogus".into()))
        );
    }

    #[test]
    fn filter_hides_other_users_and_tenants() {
        let alice = Caller::authenticated("t1", "alice");
        let session = Uuid::new_v4();
        let own = PublishedEvent::from_event(
            &Event::new(EventType::SessionCreated, "test", "t1".into())
                .in_session(session, "alice".into()),
        );
        let bobs = PublishedEvent::from_event(
            &Event::new(EventType::SessionCreated, "test", "t1".into())
                .in_session(Uuid::new_v4(), "bob".into()),
        );
        let other_tenant = PublishedEvent::from_event(
            &Event::new(EventType::SessionCreated, "test", "t2".into())
                .in_session(session, "alice".into()),
        );
        let filter = EventFilter::visible_to(&alice);
        assert!(filter.matches(&own));
        assert!(!filter.matches(&bobs));
        assert!(!filter.matches(&other_tenant));

        let open = EventFilter::visible_to(&Caller::open("t1", "anyone"));
        assert!(open.matches(&bobs));

        let only_closed = EventFilter {
            event_types: Some(HashSet::from([EventType::SessionClosed])),
            ..EventFilter::visible_to(&alice)
        };
        assert!(!only_closed.matches(&own));
    }

    #[test]
    fn events_serialize_with_the_wire_fields() {
        let mut event = Event::new(EventType::WorkflowStarted, "execution", "default".into())
            .in_session(Uuid::nil(), "alice".into());
        event.detail = Some(EventDetail::Workflow(WorkflowDetail {
            run: RunRef {
                workflow_id: "w".into(),
                workflow_name: "flow".into(),
                execution_id: Uuid::nil(),
            },
            progress_percent: 0.0,
            current_node: None,
            data: Value::Null,
            error: None,
        }));
        let json: Value =
            serde_json::from_str(&PublishedEvent::from_event(&event).json).expect("valid JSON");
        assert_eq!(json["type"], "workflow.started");
        assert_eq!(json["priority"], "normal");
        assert_eq!(json["user_id"], "alice");
        assert_eq!(json["workflow_name"], "flow");
        assert_eq!(json["progress_percent"], 0.0);
        assert!(json["error"].is_null() && json.get("error").is_some());
        assert!(json["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
