//! `concurrent_sessions_limit`: a user's live sessions are bounded; closing one frees a slot
//! and other users are not affected.

use reqwest::Method;

use super::*;

#[actix_web::test]
async fn each_user_holds_at_most_the_configured_sessions() {
    let app = spawn_app_with(|s| s.concurrent_sessions_limit = 2).await;
    let first = app.create_session("amy").await;
    app.create_session("amy").await;
    let third = app.send_as("amy", Method::POST, "/api/sessions").await;
    assert_error(
        third,
        429,
        "too_many_sessions",
        "You already have 2 open sessions; close one first",
    )
    .await;
    // Someone else is not affected.
    app.create_session("ben").await;
    let closed = app
        .send_as("amy", Method::DELETE, &format!("/api/sessions/{first}"))
        .await;
    assert_eq!(closed.status(), 200);
    assert!(
        eventually(std::time::Duration::from_secs(5), async || {
            app.send_as("amy", Method::POST, "/api/sessions")
                .await
                .status()
                == 200
        })
        .await,
        "closing a session frees a slot"
    );
}
