//! Small node types for the engine's own tests: no I/O, predictable behaviour.

use std::time::Duration;

use serde_json::{Value, json};

use super::node::{
    ConfigProblem, NodeCall, NodeError, NodeOutput, NodeRegistry, NodeSchema, NodeType, ParamSpec,
    ParamType, PortSpec,
};

/// `Echo`: outputs `{"result": value}` (or its `input` when no value is configured).
/// `Fail`: fails with `message`. `Sleep`: waits `ms`, then outputs `{"result": ms}`.
/// `Panic`: panics. Every type refuses a configured `refuse` parameter (code
/// `refused_by_type`) at creation. `Needs`: requires `path`. `Branch`: a branching node that outputs
/// `{"yes": input or null, "no": null or input}` by the truth of `input`.
pub(crate) struct TestNode {
    schema: NodeSchema,
}

fn schema(node_type: &'static str, parameters: Vec<ParamSpec>) -> NodeSchema {
    NodeSchema {
        node_type,
        category: "test",
        description: "a test node",
        version: "1.0.0",
        parameters,
        inputs: vec![PortSpec::input("input", ParamType::Any, false, "anything")],
        outputs: vec![PortSpec::output("result", ParamType::Any, "the result")],
        accepts_any_input: false,
    }
}

impl NodeType for TestNode {
    fn schema(&self) -> &NodeSchema {
        &self.schema
    }

    fn run(
        &self,
        call: NodeCall,
    ) -> futures_util::future::BoxFuture<'static, Result<NodeOutput, NodeError>> {
        let node_type = self.schema.node_type;
        Box::pin(async move {
            let output = match node_type {
                "Echo" => {
                    json!({"result": call.param("value").or(call.param("input")).cloned().unwrap_or(Value::Null)})
                }
                "Fail" => {
                    return Err(NodeError::new(
                        call.param("message")
                            .and_then(Value::as_str)
                            .unwrap_or("failed"),
                    ));
                }
                "Sleep" => {
                    let ms = call.param("ms").and_then(Value::as_u64).unwrap_or(10);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    json!({"result": ms})
                }
                "Panic" => panic!("a test node panicked"),
                "Branch" => {
                    let input = call.param("input").cloned().unwrap_or(Value::Null);
                    let truthy = input.as_bool().unwrap_or(!input.is_null());
                    if truthy {
                        json!({"yes": input, "no": null})
                    } else {
                        json!({"yes": null, "no": input})
                    }
                }
                _ => json!({"result": call.param("path")}),
            };
            Ok(output.as_object().cloned().unwrap_or_default())
        })
    }

    fn is_branching(&self) -> bool {
        self.schema.node_type == "Branch"
    }

    fn check_config(&self, config: &serde_json::Map<String, Value>) -> Vec<ConfigProblem> {
        config
            .get("refuse")
            .map(|_| ConfigProblem {
                parameter: Some("refuse".into()),
                message: "this node refuses it".into(),
                code: Some("refused_by_type"),
            })
            .into_iter()
            .collect()
    }
}

pub(crate) fn registry() -> NodeRegistry {
    let mut registry = NodeRegistry::new();
    let any = |name| ParamSpec::optional(name, ParamType::Any, None, "any value");
    for (node_type, parameters) in [
        ("Echo", vec![any("value")]),
        (
            "Fail",
            vec![ParamSpec::optional(
                "message",
                ParamType::String,
                None,
                "error",
            )],
        ),
        (
            "Sleep",
            vec![ParamSpec::optional(
                "ms",
                ParamType::Integer,
                Some(json!(10)),
                "delay",
            )],
        ),
        ("Panic", vec![]),
        ("Branch", vec![]),
        (
            "Needs",
            vec![ParamSpec::required("path", ParamType::String, "a path")],
        ),
    ] {
        registry.register(TestNode {
            schema: schema(node_type, parameters),
        });
    }
    registry
}
