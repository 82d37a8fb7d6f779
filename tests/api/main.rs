//! Integration tests: each starts the real gateway (in-process on a random port, or the
//! real binary as a child process) and talks HTTP to it.

mod auth;
mod cluster;
mod deploy;
mod errors;
mod executions;
mod helpers;
mod identity;
mod limits;
mod observability;
mod persistence;
mod process;
mod python;
mod realtime;
mod sessions;
mod tenants;
mod tls;
mod workflows;
