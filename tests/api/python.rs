//! PythonCodeNode and DataTransformer over HTTP against real worker processes
//! (`KAILASH_TEST_PYTHON`, a venv with pandas under scripts/test.sh): compatibility, the
//! seed's pandas pipeline, the adversarial set, cancel and timeouts, responsiveness.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    executions::{finished, start, wait_until, with_workflow},
    helpers::*,
};

fn code_node(id: &str, code: &str) -> Value {
    json!({"id": id, "type": "PythonCodeNode", "config": {"name": id, "code": code}})
}

/// Runs a one-node workflow of `code` with `inputs`; the finished execution.
async fn run_code(app: &TestApp, code: &str, inputs: Value) -> Value {
    let workflow = json!({"name": "one", "nodes": [code_node("py", code)]});
    let (session, workflow_id) = with_workflow(app, workflow).await;
    let execution = start(
        app,
        &session,
        json!({"workflow_id": workflow_id, "inputs": inputs}),
    )
    .await;
    finished(app, &session, &execution).await
}

async fn assert_healthy(app: &TestApp) {
    let started = Instant::now();
    let health = app.send_as("alice", Method::GET, "/health").await;
    assert_eq!(health.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[actix_rt::test]
async fn every_kind_of_input_is_a_variable_and_outputs_follow_kailash() {
    let app = spawn_app().await;
    let workflow = json!({
        "name": "compat",
        "nodes": [
            code_node("source", "result = {'rows': [1, 2, 3], 'label': 'abc'}"),
            {"id": "combine", "type": "PythonCodeNode", "config": {
                "name": "combine", "factor": 10,
                "code": "result = {'rows': [r * factor + offset for r in rows], 'label': label, 'flat': flat}"}},
            // No `result`: the variables the code bound, never `code`, `name` or inputs
            // left alone.
            {"id": "locals", "type": "PythonCodeNode", "config": {
                "name": "locals",
                "code": "count = len(rows)\nupper = label.upper()\n_private = 1\ndef helper():\n    pass"}},
        ],
        "connections": [
            {"from_node": "source", "from_output": "result.rows", "to_node": "combine", "to_input": "rows"},
            {"from_node": "source", "from_output": "result.label", "to_node": "combine", "to_input": "label"},
            {"from_node": "source", "from_output": "result.rows", "to_node": "locals", "to_input": "rows"},
            {"from_node": "source", "from_output": "result.label", "to_node": "locals", "to_input": "label"},
        ],
    });
    let (session, workflow_id) = with_workflow(&app, workflow).await;
    let execution = start(
        &app,
        &session,
        json!({"workflow_id": workflow_id,
               "inputs": {"combine": {"offset": 1}, "flat": "everywhere"}}),
    )
    .await;
    let done = finished(&app, &session, &execution).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["outputs"]["combine"],
        json!({"result": {"rows": [11, 21, 31], "label": "abc", "flat": "everywhere"}})
    );
    assert_eq!(
        done["outputs"]["locals"],
        json!({"count": 3, "upper": "ABC"})
    );
}

#[actix_rt::test]
async fn data_transformer_chains_expressions_lambdas_and_blocks() {
    let app = spawn_app().await;
    let workflow = json!({
        "name": "transform",
        "nodes": [
            code_node("people", "result = [{'name': 'ann', 'age': 31}, {'name': 'bob', 'age': 17}, {'name': 'cy', 'age': 45}]"),
            {"id": "adults", "type": "DataTransformer", "config": {"transformations": [
                "[p for p in data if p['age'] >= minimum]",
                "lambda p: dict(p, name=p['name'].title())",
                "names = [p['name'] for p in result]\nresult = {'names': names, 'count': len(names)}",
            ]}},
        ],
        "connections": [{"from": "people", "to": "adults", "to_input": "data"}],
    });
    let (session, workflow_id) = with_workflow(&app, workflow).await;
    let execution = start(
        &app,
        &session,
        json!({"workflow_id": workflow_id, "inputs": {"minimum": 18}}),
    )
    .await;
    let done = finished(&app, &session, &execution).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["outputs"]["adults"],
        json!({"result": {"names": ["Ann", "Cy"], "count": 2}})
    );
}

/// The seed document's `customer_data_pipeline` (`fixtures/`, the seed's config as JSON),
/// as a frontend sends it; only the CSV's path is this test's data directory.
#[actix_rt::test]
async fn the_seed_customer_data_pipeline_runs_with_pandas() {
    let app = spawn_app().await;
    let files = app.state.settings.node_data_dirs[0].clone();
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(
        files.join("customers.csv"),
        "name,age,location\nAnn,34,Paris\nBob,,Lyon\nCy,51,Paris\nAnn,34,Paris\nDee,29,Nice\n",
    )
    .unwrap();
    let mut workflow: Value =
        serde_json::from_str(include_str!("fixtures/customer_data_pipeline.json")).unwrap();
    workflow["nodes"][0]["config"]["file_path"] = json!("customers.csv");
    let (session, workflow_id) = with_workflow(&app, workflow).await;
    let execution = start(
        &app,
        &session,
        json!({"workflow_id": workflow_id, "inputs": {}}),
    )
    .await;
    let done = finished(&app, &session, &execution).await;
    assert_eq!(done["status"], "completed", "{done}");
    let metrics = &done["outputs"]["data_validator"]["result"]["quality_metrics"];
    assert_eq!(
        metrics,
        &json!({"original_rows": 5, "cleaned_rows": 3, "duplicates_removed": 1,
                "missing_values": {"name": 0, "age": 1, "location": 0}})
    );
    assert_eq!(
        done["outputs"]["insights_generator"]["result"],
        json!({
            "insights": {"total_customers": 3, "average_age": 38.0,
                         "geographic_distribution": {"Paris": 2, "Nice": 1},
                         "quality_score": 60.0},
            "summary": "Processed 3 customers with 60.0% data quality",
        })
    );
}

#[actix_rt::test]
async fn hostile_code_fails_with_a_clear_node_error_and_the_gateway_stays_healthy() {
    let app = spawn_app_with(|s| {
        s.python_timeout_seconds = 5.0;
        s.python_memory_mb = 512;
        s.python_max_output_bytes = 1024 * 1024;
        s.python_max_print_bytes = 4096;
    })
    .await;
    let files = app.state.settings.node_data_dirs[0].clone();
    let outside = TempPath::new("outside");
    std::fs::create_dir_all(&outside.0).unwrap();
    let escape = outside.0.join("escaped.txt");
    let cases = [
        ("infinite loop", "while True:\n    pass".to_owned(), "ran longer than 5 s"),
        // 100 MB at a time: the 512 MB limit is hit within a few allocations, well inside the
        // 5 s time limit even with both cores busy compiling.
        ("memory bomb", "hog = []\nwhile True:\n    hog.append(' ' * 10**8)".into(), "memory limit"),
        ("fork bomb", "import os\nwhile True:\n    os.fork()".into(), "import of 'os' is not allowed"),
        ("import subprocess", "import subprocess\nsubprocess.run(['id'])".into(), "import of 'subprocess' is not allowed"),
        ("import socket", "import socket\nsocket.create_connection(('example.com', 80))".into(), "import of 'socket' is not allowed"),
        ("__import__", "__import__('os').system('id')".into(), "the name '__import__' is not allowed"),
        ("getattr(os, 'sys'+'tem')", "import os\ngetattr(os, 'sys' + 'tem')('id')".into(), "import of 'os' is not allowed"),
        ("getattr through a library", "import pandas as pd\ncommon = getattr(pd.io, 'com' + 'mon')\ngetattr(common, 'o' + 's').system('id')".into(), "module 'os' is not allowed"),
        ("a library's os module", "import pandas as pd\npd.io.common.os.system('id')".into(), "module 'os' is not allowed"),
        ("open('/etc/passwd')", "result = open('/etc/passwd').read()".into(), "outside the data directories"),
        ("a library reading outside", "import pandas as pd\nresult = pd.read_csv('/etc/passwd').to_dict()".into(), "outside the data directories"),
        ("writing outside the data dir", format!("open({:?}, 'w').write('x')", escape.display().to_string()), "outside the data directories"),
        ("writing above the data dir", "open('../../escaped.txt', 'w').write('x')".into(), "outside the data directories"),
        ("__subclasses__ escape", "result = ().__class__.__base__.__subclasses__()".into(), "access to attribute '__subclasses__' is not allowed"),
        ("__subclasses__ via getattr", "base = getattr(getattr((), '__cla' + 'ss__'), '__base__')".into(), "access to attribute '__class__' is not allowed"),
        ("frames via a generator", "def g():\n    yield 1\nresult = g().gi_frame".into(), "access to attribute 'gi_frame' is not allowed"),
        ("patching a shared library", "import json\njson.dumps = len".into(), "read-only"),
        ("huge output", "result = 'x' * (5 * 1024 * 1024)".into(), "the limit is 1048576"),
        ("printing forever", "while True:\n    print('spam')".into(), "printed more than 4096 bytes"),
    ];
    for (what, code, expected) in &cases {
        let done = run_code(&app, code, json!({})).await;
        assert_eq!(done["status"], "failed", "{what}: {done}");
        let error = done["error"].as_str().unwrap();
        assert!(
            error.starts_with("node 'py' failed: ") && error.contains(expected),
            "{what}: expected '{expected}' in: {error}"
        );
        assert_healthy(&app).await;
    }
    assert!(!escape.exists(), "a file was written outside the data dir");
    assert!(!files.join("../../escaped.txt").exists());
    // The workers that were killed or broke were replaced: ordinary code still runs.
    let done = run_code(&app, "result = {'n': x * 2}", json!({"x": 4})).await;
    assert_eq!(done["outputs"]["py"], json!({"result": {"n": 8}}), "{done}");
}

#[actix_rt::test]
async fn sandbox_mode_is_refused_in_a_workflow_and_in_a_run() {
    let app = spawn_app().await;
    let session = app.create_session("alice").await;
    let workflow = json!({"name": "trusting", "nodes": [{"id": "py", "type": "PythonCodeNode",
        "config": {"code": "result = 1", "sandbox_mode": "trusted"}}]});
    let refused = app
        .post_json(
            "alice",
            &format!("/api/workflows?session_id={session}"),
            &workflow,
        )
        .await;
    assert_error_with(
        refused,
        400,
        "invalid_workflow",
        "The workflow has 1 problem(s)",
        Some(json!([{"path": "nodes[0].config.sandbox_mode", "message":
            "the Python sandbox cannot be configured by a workflow or a request; remove sandbox_mode"}])),
    )
    .await;

    let (session, workflow_id) = with_workflow(
        &app,
        json!({"name": "plain", "nodes": [code_node("py", "result = 1")]}),
    )
    .await;
    // A run's overrides go through the same check: refused before anything runs.
    let refused = app
        .post_json(
            "alice",
            &format!("/api/executions?session_id={session}"),
            &json!({"workflow_id": workflow_id, "config_overrides": {"py": {"sandbox_mode": "trusted"}}}),
        )
        .await;
    assert_error_with(
        refused,
        400,
        "invalid_request",
        "Invalid config_overrides.py.sandbox_mode: the Python sandbox cannot be configured by a workflow or a request; remove sandbox_mode",
        Some(json!([{"path": "config_overrides.py.sandbox_mode", "message":
            "the Python sandbox cannot be configured by a workflow or a request; remove sandbox_mode"}])),
    )
    .await;
    let runs = app
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/executions?session_id={session}"),
        )
        .await;
    assert_eq!(runs["total"], 0, "nothing was started");
}

#[actix_rt::test]
async fn without_python_code_nodes_are_refused_when_the_workflow_is_created() {
    let app = spawn_app_with(|s| s.python_executable = "/nonexistent/python3".into()).await;
    let session = app.create_session("alice").await;
    let workflow = json!({"name": "needs python", "nodes": [
        code_node("py", "result = 1"),
        {"id": "tx", "type": "DataTransformer", "config": {"transformations": ["data"]}},
    ]});
    let refused = app
        .post_json(
            "alice",
            &format!("/api/workflows?session_id={session}"),
            &workflow,
        )
        .await;
    assert_error_with(
        refused,
        400,
        "python_unavailable",
        "The workflow has 2 problem(s)",
        Some(json!([
            {"path": "nodes[0].type", "message": "PythonCodeNode needs Python, which is not available on this gateway"},
            {"path": "nodes[1].type", "message": "DataTransformer needs Python, which is not available on this gateway"},
        ])),
    )
    .await;
}

/// Starts a run of `code` and waits until the code itself is running.
async fn running(app: &TestApp, code: &str, config: Value) -> (String, String) {
    let mut node = code_node("py", code);
    node["config"]
        .as_object_mut()
        .unwrap()
        .extend(config.as_object().unwrap().clone());
    let (session, workflow_id) = with_workflow(app, json!({"name": "slow", "nodes": [node]})).await;
    let execution = start(app, &session, json!({"workflow_id": workflow_id})).await;
    wait_until(app, &session, &execution, |s| {
        s["node_states"]["py"] == "running"
    })
    .await;
    // The node is running once its request is on the pipe; give the code a moment to start.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    (session, execution)
}

#[actix_rt::test]
async fn cancel_and_timeout_kill_the_running_code_and_its_worker_is_replaced() {
    let app = spawn_app().await;
    let files = app.state.settings.node_data_dirs[0].clone();
    // Each run would leave a file behind 1.5 s in, unless it is killed before.
    let code = |marker: &str| {
        format!("import time\ntime.sleep(1.5)\nopen('{marker}', 'w').write('still alive')")
    };

    let (session, execution) = running(&app, &code("after-cancel"), json!({})).await;
    let path = format!("/api/executions/{execution}?session_id={session}");
    assert_eq!(
        app.send_as("alice", Method::DELETE, &path).await.status(),
        200
    );
    let done = finished(&app, &session, &execution).await;
    assert_eq!(done["status"], "cancelled");

    let (session, execution) = running(&app, &code("after-timeout"), json!({"timeout": 0.5})).await;
    let done = finished(&app, &session, &execution).await;
    assert_eq!(done["status"], "timeout", "{done}");

    actix_rt::time::sleep(Duration::from_millis(2000)).await;
    assert!(
        !files.join("after-cancel").exists(),
        "cancel did not kill the code"
    );
    assert!(
        !files.join("after-timeout").exists(),
        "the timeout did not kill the code"
    );
    let done = run_code(&app, "result = 'replaced'", json!({})).await;
    assert_eq!(done["outputs"]["py"], json!({"result": "replaced"}));
}

#[actix_rt::test]
async fn health_stays_fast_while_code_sleeps() {
    let app = spawn_app().await;
    let (session, execution) = running(
        &app,
        "import time\ntime.sleep(5)\nresult = 'rested'",
        json!({}),
    )
    .await;
    for _ in 0..10 {
        assert_healthy(&app).await;
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let state = app
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/executions/{execution}?session_id={session}"),
        )
        .await;
    assert_eq!(
        state["status"], "running",
        "the check ran while the code slept"
    );
}
