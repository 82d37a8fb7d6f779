//! The workflow engine: node declarations and registry (`node`), workflow parsing and
//! validation (`workflow`), and the pure scheduling of one run (`plan`). Plain Rust: it
//! unit-tests without an actor system; the `ExecutionActor` drives it.

pub mod node;
pub mod plan;
pub mod workflow;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
