//! Cluster-wide run slots (`max_concurrent_executions`): each running execution holds a
//! lease in one sorted set, scored by its expiry, renewed by its node's heartbeat. A run
//! that ends gives its lease back; a lost node's leases lapse by themselves, so its slots
//! free up within [`LEASE`] without anyone's help. Each lease comes with the run's fencing
//! token, from one counter, so tokens only grow.

use std::time::Duration;

use kailash_actors::store::Fence;
use uuid::Uuid;

use super::Shared;

/// How long a run's lease lasts without renewal (the heartbeat renews it every second).
pub const LEASE: Duration = Duration::from_secs(5);

/// Drops lapsed leases, then takes one for ARGV[1] unless KEYS[1] holds ARGV[3] already
/// (one it holds already is kept); with ARGV[5] = 1 answers a new fencing token from the
/// counter KEYS[2] (tokens start at 1), else 1 (0: no slot).
pub(super) const RESERVE_SCRIPT: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
if ARGV[5] == '1' then return redis.call('INCR', KEYS[2]) end
return 1
"#;

fn runs_key(shared: &Shared) -> String {
    shared.key(format_args!("runs"))
}

fn fences_key(shared: &Shared) -> String {
    shared.key(format_args!("fences"))
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

pub(super) fn expiry_ms() -> u64 {
    now_ms() + LEASE.as_millis() as u64
}

/// Takes a lease for a new run and its fencing token; `None`: the cluster is full.
pub(super) async fn reserve(
    shared: &Shared,
    execution_id: Uuid,
    limit: usize,
) -> Result<Option<Fence>, redis::RedisError> {
    lease(shared, execution_id, limit, true).await
}

/// Takes a lease again for a run that gave its own up while it waited (it keeps its token);
/// answers whether it holds one.
pub(super) async fn resume(
    shared: &Shared,
    execution_id: Uuid,
    limit: usize,
) -> Result<bool, redis::RedisError> {
    Ok(lease(shared, execution_id, limit, false).await?.is_some())
}

async fn lease(
    shared: &Shared,
    execution_id: Uuid,
    limit: usize,
    new_token: bool,
) -> Result<Option<Fence>, redis::RedisError> {
    let mut invocation = shared.scripts.reserve.prepare_invoke();
    invocation
        .key(runs_key(shared))
        .key(fences_key(shared))
        .arg(execution_id.to_string())
        .arg(now_ms())
        .arg(limit)
        .arg(expiry_ms())
        .arg(u8::from(new_token));
    let answer: Fence = invocation
        .invoke_async(&mut shared.commands.clone())
        .await?;
    if answer == 0 {
        return Ok(None);
    }
    shared
        .running
        .lock()
        .expect("running runs")
        .insert(execution_id);
    Ok(Some(answer))
}

pub(super) async fn end(shared: &Shared, execution_id: Uuid) -> Result<(), redis::RedisError> {
    shared
        .running
        .lock()
        .expect("running runs")
        .remove(&execution_id);
    redis::cmd("ZREM")
        .arg(runs_key(shared))
        .arg(execution_id.to_string())
        .query_async(&mut shared.commands.clone())
        .await
}

/// Adds to `pipe` the renewal of this node's leases (recreating them if Redis lost them).
pub(super) fn renew(shared: &Shared, pipe: &mut redis::Pipeline) {
    let running = shared.running.lock().expect("running runs");
    if running.is_empty() {
        return;
    }
    let expiry = expiry_ms();
    let mut zadd = redis::cmd("ZADD");
    zadd.arg(runs_key(shared));
    for execution_id in running.iter() {
        zadd.arg(expiry).arg(execution_id.to_string());
    }
    pipe.add_command(zadd).ignore();
}
