//! Kailash Gateway: the HTTP/WebSocket face of the actor tree in `kailash-actors`.
//!
//! `app` builds and binds the server; `adapters` implement the actors' ports (PostgreSQL);
//! `config` loads settings; `auth` turns credentials into callers (and runs logins);
//! `access` decides what they may do and keeps the audit log; `clock` is the injectable
//! time those decisions use; `tenants` the tenant table every request is admitted by; `http` holds the error table and request plumbing; `routes`
//! the handlers;
//! `metrics`, `logging` and `host` observe; `shutdown` drains.

pub mod access;
pub mod adapters;
pub mod app;
pub mod auth;
pub mod cidr;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod host;
pub mod http;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod nodes;
pub mod realtime;
pub mod routes;
pub mod shared_workflows;
pub mod shutdown;
pub mod tenants;
pub mod tls;

pub use app::Application;
