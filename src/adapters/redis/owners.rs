//! Which node owns each session: the one that serves it (its actor lives there); the
//! others forward its requests there.
//!
//! A node claims a session when it creates it and releases it when the session ends. A
//! node asked for a session it does not hold finds the owner with [`route`], one script:
//! the owner's address while its heartbeat lasts, or — when the owner was lost — the
//! session, taken over by the asking node (compare-and-set, so exactly one survivor wins).
//! A session with no recorded owner (created while Redis was away) is served by whoever is
//! asked.

use redis::{AsyncCommands, Script};
use uuid::Uuid;

use super::{NodeInfo, Shared, nodes::node_key};

/// Where a session's requests are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Here: this node owns it (or took it over), or nobody does.
    Here,
    /// By its owner, at this address.
    Owner { node_id: String, address: String },
}

const ROUTE_SCRIPT: &str = r#"
local owner = redis.call('GET', KEYS[1])
if not owner then return {'', ''} end
if owner == ARGV[1] then return {owner, ''} end
local info = redis.call('GET', ARGV[2] .. owner)
if info then return {owner, info} end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], ''}
"#;

fn owner_key(shared: &Shared, session_id: Uuid) -> String {
    shared.key(format_args!("{{{session_id}}}:owner"))
}

pub(super) async fn claim(shared: &Shared, session_id: Uuid) -> Result<(), redis::RedisError> {
    let mut connection = shared.commands.clone();
    connection
        .set(owner_key(shared, session_id), &shared.options.node_id)
        .await
}

pub(super) async fn release(shared: &Shared, session_id: Uuid) -> Result<(), redis::RedisError> {
    let mut connection = shared.commands.clone();
    connection.del(owner_key(shared, session_id)).await
}

pub(super) async fn route(shared: &Shared, session_id: Uuid) -> Result<Route, redis::RedisError> {
    let node_prefix = node_key(shared, "");
    let mut connection = shared.commands.clone();
    let (owner, info): (String, String) = Script::new(ROUTE_SCRIPT)
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
