//! A tenant's own limits, each reached and freed: `max_sessions` (429
//! `max_sessions_reached`), `max_workflows` (429 `max_workflows_reached`), `max_nodes_per_workflow` and `allowed_node_types` (400
//! `invalid_workflow` naming the nodes), `max_websocket_connections` (429 at the handshake),
//! `max_execution_seconds` (the run ends `timeout`), and every refusal counted in
//! `kailash_quota_rejections_total`, by tenant only when `metrics_by_tenant` is on.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::*;
use crate::{executions::silent_server, realtime::client::WsClient};

pub(crate) async fn new_session(app: &Api, token: &str) -> reqwest::Response {
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
        app.metrics_text()
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
    let text = app.metrics_text().await;
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
async fn max_workflows_counts_the_workflows_of_the_tenants_live_sessions() {
    let app = spawn_app().await;
    app.create_tenant(
        &json!({"tenant_id": "acme", "name": "Acme", "limits": {"max_workflows": 2}}),
    )
    .await;
    let alice = app.token_in("acme", "alice", &["developer"]);
    let add = async |session: &str, id: &str| {
        let mut body = route_and_merge();
        body["workflow_id"] = json!(id);
        let path = format!("/api/workflows?session_id={session}");
        send(&app, &alice, Method::POST, &path, Some(&body)).await
    };
    let one = json(new_session(&app, &alice).await).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let two = json(new_session(&app, &alice).await).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(add(&one, "a").await.status(), 200);
    assert_eq!(add(&two, "b").await.status(), 200);
    assert_error(
        add(&two, "c").await,
        429,
        "max_workflows_reached",
        "The tenant allows at most 2 workflows in its live sessions",
    )
    .await;
    // A new version of a workflow the session has is not another workflow.
    assert_eq!(add(&two, "b").await.status(), 200);
    // Closing a session frees its workflows' places.
    let closed = send(
        &app,
        &alice,
        Method::DELETE,
        &format!("/api/sessions/{one}"),
        None,
    )
    .await;
    assert_eq!(closed.status(), 200);
    assert_eq!(add(&two, "c").await.status(), 200);
    assert!(
        app.metrics_text()
            .await
            .contains("kailash_quota_rejections_total{limit=\"max_workflows\"} 1")
    );
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

/// A new session of `token`'s tenant with a workflow whose one node waits on `port` (a
/// silent server) for a minute; returns (session, workflow).
pub(crate) async fn hanging_workflow(app: &Api, token: &str, port: u16) -> (String, String) {
    let session = json(new_session(app, token).await).await;
    let session = session["session_id"].as_str().unwrap().to_owned();
    let hanging = json!({"name": "hang", "nodes": [
        {"id": "call", "type": "HTTPRequestNode", "config": {"url": format!("http://127.0.0.1:{port}/"), "timeout": 60}}
    ]});
    let path = format!("/api/workflows?session_id={session}");
    let created = send(app, token, Method::POST, &path, Some(&hanging)).await;
    let workflow = json(created).await["workflow_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (session, workflow)
}

/// Starts `workflow`; returns the execution's path (`/api/executions/{id}?session_id=`).
pub(crate) async fn start_run(
    app: &Api,
    token: &str,
    (session, workflow): &(String, String),
) -> String {
    let started = send(
        app,
        token,
        Method::POST,
        &format!("/api/executions?session_id={session}"),
        Some(&json!({"workflow_id": workflow})),
    )
    .await;
    assert_eq!(started.status(), 200);
    let execution = json(started).await["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    format!("/api/executions/{execution}?session_id={session}")
}

/// Waits until the run at `path` has `status`.
pub(crate) async fn reaches(app: &Api, token: &str, path: &str, status: &str) -> Value {
    let mut seen = json!(null);
    let reached = eventually(Duration::from_secs(5), async || {
        seen = json(send(app, token, Method::GET, path, None).await).await;
        seen["status"] == status
    })
    .await;
    assert!(reached, "{path} never reached {status}: {seen}");
    seen
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
    let workflow = hanging_workflow(&app, &alice, port).await;
    let run = start_run(&app, &alice, &workflow).await;
    let done = reaches(&app, &alice, &run, "timeout").await;
    assert_eq!(done["error"], "the execution exceeded its limit of 1 s");
}

#[actix_web::test]
async fn runs_beyond_max_concurrent_executions_wait_behind_their_own_tenants_limit() {
    let port = silent_server();
    let app = spawn_app_with(|s| s.egress_allow = vec!["127.0.0.1".into()]).await;
    app.create_tenant(
        &json!({"tenant_id": "noisy", "name": "Noisy", "limits": {"max_concurrent_executions": 1}}),
    )
    .await;
    app.add_tenant("quiet").await;
    let noisy = app.token_in("noisy", "alice", &["developer"]);
    let quiet = app.token_in("quiet", "bob", &["developer"]);
    let workflow = hanging_workflow(&app, &noisy, port).await;
    let first = start_run(&app, &noisy, &workflow).await;
    reaches(&app, &noisy, &first, "running").await;
    let second = start_run(&app, &noisy, &workflow).await;
    let third = start_run(&app, &noisy, &workflow).await;
    // The others wait: still `started`, no node has run.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    for queued in [&second, &third] {
        let state = json(send(&app, &noisy, Method::GET, queued, None).await).await;
        assert_eq!(state["status"], "started", "{state}");
        assert_eq!(state["node_states"]["call"], "pending", "{state}");
    }
    // Another tenant's run is not held up by them.
    let other = hanging_workflow(&app, &quiet, port).await;
    let theirs = start_run(&app, &quiet, &other).await;
    reaches(&app, &quiet, &theirs, "running").await;

    // Cancelled while waiting: it ends and gives its place up.
    assert_eq!(
        send(&app, &noisy, Method::DELETE, &third, None)
            .await
            .status(),
        200
    );
    reaches(&app, &noisy, &third, "cancelled").await;
    // The first ends: the second runs.
    assert_eq!(
        send(&app, &noisy, Method::DELETE, &first, None)
            .await
            .status(),
        200
    );
    reaches(&app, &noisy, &second, "running").await;
}

#[actix_web::test]
async fn runs_waiting_for_their_tenants_slot_hold_none_of_the_nodes() {
    let port = silent_server();
    let app = spawn_app_with(|s| {
        s.egress_allow = vec!["127.0.0.1".into()];
        s.max_concurrent_executions = 2;
    })
    .await;
    app.create_tenant(
        &json!({"tenant_id": "noisy", "name": "Noisy", "limits": {"max_concurrent_executions": 1}}),
    )
    .await;
    app.add_tenant("quiet").await;
    let noisy = app.token_in("noisy", "alice", &["developer"]);
    let quiet = app.token_in("quiet", "bob", &["developer"]);
    let workflow = hanging_workflow(&app, &noisy, port).await;
    let first = start_run(&app, &noisy, &workflow).await;
    reaches(&app, &noisy, &first, "running").await;
    // Three more wait behind the tenant's limit, though the node runs at most two.
    let mut waiting = Vec::new();
    for _ in 0..3 {
        waiting.push(start_run(&app, &noisy, &workflow).await);
    }
    // The node's second slot is the quiet tenant's.
    let other = hanging_workflow(&app, &quiet, port).await;
    let theirs = start_run(&app, &quiet, &other).await;
    reaches(&app, &quiet, &theirs, "running").await;
    for queued in &waiting {
        let state = json(send(&app, &noisy, Method::GET, queued, None).await).await;
        assert_eq!(state["status"], "started", "{state}");
    }
    // Noisy's first ends: its next takes the node slot it frees.
    assert_eq!(
        send(&app, &noisy, Method::DELETE, &first, None)
            .await
            .status(),
        200
    );
    reaches(&app, &noisy, &waiting[0], "running").await;
}
