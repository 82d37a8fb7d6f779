//! The real-time load tool: `scripts/bench-realtime.sh` runs it against a release gateway it
//! starts as a child process (open auth, in-memory defaults).
//!
//! - `connections --count N`: opens N WebSocket connections and reports the gateway's resident
//!   memory per connection (VmRSS after minus before, over N).
//! - `fanout --clients C --sessions S --rate R --seconds T`: C clients follow S sessions
//!   (C/S each); a publisher starts R executions per second spread over the sessions; every
//!   execution publishes its events to C/S clients. Reports delivered events/s and the
//!   publish-to-receive latency (event `timestamp` to arrival) p50/p99.
//!
//! The file-descriptor limit bounds N: the script raises the soft limit to the hard one.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message};

#[derive(Parser)]
struct Args {
    /// The gateway binary to start.
    #[arg(long, default_value = "target/release/kailash-gateway")]
    bin: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Connections {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
    },
    Fanout {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        sessions: usize,
        /// Executions started per second.
        #[arg(long, default_value_t = 25.0)]
        rate: f64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The gateway under test, stopped on drop.
struct Gateway {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Gateway {
    async fn start(bin: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data_dir = std::env::temp_dir().join(format!("kailash-bench-{port}"));
        let child = Command::new(bin)
            .arg("serve")
            .env("KAILASH_BIND", format!("127.0.0.1:{port}"))
            .env("KAILASH_AUTH_MODE", "open")
            .env("KAILASH_DATA_DIR", &data_dir)
            .env("KAILASH_MAX_CONNECTIONS", "100000")
            .env("KAILASH_MAX_SESSIONS", "100000")
            .env("KAILASH_MAX_CONCURRENT_EXECUTIONS", "10000")
            .env("KAILASH_LOG_FILTER", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin}: {e} (build it with cargo build --release)")
            });
        let gateway = Self {
            child,
            base: format!("127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..200 {
            if gateway
                .http
                .get(gateway.url("/health"))
                .send()
                .await
                .is_ok()
            {
                return gateway;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not start");
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.base)
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn connect(&self, query: &str) -> Socket {
        let (mut socket, _) = connect_async(format!("ws://{}/ws?{query}", self.base))
            .await
            .expect("WebSocket handshake");
        let hello = socket.next().await.expect("hello").expect("hello frame");
        assert!(hello.to_text().unwrap().contains("\"connected\""));
        socket
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connections(gateway: &Gateway, count: usize) {
    let warm = gateway.connect("user_id=bench").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = gateway.rss_kib();
    let started = Instant::now();
    let sockets: Vec<Socket> = stream::iter(0..count)
        .map(|_| gateway.connect("user_id=bench"))
        .buffer_unordered(256)
        .collect()
        .await;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = gateway.rss_kib();
    let per_connection = after.saturating_sub(before) as f64 * 1024.0 / count as f64;
    println!(
        "connections: {count} open in {:.1} s; gateway RSS {before} KiB -> {after} KiB; {:.0} bytes ({:.2} KiB) per connection",
        opened.as_secs_f64(),
        per_connection,
        per_connection / 1024.0
    );
    drop((warm, sockets));
}

/// The event's own `timestamp` (the first in the frame: the wrapper's comes last).
fn event_time(frame: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let start = frame.find(r#""timestamp":""#)? + 13;
    let end = start + frame[start..].find('"')?;
    frame[start..end].parse().ok()
}

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
    samples: tokio::sync::mpsc::UnboundedSender<Vec<u32>>,
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

async fn fanout(gateway: &Gateway, clients: usize, sessions: usize, rate: f64, seconds: u64) {
    let mut targets = Vec::new();
    for _ in 0..sessions {
        let session = gateway
            .post("/api/sessions", json!({"user_id": "bench"}))
            .await;
        let session = session["session_id"].as_str().unwrap().to_owned();
        let path = format!("/api/workflows?session_id={session}&user_id=bench");
        let created = gateway.post(&path, fanout_workflow()).await;
        targets.push((session, created["workflow_id"].as_str().unwrap().to_owned()));
    }
    let sockets: Vec<Socket> = stream::iter(0..clients)
        .map(|i| {
            let query = format!("user_id=bench&session_id={}", targets[i % sessions].0);
            async move { gateway.connect(&query).await }
        })
        .buffer_unordered(256)
        .collect()
        .await;

    let measuring = Arc::new(AtomicBool::new(true));
    let delivered = Arc::new(AtomicU64::new(0));
    let (samples_tx, mut samples_rx) = tokio::sync::mpsc::unbounded_channel();
    for socket in sockets {
        spawn_reader(
            socket,
            measuring.clone(),
            delivered.clone(),
            samples_tx.clone(),
        );
    }
    drop(samples_tx);

    let start_run = |session: &str, workflow: &str| {
        let url = gateway.url(&format!(
            "/api/executions?session_id={session}&user_id=bench"
        ));
        let body =
            json!({"workflow_id": workflow, "inputs": {"route": {"input_data": {"tier": "gold"}}}});
        let http = gateway.http.clone();
        async move {
            let _ = http.post(url).json(&body).send().await;
        }
    };
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let started = Instant::now();
    let mut launched = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        ticker.tick().await;
        let (session, workflow) = &targets[launched % sessions];
        tokio::spawn(start_run(session, workflow));
        launched += 1;
    }
    // Let the last runs' events arrive, then stop counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let elapsed = started.elapsed().as_secs_f64();
    measuring.store(false, Ordering::Relaxed);
    let total = delivered.load(Ordering::Relaxed);
    // One more run per session wakes every reader so it reports.
    for (session, workflow) in &targets {
        start_run(session, workflow).await;
    }
    let mut latencies = Vec::new();
    while let Ok(Some(batch)) =
        tokio::time::timeout(Duration::from_secs(5), samples_rx.recv()).await
    {
        latencies.extend(batch);
    }
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(index).map_or(0.0, |us| *us as f64 / 1000.0)
    };
    println!(
        "fanout: {clients} clients over {sessions} sessions, {launched} executions at {rate}/s: {total} events delivered in {elapsed:.1} s = {:.0} events/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        total as f64 / elapsed,
        quantile(0.50),
        quantile(0.99),
        quantile(1.0),
    );
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let gateway = Gateway::start(&args.bin).await;
        match args.mode {
            Mode::Connections { count } => connections(&gateway, count).await,
            Mode::Fanout {
                clients,
                sessions,
                rate,
                seconds,
            } => fanout(&gateway, clients, sessions, rate, seconds).await,
        }
    });
}
