//! `SQLDatabaseNode` and `AsyncSQLDatabaseNode`: one PostgreSQL statement per run, with
//! bound parameters, pooled connections and the egress policy.
//!
//! - **Connections.** `connection_string` is a `postgres://` or `postgresql://` URL naming one
//!   TCP host (Kailash's named connections are out of scope). The host goes through the
//!   egress policy and the driver connects to the vetted addresses only; unix sockets and a
//!   `hostaddr` override are refused. Connections are plain TCP: the gateway has no TLS
//!   connector for PostgreSQL, so `sslmode=require` fails to connect. Both node types share
//!   one pool per distinct connection string (8 connections each); at most 32 pools exist,
//!   an idle one making room for a new string, and when every pool is busy the run is
//!   refused. Errors never repeat the connection string (it carries the password).
//! - **Runs.** Each run is its own transaction (committed on success, rolled back on error),
//!   so no connection goes back to the pool inside a transaction (session state such as temp
//!   tables does stay with it); statements that cannot run in a transaction block (`VACUUM`,
//!   `CREATE DATABASE`) are refused by the server. `timeout` bounds the run on both sides:
//!   `SET LOCAL statement_timeout` on the server and a timer here. A run that is cancelled or
//!   times out cancels its statement on the server and closes its connection. `query` is a
//!   single statement.
//! - **Parameters** (`$1..$n`) are bound, never spliced into the SQL: each is sent in
//!   PostgreSQL's text format and parsed by the server as the parameter's own type, so
//!   numeric, date, interval and the like bind from strings. JSON values are checked against
//!   the parameter type first (a number for an `int4` must be an integer in range, a boolean
//!   needs `bool` or text, ...); lists bind to array parameters, and any value binds to
//!   `json`/`jsonb` (a string as JSON text).
//! - **Results.** Integers, floats and booleans are JSON numbers and booleans (float
//!   NaN/±Infinity as the strings PostgreSQL prints); text, enums and uuid are strings;
//!   `json`/`jsonb` are JSON; `numeric` is an exact decimal string; timestamps with time
//!   zone are RFC 3339 in UTC, other dates and times ISO 8601 strings; `bytea` is `\x` hex;
//!   arrays are (nested) lists; NULL and `void` are null. Any other type fails the run with a
//!   message naming the column and suggesting a cast to text. At most 100 000 rows are
//!   returned.

mod codec;

use std::{
    collections::HashMap,
    fmt::Write as _,
    pin::pin,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError};
use futures_util::TryStreamExt;
use kailash_actors::engine::node::{
    NodeCall, NodeError, NodeOutput, NodeRegistry, NodeSchema, ParamSpec, ParamType, PortSpec,
    Widget,
};
use serde_json::{Value, json};
use tokio_postgres::{CancelToken, Client, Config, NoTls, config::Host};

use self::codec::{Decoder, bind, decode_row};
use super::{
    NodeEnvironment,
    egress::{EgressPolicy, error_chain, timeout_param},
    files::{native_node, output, required_str, schema, wrong_type},
};

const MAX_CONNECTIONS_PER_POOL: usize = 8;
const MAX_POOLS: usize = 32;
const MAX_ROWS: usize = 100_000;
const DEFAULT_TIMEOUT_SECS: u64 = 30;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn register(registry: &mut NodeRegistry, env: &NodeEnvironment) {
    let pools = Arc::new(Pools::new(EgressPolicy::new(&env.egress_allow)));
    for (node_type, nested) in [("SQLDatabaseNode", false), ("AsyncSQLDatabaseNode", true)] {
        let pools = Arc::clone(&pools);
        registry.register(native_node(sql_schema(node_type, nested), move |call| {
            let pools = Arc::clone(&pools);
            async move {
                let result = run(&pools, &call).await?;
                Ok(if nested {
                    output([("result", Value::Object(result))])
                } else {
                    result
                })
            }
        }));
    }
}

fn sql_schema(node_type: &'static str, nested: bool) -> NodeSchema {
    let parameters = vec![
        ParamSpec::required(
            "connection_string",
            ParamType::String,
            "A postgres:// or postgresql:// URL",
        )
        .widget(Widget::Password),
        ParamSpec::required(
            "query",
            ParamType::String,
            "One SQL statement; $1, $2, ... are the parameters",
        )
        .widget(Widget::Code),
        ParamSpec::optional(
            "parameters",
            ParamType::Array,
            None,
            "Values bound to $1..$n, in order",
        ),
        ParamSpec::optional(
            "timeout",
            ParamType::Number,
            Some(json!(DEFAULT_TIMEOUT_SECS)),
            "Seconds the run may take",
        )
        .validation(json!({"exclusive_minimum": 0})),
    ];
    let outputs = if nested {
        vec![PortSpec::output(
            "result",
            ParamType::Object,
            "data, row_count, columns, execution_time",
        )]
    } else {
        vec![
            PortSpec::output(
                "data",
                ParamType::Array,
                "The rows, as objects keyed by column name",
            ),
            PortSpec::output(
                "row_count",
                ParamType::Integer,
                "Rows returned, or rows affected",
            ),
            PortSpec::output("columns", ParamType::Array, "The column names, in order"),
            PortSpec::output("execution_time", ParamType::Number, "Seconds the run took"),
        ]
    };
    let description = "Runs one SQL statement against PostgreSQL with bound parameters";
    schema(
        node_type,
        "database",
        description,
        parameters,
        vec![],
        outputs,
    )
}

async fn run(pools: &Pools, call: &NodeCall) -> Result<NodeOutput, NodeError> {
    let connection_string = required_str(call, "connection_string")?;
    let query = required_str(call, "query")?;
    let values = match call.param("parameters") {
        None => &[][..],
        Some(Value::Array(values)) => values.as_slice(),
        Some(Value::Object(_)) => {
            return Err(NodeError::new(
                "named parameters are not supported; use $1.. with a list",
            ));
        }
        Some(other) => return Err(wrong_type("parameters", "a list", other)),
    };
    let timeout = timeout_param(call, Duration::from_secs(DEFAULT_TIMEOUT_SECS))?;
    let started = Instant::now();
    let pool = pools.get(connection_string).await?;
    let run = async {
        let running = Running::begin(&pool, timeout).await?;
        let outcome = statement(running.client(), query, values).await;
        let ended = running.end(outcome.is_ok()).await;
        // The statement's own error explains more than a failed rollback after it.
        let outcome = outcome?;
        ended.map(|()| outcome)
    };
    let (columns, rows, row_count) = tokio::time::timeout(timeout, run).await.map_err(|_| {
        NodeError::new(format!("query timed out after {}s", timeout.as_secs_f64()))
    })??;
    Ok(output([
        ("data", Value::Array(rows)),
        ("row_count", json!(row_count)),
        ("columns", json!(columns)),
        ("execution_time", json!(started.elapsed().as_secs_f64())),
    ]))
}

/// Runs `query` with `values` bound; the column names, the rows, and the row count (rows
/// affected for statements that return none).
async fn statement(
    client: &Client,
    query: &str,
    values: &[Value],
) -> Result<(Vec<String>, Vec<Value>, u64), NodeError> {
    let statement = client.prepare(query).await.map_err(sql_error)?;
    let types = statement.params();
    if types.len() != values.len() {
        let (wanted, given) = (types.len(), values.len());
        return Err(NodeError::new(format!(
            "the query takes {wanted} parameter(s) but {given} were given"
        )));
    }
    let params = (1..)
        .zip(types.iter().zip(values))
        .map(|(i, (ty, v))| bind(i, ty, v))
        .collect::<Result<Vec<_>, _>>()?;
    let columns = statement
        .columns()
        .iter()
        .map(|column| {
            let decoder = Decoder::for_type(column.type_()).ok_or_else(|| {
                let (name, ty) = (column.name(), column.type_());
                NodeError::new(format!(
                    "column \"{name}\" has type {ty}, which cannot be returned; \
                     cast it, e.g. {name}::text"
                ))
            })?;
            Ok((column.name().to_owned(), decoder))
        })
        .collect::<Result<Vec<_>, NodeError>>()?;
    let mut stream = pin!(
        client
            .query_raw(&statement, &params)
            .await
            .map_err(sql_error)?
    );
    let mut rows = Vec::new();
    while let Some(row) = stream.try_next().await.map_err(sql_error)? {
        if rows.len() == MAX_ROWS {
            return Err(NodeError::new(format!(
                "the query returns more than {MAX_ROWS} rows; add a LIMIT"
            )));
        }
        rows.push(Value::Object(decode_row(&row, &columns)?));
    }
    let row_count = if columns.is_empty() {
        stream.rows_affected().unwrap_or(0)
    } else {
        rows.len() as u64
    };
    Ok((
        columns.into_iter().map(|(name, _)| name).collect(),
        rows,
        row_count,
    ))
}

/// One bounded pool per connection string, shared by both SQL node types.
struct Pools {
    policy: EgressPolicy,
    /// Keyed by the whole string: other credentials or options are another pool.
    pools: Mutex<HashMap<String, Pool>>,
}

impl Pools {
    fn new(policy: EgressPolicy) -> Self {
        Self {
            policy,
            pools: Mutex::new(HashMap::new()),
        }
    }

    async fn get(&self, connection_string: &str) -> Result<Pool, NodeError> {
        if let Some(pool) = self.lock().get(connection_string) {
            return Ok(pool.clone());
        }
        let config = vetted_config(&self.policy, connection_string).await?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig::default());
        let pool = Pool::builder(manager)
            .max_size(MAX_CONNECTIONS_PER_POOL)
            .build()
            .map_err(|e| NodeError::new(format!("cannot create a connection pool: {e}")))?;
        let mut pools = self.lock();
        // Another run may have created the pool while this one resolved the host.
        if let Some(existing) = pools.get(connection_string) {
            return Ok(existing.clone());
        }
        if pools.len() >= MAX_POOLS {
            let idle = pools.iter().find(|(_, pool)| {
                let status = pool.status();
                status.available == status.size
            });
            let Some(idle) = idle.map(|(key, _)| key.clone()) else {
                return Err(NodeError::new(format!(
                    "too many distinct database connections in use (at most {MAX_POOLS})"
                )));
            };
            pools.remove(&idle);
        }
        pools.insert(connection_string.to_owned(), pool.clone());
        Ok(pool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pool>> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The driver configuration for `connection_string`, pinned to the addresses the egress
/// policy vetted for its host.
async fn vetted_config(
    policy: &EgressPolicy,
    connection_string: &str,
) -> Result<Config, NodeError> {
    let refuse = |why: &str| Err(NodeError::new(format!("connection_string {why}")));
    if !["postgres://", "postgresql://"]
        .iter()
        .any(|scheme| connection_string.starts_with(scheme))
    {
        return refuse(
            "must be a postgres:// or postgresql:// URL (named connections are not supported)",
        );
    }
    let mut config: Config = connection_string.parse().map_err(|e| {
        NodeError::new(format!("connection_string is invalid: {}", error_chain(&e)))
    })?;
    if !config.get_hostaddrs().is_empty() {
        return refuse("may not set hostaddr; name the server as the URL's host");
    }
    let host = match config.get_hosts() {
        [Host::Tcp(host)] => host.clone(),
        [Host::Unix(_)] => return refuse("names a unix socket, which is not allowed"),
        _ => return refuse("must name exactly one host"),
    };
    let port = match config.get_ports() {
        [] => 5432,
        [port] => *port,
        _ => return refuse("must name exactly one port"),
    };
    let addrs = policy.check_host(&host, port).await?;
    // The driver pairs the i-th host with the i-th hostaddr: repeating the host lets it try
    // every vetted address in turn, and never look the name up again.
    for (i, addr) in addrs.iter().enumerate() {
        if i > 0 {
            config.host(&host);
        }
        config.hostaddr(addr.ip());
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    Ok(config)
}

/// A pooled connection inside one run's transaction. Dropped before `end` — the run was
/// cancelled or timed out — it asks the server to cancel the statement and closes the
/// connection, rather than hand a busy one back to the pool.
struct Running {
    client: Option<Object>,
    cancel: CancelToken,
}

impl Running {
    async fn begin(pool: &Pool, timeout: Duration) -> Result<Self, NodeError> {
        let client = pool.get().await.map_err(|error| match error {
            PoolError::Backend(error) => sql_error(error),
            other => NodeError::new(format!("cannot get a database connection: {other}")),
        })?;
        let running = Self {
            cancel: client.cancel_token(),
            client: Some(client),
        };
        // LOCAL: the limit ends with the transaction instead of staying on the connection.
        // The server takes at most i32::MAX milliseconds (about 24 days).
        let millis = timeout.as_millis().clamp(1, i32::MAX as u128);
        let begin = format!("BEGIN; SET LOCAL statement_timeout = {millis}");
        running
            .client()
            .batch_execute(&begin)
            .await
            .map_err(sql_error)?;
        Ok(running)
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the connection is held until the run ends")
    }

    /// Commits (or rolls back) and returns the connection to the pool; one that cannot end
    /// its transaction is closed instead.
    async fn end(mut self, commit: bool) -> Result<(), NodeError> {
        let ended = self
            .client()
            .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" })
            .await;
        let client = self.client.take();
        ended.map_err(|error| {
            drop(client.map(Object::take));
            sql_error(error)
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        // Closing alone would leave the statement running until the server next writes to
        // the socket; the cancel request (its own connection) stops it now.
        drop(Object::take(client));
        let cancel = self.cancel.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = cancel.cancel_query(NoTls).await;
            });
        }
    }
}

/// The server's message with its detail and hint, or the driver's for connection problems.
fn sql_error(error: tokio_postgres::Error) -> NodeError {
    let Some(db) = error.as_db_error() else {
        return NodeError::new(format!("database error: {}", error_chain(&error)));
    };
    let mut message = format!("SQL error {}: {}", db.code().code(), db.message());
    for extra in [db.detail(), db.hint()].into_iter().flatten() {
        let _ = write!(message, "; {extra}");
    }
    NodeError::new(message)
}

#[cfg(test)]
mod tests;
