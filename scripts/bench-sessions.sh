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
# shellcheck source=scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"

DURATION=10
RUNS=3
SESSIONS=100000
WARMUP_SESSIONS=1000
CONNECTIONS="32 256"
BUILD=1
BIN=""

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
die() {
    printf 'bench-sessions: ERROR: %s\n' "$*" >&2
    exit 1
}
is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }

while [ $# -gt 0 ]; do
    case "$1" in
    --duration) need_value "$@"; DURATION="$2"; shift 2 ;;
    --duration=*) DURATION="${1#*=}"; shift ;;
    --runs) need_value "$@"; RUNS="$2"; shift 2 ;;
    --runs=*) RUNS="${1#*=}"; shift ;;
    --sessions) need_value "$@"; SESSIONS="$2"; shift 2 ;;
    --sessions=*) SESSIONS="${1#*=}"; shift ;;
    --connections) need_value "$@"; CONNECTIONS="$2"; shift 2 ;;
    --connections=*) CONNECTIONS="${1#*=}"; shift ;;
    --bin) need_value "$@"; BIN="$2"; BUILD=0; shift 2 ;;
    --bin=*) BIN="${1#*=}"; BUILD=0; shift ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done
is_uint "$DURATION" || die "--duration must be a positive integer (seconds)"
is_uint "$RUNS" || die "--runs must be a positive integer"
is_uint "$SESSIONS" || die "--sessions must be a positive integer"
for c in $CONNECTIONS; do is_uint "$c" || die "--connections must list positive integers"; done
[ -n "${CONNECTIONS// /}" ] || die "--connections is empty"

step() { printf '\n==> %s\n' "$*"; }

# ------------------------------------------------------------ prerequisites
svc_ensure_python3
command -v wrk >/dev/null 2>&1 || svc_apt_install wrk
command -v wrk >/dev/null 2>&1 || die "wrk not found after install"

if [ -z "$BIN" ]; then
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/kailash-gateway"
fi
if [ "$BUILD" -eq 1 ]; then
    if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    step "cargo build --release --bin kailash-gateway"
    cargo build --release --bin kailash-gateway || die "release build failed"
fi
[ -x "$BIN" ] || die "gateway binary not found at $BIN (build it, or drop --no-build)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kailash-bench.XXXXXX")"
SECRET="$("$SVC_PYTHON" -c 'import secrets; print(secrets.token_hex(32))')"
LUA="$ROOT/scripts/bench/create_session.lua"
SERVER_PID=""
SERVER_PORT=""
SERVER_LOG=""
SERVER_N=0
FAILED=0
SUMMARY=()

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    local i
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "server (pid $SERVER_PID) ignored SIGTERM for 10 s; killing it" >&2
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

on_exit() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    stop_server
    if [ "$rc" -eq 0 ] && [ "$FAILED" -eq 0 ]; then
        rm -rf "$WORK"
    else
        echo "bench-sessions: logs kept in $WORK" >&2
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Server env: a fresh data dir per start; caller's other KAILASH_* settings
# pass through.
start_server() {
    SERVER_N=$((SERVER_N + 1))
    local data="$WORK/data-$SERVER_N" i code
    mkdir -p "$data"
    svc_pick_port SERVER_PORT
    SERVER_LOG="$WORK/server-$SERVER_N.log"
    env KAILASH_BIND="127.0.0.1:$SERVER_PORT" \
        KAILASH_MAX_SESSIONS=10000000 \
        KAILASH_DATA_DIR="$data" \
        KAILASH_API_GATEWAY_SECRET="$SECRET" \
        KAILASH_LOG_FORMAT=json \
        KAILASH_SESSION_TIMEOUT_MINUTES=60 \
        RUST_LOG=warn \
        "$BIN" serve >"$SERVER_LOG" 2>&1 </dev/null &
    SERVER_PID=$!
    for ((i = 0; i < 600; i++)); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            tail -n 30 "$SERVER_LOG" >&2
            SERVER_PID=""
            die "server exited during startup (log: $SERVER_LOG)"
        fi
        code="$("$SVC_PYTHON" - "$SERVER_PORT" <<'PY' 2>/dev/null || true
import sys, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:%s/ready" % sys.argv[1], timeout=2) as r:
        print(r.status)
except Exception as e:
    print(getattr(e, "code", 0))
PY
        )"
        if [ "$code" = 200 ]; then
            echo "server pid $SERVER_PID ready on 127.0.0.1:$SERVER_PORT (data dir $data)"
            return 0
        fi
        sleep 0.1
    done
    tail -n 30 "$SERVER_LOG" >&2
    die "server did not answer 200 on GET /ready within 60 s (log: $SERVER_LOG)"
}

mint_token() {
    local tok
    tok="$(KAILASH_API_GATEWAY_SECRET="$SECRET" KAILASH_DATA_DIR="$WORK" RUST_LOG=warn \
        "$BIN" token --sub "${1:-bench-user}" </dev/null 2>"$WORK/token.err")" ||
        { cat "$WORK/token.err" >&2; die "'kailash-gateway token' failed"; }
    tok="$(printf '%s' "$tok" | tr -d '[:space:]')"
    [[ "$tok" =~ ^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$ ]] ||
        die "'kailash-gateway token' did not print a JWT (got: ${tok:0:80})"
    printf '%s' "$tok"
}

rss_kib() {
    local v
    v="$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null)"
    [ -n "$v" ] || die "could not read VmRSS of pid $SERVER_PID"
    printf '%s' "$v"
}

run_wrk() { # CONNECTIONS SECONDS OUTFILE
    local conns="$1" secs="$2" out="$3"
    local threads=2
    [ "$conns" -ge "$threads" ] || threads="$conns"
    if ! KAILASH_BENCH_TOKEN="$TOKEN" wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s --latency \
        -s "$LUA" "http://127.0.0.1:$SERVER_PORT/api/sessions" >"$out" 2>&1; then
        cat "$out" >&2
        die "wrk failed"
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || {
        tail -n 30 "$SERVER_LOG" >&2
        die "server died during the wrk run"
    }
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
