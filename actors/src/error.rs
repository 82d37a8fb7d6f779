//! The errors the actor layer reports. The gateway crate maps each one onto a row of its
//! error table (status, stable `code`, message); nothing here knows about HTTP.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Unknown, or not the caller's: deliberately the same error, so ids cannot be probed.
    #[error("session not found")]
    SessionNotFound,
    /// The node-wide `max_sessions` limit is reached; the client may retry after the hint
    /// (the idle-expiry sweep is what frees slots without a client's help).
    #[error("the maximum number of sessions ({limit}) is reached")]
    MaxSessionsReached { limit: usize, retry_after: Duration },
    /// The caller already holds `concurrent_sessions_limit` live sessions.
    #[error("at most {limit} sessions per user")]
    TooManySessions { limit: usize },
    /// No workflow with that id in the session, nor a shared one.
    #[error("workflow not found")]
    WorkflowNotFound,
    /// Unknown execution, or not in this session.
    #[error("execution not found")]
    ExecutionNotFound,
    /// The execution already finished (cancel of a finished run).
    #[error("the execution is not running")]
    ExecutionNotRunning,
    /// The tenant's own `max_sessions` is reached (on this node).
    #[error("the tenant's max_sessions ({max}) is reached")]
    TenantMaxSessions { max: u64, retry_after: Duration },
    /// Too many executions run at once, in the session or on the node (`scope`).
    #[error("at most {limit} executions may run at once per {scope}")]
    TooManyExecutions { limit: usize, scope: &'static str },
    /// A run's `config_overrides` give a node a config its type refuses (the same check as
    /// at workflow creation, so a request cannot switch off what creation refused).
    #[error("config_overrides.{node_id}: {message}")]
    InvalidOverride {
        node_id: String,
        parameter: Option<String>,
        message: String,
    },
    /// The gateway is shutting down and takes no new work.
    #[error("the gateway is draining")]
    Draining,
    /// The store (database) could not record or read what the request needs; `reason`
    /// says why. Nothing was changed.
    #[error("the store is unavailable: {0}")]
    StoreUnavailable(String),
    /// The cluster's broker could not say which node serves a session.
    #[error("the broker is unavailable: {0}")]
    BrokerUnavailable(String),
    /// The session is served by another node of the cluster, and this request cannot be
    /// forwarded there (HTTP requests are; WebSocket messages are not).
    #[error("the session is served by another node")]
    ServedElsewhere,
    /// An actor did not answer within the ask timeout, or has stopped.
    #[error("an internal component did not answer in time")]
    Unavailable,
}

impl From<actix::MailboxError> for GatewayError {
    fn from(_: actix::MailboxError) -> Self {
        GatewayError::Unavailable
    }
}

impl From<crate::store::StoreError> for GatewayError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Unavailable(reason)
            | crate::store::StoreError::Failed(reason) => GatewayError::StoreUnavailable(reason),
        }
    }
}
