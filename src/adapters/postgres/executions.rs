//! Executions and node runs: creation, a session's recent runs, crash recovery, the
//! cursor-paginated history, and retention.

use chrono::{DateTime, Utc};
use kailash_actors::{
    TenantId,
    execution::{ExecutionSnapshot, ExecutionStatus},
    store::{
        ExecutionRecord, Fence, HistoryPage, HistoryQuery, NodeRunRecord, PruneCounts, StoreError,
    },
};
use serde_json::{Map, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Db, Scope, begin, events, pipelined, scoped, store_error};

/// The columns [`execution_from_row`] reads, in its order.
const COLUMNS: &str = "execution_id, session_id, user_id, workflow_id, workflow_name, status, \
     progress, current_node, inputs, config_overrides, outputs, node_states, error, created_at, \
     started_at, completed_at, fence";

/// Most executions in one insert.
pub const MAX_CREATE_BATCH: usize = 256;

/// Records new executions (status `running`), and marks them running for crash recovery,
/// in one statement; the store submits each through a group commit, so concurrent starts
/// share a round trip and a commit.
pub async fn create_many(db: &Db, executions: Vec<ExecutionRecord>) -> Result<(), StoreError> {
    let mut c = CreateColumns::default();
    for execution in &executions {
        let s = &execution.snapshot;
        c.tenant.push(execution.tenant_id.to_string());
        c.execution.push(s.execution_id);
        c.session.push(execution.session_id);
        c.user.push(execution.user_id.to_string());
        c.workflow.push(s.workflow_id.clone());
        c.name.push(s.workflow_name.clone());
        c.status.push(s.status.as_str().to_owned());
        c.progress.push(s.progress);
        c.current_node.push(s.current_node.clone());
        c.inputs.push(execution.inputs.clone());
        c.overrides.push(execution.config_overrides.clone());
        c.outputs.push(Value::Object(s.outputs.clone()));
        c.node_states.push(Value::Object(s.node_states.clone()));
        c.error.push(s.error.clone());
        c.created.push(s.created_at);
        c.started.push(s.started_at);
        c.completed.push(s.completed_at);
        c.fence.push(as_i64(execution.fence));
    }
    let client = db.client().await?;
    let statement = client
        .prepare_cached(&format!(
            "WITH running AS (INSERT INTO running_executions (tenant_id, execution_id) \
             SELECT * FROM UNNEST($1::text[], $2::uuid[])) \
             INSERT INTO executions (tenant_id, {COLUMNS}) SELECT * FROM UNNEST(\
             $1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::float8[], $9::text[], $10::jsonb[], $11::jsonb[], $12::jsonb[], \
             $13::jsonb[], $14::text[], $15::timestamptz[], $16::timestamptz[], \
             $17::timestamptz[], $18::int8[])"
        ))
        .await
        .map_err(store_error)?;
    // A batch holds many tenants' executions: each row's tenant is its own column.
    pipelined(
        &client,
        Scope::AllTenants,
        client.execute(
            &statement,
            &[
                &c.tenant,
                &c.execution,
                &c.session,
                &c.user,
                &c.workflow,
                &c.name,
                &c.status,
                &c.progress,
                &c.current_node,
                &c.inputs,
                &c.overrides,
                &c.outputs,
                &c.node_states,
                &c.error,
                &c.created,
                &c.started,
                &c.completed,
                &c.fence,
            ],
        ),
    )
    .await
    .map_err(store_error)
    .map(drop)
}

/// A batch of new executions, by column.
#[derive(Default)]
struct CreateColumns {
    tenant: Vec<String>,
    execution: Vec<Uuid>,
    session: Vec<Uuid>,
    user: Vec<String>,
    workflow: Vec<String>,
    name: Vec<String>,
    status: Vec<String>,
    progress: Vec<f64>,
    current_node: Vec<Option<String>>,
    inputs: Vec<Value>,
    overrides: Vec<Value>,
    outputs: Vec<Value>,
    node_states: Vec<Value>,
    error: Vec<Option<String>>,
    created: Vec<DateTime<Utc>>,
    started: Vec<Option<DateTime<Utc>>>,
    completed: Vec<Option<DateTime<Utc>>>,
    fence: Vec<i64>,
}

/// A fencing token or an event's `seq` as PostgreSQL keeps it (`bigint`; neither comes near
/// its limit).
pub fn as_i64(counter: Fence) -> i64 {
    i64::try_from(counter).unwrap_or(i64::MAX)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn execution_from_row(tenant: &TenantId, row: &Row) -> ExecutionRecord {
    ExecutionRecord {
        tenant_id: tenant.clone(),
        session_id: row.get(1),
        user_id: row.get::<_, &str>(2).into(),
        inputs: row.get(8),
        config_overrides: row.get(9),
        snapshot: ExecutionSnapshot {
            execution_id: row.get(0),
            workflow_id: row.get(3),
            workflow_name: row.get(4),
            status: ExecutionStatus::parse(row.get(5)).unwrap_or(ExecutionStatus::Failed),
            progress: row.get(6),
            current_node: row.get(7),
            created_at: row.get(13),
            started_at: row.get(14),
            completed_at: row.get(15),
            outputs: object(row.get(10)),
            error: row.get(12),
            node_states: object(row.get(11)),
        },
        fence: row.get::<_, i64>(16).unsigned_abs(),
    }
}

/// The newest `limit` executions of a session, oldest first.
pub async fn of_session(
    db: &Db,
    tenant: &TenantId,
    session_id: Uuid,
    limit: usize,
) -> Result<Vec<ExecutionRecord>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = db
        .query(
            &format!(
                "SELECT * FROM (SELECT {COLUMNS} FROM executions \
                 WHERE tenant_id = $1 AND session_id = $2 \
                 ORDER BY created_at DESC, execution_id DESC LIMIT $3) newest \
                 ORDER BY created_at, execution_id"
            ),
            tenant,
            &[&session_id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| execution_from_row(tenant, row))
        .collect())
}

/// The node runs of an execution, in the order they ended: those written on their own, and
/// those folded into its final update (see `batch::Folding`).
pub async fn node_runs(
    db: &Db,
    tenant: &TenantId,
    execution_id: Uuid,
) -> Result<Vec<NodeRunRecord>, StoreError> {
    let rows = db
        .query(
            "SELECT node_id, node_type, status, started_at, finished_at, execution_time_ms, \
             outputs, error, fence FROM node_runs WHERE tenant_id = $1 AND execution_id = $2 \
             UNION ALL SELECT r.node_id, r.node_type, r.status, r.started_at, r.finished_at, \
             r.execution_time_ms, COALESCE(r.outputs::jsonb, e.outputs -> r.node_id, 'null'), \
             r.error, e.fence FROM executions e, \
             json_to_recordset(e.node_runs) AS r(node_id text, node_type text, status text, \
             started_at timestamptz, finished_at timestamptz, execution_time_ms float8, \
             outputs json, error text) WHERE e.tenant_id = $1 AND e.execution_id = $2 \
             ORDER BY finished_at, node_id",
            tenant,
            &[&execution_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| NodeRunRecord {
            tenant_id: tenant.clone(),
            execution_id,
            node_id: row.get::<_, &str>(0).into(),
            node_type: row.get::<_, String>(1).into(),
            status: row.get::<_, String>(2).into(),
            started_at: row.get(3),
            finished_at: row.get(4),
            execution_time_ms: row.get(5),
            outputs: row.get(6),
            error: row.get(7),
            fence: row.get::<_, i64>(8).unsigned_abs(),
        })
        .collect())
}

/// Fails the executions still marked running (the gateway stopped while they ran, or the
/// node running them was lost: then only those of `session`), clears their marks and
/// raises their fencing tokens (so nothing the lost node still writes of them is taken),
/// in one statement.
pub async fn fail_interrupted(
    db: &Db,
    tenant: &TenantId,
    session: Option<Uuid>,
    error: &str,
    at: DateTime<Utc>,
) -> Result<Vec<ExecutionRecord>, StoreError> {
    let rows = db
        .query(
            &format!(
                "WITH marked AS (DELETE FROM running_executions WHERE tenant_id = $1 \
                 AND ($4::uuid IS NULL OR execution_id IN (SELECT execution_id FROM executions \
                 WHERE tenant_id = $1 AND session_id = $4)) RETURNING execution_id) \
                 UPDATE executions SET status = 'failed', error = $2, completed_at = $3, \
                 current_node = NULL, fence = fence + 1 \
                 WHERE tenant_id = $1 AND execution_id IN (SELECT execution_id FROM marked) \
                 AND status IN ('started', 'running') RETURNING {COLUMNS}"
            ),
            tenant,
            &[&error, &at, &session],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| execution_from_row(tenant, row))
        .collect())
}

/// One page, newest first. Every filter is a parameter (NULL: not filtered), so this is
/// one prepared statement whatever the query.
pub async fn history(
    db: &Db,
    tenant: &TenantId,
    query: &HistoryQuery,
) -> Result<HistoryPage, StoreError> {
    let status = query.status.map(ExecutionStatus::as_str);
    let cursor_at = query.cursor.map(|c| c.created_at);
    let cursor_id = query.cursor.map(|c| c.execution_id);
    let fetch = i64::try_from(query.limit + 1).unwrap_or(i64::MAX);
    let rows = db
        .query(
            &format!(
                "SELECT {COLUMNS} FROM executions WHERE tenant_id = $1 \
                 AND ($2::text IS NULL OR user_id = $2) \
                 AND ($3::text IS NULL OR status = $3) \
                 AND ($4::text IS NULL OR workflow_id = $4) \
                 AND ($5::timestamptz IS NULL OR created_at >= $5) \
                 AND ($6::timestamptz IS NULL OR created_at < $6) \
                 AND ($7::timestamptz IS NULL OR (created_at, execution_id) < ($7, $8::uuid)) \
                 ORDER BY created_at DESC, execution_id DESC LIMIT $9"
            ),
            tenant,
            &[
                &query.user_id,
                &status,
                &query.workflow_id,
                &query.since,
                &query.until,
                &cursor_at,
                &cursor_id,
                &fetch,
            ],
        )
        .await?;
    let matching = rows
        .iter()
        .map(|row| execution_from_row(tenant, row))
        .collect();
    Ok(HistoryPage::from_newest_first(matching, query.limit))
}

/// Deletes old events, and finished executions with their node runs, in one transaction.
pub async fn prune(
    db: &Db,
    tenant: &TenantId,
    events_before: DateTime<Utc>,
    executions_before: DateTime<Utc>,
) -> Result<PruneCounts, StoreError> {
    let tenant: &str = tenant;
    let mut client = db.client().await?;
    let tx = begin(&mut client, Scope::Tenant(tenant))
        .await
        .map_err(store_error)?;
    let mut counts = PruneCounts {
        events: events::prune(&tx, tenant, events_before).await?,
        executions: 0,
    };
    for (sql, cutoff, count) in [
        (
            // Recorded webhook deliveries age like the events they delivered.
            "DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND finished_at < $2",
            events_before,
            None,
        ),
        // `created_at < $2` lets executions_history find the candidates: an execution
        // completes after it was created.
        (
            "DELETE FROM node_runs n USING executions e WHERE n.tenant_id = $1 \
             AND e.tenant_id = $1 AND n.execution_id = e.execution_id \
             AND e.created_at < $2 AND e.completed_at < $2",
            executions_before,
            None,
        ),
        (
            "DELETE FROM executions WHERE tenant_id = $1 AND created_at < $2 \
             AND completed_at < $2",
            executions_before,
            Some(&mut counts.executions),
        ),
    ] {
        let statement = tx.prepare_cached(sql).await.map_err(store_error)?;
        let deleted = tx
            .execute(&statement, &scoped(&tenant, &[&cutoff]))
            .await
            .map_err(store_error)?;
        if let Some(count) = count {
            *count = deleted;
        }
    }
    tx.commit().await.map_err(store_error)?;
    Ok(counts)
}
