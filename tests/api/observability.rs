//! `/`, `/health`, `/health/detailed`, `/ready`, `/metrics`, `/api/stats`, and the drain.

use std::time::Duration;

use reqwest::Method;

use crate::helpers::*;

#[actix_web::test]
async fn root_health_and_stats_have_the_kailash_shapes() {
    let app = spawn_app().await;
    let session = app.create_session("alice").await;

    let root = app.json_as("alice", Method::GET, "/").await;
    assert_eq!(root["status"], "healthy");
    assert_eq!(root["auth"], "gated");
    assert_eq!(root["endpoints"]["sessions"], "/api/sessions");
    assert_eq!(root["endpoints"]["websocket"], "/ws");
    assert_eq!(root["features"]["sessions"], true);

    let health = json(app.request(Method::GET, "/health").send().await.unwrap()).await;
    assert_eq!(health["status"], "healthy");
    assert!(health["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(health["components"]["agent_ui"]["active_sessions"], 1);
    for component in ["agent_ui", "realtime", "schema_registry", "store", "broker"] {
        assert_eq!(
            health["components"][component]["status"], "healthy",
            "{component}"
        );
    }

    let detailed = json(
        app.request(Method::GET, "/health/detailed")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let check_names: Vec<_> = detailed["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        check_names,
        [
            "store",
            "broker",
            "middleware",
            "sessions",
            "system_resources"
        ]
    );
    let resources = &detailed["checks"][4]["details"];
    assert!(resources["memory_total_bytes"].as_u64().unwrap() > 0);
    assert!(resources["process_rss_bytes"].as_u64().unwrap() > 0);
    assert!(resources["disk_percent"].as_f64().is_some());
    assert_eq!(detailed["checks"][3]["details"]["near_timeout"], 0);
    assert_eq!(detailed["system_info"]["platform"]["os"], "linux");

    let closed = app
        .send_as("alice", Method::DELETE, &format!("/api/sessions/{session}"))
        .await;
    assert_eq!(closed.status(), 200);
    app.create_session("bob").await;
    let stats = app.json_as("alice", Method::GET, "/api/stats").await;
    assert_eq!(stats["agent_ui"]["active_sessions"], 1);
    assert_eq!(stats["agent_ui"]["total_sessions_created"], 2);
    assert_eq!(stats["agent_ui"]["sessions_closed"], 1);
    assert_eq!(stats["agent_ui"]["events_emitted"], 3);
    assert_eq!(stats["gateway"]["title"], "Kailash Gateway");
    assert!(stats["gateway"]["requests_processed"].as_u64().unwrap() >= 6);
}

#[actix_web::test]
async fn metrics_count_requests_by_route_pattern_and_mirror_sessions() {
    let app = spawn_app().await;
    let id = app.create_session("alice").await;
    app.send_as("alice", Method::GET, &format!("/api/sessions/{id}"))
        .await;
    app.send_as(
        "alice",
        Method::GET,
        &format!("/api/sessions/{}", uuid::Uuid::new_v4()),
    )
    .await;
    let text = app.metrics_text().await;
    for line in [
        r#"kailash_http_requests_total{method="POST",route="/api/sessions",status="200"} 1"#,
        r#"kailash_http_requests_total{method="GET",route="/api/sessions/{session_id}",status="200"} 1"#,
        r#"kailash_http_requests_total{method="GET",route="/api/sessions/{session_id}",status="404"} 1"#,
        "kailash_sessions_active 1",
        "kailash_sessions_created_total 1",
        "kailash_sessions_expired_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    assert!(text.contains("kailash_http_request_duration_seconds_bucket"));
    assert!(!text.contains(&id), "ids never become labels");
}

#[actix_web::test]
async fn draining_turns_readiness_off_refuses_new_sessions_then_stops() {
    let app = spawn_app_with(|s| s.drain_delay_seconds = 1.0).await;
    assert_eq!(
        app.request(Method::GET, "/ready")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (state, server) = (app.state.clone(), app.server.clone());
    let drained = actix_rt::spawn(async move {
        kailash_gateway::shutdown::drain(&state, &server, "test").await;
    });
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let ready = app.request(Method::GET, "/ready").send().await.unwrap();
    assert_eq!(ready.headers()["retry-after"], "5");
    assert_error(ready, 503, "draining", "The gateway is shutting down").await;
    // Readiness is off but the node still serves while load balancers catch up.
    let health = json(app.request(Method::GET, "/health").send().await.unwrap()).await;
    assert_eq!(health["status"], "healthy");
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("drain is bounded")
        .unwrap();
    let fresh_connection = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let after = fresh_connection
        .get(format!("{}/health", app.address))
        .send()
        .await;
    assert!(after.is_err(), "the listener is closed: {after:?}");
}

#[actix_web::test]
async fn after_the_tree_drains_new_sessions_are_refused() {
    let app = spawn_app().await;
    app.state.gateway.drain().await.unwrap();
    let response = app.send_as("alice", Method::POST, "/api/sessions").await;
    assert_eq!(response.headers()["retry-after"], "5");
    assert_error(response, 503, "draining", "The gateway is shutting down").await;
}

/// A one-node Python workflow, `name`, that sleeps `seconds`.
fn sleeping(name: &str, seconds: f64) -> serde_json::Value {
    serde_json::json!({"name": name, "nodes": [{"id": "nap", "type": "PythonCodeNode",
        "config": {"code": format!("import time\ntime.sleep({seconds})\nresult = {seconds}")}}]})
}

#[actix_web::test]
async fn a_drain_lets_runs_finish_within_its_deadline_and_records_the_rest_interrupted() {
    use kailash_actors::{Caller, events::EventFilter, execution::INTERRUPTED};

    let app = spawn_app_with(|s| s.execution_drain_seconds = 2.0).await;
    let (session, quick) = crate::executions::with_workflow(&app, sleeping("quick", 0.5)).await;
    let slow = json(
        app.post_json(
            "alice",
            &format!("/api/workflows?session_id={session}"),
            &sleeping("slow", 30.0),
        )
        .await,
    )
    .await["workflow_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let start = |workflow: String| {
        crate::executions::start(&app, &session, serde_json::json!({"workflow_id": workflow}))
    };
    let (quick_run, slow_run) = (start(quick.clone()).await, start(slow).await);
    for run in [&quick_run, &slow_run] {
        crate::executions::wait_until(&app, &session, run, |s| s["current_node"] == "nap").await;
    }

    let (state, server) = (app.state.clone(), app.server.clone());
    let began = std::time::Instant::now();
    let drained = actix_rt::spawn(async move {
        kailash_gateway::shutdown::drain(&state, &server, "test").await;
    });
    // New runs are refused while the running ones finish.
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let refused = app
        .post_json(
            "alice",
            &format!("/api/executions?session_id={session}"),
            &serde_json::json!({"workflow_id": quick}),
        )
        .await;
    assert_eq!(refused.status(), 503);
    tokio::time::timeout(Duration::from_secs(15), drained)
        .await
        .expect("the drain is bounded")
        .unwrap();
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "the slow run got its deadline: {took:?}"
    );

    let alice = Caller::authenticated("default", "alice");
    let session_id = session.parse().unwrap();
    let outcome = |run: &str| {
        app.state
            .gateway
            .execution(alice.clone(), session_id, run.parse().unwrap())
    };
    let quick = outcome(&quick_run).await.unwrap();
    assert_eq!(
        quick.status,
        kailash_actors::execution::ExecutionStatus::Completed
    );
    let slow = outcome(&slow_run).await.unwrap();
    assert_eq!(
        slow.status,
        kailash_actors::execution::ExecutionStatus::Failed
    );
    assert_eq!(slow.error.as_deref(), Some(INTERRUPTED));
    let terminal = app
        .state
        .gateway
        .recent_events(EventFilter::visible_to(&alice), 100)
        .await
        .unwrap();
    let failed: Vec<_> = terminal
        .iter()
        .filter(|event| event.json.contains(&slow_run) && event.json.contains("workflow.failed"))
        .collect();
    assert_eq!(failed.len(), 1, "clients hear of the interruption once");
}
