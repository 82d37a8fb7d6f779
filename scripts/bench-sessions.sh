#!/usr/bin/env bash
# scripts/bench-sessions.sh — session benchmark for kailash-gateway (prints
# numbers; not a test, nothing fails on slow results).
#
#   bash scripts/bench-sessions.sh [--duration S] [--runs R] [--sessions N]
#                                  [--connections "32 256"] [--no-build]
#                                  [--bin PATH]
#
# (a) sessions.create: wrk (-t2 --latency) POSTs /api/sessions with a bearer
#     token and body {} at each concurrency (default 32 and 256): a 2 s
#     warm-up, then R runs of S seconds; prints the median req/s, p50 and p99
#     across runs. The server is restarted (empty store) before each
#     concurrency level; within a level sessions accumulate.
# (b) sessions.idle_memory: on a fresh server, creates 1,000 sessions
#     (warm-up), reads VmRSS, creates N more (default 100,000; every response
#     must be 200), waits 2 s, reads VmRSS again and prints
#     (rss_after - rss_before) / N.
#
# Everything runs on 127.0.0.1: the server on a free port, with a temporary
# data dir (removed at exit unless the run failed). Note that wrk and the
# server share this machine's cores.
#
# Exit code: 0 if all measurements ran and every request was answered 2xx;
# 1 otherwise (the summary is still printed when there is one).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH_NAME=bench-sessions
BENCH_SCRIPT="${BASH_SOURCE[0]}"
# shellcheck source=scripts/bench/common.sh
source "$ROOT/scripts/bench/common.sh"

DURATION=10
RUNS=3
SESSIONS=100000
WARMUP_SESSIONS=1000
CONNECTIONS="32 256"
BUILD=1
BIN=""

while [ $# -gt 0 ]; do
    case "$1" in
    --sessions) need_value "$@"; SESSIONS="$2"; shift 2 ;;
    --sessions=*) SESSIONS="${1#*=}"; shift ;;
    *) common_option "$@" || die "unknown argument '$1' (see --help)"; shift "$SHIFT" ;;
    esac
done
is_uint "$DURATION" || die "--duration must be a positive integer (seconds)"
is_uint "$RUNS" || die "--runs must be a positive integer"
is_uint "$SESSIONS" || die "--sessions must be a positive integer"
for c in $CONNECTIONS; do is_uint "$c" || die "--connections must list positive integers"; done
[ -n "${CONNECTIONS// /}" ] || die "--connections is empty"

# ------------------------------------------------------------ prerequisites
bench_prepare
SERVER_ENV=(KAILASH_MAX_SESSIONS=10000000)
WRK_LUA="$ROOT/scripts/bench/create_session.lua"
WRK_PATH=/api/sessions
SUMMARY=()

rss_kib() {
    local v
    v="$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null)"
    [ -n "$v" ] || die "could not read VmRSS of pid $SERVER_PID"
    printf '%s' "$v"
}

echo "kailash-gateway session benchmark: $(nproc) cores, binary $BIN"
echo "settings: duration ${DURATION}s, runs $RUNS, connections [$CONNECTIONS], idle sessions $SESSIONS"

# -------------------------------------------------------- (a) throughput
for conns in $CONNECTIONS; do
    step "sessions.create c=$conns: fresh server, 2 s warm-up, then $RUNS x ${DURATION}s"
    start_server
    TOKEN="$(mint_token bench-user)"
    run_wrk "$conns" 2 "$WORK/wrk-c$conns-warmup.txt"
    files=()
    for ((r = 1; r <= RUNS; r++)); do
        f="$WORK/wrk-c$conns-run$r.txt"
        run_wrk "$conns" "$DURATION" "$f"
        files+=("$f")
    done
    out="$("$SVC_PYTHON" "$ROOT/scripts/bench/wrk_stats.py" "sessions.create c=$conns" "${files[@]}")" ||
        die "could not parse wrk output (files in $WORK)"
    grep -v -e '^SUMMARY ' -e '^WARNING ' <<<"$out" || true
    line="$(sed -n 's/^SUMMARY //p' <<<"$out")"
    echo "$line"
    SUMMARY+=("$line")
    if grep -q '^WARNING ' <<<"$out"; then
        warn="$(sed -n 's/^WARNING //p' <<<"$out")"
        echo "WARNING: $warn" >&2
        SUMMARY+=("  WARNING: $warn")
        grep -q ' [1-9][0-9]* non-2xx' <<<"$warn" && FAILED=1
    fi
    stop_server
done

# -------------------------------------------------------- (b) idle memory
step "sessions.idle_memory: fresh server, $WARMUP_SESSIONS warm-up sessions, then $SESSIONS more"
start_server
TOKEN="$(mint_token bench-user)"
create_sessions() { # COUNT
    "$SVC_PYTHON" "$ROOT/scripts/bench/create_sessions.py" --port "$SERVER_PORT" --token "$TOKEN" \
        --count "$1" --workers 4
}
rss_start="$(rss_kib)"
create_sessions "$WARMUP_SESSIONS" || die "warm-up session creation failed"
sleep 1
rss_before="$(rss_kib)"
echo "RSS: at start $rss_start KiB, after warm-up $rss_before KiB"
create_sessions "$SESSIONS" || die "creating $SESSIONS sessions failed: not every response was 200"
sleep 2
kill -0 "$SERVER_PID" 2>/dev/null || die "server died while creating sessions"
rss_after="$(rss_kib)"
echo "RSS: after $SESSIONS sessions + 2 s: $rss_after KiB"
mem_line="$("$SVC_PYTHON" - "$rss_before" "$rss_after" "$SESSIONS" <<'PY'
import sys
before, after, n = (int(x) for x in sys.argv[1:])
per = (after - before) * 1024 / n
def mib(kib):
    return "%.1f MiB" % (kib / 1024)
print("sessions.idle_memory: %d sessions, %.0f B/session = %.2f KiB/session (RSS %s -> %s)"
      % (n, per, per / 1024, mib(before), mib(after)))
PY
)"
echo "$mem_line"
SUMMARY+=("$mem_line")
stop_server

# -------------------------------------------------------- summary
printf '\n==================== session benchmark summary ====================\n'
printf '%s\n' "${SUMMARY[@]}"
printf 'server restarted (empty store) before each concurrency level and for the memory test;\n'
printf 'wrk -t2 --latency, %ss runs after a 2s warm-up; client and server share %s cores.\n' "$DURATION" "$(nproc)"
printf '===================================================================\n'
if [ "$FAILED" -ne 0 ]; then
    echo "bench-sessions: some requests were not answered 2xx; the numbers above are not valid" >&2
    exit 1
fi
