//! Persistence against the real PostgreSQL that `scripts/test.sh` starts: each test gets
//! its own freshly created database, and runs the real gateway (in-process, or the binary
//! as a child for crash tests) on it.
//!
//! One test stops and restarts the PostgreSQL server itself; it takes [`PG_FAULT`] for
//! writing, every other test that uses the server takes it for reading, so no test sees the
//! server vanish unless it asked for that.

mod accounts;
mod events;
mod faults;
mod history;
mod restart;
mod rls;
mod store;
mod tenants;
mod webhooks;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::RwLock;
use tokio_postgres::NoTls;

use crate::helpers::*;
pub use crate::realtime::session_with_workflow;

/// Held for reading while a test uses the PostgreSQL server, for writing while one stops it.
pub static PG_FAULT: RwLock<()> = RwLock::const_new(());

/// The test server's URL (exported by scripts/test.sh).
pub fn server_url() -> String {
    std::env::var("KAILASH_TEST_DATABASE_URL").expect(
        "KAILASH_TEST_DATABASE_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL",
    )
}

/// Creates an empty database with a random name; answers its URL.
pub async fn fresh_database() -> String {
    let server = server_url();
    let name = format!("kailash_test_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&server, NoTls)
        .await
        .expect("the test PostgreSQL answers");
    let connection = actix_rt::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("CREATE DATABASE");
    drop(client);
    let _ = connection.await;
    let (base, _) = server.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{name}")
}

/// A store on a fresh, migrated database, and the database's URL (for checking by hand
/// what the store wrote).
pub async fn migrated_store_at() -> (String, kailash_gateway::adapters::postgres::PgStore) {
    let url = fresh_database().await;
    let store = kailash_gateway::app::connect(&url, &kailash_gateway::config::Settings::default())
        .expect("pool builds");
    store.migrate().await.expect("migrations run");
    (url, store)
}

/// A store on a fresh, migrated database.
pub async fn migrated_store() -> kailash_gateway::adapters::postgres::PgStore {
    migrated_store_at().await.1
}

/// A direct connection to `url`, for checking what the gateway stored.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("the test database answers");
    actix_rt::spawn(connection);
    client
}

/// A gateway storing in `url`.
pub async fn spawn_on(
    url: &str,
    customize: impl FnOnce(&mut kailash_gateway::config::Settings),
) -> TestApp {
    let url = url.to_owned();
    spawn_app_with(move |settings| {
        settings.database_url = Some(kailash_gateway::config::Secret::new(url));
        customize(settings);
    })
    .await
}

/// Stops a gateway as shutdown does: no more requests, then every accepted write flushed.
pub async fn stop(app: &TestApp) {
    app.server.stop(true).await;
    app.state.gateway.flush().await;
}

/// Starts a run; answers the response as JSON (status asserted 200).
pub async fn start_run(app: &TestApp, user: &str, session: &str, body: Value) -> String {
    let started = app
        .post_json(
            user,
            &format!("/api/executions?session_id={session}"),
            &body,
        )
        .await;
    assert_eq!(started.status(), 200);
    json(started).await["execution_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Runs the Switch → Merge workflow to its end; answers the execution id.
pub async fn run_to_end(app: &TestApp, user: &str, session: &str, workflow: &str) -> String {
    let body =
        json!({"workflow_id": workflow, "inputs": {"route": {"input_data": {"tier": "gold"}}}});
    let execution = start_run(app, user, session, body).await;
    let path = format!("/api/executions/{execution}?session_id={session}");
    assert!(
        eventually(Duration::from_secs(10), async || {
            app.json_as(user, reqwest::Method::GET, &path).await["status"] == "completed"
        })
        .await,
        "the run completes"
    );
    execution
}

/// A session event as the gateway publishes and stores it: its JSON, with `extra`'s fields
/// added, and the record read from that JSON (the history keeps only the text, V12).
pub fn event_record(
    tenant: &str,
    session: uuid::Uuid,
    seq: u64,
    user: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
    extra: Value,
) -> kailash_actors::store::EventRecord {
    let mut event = json!({
        "id": uuid::Uuid::new_v4(),
        "seq": seq,
        "type": "workflow.progress",
        "timestamp": at,
        "session_id": session,
        "user_id": user,
        "tenant_id": tenant,
    });
    if let (Some(event), Value::Object(extra)) = (event.as_object_mut(), extra) {
        event.extend(extra);
    }
    kailash_actors::store::EventRecord::from_json(&event.to_string()).unwrap()
}

/// The schema files numbered `versions` (those that exist), applied by hand as SQL.
pub async fn apply_migrations(url: &str, versions: std::ops::RangeInclusive<u32>) {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/adapters/postgres/migrations"
    );
    let client = connect(url).await;
    for version in versions {
        let file = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .find(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                name.starts_with(&format!("V{version}__"))
            });
        if let Some(file) = file {
            client
                .batch_execute(&std::fs::read_to_string(file).unwrap())
                .await
                .unwrap();
        }
    }
}
