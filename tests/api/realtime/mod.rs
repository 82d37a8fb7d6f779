//! Real-time delivery end to end over real sockets: WebSocket (`/ws`), SSE (`/events`),
//! rooms and webhooks.

pub mod client;
mod rooms;
pub mod sse;
pub mod webhooks;
mod websocket;

use serde_json::{Value, json};

use crate::helpers::*;

/// A session of `user` holding the native Switch → Merge workflow; (session, workflow).
pub async fn session_with_workflow(app: &Api, user: &str) -> (String, String) {
    let session = app.create_session(user).await;
    let workflow = add_workflow(app, user, &session, &route_and_merge()).await;
    (session, workflow)
}

/// Adds `definition` to `user`'s session; returns the workflow id.
pub async fn add_workflow(app: &Api, user: &str, session: &str, definition: &Value) -> String {
    let created = app
        .post_json(
            user,
            &format!("/api/workflows?session_id={session}"),
            definition,
        )
        .await;
    assert_eq!(created.status(), 200);
    json(created).await["workflow_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Starts a run of `workflow` over HTTP; returns the execution id.
pub async fn run(app: &Api, user: &str, session: &str, workflow: &str) -> String {
    let started = app
        .post_json(
            user,
            &format!("/api/executions?session_id={session}"),
            &json!({"workflow_id": workflow, "inputs": {"route": {"input_data": {"tier": "gold"}}}}),
        )
        .await;
    assert_eq!(started.status(), 200);
    json(started).await["execution_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The events of one run, as a client must see them: `workflow.started` first, one terminal
/// event last, and `seq` rising by one each time.
pub fn assert_one_complete_run(events: &[Value], execution: &str) {
    assert_eq!(events[0]["type"], "workflow.started", "{events:#?}");
    assert_eq!(events.last().unwrap()["type"], "workflow.completed");
    for pair in events.windows(2) {
        assert_eq!(
            pair[1]["seq"].as_u64().unwrap(),
            pair[0]["seq"].as_u64().unwrap() + 1,
            "seq order without gaps"
        );
    }
    for event in events {
        assert_eq!(event["execution_id"], execution);
    }
    let terminal = events
        .iter()
        .filter(|e| {
            [
                "workflow.completed",
                "workflow.failed",
                "workflow.cancelled",
            ]
            .contains(&e["type"].as_str().unwrap())
        })
        .count();
    assert_eq!(terminal, 1);
}
