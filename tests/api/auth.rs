//! Gated mode: which credentials are accepted and how refusals look.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use kailash_gateway::auth::token::{MintRequest, TokenType};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// A token built the way another program would: by hand, with the shared secret.
fn foreign_token(secret: &str, claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn kailash_claims(overrides: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": "alice", "iss": "kailash-gateway", "aud": "kailash-api",
        "exp": now + 600, "iat": now, "jti": uuid::Uuid::new_v4().to_string(),
        "token_type": "access", "roles": ["user"], "permissions": ["workflow:execute"],
    });
    for (key, value) in overrides.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

#[actix_web::test]
async fn tokens_minted_elsewhere_with_the_same_secret_work() {
    let app = spawn_app().await;
    for (claims, principal) in [
        (kailash_claims(json!({})), "alice"),
        // Older Kailash tokens: principal in `user_id`, audience as a list.
        (
            kailash_claims(json!({"sub": null, "user_id": "bob", "aud": ["kailash-api"]})),
            "bob",
        ),
        (
            kailash_claims(json!({"sub": null, "uid": "carol"})),
            "carol",
        ),
    ] {
        let created = app
            .request(Method::POST, "/api/sessions")
            .bearer_auth(foreign_token(&app.secret, claims))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 200);
        assert_eq!(json(created).await["user_id"], principal);
    }
}

#[actix_web::test]
async fn bad_credentials_get_401_with_a_challenge() {
    let app = spawn_app().await;
    let invalid = "Invalid authentication credentials";
    let cases: Vec<(Option<String>, &str, String)> = vec![
        (None, "missing_credentials", "Not authenticated".into()),
        (
            Some(app.mint(MintRequest {
                subject: "alice".into(),
                tenant_id: None,
                roles: vec![],
                permissions: vec![],
                lifetime: chrono::Duration::minutes(-10),
                token_type: TokenType::Access,
            })),
            "token_expired",
            "The token has expired".into(),
        ),
        (
            Some(foreign_token(&random_secret(), kailash_claims(json!({})))),
            "invalid_token",
            format!("{invalid}: bad signature"),
        ),
        (
            Some(foreign_token(
                &app.secret,
                kailash_claims(json!({"aud": "someone-else"})),
            )),
            "invalid_token",
            format!("{invalid}: wrong audience"),
        ),
        (
            Some(foreign_token(
                &app.secret,
                kailash_claims(json!({"iss": "evil"})),
            )),
            "invalid_token",
            format!("{invalid}: wrong issuer"),
        ),
        (
            Some(foreign_token(
                &app.secret,
                kailash_claims(json!({"token_type": "refresh"})),
            )),
            "invalid_token",
            format!("{invalid}: a refresh token is not an access token"),
        ),
        (
            Some(foreign_token(
                &app.secret,
                kailash_claims(json!({"sub": null})),
            )),
            "invalid_token",
            format!("{invalid}: the token names no principal"),
        ),
        (
            Some("not.a.jwt".into()),
            "invalid_token",
            format!("{invalid}: malformed token"),
        ),
    ];
    for (token, code, detail) in cases {
        let mut request = app.request(Method::GET, "/api/sessions");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert_error(response, 401, code, &detail).await;
    }
}

#[actix_web::test]
async fn query_tokens_only_count_on_streaming_paths_and_unknown_api_keys_are_refused() {
    let app = spawn_app().await;
    let token = app.token_for("alice");
    let response = app
        .request(Method::GET, &format!("/api/sessions?access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "missing_credentials", "Not authenticated").await;
    let response = app
        .request(Method::GET, "/api/sessions")
        .header("x-api-key", "whatever")
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        401,
        "invalid_token",
        "Invalid authentication credentials: unknown or revoked API key",
    )
    .await;
}

#[actix_web::test]
async fn public_paths_need_no_credential_and_everything_else_does() {
    let app = spawn_app().await;
    for path in ["/health", "/health/detailed", "/ready", "/metrics"] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    for path in [
        "/",
        "/api/stats",
        "/api/sessions",
        "/api/events/recent",
        "/no/such/route",
    ] {
        let response = app.request(Method::GET, path).send().await.unwrap();
        assert_error(response, 401, "missing_credentials", "Not authenticated").await;
    }
}
