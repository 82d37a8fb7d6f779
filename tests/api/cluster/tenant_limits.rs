//! A tenant's own limits hold across the cluster: `max_sessions`, `max_workflows`,
//! `max_websocket_connections` and `max_concurrent_executions` reached with one part on
//! each node, refused (same 429 codes as on one node) and freed through the other node; a
//! run queued on one node starts when one on the other ends; what a killed node held
//! lapses by itself.

use reqwest::Method;
use serde_json::{Value, json};

use super::*;
use crate::{
    executions::silent_server,
    realtime::client::WsClient,
    tenants::{
        limits::{hanging_workflow, new_session, reaches, start_run},
        send,
    },
};

/// A two-node cluster whose nodes may call `127.0.0.1` (the silent server) and have `env`
/// besides, with tenant `acme` of `limits` known on both nodes.
async fn cluster_with_tenant(limits: Value, env: &[(&str, &str)]) -> LocalCluster {
    let cluster = LocalCluster::start_with(2, |node| {
        node.env("KAILASH_EGRESS_ALLOW", "127.0.0.1")
            .envs(env.iter().copied());
    })
    .await;
    cluster[0]
        .create_tenant(&json!({"tenant_id": "acme", "name": "Acme", "limits": limits}))
        .await;
    let token = cluster[1].token_in("acme", "alice", &[]);
    let known = eventually(SETTLE, async || {
        send(&cluster[1], &token, Method::GET, "/api/sessions", None)
            .await
            .status()
            == 200
    })
    .await;
    assert!(known, "the tenant created through A is known on B");
    cluster
}

fn session_id(created: &Value) -> String {
    created["session_id"].as_str().unwrap().to_owned()
}

#[actix_rt::test]
async fn a_tenants_max_sessions_counts_every_nodes_sessions() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = cluster_with_tenant(json!({"max_sessions": 2}), &[]).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let alice = a.token_in("acme", "alice", &[]);
    let first = session_id(&json(new_session(a, &alice).await).await);
    assert_eq!(new_session(b, &alice).await.status(), 200);
    for node in [a, b] {
        let refused = new_session(node, &alice).await;
        assert!(refused.headers().contains_key("retry-after"));
        assert_error(
            refused,
            429,
            "max_sessions_reached",
            "The tenant allows at most 2 live sessions",
        )
        .await;
    }
    // Closed through B (forwarded to A, its owner): the place is free on B.
    let path = format!("/api/sessions/{first}");
    assert_eq!(
        send(b, &alice, Method::DELETE, &path, None).await.status(),
        200
    );
    assert!(
        eventually(SETTLE, async || new_session(b, &alice).await.status()
            == 200)
        .await,
        "the session closed on A frees a place on B"
    );
}

#[actix_rt::test]
async fn a_tenants_max_workflows_counts_every_nodes_sessions() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = cluster_with_tenant(json!({"max_workflows": 2}), &[]).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let alice = a.token_in("acme", "alice", &["developer"]);
    let on_a = session_id(&json(new_session(a, &alice).await).await);
    let on_b = session_id(&json(new_session(b, &alice).await).await);
    let add = async |node: &Node, session: &str, id: &str| {
        let mut body = route_and_merge();
        body["workflow_id"] = json!(id);
        let path = format!("/api/workflows?session_id={session}");
        send(node, &alice, Method::POST, &path, Some(&body)).await
    };
    assert_eq!(add(a, &on_a, "a").await.status(), 200);
    assert_eq!(add(b, &on_b, "b").await.status(), 200);
    assert_error(
        add(b, &on_b, "c").await,
        429,
        "max_workflows_reached",
        "The tenant allows at most 2 workflows in its live sessions",
    )
    .await;
    let path = format!("/api/sessions/{on_a}");
    assert_eq!(
        send(a, &alice, Method::DELETE, &path, None).await.status(),
        200
    );
    assert!(
        eventually(SETTLE, async || add(b, &on_b, "c").await.status() == 200).await,
        "the workflows of the session closed on A free their places on B"
    );
}

#[actix_rt::test]
async fn a_tenants_websocket_connections_count_on_every_node_and_a_killed_nodes_lapse() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let mut cluster = cluster_with_tenant(json!({"max_websocket_connections": 2}), &[]).await;
    let alice = cluster[0].token_in("acme", "alice", &[]);
    let on_a = WsClient::connect_with(&cluster[0], Some(alice.clone()), "").await;
    let on_b = WsClient::connect_with(&cluster[1], Some(alice.clone()), "").await;
    for node in [&cluster[0], &cluster[1]] {
        let (status, body) = WsClient::try_connect(node, Some(alice.clone()), "")
            .await
            .err()
            .expect("a third connection is refused");
        assert_eq!(status, 429);
        assert_eq!(body["code"], "too_many_connections");
    }
    // Closed on B: A may take the place.
    drop(on_b);
    let mut again = None;
    assert!(
        eventually(SETTLE, async || {
            again = WsClient::try_connect(&cluster[0], Some(alice.clone()), "")
                .await
                .ok();
            again.is_some()
        })
        .await,
        "the connection closed on B frees a place on A"
    );
    // A is killed holding both: its leases lapse (runs::LEASE, 5 s) and B takes them.
    cluster.nodes[0].kill();
    drop((on_a, again));
    let b = &cluster[1];
    let mut taken = Vec::new();
    assert!(
        eventually(SETTLE, async || {
            if let Ok(client) = WsClient::try_connect(b, Some(alice.clone()), "").await {
                taken.push(client);
            }
            taken.len() == 2
        })
        .await,
        "a killed node's connections stop counting"
    );
}

#[actix_rt::test]
async fn a_run_queued_on_one_node_starts_when_the_tenants_run_on_another_ends() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let port = silent_server();
    let cluster = cluster_with_tenant(json!({"max_concurrent_executions": 1}), &[]).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let alice = a.token_in("acme", "alice", &["developer"]);
    let on_a = hanging_workflow(a, &alice, port).await;
    let on_b = hanging_workflow(b, &alice, port).await;
    let first = start_run(a, &alice, &on_a).await;
    reaches(a, &alice, &first, "running").await;
    let queued = start_run(b, &alice, &on_b).await;
    let behind = start_run(b, &alice, &on_b).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    for waiting in [&queued, &behind] {
        let state = json(send(b, &alice, Method::GET, waiting, None).await).await;
        assert_eq!(state["status"], "started", "{state}");
    }
    // Cancelled while waiting: it gives its place up; the first ends on A: B's next runs.
    assert_eq!(
        send(b, &alice, Method::DELETE, &behind, None)
            .await
            .status(),
        200
    );
    reaches(b, &alice, &behind, "cancelled").await;
    assert_eq!(
        send(a, &alice, Method::DELETE, &first, None).await.status(),
        200
    );
    reaches(b, &alice, &queued, "running").await;
    // Now B's run holds the tenant's one slot: a run on A waits.
    let on_a_again = start_run(a, &alice, &on_a).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let state = json(send(a, &alice, Method::GET, &on_a_again, None).await).await;
    assert_eq!(state["status"], "started", "{state}");
}

#[actix_rt::test]
async fn a_killed_nodes_runs_stop_holding_the_tenants_slots() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let port = silent_server();
    let mut cluster = cluster_with_tenant(json!({"max_concurrent_executions": 1}), &[]).await;
    let alice = cluster[0].token_in("acme", "alice", &["developer"]);
    let on_a = hanging_workflow(&cluster[0], &alice, port).await;
    let first = start_run(&cluster[0], &alice, &on_a).await;
    reaches(&cluster[0], &alice, &first, "running").await;
    let b = &cluster[1];
    let on_b = hanging_workflow(b, &alice, port).await;
    let queued = start_run(b, &alice, &on_b).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let state = json(send(b, &alice, Method::GET, &queued, None).await).await;
    assert_eq!(state["status"], "started", "{state}");
    // A dies holding the tenant's one slot: its lease lapses (5 s) and B's run takes it.
    cluster.nodes[0].kill();
    let b = &cluster[1];
    let running = eventually(SETTLE, async || {
        json(send(b, &alice, Method::GET, &queued, None).await).await["status"] == "running"
    })
    .await;
    assert!(running, "the killed node's run stops counting");
}

#[actix_rt::test]
async fn runs_waiting_for_their_tenants_slot_hold_none_of_the_clusters() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let port = silent_server();
    // The deployment runs at most two at once, cluster-wide.
    let cluster = cluster_with_tenant(
        json!({"max_concurrent_executions": 1}),
        &[("KAILASH_MAX_CONCURRENT_EXECUTIONS", "2")],
    )
    .await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let alice = a.token_in("acme", "alice", &["developer"]);
    let on_a = hanging_workflow(a, &alice, port).await;
    let on_b = hanging_workflow(b, &alice, port).await;
    let first = start_run(a, &alice, &on_a).await;
    reaches(a, &alice, &first, "running").await;
    // Acme's next runs wait on B, holding none of the deployment's two places.
    let waiting = [
        start_run(b, &alice, &on_b).await,
        start_run(b, &alice, &on_b).await,
    ];
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    for run in &waiting {
        reaches(b, &alice, run, "started").await;
    }
    // Another tenant's run, on either node, takes the second place and runs.
    let bob = b.token_in("default", "bob", &["developer"]);
    let bobs = hanging_workflow(b, &bob, port).await;
    let run = start_run(b, &bob, &bobs).await;
    reaches(b, &bob, &run, "running").await;
    // Acme's first ends: its next in line takes the place it gave up, beside Bob's.
    assert_eq!(
        send(a, &alice, Method::DELETE, &first, None).await.status(),
        200
    );
    reaches(b, &alice, &waiting[0], "running").await;
    reaches(b, &bob, &run, "running").await;
}

#[actix_rt::test]
async fn a_drain_interrupts_the_runs_waiting_there_for_a_slot_held_on_another_node() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let port = silent_server();
    let mut cluster = cluster_with_tenant(
        json!({"max_concurrent_executions": 1}),
        &[
            ("KAILASH_DRAIN_DELAY_SECONDS", "0"),
            ("KAILASH_EXECUTION_DRAIN_SECONDS", "1"),
        ],
    )
    .await;
    let alice = cluster[0].token_in("acme", "alice", &["developer"]);
    let on_a = hanging_workflow(&cluster[0], &alice, port).await;
    let first = start_run(&cluster[0], &alice, &on_a).await;
    reaches(&cluster[0], &alice, &first, "running").await;
    let on_b = hanging_workflow(&cluster[1], &alice, port).await;
    let waiting = start_run(&cluster[1], &alice, &on_b).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    reaches(&cluster[1], &alice, &waiting, "started").await;

    // B holds no node slot, only a waiting run: its drain still ends that run, as
    // interrupted, before it leaves (not as lost, later, by the node taking it over).
    cluster[1].signal("TERM");
    let a = &cluster[0];
    let ended = reaches(a, &alice, &waiting, "failed").await;
    assert_eq!(
        ended["error"],
        kailash_actors::execution::INTERRUPTED,
        "{ended}"
    );
    cluster.nodes[1].kill();
}
