//! A tenant's own limits, each reached and freed: `max_sessions` (429
//! `max_sessions_reached`), `max_nodes_per_workflow` and `allowed_node_types` (400
//! `invalid_workflow` naming the nodes), `max_websocket_connections` (429 at the handshake),
//! `max_execution_seconds` (the run ends `timeout`), and every refusal counted in
//! `kailash_quota_rejections_total`, by tenant only when `metrics_by_tenant` is on.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::*;
use crate::{executions::silent_server, realtime::client::WsClient};

async fn metrics(app: &TestApp) -> String {
    app.request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn new_session(app: &TestApp, token: &str) -> reqwest::Response {
    send(app, token, Method::POST, "/api/sessions", None).await
}

#[actix_web::test]
async fn max_sessions_is_the_tenants_own_and_frees_when_one_closes() {
    let app = spawn_app().await;
    app.create_tenant(&json!({"tenant_id": "acme", "name": "Acme", "limits": {"max_sessions": 2}}))
        .await;
    app.add_tenant("globex").await;
    let (alice, bob) = (
        app.token_in("acme", "alice", &[]),
        app.token_in("acme", "bob", &[]),
    );
    let first = json(new_session(&app, &alice).await).await;
    assert_eq!(new_session(&app, &bob).await.status(), 200);
    let refused = new_session(&app, &alice).await;
    assert!(refused.headers().get("retry-after").is_some());
    assert_error(
        refused,
        429,
        "max_sessions_reached",
        "The tenant allows at most 2 live sessions",
    )
    .await;
    // Another tenant is not affected.
    let globex = app.token_in("globex", "alice", &[]);
    for _ in 0..3 {
        assert_eq!(new_session(&app, &globex).await.status(), 200);
    }
    let closed = send(
        &app,
        &alice,
        Method::DELETE,
        &format!("/api/sessions/{}", first["session_id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(closed.status(), 200);
    assert_eq!(new_session(&app, &alice).await.status(), 200);
    assert!(
        metrics(&app)
            .await
            .contains("kailash_quota_rejections_total{limit=\"max_sessions\"} 1"),
    );
}

#[actix_web::test]
async fn workflows_may_use_only_the_tenants_node_types_and_node_count() {
    let app = spawn_app_with(|s| s.metrics_by_tenant = true).await;
    app.create_tenant(&json!({
        "tenant_id": "acme",
        "name": "Acme",
        "limits": {"max_nodes_per_workflow": 2},
        "allowed_node_types": ["SwitchNode", "MergeNode"]
    }))
    .await;
    let alice = app.token_in("acme", "alice", &["developer"]);
    let session = json(new_session(&app, &alice).await).await;
    let path = format!(
        "/api/workflows?session_id={}",
        session["session_id"].as_str().unwrap()
    );
    let too_big = send(&app, &alice, Method::POST, &path, Some(&route_and_merge())).await;
    assert_error_with(
        too_big,
        400,
        "invalid_workflow",
        "The workflow has 1 problem(s)",
        Some(json!([{"path": "nodes", "message": "has 3 nodes; the tenant allows at most 2"}])),
    )
    .await;
    let foreign = json!({"name": "read", "nodes": [
        {"id": "merge", "type": "MergeNode"},
        {"id": "read", "type": "JSONReaderNode", "config": {"file_path": "x.json"}}
    ]});
    let refused = send(&app, &alice, Method::POST, &path, Some(&foreign)).await;
    assert_error_with(
        refused,
        400,
        "invalid_workflow",
        "The workflow has 1 problem(s)",
        Some(json!([{"path": "nodes[1].type", "message": "node type 'JSONReaderNode' is not allowed for this tenant"}])),
    )
    .await;
    // The default tenant has no such rules.
    let default = app.post_json("alice", "/api/sessions", &json!({})).await;
    let default = json(default).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let fine = app
        .post_json(
            "alice",
            &format!("/api/workflows?session_id={default}"),
            &foreign,
        )
        .await;
    assert_eq!(fine.status(), 200);
    // Widened: accepted.
    let widened = as_platform(
        &app,
        Method::PATCH,
        "/api/admin/tenants/acme",
        Some(&json!({"limits": {}, "allowed_node_types": []})),
    )
    .await;
    assert_eq!(widened.status(), 200);
    let accepted = send(&app, &alice, Method::POST, &path, Some(&route_and_merge())).await;
    assert_eq!(accepted.status(), 200);
    let text = metrics(&app).await;
    for limit in ["max_nodes_per_workflow", "allowed_node_types"] {
        assert!(
            text.contains(&format!(
                "kailash_quota_rejections_total{{limit=\"{limit}\",tenant=\"acme\"}} 1"
            )),
            "{limit}: {text}"
        );
    }
}

#[actix_web::test]
async fn max_websocket_connections_refuses_the_handshake_until_one_closes() {
    let app = spawn_app().await;
    app.create_tenant(
        &json!({"tenant_id": "acme", "name": "Acme", "limits": {"max_websocket_connections": 1}}),
    )
    .await;
    let alice = app.token_in("acme", "alice", &[]);
    let first = WsClient::connect_with(&app, Some(alice.clone()), "").await;
    let (status, body) = WsClient::try_connect(&app, Some(alice.clone()), "")
        .await
        .err()
        .unwrap();
    assert_eq!(status, 429);
    assert_eq!(body["code"], "too_many_connections");
    assert_eq!(
        body["detail"],
        "The tenant allows at most 1 WebSocket connections"
    );
    drop(first);
    assert!(
        eventually(Duration::from_secs(5), async || {
            WsClient::try_connect(&app, Some(alice.clone()), "")
                .await
                .is_ok()
        })
        .await,
        "a slot frees when the first connection ends"
    );
}

#[actix_web::test]
async fn max_execution_seconds_caps_the_runs_time() {
    let port = silent_server();
    let app = spawn_app_with(|s| s.egress_allow = vec!["127.0.0.1".into()]).await;
    app.create_tenant(
        &json!({"tenant_id": "acme", "name": "Acme", "limits": {"max_execution_seconds": 1}}),
    )
    .await;
    let alice = app.token_in("acme", "alice", &["developer"]);
    let session = json(new_session(&app, &alice).await).await;
    let session = session["session_id"].as_str().unwrap().to_owned();
    let hanging = json!({"name": "hang", "nodes": [
        {"id": "call", "type": "HTTPRequestNode", "config": {"url": format!("http://127.0.0.1:{port}/"), "timeout": 60}}
    ]});
    let created = send(
        &app,
        &alice,
        Method::POST,
        &format!("/api/workflows?session_id={session}"),
        Some(&hanging),
    )
    .await;
    let workflow = json(created).await["workflow_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = send(
        &app,
        &alice,
        Method::POST,
        &format!("/api/executions?session_id={session}"),
        Some(&json!({"workflow_id": workflow})),
    )
    .await;
    let execution = json(started).await["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/executions/{execution}?session_id={session}");
    let mut done = json!(null);
    assert!(
        eventually(Duration::from_secs(5), async || {
            done = json(send(&app, &alice, Method::GET, &path, None).await).await;
            done["status"] != "running" && done["status"] != "started"
        })
        .await,
        "the run ends within the tenant's limit"
    );
    assert_eq!(done["status"], "timeout", "{done}");
    assert_eq!(done["error"], "the execution exceeded its limit of 1 s");
}
