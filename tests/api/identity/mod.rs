//! Identity and access over the real server: logins and tokens, lockout, API keys, the
//! JWT attack set, the RBAC matrix (HTTP and WebSocket) and the audit log.

mod abac;
mod api_keys;
mod limits;
mod login;
mod mfa;
mod rbac;
mod signing;
mod tokens;

use std::sync::Arc;

use kailash_gateway::{
    Application,
    app::Services,
    clock::ManualClock,
    config::{Secret, Settings},
};
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::helpers::*;

/// Logs in and returns the raw answer.
pub async fn login(app: &TestApp, username: &str, password: &str) -> Response {
    app.request(Method::POST, "/api/auth/login")
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

/// Logs in (expecting success) and returns the token pair.
pub async fn tokens(app: &TestApp, username: &str, password: &str) -> Value {
    let response = login(app, username, password).await;
    assert_eq!(response.status(), 200, "login of {username}");
    json(response).await
}

pub async fn admin_token(app: &TestApp) -> String {
    tokens(app, "admin", ADMIN_PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates a user with `roles` (password `<name>-password`) and returns an access token.
pub async fn user_with_roles(app: &TestApp, name: &str, roles: &[&str]) -> String {
    let password = format!("{name}-password");
    let created = app
        .request(Method::POST, "/api/admin/users")
        .bearer_auth(admin_token(app).await)
        .json(&json!({"username": name, "password": password, "roles": roles}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    tokens(app, name, &password).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The audit entries matching `query` (e.g. `action=auth.login&outcome=failure`).
pub async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app
        .request(Method::GET, &format!("/api/admin/audit?{query}"))
        .bearer_auth(admin_token(app).await)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    json(response).await["entries"].as_array().unwrap().clone()
}

/// A gateway whose identity decisions read `clock`, with `customize` applied to the settings.
pub async fn spawn_with_clock(
    clock: Arc<ManualClock>,
    customize: impl FnOnce(&mut Settings),
) -> TestApp {
    let secret = random_secret();
    let mut settings = test_settings();
    settings.api_gateway_secret = Some(Secret::new(secret.clone()));
    customize(&mut settings);
    let services = Services {
        clock,
        ..Services::default()
    };
    let signing = Secret::new(secret.clone());
    let app = Application::build_with(settings, Some(&signing), services)
        .await
        .unwrap();
    spawn(app, secret).await
}
