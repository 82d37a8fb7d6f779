//! Webhooks against a real local receiver: retries with a verified signature, a receiver
//! that never succeeds (given up, recorded), and registration rules.

use std::{
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use kailash_gateway::realtime::webhooks::sign;
use reqwest::Method;
use serde_json::{Value, json};

use super::{run, session_with_workflow};
use crate::helpers::*;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A local HTTP receiver that answers 500 to its first `failures` requests (all of them
/// when `None`), then 200.
pub(crate) struct Receiver {
    pub(crate) url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) fn start(failures: Option<usize>) -> Self {
        let received = Arc::new(Mutex::new(Vec::<Received>::new()));
        let log = received.clone();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hook",
            listener.local_addr().unwrap().port()
        );
        let server = HttpServer::new(move || {
            let log = log.clone();
            App::new().default_service(web::to(move |req: HttpRequest, body: String| {
                let log = log.clone();
                async move {
                    let mut log = log.lock().unwrap();
                    log.push(Received {
                        headers: req
                            .headers()
                            .iter()
                            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                            .collect(),
                        body,
                    });
                    if failures.is_none_or(|n| log.len() <= n) {
                        HttpResponse::InternalServerError().finish()
                    } else {
                        HttpResponse::Ok().finish()
                    }
                }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_rt::spawn(server);
        Self { url, received }
    }

    pub(crate) fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn spawn_webhook_app(max_attempts: u32) -> TestApp {
    spawn_app_with(|s| {
        s.egress_allow = vec!["127.0.0.1".into()];
        s.webhook_retry_base_ms = 20;
        s.webhook_max_attempts = max_attempts;
    })
    .await
}

async fn register(app: &TestApp, user: &str, body: Value) -> Value {
    let response = app.post_json(user, "/api/webhooks", &body).await;
    assert_eq!(response.status(), 200);
    json(response).await
}

#[actix_web::test]
async fn a_failing_receiver_is_retried_until_it_takes_the_signed_event() {
    let app = spawn_webhook_app(5).await;
    let receiver = Receiver::start(Some(2));
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let (bobs_session, bobs_workflow) = session_with_workflow(&app, "bob").await;
    let hook = register(
        &app,
        "alice",
        json!({"url": receiver.url, "secret": "s3cret", "event_types": ["workflow.completed"]}),
    )
    .await;
    assert_eq!(hook["event_types"], json!(["workflow.completed"]));
    let hook_id = hook["webhook_id"].as_str().unwrap().to_owned();

    run(&app, "bob", &bobs_session, &bobs_workflow).await;
    let execution = run(&app, "alice", &session, &workflow).await;
    assert!(
        eventually(Duration::from_secs(10), async || receiver.requests().len()
            >= 3)
        .await
    );
    let requests = receiver.requests();
    assert_eq!(
        requests.len(),
        3,
        "two failures, then success: {requests:#?}"
    );
    for (attempt, request) in requests.iter().enumerate() {
        assert_eq!(
            request.header("x-kailash-event"),
            Some("workflow.completed")
        );
        assert_eq!(
            request.header("x-kailash-webhook-id"),
            Some(hook_id.as_str())
        );
        assert_eq!(
            request.header("x-kailash-attempt"),
            Some((attempt + 1).to_string().as_str())
        );
        assert_eq!(
            request.header("x-kailash-delivery-id"),
            requests[0].header("x-kailash-delivery-id"),
            "one delivery, retried"
        );
        let signature = format!("sha256={}", sign("s3cret", &request.body));
        assert_eq!(
            request.header("x-kailash-signature"),
            Some(signature.as_str())
        );
        let body: Value = serde_json::from_str(&request.body).unwrap();
        assert_eq!(body["webhook_id"], hook_id.as_str());
        assert_eq!(
            body["event"]["execution_id"],
            execution.as_str(),
            "alice's run only"
        );
        assert_eq!(body["event"]["user_id"], "alice");
    }

    let deliveries = async || {
        app.json_as(
            "alice",
            Method::GET,
            &format!("/api/webhooks/{hook_id}/deliveries"),
        )
        .await
    };
    // The receiver has its request a moment before the gateway records how it went.
    assert!(
        eventually(Duration::from_secs(5), async || deliveries().await["total"]
            == 1)
        .await,
        "the delivery is recorded"
    );
    let deliveries = deliveries().await;
    assert_eq!(deliveries["deliveries"][0]["status"], "delivered");
    assert_eq!(deliveries["deliveries"][0]["attempts"], 3);
    let stats = app.json_as("alice", Method::GET, "/api/stats").await;
    let webhook_stats = &stats["realtime"]["webhook_stats"];
    assert_eq!(webhook_stats["total_attempts"], 3);
    assert_eq!(webhook_stats["successful_deliveries"], 1);
    assert_eq!(webhook_stats["failed_attempts"], 2);
    let metrics = app.request(Method::GET, "/metrics").send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains(r#"kailash_webhook_deliveries_total{outcome="retried"} 2"#));
    assert!(metrics.contains(r#"kailash_webhook_deliveries_total{outcome="delivered"} 1"#));
}

#[actix_web::test]
async fn a_receiver_that_never_succeeds_is_given_up_and_recorded() {
    let app = spawn_webhook_app(3).await;
    let receiver = Receiver::start(None);
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    let hook = register(
        &app,
        "alice",
        json!({"url": receiver.url, "event_types": ["workflow.completed"], "session_id": session}),
    )
    .await;
    let hook_id = hook["webhook_id"].as_str().unwrap().to_owned();
    run(&app, "alice", &session, &workflow).await;
    let path = format!("/api/webhooks/{hook_id}/deliveries");
    assert!(
        eventually(Duration::from_secs(10), async || {
            app.json_as("alice", Method::GET, &path).await["total"] == 1
        })
        .await
    );
    let record = &app.json_as("alice", Method::GET, &path).await["deliveries"][0];
    assert_eq!(record["status"], "given_up");
    assert_eq!(record["attempts"], 3);
    assert_eq!(record["last_status_code"], 500);
    assert_eq!(receiver.requests().len(), 3);
    assert!(
        receiver.requests()[0]
            .header("x-kailash-signature")
            .is_none()
    );
    let stats = app.json_as("alice", Method::GET, "/api/stats").await;
    assert_eq!(stats["realtime"]["webhook_stats"]["failed_deliveries"], 1);
}

#[actix_web::test]
async fn registrations_are_checked_owned_and_limited() {
    let app = spawn_app_with(|s| s.max_webhooks_per_user = 2).await;
    let refused = app
        .post_json(
            "alice",
            "/api/webhooks",
            &json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(json(refused).await["code"], "egress_denied");
    for (body, code) in [
        (json!({"url": "not a url"}), "invalid_request"),
        (json!({"url": "ftp://example.com/x"}), "egress_denied"),
        (
            json!({"url": "http://93.184.215.14/", "event_types": ["nope"]}),
            "invalid_event_types",
        ),
        (
            json!({"url": "http://93.184.215.14/", "headers": {"X-Kailash-Event": "x"}}),
            "invalid_request",
        ),
        (json!({"event_types": []}), "invalid_request"),
    ] {
        let response = app.post_json("alice", "/api/webhooks", &body).await;
        assert_eq!(json(response).await["code"], code, "{body}");
    }
    let bobs_session = app.create_session("bob").await;
    let theirs = app
        .post_json(
            "alice",
            "/api/webhooks",
            &json!({"url": "http://93.184.215.14/", "session_id": bobs_session}),
        )
        .await;
    assert_error(theirs, 404, "session_not_found", "Session not found").await;

    // Public addresses need no allowance; nothing is sent until an event matches.
    let url = json!({"url": "http://93.184.215.14/hook"});
    let first = register(&app, "alice", url.clone()).await;
    register(&app, "alice", url.clone()).await;
    let third = app.post_json("alice", "/api/webhooks", &url).await;
    assert_eq!(third.status(), 409);
    assert_eq!(json(third).await["code"], "too_many_webhooks");
    register(&app, "bob", url).await;

    let listed = app.json_as("alice", Method::GET, "/api/webhooks").await;
    assert_eq!(listed["total"], 2);
    let id = first["webhook_id"].as_str().unwrap();
    let path = format!("/api/webhooks/{id}");
    let by_bob = app.send_as("bob", Method::DELETE, &path).await;
    assert_error(by_bob, 404, "webhook_not_found", "Webhook not found").await;
    let by_alice = app.send_as("alice", Method::DELETE, &path).await;
    assert_eq!(
        json(by_alice).await,
        json!({"message": "Webhook unregistered"})
    );
    let again = app.send_as("alice", Method::DELETE, &path).await;
    assert_eq!(again.status(), 404);
    assert_eq!(
        app.json_as("alice", Method::GET, "/api/webhooks").await["total"],
        1
    );
}

#[actix_web::test]
async fn events_beyond_a_full_webhook_queue_are_given_up_as_queue_full() {
    let app = spawn_app_with(|s| {
        s.egress_allow = vec!["127.0.0.1".into()];
        s.webhook_queue_len = 1;
        s.webhook_max_attempts = 10;
        s.webhook_retry_base_ms = 5_000;
    })
    .await;
    let receiver = Receiver::start(None);
    let (session, workflow) = session_with_workflow(&app, "alice").await;
    register(
        &app,
        "alice",
        json!({"url": receiver.url, "session_id": session}),
    )
    .await;
    // A run publishes about nine events: the first is stuck retrying, one waits, the rest
    // find the queue full.
    run(&app, "alice", &session, &workflow).await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            let stats = app.json_as("alice", Method::GET, "/api/stats").await;
            stats["realtime"]["webhook_stats"]["failed_deliveries"].as_u64() >= Some(5)
        })
        .await
    );
    // The first attempt may still be on its way when the overflow is already counted.
    assert!(
        eventually(Duration::from_secs(5), async || !receiver
            .requests()
            .is_empty())
        .await,
        "the first event is attempted"
    );
    assert_eq!(
        receiver.requests().len(),
        1,
        "only the first event was attempted"
    );
    let listed = app.json_as("alice", Method::GET, "/api/webhooks").await;
    assert!(listed["webhooks"][0]["stats"]["queue_full"].as_u64() >= Some(5));
}
