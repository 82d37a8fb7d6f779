//! `/ws`: the event stream, every client message and its errors, the handshake refusals,
//! heartbeats, slow consumers, oversized frames and shutdown.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{
    assert_one_complete_run,
    client::{Closed, WsClient},
    run, session_with_workflow,
};
use crate::helpers::*;

async fn wait_finished(app: &TestApp, user: &str, session: &str, execution: &str) {
    let path = format!("/api/executions/{execution}?session_id={session}");
    assert!(
        eventually(Duration::from_secs(10), async || {
            let state = app.json_as(user, Method::GET, &path).await;
            !["started", "running"].contains(&state["status"].as_str().unwrap_or("running"))
        })
        .await
    );
}

/// Sends a ping and returns every event frame that arrived before the pong.
async fn events_before_pong(ws: &mut WsClient) -> Vec<Value> {
    ws.send(&json!({"type": "ping"})).await;
    let mut events = Vec::new();
    loop {
        let frame = ws.next_json().await;
        match frame["type"].as_str() {
            Some("pong") => return events,
            Some("event") => events.push(frame["event"].clone()),
            other => panic!("unexpected frame {other:?}: {frame}"),
        }
    }
}

#[actix_web::test]
async fn a_websocket_sees_its_runs_events_in_order_and_nothing_else() {
    let app = spawn_app().await;
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let (bobs_session, bobs_workflow) = session_with_workflow(&app, "bob").await;
    let mut ws = WsClient::connect(&app, "alice", &format!("session_id={session}")).await;
    let mut all_of_alice = WsClient::connect(&app, "alice", "").await;

    let bobs_run = run(&app, "bob", &bobs_session, &bobs_workflow).await;
    let started = ws
        .request(&json!({"type": "execute_workflow", "workflow_id": workflow, "inputs": {"route": {"input_data": {"tier": "gold"}}}}))
        .await;
    assert_eq!(started["type"], "execution_started", "{started}");
    assert_eq!(started["session_id"], session.as_str());
    let execution = started["execution_id"].as_str().unwrap().to_owned();

    let events = ws.events_until("workflow.completed").await;
    assert_one_complete_run(&events, &execution);
    for event in &events {
        assert_eq!(event["session_id"], session.as_str());
        assert_eq!(event["user_id"], "alice");
        assert_eq!(event["workflow_name"], "route_and_merge");
    }
    let types: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"node.skipped") && types.contains(&"workflow.progress"));

    wait_finished(&app, "bob", &bobs_session, &bobs_run).await;
    assert!(
        events_before_pong(&mut ws).await.is_empty(),
        "nothing of bob's"
    );
    // The session-less connection saw the same run (and alice's session.created before it).
    let everything = all_of_alice.events_until("workflow.completed").await;
    assert!(everything.iter().all(|e| e["user_id"] == "alice"));
    assert_eq!(everything.len(), events.len());
}

#[actix_web::test]
async fn event_type_filters_narrow_the_stream_and_subscribe_events_changes_them() {
    let app = spawn_app().await;
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let mut ws = WsClient::connect(
        &app,
        "alice",
        &format!("session_id={session}&event_types=workflow.completed"),
    )
    .await;
    let execution = run(&app, "alice", &session, &workflow).await;
    let frame = ws.next_json().await;
    assert_eq!(frame["event"]["type"], "workflow.completed", "{frame}");
    assert_eq!(frame["event"]["execution_id"], execution.as_str());

    let subscribed = ws
        .request(&json!({"type": "subscribe_events", "session_id": session, "event_types": ["node.completed", "node.skipped"]}))
        .await;
    assert_eq!(
        subscribed,
        json!({"type": "subscribed", "session_id": session, "event_types": ["node.completed", "node.skipped"]})
    );
    let execution = run(&app, "alice", &session, &workflow).await;
    wait_finished(&app, "alice", &session, &execution).await;
    let events = events_before_pong(&mut ws).await;
    let types: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["node.completed", "node.skipped", "node.completed"]);
}

#[actix_web::test]
async fn the_handshake_is_refused_with_the_http_error() {
    let app = spawn_app().await;
    let session = app.create_session("alice").await;
    let (status, body) = WsClient::try_connect(&app, None, "").await.err().unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("missing_credentials"))
    );

    let token = Some(app.token_for("alice"));
    let (status, body) = WsClient::try_connect(&app, token.clone(), "event_types=node.bogus")
        .await
        .err()
        .unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_event_types"))
    );

    let bobs = Some(app.token_for("bob"));
    let theirs = WsClient::try_connect(&app, bobs.clone(), &format!("session_id={session}"))
        .await
        .err()
        .unwrap();
    let unknown =
        WsClient::try_connect(&app, bobs, &format!("session_id={}", uuid::Uuid::new_v4()))
            .await
            .err()
            .unwrap();
    assert_eq!(theirs.0, 404);
    assert_eq!(theirs.1["code"], "session_not_found");
    assert_eq!(
        theirs.1["detail"], unknown.1["detail"],
        "indistinguishable from unknown"
    );

    // Browsers pass the token in the query.
    let query = format!(
        "session_id={session}&access_token={}",
        app.token_for("alice")
    );
    let mut ws = WsClient::connect_with(&app, None, &query).await;
    assert_eq!(ws.request(&json!({"type": "ping"})).await["type"], "pong");
}

async fn assert_error_frame(ws: &mut WsClient, message: Value, code: &str) -> Value {
    let reply = ws.request(&message).await;
    assert_eq!(reply["type"], "error", "{message} -> {reply}");
    assert_eq!(reply["error"]["code"], code, "{message} -> {reply}");
    assert!(reply["error"]["detail"].is_string());
    reply
}

#[actix_web::test]
async fn every_client_message_works_and_bad_ones_get_error_frames() {
    let app = spawn_app_with(|s| s.ws_max_frame_bytes = 2048).await;
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let (bobs_session, bobs_workflow) = session_with_workflow(&app, "bob").await;
    let bobs_run = run(&app, "bob", &bobs_session, &bobs_workflow).await;
    let mut ws = WsClient::connect(&app, "alice", "").await;

    let pong = ws.request(&json!({"type": "ping"})).await;
    assert_eq!(pong["type"], "pong");
    assert!(pong["timestamp"].as_str().unwrap().ends_with('Z'));

    for raw in ["not json", "[1, 2]", "{}", r#"{"type": 7}"#] {
        ws.send_raw(raw).await;
        let reply = ws.next_json().await;
        assert_eq!(
            reply["error"]["code"], "invalid_message",
            "{raw} -> {reply}"
        );
    }
    let unknown = assert_error_frame(&mut ws, json!({"type": "teleport"}), "invalid_message").await;
    assert!(
        unknown["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("execute_workflow")
    );
    let missing = assert_error_frame(
        &mut ws,
        json!({"type": "execute_workflow", "session_id": session}),
        "invalid_message",
    )
    .await;
    assert!(
        missing["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("workflow_id")
    );
    assert_eq!(missing["request_type"], "execute_workflow");
    // No session in the message and none on the connection.
    assert_error_frame(
        &mut ws,
        json!({"type": "execute_workflow", "workflow_id": workflow}),
        "invalid_message",
    )
    .await;

    // Someone else's session or execution is refused like an unknown one.
    let theirs = json!({"type": "execute_workflow", "session_id": bobs_session, "workflow_id": bobs_workflow});
    assert_error_frame(&mut ws, theirs, "session_not_found").await;
    let theirs =
        json!({"type": "get_status", "session_id": bobs_session, "execution_id": bobs_run});
    assert_error_frame(&mut ws, theirs, "session_not_found").await;
    let theirs =
        json!({"type": "cancel_execution", "session_id": bobs_session, "execution_id": bobs_run});
    assert_error_frame(&mut ws, theirs, "session_not_found").await;
    let theirs = json!({"type": "subscribe_events", "session_id": bobs_session});
    assert_error_frame(&mut ws, theirs, "session_not_found").await;
    let unknown =
        json!({"type": "get_status", "session_id": session, "execution_id": uuid::Uuid::new_v4()});
    assert_error_frame(&mut ws, unknown, "execution_not_found").await;
    let bad_types = json!({"type": "subscribe_events", "event_types": "node.nope"});
    assert_error_frame(&mut ws, bad_types, "invalid_event_types").await;
    let no_workflow =
        json!({"type": "execute_workflow", "session_id": session, "workflow_id": "nope"});
    assert_error_frame(&mut ws, no_workflow, "workflow_not_found").await;

    let started = ws
        .request(
            &json!({"type": "execute_workflow", "session_id": session, "workflow_id": workflow}),
        )
        .await;
    let execution = started["execution_id"].as_str().unwrap().to_owned();
    wait_finished(&app, "alice", &session, &execution).await;
    let status = ws
        .request(&json!({"type": "get_status", "session_id": session, "execution_id": execution}))
        .await;
    assert_eq!(status["type"], "status_update");
    assert_eq!(status["status"]["execution_id"], execution.as_str());
    assert!(status["status"]["node_states"].is_object());
    let finished =
        json!({"type": "cancel_execution", "session_id": session, "execution_id": execution});
    assert_error_frame(&mut ws, finished, "execution_not_running").await;

    // Still open after all of that; then an oversized frame closes it with 1009.
    assert_eq!(ws.request(&json!({"type": "ping"})).await["type"], "pong");
    ws.send_raw(&format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(4096)
    ))
    .await;
    match ws.closed().await {
        Closed::Frame(code, _) => assert_eq!(code, CloseCode::Size),
        other => panic!("expected a 1009 close, got {other:?}"),
    }
}

#[actix_web::test]
async fn cancel_over_websocket_stops_a_run() {
    let app = spawn_app_with(|s| s.egress_allow = vec!["127.0.0.1".into()]).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let session = app.create_session("alice").await;
    let created = app
        .post_json(
            "alice",
            &format!("/api/workflows?session_id={session}"),
            &json!({"name": "hangs", "nodes": [{"id": "call", "type": "HTTPRequestNode", "config": {"url": format!("http://127.0.0.1:{port}/"), "timeout": 60}}]}),
        )
        .await;
    let workflow = json(created).await["workflow_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ws = WsClient::connect(&app, "alice", &format!("session_id={session}")).await;
    let started = ws
        .request(&json!({"type": "execute_workflow", "workflow_id": workflow}))
        .await;
    let execution = started["execution_id"].as_str().unwrap().to_owned();
    ws.events_until("node.started").await;
    let cancelled = ws
        .request(&json!({"type": "cancel_execution", "execution_id": execution}))
        .await;
    assert_eq!(
        cancelled,
        json!({"type": "execution_cancelled", "execution_id": execution})
    );
    let events = ws.events_until("workflow.cancelled").await;
    assert_eq!(events.last().unwrap()["execution_id"], execution.as_str());
    drop(listener);
}

#[actix_web::test]
async fn a_slow_consumer_is_closed_while_a_fast_one_keeps_receiving() {
    let app = spawn_app_with(|s| {
        s.subscriber_queue_len = 8;
        s.max_body_bytes = 4 * 1024 * 1024;
    })
    .await;
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let query = format!("session_id={session}");
    let mut slow = WsClient::connect(&app, "alice", &query).await;
    let mut fast = WsClient::connect(&app, "alice", &query).await;

    // Big events fill the slow client's socket buffers, then its queue.
    let blob = "x".repeat(256 * 1024);
    const RUNS: usize = 40;
    for _ in 0..RUNS {
        let started = app
            .post_json(
                "alice",
                &format!("/api/executions?session_id={session}"),
                &json!({"workflow_id": workflow, "inputs": {"route": {"input_data": {"tier": "gold", "blob": blob}}}}),
            )
            .await;
        assert_eq!(started.status(), 200);
        let events = fast.events_until("workflow.completed").await;
        assert_eq!(events[0]["type"], "workflow.started");
    }

    let mut completed = 0;
    let closed = loop {
        match slow.next_frame(Duration::from_secs(10)).await {
            Ok(frame) => {
                if frame["event"]["type"] == "workflow.completed" {
                    completed += 1;
                }
            }
            Err(closed) => break closed,
        }
    };
    assert!(
        completed < RUNS,
        "the slow client was cut off before the end"
    );
    match closed {
        Closed::Frame(code, reason) => {
            assert_eq!(code, CloseCode::Again);
            assert!(reason.contains("too slow"), "{reason}");
        }
        other => panic!("expected a 1013 close, got {other:?}"),
    }
    let metrics = app.request(Method::GET, "/metrics").send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains(r#"kailash_slow_consumers_closed_total{transport="websocket"} 1"#));
    // The fast client is still served.
    assert_eq!(fast.request(&json!({"type": "ping"})).await["type"], "pong");
}

#[actix_web::test]
async fn a_silent_client_is_closed_and_a_listening_one_is_not() {
    let app = spawn_app_with(|s| {
        s.ws_ping_seconds = 0.2;
        s.ws_client_timeout_seconds = 0.8;
    })
    .await;
    let mut silent = WsClient::connect(&app, "alice", "").await;
    let mut listening = WsClient::connect(&app, "alice", "").await;
    // Reading answers the server's pings (tungstenite replies on its own).
    listening.stay_idle(Duration::from_millis(1500)).await;
    let metrics = app.request(Method::GET, "/metrics").send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(r#"kailash_realtime_connections{transport="websocket"} 1"#),
        "only the listening client is still connected"
    );
    // The close frame, unless the silent client's late pong replies made the closed
    // socket reset the connection before it could read it.
    match silent.closed().await {
        Closed::Frame(code, reason) => {
            assert_eq!(code, CloseCode::Normal);
            assert!(reason.contains("no message or pong"), "{reason}");
        }
        Closed::Eof => {}
    }
    assert_eq!(
        listening.request(&json!({"type": "ping"})).await["type"],
        "pong"
    );
}

#[actix_web::test]
async fn shutdown_closes_websockets_with_going_away() {
    let app = spawn_app().await;
    let mut ws = WsClient::connect(&app, "alice", "").await;
    app.state.lifecycle.close_streams();
    match ws.closed().await {
        Closed::Frame(code, reason) => {
            assert_eq!(code, CloseCode::Away);
            assert_eq!(
                reason,
                "going_away: the node is shutting down; reconnect with last_seq"
            );
        }
        other => panic!("expected 1001, got {other:?}"),
    }
}

#[actix_web::test]
async fn a_websocket_reconnecting_with_last_seq_gets_what_it_missed_then_the_live_stream() {
    let app = spawn_app().await;
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let follow = format!("session_id={session}");
    let mut first = WsClient::connect(&app, "alice", &follow).await;
    let execution = run(&app, "alice", &session, &workflow).await;
    let seen = first.events_until("workflow.completed").await;
    assert_one_complete_run(&seen, &execution);
    let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let resume_from = seqs[1];

    let mut resumed =
        WsClient::connect(&app, "alice", &format!("{follow}&last_seq={resume_from}")).await;
    let missed = resumed.events_until("workflow.completed").await;
    let missed_seqs: Vec<u64> = missed.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        missed_seqs,
        seqs[2..],
        "every event after last_seq, once, in order"
    );

    let next = run(&app, "alice", &session, &workflow).await;
    let live = resumed.events_until("workflow.completed").await;
    assert_one_complete_run(&live, &next);
    assert_eq!(live[0]["seq"].as_u64().unwrap(), seqs.last().unwrap() + 1);
}
