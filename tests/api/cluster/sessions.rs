//! Any request on any node: a session is served by the node that owns it, whichever node a
//! request reaches.

use reqwest::Method;
use serde_json::json;

use super::*;
use crate::realtime::{add_workflow, run, session_with_workflow};

#[actix_rt::test]
async fn a_session_created_on_one_node_is_used_and_closed_through_the_others() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start(3).await;
    let (a, b, c) = (&cluster[0], &cluster[1], &cluster[2]);

    let session = a.create_session("alice").await;
    let detail = b
        .json_as("alice", Method::GET, &format!("/api/sessions/{session}"))
        .await;
    assert_eq!(detail["session_id"], session.as_str(), "{detail}");

    // A workflow added through B, run through C, read through A.
    let workflow = add_workflow(b, "alice", &session, &route_and_merge()).await;
    let execution = run(c, "alice", &session, &workflow).await;
    let path = format!("/api/executions/{execution}?session_id={session}");
    assert!(
        eventually(SETTLE, async || {
            a.json_as("alice", Method::GET, &path).await["status"] == "completed"
        })
        .await,
        "the run completes and is visible through every node"
    );
    let listed = c
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/workflows?session_id={session}"),
        )
        .await;
    assert!(
        listed.to_string().contains(&workflow),
        "the workflow is listed through C: {listed}"
    );

    // Listed through any node, wherever each session lives; nobody else's.
    let on_c = c.create_session("alice").await;
    c.create_session("bob").await;
    let listed = b.json_as("alice", Method::GET, "/api/sessions").await;
    let ids: Vec<&str> = listed["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("a session list: {listed}"))
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [session.as_str(), on_c.as_str()], "{listed}");

    // Someone else gets 404 through any node, as on one node.
    let other = b
        .send_as("mallory", Method::GET, &format!("/api/sessions/{session}"))
        .await;
    assert_error(other, 404, "session_not_found", "Session not found").await;

    // Closed through C: gone everywhere.
    let closed = c
        .send_as("alice", Method::DELETE, &format!("/api/sessions/{session}"))
        .await;
    assert_eq!(closed.status(), 200);
    for node in [a, b, c] {
        let gone = node
            .send_as("alice", Method::GET, &format!("/api/sessions/{session}"))
            .await;
        assert_eq!(
            gone.status(),
            404,
            "closed session through {}",
            node.node_id
        );
    }
}

#[actix_rt::test]
async fn two_nodes_racing_on_one_session_keep_every_write() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start(2).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let (session, workflow) = session_with_workflow(a, "alice").await;

    // Versions of one workflow id created through both nodes at once.
    let mut definition = route_and_merge();
    definition["workflow_id"] = json!("raced");
    let path = format!("/api/workflows?session_id={session}");
    let writes = (0..10).map(|i| {
        let node = if i % 2 == 0 { a } else { b };
        let definition = definition.clone();
        let path = path.clone();
        async move { node.post_json("alice", &path, &definition).await.status() }
    });
    let statuses = futures_util::future::join_all(writes).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let runs = (0..10).map(|i| {
        let node = if i % 2 == 0 { a } else { b };
        let (session, workflow) = (session.clone(), workflow.clone());
        async move { run(node, "alice", &session, &workflow).await }
    });
    let executions = futures_util::future::join_all(runs).await;

    // Both nodes see the same session: ten versions, every execution.
    for node in [a, b] {
        let listed = node
            .json_as(
                "alice",
                Method::GET,
                &format!("/api/executions?session_id={session}"),
            )
            .await;
        let text = listed.to_string();
        for execution in &executions {
            assert!(
                text.contains(execution.as_str()),
                "{execution} listed through {}",
                node.node_id
            );
        }
    }
    let stored = crate::persistence::connect(&cluster.database_url).await;
    let versions: i64 = stored
        .query_one(
            "SELECT count(DISTINCT version) FROM workflow_versions WHERE workflow_id = 'raced'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 10, "every version kept, none overwritten");
}

#[actix_rt::test]
async fn a_forged_forwarding_header_is_refused() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start(2).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let session = a.create_session("alice").await;
    let forged = b
        .as_user("alice", Method::GET, &format!("/api/sessions/{session}"))
        .header("x-kailash-forwarded", format!("{} 0 00", a.node_id))
        .send()
        .await
        .unwrap();
    assert_error(
        forged,
        403,
        "forbidden",
        "The forwarding proof is invalid or expired",
    )
    .await;
}

#[actix_rt::test]
async fn the_admin_sees_every_live_node_and_a_killed_one_drops_out() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let mut cluster = LocalCluster::start(3).await;
    // Ready and heartbeating are independent: the newest node's first beat may land later.
    assert!(
        eventually(SETTLE, async || {
            let mut ids = live_nodes(&cluster, &cluster[1]).await;
            ids.sort();
            ids == ["node-1", "node-2", "node-3"]
        })
        .await,
        "every node is listed"
    );
    let forbidden = cluster[0]
        .send_as("alice", Method::GET, "/api/admin/nodes")
        .await;
    assert_eq!(forbidden.status(), 403);

    cluster.nodes[2].kill();
    assert!(
        eventually(SETTLE, async || live_nodes(&cluster, &cluster[0])
            .await
            .len()
            == 2)
        .await,
        "a killed node's heartbeat lapses"
    );
}

#[actix_rt::test]
async fn session_limits_hold_across_the_cluster_and_free_up_when_sessions_end() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start_with(2, |command| {
        command
            .env("KAILASH_MAX_SESSIONS", "3")
            .env("KAILASH_CONCURRENT_SESSIONS_LIMIT", "2");
    })
    .await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let create =
        async |node: &Node, user: &str| node.send_as(user, Method::POST, "/api/sessions").await;

    // Two of alice's sessions, one on each node: her third is refused on either.
    let first = a.create_session("alice").await;
    b.create_session("alice").await;
    let refused = create(a, "alice").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(json(refused).await["code"], "too_many_sessions");

    // Three in the cluster: a fourth, anyone's, is refused on either node.
    b.create_session("bob").await;
    for node in [a, b] {
        let refused = create(node, "carol").await;
        assert_eq!(refused.status(), 429);
        assert!(refused.headers().contains_key("retry-after"));
        assert_eq!(json(refused).await["code"], "max_sessions_reached");
    }

    // Closing one (through the other node) frees a slot cluster-wide.
    let closed = b
        .send_as("alice", Method::DELETE, &format!("/api/sessions/{first}"))
        .await;
    assert_eq!(closed.status(), 200);
    assert!(
        eventually(SETTLE, async || create(b, "carol").await.status() == 200).await,
        "the freed slot is usable on another node"
    );
}

#[actix_rt::test]
async fn roles_and_policies_changed_through_one_node_hold_on_every_node() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start_with(2, |node| {
        node.env("KAILASH_ACCESS_STRATEGY", "hybrid");
    })
    .await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let admin = cluster.admin_token();
    let auditor = a.mint(kailash_gateway::auth::token::MintRequest {
        subject: "carol".into(),
        tenant_id: None,
        roles: vec!["auditor".into()],
        permissions: vec![],
        lifetime: chrono::Duration::minutes(10),
        token_type: kailash_gateway::auth::token::TokenType::Access,
    });
    let status_on = async |node: &Node, token: &str, path: &str| {
        node.request(Method::GET, path)
            .bearer_auth(token)
            .send()
            .await
            .expect("request completes")
            .status()
    };
    // Hybrid with no policy yet: Cedar permits nothing (but policy administration).
    assert_eq!(status_on(b, &auditor, "/api/sessions").await, 403);
    let put = |path: String, body: serde_json::Value| {
        a.request(Method::PUT, &path)
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let permitted = put(
        "/api/admin/policies/everyone".into(),
        json!({"text": "permit(principal, action, resource);"}),
    )
    .await
    .unwrap();
    assert_eq!(permitted.status(), 200);
    let role = put(
        "/api/admin/roles/auditor".into(),
        json!({"permissions": ["audit:read", "session:read"]}),
    )
    .await
    .unwrap();
    assert_eq!(role.status(), 200);

    // B learns both from the store, without a restart.
    assert!(
        eventually(SETTLE, async || status_on(b, &auditor, "/api/admin/audit")
            .await
            == 200)
        .await,
        "the role made through A grants on B"
    );
    assert_eq!(status_on(b, &auditor, "/api/sessions").await, 200);
    let removed = a
        .request(Method::DELETE, "/api/admin/policies/everyone")
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    assert!(
        eventually(SETTLE, async || status_on(b, &auditor, "/api/sessions")
            .await
            == 403)
        .await,
        "the policy removed through A no longer permits on B"
    );
}

#[actix_rt::test]
async fn rate_limits_are_counted_across_the_cluster() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start_with(2, |node| {
        node.env("KAILASH_TENANT_API_CALLS_PER_DAY", "10");
    })
    .await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let list = async |node: &Node| node.send_as("alice", Method::GET, "/api/sessions").await;
    for _ in 0..6 {
        assert_eq!(list(a).await.status(), 200);
    }
    // Counts are shared every 100 ms: let both nodes sync before and after B's first call.
    let sync = std::time::Duration::from_millis(400);
    tokio::time::sleep(sync).await;
    assert_eq!(list(b).await.status(), 200);
    tokio::time::sleep(sync).await;
    let mut answered = Vec::new();
    for _ in 0..4 {
        answered.push(list(b).await.status().as_u16());
    }
    assert_eq!(
        answered,
        [200, 200, 200, 429],
        "10 in all, whichever node counted them"
    );
    tokio::time::sleep(sync).await;
    assert_eq!(list(a).await.status(), 429, "A knows what B counted");
}

#[actix_rt::test]
async fn a_tenant_created_or_deactivated_through_one_node_holds_on_every_node() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start(2).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let alice = a.token_in("acme", "alice", &[]);
    let status_on = async |node: &Node| {
        node.request(Method::GET, "/api/sessions")
            .bearer_auth(&alice)
            .send()
            .await
            .expect("request completes")
            .status()
    };
    assert_eq!(status_on(b).await, 401, "no such tenant yet");
    a.add_tenant("acme").await;
    assert_eq!(status_on(a).await, 200);
    assert!(
        eventually(SETTLE, async || status_on(b).await == 200).await,
        "the tenant created through A is known on B"
    );
    let off = a
        .request(Method::POST, "/api/admin/tenants/acme/deactivate")
        .bearer_auth(a.platform_admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
    assert_eq!(status_on(a).await, 403);
    assert!(
        eventually(SETTLE, async || status_on(b).await == 403).await,
        "the tenant deactivated through A is refused on B"
    );
}

#[actix_rt::test]
async fn a_token_revoked_through_one_node_is_refused_by_every_node() {
    let (_pg, _redis) = (PG_FAULT.read().await, REDIS_FAULT.read().await);
    let cluster = LocalCluster::start(2).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let token = a.token_for("alice");
    let list = async |node: &Node| {
        node.request(Method::GET, "/api/sessions")
            .bearer_auth(&token)
            .send()
            .await
            .expect("request completes")
            .status()
    };
    assert_eq!(list(b).await, 200);
    let logout = a
        .request(Method::POST, "/api/auth/logout")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    assert_eq!(list(a).await, 401, "at once where it was revoked");
    assert!(
        eventually(SETTLE, async || list(b).await == 401).await,
        "and soon on the others"
    );
}
