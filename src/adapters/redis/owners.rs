//! Which node owns each session: the one that serves it (its actor lives there); the
//! others forward its requests there.
//!
//! A node claims a session when it creates or activates it (the owner key, and the
//! session's entry in the node's own set) and releases it when the session ends. A node
//! asked for a session it does not hold finds the owner with [`route`], one script: the
//! owner's address while its heartbeat lasts, or — when the owner was lost — the session,
//! taken over by the asking node (compare-and-set, so exactly one survivor wins). A
//! session with no recorded owner (created while Redis was away) is served by whoever is
//! asked.
//!
//! A lost node's sessions are also taken over without waiting for a request: every node
//! sweeps ([`orphans`]) the sets of nodes whose heartbeat lapsed, so their running
//! executions are recorded failed within seconds. The scripts compute key names, so this
//! needs one Redis (or a primary with replicas), not Redis Cluster.

use kailash_actors::{
    TenantId, UserId,
    broker::{Claim, SessionKey, SessionLimits},
};

use redis::AsyncCommands;
use uuid::Uuid;

use super::{NodeInfo, Shared, counts::workflows_key, nodes::node_key};

/// Where a session's requests are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Here: this node owns it (or took it over), or nobody does.
    Here,
    /// By its owner, at this address.
    Owner { node_id: String, address: String },
}

pub(super) const ROUTE_SCRIPT: &str = r#"
local owner = redis.call('GET', KEYS[1])
if not owner then return {'', ''} end
if owner == ARGV[1] then return {owner, ''} end
local info = redis.call('GET', ARGV[2] .. owner)
if info then return {owner, info} end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], ''}
"#;

/// Takes up to ARGV[3] sessions of a lost node (KEYS[1], its set): each whose owner is
/// still that node (ARGV[4]) or nobody becomes this node's (ARGV[1]). Answers the taken
/// members (`<session id> <tenant id>`).
pub(super) const ORPHANS_SCRIPT: &str = r#"
local taken = {}
for _, member in ipairs(redis.call('SPOP', KEYS[1], ARGV[3])) do
  local owner_key = ARGV[2] .. string.sub(member, 1, 36) .. '}:owner'
  local owner = redis.call('GET', owner_key)
  if (not owner) or owner == ARGV[4] then
    redis.call('SET', owner_key, ARGV[1])
    table.insert(taken, member)
  end
end
return taken
"#;

/// Sessions taken from a lost node per script run.
const ORPHANS_PER_RUN: usize = 100;

/// Claims a session for ARGV[1]. ARGV[4] says how: `new` checks (unless the session is
/// counted already) the cluster's live sessions (KEYS[3]) against ARGV[5], the user's
/// (KEYS[4]) against ARGV[6] and the tenant's (KEYS[5]) against ARGV[7] (0: no limit);
/// `again` (an activation, or Redis no longer lists it as this node's) claims it only if
/// nobody else owns it now — checked here, in the script, so a node that took the session
/// over between an activation's `owns` and its claim keeps it. 0: claimed; 1:
/// `max_sessions` reached; 2: the user's limit; 3: another node owns it; 4: the tenant's
/// `max_sessions` reached.
pub(super) const CLAIM_SCRIPT: &str = r#"
if ARGV[4] == 'again' then
  local owner = redis.call('GET', KEYS[1])
  if owner and owner ~= ARGV[1] then return 3 end
end
if ARGV[4] == 'new' and redis.call('SISMEMBER', KEYS[3], ARGV[3]) == 0 then
  if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[5]) then return 1 end
  if tonumber(ARGV[6]) > 0 and redis.call('SCARD', KEYS[4]) >= tonumber(ARGV[6]) then
    return 2
  end
  if tonumber(ARGV[7]) > 0 and redis.call('SCARD', KEYS[5]) >= tonumber(ARGV[7]) then
    return 4
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[3])
redis.call('SADD', KEYS[5], ARGV[3])
return 0
"#;

pub(super) fn owner_key(shared: &Shared, session_id: Uuid) -> String {
    shared.key(format_args!("{{{session_id}}}:owner"))
}

/// The set of sessions `node_id` owns.
fn sessions_of(shared: &Shared, node_id: &str) -> String {
    shared.key(format_args!("node:{node_id}:sessions"))
}

/// The live sessions of the cluster (`max_sessions`).
fn live_sessions(shared: &Shared) -> String {
    shared.key(format_args!("sessions"))
}

/// A user's live sessions in a tenant (`concurrent_sessions_limit`).
fn user_sessions(shared: &Shared, session: &SessionKey) -> String {
    let who = serde_json::to_string(&(&*session.tenant_id, &*session.user_id))
        .expect("strings serialize");
    shared.key(format_args!("user-sessions:{who}"))
}

/// A tenant's live sessions in the cluster (its own `max_sessions`). A lost node's sessions
/// stay in it: they are taken over, not ended.
fn tenant_sessions(shared: &Shared, tenant_id: &str) -> String {
    let tenant = serde_json::to_string(tenant_id).expect("strings serialize");
    shared.key(format_args!("tenant-sessions:{tenant}"))
}

/// `<session id> ["<tenant>","<user>"]`: the session id first, at a fixed width, so the
/// scripts can read it.
fn member(session: &SessionKey) -> String {
    let whose = serde_json::to_string(&(&*session.tenant_id, &*session.user_id))
        .expect("strings serialize");
    format!("{} {whose}", session.session_id)
}

fn parse_member(member: &str) -> Option<SessionKey> {
    let (session_id, whose) = member.split_once(' ')?;
    let (tenant_id, user_id): (String, String) = serde_json::from_str(whose).ok()?;
    Some(SessionKey {
        tenant_id: TenantId::from(tenant_id),
        user_id: UserId::from(user_id),
        session_id: session_id.parse().ok()?,
    })
}

/// The claim script's invocation for `session` (`how`: see [`CLAIM_SCRIPT`]).
fn claim_invocation<'a>(
    shared: &'a Shared,
    session: &SessionKey,
    how: &str,
    limits: Option<SessionLimits>,
) -> redis::ScriptInvocation<'a> {
    let mut invocation = shared.scripts.claim.prepare_invoke();
    invocation
        .key(owner_key(shared, session.session_id))
        .key(sessions_of(shared, &shared.options.node_id))
        .key(live_sessions(shared))
        .key(user_sessions(shared, session))
        .key(tenant_sessions(shared, &session.tenant_id))
        .arg(&shared.options.node_id)
        .arg(member(session))
        .arg(session.session_id.to_string())
        .arg(how)
        .arg(limits.map_or(0, |l| l.max_sessions))
        .arg(limits.map_or(0, |l| l.per_user))
        .arg(limits.map_or(0, |l| l.per_tenant));
    invocation
}

pub(super) async fn claim(
    shared: &Shared,
    session: &SessionKey,
    limits: Option<SessionLimits>,
) -> Result<Claim, redis::RedisError> {
    let how = if limits.is_some() { "new" } else { "again" };
    let outcome: u8 = claim_invocation(shared, session, how, limits)
        .invoke_async(&mut shared.commands.clone())
        .await?;
    let claim = match outcome {
        0 => Claim::Claimed,
        1 => Claim::MaxSessionsReached,
        2 => Claim::TooManySessions,
        4 => Claim::TenantMaxSessions,
        _ => Claim::OwnedElsewhere,
    };
    if claim == Claim::Claimed {
        shared
            .claimed
            .lock()
            .expect("claimed sessions")
            .insert(session.clone());
    }
    Ok(claim)
}

/// Claims again the `sessions` Redis no longer lists as this node's, in one round trip.
/// Either Redis restarted empty (nobody owns them: they are claimed again), or this node
/// was cut off past its heartbeat's lapse and a survivor took them over: those are lost,
/// forgotten here and answered, for the node to stop serving them.
pub(super) async fn claim_again(
    shared: &Shared,
    sessions: &[SessionKey],
) -> Result<Vec<SessionKey>, redis::RedisError> {
    let mut pipe = redis::pipe();
    for session in sessions {
        pipe.invoke_script(&claim_invocation(shared, session, "again", None));
    }
    let outcomes: Vec<u8> = shared.query_scripted(&pipe, &shared.scripts.claim).await?;
    let lost: Vec<SessionKey> = sessions
        .iter()
        .zip(outcomes)
        .filter(|(_, outcome)| *outcome == 3)
        .map(|(session, _)| session.clone())
        .collect();
    let mut mine = shared.claimed.lock().expect("claimed sessions");
    for session in &lost {
        mine.remove(session);
    }
    Ok(lost)
}

/// The key of the set Redis holds as this node's sessions.
pub(super) fn count_key(shared: &Shared) -> String {
    sessions_of(shared, &shared.options.node_id)
}

pub(super) async fn release(
    shared: &Shared,
    session: &SessionKey,
) -> Result<(), redis::RedisError> {
    shared
        .claimed
        .lock()
        .expect("claimed sessions")
        .remove(session);
    let id = session.session_id.to_string();
    redis::pipe()
        .del(owner_key(shared, session.session_id))
        .ignore()
        .srem(
            sessions_of(shared, &shared.options.node_id),
            member(session),
        )
        .ignore()
        .srem(live_sessions(shared), &id)
        .ignore()
        .srem(user_sessions(shared, session), &id)
        .ignore()
        .srem(tenant_sessions(shared, &session.tenant_id), &id)
        .ignore()
        .hdel(workflows_key(shared, &session.tenant_id), &id)
        .ignore()
        .query_async(&mut shared.commands.clone())
        .await
}

/// The sessions this node owned before it (re)started with the same id.
pub(super) async fn own_sessions(shared: &Shared) -> Result<Vec<SessionKey>, redis::RedisError> {
    let members: Vec<String> = shared
        .commands
        .clone()
        .smembers(sessions_of(shared, &shared.options.node_id))
        .await?;
    Ok(members.iter().filter_map(|m| parse_member(m)).collect())
}

/// Takes over the sessions of every node whose heartbeat lapsed, and forgets those nodes
/// once nothing of theirs is left.
pub(super) async fn orphans(shared: &Shared) -> Result<Vec<SessionKey>, redis::RedisError> {
    let me = &shared.options.node_id;
    let mut connection = shared.commands.clone();
    let node_set = shared.key(format_args!("nodes"));
    let ids: Vec<String> = connection.smembers(&node_set).await?;
    let mut taken = Vec::new();
    for id in ids.iter().filter(|id| *id != me) {
        let alive: bool = connection.exists(node_key(shared, id)).await?;
        if alive {
            continue;
        }
        loop {
            let members: Vec<String> = shared
                .scripts
                .orphans
                .key(sessions_of(shared, id))
                .arg(me)
                .arg(shared.key(format_args!("{{")))
                .arg(ORPHANS_PER_RUN)
                .arg(id)
                .invoke_async(&mut connection)
                .await?;
            if members.is_empty() {
                break;
            }
            taken.extend(members.iter().filter_map(|m| parse_member(m)));
        }
        let _: () = connection.srem(&node_set, id).await?;
    }
    Ok(taken)
}

pub(super) async fn route(shared: &Shared, session_id: Uuid) -> Result<Route, redis::RedisError> {
    let node_prefix = node_key(shared, "");
    let mut connection = shared.commands.clone();
    let (owner, info): (String, String) = shared
        .scripts
        .route
        .key(owner_key(shared, session_id))
        .arg(&shared.options.node_id)
        .arg(node_prefix)
        .invoke_async(&mut connection)
        .await?;
    if owner.is_empty() || owner == shared.options.node_id {
        return Ok(Route::Here);
    }
    match serde_json::from_str::<NodeInfo>(&info) {
        Ok(node) => Ok(Route::Owner {
            node_id: owner,
            address: node.address,
        }),
        Err(error) => Err(redis::RedisError::from((
            redis::ErrorKind::Parse,
            "an unreadable node record",
            error.to_string(),
        ))),
    }
}
