//! Tenants, sessions and workflow versions.

use deadpool_postgres::Transaction;
use kailash_actors::{
    SessionSummary, TenantId,
    store::{SessionRecord, StoreError, WorkflowRecord},
};
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Db, Scope, begin, scoped, store_error};

/// Records `tenant` in the tenant list the first time it is seen (inside the transaction
/// that stores its first row).
pub async fn add_tenant(tx: &Transaction<'_>, tenant: &str) -> Result<(), StoreError> {
    let add = tx
        .prepare_cached("INSERT INTO tenants (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .await
        .map_err(store_error)?;
    tx.execute(&add, &[&tenant]).await.map_err(store_error)?;
    Ok(())
}

/// Records the session, and its tenant the first time the tenant is seen, in one
/// transaction.
pub async fn create(db: &Db, session: &SessionRecord) -> Result<(), StoreError> {
    let tenant: &str = &session.tenant_id;
    let mut client = db.client().await?;
    let tx = begin(&mut client, Scope::Tenant(tenant))
        .await
        .map_err(store_error)?;
    let user: &str = &session.user_id;
    add_tenant(&tx, tenant).await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO sessions (tenant_id, session_id, user_id, metadata, created_at, last_activity) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await
        .map_err(store_error)?;
    tx.execute(
        &insert,
        &scoped(
            &tenant,
            &[
                &session.session_id,
                &user,
                &session.metadata,
                &session.created_at,
                &session.last_activity,
            ],
        ),
    )
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)
}

/// Every tenant that stored a row (start-up recovery and retention go through them all).
pub async fn tenants(db: &Db) -> Result<Vec<TenantId>, StoreError> {
    Ok(db
        .rows(
            Scope::AllTenants,
            "SELECT tenant_id FROM tenants ORDER BY tenant_id",
            &[],
        )
        .await?
        .iter()
        .map(|row| TenantId::from(row.get::<_, &str>(0)))
        .collect())
}

/// The tenant's sessions that have not ended (only `only`, when given), oldest first.
pub async fn active(
    db: &Db,
    tenant: &TenantId,
    only: Option<Uuid>,
) -> Result<Vec<SessionRecord>, StoreError> {
    let rows = db
        .query(
            "SELECT session_id, user_id, metadata, created_at, last_activity FROM sessions \
             WHERE tenant_id = $1 AND ended_at IS NULL AND ($2::uuid IS NULL OR session_id = $2) \
             ORDER BY created_at, session_id",
            tenant,
            &[&only],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| SessionRecord {
            tenant_id: tenant.clone(),
            session_id: row.get(0),
            user_id: row.get::<_, &str>(1).into(),
            metadata: row.get(2),
            created_at: row.get(3),
            last_activity: row.get(4),
        })
        .collect())
}

/// The live sessions of a tenant (of `owner` only, when given) with their workflow and
/// execution counts, oldest first.
pub async fn summaries(
    db: &Db,
    tenant: &TenantId,
    owner: Option<&str>,
) -> Result<Vec<SessionSummary>, StoreError> {
    let rows = db
        .query(
            "SELECT s.session_id, s.user_id, s.created_at, \
             (SELECT count(DISTINCT w.workflow_id) FROM workflow_versions w \
              WHERE w.tenant_id = s.tenant_id AND w.session_id = s.session_id), \
             (SELECT count(*) FROM executions e \
              WHERE e.tenant_id = s.tenant_id AND e.session_id = s.session_id) \
             FROM sessions s WHERE s.tenant_id = $1 AND s.ended_at IS NULL \
             AND ($2::text IS NULL OR s.user_id = $2) ORDER BY s.created_at, s.session_id",
            tenant,
            &[&owner],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| SessionSummary {
            session_id: row.get(0),
            user_id: row.get::<_, &str>(1).into(),
            created_at: row.get(2),
            workflow_count: row.get::<_, i64>(3) as usize,
            execution_count: row.get::<_, i64>(4) as usize,
        })
        .collect())
}

pub async fn save_workflow(db: &Db, workflow: &WorkflowRecord) -> Result<(), StoreError> {
    let tenant: &str = &workflow.tenant_id;
    let version = i32::try_from(workflow.version)
        .map_err(|_| StoreError::Failed("workflow version out of range".into()))?;
    db.query(
        "INSERT INTO workflow_versions (tenant_id, session_id, workflow_id, version, definition, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        tenant,
        &[
            &workflow.session_id,
            &workflow.workflow_id,
            &version,
            &workflow.definition,
            &workflow.created_at,
        ],
    )
    .await
    .map(drop)
}

/// The newest version of each workflow of a session, or (`workflow_id`) every version of
/// one, oldest first.
pub async fn workflows(
    db: &Db,
    tenant: &TenantId,
    session_id: Uuid,
    workflow_id: Option<&str>,
) -> Result<Vec<WorkflowRecord>, StoreError> {
    const COLUMNS: &str = "workflow_id, version, definition, created_at";
    let rows = match workflow_id {
        None => {
            db.query(
                &format!(
                    "SELECT DISTINCT ON (workflow_id) {COLUMNS} FROM workflow_versions \
                     WHERE tenant_id = $1 AND session_id = $2 ORDER BY workflow_id, version DESC"
                ),
                tenant,
                &[&session_id],
            )
            .await?
        }
        Some(workflow_id) => {
            db.query(
                &format!(
                    "SELECT {COLUMNS} FROM workflow_versions \
                     WHERE tenant_id = $1 AND session_id = $2 AND workflow_id = $3 ORDER BY version"
                ),
                tenant,
                &[&session_id, &workflow_id],
            )
            .await?
        }
    };
    Ok(rows
        .iter()
        .map(|row| workflow_from_row(tenant, session_id, row))
        .collect())
}

fn workflow_from_row(tenant: &TenantId, session_id: Uuid, row: &Row) -> WorkflowRecord {
    WorkflowRecord {
        tenant_id: tenant.clone(),
        session_id,
        workflow_id: row.get(0),
        version: row.get::<_, i32>(1).max(1) as u32,
        definition: row.get(2),
        created_at: row.get(3),
    }
}
