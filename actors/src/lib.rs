//! `kailash-actors`: the actor tree, the event model and the typed handle the gateway talks to.
//!
//! This crate owns the *live state* of a gateway node: which tenants are active, which
//! sessions exist and who owns them, how many sessions there are, and every event published.
//! It knows nothing of HTTP, JWT, PostgreSQL or Redis: the gateway crate (`src/`) authenticates
//! a request, turns it into a [`Caller`], and calls the [`Gateway`] handle.
//!
//! ```text
//! RegistryActor (one per process)      tenants' addresses, the global session count, drain
//!  └─ TenantActor (one per tenant)     its session directory: owners, idle expiry, listing
//!      └─ SessionActor (one each)      the session's record, workflows and executions
//!          └─ ExecutionActor (one/run) schedules nodes, emits events, time limits, cancel
//! EventBus (one per process)           per-session `seq`, bounded history, recent ring, fan-out
//! Store + StoreWriter                  the persistence port; creations awaited, the rest batched
//! ```
//!
//! With a persistent [`store::Store`], [`Gateway::restore`] rebuilds the tree from it at start
//! (sessions, workflows, finished executions, event history) and fails the executions a
//! stopped gateway left running.
//!
//! Every mailbox is bounded; the handle sends under a timeout so a stuck actor answers
//! `Unavailable` instead of hanging a request.

pub mod accounts;
pub mod broker;
pub mod bus;
pub mod caller;
pub mod engine;
pub mod error;
pub mod events;
pub mod execution;
mod handle;
mod registry;
pub mod restore;
pub mod rooms;
mod run_slots;
mod session;
mod sharded;
pub mod store;
pub mod subscriber;
mod tenant;

#[cfg(test)]
mod execution_tests;

pub use caller::{Caller, TenantId, UserId};
pub use error::GatewayError;
pub use handle::{Gateway, GatewayConfig, GatewayStats, Persistence, Retention};
pub use session::{ExecutionSummary, SessionDetail, SessionSummary, WorkflowSummary};
