//! Dynamic workflows over HTTP: validation, listing, schemas, shared workflows.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

fn switch_merge() -> Value {
    json!({
        "name": "route_and_merge",
        "nodes": [
            {"id": "route", "type": "SwitchNode", "config": {"condition_field": "tier", "operator": "==", "value": "gold"}},
            {"id": "merge", "type": "MergeNode", "parameters": {"merge_type": "concat"}}
        ],
        "connections": [
            {"from_node": "route", "from_output": "true_output", "to_node": "merge", "to_input": "data1"}
        ]
    })
}

#[actix_web::test]
async fn invalid_workflows_get_every_problem_at_once() {
    let app = spawn_app().await;
    let session = app.create_session("alice").await;
    let response = app
        .post_json("alice", &format!("/api/workflows?session_id={session}"), &json!({
            "name": "broken",
            "nodes": [{"id": "r", "type": "CSVReadNode"}, {"id": "w", "type": "CSVWriterNode"},
                      {"id": "w", "type": "SwitchNode"}, {"type": "MergeNode", "config": {"merge_type": 5}}],
            "connections": [{"from": "r", "to": "nowhere"}],
        }))
        .await;
    assert_error_with(
        response,
        400,
        "invalid_workflow",
        "The workflow has 6 problem(s)",
        Some(json!([
            {"path": "nodes[0].type", "message": "unknown node type 'CSVReadNode'; did you mean 'CSVReaderNode'?"},
            {"path": "nodes[2].id", "message": "duplicate node id 'w' (also nodes[1])"},
            {"path": "nodes[3].id", "message": "is required (a non-empty string)"},
            {"path": "connections[0].from_node", "message": "unknown node 'r'"},
            {"path": "connections[0].to_node", "message": "unknown node 'nowhere'"},
            {"path": "nodes[1].config.file_path", "message": "required parameter 'file_path' of CSVWriterNode is missing"},
        ])),
    )
    .await;

    let cycle = json!({"name": "loop", "nodes": [{"id": "a", "type": "MergeNode"}, {"id": "b", "type": "MergeNode"}],
                       "connections": [{"from": "a", "to": "b", "from_output": "merged_data", "to_input": "data1"},
                                       {"from": "b", "to": "a", "from_output": "merged_data", "to_input": "data1"}]});
    let response = app
        .post_json(
            "alice",
            &format!("/api/workflows?session_id={session}"),
            &cycle,
        )
        .await;
    assert_error_with(
        response,
        400,
        "invalid_workflow",
        "The workflow has 1 problem(s)",
        Some(json!([{"path": "connections", "message": "the connections form a cycle: a -> b -> a"}])),
    )
    .await;

    // Unknown (or someone else's) session: 404 whatever the body; no session_id: 400.
    let response = app
        .post_json(
            "bob",
            &format!("/api/workflows?session_id={session}"),
            &cycle,
        )
        .await;
    assert_error(response, 404, "session_not_found", "Session not found").await;
    let response = app
        .post_json("alice", "/api/workflows", &switch_merge())
        .await;
    assert_error_with(
        response,
        400,
        "invalid_request",
        "The session_id query parameter is required",
        Some(json!([{"path": "session_id", "message": "is required"}])),
    )
    .await;
}

#[actix_web::test]
async fn workflows_are_listed_and_described_with_real_schemas() {
    let app = spawn_app().await;
    let session = app.create_session("alice").await;
    let created = json(
        app.post_json(
            "alice",
            &format!("/api/workflows?session_id={session}"),
            &switch_merge(),
        )
        .await,
    )
    .await;
    let id = created["workflow_id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "route_and_merge");
    assert_eq!(created["session_id"], session.as_str());
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let listed = app
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/workflows?session_id={session}"),
        )
        .await;
    assert_eq!(
        listed,
        json!({"total": 1, "workflows": [{"workflow_id": id, "name": "route_and_merge", "description": "", "is_shared": false, "node_count": 2}]})
    );
    let detail = app
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/workflows/{id}?session_id={session}"),
        )
        .await;
    assert_eq!(detail["is_shared"], false);
    let schema = &detail["schema"];
    assert_eq!(schema["metadata"]["name"], "route_and_merge");
    assert_eq!(schema["nodes"]["route"]["node_type"], "SwitchNode");
    assert_eq!(schema["nodes"]["route"]["instance_id"], "route");
    assert_eq!(
        schema["connections"],
        json!([{"source_node": "route", "source_output": "true_output", "target_node": "merge", "target_input": "data1"}])
    );
    assert_eq!(
        schema["execution"]["execution_order"],
        json!(["route", "merge"])
    );
    let same = app
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/schemas/workflows/{id}?session_id={session}"),
        )
        .await;
    assert_eq!(same["schema"], *schema);
    let session_detail = app
        .json_as("alice", Method::GET, &format!("/api/sessions/{session}"))
        .await;
    assert_eq!(session_detail["workflows"], json!([id]));

    let others = app
        .send_as(
            "bob",
            Method::GET,
            &format!("/api/workflows/{id}?session_id={session}"),
        )
        .await;
    assert_error(others, 404, "session_not_found", "Session not found").await;
    let unknown = app
        .send_as(
            "alice",
            Method::GET,
            &format!("/api/workflows/nope?session_id={session}"),
        )
        .await;
    assert_error(unknown, 404, "workflow_not_found", "Workflow not found").await;
}

#[actix_web::test]
async fn node_schemas_declare_real_parameters() {
    let app = spawn_app().await;
    let all = app
        .json_as("alice", Method::GET, "/api/schemas/nodes")
        .await;
    for node_type in [
        "CSVReaderNode",
        "CSVWriterNode",
        "JSONReaderNode",
        "JSONWriterNode",
        "TextReaderNode",
        "TextWriterNode",
        "SwitchNode",
        "MergeNode",
        "HTTPRequestNode",
        "SQLDatabaseNode",
        "AsyncSQLDatabaseNode",
    ] {
        let schema = &all["schemas"][node_type];
        assert_eq!(schema["node_type"], node_type);
        for key in [
            "category",
            "description",
            "version",
            "parameters",
            "inputs",
            "outputs",
        ] {
            assert!(!schema[key].is_null(), "{node_type} lacks {key}");
        }
    }
    assert_eq!(all["total"], all["schemas"].as_object().unwrap().len());
    let reader = &all["schemas"]["CSVReaderNode"]["parameters"];
    let file_path = reader
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "file_path")
        .unwrap();
    assert_eq!(file_path["required"], true);
    assert_eq!(file_path["type"], "string");
    let filtered = app
        .json_as(
            "alice",
            Method::GET,
            "/api/schemas/nodes?node_types=SwitchNode,MergeNode",
        )
        .await;
    assert_eq!(filtered["total"], 2);
    let one = app
        .json_as("alice", Method::GET, "/api/schemas/nodes/HTTPRequestNode")
        .await;
    assert_eq!(one["node_type"], "HTTPRequestNode");
    let unknown = app
        .send_as("alice", Method::GET, "/api/schemas/nodes/SwitchNod")
        .await;
    assert_error(
        unknown,
        404,
        "node_type_not_found",
        "Unknown node type 'SwitchNod'; did you mean 'SwitchNode'?",
    )
    .await;
}

#[actix_web::test]
async fn shared_workflows_are_listed_runnable_and_shadowed_by_session_ones() {
    let dir = TempPath::new("shared");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(
        dir.0.join("router.json"),
        serde_json::to_string(&switch_merge()).unwrap(),
    )
    .unwrap();
    let app = spawn_app_with(|s| {
        s.workflows_dir = Some(dir.0.clone());
        s.enable_dynamic_workflows = false;
    })
    .await;
    let shared = app.json_as("alice", Method::GET, "/api/workflows").await;
    assert_eq!(shared["workflows"][0]["workflow_id"], "router");
    assert_eq!(shared["workflows"][0]["is_shared"], true);
    let detail = app
        .json_as("alice", Method::GET, "/api/workflows/router")
        .await;
    assert_eq!(detail["is_shared"], true);

    let session = app.create_session("alice").await;
    let refused = app
        .post_json(
            "alice",
            &format!("/api/workflows?session_id={session}"),
            &switch_merge(),
        )
        .await;
    assert_error(
        refused,
        403,
        "dynamic_workflows_disabled",
        "Dynamic workflow creation is disabled on this gateway",
    )
    .await;
    let started = app
        .post_json(
            "alice",
            &format!("/api/executions?session_id={session}"),
            &json!({"workflow_id": "router", "inputs": {"input_data": {"tier": "gold"}}}),
        )
        .await;
    assert_eq!(started.status(), 200);

    let open = spawn_app_with(|s| s.workflows_dir = Some(dir.0.clone())).await;
    let session = open.create_session("alice").await;
    let mut own = switch_merge();
    own["workflow_id"] = json!("router");
    own["name"] = json!("mine");
    open.post_json(
        "alice",
        &format!("/api/workflows?session_id={session}"),
        &own,
    )
    .await;
    let listed = open
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/workflows?session_id={session}"),
        )
        .await;
    assert_eq!(
        listed["total"], 1,
        "the session's workflow wins over the shared one"
    );
    assert_eq!(listed["workflows"][0]["name"], "mine");
    assert_eq!(listed["workflows"][0]["is_shared"], false);
}

#[actix_web::test]
async fn a_shared_workflow_that_does_not_validate_stops_the_start_naming_its_file() {
    let dir = TempPath::new("shared-bad");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::write(
        dir.0.join("broken.json"),
        r#"{"name": "b", "nodes": [{"id": "x", "type": "Nope"}]}"#,
    )
    .unwrap();
    let mut settings = test_settings();
    settings.workflows_dir = Some(dir.0.clone());
    let secret = kailash_gateway::config::Secret::new(random_secret());
    let error = kailash_gateway::Application::build(settings, Some(&secret))
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(error.starts_with("shared workflow "), "{error}");
    assert!(
        error.contains("broken.json") && error.contains("nodes[0].type: unknown node type 'Nope'"),
        "{error}"
    );
}
