//! Engine overhead per node step — scheduling, input mapping, event emission — with a node
//! that does no I/O, for a 1,000-node chain and a 100-wide fan-out. Prints medians; this is a
//! benchmark, not a test: `cargo bench -p kailash-actors --bench engine`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use kailash_actors::{
    Caller, Gateway, GatewayConfig,
    bus::BusConfig,
    engine::node::{
        NodeCall, NodeError, NodeOutput, NodeRegistry, NodeSchema, NodeType, ParamType, PortSpec,
    },
    execution::RunLimits,
};
use serde_json::{Map, Value, json};

/// Passes its `input` through as `result`: the cheapest node there is.
struct Pass(NodeSchema);

impl NodeType for Pass {
    fn schema(&self) -> &NodeSchema {
        &self.0
    }

    fn run(&self, call: NodeCall) -> BoxFuture<'static, Result<NodeOutput, NodeError>> {
        let mut output = Map::new();
        output.insert(
            "result".into(),
            call.params.get("input").cloned().unwrap_or(Value::Null),
        );
        Box::pin(async move { Ok(output) })
    }
}

fn gateway() -> Gateway {
    let mut registry = NodeRegistry::new();
    registry.register(Pass(NodeSchema {
        node_type: "Pass",
        category: "bench",
        description: "passes its input through",
        version: "1.0.0",
        parameters: vec![],
        inputs: vec![PortSpec::input("input", ParamType::Any, false, "anything")],
        outputs: vec![PortSpec::output("result", ParamType::Any, "the input")],
        accepts_any_input: false,
    }));
    Gateway::start(GatewayConfig {
        node_registry: Arc::new(registry),
        shared_workflows: BTreeMap::new(),
        run_limits: RunLimits {
            node_timeout: Duration::from_secs(60),
            execution_timeout: Duration::from_secs(600),
        },
        max_nodes_per_workflow: 10_000,
        max_executions_per_session: 1000,
        max_concurrent_executions: 1000,
        finished_executions_per_session: 1000,
        max_sessions: 10,
        session_timeout: Duration::from_secs(3600),
        ask_timeout: Duration::from_secs(30),
        mailbox_capacity: 1024,
        bus: BusConfig {
            history_len: 100,
            retention: Duration::from_secs(60),
            recent_capacity: 1000,
        },
        max_room_members: 100,
        concurrent_sessions_limit: 0,
        tenants: Default::default(),
    })
}

fn chain(nodes: usize) -> Value {
    let list: Vec<Value> = (0..nodes)
        .map(|i| json!({"id": format!("n{i}"), "type": "Pass"}))
        .collect();
    let links: Vec<Value> = (1..nodes)
        .map(|i| json!({"from": format!("n{}", i - 1), "to": format!("n{i}")}))
        .collect();
    json!({"name": "chain", "nodes": list, "connections": links})
}

fn fan_out(width: usize) -> Value {
    let mut list = vec![json!({"id": "source", "type": "Pass"})];
    list.extend((0..width).map(|i| json!({"id": format!("leaf{i}"), "type": "Pass"})));
    let links: Vec<Value> = (0..width)
        .map(|i| json!({"from": "source", "to": format!("leaf{i}")}))
        .collect();
    json!({"name": "fan-out", "nodes": list, "connections": links})
}

/// Runs `config` `runs` times; returns each run's time per node, in microseconds.
async fn measure(gateway: &Gateway, config: Value, runs: usize) -> Vec<f64> {
    let caller = Caller::authenticated("bench", "bench");
    let session = gateway
        .create_session(caller.clone(), Value::Null)
        .await
        .unwrap()
        .session_id;
    let workflow = gateway.parse_workflow(&config).expect("valid");
    let nodes = workflow.nodes.len() as f64;
    let workflow = gateway
        .add_workflow(caller.clone(), session, workflow)
        .await
        .unwrap();
    let mut per_node = Vec::with_capacity(runs);
    for _ in 0..runs {
        let run = gateway
            .start_execution(
                caller.clone(),
                session,
                workflow.workflow_id.clone(),
                Map::new(),
                Map::new(),
            )
            .await
            .unwrap();
        // The run's own start and end stamps measure the engine. Waiting asks the registry,
        // not the execution, so no snapshot is built while the run is measured.
        while gateway.stats().await.unwrap().active_executions > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let snapshot = gateway
            .execution(caller.clone(), session, run.execution_id)
            .await
            .unwrap();
        assert_eq!(format!("{:?}", snapshot.status), "Completed");
        let took = snapshot.completed_at.unwrap() - snapshot.started_at.unwrap();
        per_node.push(took.num_nanoseconds().unwrap() as f64 / 1e3 / nodes);
    }
    per_node
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("ENGINE_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    actix_rt::System::new().block_on(async move {
        let gateway = gateway();
        for (name, config) in [
            ("chain of 1,000 nodes", chain(1000)),
            ("fan-out of 100 (101 nodes)", fan_out(100)),
        ] {
            measure(&gateway, config.clone(), 3).await; // warm-up
            let samples = measure(&gateway, config, runs).await;
            let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "engine.{name}: median {:.2} µs/node, min {min:.2} µs/node over {runs} runs",
                median(samples)
            );
        }
    });
}
