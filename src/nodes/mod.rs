//! The native node library: the Kailash node types that run inside the gateway process,
//! registered into the engine's [`NodeRegistry`] at start.
//!
//! File nodes (`files`, `csv`, `json`, `text`) touch only files inside the configured data
//! directories; network nodes (`http`, `sql`) refuse loopback, private and link-local
//! targets unless `egress_allow` lets them through (`egress`).

mod csv;
mod egress;
mod files;
mod http;
mod json;
mod merge;
mod sql;
mod switch;
mod text;

use std::path::PathBuf;

use kailash_actors::engine::node::NodeRegistry;

/// What the native nodes need from the gateway's settings.
#[derive(Debug, Clone, Default)]
pub struct NodeEnvironment {
    /// Directories file nodes may read and write; relative paths resolve in the first.
    pub data_dirs: Vec<PathBuf>,
    /// Host names, IP addresses and CIDR ranges network nodes may reach even though they
    /// are loopback, private or link-local.
    pub egress_allow: Vec<String>,
}

/// Every native node type, ready for the engine.
pub fn native_registry(env: &NodeEnvironment) -> NodeRegistry {
    let mut registry = NodeRegistry::new();
    csv::register(&mut registry, env);
    json::register(&mut registry, env);
    text::register(&mut registry, env);
    switch::register(&mut registry);
    merge::register(&mut registry);
    http::register(&mut registry, env);
    sql::register(&mut registry, env);
    registry
}
