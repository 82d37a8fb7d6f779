//! The background writer's batches.
//!
//! A batch is turned into one column array per field (its events into pages, see
//! [`super::events`]; node runs whose execution the batch finishes into that execution's
//! final update, see [`Folding`]) and written with one `UNNEST` statement per kind of write,
//! all in one transaction sent as one pipeline: a handful of prepared statements and one
//! round trip whatever the batch size. A batch retried after an unknown outcome changes
//! nothing twice: updates set final values (a final state is written once), and inserts
//! that meet rows already there are written again skipping them.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use kailash_actors::store::{EventRecord, Fence, NodeRunRecord, StoreError, Write};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use deadpool_postgres::Client;
use futures_util::future::{join, try_join_all};
use tokio_postgres::{Error as PgError, error::SqlState, types::ToSql};

use super::{Db, Scope, events::EventPages, executions::as_i64, pipelined, store_error};

/// A batch, by column.
#[derive(Default)]
pub struct Columns {
    events: EventPages,
    node_runs: NodeRunColumns,
    finished: FinishedColumns,
    touched: (Vec<String>, Vec<Uuid>, Vec<DateTime<Utc>>),
    ended: (Vec<String>, Vec<Uuid>, Vec<DateTime<Utc>>, Vec<String>),
    deliveries: DeliveryColumns,
}

#[derive(Default)]
struct DeliveryColumns {
    tenant: Vec<String>,
    webhook: Vec<Uuid>,
    delivery: Vec<Uuid>,
    event_type: Vec<String>,
    event_seq: Vec<i64>,
    status: Vec<String>,
    attempts: Vec<i32>,
    status_code: Vec<Option<i32>>,
    error: Vec<Option<String>>,
    finished: Vec<DateTime<Utc>>,
}

#[derive(Default)]
struct NodeRunColumns {
    tenant: Vec<String>,
    execution: Vec<Uuid>,
    node: Vec<String>,
    node_type: Vec<String>,
    status: Vec<String>,
    started: Vec<Option<DateTime<Utc>>>,
    finished: Vec<DateTime<Utc>>,
    time_ms: Vec<Option<f64>>,
    outputs: Vec<Value>,
    error: Vec<Option<String>>,
    fence: Vec<i64>,
}

#[derive(Default)]
struct FinishedColumns {
    tenant: Vec<String>,
    execution: Vec<Uuid>,
    status: Vec<String>,
    progress: Vec<f64>,
    started: Vec<Option<DateTime<Utc>>>,
    completed: Vec<Option<DateTime<Utc>>>,
    outputs: Vec<Value>,
    node_states: Vec<Value>,
    error: Vec<Option<String>>,
    fence: Vec<i64>,
    /// The execution's node runs of the same batch (V8), as a JSON array; `None`: none.
    node_runs: Vec<Option<Value>>,
}

/// An execution a batch finishes: tenant, id and the fencing token of its final state.
type Finishing<'a> = (&'a str, Uuid, Fence);

/// The node runs of a batch that go with their execution's final state, and where.
#[derive(Default)]
struct Folding<'a> {
    /// Each execution the batch finishes, by tenant, id and fencing token: its index in
    /// [`FinishedColumns`] and its final outputs. A run under another token is not folded,
    /// and is refused or taken on its own as before.
    finishing: HashMap<Finishing<'a>, (usize, &'a Map<String, Value>)>,
    /// Per finished execution, its runs.
    runs: Vec<Vec<Value>>,
}

impl<'a> Folding<'a> {
    fn of(batch: &'a [Write]) -> Self {
        let mut folding = Self::default();
        for write in batch {
            if let Write::ExecutionFinished(execution) = write {
                let key = (
                    &*execution.tenant_id,
                    execution.snapshot.execution_id,
                    execution.fence,
                );
                let next = (folding.runs.len(), &execution.snapshot.outputs);
                folding.finishing.entry(key).or_insert(next);
                folding.runs.push(Vec::new());
            }
        }
        folding
    }

    /// Takes `run` into its execution's final update, if the batch finishes it. A run's
    /// outputs are nearly always the execution's outputs of that node, written in the same
    /// update: then they are left out (the reader takes them from there), which keeps the
    /// updated row small enough to stay on its page (a HOT update).
    fn fold(&mut self, run: &NodeRunRecord) -> bool {
        let key = (&*run.tenant_id, run.execution_id, run.fence);
        let Some(&(finished, outputs)) = self.finishing.get(&key) else {
            return false;
        };
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut folded = json!({
            "node_id": &*run.node_id,
            "node_type": run.node_type,
            "status": run.status,
            "started_at": run.started_at.map(at),
            "finished_at": at(run.finished_at),
            "execution_time_ms": run.execution_time_ms,
            "error": run.error,
        });
        if outputs.get(&*run.node_id) != Some(&run.outputs) {
            folded["outputs"] = run.outputs.clone();
        }
        self.runs[finished].push(folded);
        true
    }
}

// Only the node runs whose execution still holds their fencing token (see `Fence`).
insert!(
    INSERT_NODE_RUNS,
    "INSERT INTO node_runs \
    (tenant_id, execution_id, node_id, node_type, status, started_at, finished_at, \
    execution_time_ms, outputs, error, fence) \
    SELECT u.* FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], \
    $6::timestamptz[], $7::timestamptz[], $8::float8[], $9::jsonb[], $10::text[], \
    $11::int8[]) AS u(tenant_id, execution_id, node_id, node_type, status, started_at, \
    finished_at, execution_time_ms, outputs, error, fence) \
    WHERE EXISTS (SELECT 1 FROM executions e WHERE e.tenant_id = u.tenant_id \
    AND e.execution_id = u.execution_id AND e.fence = u.fence)"
);

/// The final state, and the running mark (see `executions::create_many`) cleared, in one
/// statement. Only columns no index covers change, so the row's new version stays on its
/// page (a HOT update) and no index is touched. A terminal state is final, and a write
/// under a fencing token the execution no longer holds is refused: the late write of a
/// node that lost the run (another node took its session over and failed it) changes
/// nothing.
const FINISH_EXECUTIONS: &str = "WITH done AS (DELETE FROM running_executions r \
    USING UNNEST($1::text[], $2::uuid[]) AS d(tenant_id, execution_id) \
    WHERE r.tenant_id = d.tenant_id AND r.execution_id = d.execution_id) \
    UPDATE executions e SET status = u.status, \
    progress = u.progress, current_node = NULL, started_at = u.started_at, \
    completed_at = u.completed_at, outputs = u.outputs, node_states = u.node_states, \
    error = u.error, node_runs = u.node_runs \
    FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::float8[], $5::timestamptz[], \
    $6::timestamptz[], $7::jsonb[], $8::jsonb[], $9::text[], $10::int8[], $11::json[]) \
    AS u(tenant_id, execution_id, status, progress, started_at, completed_at, outputs, \
    node_states, error, fence, node_runs) \
    WHERE e.tenant_id = u.tenant_id AND e.execution_id = u.execution_id \
    AND e.status IN ('started', 'running') AND e.fence = u.fence";

const TOUCH_SESSIONS: &str = "UPDATE sessions s SET last_activity = GREATEST(s.last_activity, u.at) \
    FROM UNNEST($1::text[], $2::uuid[], $3::timestamptz[]) AS u(tenant_id, session_id, at) \
    WHERE s.tenant_id = u.tenant_id AND s.session_id = u.session_id";

const END_SESSIONS: &str = "UPDATE sessions s SET ended_at = COALESCE(s.ended_at, u.at), \
    end_reason = COALESCE(s.end_reason, u.reason) \
    FROM UNNEST($1::text[], $2::uuid[], $3::timestamptz[], $4::text[]) \
    AS u(tenant_id, session_id, at, reason) \
    WHERE s.tenant_id = u.tenant_id AND s.session_id = u.session_id";

insert!(
    INSERT_DELIVERIES,
    "INSERT INTO webhook_deliveries \
    (tenant_id, webhook_id, delivery_id, event_type, event_seq, status, attempts, \
    last_status_code, last_error, finished_at) \
    SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::uuid[], $4::text[], $5::int8[], \
    $6::text[], $7::int4[], $8::int4[], $9::text[], $10::timestamptz[])"
);

/// Planner settings for a batch's transaction. Every statement of a batch finds its rows by
/// primary key, a handful per statement; but while a table is young, or grew since it was
/// last analyzed, the planner believes it small and joins the batch's rows to it by scanning
/// it whole (a hash join over a sequential scan), which on a fresh database cost the server
/// about a tenth of its time. Within the batch's transaction, only index lookups are planned.
const INDEX_LOOKUPS_ONLY: &str = "SET LOCAL enable_seqscan = off; \
    SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off";

impl Columns {
    pub fn of(batch: &[Write]) -> Self {
        let mut columns = Self::default();
        let mut events = Vec::new();
        let mut folding = Folding::of(batch);
        for write in batch {
            columns.push(write, &mut events, &mut folding);
        }
        columns.events = EventPages::of(events);
        columns.finished.node_runs = folding
            .runs
            .into_iter()
            .map(|runs| (!runs.is_empty()).then_some(Value::Array(runs)))
            .collect();
        columns
    }

    /// Adds `write` to its columns; events are gathered in `events`, to be packed at the
    /// end, and node runs that go with their execution's final state into `folding`.
    fn push<'a>(
        &mut self,
        write: &'a Write,
        events: &mut Vec<&'a EventRecord>,
        folding: &mut Folding,
    ) {
        match write {
            Write::Event(event) => events.push(event),
            Write::NodeRun(run) if folding.fold(run) => {}
            Write::NodeRun(run) => {
                let c = &mut self.node_runs;
                c.tenant.push(run.tenant_id.to_string());
                c.execution.push(run.execution_id);
                c.node.push(run.node_id.to_string());
                c.node_type.push(run.node_type.to_string());
                c.status.push(run.status.to_string());
                c.started.push(run.started_at);
                c.finished.push(run.finished_at);
                c.time_ms.push(run.execution_time_ms);
                c.outputs.push(run.outputs.clone());
                c.error.push(run.error.clone());
                c.fence.push(as_i64(run.fence));
            }
            Write::ExecutionFinished(execution) => {
                let (c, s) = (&mut self.finished, &execution.snapshot);
                c.tenant.push(execution.tenant_id.to_string());
                c.execution.push(s.execution_id);
                c.status.push(s.status.as_str().to_owned());
                c.progress.push(s.progress);
                c.started.push(s.started_at);
                c.completed.push(s.completed_at);
                c.outputs.push(Value::Object(s.outputs.clone()));
                c.node_states.push(Value::Object(s.node_states.clone()));
                c.error.push(s.error.clone());
                c.fence.push(as_i64(execution.fence));
            }
            Write::SessionTouched {
                tenant_id,
                session_id,
                at,
            } => {
                self.touched.0.push(tenant_id.to_string());
                self.touched.1.push(*session_id);
                self.touched.2.push(*at);
            }
            Write::SessionEnded {
                tenant_id,
                session_id,
                at,
                reason,
            } => {
                self.ended.0.push(tenant_id.to_string());
                self.ended.1.push(*session_id);
                self.ended.2.push(*at);
                self.ended.3.push((*reason).to_owned());
            }
            Write::WebhookDelivery(delivery) => {
                let c = &mut self.deliveries;
                c.tenant.push(delivery.tenant_id.to_string());
                c.webhook.push(delivery.webhook_id);
                c.delivery.push(delivery.delivery_id);
                c.event_type.push(delivery.event_type.to_owned());
                c.event_seq.push(as_i64(delivery.event_seq));
                c.status.push(delivery.status.to_owned());
                c.attempts
                    .push(i32::try_from(delivery.attempts).unwrap_or(i32::MAX));
                c.status_code.push(delivery.last_status_code.map(i32::from));
                c.error.push(delivery.last_error.clone());
                c.finished.push(delivery.finished_at);
            }
        }
    }

    /// Writes the batch in one transaction. The inserts are first tried plainly: checking
    /// for an existing row before each insert cost the server as much as the insert's own
    /// index work. Only a batch that meets a duplicate key — a retry of one that did commit
    /// although its outcome was lost — is written again skipping what is there.
    pub async fn write(&self, db: &Db) -> Result<(), StoreError> {
        let client = db.client().await?;
        match self.write_once(&client, false).await {
            Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                self.write_once(&client, true).await
            }
            written => written,
        }
        .map_err(store_error)
    }

    /// One attempt, [`pipelined`]: BEGIN, every statement and COMMIT are sent at once, so a
    /// batch costs one round trip whatever it holds (once its statements are prepared on
    /// this connection). A failed statement aborts the transaction, and the COMMIT that
    /// follows it then only ends it.
    async fn write_once(&self, client: &Client, skip_existing: bool) -> Result<(), PgError> {
        let (n, f, d) = (&self.node_runs, &self.finished, &self.deliveries);
        let insert = |sql: [&'static str; 2]| sql[usize::from(skip_existing)];
        let (insert_pages, pages) = self.events.insert(skip_existing);
        let statements: [(&str, bool, Vec<&(dyn ToSql + Sync)>); 6] = [
            (insert_pages, !self.events.is_empty(), pages),
            (
                insert(INSERT_NODE_RUNS),
                !n.tenant.is_empty(),
                vec![
                    &n.tenant,
                    &n.execution,
                    &n.node,
                    &n.node_type,
                    &n.status,
                    &n.started,
                    &n.finished,
                    &n.time_ms,
                    &n.outputs,
                    &n.error,
                    &n.fence,
                ],
            ),
            (
                FINISH_EXECUTIONS,
                !f.tenant.is_empty(),
                vec![
                    &f.tenant,
                    &f.execution,
                    &f.status,
                    &f.progress,
                    &f.started,
                    &f.completed,
                    &f.outputs,
                    &f.node_states,
                    &f.error,
                    &f.fence,
                    &f.node_runs,
                ],
            ),
            (
                TOUCH_SESSIONS,
                !self.touched.0.is_empty(),
                vec![&self.touched.0, &self.touched.1, &self.touched.2],
            ),
            (
                END_SESSIONS,
                !self.ended.0.is_empty(),
                vec![&self.ended.0, &self.ended.1, &self.ended.2, &self.ended.3],
            ),
            (
                insert(INSERT_DELIVERIES),
                !d.tenant.is_empty(),
                vec![
                    &d.tenant,
                    &d.webhook,
                    &d.delivery,
                    &d.event_type,
                    &d.event_seq,
                    &d.status,
                    &d.attempts,
                    &d.status_code,
                    &d.error,
                    &d.finished,
                ],
            ),
        ];
        let statements: Vec<_> = statements.into_iter().filter(|(_, any, _)| *any).collect();
        let prepared = try_join_all(
            statements
                .iter()
                .map(|(sql, _, _)| client.prepare_cached(sql)),
        )
        .await?;
        let writes = try_join_all(
            prepared
                .iter()
                .zip(&statements)
                .map(|(statement, (_, _, params))| client.execute(statement, params)),
        );
        // One transaction for the whole batch, which holds many tenants' rows (each row's
        // tenant is its own column): the planner settings, then every statement (in any
        // order: they commute).
        let statements = async {
            let (planned, written) = join(client.batch_execute(INDEX_LOOKUPS_ONLY), writes).await;
            planned?;
            written
        };
        pipelined(client, Scope::AllTenants, statements)
            .await
            .map(drop)
    }
}
