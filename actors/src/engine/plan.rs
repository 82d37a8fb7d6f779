//! [`RunPlan`]: the state of one run of a workflow, as pure data — which nodes are pending,
//! running, finished; which are ready; what parameters each receives; what progress is.
//! The `ExecutionActor` drives it and does the I/O; this module decides.
//!
//! Rules (API.md "Executions"):
//! - a node is ready when every predecessor has finished and none failed;
//! - a node whose incoming connections are all *dead* (from a skipped node, or from a
//!   branching node's output that is null — the SwitchNode branch not taken) is skipped;
//! - a failed node skips its dependents, transitively;
//! - parameters, lowest precedence first: declared defaults, node config, flat inputs (only
//!   parameters the node declares and no connection feeds), `config_overrides`, node-scoped
//!   inputs, connection values.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{
    node::{NodeRegistry, NodeSchema},
    workflow::{Connection, Workflow},
};

/// Where one node is in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Pending,
    Running,
    Completed,
    Failed,
    Skipped,
    Cancelled,
}

/// What to do next with a node that became ready.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Run it with these parameters (and these connection-fed inputs, for events).
    Run {
        node: usize,
        params: Map<String, Value>,
        inputs: Map<String, Value>,
    },
    /// Skip it: no live input reaches it.
    Skip { node: usize },
    /// It cannot run: an input it needs is missing.
    Fail { node: usize, error: String },
}

/// The run-time inputs of one execution, split once.
#[derive(Debug, Clone, Default)]
pub struct RunInputs {
    by_node: HashMap<String, Map<String, Value>>,
    flat: Map<String, Value>,
    overrides: HashMap<String, Map<String, Value>>,
}

impl RunInputs {
    /// `inputs` keys that name a node of the workflow and hold an object are node-scoped;
    /// every other key is a flat input. `config_overrides` are node-scoped by definition.
    pub fn new(
        workflow: &Workflow,
        inputs: &Map<String, Value>,
        overrides: &Map<String, Value>,
    ) -> Self {
        let is_node = |key: &str| workflow.nodes.iter().any(|n| &*n.id == key);
        let mut by_node = HashMap::new();
        let mut flat = Map::new();
        for (key, value) in inputs {
            match value {
                Value::Object(scoped) if is_node(key) => {
                    by_node.insert(key.clone(), scoped.clone());
                }
                _ => {
                    flat.insert(key.clone(), value.clone());
                }
            }
        }
        let overrides = overrides
            .iter()
            .filter_map(|(node, values)| Some((node.clone(), values.as_object()?.clone())))
            .collect();
        Self {
            by_node,
            flat,
            overrides,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunPlan {
    states: Vec<NodeState>,
    outputs: Vec<Option<Map<String, Value>>>,
    /// Incoming connections of each node, by index into the workflow's connections.
    incoming: Vec<Vec<usize>>,
    /// Nodes fed by each node.
    successors: Vec<Vec<usize>>,
    unfinished_predecessors: Vec<usize>,
    /// Pending nodes whose predecessors have all finished, in the order they got there.
    ready: Vec<usize>,
    /// Nodes completed, failed or skipped.
    finished: usize,
    cancelled: bool,
}

impl RunPlan {
    pub fn new(workflow: &Workflow) -> Self {
        let count = workflow.nodes.len();
        let mut incoming = vec![Vec::new(); count];
        let mut successors = vec![Vec::new(); count];
        for (i, c) in workflow.connections.iter().enumerate() {
            incoming[c.to].push(i);
            if !successors[c.from].contains(&c.to) {
                successors[c.from].push(c.to);
            }
        }
        let unfinished_predecessors: Vec<usize> = (0..count)
            .map(|node| {
                let mut from: Vec<usize> = incoming[node]
                    .iter()
                    .map(|&c| workflow.connections[c].from)
                    .collect();
                from.sort_unstable();
                from.dedup();
                from.len()
            })
            .collect();
        let ready = (0..count)
            .filter(|&n| unfinished_predecessors[n] == 0)
            .collect();
        Self {
            states: vec![NodeState::Pending; count],
            outputs: vec![None; count],
            incoming,
            successors,
            unfinished_predecessors,
            ready,
            finished: 0,
            cancelled: false,
        }
    }

    pub fn state(&self, node: usize) -> NodeState {
        self.states[node]
    }

    pub fn states(&self) -> &[NodeState] {
        &self.states
    }

    pub fn output(&self, node: usize) -> Option<&Map<String, Value>> {
        self.outputs[node].as_ref()
    }

    /// Percentage of nodes finished (completed, failed or skipped); 100 for an empty
    /// workflow.
    pub fn progress(&self) -> f64 {
        if self.states.is_empty() {
            return 100.0;
        }
        (self.finished as f64 * 1000.0 / self.states.len() as f64).round() / 10.0
    }

    /// No node is pending or running.
    pub fn is_done(&self) -> bool {
        self.states
            .iter()
            .all(|s| !matches!(s, NodeState::Pending | NodeState::Running))
    }

    /// The nodes that can start now, in declaration order: those with no predecessors at
    /// the start, then those whose last predecessor just finished. Marks each `Running`,
    /// `Skipped` or `Failed` as decided.
    pub fn take_ready(
        &mut self,
        workflow: &Workflow,
        registry: &NodeRegistry,
        inputs: &RunInputs,
    ) -> Vec<Next> {
        let mut decided = Vec::new();
        // Skips and failures decided here make more nodes ready; drain until none is left.
        while !self.ready.is_empty() {
            let mut ready = std::mem::take(&mut self.ready);
            ready.sort_unstable();
            for node in ready {
                if self.states[node] != NodeState::Pending {
                    continue;
                }
                let next = self.decide(node, workflow, registry, inputs);
                match &next {
                    Next::Run { .. } => self.states[node] = NodeState::Running,
                    Next::Skip { .. } => self.finish(node, NodeState::Skipped, None),
                    Next::Fail { .. } => self.finish(node, NodeState::Failed, None),
                }
                decided.push(next);
            }
        }
        decided
    }

    /// Records a node's result.
    pub fn complete(&mut self, node: usize, output: Map<String, Value>) {
        self.finish(node, NodeState::Completed, Some(output));
    }

    /// Records a node's failure; its dependents, transitively, are skipped. Returns them.
    pub fn fail(&mut self, node: usize) -> Vec<usize> {
        self.finish(node, NodeState::Failed, None);
        let mut skipped = Vec::new();
        let mut stack = self.successors[node].clone();
        while let Some(next) = stack.pop() {
            if self.states[next] == NodeState::Pending {
                self.states[next] = NodeState::Skipped;
                self.finished += 1;
                skipped.push(next);
                stack.extend(self.successors[next].iter().copied());
            }
        }
        skipped.sort_unstable();
        skipped
    }

    /// Marks every pending and running node cancelled (cancel, or an execution timeout).
    pub fn cancel_unfinished(&mut self) {
        self.cancelled = true;
        for state in &mut self.states {
            if matches!(state, NodeState::Pending | NodeState::Running) {
                *state = NodeState::Cancelled;
            }
        }
    }

    fn finish(&mut self, node: usize, state: NodeState, output: Option<Map<String, Value>>) {
        self.states[node] = state;
        self.outputs[node] = output;
        self.finished += 1;
        for &next in &self.successors[node] {
            self.unfinished_predecessors[next] -= 1;
            if self.unfinished_predecessors[next] == 0 {
                self.ready.push(next);
            }
        }
    }

    fn decide(
        &self,
        node: usize,
        workflow: &Workflow,
        registry: &NodeRegistry,
        inputs: &RunInputs,
    ) -> Next {
        let spec = &workflow.nodes[node];
        let Some(schema) = registry.get(spec.node_type).map(|t| t.schema()) else {
            return Next::Fail {
                node,
                error: format!("node type {} is no longer available", spec.node_type),
            };
        };
        let mut connected = Map::new();
        let mut live = 0;
        for &c in &self.incoming[node] {
            let connection = &workflow.connections[c];
            match self.connection_value(connection, workflow, registry) {
                Ok(Some(value)) => {
                    live += 1;
                    connected.insert(connection.to_input.clone(), value);
                }
                Ok(None) => {}
                Err(error) => return Next::Fail { node, error },
            }
        }
        if !self.incoming[node].is_empty() && live == 0 {
            return Next::Skip { node };
        }
        let params = merge_params(schema, &spec.config, &spec.id, inputs, &connected);
        if let Some(missing) = schema
            .parameters
            .iter()
            .find(|p| p.required && params.get(p.name).is_none_or(Value::is_null))
        {
            return Next::Fail {
                node,
                error: format!("required parameter '{}' is missing", missing.name),
            };
        }
        Next::Run {
            node,
            params,
            inputs: connected,
        }
    }

    /// The value a connection delivers: `None` when it is dead (skipped source, or a
    /// branch not taken), an error when the source lacks the output.
    fn connection_value(
        &self,
        connection: &Connection,
        workflow: &Workflow,
        registry: &NodeRegistry,
    ) -> Result<Option<Value>, String> {
        let source = connection.from;
        let Some(output) = self.outputs[source].as_ref() else {
            return Ok(None);
        };
        let source_id = &workflow.nodes[source].id;
        let (key, rest) = connection
            .from_output
            .split_first()
            .expect("paths have a first part");
        // Kailash code nodes answer `{"result": {...}}` and frontends connect to the keys
        // inside it (`from_output: "cleaned_data"`): a key the output lacks is looked up
        // in its `result`.
        let found = output
            .get(key)
            .or_else(|| output.get("result")?.as_object()?.get(key));
        let Some(mut value) = found else {
            let produced: Vec<&str> = output.keys().map(String::as_str).collect();
            return Err(format!(
                "input '{}' expects output '{key}' of node '{source_id}', which produced only [{}]",
                connection.to_input,
                produced.join(", ")
            ));
        };
        for part in rest {
            value = match value {
                Value::Object(fields) => fields.get(part).unwrap_or(&Value::Null),
                Value::Array(items) => part
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .unwrap_or(&Value::Null),
                _ => &Value::Null,
            };
        }
        let branching = registry
            .get(workflow.nodes[source].node_type)
            .is_some_and(|t| t.is_branching());
        if branching && value.is_null() {
            return Ok(None);
        }
        Ok(Some(value.clone()))
    }
}

fn merge_params(
    schema: &NodeSchema,
    config: &Map<String, Value>,
    node_id: &str,
    inputs: &RunInputs,
    connected: &Map<String, Value>,
) -> Map<String, Value> {
    let mut params: Map<String, Value> = schema
        .parameters
        .iter()
        .filter_map(|p| Some((p.name.to_owned(), p.default.clone()?)))
        .collect();
    params.extend(config.clone());
    for (name, value) in &inputs.flat {
        let declared = schema.accepts_any_input || schema.parameter(name).is_some();
        if declared && !connected.contains_key(name) {
            params.insert(name.clone(), value.clone());
        }
    }
    if let Some(overrides) = inputs.overrides.get(node_id) {
        params.extend(overrides.clone());
    }
    if let Some(scoped) = inputs.by_node.get(node_id) {
        params.extend(scoped.clone());
    }
    params.extend(connected.clone());
    params
}
