//! Executions over HTTP with the native nodes: results, inputs, failures, cancel, limits,
//! SSRF and path refusals, and the SQL node against the real PostgreSQL.

use std::{net::TcpListener, time::Duration};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// Creates a session holding `workflow`; returns (session, workflow id).
pub async fn with_workflow(app: &TestApp, workflow: Value) -> (String, String) {
    let session = app.create_session("alice").await;
    let created = app
        .post_json(
            "alice",
            &format!("/api/workflows?session_id={session}"),
            &workflow,
        )
        .await;
    assert_eq!(created.status(), 200);
    let id = json(created).await["workflow_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (session, id)
}

pub async fn start(app: &TestApp, session: &str, body: Value) -> String {
    let started = app
        .post_json(
            "alice",
            &format!("/api/executions?session_id={session}"),
            &body,
        )
        .await;
    assert_eq!(started.status(), 200);
    let started = json(started).await;
    assert_eq!(started["status"], "started");
    assert_eq!(started["progress"], 0.0);
    started["execution_id"].as_str().unwrap().to_owned()
}

pub async fn wait_until(
    app: &TestApp,
    session: &str,
    execution: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..300 {
        let state = app
            .json_as(
                "alice",
                Method::GET,
                &format!("/api/executions/{execution}?session_id={session}"),
            )
            .await;
        if done(&state) {
            return state;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("execution {execution} never reached the expected state");
}

pub async fn finished(app: &TestApp, session: &str, execution: &str) -> Value {
    wait_until(app, session, execution, |s| {
        !["started", "running"].contains(&s["status"].as_str().unwrap())
    })
    .await
}

/// A TCP server on 127.0.0.1 that accepts connections and never answers.
pub fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(16).collect();
        std::thread::sleep(Duration::from_secs(60));
        drop(held);
    });
    port
}

#[actix_web::test]
async fn a_switch_merge_run_completes_with_its_events() {
    let app = spawn_app().await;
    let (session, workflow) = with_workflow(&app, route_and_merge()).await;
    let execution = start(&app, &session, json!({"workflow_id": workflow, "inputs": {"route": {"input_data": {"tier": "gold", "n": 1}}}})).await;
    let done = finished(&app, &session, &execution).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"], 100.0);
    assert_eq!(done["error"], Value::Null);
    assert_eq!(
        done["outputs"]["gold"]["merged_data"],
        json!([{"tier": "gold", "n": 1}])
    );
    assert_eq!(
        done["node_states"],
        json!({"route": "completed", "gold": "completed", "other": "skipped"})
    );
    for key in ["created_at", "started_at", "completed_at"] {
        assert!(done[key].as_str().unwrap().ends_with('Z'), "{key}");
    }

    let listed = app
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/executions?session_id={session}"),
        )
        .await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["executions"][0]["status"], "completed");

    let events = app
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/events/recent?session_id={session}"),
        )
        .await;
    let types: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"session.created"));
    assert_eq!(types.last(), Some(&"workflow.completed"));
    assert!(types.contains(&"node.skipped"));
    for event in &events["events"].as_array().unwrap()[1..] {
        assert_eq!(event["user_id"], "alice");
        assert_eq!(event["workflow_name"], "route_and_merge");
        assert_eq!(event["execution_id"], execution.as_str());
    }
}

#[actix_web::test]
async fn flat_and_node_scoped_inputs_and_overrides_reach_their_nodes() {
    let app = spawn_app().await;
    let (session, workflow) = with_workflow(
        &app,
        json!({
            "name": "inputs",
            "nodes": [{"id": "m1", "type": "MergeNode"}, {"id": "m2", "type": "MergeNode"}],
        }),
    )
    .await;
    let execution = start(
        &app,
        &session,
        json!({
            "workflow_id": workflow,
            "inputs": {"data1": [1], "m2": {"data1": ["scoped"]}},
            "config_overrides": {"m1": {"data2": [2]}},
        }),
    )
    .await;
    let done = finished(&app, &session, &execution).await;
    assert_eq!(
        done["outputs"]["m1"]["merged_data"],
        json!([1, 2]),
        "flat input and override"
    );
    assert_eq!(
        done["outputs"]["m2"]["merged_data"],
        json!(["scoped"]),
        "node-scoped beats flat"
    );
}

#[actix_web::test]
async fn path_escapes_and_private_addresses_fail_the_node_not_the_gateway() {
    let app = spawn_app().await;
    let port = silent_server();
    let (session, workflow) = with_workflow(&app, json!({
        "name": "refusals",
        "nodes": [
            {"id": "escape", "type": "CSVReaderNode", "config": {"file_path": "../../../etc/passwd"}},
            {"id": "after", "type": "MergeNode"},
            {"id": "ssrf", "type": "HTTPRequestNode", "config": {"url": format!("http://127.0.0.1:{port}/")}},
            {"id": "metadata", "type": "HTTPRequestNode", "config": {"url": "http://169.254.169.254/latest/meta-data/"}}
        ],
        "connections": [{"from": "escape", "from_output": "data", "to": "after", "to_input": "data1"}]
    }))
    .await;
    let execution = start(&app, &session, json!({"workflow_id": workflow})).await;
    let done = finished(&app, &session, &execution).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(
        done["node_states"],
        json!({"escape": "failed", "after": "skipped", "ssrf": "failed", "metadata": "failed"})
    );
    let error = done["error"].as_str().unwrap();
    assert!(error.starts_with("node '"), "{error}");
    let events = app
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/events/recent?session_id={session}&event_types=node.failed"),
        )
        .await;
    let messages: Vec<String> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("outside the data directories")),
        "{messages:?}"
    );
    assert!(
        messages.iter().filter(|m| m.contains("refused")).count() == 2,
        "{messages:?}"
    );
}

#[actix_web::test]
async fn cancel_stops_a_running_http_call_and_a_finished_run_answers_409() {
    let app = spawn_app_with(|s| s.egress_allow = vec!["127.0.0.1".into()]).await;
    let port = silent_server();
    let (session, workflow) = with_workflow(&app, json!({
        "name": "hangs",
        "nodes": [{"id": "call", "type": "HTTPRequestNode", "config": {"url": format!("http://127.0.0.1:{port}/slow"), "timeout": 60}}]
    }))
    .await;
    let execution = start(&app, &session, json!({"workflow_id": workflow})).await;
    wait_until(&app, &session, &execution, |s| s["current_node"] == "call").await;
    let path = format!("/api/executions/{execution}?session_id={session}");
    let cancelled = app.send_as("alice", Method::DELETE, &path).await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(
        json(cancelled).await,
        json!({"message": "Execution cancelled"})
    );
    let state = app.json_as("alice", Method::GET, &path).await;
    assert_eq!(state["status"], "cancelled");
    assert_eq!(state["node_states"], json!({"call": "cancelled"}));
    let again = app.send_as("alice", Method::DELETE, &path).await;
    assert_error(
        again,
        409,
        "execution_not_running",
        "The execution is not running",
    )
    .await;
    let other = app.send_as("bob", Method::DELETE, &path).await;
    assert_error(other, 404, "session_not_found", "Session not found").await;
    let unknown = app
        .send_as(
            "alice",
            Method::GET,
            &format!(
                "/api/executions/{}?session_id={session}",
                uuid::Uuid::new_v4()
            ),
        )
        .await;
    assert_error(unknown, 404, "execution_not_found", "Execution not found").await;
}

#[actix_web::test]
async fn time_limits_end_runs_as_timeout_and_the_execution_limit_answers_429() {
    let app = spawn_app_with(|s| {
        s.egress_allow = vec!["127.0.0.1".into()];
        s.execution_timeout_seconds = 0.5;
        s.max_executions_per_session = 1;
    })
    .await;
    let port = silent_server();
    let (session, workflow) = with_workflow(&app, json!({
        "name": "hangs",
        "nodes": [{"id": "call", "type": "HTTPRequestNode", "config": {"url": format!("http://127.0.0.1:{port}/"), "timeout": 30}}]
    }))
    .await;
    let execution = start(&app, &session, json!({"workflow_id": workflow})).await;
    let refused = app
        .post_json(
            "alice",
            &format!("/api/executions?session_id={session}"),
            &json!({"workflow_id": workflow}),
        )
        .await;
    assert_error(
        refused,
        429,
        "too_many_executions",
        "At most 1 executions may run at once per session",
    )
    .await;
    let done = finished(&app, &session, &execution).await;
    assert_eq!(done["status"], "timeout");
    assert_eq!(done["error"], "the execution exceeded its limit of 0.5 s");
    let missing = app
        .post_json(
            "alice",
            &format!("/api/executions?session_id={session}"),
            &json!({"workflow_id": "nope"}),
        )
        .await;
    assert_error(missing, 404, "workflow_not_found", "Workflow not found").await;
}

#[actix_web::test]
async fn the_sql_node_binds_parameters_against_the_real_postgres() {
    let url = std::env::var("KAILASH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let app =
        spawn_app_with(|s| s.egress_allow = vec!["127.0.0.1".into(), "localhost".into()]).await;
    let (session, workflow) = with_workflow(
        &app,
        json!({
            "name": "sql",
            "nodes": [{"id": "q", "type": "SQLDatabaseNode", "config": {
                "connection_string": url,
                "query": "SELECT $1::text AS name, $2::int AS n",
                "parameters": ["Robert'); DROP TABLE students;--", 7]
            }}]
        }),
    )
    .await;
    let execution = start(&app, &session, json!({"workflow_id": workflow})).await;
    let done = finished(&app, &session, &execution).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["outputs"]["q"]["data"],
        json!([{"name": "Robert'); DROP TABLE students;--", "n": 7}])
    );
    assert_eq!(done["outputs"]["q"]["row_count"], 1);
}
