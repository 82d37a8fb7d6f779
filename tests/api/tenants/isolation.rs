//! The adversarial cross-tenant suite: tenant `globex`'s administrator, whose user name is
//! the same as the owner's in `acme`, tries every route and WebSocket message on `acme`'s
//! session, workflow, execution, webhook, user and audit entries — by their real ids, by
//! guessed ids, and through filters — and gets exactly what an unknown id gets: 404 (or an
//! empty list), never 403, never a byte of `acme`'s data.

use reqwest::Method;
use serde_json::{Value, json};

use super::*;
use crate::realtime::client::WsClient;

/// `acme`'s resources.
struct Acme {
    session: String,
    workflow: String,
    execution: String,
    webhook: String,
}

async fn acme(app: &TestApp, alice: &str) -> Acme {
    let session = json(send(app, alice, Method::POST, "/api/sessions", None).await).await;
    let session = session["session_id"].as_str().unwrap().to_owned();
    let workflow = send(
        app,
        alice,
        Method::POST,
        &format!("/api/workflows?session_id={session}"),
        Some(&route_and_merge()),
    )
    .await;
    let workflow = json(workflow).await["workflow_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = send(
        app,
        alice,
        Method::POST,
        &format!("/api/executions?session_id={session}"),
        Some(&json!({"workflow_id": workflow, "inputs": {"route": {"input_data": {"tier": "gold"}}}})),
    )
    .await;
    let execution = json(started).await["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let webhook = send(
        app,
        alice,
        Method::POST,
        "/api/webhooks",
        Some(&json!({"url": "http://127.0.0.1:9/hook", "session_id": session})),
    )
    .await;
    assert_eq!(webhook.status(), 200);
    let webhook = json(webhook).await["webhook_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = send(
        app,
        &app.token_in("acme", "root", &["admin"]),
        Method::POST,
        "/api/admin/users",
        Some(&json!({"username": "carol", "password": "carol-password"})),
    )
    .await;
    assert_eq!(user.status(), 201);
    Acme {
        session,
        workflow,
        execution,
        webhook,
    }
}

/// The routes that name one of `acme`'s resources, with the code an unknown id gets.
fn named_routes(a: &Acme) -> Vec<(Method, String, &'static str)> {
    let (s, w, e, h) = (&a.session, &a.workflow, &a.execution, &a.webhook);
    vec![
        (
            Method::GET,
            format!("/api/sessions/{s}"),
            "session_not_found",
        ),
        (
            Method::DELETE,
            format!("/api/sessions/{s}"),
            "session_not_found",
        ),
        (
            Method::POST,
            format!("/api/workflows?session_id={s}"),
            "session_not_found",
        ),
        (
            Method::GET,
            format!("/api/workflows?session_id={s}"),
            "session_not_found",
        ),
        (
            Method::GET,
            format!("/api/workflows/{w}?session_id={s}"),
            "session_not_found",
        ),
        (
            Method::GET,
            format!("/api/schemas/workflows/{w}?session_id={s}"),
            "session_not_found",
        ),
        (
            Method::POST,
            format!("/api/executions?session_id={s}"),
            "session_not_found",
        ),
        (
            Method::GET,
            format!("/api/executions?session_id={s}"),
            "session_not_found",
        ),
        (
            Method::GET,
            format!("/api/executions/{e}?session_id={s}"),
            "session_not_found",
        ),
        (
            Method::DELETE,
            format!("/api/executions/{e}?session_id={s}"),
            "session_not_found",
        ),
        (
            Method::GET,
            format!("/events?session_id={s}"),
            "session_not_found",
        ),
        (
            Method::DELETE,
            format!("/api/webhooks/{h}"),
            "webhook_not_found",
        ),
        (
            Method::GET,
            format!("/api/webhooks/{h}/deliveries"),
            "webhook_not_found",
        ),
        (
            Method::GET,
            "/api/admin/users/carol".into(),
            "user_not_found",
        ),
        (
            Method::PATCH,
            "/api/admin/users/carol".into(),
            "user_not_found",
        ),
        (
            Method::DELETE,
            "/api/admin/users/carol".into(),
            "user_not_found",
        ),
    ]
}

/// `acme`'s ids swapped for fresh ones nobody holds.
fn guessed(a: &Acme) -> Acme {
    let fresh = || uuid::Uuid::new_v4().to_string();
    Acme {
        session: fresh(),
        workflow: a.workflow.clone(),
        execution: fresh(),
        webhook: fresh(),
    }
}

/// The body of an answer, without its request id (which differs per request).
async fn body_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let mut body = json(response).await;
    body.as_object_mut().unwrap().remove("request_id");
    (status, body)
}

#[actix_web::test]
async fn another_tenants_resources_answer_exactly_like_unknown_ones() {
    let app = spawn_app_with(|s| s.egress_allow = vec!["127.0.0.1".into()]).await;
    app.add_tenant("acme").await;
    app.add_tenant("globex").await;
    let alice = app.token_in("acme", "alice", &["developer"]);
    let a = acme(&app, &alice).await;
    // Same user name, other tenant, and its administrator: the most any caller there has.
    let intruder = app.token_in("globex", "alice", &["admin"]);
    // Bodies that would be valid for acme, so that only the lookup can refuse them.
    let body_for = |path: &str| {
        if path.starts_with("/api/admin/users") {
            json!({"disabled": true})
        } else if path.starts_with("/api/workflows") {
            route_and_merge()
        } else {
            json!({"workflow_id": a.workflow})
        }
    };

    // The intruder's answer to `method path`, as (status, body).
    let probe = async |method: Method, path: String| {
        body_of(send(&app, &intruder, method, &path, Some(&body_for(&path))).await).await
    };
    for (real, unknown) in named_routes(&a).into_iter().zip(named_routes(&guessed(&a))) {
        let (method, path, code) = real;
        let theirs = probe(method.clone(), path.clone()).await;
        assert_eq!(theirs.0, 404, "{method} {path}: {theirs:?}");
        assert_eq!(theirs.1["code"], code, "{method} {path}");
        let (method, path, _) = unknown;
        let nobodys = probe(method.clone(), path.clone()).await;
        assert_eq!(
            theirs, nobodys,
            "{method} {path}: another tenant's differs from unknown"
        );
    }
    // SSE resume with the other tenant's session id.
    let resume = app
        .request(Method::GET, &format!("/events?session_id={}", a.session))
        .bearer_auth(&intruder)
        .header("Last-Event-ID", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resume.status(), 404);

    // Listings and filters find nothing of acme's.
    for path in [
        "/api/sessions".to_owned(),
        "/api/webhooks".to_owned(),
        format!("/api/events/recent?session_id={}", a.session),
        "/api/events/recent".to_owned(),
        "/api/executions/history?user_id=alice".to_owned(),
        format!("/api/executions/history?session_id={}", a.session),
        "/api/admin/users".to_owned(),
        "/api/admin/audit?user=root".to_owned(),
    ] {
        let answer = send(&app, &intruder, Method::GET, &path, None).await;
        let status = answer.status();
        // `filters` echoes the caller's own query back; everything else is data.
        let mut answer = json(answer).await;
        answer.as_object_mut().unwrap().remove("filters");
        let text = answer.to_string();
        assert!(
            !text.contains(&a.session) && !text.contains(&a.execution) && !text.contains("carol"),
            "{path} ({status}) leaks acme: {text}"
        );
        assert!(
            !text.contains("\"acme\""),
            "{path} ({status}) names acme: {text}"
        );
    }

    // WebSocket: the handshake and every message on acme's session.
    let refused = WsClient::try_connect(
        &app,
        Some(intruder.clone()),
        &format!("session_id={}", a.session),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(refused.0, 404);
    assert_eq!(refused.1["code"], "session_not_found");
    let mut ws = WsClient::connect_with(&app, Some(intruder.clone()), "").await;
    for message in [
        json!({"type": "subscribe_events", "session_id": a.session}),
        json!({"type": "execute_workflow", "session_id": a.session, "workflow_id": a.workflow}),
        json!({"type": "get_status", "session_id": a.session, "execution_id": a.execution}),
        json!({"type": "cancel_execution", "session_id": a.session, "execution_id": a.execution}),
    ] {
        let answer = ws.request(&message).await;
        assert_eq!(answer["type"], "error", "{message}: {answer}");
        assert_eq!(answer["error"]["code"], "session_not_found", "{message}");
    }
    // A room of the same name is another room.
    let joined = ws
        .request(&json!({"type": "join_room", "room_id": "shared"}))
        .await;
    assert_eq!(joined["members"], json!([]));

    // Acme's things are all still there.
    let own = send(
        &app,
        &alice,
        Method::GET,
        &format!("/api/sessions/{}", a.session),
        None,
    )
    .await;
    assert_eq!(own.status(), 200);
    let own = send(&app, &alice, Method::GET, "/api/webhooks", None).await;
    assert_eq!(json(own).await["total"], 1);
    let carol = send(
        &app,
        &app.token_in("acme", "root", &["admin"]),
        Method::GET,
        "/api/admin/users/carol",
        None,
    )
    .await;
    assert_eq!(carol.status(), 200);
}
