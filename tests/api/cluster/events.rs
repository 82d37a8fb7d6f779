//! Events reach every node: a client on any node sees a session's events in `seq` order,
//! exactly once, and resumes on any node.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::realtime::{
    assert_one_complete_run,
    client::WsClient,
    run, session_with_workflow,
    sse::{data, open},
};

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[actix_rt::test]
async fn a_client_on_one_node_sees_every_event_of_a_run_started_through_another() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start(3).await;
    let (a, b, c) = (&cluster[0], &cluster[1], &cluster[2]);
    let (session, workflow) = session_with_workflow(a, "alice").await;
    let query = format!("session_id={session}");
    let mut on_c = WsClient::connect(c, "alice", &query).await;
    let mut on_b = open(b, "alice", &query, None).await;

    // Started through B (served by A, the session's owner), watched from C and B.
    let first = run(b, "alice", &session, &workflow).await;
    let second = run(c, "alice", &session, &workflow).await;
    let ws_events = on_c.events_until("workflow.completed").await;
    assert_one_complete_run(&ws_events, &first);
    let more = on_c.events_until("workflow.completed").await;
    assert_one_complete_run(&more, &second);
    let sse_events = data(&on_b.until("workflow.completed").await);
    assert_eq!(
        sse_events, ws_events,
        "the same events, in the same order, on both nodes"
    );
    let all: Vec<u64> = seqs(&ws_events).into_iter().chain(seqs(&more)).collect();
    assert!(
        all.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "one seq order across both runs, no repeats: {all:?}"
    );
}

#[actix_rt::test]
async fn an_sse_client_resumes_on_another_node_after_its_node_is_killed() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let mut cluster = LocalCluster::start(2).await;
    let (session, workflow) = session_with_workflow(&cluster[0], "alice").await;
    let query = format!("session_id={session}");
    let mut stream = open(&cluster[1], "alice", &query, None).await;
    run(&cluster[0], "alice", &session, &workflow).await;
    let seen = stream.until("workflow.completed").await;
    let last: u64 = seen.last().unwrap().id.as_ref().unwrap().parse().unwrap();

    // The client's node dies; what happens next is published while the client is away.
    cluster.nodes[1].kill();
    drop(stream);
    let missed = run(&cluster[0], "alice", &session, &workflow).await;

    // It reconnects through a node that started after all of it: only Redis has the history.
    let fresh = cluster.start_node(|_| {});
    let mut resumed = open(&fresh, "alice", &query, Some(last)).await;
    let events = data(&resumed.until("workflow.completed").await);
    assert_eq!(events[0]["seq"].as_u64(), Some(last + 1), "{events:#?}");
    assert_one_complete_run(&events, &missed);
}

#[actix_rt::test]
async fn a_webhook_registered_on_one_node_gets_each_event_once_from_the_node_that_published_it() {
    use crate::realtime::webhooks::Receiver;
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start_with(2, |command| {
        command.env("KAILASH_EGRESS_ALLOW", "127.0.0.1");
    })
    .await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let receiver = Receiver::start(Some(0));
    let (session, workflow) = session_with_workflow(a, "alice").await;
    let registered = b
        .post_json(
            "alice",
            "/api/webhooks",
            &serde_json::json!({"url": receiver.url, "session_id": session,
                "event_types": ["workflow.completed"]}),
        )
        .await;
    assert_eq!(registered.status(), 200);
    // The session's node (A) picks the registration up at its next sync.
    actix_rt::time::sleep(Duration::from_secs(3)).await;

    let mut executions = Vec::new();
    for _ in 0..3 {
        executions.push(run(b, "alice", &session, &workflow).await);
    }
    assert!(eventually(SETTLE, async || receiver.requests().len() >= 3).await);
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let delivered: Vec<String> = receiver.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(
        delivered.len(),
        3,
        "once each, not once per node: {delivered:#?}"
    );
    for execution in &executions {
        assert!(
            delivered
                .iter()
                .any(|body| body.contains(execution.as_str())),
            "{execution} delivered: {delivered:#?}"
        );
    }
}

#[actix_rt::test]
async fn websocket_messages_for_a_session_on_another_node_are_served_there() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start(2).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let (session, workflow) = session_with_workflow(a, "alice").await;
    let mut on_b = WsClient::connect(b, "alice", &format!("session_id={session}")).await;

    let started = on_b
        .request(
            &serde_json::json!({"type": "execute_workflow", "session_id": session,
            "workflow_id": workflow, "inputs": {"route": {"input_data": {"tier": "gold"}}}}),
        )
        .await;
    assert_eq!(started["type"], "execution_started", "{started}");
    let execution = started["execution_id"].as_str().unwrap().to_owned();
    let events = on_b.events_until("workflow.completed").await;
    assert_one_complete_run(&events, &execution);

    let status = on_b
        .request(
            &serde_json::json!({"type": "get_status", "session_id": session,
            "execution_id": execution}),
        )
        .await;
    assert_eq!(status["type"], "status_update", "{status}");
    assert_eq!(status["status"]["status"], "completed", "{status}");

    // The owner's refusal comes back as this connection's error.
    let refused = on_b
        .request(
            &serde_json::json!({"type": "cancel_execution", "session_id": session,
            "execution_id": execution}),
        )
        .await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["error"]["code"], "execution_not_running",
        "{refused}"
    );
}
