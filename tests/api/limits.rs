//! Request rate limits: per user, per client address (through trusted proxies only), per
//! tenant, and a tenant's API calls per day; each reached (429 with its code, `Retry-After`
//! and `RateLimit-*`) and reset, others unaffected, probes never limited.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, Response};

use crate::helpers::*;

/// Sleeps until just after a second begins, so a test's burst stays in one second's window.
async fn at_the_start_of_a_second() {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1_010 - into))).await;
}

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
        .to_owned()
}

async fn sessions(app: &Api, user: &str) -> Response {
    app.send_as(user, Method::GET, "/api/sessions").await
}

#[actix_web::test]
async fn a_users_requests_per_second_are_limited_and_reset_with_the_next_second() {
    let app = spawn_app_with(|s| s.user_requests_per_second = 3).await;
    at_the_start_of_a_second().await;
    for left in ["2", "1", "0"] {
        let allowed = sessions(&app, "alice").await;
        assert_eq!(allowed.status(), 200);
        assert_eq!(header(&allowed, "ratelimit-limit"), "3");
        assert_eq!(header(&allowed, "ratelimit-remaining"), left);
        assert_eq!(header(&allowed, "ratelimit-reset"), "1");
    }
    let refused = sessions(&app, "alice").await;
    assert_eq!(header(&refused, "retry-after"), "1");
    assert_eq!(header(&refused, "ratelimit-remaining"), "0");
    assert_error(
        refused,
        429,
        "user_requests_per_second_exceeded",
        "Rate limit reached: user_requests_per_second is 3; retry in 1 s",
    )
    .await;
    assert_eq!(sessions(&app, "bob").await.status(), 200, "bob has his own");
    let probe = app.request(Method::GET, "/health").send().await.unwrap();
    assert_eq!(probe.status(), 200);
    assert!(
        probe.headers().get("ratelimit-limit").is_none(),
        "probes are not limited"
    );

    at_the_start_of_a_second().await;
    assert_eq!(sessions(&app, "alice").await.status(), 200, "reset");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"kailash_quota_rejections_total{limit="user_requests_per_second"} 1"#),
        "{metrics}"
    );
}

/// `GET /api/sessions` as alice, claiming (in `X-Forwarded-For`) to come from `forwarded`.
async fn from(app: &Api, forwarded: &str) -> u16 {
    app.as_user("alice", Method::GET, "/api/sessions")
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_web::test]
async fn the_client_address_comes_from_x_forwarded_for_only_through_trusted_proxies() {
    let behind_proxy = spawn_app_with(|s| {
        s.ip_requests_per_second = 2;
        s.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    at_the_start_of_a_second().await;
    assert_eq!(from(&behind_proxy, "203.0.113.5").await, 200);
    // What the client wrote itself is left of what the proxy appended: not believed.
    assert_eq!(from(&behind_proxy, "198.51.100.1, 203.0.113.5").await, 200);
    let refused = behind_proxy
        .as_user("alice", Method::GET, "/api/sessions")
        .header("x-forwarded-for", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_error(
        refused,
        429,
        "ip_requests_per_second_exceeded",
        "Rate limit reached: ip_requests_per_second is 2; retry in 1 s",
    )
    .await;
    assert_eq!(
        from(&behind_proxy, "203.0.113.6").await,
        200,
        "another client"
    );

    // Without trusted proxies the header changes nothing: the peer is the client.
    let direct = spawn_app_with(|s| s.ip_requests_per_second = 2).await;
    at_the_start_of_a_second().await;
    assert_eq!(from(&direct, "203.0.113.1").await, 200);
    assert_eq!(from(&direct, "203.0.113.2").await, 200);
    assert_eq!(
        from(&direct, "203.0.113.3").await,
        429,
        "spoofing does not help"
    );
    // Unauthenticated requests count against the address too (login floods).
    let login = direct
        .request(Method::POST, "/api/auth/login")
        .json(&serde_json::json!({"username": "x", "password": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 429);
}

#[actix_web::test]
async fn a_tenants_requests_per_second_are_shared_by_its_users() {
    let app = spawn_app_with(|s| s.tenant_requests_per_second = 4).await;
    at_the_start_of_a_second().await;
    for user in ["alice", "bob", "alice", "carol"] {
        assert_eq!(sessions(&app, user).await.status(), 200);
    }
    assert_error(
        sessions(&app, "dave").await,
        429,
        "requests_per_second_exceeded",
        "Rate limit reached: requests_per_second is 4; retry in 1 s",
    )
    .await;
}

#[actix_web::test]
async fn a_tenants_own_limits_replace_the_deployments() {
    let app = spawn_app_with(|s| s.tenant_requests_per_second = 100).await;
    app.create_tenant(&serde_json::json!({"tenant_id": "acme", "name": "Acme",
        "limits": {"requests_per_second": 2, "api_calls_per_day": 3}}))
        .await;
    app.add_tenant("globex").await;
    let in_tenant = |tenant: &str| app.token_in(tenant, "alice", &[]);
    let list = async |token: String| {
        app.request(Method::GET, "/api/sessions")
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    };
    at_the_start_of_a_second().await;
    assert_eq!(list(in_tenant("acme")).await.status(), 200);
    assert_eq!(list(in_tenant("acme")).await.status(), 200);
    let refused = list(in_tenant("acme")).await;
    assert_eq!(json(refused).await["code"], "requests_per_second_exceeded");
    for _ in 0..5 {
        assert_eq!(
            list(in_tenant("globex")).await.status(),
            200,
            "the deployment's 100/s"
        );
    }
    at_the_start_of_a_second().await;
    assert_eq!(
        list(in_tenant("acme")).await.status(),
        200,
        "the third call today"
    );
    let spent = list(in_tenant("acme")).await;
    assert_eq!(json(spent).await["code"], "api_calls_per_day_exceeded");
}

#[actix_web::test]
async fn a_tenants_api_calls_per_day_end_until_midnight() {
    let app = spawn_app_with(|s| s.tenant_api_calls_per_day = 2).await;
    assert_eq!(sessions(&app, "alice").await.status(), 200);
    assert_eq!(sessions(&app, "bob").await.status(), 200);
    let refused = sessions(&app, "alice").await;
    assert_eq!(refused.status(), 429);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let to_midnight = 86_400 - now % 86_400;
    let retry: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!(retry.abs_diff(to_midnight) <= 2, "{retry} vs {to_midnight}");
    assert_eq!(json(refused).await["code"], "api_calls_per_day_exceeded");
    // Only `/api` calls count.
    assert_eq!(
        app.send_as("alice", Method::GET, "/ready").await.status(),
        200
    );
}

#[actix_web::test]
async fn websocket_messages_count_as_requests() {
    let app = spawn_app_with(|s| s.user_requests_per_second = 3).await;
    at_the_start_of_a_second().await;
    // The handshake is one request, each message another.
    let mut socket = crate::realtime::client::WsClient::connect(&app, "alice", "").await;
    for _ in 0..2 {
        let pong = socket.request(&serde_json::json!({"type": "ping"})).await;
        assert_eq!(pong["type"], "pong", "{pong}");
    }
    let refused = socket.request(&serde_json::json!({"type": "ping"})).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["error"]["code"],
        "user_requests_per_second_exceeded"
    );
    at_the_start_of_a_second().await;
    let pong = socket.request(&serde_json::json!({"type": "ping"})).await;
    assert_eq!(
        pong["type"], "pong",
        "the connection stays open, the limit resets"
    );
}

#[actix_web::test]
async fn a_tenants_clients_send_at_most_its_events_per_second() {
    let app = spawn_app().await;
    app.create_tenant(&serde_json::json!({"tenant_id": "acme", "name": "Acme",
        "limits": {"events_per_second": 2}}))
        .await;
    let token = app.token_in("acme", "alice", &[]);
    let mut socket = crate::realtime::client::WsClient::connect_with(&app, Some(token), "").await;
    let joined = socket
        .request(&serde_json::json!({"type": "join_room", "room_id": "design"}))
        .await;
    assert_eq!(joined["type"], "room_joined", "{joined}");
    at_the_start_of_a_second().await;
    let message = serde_json::json!({"type": "room_message", "room_id": "design", "message": 1});
    for _ in 0..2 {
        assert_eq!(socket.request(&message).await["type"], "room_message_sent");
    }
    let refused = socket.request(&message).await;
    assert_eq!(
        refused["error"]["code"], "events_per_second_exceeded",
        "{refused}"
    );
    // Joining is not an event: only what is relayed counts.
    let again = socket
        .request(&serde_json::json!({"type": "join_room", "room_id": "other"}))
        .await;
    assert_eq!(again["type"], "room_joined");
}
