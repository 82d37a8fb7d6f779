//! The execution actor end to end through the `Gateway` handle, with the engine's test
//! nodes: ordering, concurrency, failure, panics, cancel, time limits, limits.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::{
    Caller, Gateway, GatewayConfig, GatewayError,
    bus::BusConfig,
    engine::testing,
    events::EventFilter,
    execution::{ExecutionSnapshot, ExecutionStatus, RunLimits},
};

fn gateway(limits: RunLimits, per_session: usize) -> Gateway {
    gateway_expiring_after(limits, per_session, Duration::from_secs(600))
}

fn gateway_expiring_after(
    limits: RunLimits,
    per_session: usize,
    session_timeout: Duration,
) -> Gateway {
    Gateway::start(GatewayConfig {
        node_registry: Arc::new(testing::registry()),
        shared_workflows: BTreeMap::new(),
        run_limits: limits,
        max_nodes_per_workflow: 100,
        max_executions_per_session: per_session,
        max_concurrent_executions: 100,
        finished_executions_per_session: 3,
        max_sessions: 10,
        session_timeout,
        ask_timeout: Duration::from_secs(5),
        mailbox_capacity: 64,
        bus: BusConfig {
            history_len: 1000,
            retention: Duration::from_secs(60),
            recent_capacity: 1000,
        },
        max_room_members: 100,
        concurrent_sessions_limit: 0,
        tenants: Default::default(),
    })
}

const LIMITS: RunLimits = RunLimits {
    node_timeout: Duration::from_secs(10),
    execution_timeout: Duration::from_secs(30),
};

fn alice() -> Caller {
    Caller::authenticated("t", "alice")
}

async fn session_with(gateway: &Gateway, workflow: Value) -> (Uuid, String) {
    let session = gateway
        .create_session(alice(), Value::Null)
        .await
        .unwrap()
        .session_id;
    let workflow = gateway.parse_workflow(&workflow).expect("valid workflow");
    let added = gateway
        .add_workflow(alice(), session, workflow)
        .await
        .unwrap();
    (session, added.workflow_id.clone())
}

async fn run(gateway: &Gateway, session: Uuid, workflow_id: &str, inputs: Value) -> Uuid {
    gateway
        .start_execution(
            alice(),
            session,
            workflow_id.into(),
            inputs.as_object().cloned().unwrap_or_default(),
            Map::new(),
        )
        .await
        .unwrap()
        .execution_id
}

async fn finished(gateway: &Gateway, session: Uuid, execution: Uuid) -> ExecutionSnapshot {
    for _ in 0..400 {
        let snapshot = gateway
            .execution(alice(), session, execution)
            .await
            .unwrap();
        if snapshot.status.is_terminal() {
            return snapshot;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("execution {execution} did not finish");
}

/// `(type, node_id)` of the session's events after `session.created`.
async fn events(gateway: &Gateway, session: Uuid) -> Vec<(String, String)> {
    let filter = EventFilter {
        session_id: Some(session),
        ..EventFilter::visible_to(&alice())
    };
    let events = gateway.recent_events(filter, 1000).await.unwrap();
    let mut seq = 0;
    events
        .iter()
        .skip(1)
        .map(|event| {
            let json: Value = serde_json::from_str(&event.json).unwrap();
            assert!(event.seq > seq, "seq increases");
            seq = event.seq;
            assert_eq!(json["user_id"], "alice");
            assert!(json["workflow_name"].is_string(), "{json}");
            (
                json["type"].as_str().unwrap().to_owned(),
                json["node_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[actix_rt::test]
async fn a_chain_completes_with_every_event_in_order() {
    let gateway = gateway(LIMITS, 5);
    let (session, workflow) = session_with(&gateway, json!({
        "name": "chain",
        "nodes": [{"id": "a", "type": "Echo", "config": {"value": 1}}, {"id": "b", "type": "Echo"}],
        "connections": [{"from": "a", "to": "b"}],
    }))
    .await;
    let execution = run(&gateway, session, &workflow, json!({})).await;
    let done = finished(&gateway, session, execution).await;
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.progress, 100.0);
    assert_eq!(
        Value::Object(done.outputs),
        json!({"a": {"result": 1}, "b": {"result": 1}})
    );
    assert_eq!(
        Value::Object(done.node_states),
        json!({"a": "completed", "b": "completed"})
    );
    assert!(done.error.is_none() && done.completed_at.is_some());
    assert_eq!(
        events(&gateway, session).await,
        pairs(&[
            ("workflow.started", ""),
            ("node.started", "a"),
            ("node.completed", "a"),
            ("workflow.progress", ""),
            ("node.started", "b"),
            ("node.completed", "b"),
            ("workflow.progress", ""),
            ("workflow.completed", ""),
        ])
    );
}

#[actix_rt::test]
async fn independent_branches_run_concurrently() {
    let gateway = gateway(LIMITS, 5);
    let (session, workflow) = session_with(&gateway, json!({
        "name": "fan",
        "nodes": [{"id": "slow1", "type": "Sleep", "config": {"ms": 150}}, {"id": "slow2", "type": "Sleep", "config": {"ms": 150}},
                  {"id": "join", "type": "Echo"}],
        "connections": [{"from": "slow1", "to": "join", "to_input": "one"}, {"from": "slow2", "to": "join"}],
    }))
    .await;
    let execution = run(&gateway, session, &workflow, json!({})).await;
    assert_eq!(
        finished(&gateway, session, execution).await.status,
        ExecutionStatus::Completed
    );
    let seen = events(&gateway, session).await;
    let position = |event: (&str, &str)| {
        seen.iter()
            .position(|e| e.0 == event.0 && e.1 == event.1)
            .unwrap()
    };
    assert!(
        position(("node.started", "slow2")) < position(("node.completed", "slow1")),
        "{seen:?}"
    );
    assert!(position(("node.started", "join")) > position(("node.completed", "slow2")));
}

#[actix_rt::test]
async fn a_failure_skips_dependents_keeps_outputs_and_fails_the_run_once() {
    let gateway = gateway(LIMITS, 5);
    let (session, workflow) = session_with(&gateway, json!({
        "name": "failing",
        "nodes": [{"id": "a", "type": "Echo", "config": {"value": "kept"}}, {"id": "bad", "type": "Fail", "config": {"message": "boom"}},
                  {"id": "after", "type": "Echo"}],
        "connections": [{"from": "a", "to": "bad"}, {"from": "bad", "to": "after"}],
    }))
    .await;
    let execution = run(&gateway, session, &workflow, json!({})).await;
    let done = finished(&gateway, session, execution).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(done.error.as_deref(), Some("node 'bad' failed: boom"));
    assert_eq!(
        Value::Object(done.outputs),
        json!({"a": {"result": "kept"}})
    );
    assert_eq!(
        Value::Object(done.node_states),
        json!({"a": "completed", "bad": "failed", "after": "skipped"})
    );
    let seen = events(&gateway, session).await;
    assert!(seen.contains(&("node.failed".into(), "bad".into())));
    assert!(seen.contains(&("node.skipped".into(), "after".into())));
    let terminal = seen
        .iter()
        .filter(|e| {
            e.0.starts_with("workflow.") && e.0 != "workflow.progress" && e.0 != "workflow.started"
        })
        .count();
    assert_eq!(terminal, 1);
}

#[actix_rt::test]
async fn a_panicking_node_fails_and_the_gateway_keeps_serving() {
    let gateway = gateway(LIMITS, 5);
    let (session, workflow) = session_with(
        &gateway,
        json!({"name": "panics", "nodes": [{"id": "p", "type": "Panic"}]}),
    )
    .await;
    let execution = run(&gateway, session, &workflow, json!({})).await;
    let done = finished(&gateway, session, execution).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    assert_eq!(
        done.error.as_deref(),
        Some("node 'p' failed: the node panicked")
    );
    let (session, workflow) = session_with(
        &gateway,
        json!({"name": "fine", "nodes": [{"id": "e", "type": "Echo"}]}),
    )
    .await;
    let execution = run(&gateway, session, &workflow, json!({})).await;
    assert_eq!(
        finished(&gateway, session, execution).await.status,
        ExecutionStatus::Completed
    );
}

#[actix_rt::test]
async fn cancel_interrupts_at_once_and_a_finished_run_cannot_be_cancelled() {
    let gateway = gateway(LIMITS, 5);
    let (session, workflow) = session_with(
        &gateway,
        json!({"name": "long", "nodes": [{"id": "s", "type": "Sleep", "config": {"ms": 20000}}]}),
    )
    .await;
    let execution = run(&gateway, session, &workflow, json!({})).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    gateway
        .cancel_execution(alice(), session, execution)
        .await
        .unwrap();
    let done = finished(&gateway, session, execution).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(done.status, ExecutionStatus::Cancelled);
    assert_eq!(Value::Object(done.node_states), json!({"s": "cancelled"}));
    assert_eq!(
        gateway.cancel_execution(alice(), session, execution).await,
        Err(GatewayError::ExecutionNotRunning)
    );
    assert!(
        events(&gateway, session)
            .await
            .contains(&("workflow.cancelled".into(), String::new()))
    );
}

#[actix_rt::test]
async fn node_and_execution_time_limits_end_the_run_as_timeout() {
    let gateway = gateway(
        RunLimits {
            node_timeout: Duration::from_secs(10),
            execution_timeout: Duration::from_millis(300),
        },
        5,
    );
    let (session, workflow) = session_with(
        &gateway,
        json!({
            "name": "slow",
            "nodes": [{"id": "own_limit", "type": "Sleep", "config": {"ms": 5000, "timeout": 0.1}}],
        }),
    )
    .await;
    let execution = run(&gateway, session, &workflow, json!({})).await;
    let done = finished(&gateway, session, execution).await;
    assert_eq!(done.status, ExecutionStatus::Timeout);
    assert_eq!(
        done.error.as_deref(),
        Some("node 'own_limit' failed: timed out after 0.1 s")
    );

    let (session, workflow) = session_with(
        &gateway,
        json!({"name": "slower", "nodes": [{"id": "s", "type": "Sleep", "config": {"ms": 5000}}]}),
    )
    .await;
    let execution = run(&gateway, session, &workflow, json!({})).await;
    let done = finished(&gateway, session, execution).await;
    assert_eq!(done.status, ExecutionStatus::Timeout);
    assert_eq!(
        done.error.as_deref(),
        Some("the execution exceeded its limit of 0.3 s")
    );
    assert!(
        events(&gateway, session)
            .await
            .contains(&("workflow.timeout".into(), String::new()))
    );
}

#[actix_rt::test]
async fn session_limits_and_closing_a_session_cancel_runs() {
    let gateway = gateway(LIMITS, 1);
    let (session, workflow) = session_with(
        &gateway,
        json!({"name": "long", "nodes": [{"id": "s", "type": "Sleep", "config": {"ms": 20000}}]}),
    )
    .await;
    let execution = run(&gateway, session, &workflow, json!({})).await;
    let refused = gateway
        .start_execution(alice(), session, workflow.clone(), Map::new(), Map::new())
        .await;
    assert_eq!(
        refused.unwrap_err(),
        GatewayError::TooManyExecutions {
            limit: 1,
            scope: "session"
        }
    );
    let missing = gateway
        .start_execution(alice(), session, "nope".into(), Map::new(), Map::new())
        .await;
    assert_eq!(missing.unwrap_err(), GatewayError::WorkflowNotFound);
    gateway.close_session(alice(), session).await.unwrap();
    let filter = EventFilter {
        session_id: Some(session),
        ..EventFilter::visible_to(&alice())
    };
    let seen: Vec<String> = gateway
        .recent_events(filter, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_type.as_str().to_owned())
        .collect();
    let cancelled = seen
        .iter()
        .position(|t| t == "workflow.cancelled")
        .expect("the run was cancelled");
    let closed = seen
        .iter()
        .position(|t| t == "session.closed")
        .expect("the session closed");
    assert!(cancelled < closed, "{seen:?}");
    assert_eq!(
        gateway
            .execution(alice(), session, execution)
            .await
            .unwrap_err(),
        GatewayError::SessionNotFound
    );
    let stats = gateway.stats().await.unwrap();
    assert_eq!(stats.active_executions, 0, "every slot was released");
}

#[actix_rt::test]
async fn a_session_with_a_running_execution_does_not_expire_while_it_runs() {
    let gateway = gateway_expiring_after(LIMITS, 5, Duration::from_millis(200));
    let (session, workflow) = session_with(
        &gateway,
        json!({"name": "long", "nodes": [{"id": "s", "type": "Sleep", "config": {"ms": 700}}]}),
    )
    .await;
    let execution = run(&gateway, session, &workflow, json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = gateway.stats().await.unwrap();
    assert_eq!(
        stats.sessions_expired, 0,
        "the session outlived its idle timeout while running"
    );
    assert_eq!(
        finished(&gateway, session, execution).await.status,
        ExecutionStatus::Completed
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        gateway.stats().await.unwrap().sessions_expired,
        1,
        "idle again, it expires"
    );
}

#[actix_rt::test]
async fn a_session_keeps_a_bounded_number_of_finished_executions() {
    let gateway = gateway(LIMITS, 5);
    let (session, workflow) = session_with(
        &gateway,
        json!({"name": "quick", "nodes": [{"id": "e", "type": "Echo"}]}),
    )
    .await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        let execution = run(&gateway, session, &workflow, json!({})).await;
        finished(&gateway, session, execution).await;
        runs.push(execution);
    }
    assert_eq!(
        gateway
            .execution(alice(), session, runs[0])
            .await
            .unwrap_err(),
        GatewayError::ExecutionNotFound
    );
    let kept: Vec<Uuid> = gateway
        .list_executions(alice(), session)
        .await
        .unwrap()
        .iter()
        .map(|e| e.execution_id)
        .collect();
    assert_eq!(kept.len(), 3);
    assert!(!kept.contains(&runs[0]));
}
