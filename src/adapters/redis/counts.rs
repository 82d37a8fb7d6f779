//! A tenant's own limits counted across the cluster (the deployment-wide ones are in
//! `owners` and `runs`). Two kinds, by what happens to the counted thing when its node is
//! lost:
//! - things that end with their node (WebSocket connections, runs holding a
//!   `max_concurrent_executions` slot) are *leases*: one sorted set per tenant and count,
//!   each member scored by its expiry, renewed by the node's heartbeat like the run leases
//!   (`runs`), so a lost node's members lapse within `runs::LEASE` (5 s) by themselves;
//! - workflows belong to sessions, which outlive their node (a survivor takes them over):
//!   one hash per tenant, a field per session holding its workflow count, removed with the
//!   session's owner key when the session ends (`owners::release`).
//!
//! Each check-and-count is one script, so two nodes cannot both take the last place.

use std::collections::HashSet;

use kailash_actors::{
    TenantId,
    broker::{SessionKey, TenantCount},
};
use uuid::Uuid;

use super::{
    Shared,
    runs::{expiry_ms, now_ms},
};

/// Drops lapsed leases of KEYS[1], then holds (or renews) the lease of ARGV[1], expiring at
/// ARGV[4], unless ARGV[3] others are held. 1: held; 0: the count is full.
pub(super) const HOLD_SCRIPT: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and
   redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
return 1
"#;

/// Counts one more workflow of the session ARGV[1] in the tenant's hash KEYS[1] unless the
/// tenant's sessions hold ARGV[2] already (0: no limit). 1: counted; 0: the limit.
pub(super) const COUNT_WORKFLOW_SCRIPT: &str = r#"
local max = tonumber(ARGV[2])
if max > 0 then
  local held = 0
  for _, count in ipairs(redis.call('HVALS', KEYS[1])) do held = held + tonumber(count) end
  if held >= max then return 0 end
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"#;

/// The sorted set of a tenant's leases of one count.
fn leases_key(shared: &Shared, count: TenantCount, tenant_id: &str) -> String {
    let tenant = serde_json::to_string(tenant_id).expect("strings serialize");
    let count = match count {
        TenantCount::WebSockets => "websockets",
        TenantCount::Runs => "runs",
    };
    shared.key(format_args!("tenant-{count}:{tenant}"))
}

/// The hash of a tenant's workflows, a field per session.
pub(super) fn workflows_key(shared: &Shared, tenant_id: &str) -> String {
    let tenant = serde_json::to_string(tenant_id).expect("strings serialize");
    shared.key(format_args!("tenant-workflows:{tenant}"))
}

pub(super) async fn hold(
    shared: &Shared,
    count: TenantCount,
    tenant_id: &TenantId,
    item: Uuid,
    max: u64,
) -> Result<bool, redis::RedisError> {
    let key = leases_key(shared, count, tenant_id);
    let held: u8 = shared
        .scripts
        .hold
        .key(&key)
        .arg(item.to_string())
        .arg(now_ms())
        .arg(max)
        .arg(expiry_ms())
        .invoke_async(&mut shared.commands.clone())
        .await?;
    if held == 1 {
        shared
            .leases
            .lock()
            .expect("held leases")
            .entry(key)
            .or_default()
            .insert(item);
    }
    Ok(held == 1)
}

pub(super) async fn let_go(
    shared: &Shared,
    count: TenantCount,
    tenant_id: &TenantId,
    item: Uuid,
) -> Result<(), redis::RedisError> {
    let key = leases_key(shared, count, tenant_id);
    {
        let mut leases = shared.leases.lock().expect("held leases");
        if let Some(items) = leases.get_mut(&key) {
            items.remove(&item);
            if items.is_empty() {
                leases.remove(&key);
            }
        }
    }
    redis::cmd("ZREM")
        .arg(key)
        .arg(item.to_string())
        .query_async(&mut shared.commands.clone())
        .await
}

/// Adds to `pipe` the renewal of this node's tenant leases (recreating them if Redis lost
/// them; a renewal may briefly overshoot a limit that others filled meanwhile).
pub(super) fn renew(shared: &Shared, pipe: &mut redis::Pipeline) {
    let leases = shared.leases.lock().expect("held leases");
    let expiry = expiry_ms();
    for (key, items) in leases.iter() {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(key);
        for item in items {
            zadd.arg(expiry).arg(item.to_string());
        }
        pipe.add_command(zadd).ignore();
    }
}

pub(super) async fn count_workflow(
    shared: &Shared,
    session: &SessionKey,
    max: Option<u64>,
) -> Result<bool, redis::RedisError> {
    let counted: u8 = shared
        .scripts
        .count_workflow
        .key(workflows_key(shared, &session.tenant_id))
        .arg(session.session_id.to_string())
        .arg(max.unwrap_or(0))
        .invoke_async(&mut shared.commands.clone())
        .await?;
    Ok(counted == 1)
}

/// What this node holds, by lease set (renewed by the heartbeat).
pub(super) type Leases = std::collections::HashMap<String, HashSet<Uuid>>;
