//! What every mode of the load tool shares: an [`Endpoint`] (one gateway node's HTTP and
//! WebSocket, open or with a bearer token) and the fan-out measurement ([`Fanout`]), which
//! publishes through one node and may subscribe through others.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connections opened at once while setting up.
const CONNECT_CONCURRENCY: usize = 256;

/// How long the last events of a publishing phase take to arrive (all but stragglers).
pub const SETTLE: Duration = Duration::from_millis(500);

/// One gateway node as a client sees it. Without a token the gateway runs in open mode and
/// trusts `user_id=bench`; with one, the token names the user (HTTP header, `access_token`
/// on the WebSocket).
pub struct Endpoint {
    /// `host:port`.
    base: String,
    pub http: reqwest::Client,
    token: Option<String>,
}

impl Endpoint {
    /// `address` is `host:port` or an `http://host:port` URL.
    pub fn new(address: &str, token: Option<String>) -> Self {
        Self {
            base: address
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
            http: reqwest::Client::new(),
            token,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.base)
    }

    /// A POST to `path` (which names `user_id=bench` for open mode), authorized when there is
    /// a token.
    pub fn post_request(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        let request = self.http.post(self.url(path)).json(body);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let response = self.post_request(path, &body).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Opens `/ws?user_id=bench&{query}` and reads its `connected` hello.
    pub async fn connect(&self, query: &str) -> Socket {
        let mut url = format!("ws://{}/ws?user_id=bench", self.base);
        if !query.is_empty() {
            url = format!("{url}&{query}");
        }
        if let Some(token) = &self.token {
            url = format!("{url}&access_token={token}");
        }
        let (mut socket, _) = connect_async(url).await.expect("WebSocket handshake");
        let hello = socket.next().await.expect("hello").expect("hello frame");
        assert!(hello.to_text().unwrap().contains("\"connected\""));
        socket
    }
}

/// The event's own `timestamp` (the first in the frame: the wrapper's comes last).
fn event_time(frame: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let start = frame.find(r#""timestamp":""#)? + 13;
    let end = start + frame[start..].find('"')?;
    frame[start..end].parse().ok()
}

/// Switch → Merge: a run of it publishes 10 events (execution and node events).
fn fanout_workflow() -> Value {
    json!({
        "name": "fanout",
        "nodes": [
            {"id": "route", "type": "SwitchNode", "config": {"condition_field": "tier", "operator": "==", "value": "gold"}},
            {"id": "gold", "type": "MergeNode", "config": {"merge_type": "concat"}},
            {"id": "other", "type": "MergeNode", "config": {"merge_type": "concat"}}
        ],
        "connections": [
            {"from_node": "route", "from_output": "true_output", "to_node": "gold", "to_input": "data1"},
            {"from": "route", "from_output": "false_output", "to": "other", "to_input": "data1"}
        ]
    })
}

/// Each client counts and times the events it receives while `measuring`, then reports its
/// latencies (µs) when its stream ends or measuring stops.
fn spawn_reader(
    mut socket: Socket,
    measuring: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    samples: mpsc::UnboundedSender<Vec<u32>>,
) {
    tokio::spawn(async move {
        let mut latencies_us = Vec::new();
        while let Some(Ok(message)) = socket.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            if !measuring.load(Ordering::Relaxed) {
                if !latencies_us.is_empty() {
                    break;
                }
                continue;
            }
            if let Some(sent) = event_time(&text) {
                let latency = (chrono::Utc::now() - sent).num_microseconds().unwrap_or(0);
                latencies_us.push(latency.max(0) as u32);
                delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = samples.send(latencies_us);
    });
}

/// Clients following sessions owned by the publishing node, ready to measure.
pub struct Fanout {
    /// (session id, workflow id), created through the publisher.
    targets: Vec<(String, String)>,
    measuring: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    samples: mpsc::UnboundedReceiver<Vec<u32>>,
}

impl Fanout {
    /// Creates `sessions` sessions (each with the fan-out workflow) through `publisher`, and
    /// `clients` WebSocket clients, `clients / sessions` per session, each session's clients
    /// spread evenly over `subscribers`.
    pub async fn prepare(
        publisher: &Endpoint,
        subscribers: &[Endpoint],
        clients: usize,
        sessions: usize,
    ) -> Self {
        let mut targets = Vec::new();
        for _ in 0..sessions {
            let session = publisher
                .post("/api/sessions", json!({"user_id": "bench"}))
                .await;
            let session = session["session_id"].as_str().unwrap().to_owned();
            let path = format!("/api/workflows?session_id={session}&user_id=bench");
            let created = publisher.post(&path, fanout_workflow()).await;
            targets.push((session, created["workflow_id"].as_str().unwrap().to_owned()));
        }
        let targets_ref = &targets;
        let sockets: Vec<Socket> = stream::iter(0..clients)
            .map(|i| async move {
                // Client i follows session i % S; consecutive clients of one session go to
                // different subscriber nodes.
                let node = &subscribers[(i / sessions) % subscribers.len()];
                node.connect(&format!("session_id={}", targets_ref[i % sessions].0))
                    .await
            })
            .buffer_unordered(CONNECT_CONCURRENCY)
            .collect()
            .await;

        let measuring = Arc::new(AtomicBool::new(false));
        let delivered = Arc::new(AtomicU64::new(0));
        let (samples_tx, samples) = mpsc::unbounded_channel();
        for socket in sockets {
            spawn_reader(
                socket,
                measuring.clone(),
                delivered.clone(),
                samples_tx.clone(),
            );
        }
        Self {
            targets,
            measuring,
            delivered,
            samples,
        }
    }

    /// Starts one execution of the fan-out workflow in the given session.
    fn start_run(
        publisher: &Endpoint,
        (session, workflow): &(String, String),
    ) -> impl Future<Output = ()> + 'static {
        let request = publisher.post_request(
            &format!("/api/executions?session_id={session}&user_id=bench"),
            &json!({"workflow_id": workflow, "inputs": {"route": {"input_data": {"tier": "gold"}}}}),
        );
        async move {
            let _ = request.send().await;
        }
    }

    /// Starts `rate` executions per second for `seconds`, round-robin over the sessions;
    /// answers how many it started and the seconds that took.
    async fn publish(&self, publisher: &Endpoint, rate: f64, seconds: f64) -> (usize, f64) {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let started = Instant::now();
        let mut launched = 0usize;
        while started.elapsed() < Duration::from_secs_f64(seconds) {
            ticker.tick().await;
            let target = &self.targets[launched % self.targets.len()];
            tokio::spawn(Self::start_run(publisher, target));
            launched += 1;
        }
        (launched, started.elapsed().as_secs_f64())
    }

    /// Publishes at `rate` executions per second for `warmup` seconds unmeasured (first
    /// deliveries pay for connections and caches warming up), then for `seconds` counting
    /// every event of those runs the clients receive.
    pub async fn measure(
        mut self,
        publisher: &Endpoint,
        rate: f64,
        warmup: f64,
        seconds: f64,
    ) -> Report {
        if warmup > 0.0 {
            self.publish(publisher, rate, warmup).await;
            tokio::time::sleep(SETTLE).await;
        }
        self.measuring.store(true, Ordering::Relaxed);
        let (launched, window) = self.publish(publisher, rate, seconds).await;
        // Let the last runs' events arrive, then stop counting: the rate is the events of
        // the runs started in the window over the window.
        tokio::time::sleep(SETTLE).await;
        self.measuring.store(false, Ordering::Relaxed);
        let delivered = self.delivered.load(Ordering::Relaxed);
        // One more run per session wakes every reader so it reports.
        for target in &self.targets {
            Self::start_run(publisher, target).await;
        }
        let mut latencies = Vec::new();
        while let Ok(Some(batch)) =
            tokio::time::timeout(Duration::from_secs(5), self.samples.recv()).await
        {
            latencies.extend(batch);
        }
        latencies.sort_unstable();
        Report {
            launched,
            delivered,
            window,
            latencies_us: latencies,
        }
    }
}

/// What one measurement saw.
pub struct Report {
    /// Executions started.
    pub launched: usize,
    /// Events received by all clients together.
    pub delivered: u64,
    /// Seconds the publisher started executions.
    pub window: f64,
    /// Publish-to-receive latencies, sorted.
    latencies_us: Vec<u32>,
}

impl Report {
    pub fn events_per_second(&self) -> f64 {
        self.delivered as f64 / self.window
    }

    /// The `q` quantile of the latency in milliseconds (`1.0`: the maximum).
    pub fn latency_ms(&self, q: f64) -> f64 {
        let len = self.latencies_us.len();
        let index = ((len as f64 * q) as usize).min(len.saturating_sub(1));
        self.latencies_us
            .get(index)
            .map_or(0.0, |us| f64::from(*us) / 1000.0)
    }
}
