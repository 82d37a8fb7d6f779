//! Which nodes are alive: each node's heartbeat, and the list `GET /api/admin/nodes` shows.
//!
//! Every [`HEARTBEAT`] a node writes its [`NodeInfo`] under its own key, expiring after
//! [`NODE_TTL`], and adds its id to the deployment's node set; a node whose key lapsed is
//! dead and is dropped from the set when the list is read. The heartbeat is also the
//! adapter's probe: it tells whether Redis answers (and, by pinging the subscriber
//! connection, makes that connection reconnect and resubscribe after an outage).

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use chrono::{DateTime, Utc};
use kailash_actors::broker::BrokerError;
use redis::{AsyncCommands, Value};
use serde::{Deserialize, Serialize};

use super::{Shared, counts, owners, runs};

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node counts as alive after its last heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(5);

/// A live node, as `GET /api/admin/nodes` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    pub node_id: String,
    pub address: String,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
}

pub(super) fn node_key(shared: &Shared, node_id: &str) -> String {
    shared.key(format_args!("node:{node_id}"))
}

fn node_set(shared: &Shared) -> String {
    shared.key(format_args!("nodes"))
}

/// Beats until the runtime stops or the node leaves.
pub(super) async fn heartbeat(shared: Arc<Shared>) {
    loop {
        let beating = shared.beating.lock().await;
        if shared.left.load(Ordering::Acquire) {
            return;
        }
        match beat(&shared).await {
            Ok(()) => {
                if shared.link.up() {
                    tracing::info!("Redis answers again");
                }
            }
            Err(error) => {
                if shared.link.down(&error) {
                    tracing::warn!(%error, "Redis is not answering; serving alone until it does");
                }
            }
        }
        drop(beating);
        tokio::time::sleep(HEARTBEAT).await;
    }
}

async fn beat(shared: &Shared) -> Result<(), redis::RedisError> {
    let options = &shared.options;
    let info = NodeInfo {
        node_id: options.node_id.clone(),
        address: options.address.clone(),
        started_at: shared.started_at,
        last_heartbeat: Utc::now(),
    };
    let json = serde_json::to_string(&info).expect("a NodeInfo serializes");
    let mut connection = shared.commands.clone();
    let mut pipe = redis::pipe();
    pipe.set_ex(node_key(shared, &options.node_id), json, NODE_TTL.as_secs())
        .ignore()
        .sadd(node_set(shared), &options.node_id)
        .ignore()
        .scard(owners::count_key(shared));
    runs::renew(shared, &mut pipe);
    counts::renew(shared, &mut pipe);
    let (held,): (usize,) = pipe.query_async(&mut connection).await?;
    let claimed: Vec<_> = {
        let claimed = shared.claimed.lock().expect("claimed sessions");
        if held >= claimed.len() {
            Vec::new()
        } else {
            claimed.iter().cloned().collect()
        }
    };
    if !claimed.is_empty() {
        // Redis lost what this node owns (it restarted empty: claim it again before another
        // node, finding no owner, serves one of these sessions too), or a survivor took it
        // over while this node was cut off (stop serving it).
        let lost = owners::claim_again(shared, &claimed).await?;
        tracing::warn!(
            claimed_again = claimed.len() - lost.len(),
            lost = lost.len(),
            "Redis no longer listed some of this node's sessions"
        );
        shared.lost.lock().expect("lost sessions").extend(lost);
    }
    let mut subscriber = shared.subscriber.clone();
    redis::cmd("PING")
        .query_async::<Value>(&mut subscriber)
        .await
        .map(drop)
}

/// Deletes this node's record, as its heartbeat's lapse would (see
/// `RedisBroker::leave`); it stays in the node set until a sweep has taken its sessions.
pub(super) async fn leave(shared: &Shared) -> Result<(), redis::RedisError> {
    let _no_beat = shared.beating.lock().await;
    shared
        .commands
        .clone()
        .del(node_key(shared, &shared.options.node_id))
        .await
}

/// The nodes whose heartbeat has not lapsed, oldest first. (Lapsed ones stay in the set
/// until a sweep has taken their sessions over: see `owners::orphans`.)
pub(super) async fn live(shared: &Shared) -> Result<Vec<NodeInfo>, BrokerError> {
    let failed = |error: redis::RedisError| BrokerError(error.to_string());
    let mut connection = shared.commands.clone();
    let ids: Vec<String> = connection
        .smembers(node_set(shared))
        .await
        .map_err(failed)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = ids.iter().map(|id| node_key(shared, id)).collect();
    let infos: Vec<Option<String>> = connection.mget(&keys).await.map_err(failed)?;
    let mut nodes: Vec<NodeInfo> = infos
        .into_iter()
        .flatten()
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect();
    nodes.sort_by(|a, b| (a.started_at, &a.node_id).cmp(&(b.started_at, &b.node_id)));
    Ok(nodes)
}
