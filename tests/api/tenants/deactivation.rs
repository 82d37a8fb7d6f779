//! What a credential's tenant admits: no `tenant_id` → the default tenant; an unknown one
//! → 401; a deactivated one → 403 `tenant_inactive` on every route, the WebSocket handshake
//! and every message of an open connection, with its running executions cancelled, its
//! connections closed and its streams ended. Activating it again lets it back in.

use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::*;
use crate::{
    executions::silent_server,
    realtime::client::{Closed, SseReader, WsClient},
};

#[actix_web::test]
async fn a_token_without_a_tenant_acts_in_the_default_one_and_an_unknown_tenant_is_refused() {
    let app = spawn_app().await;
    let me = json(app.send_as("alice", Method::GET, "/api/auth/me").await).await;
    assert_eq!(me["tenant_id"], "default");
    let stranger = app.token_in("nowhere", "alice", &[]);
    for (method, path) in [
        (Method::GET, "/api/sessions"),
        (Method::POST, "/api/sessions"),
        (Method::GET, "/api/auth/me"),
    ] {
        let response = send(&app, &stranger, method, path, None).await;
        assert_error(
            response,
            401,
            "invalid_token",
            "Invalid authentication credentials: unknown tenant",
        )
        .await;
    }
    let refused = WsClient::try_connect(&app, Some(stranger), "")
        .await
        .err()
        .unwrap();
    assert_eq!(refused.0, 401);
    assert_eq!(refused.1["code"], "invalid_token");
}

#[actix_web::test]
async fn a_deactivated_tenant_is_refused_everywhere_and_its_live_work_ends() {
    let port = silent_server();
    let app = spawn_app_with(|s| s.egress_allow = vec!["127.0.0.1".into()]).await;
    app.add_tenant("acme").await;
    let alice = app.token_in("acme", "alice", &["developer"]);
    let session = json(send(&app, &alice, Method::POST, "/api/sessions", None).await).await;
    let session = session["session_id"].as_str().unwrap().to_owned();
    let hanging = json!({"name": "hang", "nodes": [
        {"id": "call", "type": "HTTPRequestNode", "config": {"url": format!("http://127.0.0.1:{port}/"), "timeout": 60}}
    ]});
    let created = send(
        &app,
        &alice,
        Method::POST,
        &format!("/api/workflows?session_id={session}"),
        Some(&hanging),
    )
    .await;
    assert_eq!(created.status(), 200);
    let workflow = json(created).await["workflow_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ws =
        WsClient::connect_with(&app, Some(alice.clone()), &format!("session_id={session}")).await;
    let sse = app
        .request(Method::GET, &format!("/events?session_id={session}"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(sse);
    let started = send(
        &app,
        &alice,
        Method::POST,
        &format!("/api/executions?session_id={session}"),
        Some(&json!({"workflow_id": workflow})),
    )
    .await;
    let execution = json(started).await["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = ws.events_until("node.started").await;
    assert_eq!(running.last().unwrap()["node_id"], "call");

    let off = as_platform(
        &app,
        Method::POST,
        "/api/admin/tenants/acme/deactivate",
        None,
    )
    .await;
    assert_eq!(off.status(), 200);
    assert_eq!(json(off).await["active"], false);

    // The connection is closed with the reason (the run's cancellation may come first).
    let closed = loop {
        if let Err(closed) = ws.next_frame(crate::realtime::client::WAIT).await {
            break closed;
        }
    };
    assert_eq!(
        closed,
        Closed::Frame(CloseCode::Policy, "the tenant was deactivated".into())
    );
    let last = sse.until("stream.closed").await;
    assert_eq!(
        last.last().unwrap().data.as_ref().unwrap()["reason"],
        "tenant_inactive"
    );

    // Every route, the handshake: 403 tenant_inactive.
    for (method, path) in [
        (Method::GET, format!("/api/sessions/{session}")),
        (Method::POST, "/api/sessions".to_owned()),
        (
            Method::GET,
            format!("/api/executions/{execution}?session_id={session}"),
        ),
        (Method::GET, "/api/auth/me".to_owned()),
    ] {
        let response = send(&app, &alice, method, &path, None).await;
        assert_error(
            response,
            403,
            "tenant_inactive",
            "The tenant is deactivated",
        )
        .await;
    }
    let refused = WsClient::try_connect(&app, Some(alice.clone()), "")
        .await
        .err()
        .unwrap();
    assert_eq!(refused.0, 403);
    assert_eq!(refused.1["code"], "tenant_inactive");

    // Back on: the run stayed cancelled, with the reason, and the session is still there.
    let on = as_platform(&app, Method::POST, "/api/admin/tenants/acme/activate", None).await;
    assert_eq!(json(on).await["active"], true);
    let run = json(
        send(
            &app,
            &alice,
            Method::GET,
            &format!("/api/executions/{execution}?session_id={session}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert_eq!(run["error"], "cancelled: the tenant was deactivated");
    let events = json(
        send(
            &app,
            &alice,
            Method::GET,
            &format!("/api/events/recent?session_id={session}&event_types=workflow.cancelled"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(events["total"], 1, "{events}");
    assert_eq!(
        events["events"][0]["error"],
        "cancelled: the tenant was deactivated"
    );
    let audit = json(
        as_platform(
            &app,
            Method::GET,
            "/api/admin/audit?action=tenant.deactivate",
            None,
        )
        .await,
    )
    .await;
    assert_eq!(audit["total"], 1);
}

#[actix_web::test]
async fn a_deactivated_tenants_users_cannot_log_in() {
    let app = spawn_app().await;
    app.add_tenant("acme").await;
    let acme_admin = app.token_in("acme", "root", &["admin"]);
    let created = send(
        &app,
        &acme_admin,
        Method::POST,
        "/api/admin/users",
        Some(&json!({"username": "carol", "password": "carol-password"})),
    )
    .await;
    assert_eq!(created.status(), 201);
    let login = || async {
        app.request(Method::POST, "/api/auth/login")
            .json(&json!({"username": "carol", "password": "carol-password", "tenant_id": "acme"}))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(login().await.status(), 200);
    as_platform(
        &app,
        Method::POST,
        "/api/admin/tenants/acme/deactivate",
        None,
    )
    .await;
    assert_error(
        login().await,
        403,
        "tenant_inactive",
        "The tenant is deactivated",
    )
    .await;
}
