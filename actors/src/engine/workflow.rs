//! Workflow definitions: parsing a Kailash workflow config (both node forms, both
//! connection forms), validating it against the node registry — every problem at once, each
//! naming the node or connection — and the validated, immutable [`Workflow`] the engine runs.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::node::{NodeRegistry, NodeSchema};

/// One problem with one part of a workflow (`path` like `nodes[1].type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
    /// A stable error code more specific than `invalid_workflow`, set by a node type's own
    /// check (see [`super::node::NodeType::check_config`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
}

impl Problem {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            code: None,
        }
    }
}

/// A node of a validated workflow.
#[derive(Debug, Clone)]
pub struct WorkflowNode {
    /// Shared rather than copied: every event of the node carries it.
    pub id: Arc<str>,
    /// The config's `name` when it has one, else the id (`node_name` in events).
    pub name: Arc<str>,
    pub node_type: &'static str,
    /// The node's configured parameters (`config`, then `parameters` on top).
    pub config: Map<String, Value>,
}

/// A connection of a validated workflow, by node index.
#[derive(Debug, Clone)]
pub struct Connection {
    pub from: usize,
    /// `from_output` split at dots: the first part names an output key, the rest reach
    /// into it.
    pub from_output: Vec<String>,
    pub to: usize,
    pub to_input: String,
}

/// A validated workflow: its nodes form a DAG of known types with their required
/// parameters present.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub workflow_id: String,
    pub name: String,
    pub description: String,
    pub metadata: Value,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    pub nodes: Vec<WorkflowNode>,
    pub connections: Vec<Connection>,
    /// Node indices in a topological order (declaration order among independent nodes).
    pub execution_order: Vec<usize>,
    /// The definition as the client sent it: what the store keeps, and re-parses on restart.
    pub definition: Value,
}

/// Limits applied while validating.
#[derive(Debug, Clone, Copy)]
pub struct WorkflowLimits {
    pub max_nodes: usize,
}

/// Longest client-supplied workflow id.
const MAX_ID_LEN: usize = 128;

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

impl Workflow {
    /// Parses and validates a workflow config. `config` is the JSON body of
    /// `POST /api/workflows` or a shared workflow file.
    pub fn parse(
        config: &Value,
        registry: &NodeRegistry,
        limits: WorkflowLimits,
    ) -> Result<Workflow, Vec<Problem>> {
        let mut problems = Vec::new();
        let Some(body) = config.as_object() else {
            return Err(vec![Problem::new("", "a workflow must be a JSON object")]);
        };
        let text = |key: &str, problems: &mut Vec<Problem>| match body.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                problems.push(Problem::new(key, "must be a string"));
                None
            }
        };
        let name = text("name", &mut problems);
        if name.as_deref().is_none_or(|n| n.trim().is_empty())
            && !problems.iter().any(|p| p.path == "name")
        {
            problems.push(Problem::new("name", "is required"));
        }
        let description = text("description", &mut problems).unwrap_or_default();
        let workflow_id = match text("workflow_id", &mut problems) {
            Some(id) if !valid_id(&id) => {
                problems.push(Problem::new(
                    "workflow_id",
                    format!("must be 1 to {MAX_ID_LEN} letters, digits or -_.:"),
                ));
                String::new()
            }
            Some(id) => id,
            None => Uuid::new_v4().to_string(),
        };
        let metadata = match body.get("metadata") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(value @ Value::Object(_)) => value.clone(),
            Some(_) => {
                problems.push(Problem::new("metadata", "must be an object"));
                Value::Null
            }
        };

        let nodes = parse_nodes(body.get("nodes"), registry, limits, &mut problems);
        let index: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (&*n.node.id, i))
            .collect();
        let connections = parse_connections(body.get("connections"), &index, &mut problems);
        check_required_parameters(&nodes, &connections, registry, &mut problems);
        let execution_order = match topological_order(nodes.len(), &connections) {
            Ok(order) => order,
            Err(cycle) => {
                let names: Vec<&str> = cycle.iter().map(|&i| &*nodes[i].node.id).collect();
                problems.push(Problem::new(
                    "connections",
                    format!(
                        "the connections form a cycle: {} -> {}",
                        names.join(" -> "),
                        names[0]
                    ),
                ));
                Vec::new()
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Workflow {
            workflow_id,
            name: name.unwrap_or_default(),
            description,
            metadata,
            version: 1,
            created_at: Utc::now(),
            nodes: nodes.into_iter().map(|parsed| parsed.node).collect(),
            connections,
            execution_order,
            definition: config.clone(),
        })
    }

    /// The workflow schema of the wire contract (`GET /api/workflows/{id}`).
    pub fn schema(&self, registry: &NodeRegistry) -> Value {
        let nodes: Map<String, Value> = self
            .nodes
            .iter()
            .map(|node| {
                let mut entry = registry
                    .get(node.node_type)
                    .and_then(|t| serde_json::to_value(t.schema()).ok())
                    .unwrap_or_else(|| json!({"node_type": node.node_type}));
                entry["instance_id"] = Value::from(&*node.id);
                entry["config"] = Value::Object(node.config.clone());
                (node.id.to_string(), entry)
            })
            .collect();
        let connections: Vec<Value> = self
            .connections
            .iter()
            .map(|c| {
                json!({
                    "source_node": self.nodes[c.from].id,
                    "source_output": c.from_output.join("."),
                    "target_node": self.nodes[c.to].id,
                    "target_input": c.to_input,
                })
            })
            .collect();
        json!({
            "metadata": {
                "workflow_id": self.workflow_id,
                "name": self.name,
                "description": self.description,
                "version": self.version,
                "created_at": self.created_at,
                "metadata": self.metadata,
            },
            "nodes": nodes,
            "connections": connections,
            "execution": {
                "execution_order": self.execution_order.iter().map(|&i| &self.nodes[i].id).collect::<Vec<_>>(),
            },
        })
    }
}

struct ParsedNode {
    node: WorkflowNode,
    /// Where the node was given, for error paths (`nodes[2]` or `nodes.reader`).
    path: String,
}

fn parse_nodes(
    nodes: Option<&Value>,
    registry: &NodeRegistry,
    limits: WorkflowLimits,
    problems: &mut Vec<Problem>,
) -> Vec<ParsedNode> {
    // Both forms: a list of nodes with ids, or an object keyed by node id.
    let entries: Vec<(String, Option<String>, &Value)> = match nodes {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, node)| (format!("nodes[{i}]"), None, node))
            .collect(),
        Some(Value::Object(by_id)) => by_id
            .iter()
            .map(|(id, node)| (format!("nodes.{id}"), Some(id.clone()), node))
            .collect(),
        Some(_) => {
            problems.push(Problem::new(
                "nodes",
                "must be a list of nodes or an object keyed by node id",
            ));
            Vec::new()
        }
    };
    if entries.len() > limits.max_nodes {
        problems.push(Problem::new(
            "nodes",
            format!(
                "has {} nodes; at most {} are allowed",
                entries.len(),
                limits.max_nodes
            ),
        ));
        return Vec::new();
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut parsed = Vec::new();
    for (path, key_id, node) in entries {
        let Some(node) = node.as_object() else {
            problems.push(Problem::new(&path, "a node must be an object"));
            continue;
        };
        let id = match (node.get("id"), key_id) {
            (Some(Value::String(id)), _) if !id.is_empty() => Some(id.clone()),
            (None | Some(Value::Null), Some(key)) => Some(key),
            _ => {
                problems.push(Problem::new(
                    format!("{path}.id"),
                    "is required (a non-empty string)",
                ));
                None
            }
        };
        let node_type = match node.get("type") {
            Some(Value::String(t)) => match registry.get(t) {
                Some(known) => Some(known.schema().node_type),
                None => {
                    let hint = registry
                        .closest(t)
                        .map(|c| format!("; did you mean '{c}'?"))
                        .unwrap_or_default();
                    problems.push(Problem::new(
                        format!("{path}.type"),
                        format!("unknown node type '{t}'{hint}"),
                    ));
                    None
                }
            },
            _ => {
                problems.push(Problem::new(
                    format!("{path}.type"),
                    "is required (a node type name)",
                ));
                None
            }
        };
        let mut config = Map::new();
        for key in ["config", "parameters"] {
            match node.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Object(values)) => config.extend(values.clone()),
                Some(_) => {
                    problems.push(Problem::new(format!("{path}.{key}"), "must be an object"))
                }
            }
        }
        let (Some(id), Some(node_type)) = (id, node_type) else {
            continue;
        };
        if let Some(first) = seen.insert(id.clone(), path.clone()) {
            problems.push(Problem::new(
                format!("{path}.id"),
                format!("duplicate node id '{id}' (also {first})"),
            ));
            continue;
        }
        if let Some(known) = registry.get(node_type) {
            check_parameter_types(known.schema(), &config, &path, problems);
            problems.extend(known.check_config(&config).into_iter().map(|p| Problem {
                path: match &p.parameter {
                    Some(name) => format!("{path}.config.{name}"),
                    None => format!("{path}.type"),
                },
                message: p.message,
                code: p.code,
            }));
        }
        parsed.push(ParsedNode {
            node: WorkflowNode {
                name: config
                    .get("name")
                    .and_then(Value::as_str)
                    .map_or_else(|| id.as_str().into(), Arc::from),
                id: id.into(),
                node_type,
                config,
            },
            path,
        });
    }
    parsed
}

fn check_parameter_types(
    schema: &NodeSchema,
    config: &Map<String, Value>,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    for (name, value) in config {
        // Undeclared parameters are accepted and ignored (Kailash configs carry extras).
        let Some(spec) = schema.parameter(name) else {
            continue;
        };
        if !value.is_null() && !spec.param_type.accepts(value) {
            problems.push(Problem::new(
                format!("{path}.config.{name}"),
                format!("must be of type {}", spec.param_type.as_str()),
            ));
        }
    }
}

fn parse_connections(
    connections: Option<&Value>,
    index: &HashMap<&str, usize>,
    problems: &mut Vec<Problem>,
) -> Vec<Connection> {
    let list = match connections {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(list)) => list,
        Some(_) => {
            problems.push(Problem::new("connections", "must be a list"));
            return Vec::new();
        }
    };
    let mut parsed = Vec::new();
    for (i, connection) in list.iter().enumerate() {
        let path = format!("connections[{i}]");
        let Some(connection) = connection.as_object() else {
            problems.push(Problem::new(&path, "a connection must be an object"));
            continue;
        };
        // Long form and short form may be mixed; the long names win when both are given.
        let field = |long: &str, short: &str| {
            connection
                .get(long)
                .filter(|v| !v.is_null())
                .map(|v| (long.to_owned(), v))
                .or_else(|| {
                    connection
                        .get(short)
                        .filter(|v| !v.is_null())
                        .map(|v| (short.to_owned(), v))
                })
        };
        let mut endpoint = |long: &str, short: &str| match field(long, short) {
            Some((_, Value::String(id))) => match index.get(id.as_str()) {
                Some(&node) => Some(node),
                None => {
                    problems.push(Problem::new(
                        format!("{path}.{long}"),
                        format!("unknown node '{id}'"),
                    ));
                    None
                }
            },
            Some((key, _)) => {
                problems.push(Problem::new(format!("{path}.{key}"), "must be a node id"));
                None
            }
            None => {
                problems.push(Problem::new(format!("{path}.{long}"), "is required"));
                None
            }
        };
        let from = endpoint("from_node", "from");
        let to = endpoint("to_node", "to");
        let port = |key: &str, default: &str, problems: &mut Vec<Problem>| match connection.get(key)
        {
            None | Some(Value::Null) => Some(default.to_owned()),
            Some(Value::String(name)) if !name.is_empty() => Some(name.clone()),
            Some(_) => {
                problems.push(Problem::new(
                    format!("{path}.{key}"),
                    "must be a non-empty string",
                ));
                None
            }
        };
        let from_output = port("from_output", "result", problems);
        let to_input = port("to_input", "input", problems);
        if let (Some(from), Some(to), Some(from_output), Some(to_input)) =
            (from, to, from_output, to_input)
        {
            if from == to {
                problems.push(Problem::new(&path, "a node cannot feed itself"));
                continue;
            }
            parsed.push(Connection {
                from,
                from_output: from_output.split('.').map(String::from).collect(),
                to,
                to_input,
            });
        }
    }
    parsed
}

/// A required parameter must be configured, or fed by a connection.
fn check_required_parameters(
    nodes: &[ParsedNode],
    connections: &[Connection],
    registry: &NodeRegistry,
    problems: &mut Vec<Problem>,
) {
    for (i, parsed) in nodes.iter().enumerate() {
        let Some(schema) = registry.get(parsed.node.node_type).map(|t| t.schema()) else {
            continue;
        };
        for spec in schema.parameters.iter().filter(|p| p.required) {
            let configured = parsed
                .node
                .config
                .get(spec.name)
                .is_some_and(|v| !v.is_null());
            let connected = connections
                .iter()
                .any(|c| c.to == i && c.to_input == spec.name);
            if !configured && !connected {
                problems.push(Problem::new(
                    format!("{}.config.{}", parsed.path, spec.name),
                    format!(
                        "required parameter '{}' of {} is missing",
                        spec.name, schema.node_type
                    ),
                ));
            }
        }
    }
}

/// Kahn's algorithm, stable in declaration order; on a cycle, the nodes of one cycle.
fn topological_order(count: usize, connections: &[Connection]) -> Result<Vec<usize>, Vec<usize>> {
    let mut successors = vec![Vec::new(); count];
    let mut indegree = vec![0usize; count];
    for c in connections {
        successors[c.from].push(c.to);
        indegree[c.to] += 1;
    }
    let mut ready: VecDeque<usize> = (0..count).filter(|&n| indegree[n] == 0).collect();
    let mut order = Vec::with_capacity(count);
    while let Some(node) = ready.pop_front() {
        order.push(node);
        for &next in &successors[node] {
            indegree[next] -= 1;
            if indegree[next] == 0 {
                ready.push_back(next);
            }
        }
    }
    if order.len() == count {
        return Ok(order);
    }
    // Every node left has a predecessor that is also left: walk predecessors until one
    // repeats; the walk from that repeat is a cycle.
    let left: Vec<bool> = (0..count).map(|n| indegree[n] > 0).collect();
    let start = (0..count)
        .find(|&n| left[n])
        .expect("some node is on a cycle");
    let predecessor = |node: usize| {
        connections
            .iter()
            .find(|c| c.to == node && left[c.from])
            .map(|c| c.from)
            .expect("a node left over has a predecessor left over")
    };
    let mut visited = vec![false; count];
    let mut node = start;
    while !visited[node] {
        visited[node] = true;
        node = predecessor(node);
    }
    let mut cycle = vec![node];
    let mut current = predecessor(node);
    while current != node {
        cycle.push(current);
        current = predecessor(current);
    }
    cycle.reverse();
    // Name the cycle from its earliest-declared node, so the message is stable.
    let first = (0..cycle.len())
        .min_by_key(|&i| cycle[i])
        .expect("a cycle has nodes");
    cycle.rotate_left(first);
    Err(cycle)
}
