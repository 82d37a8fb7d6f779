//! [`Gateway`]: the typed handle through which the rest of the program talks to the actor
//! tree. Callers see async methods and [`GatewayError`]s, never actix types, and every ask
//! is bounded by a timeout so a stuck actor answers `Unavailable` instead of hanging.

use std::{sync::Arc, time::Duration};

use actix::{dev::ToEnvelope, prelude::*};
use serde_json::Value;
use tokio::time::timeout;
use uuid::Uuid;

use crate::{
    bus::{BusConfig, BusStats, EventBus, RecentEvents},
    caller::Caller,
    error::GatewayError,
    events::{EventFilter, PublishedEvent},
    registry::{CreateSession, Drain, RegistryActor, Stats},
    session::{Describe, SessionDetail, SessionSummary},
    tenant::{EndSession, ForSession, ListSessions},
};

/// What the actor tree needs to know; the gateway crate builds it from its settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Node-wide limit on live sessions.
    pub max_sessions: usize,
    /// A session unused for this long expires.
    pub session_timeout: Duration,
    /// How long a caller waits for an actor's answer.
    pub ask_timeout: Duration,
    /// Bound of the registry's and tenants' mailboxes.
    pub mailbox_capacity: usize,
    pub bus: BusConfig,
}

/// A cheap, cloneable handle on a running actor tree.
#[derive(Clone)]
pub struct Gateway {
    registry: Addr<RegistryActor>,
    bus: Addr<EventBus>,
    config: Arc<GatewayConfig>,
}

/// Counters across the tree.
#[derive(Debug, Clone, Copy)]
pub struct GatewayStats {
    pub active_sessions: usize,
    pub max_sessions: usize,
    pub sessions_near_timeout: usize,
    pub tenants: usize,
    pub sessions_created: u64,
    pub sessions_closed: u64,
    pub sessions_expired: u64,
    pub events_emitted: u64,
    pub retained_event_streams: usize,
    pub draining: bool,
}

impl Gateway {
    /// Starts the registry and the event bus. Must run inside an actix `System`.
    pub fn start(config: GatewayConfig) -> Self {
        let config = Arc::new(config);
        let bus = EventBus::new(config.bus.clone()).start();
        let registry = RegistryActor::new(config.clone(), bus.clone()).start();
        Self {
            registry,
            bus,
            config,
        }
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    async fn ask<A, M>(&self, addr: &Addr<A>, msg: M) -> Result<M::Result, GatewayError>
    where
        A: Actor + Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        match timeout(self.config.ask_timeout, addr.send(msg)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) | Err(_) => Err(GatewayError::Unavailable),
        }
    }

    pub async fn create_session(
        &self,
        caller: Caller,
        metadata: Value,
    ) -> Result<SessionSummary, GatewayError> {
        self.ask(&self.registry, CreateSession { caller, metadata })
            .await?
    }

    pub async fn session(
        &self,
        caller: Caller,
        session_id: Uuid,
    ) -> Result<SessionDetail, GatewayError> {
        self.ask(
            &self.registry,
            ForSession {
                caller,
                session_id,
                msg: Describe,
            },
        )
        .await?
    }

    pub async fn list_sessions(&self, caller: Caller) -> Result<Vec<SessionSummary>, GatewayError> {
        self.ask(&self.registry, ListSessions { caller }).await?
    }

    /// Closes a session the caller may see; returns once it has ended.
    pub async fn close_session(
        &self,
        caller: Caller,
        session_id: Uuid,
    ) -> Result<(), GatewayError> {
        self.ask(&self.registry, EndSession { caller, session_id })
            .await?
    }

    /// The newest `count` retained events that `filter` lets through, oldest first.
    pub async fn recent_events(
        &self,
        filter: EventFilter,
        count: usize,
    ) -> Result<Vec<Arc<PublishedEvent>>, GatewayError> {
        self.ask(&self.bus, RecentEvents { filter, count }).await
    }

    pub async fn stats(&self) -> Result<GatewayStats, GatewayError> {
        let registry = self.ask(&self.registry, Stats).await?;
        let bus = self.ask(&self.bus, BusStats).await?;
        Ok(GatewayStats {
            active_sessions: registry.active_sessions,
            max_sessions: self.config.max_sessions,
            sessions_near_timeout: registry.sessions_near_timeout,
            tenants: registry.tenants,
            sessions_created: registry.sessions_created,
            sessions_closed: registry.sessions_closed,
            sessions_expired: registry.sessions_expired,
            events_emitted: bus.events_emitted,
            retained_event_streams: bus.retained_streams,
            draining: registry.draining,
        })
    }

    /// Stops taking new work. Existing sessions stay (they outlive a node once persisted).
    pub async fn drain(&self) -> Result<(), GatewayError> {
        self.ask(&self.registry, Drain).await
    }
}
