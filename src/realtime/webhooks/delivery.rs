//! Delivering one webhook's events: one task per webhook drains its queue in order and
//! POSTs each event with the Python gateway's envelope
//! `{"webhook_id","delivery_id","timestamp","event"}`, signed with HMAC-SHA256 over the exact
//! body bytes when the webhook has a secret.
//!
//! An attempt that fails (transport error, timeout or non-2xx answer) is retried after
//! `retry_base × 2^(attempt-1)` (capped at a minute) with jitter, up to `max_attempts`; then
//! the delivery is recorded as given up and the next event goes. Events are delivered one at
//! a time so a receiver sees them in order. How each delivery ended is kept (the newest
//! [`RECORDS_KEPT`]) and handed to the store's background writer.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use kailash_actors::{
    Gateway, TenantId,
    events::PublishedEvent,
    store::WebhookDeliveryRecord,
    subscriber::{Delivery, InboxStatus, SubscriberInbox},
};
use reqwest::{Url, header::HeaderMap};
use serde::Serialize;
use sha2::Sha256;
use uuid::Uuid;

use super::{DeliveryPolicy, WebhookCounts};
use crate::{
    metrics::{Metrics, Transport, WebhookOutcome},
    nodes::egress::error_chain,
};

/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Delivery records kept per webhook (in memory, and loaded back from the store at start).
pub const RECORDS_KEPT: usize = 50;

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Delivered,
    GivenUp,
}

/// One delivery, as `GET /api/webhooks/{id}/deliveries` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRecord {
    pub delivery_id: Uuid,
    pub event_type: &'static str,
    pub event_seq: u64,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// The receiver's last HTTP status, if it answered.
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub finished_at: DateTime<Utc>,
}

impl DeliveryRecord {
    /// The row the store keeps of it.
    fn stored(&self, tenant_id: &TenantId, webhook_id: Uuid) -> WebhookDeliveryRecord {
        WebhookDeliveryRecord {
            tenant_id: tenant_id.clone(),
            webhook_id,
            delivery_id: self.delivery_id,
            event_type: self.event_type,
            event_seq: self.event_seq,
            status: match self.status {
                DeliveryStatus::Delivered => "delivered",
                DeliveryStatus::GivenUp => "given_up",
            },
            attempts: self.attempts,
            last_status_code: self.last_status_code,
            last_error: self.last_error.clone(),
            finished_at: self.finished_at,
        }
    }

    /// A record loaded back from the store.
    pub fn from_stored(stored: WebhookDeliveryRecord) -> Self {
        Self {
            delivery_id: stored.delivery_id,
            event_type: stored.event_type,
            event_seq: stored.event_seq,
            status: if stored.status == "delivered" {
                DeliveryStatus::Delivered
            } else {
                DeliveryStatus::GivenUp
            },
            attempts: stored.attempts,
            last_status_code: stored.last_status_code,
            last_error: stored.last_error,
            finished_at: stored.finished_at,
        }
    }
}

/// Delivers one webhook's events.
pub struct Dispatcher {
    pub tenant_id: TenantId,
    pub webhook_id: Uuid,
    pub url: Url,
    pub secret: Option<String>,
    pub headers: HeaderMap,
    pub client: reqwest::Client,
    pub policy: DeliveryPolicy,
    pub metrics: Arc<Metrics>,
    /// The queue's overflow counter: events given up as `queue_full`.
    pub queue: InboxStatus,
    pub counters: Counters,
    /// The newest deliveries, oldest first.
    pub records: Mutex<VecDeque<DeliveryRecord>>,
    /// Where finished deliveries are recorded.
    pub gateway: Gateway,
}

/// One webhook's delivery counters.
#[derive(Debug, Default)]
pub struct Counters {
    attempts: AtomicU64,
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    given_up: AtomicU64,
}

/// How one attempt went.
enum Attempt {
    Delivered,
    Failed {
        status_code: Option<u16>,
        error: String,
    },
}

impl Dispatcher {
    /// Drains the queue until the webhook is unregistered.
    pub async fn run(self: Arc<Self>, mut inbox: SubscriberInbox) {
        let mut queue_full_counted = 0;
        while let Some(delivery) = inbox.rx.recv().await {
            if let Delivery::Event(event) = delivery {
                self.deliver(&event).await;
            }
            let queue_full = self.queue.dropped();
            for _ in queue_full_counted..queue_full {
                self.metrics
                    .realtime
                    .webhook_outcome(WebhookOutcome::QueueFull);
            }
            queue_full_counted = queue_full;
        }
    }

    pub fn counts(&self) -> WebhookCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WebhookCounts {
            attempts: load(&self.counters.attempts),
            delivered: load(&self.counters.delivered),
            failed_attempts: load(&self.counters.failed_attempts),
            given_up: load(&self.counters.given_up),
            queue_full: self.queue.dropped(),
        }
    }

    pub fn records(&self) -> Vec<DeliveryRecord> {
        self.lock_records().iter().cloned().collect()
    }

    fn lock_records(&self) -> std::sync::MutexGuard<'_, VecDeque<DeliveryRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every attempt for one event, then its record.
    async fn deliver(&self, event: &PublishedEvent) {
        let delivery_id = Uuid::new_v4();
        let body = envelope(self.webhook_id, delivery_id, event);
        let signature = self.secret.as_deref().map(|secret| sign(secret, &body));
        let mut attempts = 0;
        let (status, last_status_code, last_error) = loop {
            attempts += 1;
            self.counters.attempts.fetch_add(1, Ordering::Relaxed);
            match self
                .attempt(event, delivery_id, attempts, &body, signature.as_deref())
                .await
            {
                Attempt::Delivered => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    self.metrics
                        .realtime
                        .transport(Transport::Webhook)
                        .delivered_one(event.published_at);
                    self.metrics
                        .realtime
                        .webhook_outcome(WebhookOutcome::Delivered);
                    break (DeliveryStatus::Delivered, None, None);
                }
                Attempt::Failed { status_code, error } => {
                    self.counters
                        .failed_attempts
                        .fetch_add(1, Ordering::Relaxed);
                    if attempts >= self.policy.max_attempts {
                        self.counters.given_up.fetch_add(1, Ordering::Relaxed);
                        self.metrics
                            .realtime
                            .webhook_outcome(WebhookOutcome::GivenUp);
                        tracing::warn!(
                            webhook_id = %self.webhook_id,
                            %delivery_id,
                            attempts,
                            error = %error,
                            "webhook delivery given up"
                        );
                        break (DeliveryStatus::GivenUp, status_code, Some(error));
                    }
                    self.metrics
                        .realtime
                        .webhook_outcome(WebhookOutcome::Retried);
                    tokio::time::sleep(backoff(self.policy.retry_base, attempts)).await;
                }
            }
        };
        let record = DeliveryRecord {
            delivery_id,
            event_type: event.event_type.as_str(),
            event_seq: event.seq,
            status,
            attempts,
            last_status_code,
            last_error,
            finished_at: Utc::now(),
        };
        let stored = record.stored(&self.tenant_id, self.webhook_id);
        self.keep(record);
        self.gateway.record_webhook_delivery(stored);
    }

    /// Keeps `record` among the newest.
    pub fn keep(&self, record: DeliveryRecord) {
        let mut records = self.lock_records();
        if records.len() == RECORDS_KEPT {
            records.pop_front();
        }
        records.push_back(record);
    }

    async fn attempt(
        &self,
        event: &PublishedEvent,
        delivery_id: Uuid,
        attempt: u32,
        body: &str,
        signature: Option<&str>,
    ) -> Attempt {
        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header("content-type", "application/json")
            .header("x-kailash-event", event.event_type.as_str())
            .header("x-kailash-webhook-id", self.webhook_id.to_string())
            .header("x-kailash-delivery-id", delivery_id.to_string())
            .header("x-kailash-attempt", attempt.to_string())
            .timeout(self.policy.timeout)
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("x-kailash-signature", format!("sha256={signature}"));
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Attempt::Delivered,
            Ok(response) => Attempt::Failed {
                status_code: Some(response.status().as_u16()),
                error: format!("the receiver answered {}", response.status()),
            },
            Err(error) => Attempt::Failed {
                status_code: None,
                error: error_chain(&error),
            },
        }
    }
}

/// The body, built around the event's JSON text as published (not re-serialized).
fn envelope(webhook_id: Uuid, delivery_id: Uuid, event: &PublishedEvent) -> String {
    let timestamp = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    format!(
        r#"{{"webhook_id":"{webhook_id}","delivery_id":"{delivery_id}","timestamp":"{timestamp}","event":{}}}"#,
        event.json
    )
}

/// Lower-case hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &str, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The wait before attempt `failed + 1`: exponential, capped, with jitter in [50 %, 100 %]
/// so receivers that come back are not hit by every webhook at once.
fn backoff(base: Duration, failed: u32) -> Duration {
    let exponential = base.saturating_mul(1 << failed.saturating_sub(1).min(16));
    let capped = exponential.min(MAX_BACKOFF);
    let jitter = getrandom::u32().unwrap_or(u32::MAX) as f64 / u32::MAX as f64;
    capped.mul_f64(0.5 + jitter / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_millis(100);
        for failed in 1..=3 {
            let full = base * (1 << (failed - 1));
            let wait = backoff(base, failed);
            assert!(wait >= full / 2 && wait <= full, "{failed}: {wait:?}");
        }
        assert!(backoff(base, 30) <= MAX_BACKOFF);
    }
}
