//! `SessionActor`: one per live session; owns the session's record (owner, creation time,
//! metadata; later its workflows and executions).
//!
//! Owned by its [`TenantActor`], which routes every request to it after checking that the
//! caller may see the session, and which tracks idle time. Messages: [`Describe`],
//! [`Summarize`], [`End`]. On stop it tells its parent ([`ChildStopped`]).

use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::{
    caller::UserId,
    tenant::{ChildStopped, TenantActor},
};

pub(crate) struct SessionActor {
    session_id: Uuid,
    owner: UserId,
    created_at: DateTime<Utc>,
    metadata: Arc<Value>,
    parent: Addr<TenantActor>,
}

impl SessionActor {
    pub(crate) fn new(
        session_id: Uuid,
        owner: UserId,
        metadata: Value,
        parent: Addr<TenantActor>,
    ) -> Self {
        Self {
            session_id,
            owner,
            created_at: Utc::now(),
            metadata: Arc::new(metadata),
            parent,
        }
    }

    pub(crate) fn summary(&self) -> SessionSummary {
        SessionSummary {
            session_id: self.session_id,
            user_id: self.owner.clone(),
            created_at: self.created_at,
            workflow_count: 0,
            execution_count: 0,
        }
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.parent.do_send(ChildStopped {
            session_id: self.session_id,
        });
    }
}

/// A session as `GET /api/sessions` lists it.
#[derive(Debug, Clone, Serialize, MessageResponse)]
pub struct SessionSummary {
    pub session_id: Uuid,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub workflow_count: usize,
    pub execution_count: usize,
}

/// A session as `GET /api/sessions/{id}` shows it.
#[derive(Debug, Clone, Serialize, MessageResponse)]
pub struct SessionDetail {
    pub session_id: Uuid,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub active: bool,
    pub workflows: Vec<String>,
    pub active_executions: usize,
    pub metadata: Arc<Value>,
}

#[derive(Message)]
#[rtype(result = "SessionSummary")]
pub(crate) struct Summarize;

impl Handler<Summarize> for SessionActor {
    type Result = SessionSummary;

    fn handle(&mut self, _: Summarize, _: &mut Self::Context) -> SessionSummary {
        self.summary()
    }
}

#[derive(Message)]
#[rtype(result = "SessionDetail")]
pub(crate) struct Describe;

impl Handler<Describe> for SessionActor {
    type Result = SessionDetail;

    fn handle(&mut self, _: Describe, _: &mut Self::Context) -> SessionDetail {
        SessionDetail {
            session_id: self.session_id,
            user_id: self.owner.clone(),
            created_at: self.created_at,
            active: true,
            workflows: Vec::new(),
            active_executions: 0,
            metadata: self.metadata.clone(),
        }
    }
}

/// Finish the session's work and stop. Replies once the session holds nothing running.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct End;

impl Handler<End> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: End, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
