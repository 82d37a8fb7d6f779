//! TOTP: enrolment with the password, confirmation with a code, and logins that need the
//! code because the user enabled it or their role demands it.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use kailash_gateway::{auth::mfa::code_at, clock::ManualClock};
use reqwest::Method;
use serde_json::json;

use super::*;

#[actix_web::test]
async fn a_role_that_demands_mfa_enrols_and_then_logs_in_with_codes() {
    let now = Utc.with_ymd_and_hms(2026, 11, 18, 10, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(now));
    let app = spawn_with_clock(clock.clone(), |s| {
        s.mfa_required_roles = vec!["operator".into()]
    })
    .await;
    let admin = admin_token(&app).await;
    let created = app
        .request(Method::POST, "/api/admin/users")
        .bearer_auth(&admin)
        .json(&json!({"username": "otto", "password": "otto-password", "roles": ["operator"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let post = |path: &'static str, body: Value| app.request(Method::POST, path).json(&body).send();
    let login_with = |code: Option<String>| {
        post(
            "/api/auth/login",
            json!({"username": "otto", "password": "otto-password", "totp_code": code}),
        )
    };

    let refused = login_with(None).await.unwrap();
    assert_error(
        refused,
        401,
        "mfa_required",
        "Your role requires a second factor: enrol at /api/auth/mfa/enroll first",
    )
    .await;
    let wrong = post(
        "/api/auth/mfa/enroll",
        json!({"username": "otto", "password": "nope-nope"}),
    )
    .await
    .unwrap();
    assert_error(
        wrong,
        401,
        "invalid_credentials",
        "Invalid username or password",
    )
    .await;
    let enrolled = post(
        "/api/auth/mfa/enroll",
        json!({"username": "otto", "password": "otto-password"}),
    )
    .await
    .unwrap();
    assert_eq!(enrolled.status(), 200);
    let enrolled = json(enrolled).await;
    let secret = enrolled["secret"].as_str().unwrap().to_owned();
    assert!(
        enrolled["otpauth_url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );

    let confirm = |code: String| {
        post(
            "/api/auth/mfa/confirm",
            json!({"username": "otto", "password": "otto-password", "totp_code": code}),
        )
    };
    // A code from another time step is wrong.
    let stale = code_at(&secret, now - chrono::Duration::minutes(10)).unwrap();
    assert_eq!(confirm(stale.clone()).await.unwrap().status(), 401);
    assert_eq!(
        confirm(code_at(&secret, now).unwrap())
            .await
            .unwrap()
            .status(),
        200
    );

    let missing = login_with(None).await.unwrap();
    assert_error(
        missing,
        401,
        "mfa_required",
        "A valid totp_code is required for this account",
    )
    .await;
    let bad = login_with(Some(stale)).await.unwrap();
    assert_error(
        bad,
        401,
        "invalid_credentials",
        "Invalid username or password",
    )
    .await;
    // The clock moves on: the code of the new step works.
    let later = now + chrono::Duration::hours(1);
    clock.set(later);
    let ok = login_with(code_at(&secret, later)).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(json(ok).await["access_token"].is_string());

    let again = post(
        "/api/auth/mfa/enroll",
        json!({"username": "otto", "password": "otto-password"}),
    )
    .await
    .unwrap();
    assert_error(
        again,
        400,
        "invalid_request",
        "MFA is already enabled for this account",
    )
    .await;
    for action in ["mfa.enroll", "mfa.enable"] {
        assert_eq!(
            audit(&app, &format!("action={action}&user=otto"))
                .await
                .len(),
            1
        );
    }
    assert_eq!(
        audit(&app, "action=auth.login&outcome=failure&user=otto")
            .await
            .len(),
        5
    );
}
