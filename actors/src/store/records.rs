//! The records the [`Store`](super::Store) keeps: plain data, one struct per table row, and
//! the [`Write`]s the background writer batches.

use std::{borrow::Cow, str::FromStr, sync::Arc};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    caller::{TenantId, UserId},
    events::EventType,
    execution::{ExecutionSnapshot, ExecutionStatus},
};

/// A session: who owns it, what the client attached, when it was last used.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub tenant_id: TenantId,
    pub session_id: Uuid,
    pub user_id: UserId,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub last_activity: DateTime<Utc>,
}

/// One version of a workflow: the definition exactly as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRecord {
    pub tenant_id: TenantId,
    pub session_id: Uuid,
    pub workflow_id: String,
    pub version: u32,
    pub definition: Value,
    pub created_at: DateTime<Utc>,
}

/// An execution: what it was started with and where it is (or how it ended).
#[derive(Debug, Clone)]
pub struct ExecutionRecord {
    pub tenant_id: TenantId,
    pub session_id: Uuid,
    pub user_id: UserId,
    pub inputs: Value,
    pub config_overrides: Value,
    pub snapshot: ExecutionSnapshot,
    /// The run's fencing token (see [`Fence`]).
    pub fence: Fence,
}

/// A run's fencing token. The node that runs an execution holds a lease on it, and with
/// the lease this token (from Redis; 0 on a single node); the store accepts the run's state
/// writes (node runs, its final state) only under the token the stored execution holds.
/// A node that takes a lost node's session over fails its runs and raises their tokens in
/// the same statement, so whatever the lost node still writes (it was only cut off, or
/// paused) changes nothing.
pub type Fence = u64;

/// How one node of an execution ended (`completed`, `failed` or `skipped`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRunRecord {
    pub tenant_id: TenantId,
    pub execution_id: Uuid,
    pub node_id: Arc<str>,
    pub node_type: Cow<'static, str>,
    pub status: Cow<'static, str>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
    pub execution_time_ms: Option<f64>,
    pub outputs: Value,
    pub error: Option<String>,
    /// The run's token: recorded only while the stored execution still holds it.
    pub fence: Fence,
}

/// One published event of a session's stream, as it went on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub tenant_id: TenantId,
    pub session_id: Uuid,
    pub seq: u64,
    pub event_id: Uuid,
    pub event_type: &'static str,
    pub user_id: Option<UserId>,
    pub published_at: DateTime<Utc>,
    /// The event's JSON text, byte for byte what subscribers received.
    pub json: Box<str>,
}

/// The fields of an event's JSON a record is indexed and stored by.
#[derive(Deserialize)]
struct Head<'a> {
    id: Uuid,
    seq: u64,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    timestamp: DateTime<Utc>,
    session_id: Option<Uuid>,
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tenant_id: Cow<'a, str>,
}

impl EventRecord {
    /// The record of an event from its JSON text alone (as the broker carries it and the
    /// history stores it): the text is kept byte for byte, the rest is read from it. Only
    /// event types this build knows, and events of a session, have a record.
    pub fn from_json(json: &str) -> Result<Self, String> {
        let head: Head = serde_json::from_str(json).map_err(|error| error.to_string())?;
        let event_type = EventType::from_str(&head.event_type)
            .map_err(|error| error.to_string())?
            .as_str();
        Ok(Self {
            tenant_id: TenantId::from(&*head.tenant_id),
            session_id: head
                .session_id
                .ok_or_else(|| "an event without a session".to_owned())?,
            seq: head.seq,
            event_id: head.id,
            event_type,
            user_id: head.user_id.map(|user| UserId::from(&*user)),
            published_at: head.timestamp,
            json: json.into(),
        })
    }
}

/// A webhook registration. The signing secret is kept as given: every delivery signs with it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRecord {
    pub tenant_id: TenantId,
    pub webhook_id: Uuid,
    /// The principal that registered it, whose visibility its events are filtered by.
    pub owner: UserId,
    pub owner_sees_all_sessions: bool,
    pub url: String,
    pub secret: Option<String>,
    /// Empty: every event type.
    pub event_types: Vec<String>,
    /// The registration's own request headers, name → value.
    pub headers: Vec<(String, String)>,
    pub session_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// How one event's delivery to a webhook ended (`delivered` or `given_up`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookDeliveryRecord {
    pub tenant_id: TenantId,
    pub webhook_id: Uuid,
    pub delivery_id: Uuid,
    pub event_type: &'static str,
    pub event_seq: u64,
    pub status: &'static str,
    pub attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub finished_at: DateTime<Utc>,
}

/// One fact for the background writer. Applying a write twice leaves the same state as
/// applying it once (the writer retries a batch whose outcome it could not learn).
#[derive(Debug, Clone)]
pub enum Write {
    Event(EventRecord),
    NodeRun(NodeRunRecord),
    /// An execution reached its terminal status. Applied only while the stored execution
    /// is not terminal yet and holds the record's [`Fence`]: a run failed by the node that
    /// took its session over (its own node was lost) keeps that failure whatever the lost
    /// node writes late.
    ExecutionFinished(Box<ExecutionRecord>),
    /// A session was used at `at` (coalesced: the tenant sends the latest per sweep).
    SessionTouched {
        tenant_id: TenantId,
        session_id: Uuid,
        at: DateTime<Utc>,
    },
    /// A session was closed or expired (`reason`).
    SessionEnded {
        tenant_id: TenantId,
        session_id: Uuid,
        at: DateTime<Utc>,
        reason: &'static str,
    },
    /// A webhook delivery finished.
    WebhookDelivery(Box<WebhookDeliveryRecord>),
}

/// Where a history page starts: after the execution with this creation time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    pub created_at: DateTime<Utc>,
    pub execution_id: Uuid,
}

impl HistoryCursor {
    /// The opaque text form handed to clients: `<microseconds>.<uuid>`.
    pub fn encode(&self) -> String {
        format!(
            "{}.{}",
            self.created_at.timestamp_micros(),
            self.execution_id.simple()
        )
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('.')?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            execution_id: id.parse().ok()?,
        })
    }
}

/// Which executions of a tenant a history page lists.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// Only this user's (`None`: every user of the tenant).
    pub user_id: Option<String>,
    pub status: Option<ExecutionStatus>,
    pub workflow_id: Option<String>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
    pub cursor: Option<HistoryCursor>,
}

/// A page of history and where the next one starts (`None`: this is the last).
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub executions: Vec<ExecutionRecord>,
    pub next_cursor: Option<HistoryCursor>,
}

impl HistoryPage {
    /// The page of `limit` from newest-first `matching` (which holds up to `limit + 1`).
    pub fn from_newest_first(mut matching: Vec<ExecutionRecord>, limit: usize) -> Self {
        let more = matching.len() > limit;
        matching.truncate(limit);
        let next_cursor = more
            .then(|| matching.last())
            .flatten()
            .map(|last| HistoryCursor {
                created_at: last.snapshot.created_at,
                execution_id: last.snapshot.execution_id,
            });
        Self {
            executions: matching,
            next_cursor,
        }
    }
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCounts {
    pub events: u64,
    pub executions: u64,
}

impl ExecutionStatus {
    /// The stored (and wire) name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Started => "started",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
            ExecutionStatus::Timeout => "timeout",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            ExecutionStatus::Started,
            ExecutionStatus::Running,
            ExecutionStatus::Completed,
            ExecutionStatus::Failed,
            ExecutionStatus::Cancelled,
            ExecutionStatus::Timeout,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}
