//! One gateway from many nodes: requests for a session are served by the node that owns it.
//!
//! [`forward_to_owner`] runs after the gate (so the caller is authenticated and authorized
//! here first). For a request naming a session (`/api/sessions/{id}` or `?session_id=`)
//! that has no actor on this node, it asks Redis where the session is served
//! ([`Route`](crate::adapters::redis::Route)): here (this node owns it, took it over from
//! a lost node, or nobody owns it) — the request goes on to the routes, which activate the
//! session from the store — or by its owner, to which the request is forwarded as it came
//! (method, path, query, credentials, body) and whose answer is relayed.
//!
//! A forwarded request carries [`FORWARDED`], signed with a key derived from the token
//! secret every node shares, so a client cannot pretend its request was forwarded; the
//! owner serves it without forwarding again, and refuses (503, retry) if it no longer owns
//! the session, so ownership moving mid-flight cannot make a loop or a second activation.
//!
//! A cancel is not forwarded: it travels to the run's node over Redis ([`remote`]).

mod remote;

pub use remote::{cancel_execution, start_serving_other_nodes};

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use actix_web::{
    Error, HttpResponse,
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{Method, header::HeaderName},
    middleware::Next,
    web,
};
use hmac::{Hmac, KeyInit, Mac};
use kailash_actors::broker::BrokerError;
use sha2::Sha256;
use uuid::Uuid;

use crate::{
    adapters::redis::{RedisBroker, Route},
    app::AppState,
    auth::{Presented, api_keys::hex},
    http::{
        ApiError, ErrorCode,
        request_id::{REQUEST_ID_HEADER, current_request_id},
    },
};

/// Marks (and proves) a request one node forwarded to another:
/// `<node id> <unix seconds> <hex HMAC-SHA256 of method, path and query, node, time>`.
pub const FORWARDED: HeaderName = HeaderName::from_static("x-kailash-forwarded");

/// How long a forwarding proof is accepted.
const PROOF_LIFETIME_SECS: u64 = 30;

/// Headers that belong to one hop and are not passed on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "host",
    "content-length",
    "proxy-authorization",
    "proxy-connection",
];

/// The node serving a session, seen from another node.
pub struct Owner {
    pub node_id: String,
    /// Where its HTTP is (`host:port`).
    pub address: String,
}

/// This node's part in the cluster: its Redis broker and how it forwards.
pub struct Cluster {
    pub redis: Arc<RedisBroker>,
    client: reqwest::Client,
    key: Vec<u8>,
}

impl Cluster {
    /// `secret` is the token secret every node shares; the forwarding key is derived from
    /// it so the secret itself is never used for two purposes.
    pub fn new(redis: Arc<RedisBroker>, secret: &[u8], timeout: Duration) -> Self {
        let mut derive = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
        derive.update(b"kailash-gateway node forwarding v1");
        Self {
            redis,
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("the TLS backend initializes"),
            key: derive.finalize().into_bytes().to_vec(),
        }
    }

    fn node_id(&self) -> &str {
        &self.redis.options().node_id
    }

    fn proof(&self, method: &str, path_and_query: &str, node_id: &str, at: u64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(format!("{method}\n{path_and_query}\n{node_id}\n{at}").as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `value` proves the request was forwarded by a node of this cluster just now.
    fn verify(&self, value: &str, method: &str, path_and_query: &str) -> bool {
        let mut parts = value.split(' ');
        let (Some(node_id), Some(at), Some(proof), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(at) = at.parse::<u64>() else {
            return false;
        };
        if now_secs().abs_diff(at) > PROOF_LIFETIME_SECS {
            return false;
        }
        let expected = self.proof(method, path_and_query, node_id, at);
        constant_time_eq(expected.as_bytes(), proof.as_bytes())
    }

    /// Whether `req` carries a valid proof that another node of the cluster forwarded it.
    pub fn forwarded_by_a_node(&self, req: &ServiceRequest) -> bool {
        req.headers().get(FORWARDED).is_some_and(|value| {
            let path_and_query = req
                .uri()
                .path_and_query()
                .map_or_else(|| req.path().to_owned(), |pq| pq.as_str().to_owned());
            value
                .to_str()
                .is_ok_and(|value| self.verify(value, req.method().as_str(), &path_and_query))
        })
    }

    /// A request to the node at `address`, carrying this node's proof and the current
    /// request id (one id for the request on both nodes: in both logs, and in the answer).
    fn signed(&self, method: &str, address: &str, path_and_query: &str) -> reqwest::RequestBuilder {
        let at = now_secs();
        let proof = self.proof(method, path_and_query, self.node_id(), at);
        self.client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("a valid method"),
                format!("http://{address}{path_and_query}"),
            )
            .header(
                FORWARDED.as_str(),
                format!("{} {at} {proof}", self.node_id()),
            )
            .header(REQUEST_ID_HEADER, current_request_id())
    }

    /// Where `session_id` is served, for a caller that is not a forwarded HTTP request (a
    /// WebSocket message, a cancel): `None` here, else its owner.
    pub async fn owner_elsewhere(
        &self,
        gateway: &kailash_actors::Gateway,
        session_id: Uuid,
    ) -> Result<Option<Owner>, ApiError> {
        if gateway.is_local(session_id) {
            return Ok(None);
        }
        match self.redis.route(session_id).await {
            Ok(Route::Here) => Ok(None),
            Ok(Route::Owner { node_id, address }) => Ok(Some(Owner { node_id, address })),
            Err(error) => Err(unlocatable(&error, session_id)),
        }
    }

    /// Sends a WebSocket message's HTTP twin to the session's owner with the connection's
    /// credential; answers the owner's JSON, or its error as this node's.
    pub async fn call(
        &self,
        address: &str,
        method: &str,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
        credential: &Presented,
    ) -> Result<serde_json::Value, ApiError> {
        let (name, value) = credential.header();
        let mut request = self
            .signed(method, address, path_and_query)
            .header(name, value);
        if let Some(body) = body {
            request = request.json(body);
        }
        let unanswered = |error: reqwest::Error| {
            tracing::warn!(%error, address, "calling the session's node failed");
            ApiError::new(ErrorCode::Unavailable)
                .with_detail("The node serving this session did not answer; retry")
        };
        let response = request.send().await.map_err(unanswered)?;
        let ok = response.status().is_success();
        let answer: serde_json::Value = response.json().await.map_err(unanswered)?;
        if ok {
            return Ok(answer);
        }
        Err(error_from_answer(&answer))
    }

    /// Sends the request to the session's owner and relays its answer.
    async fn forward(
        &self,
        mut req: ServiceRequest,
        address: &str,
    ) -> Result<ServiceResponse<BoxBody>, Error> {
        let body = req.extract::<web::Bytes>().await?;
        let (http, _) = req.into_parts();
        let path_and_query = http
            .uri()
            .path_and_query()
            .map_or_else(|| http.path().to_owned(), |pq| pq.as_str().to_owned());
        let mut request = self
            .signed(http.method().as_str(), address, &path_and_query)
            .body(body.to_vec());
        for (name, value) in http.headers() {
            if !HOP_BY_HOP.contains(&name.as_str())
                && name != FORWARDED
                && name.as_str() != REQUEST_ID_HEADER
            {
                request = request.header(name.as_str(), value.as_bytes());
            }
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%error, address, "forwarding to the session's node failed");
                let error = ApiError::new(ErrorCode::Unavailable)
                    .with_detail("The node serving this session did not answer; retry");
                return Ok(ServiceResponse::new(
                    http,
                    actix_web::ResponseError::error_response(&error),
                ));
            }
        };
        let mut relayed = HttpResponse::build(
            actix_web::http::StatusCode::from_u16(response.status().as_u16())
                .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY),
        );
        for (name, value) in response.headers() {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                relayed.insert_header((name.as_str(), value.as_bytes()));
            }
        }
        let body = response.bytes().await.map_err(|error| {
            actix_web::error::ErrorBadGateway(format!("the session's node: {error}"))
        })?;
        Ok(ServiceResponse::new(http, relayed.body(body)))
    }
}

/// How often a node looks for sessions of lost nodes to take over.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Takes over, in the background, the sessions this node owned before it restarted, then
/// every [`SWEEP_EVERY`] those of nodes whose heartbeat lapsed: each is activated here, so
/// the executions that died with its node are recorded failed (with their terminal events)
/// within seconds, not at the next request.
pub fn start_takeovers(state: web::Data<AppState>) {
    let Some(cluster) = &state.cluster else {
        return;
    };
    let redis = cluster.redis.clone();
    actix_rt::spawn(async move {
        let mut first = true;
        loop {
            let sessions = if first {
                redis.own_sessions().await
            } else {
                redis.orphans().await
            };
            match sessions {
                Ok(sessions) => {
                    first = false;
                    for session in sessions {
                        let session_id = session.session_id;
                        if let Err(error) =
                            state.gateway.take_over(session.tenant_id, session_id).await
                        {
                            tracing::warn!(%error, %session_id, "could not take a session over");
                        }
                    }
                }
                Err(error) => tracing::debug!(%error, "no session sweep while Redis is away"),
            }
            for session in redis.lost_sessions() {
                // Infallible but for a stopped gateway, which stops this loop too.
                drop(
                    state
                        .gateway
                        .give_up(session.tenant_id, session.session_id)
                        .await,
                );
            }
            actix_rt::time::sleep(SWEEP_EVERY).await;
        }
    });
}

/// How often a node re-reads what other nodes may have changed in the store and this node
/// keeps in memory: webhook registrations, custom roles and ABAC policies.
const SHARED_STATE_SYNC_EVERY: Duration = Duration::from_secs(2);

/// Keeps this node's webhook registrations, custom roles and stored policies those of the
/// store (a change made through another node takes effect here within
/// [`SHARED_STATE_SYNC_EVERY`]).
pub fn start_shared_state_sync(state: web::Data<AppState>) {
    if state.cluster.is_none() {
        return;
    }
    actix_rt::spawn(async move {
        loop {
            actix_rt::time::sleep(SHARED_STATE_SYNC_EVERY).await;
            if let Err(error) = state.webhooks.sync().await {
                tracing::debug!(%error, "webhook registrations not synced this time");
            }
            match state.accounts.all_roles().await {
                Ok(roles) => state.access.roles.replace_all(roles),
                Err(error) => tracing::debug!(%error, "custom roles not synced this time"),
            }
            match state.accounts.all_policies().await {
                Ok(policies) => state.access.policies.replace_all(policies),
                Err(error) => tracing::debug!(%error, "policies not synced this time"),
            }
            match state.accounts.all_tenants().await {
                Ok(tenants) => {
                    for tenant_id in state.tenants.replace_all(tenants) {
                        crate::tenants::end_live_work(&state, &tenant_id).await;
                    }
                }
                Err(error) => tracing::debug!(%error, "tenants not synced this time"),
            }
        }
    });
}

/// The session a request names: the `{session_id}` of `/api/sessions/{session_id}`, else
/// a `session_id` query parameter. `None` for anything else (or an id that does not parse,
/// which the route refuses by itself), and for the event streams (`/ws`, `/events`), which
/// every node serves for every session.
fn session_of(req: &ServiceRequest) -> Option<Uuid> {
    match req.match_pattern().as_deref() {
        Some("/api/sessions/{session_id}") => {
            return req.path().rsplit('/').next()?.parse().ok();
        }
        Some("/ws" | "/events") => return None,
        // A cancel travels to the run's node over Redis (`remote`), not forwarded.
        Some("/api/executions/{execution_id}") if req.method() == Method::DELETE => {
            return None;
        }
        _ => {}
    }
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()?
        .get("session_id")?
        .parse()
        .ok()
}

/// Where a request is served.
enum Serve {
    Here,
    At(String),
    Refuse(ApiError),
}

/// See the module docs.
pub async fn forward_to_owner(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let state = crate::app::state_of(&req);
    // Alone, nothing to decide: no pattern matched or query parsed on the hot path.
    let serve = match state
        .cluster
        .as_ref()
        .map(|cluster| (cluster, session_of(&req)))
    {
        Some((cluster, Some(session_id))) if !state.gateway.is_local(session_id) => {
            cluster.where_served(&req, session_id).await
        }
        _ => Serve::Here,
    };
    match serve {
        Serve::Here => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body),
        Serve::At(address) => {
            let cluster = state.cluster.as_ref().expect("only a cluster forwards");
            cluster.forward(req, &address).await
        }
        Serve::Refuse(error) => {
            Ok(req.into_response(actix_web::ResponseError::error_response(&error)))
        }
    }
}

impl Cluster {
    /// Where a request for `session_id`, which has no actor here, is served.
    async fn where_served(&self, req: &ServiceRequest, session_id: Uuid) -> Serve {
        let forwarded = req
            .headers()
            .contains_key(FORWARDED)
            .then(|| self.forwarded_by_a_node(req));
        if forwarded == Some(false) {
            return Serve::Refuse(
                ApiError::new(ErrorCode::Forbidden)
                    .with_detail("The forwarding proof is invalid or expired"),
            );
        }
        match self.redis.route(session_id).await {
            Ok(Route::Here) => Serve::Here,
            // Forwarded once already: the owner moved on the way; the client retries.
            Ok(Route::Owner { .. }) if forwarded == Some(true) => Serve::Refuse(
                ApiError::new(ErrorCode::Unavailable)
                    .with_detail("The session is moving to another node; retry")
                    .with_retry_after(Duration::from_secs(1)),
            ),
            Ok(Route::Owner { address, .. }) => Serve::At(address),
            Err(error) => Serve::Refuse(unlocatable(&error, session_id)),
        }
    }
}

/// The error another node answered (its body: `code`, `detail`), as this node's.
fn error_from_answer(answer: &serde_json::Value) -> ApiError {
    let code = answer["code"]
        .as_str()
        .and_then(ErrorCode::from_code)
        .unwrap_or(ErrorCode::Unavailable);
    let mut error = ApiError::new(code);
    if let Some(detail) = answer["detail"].as_str() {
        error = error.with_detail(detail.to_owned());
    }
    error
}

/// The answer when Redis cannot say which node serves a session.
fn unlocatable(error: &BrokerError, session_id: Uuid) -> ApiError {
    tracing::warn!(%error, %session_id, "cannot find the session's node");
    ApiError::new(ErrorCode::Unavailable)
        .with_detail("The session's node cannot be found while Redis is unavailable; retry")
        .with_retry_after(Duration::from_secs(1))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
