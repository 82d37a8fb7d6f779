//! Every error has the gateway's JSON shape, checked whole.

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn unknown_routes_wrong_methods_and_bad_bodies() {
    let app = spawn_app_with(|s| s.max_body_bytes = 2048).await;
    let response = app.send_as("alice", Method::GET, "/api/nope").await;
    assert_error(response, 404, "not_found", "No route for /api/nope").await;

    let response = app.send_as("alice", Method::PUT, "/api/sessions").await;
    assert_error(
        response,
        405,
        "method_not_allowed",
        "PUT is not allowed on this route",
    )
    .await;

    let response = app
        .as_user("alice", Method::POST, "/api/sessions")
        .body(format!(
            "{{\"metadata\": {{\"blob\": \"{}\"}}}}",
            "x".repeat(4096)
        ))
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        413,
        "payload_too_large",
        "The request body is too large",
    )
    .await;

    let response = app
        .as_user("alice", Method::POST, "/api/sessions")
        .body("{\"metadata\": ")
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        400,
        "invalid_json",
        "The request body is not valid JSON: EOF while parsing a value at line 1 column 13",
    )
    .await;

    let response = app
        .as_user("alice", Method::POST, "/api/sessions")
        .json(&json!({"metadata": [1, 2]}))
        .send()
        .await
        .unwrap();
    assert_error_with(
        response,
        400,
        "invalid_request",
        "The request body has invalid fields",
        Some(json!([{"path": "metadata", "message": "invalid type: sequence, expected a map"}])),
    )
    .await;

    let response = app
        .as_user("alice", Method::POST, "/api/sessions")
        .json(&json!({"user_id": 42}))
        .send()
        .await
        .unwrap();
    assert_error_with(
        response,
        400,
        "invalid_request",
        "The request body has invalid fields",
        Some(json!([{"path": "user_id", "message": "invalid type: integer `42`, expected a string"}])),
    )
    .await;
}

#[actix_web::test]
async fn bad_query_values_are_400_naming_the_parameter() {
    let app = spawn_app().await;
    let response = app
        .send_as(
            "alice",
            Method::GET,
            "/api/events/recent?event_types=session.created,bogus",
        )
        .await;
    let body = json(response).await;
    assert_eq!(body["code"], "invalid_event_types");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Unknown event type 'bogus'; known types: workflow.created")
    );
    assert_eq!(
        body["errors"],
        json!([{"path": "event_types", "message": "unknown event type 'bogus'"}])
    );

    for (query, path, message) in [
        ("count=0", "count", "must be a whole number from 1 to 1000"),
        (
            "count=lots",
            "count",
            "must be a whole number from 1 to 1000",
        ),
        ("session_id=xyz", "session_id", "must be a UUID"),
    ] {
        let response = app
            .send_as("alice", Method::GET, &format!("/api/events/recent?{query}"))
            .await;
        assert_error_with(
            response,
            400,
            "invalid_request",
            &format!("Invalid query parameter {path}"),
            Some(json!([{"path": path, "message": message}])),
        )
        .await;
    }
}

#[actix_web::test]
async fn a_plain_client_request_id_is_echoed_and_a_hostile_one_replaced() {
    let app = spawn_app().await;
    let response = app
        .request(Method::GET, "/api/sessions")
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-123");
    assert_eq!(json(response).await["request_id"], "trace-123");

    let response = app
        .request(Method::GET, "/api/sessions")
        .header("x-request-id", "has spaces; and=more")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
}
