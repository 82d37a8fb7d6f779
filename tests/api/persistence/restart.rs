//! A gateway stopped and started again on the same database finds everything it had
//! acknowledged; concurrent runs on one session keep one consistent event order.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::{
    PG_FAULT, connect, fresh_database, run_to_end, session_with_workflow, spawn_on, start_run, stop,
};
use crate::helpers::*;

/// The SSE events of `session` after `last_event_id`, up to and including `last_type`.
async fn resume(app: &TestApp, session: &str, last_event_id: u64, last_type: &str) -> Vec<Value> {
    let response = app
        .as_user(
            "alice",
            Method::GET,
            &format!("/events?session_id={session}"),
        )
        .header("Last-Event-ID", last_event_id.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut response = response;
    let mut text = String::new();
    let mut events = Vec::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("SSE data in time")
            .unwrap()
            .expect("stream open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                let event: Value = serde_json::from_str(data).unwrap();
                let done = event["type"] == last_type;
                events.push(event);
                if done {
                    return events;
                }
            }
        }
    }
}

#[actix_web::test]
async fn a_restart_keeps_sessions_workflow_versions_executions_and_resumable_history() {
    let _server_up = PG_FAULT.read().await;
    let url = fresh_database().await;
    let first = spawn_on(&url, |_| {}).await;
    let (session, workflow) = session_with_workflow(&first, "alice").await;
    // A second POST of the same id is version 2.
    let mut second_version = route_and_merge();
    second_version["workflow_id"] = json!(workflow);
    second_version["name"] = json!("route_and_merge v2");
    let updated = first
        .post_json(
            "alice",
            &format!("/api/workflows?session_id={session}"),
            &second_version,
        )
        .await;
    assert_eq!(json(updated).await["version"], 2);
    let execution = run_to_end(&first, "alice", &session, &workflow).await;
    let before = first
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/executions/{execution}?session_id={session}"),
        )
        .await;
    let bobs = first.create_session("bob").await;
    stop(&first).await;

    let second = spawn_on(&url, |_| {}).await;
    let detail = second
        .json_as("alice", Method::GET, &format!("/api/sessions/{session}"))
        .await;
    assert_eq!(detail["session_id"], session.as_str());
    assert_eq!(detail["workflows"], json!([workflow]));
    let listed = second.json_as("alice", Method::GET, "/api/sessions").await;
    assert_eq!(
        listed["total"], 1,
        "alice still sees only her session: {listed}"
    );
    assert_eq!(
        second
            .send_as("bob", Method::GET, &format!("/api/sessions/{bobs}"))
            .await
            .status(),
        200
    );

    let workflows = second
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/workflows?session_id={session}"),
        )
        .await;
    let own = workflows["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["workflow_id"] == workflow.as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        own["name"], "route_and_merge v2",
        "the newest version: {own}"
    );
    let versions: i64 = connect(&url)
        .await
        .query_one("SELECT count(*) FROM workflow_versions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 2, "each update is a stored version");

    let after = second
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/executions/{execution}?session_id={session}"),
        )
        .await;
    for field in [
        "status",
        "outputs",
        "node_states",
        "workflow_id",
        "progress",
        "error",
    ] {
        assert_eq!(after[field], before[field], "{field}");
    }
    let runs = second
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/executions?session_id={session}"),
        )
        .await;
    assert_eq!(runs["total"], 1);

    // The stored history resumes: from the first event on, everything up to the completion.
    let replayed = resume(&second, &session, 1, "workflow.completed").await;
    assert_eq!(
        replayed[0]["seq"], 2,
        "resumed right after the client's last event"
    );
    let seqs: Vec<u64> = replayed
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(replayed.last().unwrap()["execution_id"], execution.as_str());

    // The stream continues where it was: a new run's events follow on.
    let last_seq = *seqs.last().unwrap();
    run_to_end(&second, "alice", &session, &workflow).await;
    let next = resume(&second, &session, last_seq, "workflow.started").await;
    assert_eq!(next[0]["seq"], last_seq + 1);
}

#[actix_web::test]
async fn concurrent_runs_on_one_session_are_stored_in_one_gapless_order() {
    let _server_up = PG_FAULT.read().await;
    let url = fresh_database().await;
    let app = spawn_on(&url, |_| {}).await;
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let body =
        json!({"workflow_id": workflow, "inputs": {"route": {"input_data": {"tier": "gold"}}}});
    let starts = (0..20).map(|_| start_run(&app, "alice", &session, body.clone()));
    let executions = futures_util::future::join_all(starts).await;
    assert!(
        eventually(Duration::from_secs(15), async || {
            app.json_as("alice", Method::GET, "/api/stats").await["agent_ui"]["active_executions"]
                == 0
        })
        .await
    );
    app.state.gateway.flush().await;

    let db = connect(&url).await;
    let rows = db
        .query(
            "SELECT seq, payload FROM events WHERE session_id = $1::text::uuid ORDER BY seq",
            &[&session],
        )
        .await
        .unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    for execution in &executions {
        let types: Vec<String> = rows
            .iter()
            .map(|r| serde_json::from_str::<Value>(r.get(1)).unwrap())
            .filter(|e| e["execution_id"] == execution.as_str())
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            types.first().map(String::as_str),
            Some("workflow.started"),
            "{types:?}"
        );
        assert_eq!(
            types.last().map(String::as_str),
            Some("workflow.completed"),
            "{types:?}"
        );
    }
    let finished: i64 = db
        .query_one(
            "SELECT count(*) FROM executions WHERE status = 'completed' AND completed_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(finished, 20);
    let node_runs: i64 = db
        // Written on their own, or folded into their execution's final update (V8).
        .query_one(
            "SELECT (SELECT count(*) FROM node_runs) \
             + (SELECT COALESCE(sum(json_array_length(node_runs)), 0) FROM executions)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        node_runs,
        20 * 3,
        "every node of every run (one branch skipped)"
    );
}
