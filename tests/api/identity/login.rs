//! Login, refresh rotation and reuse, logout, lockout and its timing parity.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::*;

async fn refresh(app: &TestApp, token: &Value) -> Response {
    app.request(Method::POST, "/api/auth/refresh")
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap()
}

async fn sessions_status(app: &TestApp, access: &Value) -> u16 {
    app.request(Method::GET, "/api/sessions")
        .bearer_auth(access.as_str().unwrap())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_web::test]
async fn login_refresh_and_logout() {
    let app = spawn_app().await;
    let pair = tokens(&app, "admin", ADMIN_PASSWORD).await;
    assert_eq!(pair["token_type"], "bearer");
    assert_eq!(pair["expires_in"], 900);
    let me = app
        .request(Method::GET, "/api/auth/me")
        .bearer_auth(pair["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let me = json(me).await;
    assert_eq!(me["user_id"], "admin");
    assert_eq!(me["tenant_id"], "default");
    assert_eq!(me["roles"], json!(["admin"]));
    assert!(
        me["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("audit:read"))
    );

    // Refresh rotates: a new pair, and both access tokens work until logout.
    let renewed = json(refresh(&app, &pair["refresh_token"]).await).await;
    assert_ne!(renewed["refresh_token"], pair["refresh_token"]);
    assert_eq!(sessions_status(&app, &renewed["access_token"]).await, 200);

    let out = app
        .request(Method::POST, "/api/auth/logout")
        .bearer_auth(renewed["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    // Logout revokes the token and its whole login family, refresh tokens included.
    for access in [&renewed["access_token"], &pair["access_token"]] {
        let response = app
            .request(Method::GET, "/api/sessions")
            .bearer_auth(access.as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_error(
            response,
            401,
            "invalid_token",
            "Invalid authentication credentials: the token has been revoked",
        )
        .await;
    }
    let again = refresh(&app, &renewed["refresh_token"]).await;
    assert_error(
        again,
        401,
        "invalid_token",
        "Invalid authentication credentials",
    )
    .await;
    assert_eq!(audit(&app, "action=auth.logout").await.len(), 1);
}

#[actix_web::test]
async fn reusing_a_rotated_refresh_token_revokes_the_family() {
    let app = spawn_app().await;
    let first = tokens(&app, "admin", ADMIN_PASSWORD).await;
    let second = json(refresh(&app, &first["refresh_token"]).await).await;
    // The stolen copy of the first refresh token comes back.
    let reuse = refresh(&app, &first["refresh_token"]).await;
    assert_error(
        reuse,
        401,
        "invalid_token",
        "Invalid authentication credentials",
    )
    .await;
    assert_eq!(sessions_status(&app, &second["access_token"]).await, 401);
    let after = refresh(&app, &second["refresh_token"]).await;
    assert_eq!(after.status(), 401);
    let entries = audit(&app, "action=auth.refresh_reuse&outcome=denied").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["user_id"], "admin");
    // Bad input answers with stable codes.
    let malformed = app
        .request(Method::POST, "/api/auth/refresh")
        .json(&json!({"token": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(malformed).await["code"], "invalid_request");
    let garbage = refresh(&app, &json!("not-a-jwt")).await;
    assert_error(
        garbage,
        401,
        "invalid_token",
        "Invalid authentication credentials",
    )
    .await;
}

#[actix_web::test]
async fn failed_logins_lock_the_account_and_unknown_users_look_the_same() {
    let app = spawn_app_with(|s| s.max_login_attempts = 3).await;
    user_with_roles(&app, "dora", &["developer"]).await;
    for _ in 0..3 {
        let response = login(&app, "dora", "wrong-password").await;
        assert_error(
            response,
            401,
            "invalid_credentials",
            "Invalid username or password",
        )
        .await;
    }
    let locked = login(&app, "dora", "dora-password").await;
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((890..=900).contains(&retry_after), "{retry_after}");
    assert_error(
        locked,
        429,
        "account_locked",
        "Too many failed logins; the account is locked for a while",
    )
    .await;

    for _ in 0..3 {
        let response = login(&app, "nobody-here", "wrong-password").await;
        assert_error(
            response,
            401,
            "invalid_credentials",
            "Invalid username or password",
        )
        .await;
    }
    assert_eq!(audit(&app, "action=auth.lockout&user=dora").await.len(), 1);
    assert_eq!(
        audit(&app, "action=auth.login&outcome=failure&user=nobody-here")
            .await
            .len(),
        3
    );
    assert_eq!(
        audit(&app, "action=auth.login&outcome=denied").await.len(),
        1
    );
}

#[actix_web::test]
async fn unknown_users_take_as_long_as_wrong_passwords() {
    let app = spawn_app_with(|s| s.max_login_attempts = 1000).await;
    user_with_roles(&app, "tim", &["viewer"]).await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    // Interleaved, so load from other tests falls on both alike.
    for _ in 0..15 {
        for (user, times) in [("tim", &mut known), ("nobody-here", &mut unknown)] {
            let started = Instant::now();
            let response = login(&app, user, "wrong-password").await;
            times.push(started.elapsed());
            assert_error(
                response,
                401,
                "invalid_credentials",
                "Invalid username or password",
            )
            .await;
        }
    }
    // Both paths verify one argon2id hash; skipping it would make unknown users tens of
    // times faster, far outside this band (which is wide because the other tests' load
    // falls on the machine's two cores while these run).
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (known, unknown) = (median(known), median(unknown));
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    assert!(
        (1.0 / 5.0..5.0).contains(&ratio),
        "known {known:?} vs unknown {unknown:?}"
    );
}

#[actix_web::test]
async fn malformed_logins_are_400() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/api/auth/login")
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(json(response).await["code"], "invalid_json");
    let response = app
        .request(Method::POST, "/api/auth/login")
        .json(&json!({"username": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(json(response).await["code"], "invalid_request");
}
