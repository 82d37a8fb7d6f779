//! Requests from one node to another over Redis, answered: a node asks the node that serves
//! a session to act on it (cancel one of its runs) and waits for the answer.
//!
//! Each node listens on its own control channel, on the subscriber connection the events
//! use (so it resubscribes with them after a reconnect). A request names the asking node's
//! channel and an id; the answer goes back on that channel with the same id, and the asker
//! wakes the caller waiting on that id. What a request and an answer say is the caller's
//! business (JSON both ways): this module only carries them.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use kailash_actors::broker::BrokerError;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::Shared;

/// A node's control channel.
pub(super) fn channel(shared: &Shared, node_id: &str) -> String {
    shared.key(format_args!("control:{node_id}"))
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Message {
    Request { id: Uuid, from: String, body: Value },
    Answer { id: Uuid, body: Value },
}

/// The requests in flight from this node, and where this node's incoming requests go.
pub(super) struct Control {
    waiting: Mutex<HashMap<Uuid, oneshot::Sender<Value>>>,
    incoming: mpsc::UnboundedSender<IncomingRequest>,
}

impl Control {
    pub(super) fn new() -> (Self, mpsc::UnboundedReceiver<IncomingRequest>) {
        let (incoming, requests) = mpsc::unbounded_channel();
        let control = Self {
            waiting: Mutex::default(),
            incoming,
        };
        (control, requests)
    }
}

/// A request another node sent this one; [`IncomingRequest::answer`] replies.
pub struct IncomingRequest {
    pub body: Value,
    id: Uuid,
    reply_to: String,
    shared: std::sync::Arc<Shared>,
    /// The adapter's runtime, where all Redis work runs.
    runtime: tokio::runtime::Handle,
}

impl IncomingRequest {
    /// Sends the answer back to the asking node (best effort: if it cannot be sent, the
    /// asker times out and tells its client to retry).
    pub fn answer(self, body: Value) {
        let message = serde_json::to_string(&Message::Answer { id: self.id, body })
            .expect("JSON values serialize");
        let shared = self.shared.clone();
        self.runtime.clone().spawn(async move {
            let sent: Result<usize, _> = shared
                .commands
                .clone()
                .publish(&self.reply_to, message)
                .await;
            if let Err(error) = sent {
                tracing::warn!(%error, "could not answer another node's request");
            }
        });
    }
}

/// Sends `body` to `node_id` and waits up to `within` for its answer.
pub(super) async fn ask(
    shared: &std::sync::Arc<Shared>,
    node_id: &str,
    body: Value,
    within: Duration,
) -> Result<Value, BrokerError> {
    let id = Uuid::new_v4();
    let message = serde_json::to_string(&Message::Request {
        id,
        from: shared.options.node_id.clone(),
        body,
    })
    .expect("JSON values serialize");
    let (answered, answer) = oneshot::channel();
    let waiting = || shared.control.waiting.lock().expect("waiting requests");
    waiting().insert(id, answered);
    let receivers: Result<usize, _> = shared
        .commands
        .clone()
        .publish(channel(shared, node_id), message)
        .await;
    let outcome = match receivers {
        Ok(0) => Err(BrokerError(format!("node {node_id} is not listening"))),
        Ok(_) => match tokio::time::timeout(within, answer).await {
            Ok(Ok(body)) => Ok(body),
            _ => Err(BrokerError(format!(
                "node {node_id} did not answer within {within:?}"
            ))),
        },
        Err(error) => Err(BrokerError(error.to_string())),
    };
    waiting().remove(&id);
    outcome
}

/// Handles a message of this node's control channel.
pub(super) fn receive(shared: &std::sync::Arc<Shared>, payload: &str) {
    match serde_json::from_str(payload) {
        Ok(Message::Request { id, from, body }) => {
            let request = IncomingRequest {
                body,
                id,
                reply_to: channel(shared, &from),
                shared: shared.clone(),
                runtime: tokio::runtime::Handle::current(),
            };
            if shared.control.incoming.send(request).is_err() {
                tracing::warn!("a request from another node arrived with nobody to serve it");
            }
        }
        Ok(Message::Answer { id, body }) => {
            let waiter = shared
                .control
                .waiting
                .lock()
                .expect("waiting requests")
                .remove(&id);
            // Gone: the asker gave up waiting already.
            if let Some(waiter) = waiter {
                drop(waiter.send(body));
            }
        }
        Err(error) => tracing::warn!(%error, "ignored an unreadable control message"),
    }
}
