//! The shipped example ABAC policies, each allowing and denying, over HTTP and WebSocket;
//! time rules under an injected clock; policy administration with line-pointing errors.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use kailash_actors::accounts::UserRecord;
use kailash_gateway::{clock::ManualClock, config::AccessStrategy};
use reqwest::Method;
use serde_json::json;

use super::*;
use crate::realtime::client::WsClient;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/examples");

/// A gateway with `strategy`, the base grant plus the example policy `file`, and a clock
/// standing at `now`.
async fn spawn_with_policy(
    strategy: AccessStrategy,
    file: &str,
    clock: Arc<ManualClock>,
) -> (TestApp, TempPath) {
    let dir = TempPath::new("policies");
    std::fs::create_dir_all(&dir.0).unwrap();
    for name in ["00-base.cedar", file] {
        std::fs::copy(format!("{EXAMPLES}/{name}"), dir.0.join(name)).unwrap();
    }
    let policies = dir.0.clone();
    let app = spawn_with_clock(clock, |s| {
        s.access_strategy = strategy;
        s.policies_path = Some(policies);
    })
    .await;
    (app, dir)
}

/// Adds a user straight to the accounts store (the admin API may itself be under policy)
/// and logs in.
async fn user(app: &TestApp, name: &str, roles: &[&str], attributes: Value) -> String {
    let password = format!("{name}-password");
    let state = &app.state;
    state
        .accounts
        .insert_user(UserRecord {
            tenant_id: "default".into(),
            username: name.into(),
            password_hash: state.passwords.hash(password.clone()).await.unwrap(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            attributes: attributes.as_object().unwrap().clone(),
            disabled: false,
            failed_logins: 0,
            locked_until: None,
            totp_secret: None,
            totp_enabled: false,
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    tokens(app, name, &password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn new_session(app: &TestApp, token: &str) -> String {
    let response = app
        .request(Method::POST, "/api/sessions")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    json(response).await["session_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[actix_web::test]
async fn business_hours_allow_runs_on_weekdays_only() {
    let wednesday_10 = Utc.with_ymd_and_hms(2026, 11, 18, 10, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(wednesday_10));
    let (app, _dir) = spawn_with_policy(
        AccessStrategy::Hybrid,
        "business-hours.cedar",
        clock.clone(),
    )
    .await;
    let token = user(&app, "dev", &["developer"], json!({})).await;
    let sid = new_session(&app, &token).await;
    let run = || {
        app.request(Method::POST, &format!("/api/executions?session_id={sid}"))
            .bearer_auth(&token)
            .json(&json!({"workflow_id": "none"}))
            .send()
    };
    // Allowed: the request reaches the session and finds no such workflow.
    assert_eq!(
        json(run().await.unwrap()).await["code"],
        "workflow_not_found"
    );

    clock.set(Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap()); // Sunday 03:00
    assert_error(
        run().await.unwrap(),
        403,
        "forbidden",
        "You are not allowed to do this",
    )
    .await;
    let mut ws =
        WsClient::connect_with(&app, Some(token.clone()), &format!("session_id={sid}")).await;
    let reply = ws
        .request(&json!({"type": "execute_workflow", "workflow_id": "none"}))
        .await;
    assert_eq!(reply["error"]["code"], "forbidden");
    // Other actions are not time-bound.
    let listed = app
        .request(Method::GET, "/api/sessions")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    let denied = audit(&app, "user=dev&outcome=denied&action=workflow:execute").await;
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[0]["resource"], "ws:execute_workflow");
    assert_eq!(denied[0]["at"], "2026-11-22T03:00:00Z");
}

#[actix_web::test]
async fn only_users_in_allowed_countries_get_in() {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let (app, _dir) =
        spawn_with_policy(AccessStrategy::Abac, "allowed-countries.cedar", clock).await;
    let canadian = user(
        &app,
        "cam",
        &["viewer"],
        json!({"location": {"country": "CA"}}),
    )
    .await;
    let elsewhere = user(
        &app,
        "zed",
        &["viewer"],
        json!({"location": {"country": "FR"}}),
    )
    .await;
    let nowhere = user(&app, "nil", &["viewer"], json!({})).await;
    let get = |token: String| {
        app.request(Method::GET, "/api/admin/roles")
            .bearer_auth(token)
            .send()
    };
    // `abac` alone: the viewer's roles do not matter, the policy does.
    assert_eq!(get(canadian.clone()).await.unwrap().status(), 200);
    for token in [elsewhere, nowhere] {
        assert_error(
            get(token).await.unwrap(),
            403,
            "forbidden",
            "You are not allowed to do this",
        )
        .await;
    }
    let entries = app
        .state
        .accounts
        .query_audit(kailash_actors::accounts::AuditQuery {
            tenant_id: "default".into(),
            user_id: Some("zed".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries[0].action, "role:manage");
    assert_eq!(entries[0].resource.as_deref(), Some("GET /api/admin/roles"));
}

#[actix_web::test]
async fn workflows_of_a_department_need_its_members_with_clearance() {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let (app, _dir) = spawn_with_policy(AccessStrategy::Hybrid, "data-access.cedar", clock).await;
    let analyst = user(
        &app,
        "ann",
        &["developer"],
        json!({"department": "finance", "clearance": "confidential"}),
    )
    .await;
    let outsider = user(
        &app,
        "hal",
        &["developer"],
        json!({"department": "hr", "clearance": "secret"}),
    )
    .await;
    let workflow = |classification: &str| {
        let mut workflow = route_and_merge();
        workflow["metadata"] = json!({"department": "finance", "classification": classification});
        workflow
    };
    let create = |token: &str, body: Value| {
        let token = token.to_owned();
        let app = &app;
        async move {
            let sid = new_session(app, &token).await;
            app.request(Method::POST, &format!("/api/workflows?session_id={sid}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(create(&analyst, workflow("internal")).await.status(), 200);
    assert_eq!(create(&analyst, route_and_merge()).await.status(), 200);
    assert_eq!(create(&outsider, route_and_merge()).await.status(), 200);
    for (token, classification) in [(&analyst, "secret"), (&outsider, "internal")] {
        let refused = create(token, workflow(classification)).await;
        assert_error(refused, 403, "forbidden", "You are not allowed to do this").await;
    }
    assert_eq!(
        audit(&app, "action=workflow:create&outcome=denied")
            .await
            .len(),
        2
    );
}

#[actix_web::test]
async fn policies_are_validated_stored_and_enforced() {
    let app = spawn_app_with(|s| s.access_strategy = AccessStrategy::Hybrid).await;
    let admin = admin_token(&app).await;
    let put = |id: &'static str, text: &str| {
        app.request(Method::PUT, &format!("/api/admin/policies/{id}"))
            .bearer_auth(&admin)
            .json(&json!({"text": text}))
            .send()
    };
    // No policy yet: under hybrid, Cedar permits nothing — but policy administration is
    // decided by roles alone, so an admin can never lock everyone out.
    let dev = user(&app, "dev", &["developer"], json!({})).await;
    assert_eq!(
        app.request(Method::GET, "/api/sessions")
            .bearer_auth(&dev)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    let bad = put(
        "broken",
        "permit(principal, action, resource);\nforbid(principal, action resource);",
    )
    .await
    .unwrap();
    let bad = json(bad).await;
    assert_eq!(bad["code"], "invalid_policy");
    let message = bad["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("line 2, column"), "{message}");
    assert_eq!(bad["errors"][0]["path"], "text");

    let allowed = put("everyone", "permit(principal, action, resource);")
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let sessions = |token: String| {
        app.request(Method::GET, "/api/sessions")
            .bearer_auth(token)
            .send()
    };
    assert_eq!(sessions(dev.clone()).await.unwrap().status(), 200);
    let deny_dev =
        r#"forbid(principal == User::"dev", action == Action::"session:read", resource);"#;
    assert_eq!(put("no-dev", deny_dev).await.unwrap().status(), 200);
    assert_eq!(sessions(dev.clone()).await.unwrap().status(), 403);
    let listed = app
        .request(Method::GET, "/api/admin/policies")
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let listed = json(listed).await;
    assert_eq!(listed["strategy"], "hybrid");
    assert_eq!(listed["policies"].as_array().unwrap().len(), 2);
    let removed = app
        .request(Method::DELETE, "/api/admin/policies/no-dev")
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    assert_eq!(sessions(dev).await.unwrap().status(), 200);
    assert_eq!(audit(&app, "action=policy.put").await.len(), 2);
    assert_eq!(audit(&app, "action=policy.delete").await.len(), 1);
}
