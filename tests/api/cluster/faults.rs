//! What a cluster does when a node or Redis fails: a killed node's executions are recorded
//! failed by a survivor, a cancel reaches the node running the execution, and a Redis
//! outage leaves every node serving alone (degraded) until it recovers by itself, with
//! `stream.gap` for the clients that missed events meanwhile.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::*;
use crate::realtime::{
    add_workflow,
    client::WsClient,
    run, session_with_workflow,
    sse::{data, open},
};

/// A session of alice with a workflow whose one Python node sleeps for a minute.
async fn session_with_slow_run(node: &Api) -> (String, String) {
    let session = node.create_session("alice").await;
    session_with_slow_run_in(node, &session).await
}

/// Such a run in alice's `session`.
async fn session_with_slow_run_in(node: &Api, session: &str) -> (String, String) {
    let session = session.to_owned();
    let definition = json!({"name": "slow", "nodes": [{"id": "py", "type": "PythonCodeNode",
        "config": {"code": "import time\ntime.sleep(60)\nresult = {'done': True}"}}]});
    let workflow = add_workflow(node, "alice", &session, &definition).await;
    let execution = run(node, "alice", &session, &workflow).await;
    (session, execution)
}

fn with_python(command: &mut std::process::Command) {
    command
        .env(
            "KAILASH_PYTHON_EXECUTABLE",
            std::env::var("KAILASH_TEST_PYTHON").unwrap_or_else(|_| "python3".into()),
        )
        .env("KAILASH_PYTHON_WORKERS", "1");
}

/// `DELETE /api/executions/{execution}` through `node`.
async fn cancel(node: &Api, session: &str, execution: &str) -> reqwest::Response {
    node.send_as(
        "alice",
        Method::DELETE,
        &format!("/api/executions/{execution}?session_id={session}"),
    )
    .await
}

/// The first event of type `event_type` the watcher receives (within 20 s each frame).
async fn first_event_of_type(watcher: &mut WsClient, event_type: &str) -> Value {
    loop {
        let frame = watcher
            .next_frame(Duration::from_secs(20))
            .await
            .expect("the stream stays open");
        if frame["type"] == "event" && frame["event"]["type"] == event_type {
            return frame["event"].clone();
        }
    }
}

async fn status(node: &Api, session: &str, execution: &str) -> Value {
    node.json_as(
        "alice",
        Method::GET,
        &format!("/api/executions/{execution}?session_id={session}"),
    )
    .await
}

#[actix_rt::test]
async fn a_cancel_sent_to_any_node_stops_the_run_where_it_runs() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start_with(2, with_python).await;
    let (session, execution) = session_with_slow_run(&cluster[0]).await;
    // The run's node decides who may cancel it, and what does not exist.
    let not_yours = cluster[1]
        .send_as(
            "bob",
            Method::DELETE,
            &format!("/api/executions/{execution}?session_id={session}"),
        )
        .await;
    assert_eq!(not_yours.status(), 404);
    let unknown = cancel(&cluster[1], &session, &uuid::Uuid::new_v4().to_string()).await;
    assert_error(unknown, 404, "execution_not_found", "Execution not found").await;
    assert_eq!(
        status(&cluster[0], &session, &execution).await["status"],
        "running"
    );

    assert_eq!(
        cancel(&cluster[1], &session, &execution).await.status(),
        200
    );
    assert!(
        eventually(SETTLE, async || status(&cluster[1], &session, &execution)
            .await["status"]
            == "cancelled")
        .await,
        "the run on the other node is cancelled"
    );

    // The same through a WebSocket connected to the other node.
    let (_, second) = session_with_slow_run_in(&cluster[0], &session).await;
    let mut socket =
        WsClient::connect(&cluster[1], "alice", &format!("session_id={session}")).await;
    let answer = socket
        .request(&json!({"type": "cancel_execution", "execution_id": second}))
        .await;
    assert_eq!(answer["type"], "execution_cancelled", "{answer}");
    assert!(
        eventually(SETTLE, async || status(&cluster[0], &session, &second)
            .await["status"]
            == "cancelled")
        .await
    );
}

#[actix_rt::test]
async fn a_killed_nodes_running_executions_are_failed_by_a_survivor_within_15_seconds() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let mut cluster = LocalCluster::start_with(2, with_python).await;
    let (session, execution) = session_with_slow_run(&cluster[0]).await;
    let mut watcher =
        WsClient::connect(&cluster[1], "alice", &format!("session_id={session}")).await;
    assert!(
        eventually(SETTLE, async || status(&cluster[1], &session, &execution)
            .await["node_states"]["py"]
            == "running")
        .await
    );

    let killed_at = std::time::Instant::now();
    cluster.nodes[0].kill();
    // No request touches the session: the survivor's sweep finds it.
    let failed = first_event_of_type(&mut watcher, "workflow.failed").await;
    assert!(
        killed_at.elapsed() < Duration::from_secs(15),
        "took {:?}",
        killed_at.elapsed()
    );
    assert_eq!(failed["execution_id"], execution.as_str());
    assert!(
        failed["error"].as_str().unwrap().contains("node"),
        "{failed}"
    );

    let now = status(&cluster[1], &session, &execution).await;
    assert_eq!(now["status"], "failed", "{now}");
    assert!(now["error"].as_str().unwrap().contains("lost"), "{now}");
}

/// A node stopped (SIGSTOP) until dropped, so a failing test leaves no frozen process.
struct Frozen<'a>(&'a Node);

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

#[actix_rt::test]
async fn a_node_cut_off_past_its_heartbeat_is_fenced_off_and_gives_its_session_up() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start_with(2, with_python).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let session = a.create_session("alice").await;
    // The Python worker is a process of its own: it finishes the first node while its
    // gateway is frozen, which then, thawed, goes on with the run it no longer owns.
    let definition = json!({"name": "two-steps", "nodes": [
        {"id": "first", "type": "PythonCodeNode",
         "config": {"code": "import time\ntime.sleep(3)\nresult = {'n': 1}"}},
        {"id": "second", "type": "PythonCodeNode", "config": {"code": "result = {'n': 2}"}}],
        "connections": [{"from_node": "first", "from_output": "result",
                         "to_node": "second", "to_input": "data"}]});
    let workflow = add_workflow(a, "alice", &session, &definition).await;
    let mut watcher = WsClient::connect(b, "alice", &format!("session_id={session}")).await;
    let execution = run(a, "alice", &session, &workflow).await;
    assert!(
        eventually(
            SETTLE,
            async || status(a, &session, &execution).await["node_states"]["first"] == "running"
        )
        .await
    );

    let frozen = Frozen(a);
    a.signal("STOP");
    let failed = first_event_of_type(&mut watcher, "workflow.failed").await;
    assert_eq!(failed["execution_id"], execution.as_str());
    drop(frozen);

    // Thawed, A finishes the run it no longer owns: none of it reaches a client...
    watcher.stay_idle(Duration::from_secs(5)).await;
    // ... or the store, and A stops serving the session (its requests go to B).
    assert!(
        eventually(
            SETTLE,
            async || status(a, &session, &execution).await["status"] == "failed"
        )
        .await,
        "A gave the session up"
    );
    let now = status(b, &session, &execution).await;
    assert_eq!(now["status"], "failed", "{now}");
    let db = crate::persistence::connect(cluster.database_url()).await;
    let node_runs = db
        .query_one(
            // On their own, or folded into the final update (V8).
            "SELECT (SELECT count(*) FROM node_runs WHERE execution_id = $1) \
             + COALESCE((SELECT json_array_length(node_runs) FROM executions \
             WHERE execution_id = $1), 0)",
            &[&execution.parse::<uuid::Uuid>().unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(
        node_runs.get::<_, i64>(0),
        0,
        "the node runs written under the old fencing token were refused"
    );
    // The session lives on at B.
    let again = run(a, "alice", &session, &workflow).await;
    assert!(
        eventually(SETTLE, async || status(b, &session, &again).await["status"]
            == "completed")
        .await
    );
}

/// The test Redis, stopped (SIGSTOP: its clients time out) until dropped, even when the
/// test fails, so the next test finds it running.
struct Paused(String);

impl Paused {
    fn redis() -> Self {
        let pid = redis_pid();
        let status = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        Self(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0])
            .status();
    }
}

fn redis_pid() -> String {
    let pidfile = std::env::var("KAILASH_TEST_REDIS_PIDFILE").expect("scripts/test.sh exports it");
    std::fs::read_to_string(pidfile)
        .expect("redis pidfile")
        .trim()
        .to_owned()
}

/// Stops the test Redis for `down`, then starts it again (empty: it keeps nothing on disk).
async fn restart_redis(down: Duration) {
    let pid = redis_pid();
    let status = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    actix_rt::time::sleep(down).await;
    let status = std::process::Command::new(
        std::env::var("KAILASH_TEST_REDIS_SERVER").expect("scripts/test.sh exports it"),
    )
    .arg(std::env::var("KAILASH_TEST_REDIS_CONF").expect("scripts/test.sh exports it"))
    .status()
    .unwrap();
    assert!(status.success(), "redis-server starts again");
}

async fn broker_status(node: &Api) -> Value {
    json(node.request(Method::GET, "/health").send().await.unwrap()).await
}

#[actix_rt::test]
async fn a_redis_outage_degrades_every_node_which_recover_and_tell_clients_of_the_gap() {
    let _redis = REDIS_FAULT.write().await;
    let _pg = PG_FAULT.read().await;
    let cluster = LocalCluster::start(2).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let (session, workflow) = session_with_workflow(a, "alice").await;
    let query = format!("session_id={session}");
    let mut on_b = WsClient::connect(b, "alice", &query).await;
    run(a, "alice", &session, &workflow).await;
    let before = on_b.events_until("workflow.completed").await;
    let last_seen = before.last().unwrap()["seq"].as_u64().unwrap();

    // Redis goes away: a run through its own node still works and is seen there.
    let paused = Paused::redis();
    assert!(
        eventually(SETTLE, async || broker_status(a).await["status"]
            == "degraded")
        .await,
        "the node reports degraded"
    );
    let health = broker_status(a).await;
    assert_eq!(
        health["components"]["broker"]["status"], "degraded",
        "{health}"
    );
    assert!(
        health["components"]["broker"]["error"].is_string(),
        "{health}"
    );
    let mut on_a = WsClient::connect(a, "alice", &query).await;
    let alone = run(a, "alice", &session, &workflow).await;
    let local = on_a.events_until("workflow.completed").await;
    assert_eq!(
        local[0]["execution_id"],
        alone.as_str(),
        "served alone: {local:#?}"
    );
    // B cannot find the session's node meanwhile: a clear, retryable refusal.
    let unlocated = b
        .send_as("alice", Method::GET, &format!("/api/sessions/{session}"))
        .await;
    assert!(unlocated.headers().contains_key("retry-after"));
    assert_error(
        unlocated,
        503,
        "unavailable",
        "The session's node cannot be found while Redis is unavailable; retry",
    )
    .await;
    drop(paused);
    // Then it restarts empty.
    restart_redis(Duration::from_millis(500)).await;
    for node in [a, b] {
        assert!(
            eventually(SETTLE, async || broker_status(node).await["status"]
                == "healthy")
            .await,
            "{} recovers by itself",
            node.node_id
        );
    }

    // The next run reaches B again, after a notice of what B missed.
    let after = run(a, "alice", &session, &workflow).await;
    let events = on_b.events_until("workflow.completed").await;
    assert_eq!(events[0]["type"], "stream.gap", "{events:#?}");
    assert_eq!(
        events[0]["metadata"]["from_seq"].as_u64(),
        Some(last_seen + 1)
    );
    assert_eq!(events[1]["type"], "workflow.started");
    assert_eq!(events[1]["execution_id"], after.as_str());
    assert_eq!(
        events[1]["seq"].as_u64().unwrap(),
        events[0]["metadata"]["to_seq"].as_u64().unwrap() + 1,
        "numbering continues after what was numbered alone"
    );

    // A client resuming on B from before the outage misses nothing: what A numbered alone
    // (and Redis, restarted empty, no longer has) comes from the database.
    let mut resumed = open(b, "alice", &query, Some(last_seen)).await;
    let mut replayed = data(&resumed.until("workflow.completed").await);
    replayed.extend(data(&resumed.until("workflow.completed").await));
    let seqs: Vec<u64> = replayed
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs[0], last_seen + 1, "{replayed:#?}");
    assert!(
        seqs.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "{seqs:?}"
    );
    assert_eq!(replayed[0]["execution_id"], alone.as_str());
    assert_eq!(replayed.last().unwrap()["execution_id"], after.as_str());
}

#[actix_rt::test]
async fn concurrent_executions_are_limited_across_the_cluster() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start_with(2, |command| {
        with_python(command);
        command.env("KAILASH_MAX_CONCURRENT_EXECUTIONS", "1");
    })
    .await;
    let (session, execution) = session_with_slow_run(&cluster[0]).await;
    // B's own session, B's own run: refused while A's run holds the cluster's one slot.
    let (other, workflow) = session_with_workflow(&cluster[1], "bob").await;
    let refused = cluster[1]
        .post_json(
            "bob",
            &format!("/api/executions?session_id={other}"),
            &json!({"workflow_id": workflow, "inputs": {"route": {"input_data": {"tier": "gold"}}}}),
        )
        .await;
    assert_eq!(refused.status(), 429);
    let body = json(refused).await;
    assert_eq!(body["code"], "too_many_executions", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("cluster"),
        "{body}"
    );

    // The slot comes back when the run ends.
    assert_eq!(
        cancel(&cluster[0], &session, &execution).await.status(),
        200
    );
    assert!(
        eventually(SETTLE, async || {
            cluster[1]
                .post_json(
                    "bob",
                    &format!("/api/executions?session_id={other}"),
                    &json!({"workflow_id": workflow, "inputs": {"route": {"input_data": {"tier": "gold"}}}}),
                )
                .await
                .status()
                == 200
        })
        .await
    );
}
