//! The rolling restart (issue #10) on `deploy/local-cluster.sh`'s three nodes behind nginx:
//! while a WebSocket and an SSE client follow a session through nginx and runs of a
//! sleeping workflow keep starting, each node in turn is sent SIGTERM, drains and is
//! started again (`local-cluster.sh restart --node N`). Every client must be cut off and
//! reconnect, resuming by `seq` (`last_seq`, `Last-Event-ID`), and end up with every event
//! of the session exactly once, in order; no run may be left `running` in the store.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};

use super::script::{ScriptCluster, succeeded};
use crate::{helpers::*, realtime::add_workflow};

/// What a follower received: each event's `seq` and JSON, in arrival order, and how many
/// times it connected.
#[derive(Default)]
struct Followed {
    events: Vec<(u64, Value)>,
    connections: usize,
}

impl Followed {
    fn last_seq(&self) -> Option<u64> {
        self.events.last().map(|(seq, _)| *seq)
    }
}

/// Follows `session` over WebSocket through `api` until `stop`, reconnecting with
/// `last_seq` whenever the connection ends.
async fn follow_ws(api: Rc<Api>, session: String, stop: Rc<Cell<bool>>) -> Followed {
    let mut followed = Followed::default();
    while !stop.get() {
        let mut query = format!("session_id={session}");
        if let Some(seq) = followed.last_seq() {
            query.push_str(&format!("&last_seq={seq}"));
        }
        let url = format!(
            "{}/ws?{query}&access_token={}",
            api.address.replacen("http", "ws", 1),
            api.token_for("alice")
        );
        let Ok((mut socket, _)) = connect_async(url.as_str()).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        followed.connections += 1;
        while !stop.get() {
            let message =
                match tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
                    Err(_quiet) => continue,
                    Ok(Some(Ok(message))) => message,
                    // Closed (1001 from a draining node) or cut: reconnect.
                    Ok(_) => break,
                };
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "event" {
                    let event = frame["event"].clone();
                    followed
                        .events
                        .push((event["seq"].as_u64().unwrap(), event));
                }
            }
        }
    }
    followed
}

/// Follows `session` over SSE through `api` until `stop`, reconnecting with
/// `Last-Event-ID` whenever the stream ends.
async fn follow_sse(api: Rc<Api>, session: String, stop: Rc<Cell<bool>>) -> Followed {
    let mut followed = Followed::default();
    while !stop.get() {
        let mut request = api.as_user(
            "alice",
            Method::GET,
            &format!("/events?session_id={session}"),
        );
        if let Some(seq) = followed.last_seq() {
            request = request.header("Last-Event-ID", seq.to_string());
        }
        let mut response = match request.send().await {
            Ok(response) if response.status() == 200 => response,
            _ => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        followed.connections += 1;
        let mut buffer = String::new();
        while !stop.get() {
            let chunk =
                match tokio::time::timeout(Duration::from_millis(500), response.chunk()).await {
                    Err(_quiet) => continue,
                    Ok(Ok(Some(chunk))) => chunk,
                    // The stream ended (after `stream.closed` from a draining node) or was cut.
                    Ok(_) => break,
                };
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let data = block.lines().find_map(|line| line.strip_prefix("data: "));
                let id = block.lines().find_map(|line| line.strip_prefix("id: "));
                if let (Some(id), Some(data)) = (id, data) {
                    followed
                        .events
                        .push((id.parse().unwrap(), serde_json::from_str(data).unwrap()));
                }
            }
        }
    }
    followed
}

/// Starts runs of `workflow` through `api`, one every 600 ms, until `stop` (retrying while
/// the session's node drains or the session moves); answers their ids.
async fn keep_running(
    api: Rc<Api>,
    session: String,
    workflow: String,
    stop: Rc<Cell<bool>>,
    started: Rc<RefCell<Vec<String>>>,
) {
    while !stop.get() {
        let answer = api
            .post_json(
                "alice",
                &format!("/api/executions?session_id={session}"),
                &json!({"workflow_id": workflow}),
            )
            .await;
        if answer.status() == 200 {
            let id = json(answer).await["execution_id"]
                .as_str()
                .unwrap()
                .to_owned();
            started.borrow_mut().push(id);
            tokio::time::sleep(Duration::from_millis(600)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Asserts `followed` holds one gap-free run of `seq`s (each once, in order) that covers
/// a terminal event of every run in `runs`.
fn assert_complete(transport: &str, followed: &Followed, runs: &[String]) {
    let seqs: Vec<u64> = followed.events.iter().map(|(seq, _)| *seq).collect();
    for pair in seqs.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "{transport}: a gap or a repeat at {pair:?}"
        );
    }
    for (_, event) in &followed.events {
        assert_ne!(event["type"], "stream.gap", "{transport}: {event}");
    }
    for run in runs {
        let terminal: Vec<_> = followed
            .events
            .iter()
            .filter(|(_, event)| {
                event["execution_id"] == run.as_str()
                    && ["workflow.completed", "workflow.failed"]
                        .contains(&event["type"].as_str().unwrap_or(""))
            })
            .collect();
        assert_eq!(
            terminal.len(),
            1,
            "{transport}: run {run} ended once: {terminal:?}"
        );
    }
}

#[actix_rt::test]
async fn a_rolling_restart_under_live_clients_and_running_executions_loses_nothing() {
    let began = Instant::now();
    let python = std::env::var("KAILASH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let cluster = ScriptCluster::up(&[
        ("KAILASH_PYTHON_EXECUTABLE", python.as_str()),
        ("KAILASH_DRAIN_DELAY_SECONDS", "0.5"),
        ("KAILASH_EXECUTION_DRAIN_SECONDS", "2"),
        ("KAILASH_SHUTDOWN_TIMEOUT_SECONDS", "5"),
        ("KAILASH_SSE_HEARTBEAT_SECONDS", "1"),
        ("KAILASH_WORKERS", "1"),
        ("KAILASH_PYTHON_WORKERS", "2"),
    ]);
    let api = Rc::new(cluster.balancer());
    let session = api.create_session("alice").await;
    // 1.5 s a run: most finish within a drain, some straddle it.
    let sleeps = json!({"name": "sleeps", "nodes": [{"id": "nap", "type": "PythonCodeNode",
        "config": {"code": "import time\ntime.sleep(1.5)\nresult = 1"}}]});
    let workflow = add_workflow(&api, "alice", &session, &sleeps).await;

    let stop = Rc::new(Cell::new(false));
    let ws = actix_rt::spawn(follow_ws(api.clone(), session.clone(), stop.clone()));
    let sse = actix_rt::spawn(follow_sse(api.clone(), session.clone(), stop.clone()));
    let stop_runs = Rc::new(Cell::new(false));
    let started = Rc::new(RefCell::new(Vec::new()));
    let runs = actix_rt::spawn(keep_running(
        api.clone(),
        session.clone(),
        workflow,
        stop_runs.clone(),
        started.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;

    for node in ["1", "2", "3"] {
        // Blocking for the whole drain and start: off this thread, which serves the clients.
        let mut restart = cluster.command("restart", &["--node", node]);
        let restarted = tokio::task::spawn_blocking(move || restart.output().expect("bash runs"))
            .await
            .unwrap();
        assert!(succeeded(&restarted), "restart node-{node}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop_runs.set(true);
    runs.await.unwrap();

    // Every run reaches a terminal state in the store (none left running).
    let started = started.borrow().clone();
    assert!(started.len() >= 5, "runs kept starting: {}", started.len());
    let mut history = Value::Null;
    assert!(
        eventually(Duration::from_secs(20), async || {
            history = api
                .json_as("alice", Method::GET, "/api/executions/history?limit=500")
                .await;
            history["executions"].as_array().is_some_and(|runs| {
                runs.len() == started.len()
                    && runs.iter().all(|run| {
                        !["started", "running"].contains(&run["status"].as_str().unwrap())
                    })
            })
        })
        .await,
        "every run ended: {history}"
    );
    // The followers then get the last events, and stop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.set(true);
    let (ws, sse) = (ws.await.unwrap(), sse.await.unwrap());

    assert!(
        ws.connections >= 2,
        "the WebSocket was cut off and reconnected"
    );
    assert!(
        sse.connections >= 2,
        "the SSE stream was cut off and reconnected"
    );
    assert_complete("websocket", &ws, &started);
    assert_complete("sse", &sse, &started);
    assert_eq!(
        ws.last_seq(),
        sse.last_seq(),
        "both followed the stream to its end"
    );
    eprintln!(
        "rolling restart: {} runs, {} events, ws {} / sse {} connections, {:?}",
        started.len(),
        ws.events.len(),
        ws.connections,
        sse.connections,
        began.elapsed()
    );
}
