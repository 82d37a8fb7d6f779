//! `/events`: the stream, its filters, `Last-Event-ID` resume, `stream.gap`, heartbeats,
//! refusals and shutdown.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::{assert_one_complete_run, client::SseReader, run, session_with_workflow};
use crate::helpers::*;

pub async fn open(app: &Api, user: &str, query: &str, last_event_id: Option<u64>) -> SseReader {
    let mut request = app.as_user(user, Method::GET, &format!("/events?{query}"));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    SseReader::new(request.send().await.unwrap())
}

pub fn data(messages: &[super::client::SseMessage]) -> Vec<Value> {
    messages.iter().map(|m| m.data.clone().unwrap()).collect()
}

#[actix_web::test]
async fn sse_streams_a_runs_events_with_ids_and_types_and_nothing_of_others() {
    let app = spawn_app().await;
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let (bobs_session, bobs_workflow) = session_with_workflow(&app, "bob").await;
    let mut stream = open(&app, "alice", &format!("session_id={session}"), None).await;
    let mut completed_only = open(&app, "alice", "event_types=workflow.completed", None).await;

    run(&app, "bob", &bobs_session, &bobs_workflow).await;
    let execution = run(&app, "alice", &session, &workflow).await;
    let messages = stream.until("workflow.completed").await;
    for message in &messages {
        let event = message.data.as_ref().unwrap();
        assert_eq!(
            message.id.as_deref(),
            Some(event["seq"].to_string().as_str())
        );
        assert_eq!(message.event.as_deref(), event["type"].as_str());
        assert_eq!(event["session_id"], session.as_str());
    }
    assert_one_complete_run(&data(&messages), &execution);

    let only = completed_only.next().await.unwrap();
    let event = only.data.unwrap();
    assert_eq!(event["type"], "workflow.completed");
    assert_eq!(event["user_id"], "alice", "bob's completion is not visible");
}

#[actix_web::test]
async fn last_event_id_resumes_with_exactly_the_missed_events_then_live_ones() {
    let app = spawn_app().await;
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let query = format!("session_id={session}");
    let mut first = open(&app, "alice", &query, None).await;
    run(&app, "alice", &session, &workflow).await;
    let seen = first.until("workflow.completed").await;
    let last: u64 = seen.last().unwrap().id.as_ref().unwrap().parse().unwrap();
    drop(first);

    // Missed while disconnected.
    let missed = run(&app, "alice", &session, &workflow).await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            let state = app
                .json_as(
                    "alice",
                    Method::GET,
                    &format!("/api/executions/{missed}?session_id={session}"),
                )
                .await;
            state["status"] == "completed"
        })
        .await
    );
    let mut resumed = open(&app, "alice", &query, Some(last)).await;
    let replayed = resumed.until("workflow.completed").await;
    assert_eq!(
        replayed[0].id.as_deref(),
        Some((last + 1).to_string().as_str())
    );
    assert_one_complete_run(&data(&replayed), &missed);

    // Then the live stream, continuing the same numbering.
    let live = run(&app, "alice", &session, &workflow).await;
    let after = resumed.until("workflow.completed").await;
    let replayed_last: u64 = replayed
        .last()
        .unwrap()
        .id
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        after[0].id.as_deref(),
        Some((replayed_last + 1).to_string().as_str())
    );
    assert_one_complete_run(&data(&after), &live);
}

#[actix_web::test]
async fn a_resume_older_than_retention_starts_with_stream_gap() {
    let app = spawn_app_with(|s| s.event_history_len = 3).await;
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let query = format!("session_id={session}");
    let mut live = open(&app, "alice", &query, None).await;
    run(&app, "alice", &session, &workflow).await;
    let all = live.until("workflow.completed").await;
    let newest: u64 = all.last().unwrap().id.as_ref().unwrap().parse().unwrap();

    let mut resumed = open(&app, "alice", &query, Some(1)).await;
    let gap = resumed.next().await.unwrap();
    assert_eq!(gap.event.as_deref(), Some("stream.gap"));
    let gap = gap.data.unwrap();
    assert_eq!(gap["metadata"]["from_seq"], 2);
    assert_eq!(gap["metadata"]["to_seq"], newest - 3);
    let kept: Vec<u64> = [
        resumed.next().await.unwrap(),
        resumed.next().await.unwrap(),
        resumed.next().await.unwrap(),
    ]
    .iter()
    .map(|m| m.id.as_ref().unwrap().parse().unwrap())
    .collect();
    assert_eq!(kept, vec![newest - 2, newest - 1, newest]);
}

#[actix_web::test]
async fn idle_streams_get_heartbeats_and_shutdown_ends_them() {
    let app = spawn_app_with(|s| s.sse_heartbeat_seconds = 0.2).await;
    let mut response = app.send_as("alice", Method::GET, "/events").await;
    assert_eq!(response.headers().get("cache-control").unwrap(), "no-cache");
    let mut text = String::new();
    while !text.contains(": heartbeat") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .expect("a heartbeat in time")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(text.starts_with("retry: "));

    let mut stream = SseReader::new(app.send_as("alice", Method::GET, "/events").await);
    app.state.lifecycle.close_streams();
    let closed = stream.next().await.unwrap();
    assert_eq!(closed.event.as_deref(), Some("stream.closed"));
    assert_eq!(closed.data.unwrap()["reason"], "going_away");
    assert!(stream.next().await.is_none(), "the stream ends");
}

#[actix_web::test]
async fn sse_refusals_are_json_errors() {
    let app = spawn_app().await;
    let session = app.create_session("alice").await;
    let theirs = app
        .send_as("bob", Method::GET, &format!("/events?session_id={session}"))
        .await;
    assert_error(theirs, 404, "session_not_found", "Session not found").await;
    let bad_id = app
        .as_user(
            "alice",
            Method::GET,
            &format!("/events?session_id={session}"),
        )
        .header("Last-Event-ID", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), 400);
    let bad_types = app
        .send_as("alice", Method::GET, "/events?event_types=x.y")
        .await;
    assert_eq!(json(bad_types).await["code"], "invalid_event_types");
    let anonymous = app.request(Method::GET, "/events").send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let query_token = app
        .request(
            Method::GET,
            &format!("/events?access_token={}", app.token_for("alice")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(query_token.status(), 200);
}
