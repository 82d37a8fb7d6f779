//! Faults with real parts: the gateway binary killed with SIGKILL mid-execution, and the
//! PostgreSQL server stopped and started again under a running gateway.

use std::{process::Command, time::Duration};

use kailash_actors::restore::INTERRUPTED;
use kailash_gateway::auth::token::{MintRequest, TokenKeys, TokenType};
use reqwest::{Client, Method};
use serde_json::{Value, json};

use super::{PG_FAULT, connect, fresh_database, spawn_on};
use crate::{
    helpers::*,
    process::{Running, free_port, gateway, wait_ready},
};

/// The gateway binary on `database_url`, listening on `port`.
fn start_binary(data: &TempPath, database_url: &str, secret: &str, port: u16) -> Running {
    let python = std::env::var("KAILASH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let child = gateway(&data.0)
        .env("KAILASH_BIND", format!("127.0.0.1:{port}"))
        .env("KAILASH_API_GATEWAY_SECRET", secret)
        .env("DATABASE_URL", database_url)
        .env("KAILASH_PYTHON_EXECUTABLE", python)
        .env("KAILASH_PYTHON_WORKERS", "1")
        .spawn()
        .unwrap();
    let running = Running(child);
    wait_ready(port);
    running
}

async fn call(
    client: &Client,
    token: &str,
    method: Method,
    url: String,
    body: Option<Value>,
) -> Value {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    json(response).await
}

#[actix_web::test]
async fn a_run_interrupted_by_sigkill_is_failed_with_a_terminal_event_on_the_next_start() {
    let _server_up = PG_FAULT.read().await;
    let url = fresh_database().await;
    let (data, secret) = (TempPath::new("crash"), random_secret());
    let token = TokenKeys::hs256(secret.as_bytes()).mint(&MintRequest {
        subject: "alice".into(),
        tenant_id: None,
        roles: vec!["user".into()],
        permissions: vec![],
        lifetime: chrono::Duration::minutes(10),
        token_type: TokenType::Access,
    });
    let client = Client::new();
    let port = free_port();
    let mut first = start_binary(&data, &url, &secret, port);
    let base = format!("http://127.0.0.1:{port}");
    let session = call(
        &client,
        &token,
        Method::POST,
        format!("{base}/api/sessions"),
        Some(json!({})),
    )
    .await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let slow = json!({"name": "slow", "nodes": [
        {"id": "py", "type": "PythonCodeNode", "config": {"code": "import time\ntime.sleep(60)\nresult = {}"}}
    ]});
    let workflow = call(
        &client,
        &token,
        Method::POST,
        format!("{base}/api/workflows?session_id={session}"),
        Some(slow),
    )
    .await["workflow_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let execution = call(
        &client,
        &token,
        Method::POST,
        format!("{base}/api/executions?session_id={session}"),
        Some(json!({"workflow_id": workflow})),
    )
    .await["execution_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/executions/{execution}?session_id={session}");
    assert!(
        eventually(Duration::from_secs(10), async || {
            call(&client, &token, Method::GET, format!("{base}{path}"), None).await["node_states"]["py"]
                == "running"
        })
        .await
    );
    first.0.kill().unwrap(); // SIGKILL: no drain, no flush
    first.0.wait().unwrap();

    let port = free_port();
    let _second = start_binary(&data, &url, &secret, port);
    let base = format!("http://127.0.0.1:{port}");
    let after = call(&client, &token, Method::GET, format!("{base}{path}"), None).await;
    assert_eq!(after["status"], "failed", "{after}");
    assert_eq!(after["error"], INTERRUPTED);
    assert!(after["completed_at"].is_string());

    let db = connect(&url).await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            let rows = db
                .query(
                    "SELECT payload FROM events WHERE event_type = 'workflow.failed'",
                    &[],
                )
                .await
                .unwrap();
            rows.iter().any(|row| {
                let event: Value = serde_json::from_str(row.get(0)).unwrap();
                event["execution_id"] == execution.as_str() && event["error"] == INTERRUPTED
            })
        })
        .await,
        "the terminal event is recorded"
    );
}

pub(super) fn pg_ctl(args: &[&str]) {
    let pg_ctl =
        std::env::var("KAILASH_TEST_PG_CTL").expect("KAILASH_TEST_PG_CTL from scripts/test.sh");
    let status = Command::new(pg_ctl).args(args).status().unwrap();
    assert!(status.success(), "pg_ctl {args:?}");
}

#[actix_web::test]
async fn with_the_database_down_requests_get_503_and_it_recovers_without_losing_writes() {
    let url = fresh_database().await;
    let _server_mine = PG_FAULT.write().await;
    let app = spawn_on(&url, |s| {
        s.database_timeout_ms = 1000;
        s.egress_allow = vec!["127.0.0.1".into()];
    })
    .await;
    let session = app.create_session("alice").await;
    let hook = json!({"url": "http://127.0.0.1:9/hook"});
    let registered = app.post_json("alice", "/api/webhooks", &hook).await;
    assert_eq!(registered.status(), 200);
    let webhook = json(registered).await["webhook_id"]
        .as_str()
        .unwrap()
        .to_owned();

    pg_ctl(&["stop", "-m", "immediate"]);
    // Webhooks are stored before they are answered: neither a new one nor a removal while
    // the database is away, and the registered one stays.
    let refused = app.post_json("alice", "/api/webhooks", &hook).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(json(refused).await["code"], "store_unavailable");
    let refused = app
        .send_as("alice", Method::DELETE, &format!("/api/webhooks/{webhook}"))
        .await;
    assert_eq!(refused.status(), 503);
    let listed = app.json_as("alice", Method::GET, "/api/webhooks").await;
    assert_eq!(listed["total"], 1, "{listed}");

    let refused = app.send_as("alice", Method::POST, "/api/sessions").await;
    assert_eq!(refused.headers().get("retry-after").unwrap(), "2");
    assert_error(
        refused,
        503,
        "store_unavailable",
        "The database is unavailable; nothing was changed, retry later",
    )
    .await;
    let health = app.request(Method::GET, "/health").send().await.unwrap();
    assert_eq!(health.status(), 503);
    let health = json(health).await;
    assert_eq!(
        health["components"]["store"]["status"], "unhealthy",
        "{health}"
    );
    assert!(health["components"]["store"]["error"].is_string());
    assert_eq!(
        app.request(Method::GET, "/ready")
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    // Accepted while the database is away: the close is queued and retried, not dropped.
    let closed = app
        .send_as("alice", Method::DELETE, &format!("/api/sessions/{session}"))
        .await;
    assert_eq!(closed.status(), 200);

    pg_ctl(&["start", "-w"]);
    assert!(
        eventually(Duration::from_secs(20), async || {
            app.send_as("alice", Method::POST, "/api/sessions")
                .await
                .status()
                == 200
        })
        .await,
        "the gateway reconnects by itself"
    );
    assert_eq!(
        app.request(Method::GET, "/ready")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.state.gateway.flush().await;
    let db = connect(&url).await;
    let ended = db
        .query_one(
            "SELECT end_reason FROM sessions WHERE session_id = $1::text::uuid",
            &[&session],
        )
        .await
        .unwrap();
    assert_eq!(ended.get::<_, Option<String>>(0).as_deref(), Some("closed"));
    let closed_events: i64 = db
        .query_one(
            "SELECT count(*) FROM events WHERE session_id = $1::text::uuid AND event_type = 'session.closed'",
            &[&session],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(closed_events, 1);
    let detailed = json(
        app.request(Method::GET, "/health/detailed")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let store = detailed["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "store")
        .cloned()
        .unwrap();
    assert_eq!(store["status"], "healthy");
    assert!(store["details"]["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(store["details"]["pool"]["max"].as_u64().unwrap() > 0);
    assert!(
        store["details"]["writer"]["failed_attempts"]
            .as_u64()
            .unwrap()
            > 0
    );
}
