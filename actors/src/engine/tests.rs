//! Tests of validation (every problem at once) and of run planning.

use serde_json::{Map, Value, json};

use super::{
    plan::{Next, NodeState, RunInputs, RunPlan},
    testing,
    workflow::{Problem, Workflow, WorkflowLimits},
};

const LIMITS: WorkflowLimits = WorkflowLimits { max_nodes: 50 };

fn parse(config: Value) -> Result<Workflow, Vec<Problem>> {
    Workflow::parse(&config, &testing::registry(), LIMITS)
}

fn problems(config: Value) -> Vec<(String, String)> {
    parse(config)
        .unwrap_err()
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect()
}

#[test]
fn a_node_type_can_refuse_its_config_with_its_own_code() {
    let found = parse(json!({"name": "w", "nodes": [
        {"id": "a", "type": "Echo", "config": {"refuse": true}},
        {"id": "b", "type": "Echo"},
    ]}))
    .unwrap_err();
    assert_eq!(
        found,
        vec![Problem {
            path: "nodes[0].config.refuse".into(),
            message: "this node refuses it".into(),
            code: Some("refused_by_type"),
        }]
    );
}

#[test]
fn both_node_forms_and_both_connection_forms_are_accepted() {
    let listed = parse(json!({
        "name": "w",
        "nodes": [{"id": "a", "type": "Echo", "config": {"value": 1, "extra": true}},
                  {"id": "b", "type": "Echo", "parameters": {"value": 2}, "config": {"value": 9}},
                  {"id": "c", "type": "Echo"}],
        "connections": [{"from_node": "a", "from_output": "result", "to_node": "c", "to_input": "value"},
                        {"from": "b", "to": "c"}],
    }))
    .unwrap();
    assert_eq!(
        listed.nodes[1].config["value"], 2,
        "parameters win over config"
    );
    assert_eq!(listed.connections[1].from_output, vec!["result"]);
    assert_eq!(listed.connections[1].to_input, "input");
    assert_eq!(listed.execution_order, vec![0, 1, 2]);

    let keyed = parse(json!({"name": "w", "nodes": {"x": {"type": "Echo"}, "y": {"type": "Echo"}},
                             "connections": [{"from": "y", "to": "x", "from_output": "result.rows"}]}))
    .unwrap();
    let order: Vec<_> = keyed
        .execution_order
        .iter()
        .map(|&i| &*keyed.nodes[i].id)
        .collect();
    assert_eq!(order, ["y", "x"]);
    assert_eq!(keyed.connections[0].from_output, vec!["result", "rows"]);
    assert!(
        parse(json!({"name": "empty", "nodes": []}))
            .unwrap()
            .nodes
            .is_empty()
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let found = problems(json!({
        "nodes": [{"type": "Echo"},
                  {"id": "a", "type": "Ecko"},
                  {"id": "b", "type": "Echo"},
                  {"id": "b", "type": "Echo"},
                  {"id": "n", "type": "Needs", "config": {"path": 5}},
                  {"id": "m", "type": "Needs"},
                  {"id": "s", "type": "Sleep", "config": {"ms": "soon"}}],
        "connections": [{"from": "b", "to": "ghost"}, {"to_node": "b"}],
    }));
    assert_eq!(
        found,
        vec![
            ("name".into(), "is required".into()),
            (
                "nodes[0].id".into(),
                "is required (a non-empty string)".into()
            ),
            (
                "nodes[1].type".into(),
                "unknown node type 'Ecko'; did you mean 'Echo'?".into()
            ),
            (
                "nodes[3].id".into(),
                "duplicate node id 'b' (also nodes[2])".into()
            ),
            (
                "nodes[4].config.path".into(),
                "must be of type string".into()
            ),
            (
                "nodes[6].config.ms".into(),
                "must be of type integer".into()
            ),
            (
                "connections[0].to_node".into(),
                "unknown node 'ghost'".into()
            ),
            ("connections[1].from_node".into(), "is required".into()),
            (
                "nodes[5].config.path".into(),
                "required parameter 'path' of Needs is missing".into()
            ),
        ]
    );
}

#[test]
fn a_connection_satisfies_a_required_parameter_and_cycles_are_named() {
    parse(
        json!({"name": "w", "nodes": [{"id": "a", "type": "Echo"}, {"id": "n", "type": "Needs"}],
                 "connections": [{"from": "a", "to": "n", "to_input": "path"}]}),
    )
    .unwrap();
    let found = problems(json!({
        "name": "w",
        "nodes": [{"id": "start", "type": "Echo"}, {"id": "a", "type": "Echo"}, {"id": "b", "type": "Echo"}, {"id": "c", "type": "Echo"}],
        "connections": [{"from": "start", "to": "a"}, {"from": "a", "to": "b"}, {"from": "b", "to": "c"}, {"from": "c", "to": "a"}],
    }));
    assert_eq!(
        found,
        vec![(
            "connections".into(),
            "the connections form a cycle: a -> b -> c -> a".into()
        )]
    );
}

#[test]
fn limits_and_shapes_are_checked() {
    let many: Vec<Value> = (0..51)
        .map(|i| json!({"id": format!("n{i}"), "type": "Echo"}))
        .collect();
    assert_eq!(
        problems(json!({"name": "w", "nodes": many})),
        vec![(
            "nodes".into(),
            "has 51 nodes; at most 50 are allowed".into()
        )]
    );
    assert_eq!(
        problems(
            json!({"name": 3, "nodes": "x", "connections": {}, "metadata": [], "workflow_id": "bad id"})
        ),
        vec![
            ("name".into(), "must be a string".into()),
            (
                "workflow_id".into(),
                "must be 1 to 128 letters, digits or -_.:".into()
            ),
            ("metadata".into(), "must be an object".into()),
            (
                "nodes".into(),
                "must be a list of nodes or an object keyed by node id".into()
            ),
            ("connections".into(), "must be a list".into()),
        ]
    );
}

fn plan_of(workflow: &Workflow, inputs: Value, overrides: Value) -> (RunPlan, RunInputs) {
    let empty = Map::new();
    let inputs = RunInputs::new(
        workflow,
        inputs.as_object().unwrap_or(&empty),
        overrides.as_object().unwrap_or(&empty),
    );
    (RunPlan::new(workflow), inputs)
}

fn run_ids(next: &[Next], workflow: &Workflow) -> Vec<String> {
    next.iter()
        .map(|n| match n {
            Next::Run { node, .. } => format!("run {}", workflow.nodes[*node].id),
            Next::Skip { node } => format!("skip {}", workflow.nodes[*node].id),
            Next::Fail { node, error } => format!("fail {}: {error}", workflow.nodes[*node].id),
        })
        .collect()
}

#[test]
fn independent_nodes_are_ready_together_and_inputs_follow_precedence() {
    let workflow = parse(json!({
        "name": "w",
        "nodes": [{"id": "a", "type": "Echo", "config": {"value": "config"}},
                  {"id": "b", "type": "Echo"},
                  {"id": "n", "type": "Needs", "config": {"path": "p"}},
                  {"id": "join", "type": "Echo"}],
        "connections": [{"from": "a", "to": "join", "to_input": "value"}, {"from": "b", "to": "join", "to_input": "other"}],
    }))
    .unwrap();
    let registry = testing::registry();
    let (mut plan, inputs) = plan_of(
        &workflow,
        json!({"b": {"value": "scoped"}, "value": "flat", "path": "flat-path"}),
        json!({"a": {"value": "override"}}),
    );
    let ready = plan.take_ready(&workflow, &registry, &inputs);
    assert_eq!(run_ids(&ready, &workflow), ["run a", "run b", "run n"]);
    let params = |i: usize| match &ready[i] {
        Next::Run { params, .. } => params.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        params(0)["value"],
        "override",
        "overrides beat flat inputs, which beat config"
    );
    assert_eq!(params(1)["value"], "scoped", "node-scoped beats flat");
    assert_eq!(
        params(2)["path"],
        "flat-path",
        "flat inputs reach nodes that declare the parameter"
    );
    assert_eq!(plan.progress(), 0.0);

    plan.complete(0, json!({"result": 1}).as_object().cloned().unwrap());
    assert!(
        plan.take_ready(&workflow, &registry, &inputs).is_empty(),
        "join waits for b"
    );
    plan.complete(1, json!({"result": 2}).as_object().cloned().unwrap());
    let ready = plan.take_ready(&workflow, &registry, &inputs);
    match &ready[..] {
        [Next::Run { params, inputs, .. }] => {
            assert_eq!(params["value"], 1, "connections beat flat inputs");
            assert_eq!(params["other"], 2);
            assert_eq!(inputs, json!({"value": 1, "other": 2}).as_object().unwrap());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(plan.progress(), 50.0);
}

#[test]
fn failures_skip_dependents_and_branches_not_taken_are_skipped() {
    let workflow = parse(json!({
        "name": "w",
        "nodes": [{"id": "a", "type": "Echo"}, {"id": "b", "type": "Echo"}, {"id": "c", "type": "Echo"},
                  {"id": "sw", "type": "Branch"}, {"id": "yes", "type": "Echo"}, {"id": "no", "type": "Echo"}, {"id": "after_no", "type": "Echo"}],
        "connections": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"},
                        {"from": "sw", "from_output": "yes", "to": "yes"}, {"from": "sw", "from_output": "no", "to": "no"},
                        {"from": "no", "to": "after_no"}],
    }))
    .unwrap();
    let registry = testing::registry();
    let (mut plan, inputs) = plan_of(&workflow, json!({}), json!({}));
    assert_eq!(
        run_ids(&plan.take_ready(&workflow, &registry, &inputs), &workflow),
        ["run a", "run sw"]
    );
    assert_eq!(plan.fail(0), vec![1, 2]);
    plan.complete(
        3,
        json!({"yes": true, "no": null})
            .as_object()
            .cloned()
            .unwrap(),
    );
    assert_eq!(
        run_ids(&plan.take_ready(&workflow, &registry, &inputs), &workflow),
        ["run yes", "skip no", "skip after_no"]
    );
    assert_eq!(plan.state(2), NodeState::Skipped);
    plan.complete(4, Map::new());
    assert!(plan.is_done());
    assert_eq!(plan.progress(), 100.0);
}

#[test]
fn a_missing_output_or_required_input_fails_the_node() {
    let workflow = parse(json!({
        "name": "w",
        "nodes": [{"id": "a", "type": "Echo"}, {"id": "b", "type": "Echo"}, {"id": "n", "type": "Needs"}],
        "connections": [{"from": "a", "from_output": "rows.0.name", "to": "b"}, {"from": "a", "from_output": "result", "to": "n", "to_input": "path"}],
    }))
    .unwrap();
    let registry = testing::registry();
    let (mut plan, inputs) = plan_of(&workflow, json!({}), json!({}));
    plan.take_ready(&workflow, &registry, &inputs);
    plan.complete(0, json!({"result": null}).as_object().cloned().unwrap());
    assert_eq!(
        run_ids(&plan.take_ready(&workflow, &registry, &inputs), &workflow),
        [
            "fail b: input 'input' expects output 'rows' of node 'a', which produced only [result]",
            "fail n: required parameter 'path' is missing",
        ]
    );
}

#[test]
fn an_output_key_the_node_lacks_is_looked_up_in_its_result() {
    let workflow = parse(json!({
        "name": "w",
        "nodes": [{"id": "a", "type": "Echo"}, {"id": "b", "type": "Echo"}],
        "connections": [{"from": "a", "from_output": "rows.1", "to": "b", "to_input": "value"}],
    }))
    .unwrap();
    let registry = testing::registry();
    let (mut plan, inputs) = plan_of(&workflow, json!({}), json!({}));
    plan.take_ready(&workflow, &registry, &inputs);
    let output = json!({"result": {"rows": ["x", "y"]}});
    plan.complete(0, output.as_object().cloned().unwrap());
    let ready = plan.take_ready(&workflow, &registry, &inputs);
    let [Next::Run { params, .. }] = ready.as_slice() else {
        panic!("b runs: {ready:?}");
    };
    assert_eq!(params["value"], "y");
}

#[test]
fn dotted_outputs_reach_into_nested_values() {
    let workflow = parse(json!({
        "name": "w",
        "nodes": [{"id": "a", "type": "Echo"}, {"id": "b", "type": "Echo"}],
        "connections": [{"from": "a", "from_output": "result.rows.1.name", "to": "b", "to_input": "value"}],
    }))
    .unwrap();
    let registry = testing::registry();
    let (mut plan, inputs) = plan_of(&workflow, json!({}), json!({}));
    plan.take_ready(&workflow, &registry, &inputs);
    plan.complete(
        0,
        json!({"result": {"rows": [{"name": "x"}, {"name": "y"}]}})
            .as_object()
            .cloned()
            .unwrap(),
    );
    match &plan.take_ready(&workflow, &registry, &inputs)[..] {
        [Next::Run { params, .. }] => assert_eq!(params["value"], "y"),
        other => panic!("{other:?}"),
    }
}
