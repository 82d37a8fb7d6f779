//! `GET /ws`: the WebSocket endpoint (actix-ws). Each connection is one task that owns its
//! socket and is a subscriber of the event bus (and of any rooms it joins) through one bounded
//! queue.
//!
//! The handshake is refused with the HTTP error itself (401, 400 for bad `event_types`, 404
//! for a session that is not the caller's, 429 when the tenant's
//! `max_websocket_connections` are open here) before the connection opens. Afterwards the task
//! serves, in one loop: the client's messages ([`messages`], each authorized like its HTTP
//! twin), the queued events and room frames, the server's pings, and the node's shutdown.
//!
//! How a connection ends, and the close code the client sees:
//! - the client closes, or goes silent past `ws_client_timeout_seconds` → 1000;
//! - a frame larger than `ws_max_frame_bytes` → 1009; a protocol error → 1002;
//! - its queue filled because it could not keep up → 1013, counted as a slow consumer;
//! - the node shuts down → 1001 "going away", whose reason is the reconnect hint
//!   ([`RECONNECT_HINT`]);
//! - its tenant is deactivated → 1008 "the tenant was deactivated".
//!
//! A write that the client does not take within `ws_client_timeout_seconds` ends the
//! connection without a close frame: a client that stopped reading can't receive one.

mod messages;

use std::{sync::Arc, time::Duration};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, ProtocolError, Session};
use kailash_actors::{
    Caller,
    broker::SharedBroker,
    bus::SubscriberId,
    events::{EventFilter, PublishedEvent},
    subscriber::{Delivery, SubscriberInbox, SubscriberQueue, WhenFull},
};
use serde_json::json;
use tokio::time::{Instant, interval_at, timeout};
use uuid::Uuid;

use super::{StreamQuery, authorized_filter, refuse_when_draining};
use crate::{
    access::Principal,
    app::AppState,
    auth::{Identity, Presented},
    http::{
        ApiError, ErrorCode,
        request_id::{accept_or_generate, scope},
    },
    metrics::Transport,
    tenants::ConnectionSlot,
};

pub async fn connect(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    refuse_when_draining(&state)?;
    let caller = identity.caller(query.user_id.as_deref());
    let principal = match identity {
        Identity::Authenticated(principal) => Some(principal),
        Identity::Open { .. } => None,
    };
    let filter = authorized_filter(&state, &caller, query.request()?).await?;
    let slot = state
        .tenants
        .open_connection(
            &caller.tenant_id,
            state
                .cluster
                .as_ref()
                .map(|cluster| cluster.redis.clone() as SharedBroker),
        )
        .await
        .inspect_err(|_| {
            state
                .metrics
                .quota_rejected("max_websocket_connections", &caller.tenant_id)
        })?;
    let (response, socket, messages) = actix_ws::handle(&req, body).map_err(|error| {
        ApiError::new(ErrorCode::InvalidRequest)
            .with_detail(format!("Not a WebSocket handshake: {error}"))
    })?;
    let (queue, inbox) =
        SubscriberQueue::bounded(state.settings.subscriber_queue_len, WhenFull::Disconnect);
    // A resume (`last_seq`) follows one session's stream, as SSE's `Last-Event-ID` does.
    let resume_after = query.last_seq.filter(|_| filter.session_id.is_some());
    let subscription = state
        .gateway
        .subscribe(filter.clone(), resume_after, queue.clone())
        .await?;
    let backlog = subscription.backlog;
    let messages = messages.max_frame_size(state.settings.ws_max_frame_bytes);
    let connection = Connection {
        id: Uuid::new_v4(),
        caller,
        principal,
        client_ip: state.limits.proxies.client_ip(&req),
        credential: Presented::of(&req),
        filter,
        subscriber: subscription.id,
        backlog: backlog.gap.into_iter().chain(backlog.events).collect(),
        queue,
        rooms: Vec::new(),
        socket,
        write_timeout: Duration::from_secs_f64(state.settings.ws_client_timeout_seconds),
        _slot: slot,
        state: state.into_inner(),
    };
    actix_web::rt::spawn(connection.run(messages, inbox));
    Ok(response)
}

/// The reason of the close frame (1001) a draining node sends: reconnect through the load
/// balancer, resuming from the last `seq` received.
const RECONNECT_HINT: &str = "going_away: the node is shutting down; reconnect with last_seq";

/// One open WebSocket connection.
struct Connection {
    id: Uuid,
    caller: Caller,
    /// The credential's principal (gated mode): every message is authorized against it.
    principal: Option<Principal>,
    /// Where the client connected from (its messages count against its rate limits).
    client_ip: Option<std::net::IpAddr>,
    /// The credential itself, presented again to a session's node when a message is
    /// served there (a cluster).
    credential: Option<Presented>,
    /// What the connection receives now; `subscribe_events` replaces it.
    filter: EventFilter,
    subscriber: SubscriberId,
    /// Sent right after `connected`, before the live queue: a resume's gap notice and the
    /// events it missed.
    backlog: Vec<Arc<PublishedEvent>>,
    /// The sending side of its own queue, handed to the rooms it joins.
    queue: SubscriberQueue,
    rooms: Vec<Arc<str>>,
    socket: Session,
    write_timeout: Duration,
    /// Its place in the tenant's `max_websocket_connections`, given back when it ends.
    _slot: ConnectionSlot,
    state: Arc<AppState>,
}

/// Why the serving loop stopped.
enum Ending {
    /// Send this close frame, then stop.
    Close(CloseReason),
    /// The client is gone or not reading: stop without a close frame.
    Gone,
}

fn close(code: CloseCode, description: impl Into<String>) -> Ending {
    Ending::Close(CloseReason {
        code,
        description: Some(description.into()),
    })
}

impl Connection {
    async fn run(mut self, mut messages: MessageStream, mut inbox: SubscriberInbox) {
        let state = self.state.clone();
        let metrics = state.metrics.realtime.transport(Transport::WebSocket);
        metrics.connections.inc();
        let settings = &state.settings;
        let ping_every = Duration::from_secs_f64(settings.ws_ping_seconds);
        let silent_limit = Duration::from_secs_f64(settings.ws_client_timeout_seconds);
        let mut ping = interval_at(Instant::now() + ping_every, ping_every);
        let mut closing = state.lifecycle.streams_closing();
        let mut deactivations = state.tenants.deactivations();
        let tenant_id = self.caller.tenant_id.clone();
        let mut last_heard = Instant::now();

        let hello = json!({
            "type": "connected",
            "connection_id": self.id,
            "session_id": self.filter.session_id,
            "user_id": &*self.caller.user_id,
        });
        let mut ending = self.send(hello.to_string()).await.err();
        for event in std::mem::take(&mut self.backlog) {
            if ending.is_some() {
                break;
            }
            ending = self.send(event_frame(&event)).await.err();
        }
        while ending.is_none() {
            let step = tokio::select! {
                _ = closing.wait_for(|closing| *closing) => Err(close(CloseCode::Away, RECONNECT_HINT)),
                _ = deactivations.wait_for(|_| !state.tenants.is_active(&tenant_id)) => Err(close(
                    CloseCode::Policy,
                    "the tenant was deactivated",
                )),
                incoming = messages.recv() => {
                    last_heard = Instant::now();
                    // Boxed: handling a message awaits deep gateway calls, and keeping their
                    // state inline would make every idle connection's task that much bigger.
                    Box::pin(self.on_incoming(incoming)).await
                }
                delivery = inbox.rx.recv() => match delivery {
                    Some(Delivery::Event(event)) => {
                        let sent = self.send(event_frame(&event)).await;
                        metrics.delivered_one(event.published_at);
                        sent
                    }
                    Some(Delivery::Frame(frame)) => self.send(frame.to_string()).await,
                    None => Err(close(CloseCode::Away, "event feed ended")),
                },
                _ = inbox.status.cut_off() => {
                    metrics.slow_consumers_closed.inc();
                    Err(close(
                        CloseCode::Again,
                        "too slow: the outbound queue filled; reconnect and resume",
                    ))
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > silent_limit {
                        Err(close(CloseCode::Normal, "no message or pong within the client timeout"))
                    } else {
                        self.ping().await
                    }
                }
            };
            ending = step.err();
        }

        state.gateway.unsubscribe(self.subscriber);
        state
            .gateway
            .leave_rooms(&self.caller, std::mem::take(&mut self.rooms), self.id);
        metrics.connections.dec();
        if let Some(Ending::Close(reason)) = ending {
            // Bounded: a client that stopped reading cannot take even a close frame.
            let _ = timeout(self.write_timeout, self.socket.close(Some(reason))).await;
        }
    }

    /// One item from the client.
    async fn on_incoming(
        &mut self,
        incoming: Option<Result<Message, ProtocolError>>,
    ) -> Result<(), Ending> {
        match incoming {
            None | Some(Ok(Message::Close(_))) => Err(Ending::Close(CloseReason {
                code: CloseCode::Normal,
                description: None,
            })),
            Some(Ok(Message::Text(text))) => {
                let reply = scope(accept_or_generate(None), self.on_text(&text)).await;
                self.send(reply).await
            }
            Some(Ok(Message::Binary(_) | Message::Continuation(_))) => {
                let refusal = ApiError::new(ErrorCode::InvalidMessage)
                    .with_detail("Messages are JSON text frames; binary frames are not accepted");
                self.send(error_frame(None, &refusal)).await
            }
            Some(Ok(Message::Ping(payload))) => self.pong(&payload).await,
            Some(Ok(Message::Pong(_) | Message::Nop)) => Ok(()),
            Some(Err(ProtocolError::Overflow)) => Err(close(
                CloseCode::Size,
                format!(
                    "frame larger than {} bytes",
                    self.state.settings.ws_max_frame_bytes
                ),
            )),
            Some(Err(error)) => Err(close(CloseCode::Protocol, error.to_string())),
        }
    }

    async fn send(&mut self, text: String) -> Result<(), Ending> {
        written(timeout(self.write_timeout, self.socket.text(text)).await)
    }

    async fn ping(&mut self) -> Result<(), Ending> {
        written(timeout(self.write_timeout, self.socket.ping(b"")).await)
    }

    async fn pong(&mut self, payload: &[u8]) -> Result<(), Ending> {
        written(timeout(self.write_timeout, self.socket.pong(payload)).await)
    }
}

/// A write that failed or did not finish in time means the client is gone or not reading.
fn written(
    outcome: Result<Result<(), actix_ws::Closed>, tokio::time::error::Elapsed>,
) -> Result<(), Ending> {
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Ending::Gone),
    }
}

/// `{"type":"event","event":{...},"timestamp"}`, spliced from the event's JSON text.
fn event_frame(event: &PublishedEvent) -> String {
    let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut frame = String::with_capacity(event.json.len() + 80);
    frame.push_str(r#"{"type":"event","event":"#);
    frame.push_str(&event.json);
    frame.push_str(r#","timestamp":""#);
    frame.push_str(&timestamp);
    frame.push_str(r#""}"#);
    frame
}

/// `{"type":"error","error":{"detail","code",...},"request_type"?}`.
fn error_frame(request_type: Option<&str>, error: &ApiError) -> String {
    let mut frame = json!({"type": "error", "error": error.body()});
    if let Some(kind) = request_type {
        frame["request_type"] = json!(kind);
    }
    frame.to_string()
}
