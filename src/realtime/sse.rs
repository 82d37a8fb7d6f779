//! `GET /events`: Server-Sent Events. Each event is written as `id: <seq>`,
//! `event: <type>`, `data: <event JSON>`; an idle stream gets a comment heartbeat every
//! `sse_heartbeat_seconds` so proxies keep it open.
//!
//! Resume: with `?session_id=` and a `Last-Event-ID` header (browsers send it by themselves
//! when they reconnect), the stream starts with every retained event of that session after
//! the given `seq` — preceded by a `stream.gap` event when some of them are no longer
//! retained — and continues live with nothing missing or repeated (the bus registers the
//! subscriber and reads the backlog in one step). Without a session, `seq` values of
//! different sessions interleave and `Last-Event-ID` is ignored.
//!
//! A stream ends with a final `stream.closed` event naming the reason when its client could
//! not keep up (`slow_consumer`), the node shuts down (`going_away`) or its tenant is
//! deactivated (`tenant_inactive`); the browser's
//! EventSource then reconnects, to another node behind a load balancer.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use actix_web::{
    HttpRequest, HttpResponse,
    http::header::{self, HeaderValue},
    web::{self, Bytes},
};
use futures_util::{StreamExt as _, stream};
use kailash_actors::{
    TenantId,
    bus::SubscriberId,
    events::PublishedEvent,
    subscriber::{Delivery, SubscriberInbox, SubscriberQueue, WhenFull},
};
use serde_json::json;
use tokio::{
    sync::watch,
    time::{Instant, Interval, interval_at},
};

use super::{StreamQuery, authorized_filter, refuse_when_draining};
use crate::{
    app::AppState,
    auth::Identity,
    http::{ApiError, ErrorCode, FieldError},
    metrics::Transport,
};

/// How long a browser waits before reconnecting a dropped stream.
const RECONNECT_AFTER_MS: u64 = 2000;

pub async fn stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    query: web::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    refuse_when_draining(&state)?;
    let caller = identity.caller(query.user_id.as_deref());
    let filter = authorized_filter(&state, &caller, query.request()?).await?;
    let resume_after = last_event_id(&req)?.filter(|_| filter.session_id.is_some());
    let (queue, inbox) =
        SubscriberQueue::bounded(state.settings.subscriber_queue_len, WhenFull::Disconnect);
    let subscription = state.gateway.subscribe(filter, resume_after, queue).await?;

    let heartbeat = Duration::from_secs_f64(state.settings.sse_heartbeat_seconds);
    let backlog = subscription.backlog;
    let body = SseStream {
        backlog: backlog.gap.into_iter().chain(backlog.events).collect(),
        inbox,
        heartbeat: interval_at(Instant::now() + heartbeat, heartbeat),
        closing: state.lifecycle.streams_closing(),
        deactivations: state.tenants.deactivations(),
        tenant_id: caller.tenant_id.clone(),
        ended: false,
        subscriber: subscription.id,
        state: state.clone().into_inner(),
    };
    state
        .metrics
        .realtime
        .transport(Transport::Sse)
        .connections
        .inc();
    let opening = Bytes::from(format!("retry: {RECONNECT_AFTER_MS}\n: connected\n\n"));
    let chunks =
        stream::once(async move { Ok::<_, actix_web::Error>(opening) })
            .chain(stream::unfold(body, |mut body| async move {
                body.next_chunk().await.map(|chunk| (Ok(chunk), body))
            }));
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Compression would buffer the stream; proxies such as nginx must not buffer it.
        .insert_header((
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        ))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(chunks))
}

/// The `Last-Event-ID` header: the last `seq` the client received.
fn last_event_id(req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let Some(raw) = req.headers().get("last-event-id") else {
        return Ok(None);
    };
    let raw = raw.to_str().unwrap_or("").trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        ApiError::new(ErrorCode::InvalidRequest)
            .with_detail("Last-Event-ID must be the seq of an event")
            .with_errors(vec![FieldError {
                path: "Last-Event-ID".into(),
                message: "must be a whole number".into(),
            }])
    })
}

/// One SSE client's stream; unsubscribes when the response is dropped.
struct SseStream {
    /// Written before the live queue: the gap notice and the missed events.
    backlog: VecDeque<Arc<PublishedEvent>>,
    inbox: SubscriberInbox,
    heartbeat: Interval,
    closing: watch::Receiver<bool>,
    /// Wakes when some tenant is deactivated; the stream ends if it was its own.
    deactivations: watch::Receiver<u64>,
    tenant_id: TenantId,
    ended: bool,
    subscriber: SubscriberId,
    state: Arc<AppState>,
}

impl SseStream {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let metrics = self.state.metrics.realtime.transport(Transport::Sse);
        if let Some(event) = self.backlog.pop_front() {
            return Some(event_chunk(&event));
        }
        if self.ended {
            return None;
        }
        loop {
            tokio::select! {
                _ = self.closing.wait_for(|closing| *closing) => {
                    self.ended = true;
                    return Some(closed_chunk("going_away", "server shutting down; reconnect to continue"));
                }
                _ = self.deactivations.wait_for(|_| !self.state.tenants.is_active(&self.tenant_id)) => {
                    self.ended = true;
                    return Some(closed_chunk("tenant_inactive", "the tenant was deactivated"));
                }
                delivery = self.inbox.rx.recv() => match delivery {
                    Some(Delivery::Event(event)) => {
                        self.heartbeat.reset();
                        metrics.delivered_one(event.published_at);
                        return Some(event_chunk(&event));
                    }
                    // Rooms are a WebSocket feature; an SSE queue never joins one.
                    Some(Delivery::Frame(_)) => continue,
                    None => return None,
                },
                _ = self.inbox.status.cut_off() => {
                    self.ended = true;
                    metrics.slow_consumers_closed.inc();
                    return Some(closed_chunk(
                        "slow_consumer",
                        "too slow: the outbound queue filled; reconnect with Last-Event-ID",
                    ));
                }
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b": heartbeat\n\n")),
            }
        }
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        self.state.gateway.unsubscribe(self.subscriber);
        self.state
            .metrics
            .realtime
            .transport(Transport::Sse)
            .connections
            .dec();
    }
}

fn event_chunk(event: &PublishedEvent) -> Bytes {
    let name = event.event_type.as_str();
    let mut chunk = String::with_capacity(event.json.len() + name.len() + 40);
    chunk.push_str("id: ");
    chunk.push_str(&event.seq.to_string());
    chunk.push_str("\nevent: ");
    chunk.push_str(name);
    chunk.push_str("\ndata: ");
    chunk.push_str(&event.json);
    chunk.push_str("\n\n");
    Bytes::from(chunk)
}

fn closed_chunk(reason: &str, detail: &str) -> Bytes {
    let data = json!({"type": "stream.closed", "reason": reason, "detail": detail});
    Bytes::from(format!("event: stream.closed\ndata: {data}\n\n"))
}
