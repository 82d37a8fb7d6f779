//! The session part of the wire contract: lifecycle, ownership, limits, idle expiry.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn session_lifecycle() {
    let app = spawn_app().await;
    // An empty body, `{}`, and metadata are all fine.
    let empty = app.send_as("alice", Method::POST, "/api/sessions").await;
    assert_eq!(empty.status(), 200);
    let created = json(
        app.as_user("alice", Method::POST, "/api/sessions")
            .json(&json!({"metadata": {"app": "studio", "n": 1}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(created["user_id"], "alice");
    assert_eq!(created["active"], true);
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let id = created["session_id"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);

    let detail = app
        .json_as("alice", Method::GET, &format!("/api/sessions/{id}"))
        .await;
    assert_eq!(
        detail,
        json!({
            "session_id": id, "user_id": "alice", "created_at": created["created_at"],
            "active": true, "workflows": [], "active_executions": 0,
            "metadata": {"app": "studio", "n": 1},
        })
    );

    let listed = app.json_as("alice", Method::GET, "/api/sessions").await;
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["sessions"][1]["session_id"], id.as_str());
    assert_eq!(listed["sessions"][1]["workflow_count"], 0);
    assert_eq!(listed["sessions"][1]["execution_count"], 0);

    let closed = app
        .send_as("alice", Method::DELETE, &format!("/api/sessions/{id}"))
        .await;
    assert_eq!(closed.status(), 200);
    assert_eq!(json(closed).await, json!({"message": "Session closed"}));
    for method in [Method::GET, Method::DELETE] {
        let again = app
            .send_as("alice", method, &format!("/api/sessions/{id}"))
            .await;
        assert_error(again, 404, "session_not_found", "Session not found").await;
    }

    // The session's events, numbered per session.
    let recent = app
        .json_as(
            "alice",
            Method::GET,
            &format!("/api/events/recent?session_id={id}"),
        )
        .await;
    let events: Vec<_> = recent["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![("session.created".into(), 1), ("session.closed".into(), 2)]
    );
    assert_eq!(recent["events"][0]["user_id"], "alice");
    assert_eq!(recent["events"][0]["tenant_id"], "default");
    assert_eq!(
        recent["filters"],
        json!({"event_types": null, "session_id": id, "count": 100})
    );
}

#[actix_web::test]
async fn another_users_session_is_indistinguishable_from_an_unknown_one() {
    let app = spawn_app().await;
    let alices = app.create_session("alice").await;
    for path in [
        format!("/api/sessions/{alices}"),
        format!("/api/sessions/{}", uuid::Uuid::new_v4()),
        "/api/sessions/not-a-uuid".to_owned(),
    ] {
        for method in [Method::GET, Method::DELETE] {
            let response = app.send_as("bob", method, &path).await;
            assert_error(response, 404, "session_not_found", "Session not found").await;
        }
    }
    let bobs_list = app.json_as("bob", Method::GET, "/api/sessions").await;
    assert_eq!(bobs_list, json!({"sessions": [], "total": 0}));
    // Bob cannot see Alice's events either.
    let bobs_events = app
        .json_as(
            "bob",
            Method::GET,
            &format!("/api/events/recent?session_id={alices}"),
        )
        .await;
    assert_eq!(bobs_events["total"], 0);
    // And Alice's session survived Bob's attempts.
    let still = app
        .send_as("alice", Method::GET, &format!("/api/sessions/{alices}"))
        .await;
    assert_eq!(still.status(), 200);
}

#[actix_web::test]
async fn sessions_are_isolated_between_tenants() {
    let app = spawn_app().await;
    app.add_tenant("acme").await;
    app.add_tenant("globex").await;
    let tenant_token = |tenant: &str| app.token_in(tenant, "alice", &[]);
    let created = json(
        app.request(Method::POST, "/api/sessions")
            .bearer_auth(tenant_token("acme"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = created["session_id"].as_str().unwrap();
    // Same user id, other tenant: not found.
    let response = app
        .request(Method::GET, &format!("/api/sessions/{id}"))
        .bearer_auth(tenant_token("globex"))
        .send()
        .await
        .unwrap();
    assert_error(response, 404, "session_not_found", "Session not found").await;
    let ok = app
        .request(Method::GET, &format!("/api/sessions/{id}"))
        .bearer_auth(tenant_token("acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[actix_web::test]
async fn the_principal_comes_from_the_token_not_the_body() {
    let app = spawn_app().await;
    let created = json(
        app.as_user("alice", Method::POST, "/api/sessions")
            .json(&json!({"user_id": "mallory"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(created["user_id"], "alice");
    let mallorys = app.json_as("mallory", Method::GET, "/api/sessions").await;
    assert_eq!(mallorys["total"], 0);
}

#[actix_web::test]
async fn open_mode_trusts_the_request_user() {
    let app = spawn_app_with(|s| {
        s.auth_mode = kailash_gateway::config::AuthMode::Open;
        s.api_gateway_secret = None;
    })
    .await;
    let root = json(app.request(Method::GET, "/").send().await.unwrap()).await;
    assert_eq!(root["auth"], "open");
    let created = json(
        app.request(Method::POST, "/api/sessions")
            .json(&json!({"user_id": "dev"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(created["user_id"], "dev");
    let anonymous = json(
        app.request(Method::POST, "/api/sessions")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(anonymous["user_id"], "anonymous");
    let listed = json(
        app.request(Method::GET, "/api/sessions")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["total"], 2);
}

#[actix_web::test]
async fn max_sessions_is_enforced_and_frees_up_on_close() {
    let app = spawn_app_with(|s| s.max_sessions = 3).await;
    let mut ids = Vec::new();
    for user in ["a", "b", "c"] {
        ids.push(app.create_session(user).await);
    }
    let refused = app.send_as("d", Method::POST, "/api/sessions").await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_error(
        refused,
        429,
        "max_sessions_reached",
        "Maximum number of sessions (3) reached",
    )
    .await;

    let closed = app
        .send_as("a", Method::DELETE, &format!("/api/sessions/{}", ids[0]))
        .await;
    assert_eq!(closed.status(), 200);
    assert!(
        eventually(Duration::from_secs(5), async || {
            app.send_as("d", Method::POST, "/api/sessions")
                .await
                .status()
                == 200
        })
        .await,
        "a slot frees up once a session is closed"
    );
}

#[actix_web::test]
async fn idle_sessions_expire_and_used_ones_do_not() {
    // 0.01 minutes = 600 ms.
    let app = spawn_app_with(|s| s.session_timeout_minutes = 0.01).await;
    let idle = app.create_session("alice").await;
    let used = app.create_session("alice").await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        let touch = app
            .send_as("alice", Method::GET, &format!("/api/sessions/{used}"))
            .await;
        assert_eq!(touch.status(), 200, "a session in use does not expire");
        actix_rt::time::sleep(Duration::from_millis(150)).await;
    }
    let gone = app
        .send_as("alice", Method::GET, &format!("/api/sessions/{idle}"))
        .await;
    assert_error(gone, 404, "session_not_found", "Session not found").await;

    let expired = app
        .json_as(
            "alice",
            Method::GET,
            "/api/events/recent?event_types=session.expired",
        )
        .await;
    assert_eq!(expired["total"], 1);
    assert_eq!(expired["events"][0]["session_id"], idle.as_str());
    let stats = app.json_as("alice", Method::GET, "/api/stats").await;
    assert_eq!(stats["agent_ui"]["sessions_expired"], 1);
    assert_eq!(stats["agent_ui"]["active_sessions"], 1);
}

#[actix_web::test]
async fn five_hundred_concurrent_creates_all_succeed_and_are_listed() {
    let app = spawn_app().await;
    let token = app.token_for("alice");
    let creates = (0..500).map(|i| {
        app.request(Method::POST, "/api/sessions")
            .bearer_auth(&token)
            .json(&json!({"metadata": {"i": i}}))
            .send()
    });
    let responses = futures_util::future::join_all(creates).await;
    let mut ids = std::collections::HashSet::new();
    for response in responses {
        let response = response.expect("request completes");
        assert_eq!(response.status(), 200);
        ids.insert(
            json(response).await["session_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(ids.len(), 500, "every create got its own session");
    let listed = app.json_as("alice", Method::GET, "/api/sessions").await;
    assert_eq!(listed["total"], 500);
    let listed_ids: std::collections::HashSet<_> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed_ids, ids);
}
