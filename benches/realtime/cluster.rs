//! `cluster-fanout`: fan-out across the nodes of a running cluster (issue #8). The sessions
//! are created on the publishing node (node A, which owns them and runs their executions);
//! the clients subscribe through the other nodes (B and C), so every event they receive
//! went A → Redis → B/C → client. Besides events/s and latency, it reports the CPU the
//! Redis server used over the publishing window, from Redis's own `INFO cpu` counters.

use std::time::Duration;

use crate::fanout::{Endpoint, Fanout, Report, SETTLE};

#[derive(clap::Args)]
pub struct Options {
    /// URL of the node that owns the sessions and runs the executions.
    #[arg(long)]
    publisher: String,
    /// URLs of the nodes the clients connect to, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    subscribers: Vec<String>,
    #[arg(long, default_value_t = 5_000)]
    clients: usize,
    #[arg(long, default_value_t = 100)]
    sessions: usize,
    /// Executions started per second (each publishes 10 events to clients/sessions clients).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Seconds of publishing before the measured window.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// The cluster's Redis, for its CPU counters.
    #[arg(long)]
    redis_url: String,
    /// Bearer token of the benchmark's user (every node verifies it).
    #[arg(long, env = "KAILASH_BENCH_TOKEN", hide_env_values = true)]
    token: String,
}

/// Seconds of CPU (system + user, all threads) the Redis server has used since it started.
async fn redis_cpu_seconds(connection: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(connection)
        .await
        .expect("Redis INFO cpu");
    ["used_cpu_sys:", "used_cpu_user:"]
        .iter()
        .map(|field| {
            info.lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|value| value.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {field} in INFO cpu"))
        })
        .sum()
}

/// Redis CPU seconds used over the next `seconds`.
async fn redis_cpu_over(url: String, seconds: f64) -> f64 {
    let client = redis::Client::open(url).expect("a Redis URL");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let before = redis_cpu_seconds(&mut connection).await;
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    redis_cpu_seconds(&mut connection).await - before
}

fn print_summary(options: &Options, report: &Report, redis_cpu: f64) {
    let per_session = options.clients / options.sessions;
    println!("cluster fan-out");
    println!("  publisher (node A)    {}", options.publisher);
    println!(
        "  subscribers           {} WebSocket clients over {} ({} sessions x {per_session})",
        options.clients,
        options.subscribers.join(", "),
        options.sessions,
    );
    println!(
        "  published             {} executions at {}/s over {:.1} s",
        report.launched, options.rate, report.window
    );
    println!(
        "  delivered             {} events = {:.0} events/s",
        report.delivered,
        report.events_per_second()
    );
    println!(
        "  publish -> receive    p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        report.latency_ms(0.50),
        report.latency_ms(0.99),
        report.latency_ms(1.0)
    );
    println!(
        "  Redis CPU             {redis_cpu:.2} s over {:.1} s = {:.1}% of one core",
        report.window,
        redis_cpu / report.window * 100.0
    );
    // One line for scripts (scripts/bench-cluster.sh takes medians of these).
    println!(
        "RESULT events_per_s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} redis_cpu_pct={:.1}",
        report.events_per_second(),
        report.latency_ms(0.50),
        report.latency_ms(0.99),
        report.latency_ms(1.0),
        redis_cpu / report.window * 100.0
    );
}

pub async fn run(options: Options) {
    let publisher = Endpoint::new(&options.publisher, Some(options.token.clone()));
    let subscribers: Vec<Endpoint> = options
        .subscribers
        .iter()
        .map(|url| Endpoint::new(url, Some(options.token.clone())))
        .collect();
    let fanout = Fanout::prepare(&publisher, &subscribers, options.clients, options.sessions).await;
    // Redis's counters cover the measured window, which starts after the warm-up.
    let redis_cpu = async {
        tokio::time::sleep(Duration::from_secs_f64(options.warmup) + SETTLE).await;
        redis_cpu_over(options.redis_url.clone(), options.seconds).await
    };
    let (report, redis_cpu) = tokio::join!(
        fanout.measure(&publisher, options.rate, options.warmup, options.seconds),
        redis_cpu
    );
    print_summary(&options, &report, redis_cpu);
}
