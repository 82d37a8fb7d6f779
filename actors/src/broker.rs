//! The broker port: what the actor tree needs from the message broker every node of a
//! cluster shares (Redis in the gateway crate; none for a single node).
//!
//! The port carries session events between nodes and numbers them: a node hands each
//! session event to [`Broker::publish`] without a `seq`; the broker stamps the next `seq` of
//! the session, appends the event to the session's shared history and delivers it to every
//! node — the publishing one included — as [`FromBroker::Event`]. Every node therefore sees
//! one order per session, and fans out only what comes back from the broker, so no event is
//! delivered twice or out of order.
//!
//! When the broker cannot take an event it hands it back ([`FromBroker::Unpublished`]) and
//! the bus numbers and delivers it on this node alone: local clients lose nothing, and other
//! nodes see a jump in `seq`, which their clients hear of as `stream.gap`. The `floor` sent
//! with every event (the newest `seq` this node knows of the session) keeps the broker's
//! numbering ahead of anything numbered locally, even after the broker lost its state.

use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::{
    caller::{TenantId, UserId},
    events::Event,
    store::{EventRecord, Fence},
};

/// A session event on its way to the broker: the event (for the local fallback), its JSON
/// with `"seq":0` for the broker to stamp, and the newest `seq` this node knows.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub event: Event,
    pub json: Box<str>,
    pub floor: u64,
}

/// The broker could not be reached or answered an error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("broker unavailable: {0}")]
pub struct BrokerError(pub String);

/// What the broker tells this node's event bus.
#[derive(Message)]
#[rtype(result = "()")]
pub enum FromBroker {
    /// A numbered session event from some node; `own` when this node published it (only the
    /// publishing node persists it).
    Event { record: EventRecord, own: bool },
    /// Events the broker could not take, in the order they were published.
    Unpublished(Vec<Outbound>),
}

/// The cluster's shared message broker.
pub trait Broker: Send + Sync + 'static {
    /// This node's id, unique in the cluster.
    fn node_id(&self) -> &str;

    /// Starts delivering every node's session events to `bus`. Called once, by the bus.
    fn attach(&self, bus: Recipient<FromBroker>);

    /// Queues `event` for numbering and delivery to every node. Never waits: events the
    /// broker cannot take come back as [`FromBroker::Unpublished`].
    fn publish(&self, event: Outbound);

    /// Records this node as the owner of a session it creates or activates: requests for
    /// it on other nodes are forwarded here, and if this node is lost a survivor takes it
    /// over. For a new session (`limits` given) the cluster-wide session limits are checked
    /// and the session counted, atomically; awaited before the session is created.
    fn claim(
        &self,
        session: &SessionKey,
        limits: Option<SessionLimits>,
    ) -> BoxFuture<'static, Result<Claim, BrokerError>>;

    /// Whether this node serves `session_id`: it owns it, took it over from a lost node, or
    /// nobody owns it. Asked before a stored session is activated here.
    fn owns(&self, session_id: Uuid) -> BoxFuture<'static, Result<bool, BrokerError>>;

    /// Forgets the owner of a session that ended and stops counting it (best effort).
    fn release(&self, session: &SessionKey);

    /// Holds a cluster-wide slot for a new run under `max_concurrent_executions`: a lease on
    /// the run, renewed while this node lives, and the run's fencing token (see [`Fence`]).
    /// `None` when the cluster runs `limit` already.
    fn reserve_run(
        &self,
        execution_id: Uuid,
        limit: usize,
    ) -> BoxFuture<'static, Result<Option<Fence>, BrokerError>>;

    /// Takes a cluster-wide slot again for a run that gave its own back while it waited for
    /// its tenant's slot (it keeps its fencing token); answers whether it holds one.
    fn resume_run(
        &self,
        execution_id: Uuid,
        limit: usize,
    ) -> BoxFuture<'static, Result<bool, BrokerError>>;

    /// Gives a run's slot back (it ended, never started, or waits for its tenant's slot).
    fn end_run(&self, execution_id: Uuid);

    /// Counts a new workflow of a live session in its tenant's cluster-wide
    /// `max_workflows`, unless the tenant's sessions hold `max` already (answers false).
    /// Counted per session, so the count outlives a lost node (its sessions are taken over,
    /// not ended) and goes with the session's [`Broker::release`].
    fn count_workflow(
        &self,
        session: &SessionKey,
        max: Option<u64>,
    ) -> BoxFuture<'static, Result<bool, BrokerError>>;

    /// Holds a lease on `item` in one of a tenant's cluster-wide counts, unless `max` are
    /// held already (answers false). The lease is renewed by this node's heartbeat, so what
    /// a lost node held lapses within seconds by itself.
    fn hold(
        &self,
        count: TenantCount,
        tenant_id: &TenantId,
        item: Uuid,
        max: u64,
    ) -> BoxFuture<'static, Result<bool, BrokerError>>;

    /// Gives back a lease [`Broker::hold`] took (best effort: it lapses anyway).
    fn let_go(&self, count: TenantCount, tenant_id: &TenantId, item: Uuid);

    /// The session's retained events after `after_seq`, oldest first.
    fn events_after(
        &self,
        session_id: Uuid,
        after_seq: u64,
    ) -> BoxFuture<'static, Result<Vec<EventRecord>, BrokerError>>;
}

/// A tenant's cluster-wide counts of things that end with the node holding them, kept as
/// leases ([`Broker::hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TenantCount {
    /// Open WebSocket connections (`max_websocket_connections`).
    WebSockets,
    /// Runs holding a `max_concurrent_executions` slot.
    Runs,
}

/// A session as the broker knows it: whose, in which tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub session_id: Uuid,
}

/// The session limits that hold across the cluster.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Live sessions in the whole cluster (`max_sessions`).
    pub max_sessions: usize,
    /// Live sessions per user in a tenant (`concurrent_sessions_limit`; 0: none).
    pub per_user: usize,
    /// Live sessions of the tenant in the whole cluster (its own `max_sessions`; 0: none).
    pub per_tenant: usize,
}

/// How a claim went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    Claimed,
    /// The cluster holds `max_sessions` live sessions.
    MaxSessionsReached,
    /// The user holds `concurrent_sessions_limit` live sessions in the cluster.
    TooManySessions,
    /// The tenant holds its own `max_sessions` live sessions in the cluster.
    TenantMaxSessions,
    /// Another node owns the session (an activation lost a race with a take-over).
    OwnedElsewhere,
}

/// A shared broker, as the tree holds it.
pub type SharedBroker = Arc<dyn Broker>;
