//! `GET /api/executions/history`: the caller's runs from the store, filtered, paginated by
//! cursor, refused with stable codes; and the retention job pruning old history.

use std::time::Duration;

use kailash_gateway::auth::token::{MintRequest, TokenType};
use reqwest::Method;
use serde_json::{Value, json};

use super::{PG_FAULT, fresh_database, run_to_end, session_with_workflow, spawn_on};
use crate::helpers::*;

async fn history(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app
        .request(Method::GET, &format!("/api/executions/history?{query}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    json(response).await
}

fn ids(page: &Value) -> Vec<String> {
    page["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn history_pages_by_cursor_filters_and_shows_only_the_callers_own() {
    let _server_up = PG_FAULT.read().await;
    let app = spawn_on(&fresh_database().await, |_| {}).await;
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let mut runs = Vec::new();
    for _ in 0..5 {
        runs.push(run_to_end(&app, "alice", &session, &workflow).await);
    }
    let (bobs_session, bobs_workflow) = session_with_workflow(&app, "bob").await;
    let bobs_run = run_to_end(&app, "bob", &bobs_session, &bobs_workflow).await;
    app.state.gateway.flush().await;

    let alice = app.token_for("alice");
    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let page = history(&app, &alice, &query).await;
        assert!(page["count"].as_u64().unwrap() <= 2);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let newest_first: Vec<String> = runs.iter().rev().cloned().collect();
    assert_eq!(
        seen, newest_first,
        "every run once, newest first, none of bob's"
    );

    let completed = history(
        &app,
        &alice,
        &format!("status=completed&workflow_id={workflow}"),
    )
    .await;
    assert_eq!(completed["count"], 5);
    assert_eq!(history(&app, &alice, "status=failed").await["count"], 0);
    assert_eq!(
        history(&app, &alice, "since=2999-01-01T00:00:00Z").await["count"],
        0
    );
    assert_eq!(
        history(&app, &alice, "until=2000-01-01T00:00:00Z").await["count"],
        0
    );
    let first = &history(&app, &alice, "limit=1").await["executions"][0];
    assert_eq!(first["session_id"], session.as_str());
    assert_eq!(first["user_id"], "alice");
    assert_eq!(first["status"], "completed");

    // Another user's history: refused to a user, shown to an admin.
    let refused = app
        .request(Method::GET, "/api/executions/history?user_id=bob")
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_error(
        refused,
        403,
        "forbidden",
        "Only admins may read other users' execution history",
    )
    .await;
    let admin = app.mint(MintRequest {
        subject: "root".into(),
        tenant_id: None,
        roles: vec!["admin".into()],
        permissions: vec![],
        lifetime: chrono::Duration::minutes(5),
        token_type: TokenType::Access,
    });
    assert_eq!(ids(&history(&app, &admin, "user_id=bob").await), [bobs_run]);
}

#[actix_web::test]
async fn bad_history_parameters_answer_one_invalid_request_naming_each() {
    let app = spawn_app().await;
    let response = app
        .as_user(
            "alice",
            Method::GET,
            "/api/executions/history?status=done&since=yesterday&limit=0&cursor=nope",
        )
        .send()
        .await
        .unwrap();
    assert_error_with(
        response,
        400,
        "invalid_request",
        "The history query has invalid parameters",
        Some(json!([
            {"path": "status", "message": "must be one of started, running, completed, failed, cancelled, timeout"},
            {"path": "since", "message": "'yesterday' is not an RFC 3339 time"},
            {"path": "limit", "message": "must be a whole number from 1 to 500"},
            {"path": "cursor", "message": "is not a cursor this endpoint returned"},
        ])),
    )
    .await;
}

#[actix_web::test]
async fn the_in_memory_store_serves_history_too() {
    let app = spawn_app().await;
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let run = run_to_end(&app, "alice", &session, &workflow).await;
    app.state.gateway.flush().await;
    let page = history(&app, &app.token_for("alice"), "").await;
    assert_eq!(ids(&page), [run]);
    assert_eq!(page["executions"][0]["status"], "completed");
}

#[actix_web::test]
async fn the_retention_job_prunes_old_events_finished_executions_and_deliveries() {
    let _server_up = PG_FAULT.read().await;
    let url = fresh_database().await;
    // Ages of about a second, checked every 0.3 s.
    let app = spawn_on(&url, |s| {
        s.event_history_days = 1.0 / 86_400.0;
        s.execution_history_days = 1.0 / 86_400.0;
        s.retention_interval_minutes = 0.005;
    })
    .await;
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    run_to_end(&app, "alice", &session, &workflow).await;
    app.state.gateway.flush().await;
    let db = super::connect(&url).await;
    db.execute(
        "INSERT INTO webhook_deliveries VALUES ('default', gen_random_uuid(), gen_random_uuid(), \
         'workflow.completed', 1, 'delivered', 1, 200, NULL, now())",
        &[],
    )
    .await
    .unwrap();
    let count = async |table: &str| -> i64 {
        db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    };
    assert!(
        eventually(Duration::from_secs(10), async || {
            count("executions").await == 0
                && count("events").await == 0
                && count("node_runs").await == 0
                && count("webhook_deliveries").await == 0
        })
        .await,
        "old history is pruned"
    );
    assert_eq!(count("sessions").await, 1, "sessions are not history");
}
