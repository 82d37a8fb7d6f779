//! The PostgreSQL adapter of the `Store` port ([`PgStore`]).
//!
//! Owns the connection pool (deadpool-postgres: bounded size, a statement timeout on every
//! connection, prepared statements cached per connection), the embedded migrations
//! ([`migrate`]), and the repositories: [`sessions`] (tenants, sessions, workflow versions),
//! [`executions`] (executions, node runs, history, recovery, retention), [`batch`] (the
//! background writer's batches), [`events`] (the event history, packed in pages), [`webhooks`] and [`accounts`] (the
//! accounts port's adapter). New executions and audit entries are written through a
//! [`group_commit::GroupCommit`]: concurrent ones share a statement and a commit.
//!
//! All database work runs on the adapter's own small tokio runtime, never on an actix
//! thread: connection tasks stay polled whichever thread asked, and a thread the store
//! writer blocks for backpressure can never stall a connection it is waiting for.
//!
//! To add a repository: add a `V<n>__*.sql` migration, a
//! module with its queries written against [`Db`] (which carries the pool and the tenant
//! scoping convention), and implement the port on `PgStore` with [`PgStore::on_runtime`].

/// An insert, as first tried and as retried after a duplicate key (see
/// [`batch::Columns::write`]).
macro_rules! insert {
    ($name:ident, $sql:literal) => {
        const $name: [&str; 2] = [$sql, concat!($sql, " ON CONFLICT DO NOTHING")];
    };
}

pub mod accounts;
pub mod batch;
pub mod events;
pub mod executions;
pub mod group_commit;
pub mod migrate;
pub mod sessions;
pub mod webhooks;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use deadpool_postgres::{
    Client, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime, Transaction,
};
use futures_util::future::{BoxFuture, join4};
use kailash_actors::store::{
    EventRecord, ExecutionRecord, HistoryPage, HistoryQuery, NodeRunRecord, PruneCounts,
    SessionRecord, Store, StoreError, StoreFuture, StoreHealth, WebhookDeliveryRecord,
    WebhookRecord, WorkflowRecord, Write,
};
use kailash_actors::{SessionSummary, TenantId};
use tokio_postgres::{Error as PgError, NoTls, Row, types::ToSql};
use uuid::Uuid;

use self::group_commit::GroupCommit;

/// How the pool is sized and how long the database gets.
#[derive(Debug, Clone, Copy)]
pub struct PgOptions {
    /// Most connections open at once.
    pub pool_size: usize,
    /// Limit of one statement (server side), of connecting, and of waiting for a connection.
    pub timeout: Duration,
}

/// The store on PostgreSQL. Cheap to share behind an `Arc`.
pub struct PgStore {
    db: Db,
    /// How [`migrate`] connects: as the login role, on a connection of its own.
    migrations: tokio_postgres::Config,
    /// New executions, group committed (see [`executions::create_many`]).
    creates: GroupCommit<ExecutionRecord, StoreError>,
    /// `Some` until dropped; see [`Drop`].
    runtime: Option<tokio::runtime::Runtime>,
}

/// The pool and the queries' conventions: every tenant-owned statement takes the tenant as
/// `$1` and runs in a transaction that acts for a [`Scope`], and errors become
/// [`StoreError`]s (connection trouble: `Unavailable`).
#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

/// The role the pool's connections act as (V11): it does not bypass row-level security.
pub const GATEWAY_ROLE: &str = "kailash_gateway";

/// Whom a transaction acts for. The row-level security policies (V11) let a statement see
/// and write only the rows of the scope its transaction set, so a statement that forgot
/// its `WHERE tenant_id` still cannot reach another tenant; a transaction that set no scope
/// sees nothing.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Work on one tenant's behalf.
    Tenant(&'a str),
    /// The gateway's own work across tenants: the batched writer, group commits, start-up
    /// recovery, syncs of the shared tables, and credential lookups that find the tenant.
    AllTenants,
}

/// Sets a transaction's scope: `$1` the tenant (empty for none), `$2` `on` for all.
const SET_SCOPE: &str = "SELECT set_config('kailash.tenant_id', $1, true), \
     set_config('kailash.all_tenants', $2, true)";

impl Scope<'_> {
    /// The two settings' values, as [`SET_SCOPE`] binds them.
    fn settings(&self) -> (&str, &str) {
        match self {
            Scope::Tenant(tenant) => (tenant, "off"),
            Scope::AllTenants => ("", "on"),
        }
    }
}

/// Runs `work` in a transaction acting for `scope`, sent as one pipeline: BEGIN, the scope,
/// `work`'s statements and COMMIT go out together, so a scoped statement costs no more round
/// trips than a bare one. `work` must send every statement when it is first polled (its
/// statements prepared beforehand): a request goes out when its future is first polled, and
/// `join4` polls in argument order. A failed statement aborts the transaction; the COMMIT
/// that follows then only ends it.
pub async fn pipelined<T>(
    client: &Client,
    scope: Scope<'_>,
    work: impl Future<Output = Result<T, PgError>>,
) -> Result<T, PgError> {
    let set_scope = client.prepare_cached(SET_SCOPE).await?;
    let (tenant, all) = scope.settings();
    let (began, scoped, done, committed) = join4(
        client.batch_execute("BEGIN"),
        client.execute(&set_scope, &[&tenant, &all]),
        work,
        client.batch_execute("COMMIT"),
    )
    .await;
    began?;
    scoped?;
    let done = done?;
    committed?;
    Ok(done)
}

/// Opens a transaction acting for `scope`, for work whose statements depend on each other's
/// results (else [`pipelined`] saves the round trips).
pub async fn begin<'c>(
    client: &'c mut Client,
    scope: Scope<'_>,
) -> Result<Transaction<'c>, PgError> {
    let tx = client.transaction().await?;
    let set_scope = tx.prepare_cached(SET_SCOPE).await?;
    let (tenant, all) = scope.settings();
    tx.execute(&set_scope, &[&tenant, &all]).await?;
    Ok(tx)
}

impl Db {
    /// A pooled connection; none within the timeout (the database is away) is `Unavailable`.
    pub async fn client(&self) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|error| StoreError::Unavailable(error.to_string()))
    }

    /// Runs one prepared statement acting for `scope` and answers its rows.
    pub async fn rows(
        &self,
        scope: Scope<'_>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.rows_or(store_error, scope, sql, params).await
    }

    /// [`Db::rows`] for a port with errors of its own: a statement's error becomes one by
    /// `error` (no connection is the port's `StoreError::Unavailable`).
    pub async fn rows_or<E: From<StoreError>>(
        &self,
        error: fn(PgError) -> E,
        scope: Scope<'_>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, E> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(error)?;
        pipelined(&client, scope, client.query(&statement, params))
            .await
            .map_err(error)
    }

    /// Runs a prepared, tenant-scoped query: `tenant` is bound as `$1`, `params` follow,
    /// and the transaction acts for `tenant`.
    pub async fn query(
        &self,
        sql: &str,
        tenant: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.rows(Scope::Tenant(tenant), sql, &scoped(&tenant, params))
            .await
    }
}

/// `tenant` first, then `params`: the binding every tenant-owned statement uses.
pub fn scoped<'a>(
    tenant: &'a (dyn ToSql + Sync),
    params: &[&'a (dyn ToSql + Sync)],
) -> Vec<&'a (dyn ToSql + Sync)> {
    std::iter::once(tenant)
        .chain(params.iter().copied())
        .collect()
}

/// A database error as the port reports it: connection trouble, a server shutting down or
/// a statement timeout are `Unavailable` (retrying later may work); the rest `Failed`.
pub fn store_error(error: tokio_postgres::Error) -> StoreError {
    let transient = match error.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57") || code.starts_with("53")
        }
    };
    if transient {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Failed(error.to_string())
    }
}

impl PgStore {
    /// Builds the pool for `url` (no connection is made yet) and the adapter's runtime.
    pub fn new(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error: tokio_postgres::Error| StoreError::Failed(error.to_string()))?;
        // synchronous_commit on whatever the server's default: a reply that says something
        // was created must survive the database crashing right after it.
        config
            .connect_timeout(options.timeout)
            .application_name("kailash-gateway");
        // Migrations run as the login role, which owns the schema; everything else acts as
        // the role row-level security holds (see `Scope`).
        let migrations = config.clone();
        // No JIT: every statement here is short, and a plan the batches' planner settings
        // (`batch::INDEX_LOOKUPS_ONLY`) price past `jit_above_cost` would compile for ~100 ms.
        config.options(format!(
            "-c statement_timeout={} -c synchronous_commit=on -c jit=off -c role={GATEWAY_ROLE}",
            options.timeout.as_millis()
        ));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kailash-store")
            .enable_all()
            .build()
            .map_err(|error| StoreError::Failed(error.to_string()))?;
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| StoreError::Failed(error.to_string()))?;
        let db = Db { pool };
        let writer_db = db.clone();
        let creates = GroupCommit::start(
            runtime.handle(),
            executions::MAX_CREATE_BATCH,
            || StoreError::Unavailable("the store is shutting down".into()),
            move |batch| {
                let db = writer_db.clone();
                async move { executions::create_many(&db, batch).await }
            },
        );
        Ok(Self {
            db,
            migrations,
            creates,
            runtime: Some(runtime),
        })
    }

    /// Runs the migrations (under an advisory lock); answers how many were applied.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let config = self.migrations.clone();
        self.on_runtime(async move { migrate::run(&config).await })
            .await
    }

    /// The pool and its scoping conventions, for work outside the port (tools, tests).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The adapter's runtime, where every statement runs.
    fn runtime_handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the store")
            .handle()
    }

    /// Runs `work` on the adapter's runtime and answers its result.
    pub fn on_runtime<T, E, F>(&self, work: F) -> BoxFuture<'static, Result<T, E>>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let task = self.runtime_handle().spawn(work);
        Box::pin(async move {
            task.await.map_err(|error| {
                E::from(StoreError::Failed(format!("store task failed: {error}")))
            })?
        })
    }

    /// Runs `work` with the pool on the adapter's runtime (for this port and the accounts').
    fn with_db<T, E, F, Fut>(&self, work: F) -> BoxFuture<'static, Result<T, E>>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(Db) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.on_runtime(work(self.db.clone()))
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which panics on an async thread (where
        // the last actor holding the store may drop it); let them finish in the background.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store for PgStore {
    fn create_session<'a>(&'a self, session: &'a SessionRecord) -> StoreFuture<'a, ()> {
        let session = session.clone();
        self.with_db(|db| async move { sessions::create(&db, &session).await })
    }

    fn save_workflow<'a>(&'a self, workflow: &'a WorkflowRecord) -> StoreFuture<'a, ()> {
        let workflow = workflow.clone();
        self.with_db(|db| async move { sessions::save_workflow(&db, &workflow).await })
    }

    fn create_execution<'a>(&'a self, execution: &'a ExecutionRecord) -> StoreFuture<'a, ()> {
        Box::pin(self.creates.submit(execution.clone()))
    }

    fn write_batch<'a>(&'a self, batch: &'a [Write]) -> StoreFuture<'a, ()> {
        let columns = batch::Columns::of(batch);
        self.with_db(|db| async move { columns.write(&db).await })
    }

    fn tenants(&self) -> StoreFuture<'_, Vec<TenantId>> {
        self.with_db(|db| async move { sessions::tenants(&db).await })
    }

    fn active_sessions<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<SessionRecord>> {
        let tenant = TenantId::from(tenant);
        self.with_db(|db| async move { sessions::active(&db, &tenant, None).await })
    }

    fn session_summaries<'a>(
        &'a self,
        tenant: &'a str,
        owner: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<SessionSummary>> {
        let (tenant, owner) = (TenantId::from(tenant), owner.map(str::to_owned));
        self.with_db(|db| async move { sessions::summaries(&db, &tenant, owner.as_deref()).await })
    }

    fn active_session<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        let tenant = TenantId::from(tenant);
        self.with_db(|db| async move {
            let mut found = sessions::active(&db, &tenant, Some(session_id)).await?;
            Ok(found.pop())
        })
    }

    fn workflows<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
    ) -> StoreFuture<'a, Vec<WorkflowRecord>> {
        let tenant = TenantId::from(tenant);
        self.with_db(|db| async move { sessions::workflows(&db, &tenant, session_id, None).await })
    }

    fn workflow_versions<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
        workflow_id: &'a str,
    ) -> StoreFuture<'a, Vec<WorkflowRecord>> {
        let (tenant, workflow_id) = (TenantId::from(tenant), workflow_id.to_owned());
        self.with_db(|db| async move {
            sessions::workflows(&db, &tenant, session_id, Some(&workflow_id)).await
        })
    }

    fn executions<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<ExecutionRecord>> {
        let tenant = TenantId::from(tenant);
        self.with_db(
            |db| async move { executions::of_session(&db, &tenant, session_id, limit).await },
        )
    }

    fn node_runs<'a>(
        &'a self,
        tenant: &'a str,
        execution_id: Uuid,
    ) -> StoreFuture<'a, Vec<NodeRunRecord>> {
        let tenant = TenantId::from(tenant);
        self.with_db(|db| async move { executions::node_runs(&db, &tenant, execution_id).await })
    }

    fn recent_events<'a>(
        &'a self,
        tenant: &'a str,
        session_id: Uuid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<EventRecord>> {
        let tenant = TenantId::from(tenant);
        self.with_db(|db| async move { events::recent(&db, &tenant, session_id, limit).await })
    }

    fn fail_interrupted<'a>(
        &'a self,
        tenant: &'a str,
        session: Option<Uuid>,
        error: &'a str,
        at: DateTime<Utc>,
    ) -> StoreFuture<'a, Vec<ExecutionRecord>> {
        let (tenant, error) = (TenantId::from(tenant), error.to_owned());
        self.with_db(|db| async move {
            executions::fail_interrupted(&db, &tenant, session, &error, at).await
        })
    }

    fn execution_history<'a>(
        &'a self,
        tenant: &'a str,
        query: &'a HistoryQuery,
    ) -> StoreFuture<'a, HistoryPage> {
        let (tenant, query) = (TenantId::from(tenant), query.clone());
        self.with_db(|db| async move { executions::history(&db, &tenant, &query).await })
    }

    fn prune<'a>(
        &'a self,
        tenant: &'a str,
        events_before: DateTime<Utc>,
        executions_before: DateTime<Utc>,
    ) -> StoreFuture<'a, PruneCounts> {
        let tenant = TenantId::from(tenant);
        self.with_db(|db| async move {
            executions::prune(&db, &tenant, events_before, executions_before).await
        })
    }

    fn save_webhook<'a>(&'a self, webhook: &'a WebhookRecord) -> StoreFuture<'a, ()> {
        let webhook = webhook.clone();
        self.with_db(|db| async move { webhooks::save(&db, &webhook).await })
    }

    fn delete_webhook<'a>(&'a self, tenant: &'a str, webhook_id: Uuid) -> StoreFuture<'a, bool> {
        let tenant = TenantId::from(tenant);
        self.with_db(|db| async move { webhooks::delete(&db, &tenant, webhook_id).await })
    }

    fn webhooks<'a>(&'a self, tenant: &'a str) -> StoreFuture<'a, Vec<WebhookRecord>> {
        let tenant = TenantId::from(tenant);
        self.with_db(|db| async move { webhooks::list(&db, &tenant).await })
    }

    fn webhook_deliveries<'a>(
        &'a self,
        tenant: &'a str,
        webhook_id: Uuid,
        limit: usize,
    ) -> StoreFuture<'a, Vec<WebhookDeliveryRecord>> {
        let tenant = TenantId::from(tenant);
        self.with_db(
            |db| async move { webhooks::deliveries(&db, &tenant, webhook_id, limit).await },
        )
    }

    fn health(&self) -> BoxFuture<'_, StoreHealth> {
        let db = self.db.clone();
        let checked = self.on_runtime(async move {
            let started = Instant::now();
            let client = db.client().await?;
            client.simple_query("SELECT 1").await.map_err(store_error)?;
            Ok::<_, StoreError>(started.elapsed())
        });
        Box::pin(async move {
            let latency = checked.await;
            let status = self.db.pool.status();
            StoreHealth {
                kind: "postgres",
                problem: latency.as_ref().err().map(ToString::to_string),
                latency: latency.unwrap_or_default(),
                pool_size: status.size,
                pool_available: status.available,
                pool_max: status.max_size,
            }
        })
    }
}
