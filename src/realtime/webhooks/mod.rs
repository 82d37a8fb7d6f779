//! Webhooks: registrations owned by the principal that made them, each a subscriber of the
//! event bus with its own bounded queue and its own delivery task ([`delivery`]).
//!
//! [`Webhooks`] owns the table of registrations on this node. Registering checks the URL
//! against the egress rules (no loopback, private or link-local targets unless
//! `egress_allow` lets them through; checked again at every delivery, since DNS answers
//! change), subscribes with the caller's visibility narrowed to the requested event types and
//! session, and starts the delivery task. Delivery never runs on a request path.
//!
//! Registrations are written to the store before they are answered, and deleted from it
//! before an unregister is; [`Webhooks::restore`] brings them back at start with their newest
//! recorded deliveries. Each finished delivery goes to the store's background writer.

mod delivery;

pub use self::delivery::sign;

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use kailash_actors::{
    Caller, Gateway, GatewayError, TenantId, UserId,
    bus::SubscriberId,
    events::{EventFilter, EventType},
    store::{WebhookDeliveryRecord, WebhookRecord},
    subscriber::{SubscriberQueue, WhenFull},
};
use reqwest::{
    Url,
    header::{HeaderMap, HeaderName, HeaderValue},
};
use serde::Serialize;
use uuid::Uuid;

use self::delivery::{Counters, DeliveryRecord, Dispatcher, RECORDS_KEPT};
use crate::{
    config::Settings,
    http::{ApiError, ErrorCode, FieldError},
    metrics::{Metrics, Transport},
    nodes::{
        egress::EgressPolicy,
        http::{check_url, vetted_client},
    },
};

/// Custom headers one webhook may carry.
const MAX_CUSTOM_HEADERS: usize = 20;
/// Longest accepted signing secret, in bytes.
const MAX_SECRET_BYTES: usize = 256;

/// How deliveries are attempted.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    pub timeout: Duration,
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub queue_len: usize,
}

/// A registration request, as `POST /api/webhooks` takes it.
#[derive(Debug, Default)]
pub struct NewWebhook {
    pub url: String,
    pub secret: Option<String>,
    /// Empty: every event type.
    pub event_types: HashSet<EventType>,
    pub headers: BTreeMap<String, String>,
    pub session_id: Option<Uuid>,
}

/// Counters of one webhook.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct WebhookCounts {
    pub attempts: u64,
    pub delivered: u64,
    pub failed_attempts: u64,
    pub given_up: u64,
    pub queue_full: u64,
}

impl WebhookCounts {
    fn add(&mut self, other: WebhookCounts) {
        self.attempts += other.attempts;
        self.delivered += other.delivered;
        self.failed_attempts += other.failed_attempts;
        self.given_up += other.given_up;
        self.queue_full += other.queue_full;
    }
}

/// Node-wide delivery counters (`/api/stats` `realtime.webhook_stats`).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct WebhookStats {
    pub webhooks: usize,
    pub total_attempts: u64,
    pub successful_deliveries: u64,
    /// Events given up, after every attempt failed or because the webhook's queue was full.
    pub failed_deliveries: u64,
    pub failed_attempts: u64,
}

/// One registration, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookView {
    pub webhook_id: Uuid,
    pub url: String,
    pub event_types: Vec<&'static str>,
    pub session_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub has_secret: bool,
    pub stats: WebhookCounts,
}

struct Registration {
    tenant_id: TenantId,
    owner: UserId,
    view: WebhookView,
    subscriber: SubscriberId,
    dispatcher: Arc<Dispatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl Registration {
    fn visible_to(&self, caller: &Caller) -> bool {
        self.tenant_id == caller.tenant_id
            && (caller.sees_all_sessions || self.owner == caller.user_id)
    }

    fn view(&self) -> WebhookView {
        WebhookView {
            stats: self.dispatcher.counts(),
            ..self.view.clone()
        }
    }
}

/// Every webhook registered on this node.
pub struct Webhooks {
    registrations: Mutex<HashMap<Uuid, Registration>>,
    gateway: Gateway,
    policy: Arc<EgressPolicy>,
    client: reqwest::Client,
    delivery: DeliveryPolicy,
    max_per_owner: usize,
    metrics: Arc<Metrics>,
    /// Counts of webhooks already unregistered, so node-wide totals never go down.
    retired: Mutex<WebhookCounts>,
}

impl Webhooks {
    pub fn new(settings: &Settings, gateway: Gateway, metrics: Arc<Metrics>) -> Self {
        let policy = Arc::new(EgressPolicy::new(&settings.egress_allow));
        let client = vetted_client(&policy)
            // A receiver that redirects is misconfigured; following it would need its own check.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the webhook client's configuration is static and valid");
        Self {
            registrations: Mutex::new(HashMap::new()),
            gateway,
            policy,
            client,
            delivery: DeliveryPolicy {
                timeout: Duration::from_secs_f64(settings.webhook_timeout_seconds),
                max_attempts: settings.webhook_max_attempts,
                retry_base: Duration::from_millis(settings.webhook_retry_base_ms),
                queue_len: settings.webhook_queue_len,
            },
            max_per_owner: settings.max_webhooks_per_user,
            metrics,
            retired: Mutex::new(WebhookCounts::default()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Registration>> {
        self.registrations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a webhook for `caller`; the session, if named, must be the caller's.
    pub async fn register(
        &self,
        caller: &Caller,
        request: NewWebhook,
    ) -> Result<WebhookView, ApiError> {
        let url = self.checked_url(&request.url).await?;
        // Checked now so a bad header is a 400 before anything is stored.
        custom_headers(&request.headers)?;
        if let Some(secret) = &request.secret
            && (secret.is_empty() || secret.len() > MAX_SECRET_BYTES)
        {
            return Err(field_error(
                "secret",
                format!("must be 1 to {MAX_SECRET_BYTES} bytes"),
            ));
        }
        if let Some(session_id) = request.session_id {
            self.gateway
                .check_session_access(caller, session_id)
                .await?;
        }
        let owned = self
            .table()
            .values()
            .filter(|r| r.tenant_id == caller.tenant_id && r.owner == caller.user_id)
            .count();
        if owned >= self.max_per_owner {
            return Err(
                ApiError::new(ErrorCode::TooManyWebhooks).with_detail(format!(
                    "A principal may register at most {} webhooks",
                    self.max_per_owner
                )),
            );
        }

        let mut event_types: Vec<String> = request
            .event_types
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        event_types.sort_unstable();
        let record = WebhookRecord {
            tenant_id: caller.tenant_id.clone(),
            webhook_id: Uuid::new_v4(),
            owner: caller.user_id.clone(),
            owner_sees_all_sessions: caller.sees_all_sessions,
            url: url.to_string(),
            secret: request.secret,
            event_types,
            headers: request.headers.into_iter().collect(),
            session_id: request.session_id,
            created_at: Utc::now(),
        };
        // Stored first: a webhook the client hears of survives a restart.
        self.gateway.save_webhook(&record).await?;
        let activated = self.activate(record.clone(), Vec::new()).await;
        if activated.is_err() {
            // Not active, so not registered: take the stored row back (best effort).
            let _ = self
                .gateway
                .delete_webhook(&record.tenant_id, record.webhook_id)
                .await;
        }
        activated
    }

    /// Brings back the stored registrations (at start, before serving), each with its newest
    /// recorded deliveries. Answers how many.
    pub async fn restore(&self) -> Result<usize, GatewayError> {
        let mut restored = 0;
        for record in self.gateway.stored_webhooks().await? {
            let deliveries = self
                .gateway
                .webhook_deliveries(&record.tenant_id, record.webhook_id, RECORDS_KEPT)
                .await?;
            let webhook_id = record.webhook_id;
            match self.activate(record, deliveries).await {
                Ok(_) => restored += 1,
                Err(error) => {
                    tracing::warn!(%webhook_id, error = %error.body(), "stored webhook not restored")
                }
            }
        }
        Ok(restored)
    }

    /// Makes this node's registrations those of the store: in a cluster a webhook is
    /// registered (or removed) through one node, and the others follow at their next sync.
    /// Answers how many were added and removed.
    pub async fn sync(&self) -> Result<(usize, usize), GatewayError> {
        let stored = self.gateway.stored_webhooks().await?;
        let stored_ids: HashSet<Uuid> = stored.iter().map(|r| r.webhook_id).collect();
        let gone: Vec<Uuid> = self
            .table()
            .keys()
            .filter(|id| !stored_ids.contains(id))
            .copied()
            .collect();
        let removed = gone.into_iter().filter(|id| self.retire(*id)).count();
        let mut added = 0;
        for record in stored {
            if self.table().contains_key(&record.webhook_id) {
                continue;
            }
            let webhook_id = record.webhook_id;
            match self.activate(record, Vec::new()).await {
                Ok(_) => added += 1,
                Err(error) => {
                    tracing::warn!(%webhook_id, error = %error.body(), "stored webhook not activated")
                }
            }
        }
        Ok((added, removed))
    }

    /// Subscribes a stored registration to the bus and starts its delivery task.
    async fn activate(
        &self,
        record: WebhookRecord,
        past: Vec<WebhookDeliveryRecord>,
    ) -> Result<WebhookView, ApiError> {
        let url = Url::parse(&record.url)
            .map_err(|error| field_error("url", format!("is not a valid URL: {error}")))?;
        let headers = custom_headers(&record.headers.iter().cloned().collect())?;
        let event_types: HashSet<EventType> = record
            .event_types
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        let owner = Caller {
            tenant_id: record.tenant_id.clone(),
            user_id: record.owner.clone(),
            sees_all_sessions: record.owner_sees_all_sessions,
        };
        let mut view = WebhookView {
            webhook_id: record.webhook_id,
            url: url.to_string(),
            event_types: event_types.iter().map(|t| t.as_str()).collect(),
            session_id: record.session_id,
            created_at: record.created_at,
            has_secret: record.secret.is_some(),
            stats: WebhookCounts::default(),
        };
        view.event_types.sort_unstable();
        let filter = EventFilter {
            session_id: record.session_id,
            event_types: (!event_types.is_empty()).then_some(event_types),
            // Every node holds every registration (see `sync`); each delivers what it
            // published, so an event is delivered once in the cluster.
            published_here: true,
            ..EventFilter::visible_to(&owner)
        };
        let (queue, inbox) = SubscriberQueue::bounded(self.delivery.queue_len, WhenFull::Drop);
        let subscription = self.gateway.subscribe(filter, None, queue).await?;
        let dispatcher = Arc::new(Dispatcher {
            tenant_id: record.tenant_id.clone(),
            webhook_id: record.webhook_id,
            url,
            secret: record.secret,
            headers,
            client: self.client.clone(),
            policy: self.delivery.clone(),
            metrics: self.metrics.clone(),
            queue: inbox.status.clone(),
            counters: Counters::default(),
            records: Mutex::new(VecDeque::new()),
            gateway: self.gateway.clone(),
        });
        for delivery in past {
            dispatcher.keep(DeliveryRecord::from_stored(delivery));
        }
        let task = tokio::spawn(dispatcher.clone().run(inbox));
        self.metrics
            .realtime
            .transport(Transport::Webhook)
            .connections
            .inc();
        self.table().insert(
            record.webhook_id,
            Registration {
                tenant_id: owner.tenant_id,
                owner: owner.user_id,
                view: view.clone(),
                subscriber: subscription.id,
                dispatcher,
                task,
            },
        );
        Ok(view)
    }

    /// The caller's webhooks, oldest first.
    pub fn list(&self, caller: &Caller) -> Vec<WebhookView> {
        let mut views: Vec<_> = self
            .table()
            .values()
            .filter(|r| r.visible_to(caller))
            .map(Registration::view)
            .collect();
        views.sort_by_key(|v| v.created_at);
        views
    }

    /// A webhook's recent deliveries, newest last.
    pub fn deliveries(
        &self,
        caller: &Caller,
        webhook_id: Uuid,
    ) -> Result<(WebhookView, Vec<DeliveryRecord>), ApiError> {
        let table = self.table();
        let registration = table
            .get(&webhook_id)
            .filter(|r| r.visible_to(caller))
            .ok_or_else(|| ApiError::new(ErrorCode::WebhookNotFound))?;
        Ok((registration.view(), registration.dispatcher.records()))
    }

    /// Unregisters (from the store first); pending deliveries of the webhook are abandoned.
    pub async fn unregister(&self, caller: &Caller, webhook_id: Uuid) -> Result<(), ApiError> {
        let not_found = || ApiError::new(ErrorCode::WebhookNotFound);
        let tenant_id = self
            .table()
            .get(&webhook_id)
            .filter(|r| r.visible_to(caller))
            .map(|r| r.tenant_id.clone())
            .ok_or_else(not_found)?;
        self.gateway.delete_webhook(&tenant_id, webhook_id).await?;
        if !self.retire(webhook_id) {
            return Err(not_found());
        }
        Ok(())
    }

    /// Stops a registration on this node; false when it had none.
    fn retire(&self, webhook_id: Uuid) -> bool {
        let Some(registration) = self.table().remove(&webhook_id) else {
            return false;
        };
        self.gateway.unsubscribe(registration.subscriber);
        registration.task.abort();
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(registration.dispatcher.counts());
        self.metrics
            .realtime
            .transport(Transport::Webhook)
            .connections
            .dec();
        true
    }

    /// Node-wide totals, including webhooks since unregistered.
    pub fn stats(&self) -> WebhookStats {
        let table = self.table();
        let retired = *self.retired.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = retired;
        for registration in table.values() {
            total.add(registration.dispatcher.counts());
        }
        WebhookStats {
            webhooks: table.len(),
            total_attempts: total.attempts,
            successful_deliveries: total.delivered,
            failed_deliveries: total.given_up + total.queue_full,
            failed_attempts: total.failed_attempts,
        }
    }

    /// A URL the egress rules allow: http(s), and every address its host resolves to public
    /// (or allowed).
    async fn checked_url(&self, raw: &str) -> Result<Url, ApiError> {
        let url = Url::parse(raw.trim())
            .map_err(|error| field_error("url", format!("is not a valid URL: {error}")))?;
        let refused = |why: String| {
            ApiError::new(ErrorCode::EgressDenied)
                .with_detail(format!("The webhook URL is not allowed: {why}"))
        };
        check_url(&self.policy, &url).map_err(|e| refused(e.to_string()))?;
        let host = url.host_str().unwrap_or_default();
        self.policy
            .check_host(host, url.port_or_known_default().unwrap_or(0))
            .await
            .map_err(|e| refused(e.to_string()))?;
        Ok(url)
    }
}

fn field_error(path: &str, message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest)
        .with_detail(format!("Invalid {path}: {message}"))
        .with_errors(vec![FieldError {
            path: path.into(),
            message,
        }])
}

/// The registration's own headers; the ones delivery sets itself can't be overridden.
fn custom_headers(headers: &BTreeMap<String, String>) -> Result<HeaderMap, ApiError> {
    if headers.len() > MAX_CUSTOM_HEADERS {
        return Err(field_error(
            "headers",
            format!("at most {MAX_CUSTOM_HEADERS} headers"),
        ));
    }
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let path = format!("headers.{name}");
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| field_error(&path, "is not a valid header name".into()))?;
        let reserved = header.as_str().starts_with("x-kailash-")
            || [
                "host",
                "content-type",
                "content-length",
                "transfer-encoding",
                "connection",
            ]
            .contains(&header.as_str());
        if reserved {
            return Err(field_error(&path, "is set by the gateway".into()));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| field_error(&path, "is not a valid header value".into()))?;
        map.insert(header, value);
    }
    Ok(map)
}
