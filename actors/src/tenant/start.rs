//! How a session comes to exist in the tenant's directory on this node: started by its
//! caller ([`StartSession`]: the tenant's own `max_sessions`, the per-user limit, the
//! cluster-wide claim, the store write) or brought back at start ([`RestoreSession`]).

use std::{sync::Arc, time::Duration};

use actix::prelude::*;
use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use super::TenantActor;
use crate::{
    broker::{Claim, SessionKey, SessionLimits},
    caller::Caller,
    engine::workflow::Workflow,
    error::GatewayError,
    events::EventType,
    execution::ExecutionSnapshot,
    session::SessionSummary,
    store::SessionRecord,
};

/// Create a session owned by the caller. The registry has already reserved its slot.
#[derive(Message)]
#[rtype(result = "Result<SessionSummary, GatewayError>")]
pub(crate) struct StartSession {
    pub caller: Caller,
    pub metadata: Value,
}

impl Handler<StartSession> for TenantActor {
    type Result = ResponseActFuture<Self, Result<SessionSummary, GatewayError>>;

    fn handle(&mut self, msg: StartSession, _: &mut Self::Context) -> Self::Result {
        let owner = msg.caller.user_id;
        let retry_after = self
            .config
            .expiry_sweep_interval()
            .max(Duration::from_secs(1));
        if let Some(max) = self.session_limit() {
            return Box::pin(fut::ready(Err(GatewayError::TenantMaxSessions {
                max,
                retry_after,
            })));
        }
        let held = self.sessions_per_owner.entry(owner.clone()).or_default();
        let limit = self.config.concurrent_sessions_limit;
        if limit > 0 && *held >= limit {
            return Box::pin(fut::ready(Err(GatewayError::TooManySessions { limit })));
        }
        // Reserved now: other starts may be handled while this one's write is in flight.
        *held += 1;
        let now = Utc::now();
        let record = SessionRecord {
            tenant_id: self.tenant_id.clone(),
            session_id: Uuid::new_v4(),
            user_id: owner.clone(),
            metadata: msg.metadata,
            created_at: now,
            last_activity: now,
        };
        let (store, broker) = (self.engine.store.clone(), self.engine.broker.clone());
        let tenant_max = self.engine.tenants.limits(&self.tenant_id).max_sessions;
        let limits = SessionLimits {
            max_sessions: self.config.max_sessions,
            per_user: limit,
            per_tenant: tenant_max.map_or(0, |max| max as usize),
        };
        // In a cluster it is claimed (and counted against the cluster-wide limits) before it
        // exists, so no other node activates it; committed before it exists, so a session
        // the client hears of survives a restart.
        Box::pin(
            async move {
                let key = SessionKey {
                    tenant_id: record.tenant_id.clone(),
                    user_id: record.user_id.clone(),
                    session_id: record.session_id,
                };
                let claimed = match &broker {
                    None => false,
                    Some(broker) => match broker.claim(&key, Some(limits)).await {
                        Ok(Claim::Claimed) => true,
                        Ok(Claim::MaxSessionsReached) => {
                            return Err(GatewayError::MaxSessionsReached {
                                limit: limits.max_sessions,
                                retry_after,
                            });
                        }
                        // A new session's id is fresh: nobody else can own it.
                        Ok(Claim::OwnedElsewhere) => return Err(GatewayError::ServedElsewhere),
                        Ok(Claim::TooManySessions) => {
                            return Err(GatewayError::TooManySessions {
                                limit: limits.per_user,
                            });
                        }
                        Ok(Claim::TenantMaxSessions) => {
                            return Err(GatewayError::TenantMaxSessions {
                                max: limits.per_tenant as u64,
                                retry_after,
                            });
                        }
                        Err(error) => {
                            // Served alone: another node sees no owner and may serve it too.
                            tracing::warn!(%error, session_id = %record.session_id,
                                "could not claim the new session in Redis; serving it alone");
                            false
                        }
                    },
                };
                if let Err(error) = store.create_session(&record).await {
                    if let (true, Some(broker)) = (claimed, &broker) {
                        broker.release(&key);
                    }
                    return Err(error.into());
                }
                Ok::<_, GatewayError>(record)
            }
            .into_actor(self)
            .map(move |stored, tenant, ctx| {
                let record = stored.inspect_err(|_| tenant.release_owner_slot(&owner))?;
                let (session_id, owner) = (record.session_id, record.user_id.clone());
                let summary = tenant.adopt(record, Vec::new(), Vec::new(), ctx);
                tenant.publish(EventType::SessionCreated, session_id, owner);
                Ok(summary)
            }),
        )
    }
}

/// Bring back a stored session at start (its slot is already counted by the registry).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RestoreSession {
    pub record: SessionRecord,
    pub workflows: Vec<Arc<Workflow>>,
    pub finished: Vec<ExecutionSnapshot>,
}

impl Handler<RestoreSession> for TenantActor {
    type Result = ();

    fn handle(&mut self, msg: RestoreSession, ctx: &mut Self::Context) {
        *self
            .sessions_per_owner
            .entry(msg.record.user_id.clone())
            .or_default() += 1;
        self.adopt(msg.record, msg.workflows, msg.finished, ctx);
    }
}
