//! Adapters: the gateway's implementations of the ports `kailash-actors` defines. The
//! actors talk to the port; only the adapter knows the technology behind it.
//!
//! - [`postgres`]: the `Store` port on PostgreSQL (pool, migrations, repositories).
//! - [`redis`]: the `Broker` port on Redis (cross-node events, shared history, heartbeats).

pub mod postgres;
pub mod redis;
