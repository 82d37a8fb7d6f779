//! Webhooks on PostgreSQL: registrations and their deliveries survive a restart and keep
//! delivering; an unregistered webhook stays gone; the store's webhook methods are scoped by
//! tenant.

use chrono::{Duration, DurationRound, Utc};
use kailash_actors::store::{Store, WebhookDeliveryRecord, WebhookRecord, Write};
use kailash_gateway::config::Settings;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    PG_FAULT, fresh_database, migrated_store, run_to_end, session_with_workflow, spawn_on, stop,
};
use crate::{helpers::*, realtime::webhooks::Receiver};

async fn register(app: &TestApp, receiver: &Receiver) -> String {
    let response = app
        .post_json(
            "alice",
            "/api/webhooks",
            &json!({"url": receiver.url, "secret": "s3cret", "event_types": ["workflow.completed"],
                    "headers": {"X-Team": "data"}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    json(response).await["webhook_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn deliveries(app: &TestApp, hook: &str) -> Value {
    app.json_as(
        "alice",
        Method::GET,
        &format!("/api/webhooks/{hook}/deliveries"),
    )
    .await
}

#[actix_web::test]
async fn webhooks_and_their_deliveries_survive_a_restart_and_keep_delivering() {
    let _server_up = PG_FAULT.read().await;
    let url = fresh_database().await;
    let settings = |s: &mut Settings| {
        s.egress_allow = vec!["127.0.0.1".into()];
        s.webhook_retry_base_ms = 20;
    };
    let receiver = Receiver::start(Some(0));
    let first = spawn_on(&url, settings).await;
    let kept = register(&first, &receiver).await;
    let dropped = register(&first, &receiver).await;
    let gone = first
        .send_as("alice", Method::DELETE, &format!("/api/webhooks/{dropped}"))
        .await;
    assert_eq!(gone.status(), 200);
    let (session, workflow) = session_with_workflow(&first, "alice").await;
    run_to_end(&first, "alice", &session, &workflow).await;
    assert!(
        eventually(std::time::Duration::from_secs(10), async || {
            deliveries(&first, &kept).await["total"] == 1
        })
        .await,
        "the first run is delivered"
    );
    stop(&first).await;

    let second = spawn_on(&url, settings).await;
    let listed = second.json_as("alice", Method::GET, "/api/webhooks").await;
    let hooks = listed["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1, "{listed}");
    assert_eq!(hooks[0]["webhook_id"], kept.as_str());
    assert_eq!(hooks[0]["has_secret"], true);
    assert_eq!(hooks[0]["event_types"], json!(["workflow.completed"]));
    let before = deliveries(&second, &kept).await;
    assert_eq!(
        before["total"], 1,
        "the delivery before the restart: {before}"
    );
    assert_eq!(before["deliveries"][0]["status"], "delivered");

    run_to_end(&second, "alice", &session, &workflow).await;
    assert!(
        eventually(std::time::Duration::from_secs(10), async || {
            deliveries(&second, &kept).await["total"] == 2
        })
        .await,
        "the restored webhook delivers"
    );
    let requests = receiver.requests();
    assert_eq!(
        requests.len(),
        2,
        "one delivery per run, none for the deleted hook"
    );
    let last = requests.last().unwrap();
    assert_eq!(last.header("x-team"), Some("data"));
    let signature = last.header("x-kailash-signature").unwrap();
    assert_eq!(
        signature,
        format!(
            "sha256={}",
            kailash_gateway::realtime::webhooks::sign("s3cret", &last.body)
        )
    );
}

fn webhook(tenant: &str) -> WebhookRecord {
    WebhookRecord {
        tenant_id: tenant.into(),
        webhook_id: Uuid::new_v4(),
        owner: "alice".into(),
        owner_sees_all_sessions: false,
        url: "https://hooks.example.com/in".into(),
        secret: Some("s3cret".into()),
        event_types: vec!["workflow.completed".into()],
        headers: vec![("X-Team".into(), "data".into())],
        session_id: None,
        created_at: Utc::now()
            .duration_trunc(Duration::microseconds(1))
            .unwrap(),
    }
}

#[actix_web::test]
async fn the_store_keeps_webhooks_and_deliveries_per_tenant() {
    let _server_up = PG_FAULT.read().await;
    let store = migrated_store().await;
    let acme = webhook("acme");
    let globex = webhook("globex");
    store.save_webhook(&acme).await.unwrap();
    store.save_webhook(&globex).await.unwrap();
    assert_eq!(
        store.webhooks("acme").await.unwrap(),
        std::slice::from_ref(&acme)
    );
    assert_eq!(
        store.webhooks("globex").await.unwrap(),
        std::slice::from_ref(&globex)
    );

    let delivery = |n: u64| WebhookDeliveryRecord {
        tenant_id: "acme".into(),
        webhook_id: acme.webhook_id,
        delivery_id: Uuid::new_v4(),
        event_type: "workflow.completed",
        event_seq: n,
        status: if n == 3 { "given_up" } else { "delivered" },
        attempts: n as u32,
        last_status_code: Some(if n == 3 { 500 } else { 200 }),
        last_error: (n == 3).then(|| "HTTP 500".into()),
        finished_at: acme.created_at + Duration::seconds(n as i64),
    };
    let records: Vec<_> = (1..=3).map(delivery).collect();
    let batch: Vec<Write> = records
        .iter()
        .map(|d| Write::WebhookDelivery(Box::new(d.clone())))
        .collect();
    store.write_batch(&batch).await.unwrap();
    store.write_batch(&batch).await.unwrap(); // a retried batch changes nothing
    let newest_two = store
        .webhook_deliveries("acme", acme.webhook_id, 2)
        .await
        .unwrap();
    let seqs: Vec<u64> = newest_two.iter().map(|d| d.event_seq).collect();
    assert_eq!(seqs, [2, 3], "the newest, oldest first");
    assert_eq!(newest_two, records[1..]);
    assert!(
        store
            .webhook_deliveries("globex", acme.webhook_id, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(
        !store
            .delete_webhook("globex", acme.webhook_id)
            .await
            .unwrap()
    );
    assert!(store.delete_webhook("acme", acme.webhook_id).await.unwrap());
    assert!(store.webhooks("acme").await.unwrap().is_empty());
    assert!(
        store
            .webhook_deliveries("acme", acme.webhook_id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.webhooks("globex").await.unwrap(), [globex]);
}
