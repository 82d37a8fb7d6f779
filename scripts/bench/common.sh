# shellcheck shell=bash
# scripts/bench/common.sh — shared helpers of the scripts/bench-*.sh
# benchmarks. Source it (after setting ROOT) from a script that runs with
# `set -euo pipefail`; it sources scripts/lib/services.sh.
#
# Set before sourcing:
#   ROOT          repository root
#   BENCH_NAME    prefix of error messages ("bench-sessions: ERROR: ...")
#   BENCH_SCRIPT  the benchmark script (its header comment is the --help text)
#
# May be set before calling the functions:
#   SERVER_ENV=(VAR=value ...)  extra server environment, appended after the
#                               defaults of start_server (so it overrides them)
#   WRK_LUA       wrk script (-s) for run_wrk
#   WRK_PATH      URL path for run_wrk (e.g. /api/sessions)
#   WRK_ENV=(VAR=value ...)     extra environment for wrk (read by the Lua)
#   TOKEN         bearer token, passed to wrk as KAILASH_BENCH_TOKEN
#   BENCH_WRK=0   the benchmark does not use wrk (bench_prepare leaves it alone)
#   BENCH_CLEANUP a function on_exit calls first (e.g. one stopping a cluster)
#
# Functions:
#   usage, die, need_value, is_uint, step     argument parsing and output
#   common_option ARGS...                     the options every benchmark takes
#   bench_prepare                             python3 + wrk, release build
#                                             (if BUILD=1), BIN check, WORK
#                                             dir, SECRET, exit trap
#   start_server / stop_server                one server at a time
#   mint_token [SUB]                          prints a JWT for SUB
#   run_wrk CONNECTIONS SECONDS OUTFILE       one wrk -t2 --latency run
#
# Globals used: BUILD, BIN (set by the script's argument parsing), FAILED
# (non-zero keeps the logs and is the script's business to turn into an
# exit code).

: "${ROOT:?set ROOT before sourcing scripts/bench/common.sh}"
# shellcheck source=scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"

BENCH_NAME="${BENCH_NAME:-bench}"
BENCH_SCRIPT="${BENCH_SCRIPT:-$0}"
SERVER_ENV=()
WRK_ENV=()
WRK_LUA=""
WRK_PATH=""
TOKEN=""
BENCH_WRK=1
BENCH_CLEANUP=""
WORK=""
SECRET=""
SERVER_PID=""
SERVER_PORT=""
SERVER_LOG=""
SERVER_N=0
FAILED=0

usage() {
    sed -n '2,/^set -euo/p' "$BENCH_SCRIPT" | sed '$d; s/^# \{0,1\}//'
}
need_value() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value"; fi
}
die() {
    printf '%s: ERROR: %s\n' "$BENCH_NAME" "$*" >&2
    exit 1
}
is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -gt 0 ]; }

# Takes one of the options every benchmark shares (--duration, --runs, --connections,
# --bin, --no-build, -h/--help) off the front of ARGS, setting DURATION, RUNS,
# CONNECTIONS, BIN and BUILD, and SHIFT to how many words it used. Returns 1 when ARGS
# starts with anything else.
common_option() {
    SHIFT=2
    case "$1" in
    --duration) need_value "$@"; DURATION="$2" ;;
    --duration=*) DURATION="${1#*=}"; SHIFT=1 ;;
    --runs) need_value "$@"; RUNS="$2" ;;
    --runs=*) RUNS="${1#*=}"; SHIFT=1 ;;
    --connections) need_value "$@"; CONNECTIONS="$2" ;;
    --connections=*) CONNECTIONS="${1#*=}"; SHIFT=1 ;;
    --bin) need_value "$@"; BIN="$2"; BUILD=0 ;;
    --bin=*) BIN="${1#*=}"; BUILD=0; SHIFT=1 ;;
    --no-build) BUILD=0; SHIFT=1 ;;
    -h | --help) usage; exit 0 ;;
    *) SHIFT=0; return 1 ;;
    esac
}
step() { printf '\n==> %s\n' "$*"; }

# Prerequisites (python3, wrk unless BENCH_WRK=0, the release binary), then the
# work dir, the JWT secret and the exit trap. Call once, after argument parsing.
bench_prepare() {
    svc_ensure_python3
    if [ "$BENCH_WRK" -eq 1 ]; then
        command -v wrk >/dev/null 2>&1 || svc_apt_install wrk
        command -v wrk >/dev/null 2>&1 || die "wrk not found after install"
    fi

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
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

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
    [ -z "$BENCH_CLEANUP" ] || "$BENCH_CLEANUP"
    stop_server
    if [ "$rc" -eq 0 ] && [ "$FAILED" -eq 0 ]; then
        rm -rf "$WORK"
    else
        echo "$BENCH_NAME: logs kept in $WORK" >&2
    fi
    exit "$rc"
}

# Server env: a fresh data dir per start, then SERVER_ENV; the caller's other
# KAILASH_* settings pass through.
start_server() {
    SERVER_N=$((SERVER_N + 1))
    local data="$WORK/data-$SERVER_N" i code
    mkdir -p "$data"
    svc_pick_port SERVER_PORT
    SERVER_LOG="$WORK/server-$SERVER_N.log"
    env KAILASH_BIND="127.0.0.1:$SERVER_PORT" \
        KAILASH_DATA_DIR="$data" \
        KAILASH_API_GATEWAY_SECRET="$SECRET" \
        KAILASH_LOG_FORMAT=json \
        KAILASH_SESSION_TIMEOUT_MINUTES=60 \
        RUST_LOG=warn \
        ${SERVER_ENV[@]+"${SERVER_ENV[@]}"} \
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

run_wrk() { # CONNECTIONS SECONDS OUTFILE
    local conns="$1" secs="$2" out="$3"
    local threads=2
    if [ -z "$WRK_LUA" ] || [ -z "$WRK_PATH" ]; then die "run_wrk: set WRK_LUA and WRK_PATH"; fi
    [ "$conns" -ge "$threads" ] || threads="$conns"
    if ! env KAILASH_BENCH_TOKEN="$TOKEN" KAILASH_BENCH_LUA_DIR="$ROOT/scripts/bench" \
        ${WRK_ENV[@]+"${WRK_ENV[@]}"} \
        wrk -t"$threads" -c"$conns" -d"${secs}s" --timeout 10s --latency \
        -s "$WRK_LUA" "http://127.0.0.1:$SERVER_PORT$WRK_PATH" >"$out" 2>&1; then
        cat "$out" >&2
        die "wrk failed"
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || {
        tail -n 30 "$SERVER_LOG" >&2
        die "server died during the wrk run"
    }
}
