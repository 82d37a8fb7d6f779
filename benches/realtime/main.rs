//! The real-time load tool. `scripts/bench-realtime.sh` runs the single-gateway modes
//! against a release gateway this tool starts as a child process (open auth, in-memory
//! defaults); `scripts/bench-cluster.sh` runs `cluster-fanout` against a running cluster.
//!
//! - `connections --count N`: opens N WebSocket connections and reports the gateway's resident
//!   memory per connection (VmRSS after minus before, over N).
//! - `fanout --clients C --sessions S --rate R --seconds T`: C clients follow S sessions
//!   (C/S each); a publisher starts R executions per second spread over the sessions; every
//!   execution publishes its events to C/S clients. Reports delivered events/s and the
//!   publish-to-receive latency (event `timestamp` to arrival) p50/p99.
//! - `cluster-fanout`: the same measurement across nodes ([`cluster`]).
//!
//! The file-descriptor limit bounds N: the scripts raise the soft limit to the hard one.

mod cluster;
mod fanout;
use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use futures_util::{StreamExt, stream};

use crate::fanout::{Endpoint, Fanout, Socket};

#[derive(Parser)]
struct Args {
    /// The gateway binary to start (single-gateway modes).
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
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    ClusterFanout(cluster::Options),
}

/// The gateway under test, stopped on drop.
struct Gateway {
    child: Child,
    endpoint: Endpoint,
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
            endpoint: Endpoint::new(&format!("127.0.0.1:{port}"), None),
        };
        for _ in 0..200 {
            let health = gateway.endpoint.http.get(gateway.endpoint.url("/health"));
            if health.send().await.is_ok() {
                return gateway;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not start");
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connections(gateway: &Gateway, count: usize) {
    let warm = gateway.endpoint.connect("").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = gateway.rss_kib();
    let started = Instant::now();
    let sockets: Vec<Socket> = stream::iter(0..count)
        .map(|_| gateway.endpoint.connect(""))
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

async fn single_fanout(
    gateway: &Gateway,
    clients: usize,
    sessions: usize,
    rate: f64,
    seconds: f64,
) {
    let endpoint = &gateway.endpoint;
    let fanout = Fanout::prepare(endpoint, std::slice::from_ref(endpoint), clients, sessions).await;
    let report = fanout.measure(endpoint, rate, 0.0, seconds).await;
    println!(
        "fanout: {clients} clients over {sessions} sessions, {} executions at {rate}/s: {} events delivered in {:.1} s = {:.0} events/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        report.launched,
        report.delivered,
        report.window,
        report.events_per_second(),
        report.latency_ms(0.50),
        report.latency_ms(0.99),
        report.latency_ms(1.0),
    );
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        match args.mode {
            Mode::Connections { count } => {
                connections(&Gateway::start(&args.bin).await, count).await
            }
            Mode::Fanout {
                clients,
                sessions,
                rate,
                seconds,
            } => {
                single_fanout(
                    &Gateway::start(&args.bin).await,
                    clients,
                    sessions,
                    rate,
                    seconds,
                )
                .await
            }
            Mode::ClusterFanout(options) => cluster::run(options).await,
        }
    });
}
