#!/usr/bin/env bash
# scripts/bench-executions.sh — end-to-end execution benchmark for
# kailash-gateway (prints numbers; not a test, nothing fails on slow results).
#
#   bash scripts/bench-executions.sh [--duration S] [--runs R]
#                                    [--connections N] [--no-build]
#                                    [--bin PATH] [--workflow W] [--rate R]
#                                    [--with-postgres]
#
# executions.e2e: executions per second of a 2-node native workflow
# (SwitchNode -> MergeNode, "route_and_merge") started AND completed over
# HTTP at N concurrent clients (default 32; target >= 5,000/s).
# --workflow python_double runs the 1-node PythonCodeNode workflow
# (`result = {'n': x * 2}`) instead (scripts/bench-python.sh). --rate R
# paces wrk to about R starts/s in all (each connection waits its share
# before each request; wrk's delay()): unpaced, starts outrun completions and
# the execution latency measures the backlog; paced below capacity, it
# measures an execution.
#
# --with-postgres runs the whole measurement twice in one invocation: first
# with the in-memory store, then with a private PostgreSQL (scripts/lib/
# services.sh, data under the work dir; crash-safe commits with fsync and
# 1 GB of shared buffers, as a server runs: SVC_PG_SERVER_LIKE) as
# DATABASE_URL; prints both
# summaries, the PostgreSQL throughput as a share of the in-memory one
# (target: >= 70%), and the event rows written per second (the store
# writer's events_written from GET /api/stats over each run).
#
# Every run also prints the CPU time per completed execution (from /proc,
# over wrk start -> idle): the whole machine's, the gateway process's and
# the private PostgreSQL's (postmaster and children). The summary turns the
# medians into the throughput share those costs allow once the shared cores
# are saturated (memory / postgres machine CPU), and the share PostgreSQL's
# own CPU allows even if the gateway added nothing (memory / (memory +
# PostgreSQL)): what the difference is spent on, beside what it costs.
#
# One server (KAILASH_MAX_EXECUTIONS_PER_SESSION and
# KAILASH_MAX_CONCURRENT_EXECUTIONS = 100000000, KAILASH_MAX_SESSIONS=1000)
# holds N sessions, each with the workflow. wrk (-t2 --latency,
# scripts/bench/start_execution.lua) POSTs /api/executions?session_id=...
# round-robin over the sessions. Each run: read agent_ui.workflows_executed
# from GET /api/stats, note the wall-clock start, run wrk for S seconds, poll
# /api/stats every 50 ms until agent_ui.active_executions == 0 (60 s timeout),
# note the end; completed/s = (workflows_executed after - before) /
# (end - start); then sample the execution latency (completed_at -
# created_at, server clock) of the 20 most recent executions per session. A 2 s warm-up run first (not counted), then R runs of S
# seconds (default 3 x 10 s); prints every run and the median across runs.
#
# Completions are counted by the server's own counter; wrk only reports the
# start requests (its latency is that of POST /api/executions). Everything
# runs on 127.0.0.1 with a temporary data dir (removed at exit unless the run
# failed); wrk, the stats poller and the server share this machine's cores.
#
# Exit code: 0 if all runs finished and every start request was answered 2xx;
# 1 otherwise (the summary is still printed when there is one).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH_NAME=bench-executions
BENCH_SCRIPT="${BASH_SOURCE[0]}"
# shellcheck source=scripts/bench/common.sh
source "$ROOT/scripts/bench/common.sh"

DURATION=10
RUNS=3
CONNECTIONS=32
BUILD=1
BIN=""
WORKFLOW=route_and_merge
RATE=0
WARMUP_SECONDS=2
IDLE_TIMEOUT=60
WITH_POSTGRES=0

while [ $# -gt 0 ]; do
    case "$1" in
    --workflow) need_value "$@"; WORKFLOW="$2"; shift 2 ;;
    --workflow=*) WORKFLOW="${1#*=}"; shift ;;
    --rate) need_value "$@"; RATE="$2"; shift 2 ;;
    --rate=*) RATE="${1#*=}"; shift ;;
    --with-postgres) WITH_POSTGRES=1; shift ;;
    *) common_option "$@" || die "unknown argument '$1' (see --help)"; shift "$SHIFT" ;;
    esac
done
is_uint "$DURATION" || die "--duration must be a positive integer (seconds)"
is_uint "$RUNS" || die "--runs must be a positive integer"
is_uint "$CONNECTIONS" || die "--connections must be a positive integer"
[[ "$RATE" =~ ^[0-9]+$ ]] || die "--rate must be a whole number of starts per second (0: unpaced)"
[ "$CONNECTIONS" -le 1000 ] || die "--connections must be at most 1000 (one session each; KAILASH_MAX_SESSIONS=1000)"

# ------------------------------------------------------------ prerequisites
bench_prepare
SERVER_ENV=(
    KAILASH_MAX_EXECUTIONS_PER_SESSION=100000000
    KAILASH_MAX_CONCURRENT_EXECUTIONS=100000000
    KAILASH_MAX_SESSIONS=1000
)
WRK_LUA="$ROOT/scripts/bench/start_execution.lua"
WRK_PATH=/api/executions
BASE_LABEL="executions.e2e $WORKFLOW c=$CONNECTIONS"
[ "$RATE" -eq 0 ] || BASE_LABEL="$BASE_LABEL rate=$RATE/s"
LABEL="$BASE_LABEL"
RESULTS=""
# Where measure appends each run's event rows written/s (the PostgreSQL pass only).
EVENTS=""
# The private PostgreSQL's postmaster pid (the PostgreSQL pass only), whose
# processes' CPU time each run reports.
PG_POSTMASTER=""

helper() { "$SVC_PYTHON" "$ROOT/scripts/bench/executions.py" "$@"; }

cpu_ticks() {
    helper cpu-ticks --pid "$SERVER_PID" ${PG_POSTMASTER:+--postmaster "$PG_POSTMASTER"}
}

# Prints "EPOCH_SECONDS WORKFLOWS_EXECUTED" once no execution is active.
wait_idle() {
    helper wait-idle --port "$SERVER_PORT" --token "$TOKEN" --timeout "$IDLE_TIMEOUT" --interval 0.05 ||
        die "executions still active ${IDLE_TIMEOUT} s after wrk stopped (log: $SERVER_LOG)"
}

# One wrk run of SECONDS; with a run number, prints the result line and
# appends its data to $RESULTS. Sets NON2XX.
measure() { # SECONDS OUTFILE [RUN]
    local secs="$1" out="$2" run="${3:-}" before t0 idle t1 after line latency ev0 ev1 cpu0 cpu1
    idle="$(wait_idle)"
    before="${idle#* }"
    ev0="$(helper events-written --port "$SERVER_PORT" --token "$TOKEN")"
    cpu0="$(cpu_ticks)"
    t0="$(date +%s.%N)"
    run_wrk "$CONNECTIONS" "$secs" "$out"
    idle="$(wait_idle)"
    cpu1="$(cpu_ticks)"
    t1="${idle% *}"
    after="${idle#* }"
    ev1="$(helper events-written --port "$SERVER_PORT" --token "$TOKEN")"
    NON2XX="$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$out")"
    NON2XX="${NON2XX:-0}"
    if [ -z "$run" ]; then
        echo "warm-up: $((after - before)) executions completed in ${secs}s (wrk non-2xx $NON2XX)"
        return 0
    fi
    latency="$(helper latency --port "$SERVER_PORT" --token "$TOKEN" --targets "$TARGETS" --sample 20)" ||
        die "could not sample execution latencies"
    line="$(helper run-line --label "$LABEL" --run "$run" --start "$t0" --end "$t1" \
        --before "$before" --after "$after" --wrk "$out" --exec-latency "$latency" \
        --cpu-before "$cpu0" --cpu-after "$cpu1")" ||
        die "could not parse wrk output ($out)"
    grep -v '^DATA ' <<<"$line"
    grep '^DATA ' <<<"$line" >>"$RESULTS"
    if [ -n "$EVENTS" ]; then
        awk -v a="$ev0" -v b="$ev1" -v s="$t0" -v e="$t1" \
            'BEGIN { printf "%.0f\n", (b - a) / (e - s) }' | tee -a "$EVENTS" |
            sed 's/^/  event rows written\/s: /'
    fi
}

print_summary() {
    local line
    printf '\n================== execution benchmark summary ==================\n'
    local results
    for results in "$WORK"/results-*.txt; do
        LABEL="$BASE_LABEL $(basename "$results" .txt | sed 's/^results-//')"
        if line="$(helper summary --label "$LABEL" "$results" 2>/dev/null)"; then
            echo "$line"
        else
            echo "$LABEL: no completed runs"
        fi
    done
    if [ -s "$WORK/events-postgres.txt" ]; then
        echo "postgres: event rows written/s median $(sort -n "$WORK/events-postgres.txt" | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')"
        helper compare "$WORK/results-memory.txt" "$WORK/results-postgres.txt" || true
    fi
    printf 'workflow %s, %s sessions, 1 per wrk connection;\n' "$WORKFLOW" "$CONNECTIONS"
    printf 'completed/s = server agent_ui.workflows_executed delta / (wrk start -> no active executions);\n'
    printf 'completions counted by the server'"'"'s own counter, starts and latency by wrk (-t2 --latency);\n'
    printf 'completed can exceed wrk'"'"'s count by up to %s: starts in flight when wrk stops are not counted by wrk;\n' "$CONNECTIONS"
    printf '%ss runs after a %ss warm-up; client and server share %s cores.\n' "$DURATION" "$WARMUP_SECONDS" "$(nproc)"
    printf '=================================================================\n'
}

echo "kailash-gateway execution benchmark: $(nproc) cores, binary $BIN"
echo "settings: duration ${DURATION}s, runs $RUNS, connections $CONNECTIONS"

# One measurement pass on a fresh server; STORE names it (memory, postgres).
run_pass() { # STORE
    LABEL="$BASE_LABEL $1"
    RESULTS="$WORK/results-$1.txt"
    : >"$RESULTS"
    step "$LABEL: fresh server, $CONNECTIONS sessions with workflow $WORKFLOW"
    start_server
    TOKEN="$(mint_token bench-user)"
    TARGETS="$(helper setup --port "$SERVER_PORT" --token "$TOKEN" --sessions "$CONNECTIONS" --workflow "$WORKFLOW")" ||
        die "creating the sessions and workflows failed (log: $SERVER_LOG)"
    WRK_ENV=(KAILASH_BENCH_TARGETS="$TARGETS" KAILASH_BENCH_INPUTS="$(helper inputs --workflow "$WORKFLOW")"
        KAILASH_BENCH_RATE="$RATE" KAILASH_BENCH_CONNECTIONS="$CONNECTIONS")
    echo "created $CONNECTIONS sessions, each with one workflow"

    step "$LABEL: ${WARMUP_SECONDS}s warm-up (not counted), then $RUNS x ${DURATION}s"
    NON2XX=0
    measure "$WARMUP_SECONDS" "$WORK/wrk-warmup.txt"
    if [ "$NON2XX" -ne 0 ]; then
        echo "WARNING: wrk saw $NON2XX non-2xx responses in the warm-up (see $WORK/wrk-warmup.txt)" >&2
        FAILED=1
    fi
    for ((r = 1; r <= RUNS; r++)); do
        measure "$DURATION" "$WORK/wrk-run$r.txt" "$r"
        if [ "$NON2XX" -ne 0 ]; then
            echo "WARNING: wrk saw $NON2XX non-2xx responses in run $r (see $WORK/wrk-run$r.txt)" >&2
            FAILED=1
        fi
    done
    stop_server
}

if [ "$WITH_POSTGRES" -eq 1 ]; then
    svc_ensure_postgres
    # Stop the private PostgreSQL on any exit, then the common cleanup.
    trap 'rc=$?; svc_stop_all "$WORK/pg-state" >/dev/null 2>&1; (exit $rc); on_exit' EXIT
    run_pass memory
    mkdir -p "$WORK/pg-state"
    SVC_PG_SERVER_LIKE=1 svc_start_postgres "$WORK/pg-state"
    PG_POSTMASTER="$(head -n 1 "$SVC_PG_DATA/postmaster.pid")"
    SERVER_ENV+=("DATABASE_URL=postgres://postgres@127.0.0.1:${SVC_PG_PORT}/postgres")
    EVENTS="$WORK/events-postgres.txt"
    : >"$EVENTS"
    run_pass postgres
    svc_stop_all "$WORK/pg-state"
else
    run_pass memory
fi

print_summary
if [ "$FAILED" -ne 0 ]; then
    echo "bench-executions: some start requests were not answered 2xx; the numbers above are not valid" >&2
    exit 1
fi
