//! Tenants in PostgreSQL (`V6__tenants.sql`): the record's round trip through the accounts
//! port, a tenant row that predates V6 (made by a stored session) read as an active tenant
//! named by its id, tenants — a deactivated one included — surviving a restart, and V9's
//! records for tenants that held data but no session before V6.

use std::sync::Arc;

use chrono::{Duration, DurationRound, Utc};
use kailash_actors::accounts::{AccountError, AccountStore, TenantLimits, TenantRecord};
use kailash_gateway::{adapters::postgres::accounts::PgAccounts, app::connect, config::Settings};
use reqwest::Method;
use serde_json::json;
use tokio_postgres::NoTls;

use super::{PG_FAULT, apply_migrations, fresh_database, spawn_on, stop};
use crate::helpers::*;

#[actix_web::test]
async fn tenant_records_round_trip_and_older_rows_read_as_active_tenants() {
    let _server_up = PG_FAULT.read().await;
    let url = fresh_database().await;
    let store = connect(&url, &Settings::default()).expect("pool builds");
    store.migrate().await.expect("migrations run");
    let accounts = PgAccounts::new(Arc::new(store));
    let now = Utc::now()
        .duration_trunc(Duration::microseconds(1))
        .unwrap();
    let mut acme = TenantRecord::new("acme", "Acme Corp", now);
    acme.features = json!({"ai_enabled": true}).as_object().unwrap().clone();
    acme.allowed_node_types = vec!["MergeNode".into()];
    acme.limits = TenantLimits {
        max_sessions: Some(3),
        events_per_second: Some(50),
        ..TenantLimits::default()
    };
    accounts.insert_tenant(acme.clone()).await.unwrap();
    assert_eq!(
        accounts.insert_tenant(acme.clone()).await,
        Err(AccountError::Conflict)
    );
    acme.active = false;
    accounts.update_tenant(acme.clone()).await.unwrap();
    assert_eq!(
        accounts
            .update_tenant(TenantRecord::new("nope", "nope", now))
            .await,
        Err(AccountError::NotFound)
    );

    // A row as a session's first write leaves it (and as every row before V6 was).
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    actix_rt::spawn(connection);
    client
        .execute("INSERT INTO tenants (tenant_id) VALUES ('legacy')", &[])
        .await
        .unwrap();

    let all = accounts.all_tenants().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], acme);
    assert_eq!(all[1].tenant_id, "legacy");
    assert_eq!(all[1].name, "legacy");
    assert!(all[1].active);
    assert_eq!(all[1].limits, TenantLimits::default());
}

#[actix_web::test]
async fn tenants_and_their_state_survive_a_gateway_restart() {
    let _server_up = PG_FAULT.read().await;
    let url = fresh_database().await;
    let first = spawn_on(&url, |_| {}).await;
    first
        .create_tenant(&json!({"tenant_id": "acme", "name": "Acme", "limits": {"max_sessions": 2}}))
        .await;
    first.add_tenant("globex").await;
    let off = first
        .request(Method::POST, "/api/admin/tenants/globex/deactivate")
        .bearer_auth(first.platform_admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 200);
    stop(&first).await;

    let second = spawn_on(&url, |_| {}).await;
    let acme = second
        .request(Method::GET, "/api/admin/tenants/acme")
        .bearer_auth(second.platform_admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(json(acme).await["limits"], json!({"max_sessions": 2}));
    let session = second
        .request(Method::POST, "/api/sessions")
        .bearer_auth(second.token_in("acme", "alice", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);
    let refused = second
        .request(Method::GET, "/api/sessions")
        .bearer_auth(second.token_in("globex", "alice", &[]))
        .send()
        .await
        .unwrap();
    assert_error(refused, 403, "tenant_inactive", "The tenant is deactivated").await;
}

#[actix_web::test]
async fn tenants_with_data_but_no_session_get_a_record_on_upgrade() {
    let _server_up = PG_FAULT.read().await;
    let url = fresh_database().await;
    apply_migrations(&url, 1..=8).await;
    let (client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
    actix_rt::spawn(connection);
    // Users of one tenant and a role of another, as a gateway before V6 left them: no
    // session, so no tenants row; and a tenant that did store a session.
    client
        .batch_execute(
            "INSERT INTO users VALUES ('staff', 'ann', 'h', '{}', '{}', false, 0, NULL, NULL, \
             false, now()); \
             INSERT INTO roles VALUES ('studio', 'editor', '{}', '{}', now()); \
             INSERT INTO tenants (tenant_id) VALUES ('active');",
        )
        .await
        .unwrap();
    apply_migrations(&url, 9..=9).await;
    // The rest, so the store (which acts as the V11 role) can read.
    apply_migrations(&url, 10..=12).await;
    let accounts = PgAccounts::new(Arc::new(connect(&url, &Settings::default()).unwrap()));
    let tenants: Vec<(String, bool)> = accounts
        .all_tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.tenant_id, t.active))
        .collect();
    assert_eq!(
        tenants,
        [
            ("active".to_owned(), true),
            ("staff".to_owned(), true),
            ("studio".to_owned(), true)
        ]
    );
}
