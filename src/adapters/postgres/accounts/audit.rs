//! The audit log's writer: entries appended at the same moment share one `UNNEST` insert
//! ([`GroupCommit`]), and each append is answered only once its batch is committed, so an
//! entry acknowledged is an entry stored, with one round trip per batch instead of per entry.

use kailash_actors::accounts::{AccountError, AccountResult, AuditRecord, Outcome};

use tokio_postgres::types::ToSql;

use super::account_error;
use crate::adapters::postgres::{Db, Scope, group_commit::GroupCommit, pipelined};

/// Most entries in one insert.
const MAX_BATCH: usize = 256;

const INSERT: &str = "INSERT INTO audit_log \
    (tenant_id, id, at, user_id, action, outcome, resource, client_ip) \
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], \
    $6::text[], $7::text[], $8::text[]) ON CONFLICT DO NOTHING";

/// Appends audit entries in group-committed batches.
pub struct AuditWriter(GroupCommit<AuditRecord, AccountError>);

impl AuditWriter {
    /// Starts the writer on `runtime`.
    pub fn start(db: Db, runtime: &tokio::runtime::Handle) -> Self {
        let stopped = || AccountError::Unavailable("the audit writer stopped".into());
        Self(GroupCommit::start(
            runtime,
            MAX_BATCH,
            stopped,
            move |entries| {
                let db = db.clone();
                async move { insert(&db, &entries).await }
            },
        ))
    }

    /// Appends one entry; answers when its batch is committed (or failed).
    pub async fn append(&self, entry: AuditRecord) -> AccountResult<()> {
        self.0.submit(entry).await
    }
}

async fn insert(db: &Db, entries: &[AuditRecord]) -> AccountResult<()> {
    let column = |field: fn(&AuditRecord) -> String| entries.iter().map(field).collect::<Vec<_>>();
    let optional =
        |field: fn(&AuditRecord) -> Option<String>| entries.iter().map(field).collect::<Vec<_>>();
    let tenants = column(|e| e.tenant_id.clone());
    let ids = column(|e| e.id.clone());
    let at: Vec<_> = entries.iter().map(|e| e.at).collect();
    let users = column(|e| e.user_id.clone());
    let actions = column(|e| e.action.clone());
    let outcomes = column(|e| outcome_name(e.outcome).to_owned());
    let resources = optional(|e| e.resource.clone());
    let client_ips = optional(|e| e.client_ip.clone());
    let client = db.client().await?;
    let statement = client.prepare_cached(INSERT).await.map_err(account_error)?;
    // A group holds many tenants' entries: each row's tenant is its own column.
    let params: [&(dyn ToSql + Sync); 8] = [
        &tenants,
        &ids,
        &at,
        &users,
        &actions,
        &outcomes,
        &resources,
        &client_ips,
    ];
    let write = client.execute(&statement, &params);
    pipelined(&client, Scope::AllTenants, write)
        .await
        .map_err(account_error)?;
    Ok(())
}

pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
        Outcome::Denied => "denied",
    }
}

pub fn outcome_from_name(name: &str) -> Outcome {
    match name {
        "success" => Outcome::Success,
        "denied" => Outcome::Denied,
        _ => Outcome::Failure,
    }
}
