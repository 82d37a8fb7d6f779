//! The JWT attack set: every forged or unusable token is refused with 401 and a stable
//! code, and a revoked token is refused on HTTP and on the WebSocket handshake.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::Method;
use serde_json::json;

use super::*;
use crate::realtime::client::WsClient;

/// Unpadded base64url, to hand-craft tokens no JWT library would sign.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn claims(overrides: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "sub": "mallory", "iss": "kailash-gateway", "aud": "kailash-api",
        "exp": now + 600, "iat": now, "jti": uuid::Uuid::new_v4().to_string(),
        "token_type": "access", "roles": ["admin"],
    });
    for (key, value) in overrides.as_object().unwrap() {
        claims[key] = value.clone();
    }
    claims
}

fn signed(secret: &str, header: Header, claims: &Value) -> String {
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn status_and_code(app: &TestApp, token: &str) -> (u16, String) {
    let response = app
        .request(Method::GET, "/api/sessions")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        json(response).await["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[actix_web::test]
async fn forged_and_unusable_tokens_are_refused() {
    let app = spawn_app().await;
    let hs = |c: Value| signed(&app.secret, Header::new(Algorithm::HS256), &c);
    let now = chrono::Utc::now().timestamp();
    let good = hs(claims(json!({})));
    assert_eq!(
        status_and_code(&app, &good).await.0,
        200,
        "the control token works"
    );

    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims(json!({})).to_string().as_bytes())
    );
    let (head, rest) = good.split_once('.').unwrap();
    let signature = rest.split_once('.').unwrap().1;
    let tampered = format!(
        "{head}.{}.{signature}",
        b64url(claims(json!({"sub": "admin"})).to_string().as_bytes())
    );
    let mut with_kid = Header::new(Algorithm::HS256);
    with_kid.kid = Some("retired-key".into());
    let hs384 = signed(
        &app.secret,
        Header::new(Algorithm::HS384),
        &claims(json!({})),
    );
    let cases = [
        ("alg none", none, "invalid_token"),
        ("tampered payload", tampered, "invalid_token"),
        (
            "unknown kid",
            signed(&app.secret, with_kid, &claims(json!({}))),
            "invalid_token",
        ),
        ("another HMAC algorithm", hs384, "invalid_token"),
        (
            "other secret",
            signed(
                &random_secret(),
                Header::new(Algorithm::HS256),
                &claims(json!({})),
            ),
            "invalid_token",
        ),
        (
            "expired",
            hs(claims(json!({"exp": now - 120}))),
            "token_expired",
        ),
        (
            "future nbf",
            hs(claims(json!({"nbf": now + 600}))),
            "invalid_token",
        ),
        (
            "wrong iss",
            hs(claims(json!({"iss": "someone-else"}))),
            "invalid_token",
        ),
        (
            "wrong aud",
            hs(claims(json!({"aud": "another-api"}))),
            "invalid_token",
        ),
        (
            "refresh as access",
            hs(claims(json!({"token_type": "refresh"}))),
            "invalid_token",
        ),
    ];
    for (name, token, code) in cases {
        assert_eq!(
            status_and_code(&app, &token).await,
            (401, code.to_owned()),
            "{name}"
        );
    }
}

#[actix_web::test]
async fn a_revoked_token_is_refused_over_http_and_websocket() {
    let app = spawn_app().await;
    let access = admin_token(&app).await;
    let mut open = WsClient::connect_with(&app, Some(access.clone()), "").await;
    let out = app
        .request(Method::POST, "/api/auth/logout")
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    assert_eq!(
        status_and_code(&app, &access).await,
        (401, "invalid_token".into())
    );
    // The connection opened before the logout: its next message is refused.
    let reply = open.request(&json!({"type": "ping"})).await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["error"]["code"], "invalid_token");
    // And no new connection opens with the token.
    let refused = WsClient::try_connect(&app, Some(access), "")
        .await
        .err()
        .unwrap();
    assert_eq!(refused.0, 401);
    assert_eq!(refused.1["code"], "invalid_token");
}
