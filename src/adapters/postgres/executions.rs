//! Executions and node runs: creation, a session's recent runs, crash recovery, the
//! cursor-paginated history, and retention.

use chrono::{DateTime, Utc};
use kailash_actors::{
    TenantId,
    execution::{ExecutionSnapshot, ExecutionStatus},
    store::{ExecutionRecord, HistoryPage, HistoryQuery, NodeRunRecord, PruneCounts, StoreError},
};
use serde_json::{Map, Value};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Db, scoped, store_error};

/// The columns [`execution_from_row`] reads, in its order.
const COLUMNS: &str = "execution_id, session_id, user_id, workflow_id, workflow_name, status, \
     progress, current_node, inputs, config_overrides, outputs, node_states, error, created_at, \
     started_at, completed_at";

pub async fn create(db: &Db, execution: &ExecutionRecord) -> Result<(), StoreError> {
    let s = &execution.snapshot;
    let tenant: &str = &execution.tenant_id;
    let user: &str = &execution.user_id;
    let outputs = Value::Object(s.outputs.clone());
    let node_states = Value::Object(s.node_states.clone());
    db.query(
        &format!(
            "INSERT INTO executions (tenant_id, {COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ),
        tenant,
        &[
            &s.execution_id,
            &execution.session_id,
            &user,
            &s.workflow_id,
            &s.workflow_name,
            &s.status.as_str(),
            &s.progress,
            &s.current_node,
            &execution.inputs,
            &execution.config_overrides,
            &outputs,
            &node_states,
            &s.error,
            &s.created_at,
            &s.started_at,
            &s.completed_at,
        ],
    )
    .await
    .map(drop)
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

pub async fn node_runs(
    db: &Db,
    tenant: &TenantId,
    execution_id: Uuid,
) -> Result<Vec<NodeRunRecord>, StoreError> {
    let rows = db
        .query(
            "SELECT node_id, node_type, status, started_at, finished_at, execution_time_ms, \
             outputs, error FROM node_runs WHERE tenant_id = $1 AND execution_id = $2 \
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
        })
        .collect())
}

pub async fn fail_interrupted(
    db: &Db,
    tenant: &TenantId,
    error: &str,
    at: DateTime<Utc>,
) -> Result<Vec<ExecutionRecord>, StoreError> {
    let rows = db
        .query(
            &format!(
                "UPDATE executions SET status = 'failed', error = $2, completed_at = $3, \
                 current_node = NULL \
                 WHERE tenant_id = $1 AND status IN ('started', 'running') RETURNING {COLUMNS}"
            ),
            tenant,
            &[&error, &at],
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
    let tx = client.transaction().await.map_err(store_error)?;
    let mut counts = PruneCounts::default();
    for (sql, cutoff, count) in [
        (
            "DELETE FROM events WHERE tenant_id = $1 AND published_at < $2",
            events_before,
            Some(&mut counts.events),
        ),
        (
            // Recorded webhook deliveries age like the events they delivered.
            "DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND finished_at < $2",
            events_before,
            None,
        ),
        (
            "DELETE FROM node_runs n USING executions e WHERE n.tenant_id = $1 \
             AND e.tenant_id = $1 AND n.execution_id = e.execution_id AND e.completed_at < $2",
            executions_before,
            None,
        ),
        (
            "DELETE FROM executions WHERE tenant_id = $1 AND completed_at < $2",
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
