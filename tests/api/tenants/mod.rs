//! Multi-tenancy over the real server: the platform administrators' tenant routes, what a
//! credential's tenant admits (unknown → 401, deactivated → 403 everywhere, with its live
//! work ended), and the adversarial cross-tenant suite.

mod admin;
mod deactivation;
mod isolation;
pub(crate) mod limits;

use reqwest::{Method, Response};
use serde_json::Value;

use crate::helpers::*;

/// Sends `method path` with `token` (and a JSON `body`, if any).
pub async fn send(
    app: &Api,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Response {
    let mut request = app.request(method, path).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("request completes")
}

/// As the platform administrator.
pub async fn as_platform(app: &Api, method: Method, path: &str, body: Option<&Value>) -> Response {
    send(app, &app.platform_admin_token(), method, path, body).await
}
