//! What the handle does differently when a broker shares the store with other nodes: which
//! sessions live here, taking over a lost node's sessions, checking access to a session
//! that lives elsewhere without activating it, and filling a resume from the store.

use std::sync::Arc;

use uuid::Uuid;

use super::Gateway;
use crate::{
    bus::Backlog,
    caller::{Caller, TenantId},
    error::GatewayError,
    events::{EventFilter, PublishedEvent},
    tenant::{GiveUp, TakeOver},
};

/// The sessions that have an actor on this node, readable without asking an actor (the
/// HTTP layer decides from it whether a request is served here or by the session's owner).
#[derive(Debug, Default)]
pub struct LocalSessions(std::sync::RwLock<std::collections::HashSet<Uuid>>);

impl LocalSessions {
    pub fn contains(&self, session_id: Uuid) -> bool {
        self.0.read().expect("local sessions").contains(&session_id)
    }

    pub(crate) fn insert(&self, session_id: Uuid) {
        self.0.write().expect("local sessions").insert(session_id);
    }

    pub(crate) fn remove(&self, session_id: Uuid) {
        self.0.write().expect("local sessions").remove(&session_id);
    }
}

impl Gateway {
    /// Whether `session_id` has an actor on this node.
    pub fn is_local(&self, session_id: Uuid) -> bool {
        self.local_sessions.contains(session_id)
    }

    /// Serves here a session whose node was lost (or this node's own from before a
    /// restart): its executions that died with that node are recorded failed, with their
    /// terminal events. Answers whether the session still exists.
    pub async fn take_over(
        &self,
        tenant_id: TenantId,
        session_id: Uuid,
    ) -> Result<bool, GatewayError> {
        self.ask(
            &self.registry,
            TakeOver {
                tenant_id,
                session_id,
            },
        )
        .await?
    }

    /// Stops serving a session another node took over while this one was cut off (see
    /// `RedisBroker::lost_sessions`).
    pub async fn give_up(&self, tenant_id: TenantId, session_id: Uuid) -> Result<(), GatewayError> {
        self.ask(
            &self.registry,
            GiveUp {
                tenant_id,
                session_id,
            },
        )
        .await?
    }

    /// Whether `caller` may follow the events of `session_id`: the session's own answer when
    /// it lives here; in a cluster, otherwise, the stored session's (any node serves every
    /// session's events, so a stream must not make this node activate the session).
    pub async fn check_session_access(
        &self,
        caller: &Caller,
        session_id: Uuid,
    ) -> Result<(), GatewayError> {
        if !self.clustered || self.is_local(session_id) {
            return self.session(caller.clone(), session_id).await.map(drop);
        }
        match self
            .store
            .active_session(&caller.tenant_id, session_id)
            .await?
        {
            Some(session) if caller.may_access(&session.user_id) => Ok(()),
            _ => Err(GatewayError::SessionNotFound),
        }
    }

    /// Replaces a backlog's gap by the stored events it stands for, when the store holds
    /// every one of them (the origin node persisted them; Redis lost its copy). A partial
    /// or failed read leaves the gap as it was.
    pub(super) async fn fill_from_store(
        &self,
        backlog: &mut Backlog,
        filter: &EventFilter,
        session_id: Uuid,
        last_seq: u64,
    ) {
        let upto = backlog.events.first().map(|event| event.seq);
        let Ok(stored) = self
            .store
            .recent_events(&filter.tenant_id, session_id, self.config.bus.history_len)
            .await
        else {
            return;
        };
        let missed: Vec<_> = stored
            .iter()
            .filter(|record| record.seq > last_seq && upto.is_none_or(|upto| record.seq < upto))
            .collect();
        let contiguous = missed
            .iter()
            .zip(last_seq + 1..)
            .all(|(record, expected)| record.seq == expected);
        let complete = match upto {
            Some(upto) => missed.len() as u64 == upto - last_seq - 1,
            None => !missed.is_empty(),
        };
        if !(contiguous && complete) {
            return;
        }
        let found = missed
            .into_iter()
            .map(|record| Arc::new(PublishedEvent::restored(record)))
            .filter(|event| filter.matches(event));
        backlog.events.splice(0..0, found);
        backlog.gap = None;
    }
}
