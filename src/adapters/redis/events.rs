//! Session events through Redis: numbering, the shared history, and delivery to every node.
//!
//! One Lua script per event does, atomically: `seq = INCR` of the session's counter (kept
//! above the publishing node's `floor`), stamps `seq` into the event's JSON, `XADD`s it to
//! the session's stream (entry id `<seq>-1`, trimmed to the history length, expiring with
//! the retention) and `PUBLISH`es `<origin node> <json>` on the deployment's one event
//! channel. Redis runs scripts one at a time and delivers a channel's messages in publish
//! order, so every node receives each session's events in `seq` order. An event of a
//! session another node owns now is refused (the publishing node lost it; see
//! `owners::claim_again`).
//!
//! The publisher pipelines whatever is queued (up to [`BATCH`] events per round trip).
//! While Redis is down it does not wait on it: queued events go straight back to the bus
//! for local delivery until the probe sees Redis answer again.

use std::{sync::Arc, time::Duration};

use actix::Recipient;
use kailash_actors::{
    broker::{BrokerError, FromBroker, Outbound},
    store::EventRecord,
};
use redis::{AsyncCommands, PushInfo, PushKind, Value, streams::StreamRangeReply};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{Shared, control, owners};

/// Events per pipelined round trip.
const BATCH: usize = 512;

/// Refuses (answers 0) an event of a session another node owns now: this node was cut off
/// long enough for a survivor to take the session over, and until it notices, nothing it
/// still says of that session may reach anyone.
pub(super) const PUBLISH_SCRIPT: &str = r#"
local owner = redis.call('GET', KEYS[4])
if owner and owner ~= ARGV[3] then return 0 end
local seq = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[1], seq)
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
local json = ARGV[2]
local i, j = string.find(json, '"seq":0,', 1, true)
json = string.sub(json, 1, i - 1) .. '"seq":' .. seq .. ',' .. string.sub(json, j + 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-1', 'e', json)
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', KEYS[3], ARGV[3] .. ' ' .. json)
return seq
"#;

/// The deployment's event channel.
pub(super) fn channel(shared: &Shared) -> String {
    shared.key(format_args!("events"))
}

/// A session's `seq` counter and stream (one hash slot per session, its owner key's).
fn session_keys(shared: &Shared, session_id: Uuid) -> (String, String) {
    (
        shared.key(format_args!("{{{session_id}}}:seq")),
        shared.key(format_args!("{{{session_id}}}:events")),
    )
}

/// Gives events the broker could not take back to the bus, for delivery on this node.
pub(super) fn hand_back(shared: &Shared, events: Vec<Outbound>) {
    if let Some(bus) = shared.bus.get() {
        bus.do_send(FromBroker::Unpublished(events));
    }
}

/// Publishes queued events until the queue closes.
pub(super) async fn publish_loop(shared: Arc<Shared>, mut queue: mpsc::Receiver<Outbound>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        if !shared.link.is_up() {
            hand_back(&shared, std::mem::take(&mut batch));
            continue;
        }
        match publish_batch(&shared, &batch).await {
            Ok(()) => batch.clear(),
            Err(error) => {
                if shared.link.down(&error) {
                    tracing::warn!(%error, "Redis is not answering; events are delivered on this node only");
                }
                hand_back(&shared, std::mem::take(&mut batch));
            }
        }
    }
}

async fn publish_batch(shared: &Shared, batch: &[Outbound]) -> Result<(), redis::RedisError> {
    let channel = channel(shared);
    let ttl = shared.options.retention.as_secs().max(1);
    let mut pipe = redis::pipe();
    for event in batch {
        let session_id = event
            .event
            .session_id
            .expect("only session events are brokered");
        let (seq_key, stream_key) = session_keys(shared, session_id);
        let mut invocation = shared.scripts.publish.prepare_invoke();
        invocation
            .key(seq_key)
            .key(stream_key)
            .key(&channel)
            .key(owners::owner_key(shared, session_id))
            .arg(event.floor)
            .arg(&*event.json)
            .arg(&shared.options.node_id)
            .arg(shared.options.history_len.max(1))
            .arg(ttl);
        pipe.invoke_script(&invocation);
    }
    let numbered: Vec<u64> = shared
        .query_scripted(&pipe, &shared.scripts.publish)
        .await?;
    let refused = numbered.iter().filter(|&&seq| seq == 0).count();
    if refused > 0 {
        tracing::warn!(
            refused,
            "events of sessions another node took over were not published"
        );
    }
    Ok(())
}

/// Hands every event message of the subscriber connection to the bus.
pub(super) async fn receive_loop(
    shared: Arc<Shared>,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    bus: Recipient<FromBroker>,
) {
    let channels = [
        channel(&shared),
        control::channel(&shared, &shared.options.node_id),
    ];
    let mut subscriber = shared.subscriber.clone();
    let mut pause = Duration::from_millis(100);
    // The first subscription connects; after that the connection manager resubscribes
    // by itself whenever it reconnects.
    while let Err(error) = subscriber.subscribe(&channels).await {
        if shared.link.down(&error) {
            tracing::warn!(%error, "cannot subscribe to Redis; retrying");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message => match message_of(&push.data) {
                Some((on, payload)) if on == channels[1].as_bytes() => {
                    control::receive(&shared, payload);
                }
                Some((_, payload)) => {
                    if let Some(event) = decode_event_message(&shared, payload) {
                        bus.do_send(event);
                    }
                }
                None => {}
            },
            PushKind::Disconnection
                if shared
                    .link
                    .down("the subscriber connection to Redis was lost") =>
            {
                tracing::warn!("the Redis subscriber connection was lost; reconnecting");
            }
            _ => {}
        }
    }
}

/// A pub/sub message's `[channel, payload]`.
fn message_of(data: &[Value]) -> Option<(&[u8], &str)> {
    match (data.first()?, data.get(1)?) {
        (Value::BulkString(channel), Value::BulkString(payload)) => {
            Some((channel, std::str::from_utf8(payload).ok()?))
        }
        _ => None,
    }
}

/// `<origin> <json>` → the event, marked as this node's own or not.
fn decode_event_message(shared: &Shared, payload: &str) -> Option<FromBroker> {
    let (origin, json) = payload.split_once(' ')?;
    match decode_event(json) {
        Ok(record) => Some(FromBroker::Event {
            record,
            own: origin == shared.options.node_id,
        }),
        Err(error) => {
            tracing::warn!(%error, "ignored an undecodable event from Redis");
            None
        }
    }
}

fn decode_event(json: &str) -> Result<EventRecord, BrokerError> {
    EventRecord::from_json(json).map_err(BrokerError)
}

/// The session's stream after `after_seq`, oldest first.
pub(super) async fn read_stream(
    shared: &Shared,
    session_id: Uuid,
    after_seq: u64,
) -> Result<Vec<EventRecord>, BrokerError> {
    let (_, stream_key) = session_keys(shared, session_id);
    let mut connection = shared.commands.clone();
    let reply: StreamRangeReply = connection
        .xrange(stream_key, format!("{}-0", after_seq + 1), "+")
        .await
        .map_err(|error| BrokerError(error.to_string()))?;
    reply
        .ids
        .iter()
        .filter_map(|entry| entry.get::<String>("e"))
        .map(|json| decode_event(&json))
        .collect()
}
