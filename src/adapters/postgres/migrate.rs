//! The schema's migrations: SQL files in `migrations/` (refinery's `V<n>__<name>.sql`),
//! embedded in the binary. They run at start and with `kailash-gateway migrate`, under a
//! PostgreSQL advisory lock so that nodes starting together apply each migration once;
//! refinery's history table makes a re-run a no-op.

use kailash_actors::store::StoreError;
use tokio_postgres::{Config, NoTls};

use super::store_error;

refinery::embed_migrations!("src/adapters/postgres/migrations");

/// The advisory lock key all gateway nodes take while migrating ("kailash" in ASCII).
const MIGRATION_LOCK: i64 = 0x006b_6169_6c61_7368;

/// Applies the migrations not yet applied, connected as `config`'s login role (the pool's
/// role may not exist yet, and may not change the schema); answers how many ran.
pub async fn run(config: &Config) -> Result<usize, StoreError> {
    let (mut client, connection) = config.connect(NoTls).await.map_err(store_error)?;
    let connection = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(store_error)?;
    let report = migrations::runner().run_async(&mut client).await;
    // Released whatever happened; closing the connection releases it too.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    drop(client);
    let _ = connection.await;
    let report =
        report.map_err(|error| StoreError::Failed(format!("migration failed: {error}")))?;
    unlocked.map_err(store_error)?;
    Ok(report.applied_migrations().len())
}
