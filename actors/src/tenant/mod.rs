//! `TenantActor`: one per active tenant; owns the tenant's session directory — which sessions
//! exist, who owns each, when each was last used, how many each user holds — and so is the
//! one place that decides whether a caller may reach a session, whether a user may open
//! another (`concurrent_sessions_limit`), and when an idle one expires. It also enforces the
//! tenant's own limits (`limits`: sessions, workflows, concurrent runs).
//!
//! Owned by the [`RegistryActor`], which routes requests here by the caller's tenant.
//! Messages: [`StartSession`] and [`RestoreSession`] (in `start`), [`ForSession`],
//! [`EndSession`], [`ListSessions`], [`CountNearTimeout`], [`TakeOver`], [`GiveUp`],
//! [`ChildStopped`] from its sessions, and (in `limits`) [`CancelTenantRuns`],
//! [`CountWorkflow`] from its sessions, `AcquireRunSlot` / `ReleaseRunSlot` from its
//! executions.
//!
//! A new session is recorded in the store before it is reported created; its last activity
//! is written (coalesced) at each expiry sweep, and its end when it is forgotten.

mod limits;
mod start;

pub(crate) use limits::{CancelTenantRuns, CountWorkflow};
pub(crate) use start::{RestoreSession, StartSession};

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{dev::ToEnvelope, prelude::*};
use chrono::Utc;
use futures_util::future::join_all;
use uuid::Uuid;

use crate::{
    broker::{Claim, SessionKey},
    bus::{EventBus, Publish},
    caller::{Caller, TenantId, UserId},
    engine::workflow::Workflow,
    error::GatewayError,
    events::{Event, EventType},
    execution::ExecutionSnapshot,
    handle::{EngineContext, GatewayConfig},
    registry::{RegistryActor, SessionActivated, SessionEnd, SessionEnded},
    restore::{NODE_LOST, interrupted_event, parse_stored_workflows},
    run_slots::RunSlots,
    session::{End, Relinquish, SessionActor, SessionSummary, Summarize},
    sharded::ShardedMap,
    store::{SessionRecord, Write},
};

pub(crate) struct TenantActor {
    tenant_id: TenantId,
    config: Arc<GatewayConfig>,
    engine: Arc<EngineContext>,
    registry: Addr<RegistryActor>,
    bus: Addr<EventBus>,
    sessions: ShardedMap<SessionEntry>,
    /// Live sessions per owner, for `concurrent_sessions_limit`.
    sessions_per_owner: HashMap<UserId, usize>,
    /// Its runs on this node holding or waiting for a `max_concurrent_executions` slot.
    run_slots: RunSlots,
    /// Workflows (distinct ids) of its live sessions on this node, for `max_workflows`.
    workflows: usize,
}

struct SessionEntry {
    addr: Addr<SessionActor>,
    owner: UserId,
    last_activity: Instant,
    /// The last activity the store has been told of (written at the next sweep when older).
    persisted_activity: Instant,
    /// Set once an end (close or expiry) is under way, so the session takes no more requests,
    /// is ended only once, and is announced with the right reason whichever of its reply and
    /// its [`ChildStopped`] arrives first.
    ending: Option<EndReason>,
    /// Its workflows (distinct ids), counted in the tenant's `max_workflows`.
    workflows: usize,
}

/// Why a session ended; decides the event published for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndReason {
    Closed,
    Expired,
}

impl TenantActor {
    pub(crate) fn new(
        tenant_id: TenantId,
        config: Arc<GatewayConfig>,
        engine: Arc<EngineContext>,
        registry: Addr<RegistryActor>,
        bus: Addr<EventBus>,
    ) -> Self {
        Self {
            tenant_id,
            config,
            engine,
            registry,
            bus,
            sessions: ShardedMap::new(),
            sessions_per_owner: HashMap::new(),
            run_slots: RunSlots::default(),
            workflows: 0,
        }
    }

    /// The session `caller` asked for, if it exists, is not ending, and is the caller's to
    /// see. Unknown and not-yours are the same answer on purpose.
    fn visible_session(
        &mut self,
        caller: &Caller,
        session_id: Uuid,
    ) -> Result<&mut SessionEntry, GatewayError> {
        match self.sessions.get_mut(&session_id) {
            Some(entry) if entry.ending.is_none() && caller.may_access(&entry.owner) => Ok(entry),
            _ => Err(GatewayError::SessionNotFound),
        }
    }

    fn publish(&self, event_type: EventType, session_id: Uuid, owner: UserId) {
        self.bus.do_send(Publish(
            Event::new(event_type, "session", self.tenant_id.clone()).in_session(session_id, owner),
        ));
    }

    /// Ends a session: asks it to finish its work and stop, records the end in the store
    /// (awaited: no node may activate it again from the store once the end is answered),
    /// then forgets it.
    fn end_session(
        &mut self,
        session_id: Uuid,
        reason: EndReason,
    ) -> ResponseActFuture<Self, Result<(), GatewayError>> {
        let Some(entry) = self.sessions.get_mut(&session_id) else {
            return Box::pin(fut::ready(Err(GatewayError::SessionNotFound)));
        };
        entry.ending = Some(reason);
        let addr = entry.addr.clone();
        let end = End {
            only_if_idle: reason == EndReason::Expired,
        };
        let (store, record) = (
            self.engine.store.clone(),
            self.end_record(session_id, reason),
        );
        Box::pin(
            async move {
                // A session that already stopped has nothing left to finish.
                let ended = addr.send(end).await.unwrap_or(true);
                let stored = ended && store.write_batch(&[record]).await.is_ok();
                (ended, stored)
            }
            .into_actor(self)
            .map(move |(ended, stored), tenant, _| {
                if ended {
                    // Not stored now (the database is away): the writer retries it.
                    tenant.forget(session_id, stored);
                } else if let Some(entry) = tenant.sessions.get_mut(&session_id) {
                    // Still running executions: not idle after all.
                    entry.ending = None;
                    entry.last_activity = Instant::now();
                }
                Ok(())
            }),
        )
    }

    /// Brings a stored session this node has no actor for into the directory: one another
    /// node created, or whose node was lost (its running executions died with that node and
    /// are recorded failed, with their terminal events). Answers whether it is here now.
    fn activate(
        &mut self,
        session_id: Uuid,
    ) -> ResponseActFuture<Self, Result<bool, GatewayError>> {
        let (store, tenant_id) = (self.engine.store.clone(), self.tenant_id.clone());
        let broker = self.engine.broker.clone();
        let keep_finished = self.engine.finished_executions_per_session;
        let load = async move {
            if let Some(broker) = &broker
                && !broker
                    .owns(session_id)
                    .await
                    .map_err(|error| GatewayError::BrokerUnavailable(error.to_string()))?
            {
                return Err(GatewayError::ServedElsewhere);
            }
            let Some(record) = store.active_session(&tenant_id, session_id).await? else {
                return Ok(None);
            };
            if let Some(broker) = &broker {
                // Owned here from now on: if this node is lost too, a survivor finds it.
                let key = SessionKey {
                    tenant_id: tenant_id.clone(),
                    user_id: record.user_id.clone(),
                    session_id,
                };
                let claim = broker
                    .claim(&key, None)
                    .await
                    .map_err(|error| GatewayError::BrokerUnavailable(error.to_string()))?;
                if claim == Claim::OwnedElsewhere {
                    return Err(GatewayError::ServedElsewhere);
                }
            }
            let lost = store
                .fail_interrupted(&tenant_id, Some(session_id), NODE_LOST, Utc::now())
                .await?;
            let workflows = store.workflows(&tenant_id, session_id).await?;
            let finished = store
                .executions(&tenant_id, session_id, keep_finished)
                .await?
                .into_iter()
                .map(|execution| execution.snapshot)
                .collect::<Vec<_>>();
            Ok::<_, GatewayError>(Some((record, lost, workflows, finished)))
        };
        Box::pin(load.into_actor(self).map(move |loaded, tenant, ctx| {
            let Some((record, lost, workflows, finished)) = loaded? else {
                return Ok(false);
            };
            // Another request may have activated it while this one was loading.
            if tenant.sessions.get_mut(&session_id).is_none() {
                let workflows = parse_stored_workflows(workflows, &tenant.engine.node_registry);
                *tenant
                    .sessions_per_owner
                    .entry(record.user_id.clone())
                    .or_default() += 1;
                tenant.adopt(record, workflows, finished, ctx);
                tenant.registry.do_send(SessionActivated);
                for execution in &lost {
                    tenant.bus.do_send(Publish(interrupted_event(execution)));
                }
            }
            Ok(true)
        }))
    }

    /// Starts a session actor for `record` (new or restored) and enters it in the directory.
    fn adopt(
        &mut self,
        record: SessionRecord,
        workflows: Vec<Arc<Workflow>>,
        finished: Vec<ExecutionSnapshot>,
        ctx: &mut Context<Self>,
    ) -> SessionSummary {
        let session_id = record.session_id;
        let owner = record.user_id.clone();
        let idle_for = (Utc::now() - record.last_activity)
            .to_std()
            .unwrap_or_default();
        let now = Instant::now();
        let last_activity = now.checked_sub(idle_for).unwrap_or(now);
        let workflow_count = workflows.len();
        self.workflows += workflow_count;
        let session = SessionActor::new(record, ctx.address(), self.engine.clone())
            .with_history(workflows, finished);
        let summary = session.summary();
        self.engine.local_sessions.insert(session_id);
        self.sessions.insert(
            session_id,
            SessionEntry {
                addr: session.start(),
                owner,
                last_activity,
                persisted_activity: last_activity,
                ending: None,
                workflows: workflow_count,
            },
        );
        summary
    }

    /// Gives back what a session leaving the directory held: its owner's slot and its
    /// workflows' place in `max_workflows`.
    fn release_entry(&mut self, entry: &SessionEntry) {
        self.workflows -= entry.workflows;
        self.release_owner_slot(&entry.owner);
    }

    /// Gives back one of `owner`'s sessions under `concurrent_sessions_limit`.
    fn release_owner_slot(&mut self, owner: &UserId) {
        if let Some(count) = self.sessions_per_owner.get_mut(owner) {
            *count -= 1;
            if *count == 0 {
                self.sessions_per_owner.remove(owner);
            }
        }
    }

    /// Tells the store of the activity of sessions used since the last sweep.
    fn persist_activity(&mut self) {
        let now = (Instant::now(), Utc::now());
        for (session_id, entry) in self.sessions.iter_mut() {
            if entry.last_activity > entry.persisted_activity {
                entry.persisted_activity = entry.last_activity;
                let ago = now.0.duration_since(entry.last_activity);
                self.engine.writer.write(Write::SessionTouched {
                    tenant_id: self.tenant_id.clone(),
                    session_id: *session_id,
                    at: now.1 - chrono::Duration::from_std(ago).unwrap_or_default(),
                });
            }
        }
    }

    /// The store's record of a session's end.
    fn end_record(&self, session_id: Uuid, reason: EndReason) -> Write {
        Write::SessionEnded {
            tenant_id: self.tenant_id.clone(),
            session_id,
            at: Utc::now(),
            reason: match reason {
                EndReason::Expired => "expired",
                EndReason::Closed => "closed",
            },
        }
    }

    /// Removes a session from the directory (once), announcing why and releasing its slot;
    /// its end goes to the writer unless `stored` already. A session that stopped without
    /// being asked to is recorded as closed.
    fn forget(&mut self, session_id: Uuid, stored: bool) {
        if let Some(entry) = self.sessions.remove(&session_id) {
            self.engine.local_sessions.remove(session_id);
            let reason = entry.ending.unwrap_or(EndReason::Closed);
            let event_type = match reason {
                EndReason::Closed => EventType::SessionClosed,
                EndReason::Expired => EventType::SessionExpired,
            };
            if !stored {
                self.engine
                    .writer
                    .write(self.end_record(session_id, reason));
            }
            self.release_entry(&entry);
            self.publish(event_type, session_id, entry.owner);
            self.registry.do_send(SessionEnded {
                how: match reason {
                    EndReason::Closed => SessionEnd::Closed,
                    EndReason::Expired => SessionEnd::Expired,
                },
            });
        }
    }

    fn expire_idle_sessions(&mut self, ctx: &mut Context<Self>) {
        self.persist_activity();
        // One clock read per sweep, not per session: the sweep walks every session.
        let Some(cutoff) = Instant::now().checked_sub(self.config.session_timeout) else {
            return;
        };
        let idle: Vec<Uuid> = self
            .sessions
            .iter()
            .filter(|(_, entry)| entry.ending.is_none() && entry.last_activity <= cutoff)
            .map(|(id, _)| *id)
            .collect();
        for session_id in idle {
            ctx.spawn(
                self.end_session(session_id, EndReason::Expired)
                    .map(|_, _, _| ()),
            );
        }
    }
}

impl Actor for TenantActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.config.mailbox_capacity);
        ctx.run_interval(
            self.config.expiry_sweep_interval(),
            Self::expire_idle_sessions,
        );
    }
}

/// Deliver `msg` to a session the caller may see, counting it as activity.
pub(crate) struct ForSession<M> {
    pub caller: Caller,
    pub session_id: Uuid,
    pub msg: M,
}

impl<M> Message for ForSession<M>
where
    M: Message,
    M::Result: Send,
{
    type Result = Result<M::Result, GatewayError>;
}

impl<M> Handler<ForSession<M>> for TenantActor
where
    M: Message + Send + 'static,
    M::Result: Send,
    SessionActor: Handler<M>,
    <SessionActor as Actor>::Context: ToEnvelope<SessionActor, M>,
{
    type Result = ResponseActFuture<Self, Result<M::Result, GatewayError>>;

    fn handle(&mut self, request: ForSession<M>, _: &mut Self::Context) -> Self::Result {
        if self.sessions.get_mut(&request.session_id).is_some() {
            return self.deliver(request);
        }
        Box::pin(self.activate(request.session_id).then(
            move |activated, tenant, _| match activated {
                Ok(_) => tenant.deliver(request),
                Err(error) => Box::pin(fut::ready(Err(error))),
            },
        ))
    }
}

impl TenantActor {
    /// Hands `request` to its session, if the caller may see it.
    fn deliver<M>(
        &mut self,
        request: ForSession<M>,
    ) -> ResponseActFuture<Self, Result<M::Result, GatewayError>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        SessionActor: Handler<M>,
        <SessionActor as Actor>::Context: ToEnvelope<SessionActor, M>,
    {
        let addr = match self.visible_session(&request.caller, request.session_id) {
            Ok(entry) => {
                entry.last_activity = Instant::now();
                entry.addr.clone()
            }
            Err(error) => return Box::pin(fut::ready(Err(error))),
        };
        // A session that stopped between lookup and delivery is, to the caller, gone.
        Box::pin(
            async move {
                addr.send(request.msg)
                    .await
                    .map_err(|_| GatewayError::SessionNotFound)
            }
            .into_actor(self),
        )
    }
}

/// Serve a session here that was owned by a node now lost (or by this node before it
/// restarted): activates it from the store, failing the executions that died with its node.
/// Answers whether the session exists.
#[derive(Message)]
#[rtype(result = "Result<bool, GatewayError>")]
pub(crate) struct TakeOver {
    pub tenant_id: TenantId,
    pub session_id: Uuid,
}

impl Handler<TakeOver> for TenantActor {
    type Result = ResponseActFuture<Self, Result<bool, GatewayError>>;

    fn handle(&mut self, msg: TakeOver, _: &mut Self::Context) -> Self::Result {
        if self.sessions.get_mut(&msg.session_id).is_some() {
            return Box::pin(fut::ready(Ok(true)));
        }
        self.activate(msg.session_id)
    }
}

/// Stop serving a session another node took over while this one was cut off from Redis
/// (paused, or partitioned, past its heartbeat's lapse). Its actor and runs stop here
/// without a word and without a write: the session lives on at its new owner, which failed
/// those runs (and raised their fencing tokens, so whatever they wrote meanwhile was
/// refused).
#[derive(Message)]
#[rtype(result = "Result<(), GatewayError>")]
pub(crate) struct GiveUp {
    pub tenant_id: TenantId,
    pub session_id: Uuid,
}

impl Handler<GiveUp> for TenantActor {
    type Result = Result<(), GatewayError>;

    fn handle(&mut self, msg: GiveUp, _: &mut Self::Context) -> Self::Result {
        if let Some(entry) = self.sessions.remove(&msg.session_id) {
            self.engine.local_sessions.remove(msg.session_id);
            self.release_entry(&entry);
            entry.addr.do_send(Relinquish);
            self.registry.do_send(SessionEnded {
                how: SessionEnd::GivenUp,
            });
            tracing::warn!(session_id = %msg.session_id,
                "another node took this session over while this one was cut off; stopped serving it");
        }
        Ok(())
    }
}

/// Close a session the caller may see (`DELETE /api/sessions/{id}`).
#[derive(Message)]
#[rtype(result = "Result<(), GatewayError>")]
pub(crate) struct EndSession {
    pub caller: Caller,
    pub session_id: Uuid,
}

impl Handler<EndSession> for TenantActor {
    type Result = ResponseActFuture<Self, Result<(), GatewayError>>;

    fn handle(&mut self, msg: EndSession, _: &mut Self::Context) -> Self::Result {
        if self.sessions.get_mut(&msg.session_id).is_some() {
            return self.end_visible(msg);
        }
        Box::pin(
            self.activate(msg.session_id)
                .then(move |activated, tenant, _| match activated {
                    Ok(_) => tenant.end_visible(msg),
                    Err(error) => Box::pin(fut::ready(Err(error))),
                }),
        )
    }
}

impl TenantActor {
    fn end_visible(
        &mut self,
        msg: EndSession,
    ) -> ResponseActFuture<Self, Result<(), GatewayError>> {
        if let Err(error) = self.visible_session(&msg.caller, msg.session_id) {
            return Box::pin(fut::ready(Err(error)));
        }
        self.end_session(msg.session_id, EndReason::Closed)
    }
}

/// The caller's sessions (all of the tenant's in open mode), oldest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<SessionSummary>, GatewayError>")]
pub(crate) struct ListSessions {
    pub caller: Caller,
}

impl Handler<ListSessions> for TenantActor {
    type Result = ResponseFuture<Result<Vec<SessionSummary>, GatewayError>>;

    fn handle(&mut self, msg: ListSessions, _: &mut Self::Context) -> Self::Result {
        let visible: Vec<_> = self
            .sessions
            .values()
            .filter(|entry| entry.ending.is_none() && msg.caller.may_access(&entry.owner))
            .map(|entry| entry.addr.clone())
            .collect();
        Box::pin(async move {
            let replies = join_all(visible.iter().map(|addr| addr.send(Summarize))).await;
            // A session that ended while we asked is simply no longer listed.
            let mut sessions: Vec<_> = replies.into_iter().filter_map(Result::ok).collect();
            sessions.sort_by_key(|s| (s.created_at, s.session_id));
            Ok(sessions)
        })
    }
}

/// How many of this tenant's sessions are close to expiring (idle for more than 80% of the
/// timeout), for `/health/detailed`.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct CountNearTimeout;

impl Handler<CountNearTimeout> for TenantActor {
    type Result = usize;

    fn handle(&mut self, _: CountNearTimeout, _: &mut Self::Context) -> usize {
        let Some(cutoff) = Instant::now().checked_sub(self.config.session_timeout.mul_f64(0.8))
        else {
            return 0;
        };
        self.sessions
            .values()
            .filter(|entry| entry.last_activity <= cutoff)
            .count()
    }
}

/// A session actor stopped. Normally the tenant ended it and may already have forgotten it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ChildStopped {
    pub session_id: Uuid,
}

impl Handler<ChildStopped> for TenantActor {
    type Result = ();

    fn handle(&mut self, msg: ChildStopped, _: &mut Self::Context) {
        self.forget(msg.session_id, false);
    }
}

impl GatewayConfig {
    /// How often tenants look for idle sessions: often enough that a session outlives its
    /// timeout by at most a tenth of it, never busier than ten times a second.
    pub(crate) fn expiry_sweep_interval(&self) -> Duration {
        (self.session_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(30))
    }
}
