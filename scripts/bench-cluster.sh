#!/usr/bin/env bash
# scripts/bench-cluster.sh — cross-node fan-out benchmark of a three-node cluster (issue #8;
# prints numbers, not a test: nothing fails on slow results).
#
#   bash scripts/bench-cluster.sh [--duration S] [--runs R] [--connections N]
#                                 [--sessions K] [--rate E] [--no-build] [--bin PATH]
#
# Starts a cluster with deploy/local-cluster.sh (private PostgreSQL and Redis, nodes
# A B C; nginx runs but is not in the measured path) under a temporary work dir, then
# runs the load tool's `cluster-fanout` mode (benches/realtime/) R times (default 3):
# N WebSocket clients (default 5,000) connect directly to nodes B and C, following K
# sessions (default 100, N/K clients each, half on B and half on C) created on node A;
# node A starts E executions per second (default 20) of a Switch→Merge workflow, each
# publishing 10 events, so E × 10 × N/K = 10,000 events/s reach the clients: 3 s of warm-up,
# then S seconds measured (default 20). Every event goes A → Redis → B/C → client.
#
# Per run and as medians over the runs: delivered events/s, publish-to-receive latency
# p50/p99/max (the event's `timestamp`, set on A, to its arrival at the client: one
# machine, one clock), and the CPU the Redis server used over the publishing window
# (`INFO cpu` used_cpu_sys + used_cpu_user) as percent of one core. Target: p99 <= 10 ms
# at 10,000 events/s delivered.
#
# The runs share one cluster (each run adds K idle sessions on node A). The nodes log
# at warn. Every client costs one file descriptor in the tool and one in a node: the script
# raises the soft limit to the hard one, and N must stay a few hundred below it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH_NAME=bench-cluster
BENCH_SCRIPT="${BASH_SOURCE[0]}"
# shellcheck source=scripts/bench/common.sh
source "$ROOT/scripts/bench/common.sh"

DURATION=20
RUNS=3
CONNECTIONS=5000
SESSIONS=100
RATE=20
BUILD=1
BIN=""
BENCH_WRK=0

while [ $# -gt 0 ]; do
    case "$1" in
    --sessions) need_value "$@"; SESSIONS="$2"; shift 2 ;;
    --sessions=*) SESSIONS="${1#*=}"; shift ;;
    --rate) need_value "$@"; RATE="$2"; shift 2 ;;
    --rate=*) RATE="${1#*=}"; shift ;;
    *) common_option "$@" || die "unknown argument '$1' (see --help)"; shift "$SHIFT" ;;
    esac
done
is_uint "$DURATION" || die "--duration must be a positive integer (seconds)"
is_uint "$RUNS" || die "--runs must be a positive integer"
is_uint "$CONNECTIONS" || die "--connections must be a positive integer"
is_uint "$SESSIONS" || die "--sessions must be a positive integer"
[ "$SESSIONS" -le "$CONNECTIONS" ] || die "--sessions must not exceed --connections"
if ! [[ "$RATE" =~ ^[0-9]*\.?[0-9]+$ ]] || [[ "$RATE" =~ ^[0.]+$ ]]; then
    die "--rate must be a positive number of executions per second"
fi

ulimit -n "$(ulimit -Hn)"
if [ "$CONNECTIONS" -gt $(($(ulimit -n) - 500)) ]; then
    die "$CONNECTIONS clients need a higher descriptor limit than $(ulimit -n) (see --help)"
fi

bench_prepare
CLUSTER_DIR="$WORK/cluster"
cluster_down() {
    [ -f "$CLUSTER_DIR/cluster.env" ] || return 0
    bash "$ROOT/deploy/local-cluster.sh" down --dir "$CLUSTER_DIR" >>"$WORK/cluster.log" 2>&1 ||
        echo "$BENCH_NAME: stopping the cluster failed (log: $WORK/cluster.log)" >&2
}
BENCH_CLEANUP=cluster_down

step "building the load tool (benches/realtime)"
cargo bench --bench realtime --no-run --quiet 2>/dev/null || die "building the load tool failed"
TOOL="$(cargo bench --bench realtime --no-run --message-format=json 2>/dev/null |
    "$SVC_PYTHON" -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["kind"] == ["bench"]][-1])')"

step "starting the cluster (deploy/local-cluster.sh, log $WORK/cluster.log)"
TOKEN="$(mint_token bench)"
KAILASH_API_GATEWAY_SECRET="$SECRET" KAILASH_REDIS_PREFIX=kgw-bench RUST_LOG=warn \
    bash "$ROOT/deploy/local-cluster.sh" up --dir "$CLUSTER_DIR" --bin "$BIN" >"$WORK/cluster.log" 2>&1 ||
    { tail -n 30 "$WORK/cluster.log" >&2; die "the cluster did not start"; }
eval "$(bash "$ROOT/deploy/local-cluster.sh" env --dir "$CLUSTER_DIR")"
read -r -a NODE_URLS <<<"$KAILASH_NODE_URLS"
echo "node A ${NODE_URLS[0]} (publisher), B ${NODE_URLS[1]}, C ${NODE_URLS[2]}; Redis $REDIS_URL"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

for run in $(seq "$RUNS"); do
    step "run $run/$RUNS: $CONNECTIONS clients on B and C over $SESSIONS sessions on A, $RATE executions/s for ${DURATION}s"
    KAILASH_BENCH_TOKEN="$TOKEN" "$TOOL" cluster-fanout \
        --publisher "${NODE_URLS[0]}" --subscribers "${NODE_URLS[1]},${NODE_URLS[2]}" \
        --clients "$CONNECTIONS" --sessions "$SESSIONS" --rate "$RATE" --seconds "$DURATION" \
        --redis-url "$REDIS_URL" | tee "$WORK/run-$run.txt" ||
        { FAILED=1; die "run $run failed (cluster logs: $CLUSTER_DIR/logs)"; }
done

step "summary: medians of $RUNS runs"
cat "$WORK"/run-*.txt | grep '^RESULT ' | "$SVC_PYTHON" -c '
import statistics, sys
runs = [dict(kv.split("=") for kv in line.split()[1:]) for line in sys.stdin]
median = lambda key: statistics.median(float(r[key]) for r in runs)
each = lambda key: ", ".join(r[key] for r in runs)
print("cluster fan-out (%d runs; each run: %s)" % (len(runs), " | ".join(
    "%s ev/s p99 %s ms" % (r["events_per_s"], r["p99_ms"]) for r in runs)))
print("  delivered             %.0f events/s              (runs: %s)" % (median("events_per_s"), each("events_per_s")))
print("  publish -> receive    p50 %.2f ms, p99 %.2f ms, max %.2f ms" % (median("p50_ms"), median("p99_ms"), median("max_ms")))
print("  Redis CPU             %.1f%% of one core            (runs: %s)" % (median("redis_cpu_pct"), each("redis_cpu_pct")))
print("  target                p99 <= 10 ms at 10,000 events/s: %s" % (
    "met" if median("p99_ms") <= 10 and median("events_per_s") >= 9500 else "NOT met"))
'
