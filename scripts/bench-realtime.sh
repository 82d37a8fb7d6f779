#!/usr/bin/env bash
# scripts/bench-realtime.sh — the real-time benchmarks (issue #5), against a release
# gateway that the load tool (benches/realtime.rs) starts itself with embedded defaults.
#
#   bash scripts/bench-realtime.sh [connections N] [fanout CLIENTS SESSIONS RATE SECONDS] [runs R]
#
# Defaults: connections 18000; fanout 10000 clients over 100 sessions, 25 executions/s
# (each publishes 10 events to the 100 clients of its session: ~25,000 deliveries/s) for 10 s;
# 3 runs of each. Prints one line per run:
#   connections: N open ...; gateway RSS A KiB -> B KiB; X bytes per connection
#   fanout: ... = E events/s; latency p50 P ms, p99 Q ms
#
# File descriptors: every connection costs one descriptor in the gateway and one in the
# load tool, so the script raises the soft RLIMIT_NOFILE to the hard limit first (`ulimit -n
# $(ulimit -Hn)`); N must stay below that limit minus a few hundred. To go beyond it, raise
# the hard limit as root first (e.g. `prlimit --pid $$ --nofile=1048576` or limits.conf).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CONNECTIONS=18000
FANOUT=(10000 100 25 10)
RUNS=3
while [ $# -gt 0 ]; do
    case "$1" in
        connections) CONNECTIONS="$2"; shift 2 ;;
        fanout) FANOUT=("$2" "$3" "$4" "$5"); shift 5 ;;
        runs) RUNS="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-realtime: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

ulimit -n "$(ulimit -Hn)"
echo "==> file descriptors: $(ulimit -n) per process"
if [ "$CONNECTIONS" -gt $(( $(ulimit -n) - 500 )) ]; then
    echo "bench-realtime: $CONNECTIONS connections need a higher descriptor limit than $(ulimit -n)" >&2
    exit 2
fi

echo "==> building the release gateway and the load tool"
cargo build --release --quiet
cargo bench --bench realtime --no-run --quiet 2>/dev/null
TOOL=$(cargo bench --bench realtime --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["kind"] == ["bench"]][-1])')

for run in $(seq "$RUNS"); do
    echo "==> run $run/$RUNS"
    "$TOOL" connections --count "$CONNECTIONS"
    "$TOOL" fanout --clients "${FANOUT[0]}" --sessions "${FANOUT[1]}" --rate "${FANOUT[2]}" --seconds "${FANOUT[3]}"
done
