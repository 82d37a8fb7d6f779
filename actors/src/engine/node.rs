//! The node port: what a node type declares ([`NodeSchema`]) and how the engine runs it
//! ([`NodeType::run`]). Implementations that touch the outside world (files, HTTP, SQL,
//! Python) live in the gateway crate (`src/nodes/`) and are registered into a
//! [`NodeRegistry`] at start; engine tests use small test nodes.
//!
//! The declaration is the one source for validation at workflow creation, the schema routes
//! (`/api/schemas/nodes`) and the docs.

use std::{collections::BTreeMap, fmt, sync::Arc};

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::{Map, Value};

/// The JSON type a parameter, input or output carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    Object,
    Array,
    Any,
}

impl ParamType {
    /// Whether `value` has this type. `null` is accepted for optional values by the caller.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            ParamType::String => value.is_string(),
            ParamType::Integer => value.is_i64() || value.is_u64(),
            ParamType::Number => value.is_number(),
            ParamType::Boolean => value.is_boolean(),
            ParamType::Object => value.is_object(),
            ParamType::Array => value.is_array(),
            ParamType::Any => true,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Object => "object",
            ParamType::Array => "array",
            ParamType::Any => "any",
        }
    }
}

/// How a frontend should render a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Widget {
    Text,
    TextArea,
    Code,
    Number,
    Checkbox,
    Select,
    Json,
    Password,
    FilePath,
}

/// One parameter of a node type.
#[derive(Debug, Clone, Serialize)]
pub struct ParamSpec {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub param_type: ParamType,
    pub widget: Widget,
    pub label: String,
    pub description: &'static str,
    pub required: bool,
    pub default: Option<Value>,
    pub options: Option<Vec<Value>>,
    pub validation: Option<Value>,
}

impl ParamSpec {
    fn new(name: &'static str, param_type: ParamType, description: &'static str) -> Self {
        let widget = match param_type {
            ParamType::Integer | ParamType::Number => Widget::Number,
            ParamType::Boolean => Widget::Checkbox,
            ParamType::Object | ParamType::Array | ParamType::Any => Widget::Json,
            ParamType::String => Widget::Text,
        };
        Self {
            name,
            param_type,
            widget,
            label: label_of(name),
            description,
            required: false,
            default: None,
            options: None,
            validation: None,
        }
    }

    /// A parameter the node cannot run without.
    pub fn required(name: &'static str, param_type: ParamType, description: &'static str) -> Self {
        Self {
            required: true,
            ..Self::new(name, param_type, description)
        }
    }

    /// An optional parameter, with its default when it has one.
    pub fn optional(
        name: &'static str,
        param_type: ParamType,
        default: Option<Value>,
        description: &'static str,
    ) -> Self {
        Self {
            default,
            ..Self::new(name, param_type, description)
        }
    }

    pub fn widget(mut self, widget: Widget) -> Self {
        self.widget = widget;
        self
    }

    /// Restricts the value to `options` (rendered as a select).
    pub fn options(mut self, options: impl IntoIterator<Item = Value>) -> Self {
        self.options = Some(options.into_iter().collect());
        self.widget = Widget::Select;
        self
    }

    pub fn validation(mut self, rule: Value) -> Self {
        self.validation = Some(rule);
        self
    }
}

/// `file_path` → `File Path`.
fn label_of(name: &str) -> String {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An input port (fed by connections) or an output key.
#[derive(Debug, Clone, Serialize)]
pub struct PortSpec {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub port_type: ParamType,
    pub description: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

impl PortSpec {
    pub fn input(
        name: &'static str,
        port_type: ParamType,
        required: bool,
        description: &'static str,
    ) -> Self {
        Self {
            name,
            port_type,
            description,
            required: Some(required),
        }
    }

    pub fn output(name: &'static str, port_type: ParamType, description: &'static str) -> Self {
        Self {
            name,
            port_type,
            description,
            required: None,
        }
    }
}

/// Everything a node type declares about itself.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSchema {
    pub node_type: &'static str,
    pub category: &'static str,
    pub description: &'static str,
    pub version: &'static str,
    pub parameters: Vec<ParamSpec>,
    pub inputs: Vec<PortSpec>,
    pub outputs: Vec<PortSpec>,
    /// Code nodes take every input as a variable: any `to_input` name is accepted.
    #[serde(skip)]
    pub accepts_any_input: bool,
}

impl NodeSchema {
    pub fn parameter(&self, name: &str) -> Option<&ParamSpec> {
        self.parameters.iter().find(|p| p.name == name)
    }
}

/// Why a node run failed; the message reaches the client in `node.failed` and `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    pub message: String,
}

impl NodeError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}

/// A node config its type refuses at workflow creation, beyond what the declared parameter
/// types check (see [`NodeType::check_config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The parameter at fault, when one is (the error path then names it).
    pub parameter: Option<String>,
    pub message: String,
    /// A stable error code that says more than `invalid_workflow` (`python_unavailable`).
    pub code: Option<&'static str>,
}

/// A node's output: output key → JSON value.
pub type NodeOutput = Map<String, Value>;

/// One run of one node.
#[derive(Debug, Clone)]
pub struct NodeCall {
    pub node_id: String,
    /// Defaults, then the node's config, then `config_overrides`, then inputs (connections
    /// and run inputs), in that order of precedence, lowest first.
    pub params: Map<String, Value>,
}

impl NodeCall {
    /// The parameter `name`, if given and not null.
    pub fn param(&self, name: &str) -> Option<&Value> {
        self.params.get(name).filter(|v| !v.is_null())
    }
}

/// A node type: its declaration and its behaviour. Running may be cancelled at any await
/// point by dropping the future (cancel, timeouts), so implementations hold no state that a
/// drop would corrupt.
pub trait NodeType: Send + Sync + 'static {
    fn schema(&self) -> &NodeSchema;

    fn run(&self, call: NodeCall) -> BoxFuture<'static, Result<NodeOutput, NodeError>>;

    /// Problems with a node's configured parameters that only the type can see (say a
    /// setting it refuses, or a runtime it needs that this gateway lacks); checked when a
    /// workflow is created. None by default.
    fn check_config(&self, _config: &Map<String, Value>) -> Vec<ConfigProblem> {
        Vec::new()
    }

    /// A branching node (SwitchNode) marks a branch not taken by a null output: nodes fed
    /// only by such outputs are skipped rather than run.
    fn is_branching(&self) -> bool {
        false
    }
}

/// Every node type this gateway can run, by type name. Built at start, then shared read-only.
#[derive(Clone, Default)]
pub struct NodeRegistry {
    types: BTreeMap<&'static str, Arc<dyn NodeType>>,
}

impl NodeRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `node`; a later registration of the same type name replaces the earlier.
    pub fn register(&mut self, node: impl NodeType) {
        self.types.insert(node.schema().node_type, Arc::new(node));
    }

    pub fn get(&self, node_type: &str) -> Option<&Arc<dyn NodeType>> {
        self.types.get(node_type)
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// Every schema, ordered by type name.
    pub fn schemas(&self) -> impl Iterator<Item = &NodeSchema> {
        self.types.values().map(|node| node.schema())
    }

    /// The known type closest to `unknown` (for "did you mean" hints), if any is close.
    pub fn closest(&self, unknown: &str) -> Option<&'static str> {
        let unknown = unknown.to_lowercase();
        self.types
            .keys()
            .map(|known| (edit_distance(&unknown, &known.to_lowercase()), *known))
            .filter(|(distance, known)| *distance <= (known.len() / 3).max(2))
            .min()
            .map(|(_, known)| known)
    }
}

impl fmt::Debug for NodeRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.types.keys()).finish()
    }
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (row[j] + 1)
                .min(current + 1)
                .min(previous + usize::from(ca != *cb));
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(NodeSchema);

    impl NodeType for Named {
        fn schema(&self) -> &NodeSchema {
            &self.0
        }

        fn run(&self, _: NodeCall) -> BoxFuture<'static, Result<NodeOutput, NodeError>> {
            Box::pin(async { Ok(NodeOutput::new()) })
        }
    }

    fn named(node_type: &'static str) -> Named {
        Named(NodeSchema {
            node_type,
            category: "test",
            description: "",
            version: "1.0.0",
            parameters: vec![ParamSpec::required("file_path", ParamType::String, "where")],
            inputs: vec![],
            outputs: vec![],
            accepts_any_input: false,
        })
    }

    #[test]
    fn closest_names_are_suggested() {
        let mut registry = NodeRegistry::new();
        for name in ["CSVReaderNode", "CSVWriterNode", "SwitchNode"] {
            registry.register(named(name));
        }
        assert_eq!(registry.closest("CSVReadNode"), Some("CSVReaderNode"));
        assert_eq!(registry.closest("csvwriternode"), Some("CSVWriterNode"));
        assert_eq!(registry.closest("Completely different"), None);
        assert_eq!(
            registry.get("SwitchNode").unwrap().schema().parameters[0].label,
            "File Path"
        );
    }

    #[test]
    fn types_accept_their_values() {
        assert!(ParamType::Integer.accepts(&Value::from(3)));
        assert!(!ParamType::Integer.accepts(&Value::from(3.5)));
        assert!(ParamType::Number.accepts(&Value::from(3)));
        assert!(!ParamType::String.accepts(&Value::from(3)));
        assert!(ParamType::Any.accepts(&Value::Null));
    }
}
