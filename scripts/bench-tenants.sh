#!/usr/bin/env bash
# scripts/bench-tenants.sh — noisy-neighbour benchmark for kailash-gateway (prints numbers;
# not a test, nothing fails on slow results).
#
#   bash scripts/bench-tenants.sh [--duration S] [--runs R] [--limit N] [--quiet-rate Q]
#                                 [--no-build] [--bin PATH]
#
# One server with a per-tenant request limit of N/s (default 200;
# KAILASH_TENANT_REQUESTS_PER_SECOND, or the tenants' own limits where tenants exist).
# The quiet tenant reads its session (GET /api/sessions/{id}) at Q requests/s (default
# 150, under its limit) on 4 connections, paced, while its latency is measured:
#   baseline  the quiet tenant alone;
#   flood     the same, while the noisy tenant sends 10 x N requests/s on 16 connections
#             (paced; all but N/s of them answered 429).
# The two alternate R times (default 3) in one server run; prints each run's p50/p99, the
# medians, and the flood's p99 as a share of the baseline's (target: at most +10 %).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH_NAME=bench-tenants
BENCH_SCRIPT="${BASH_SOURCE[0]}"
# shellcheck source=scripts/bench/common.sh
source "$ROOT/scripts/bench/common.sh"

DURATION=10
RUNS=3
CONNECTIONS=4
LIMIT=200
QUIET_RATE=150
BUILD=1
BIN=""

while [ $# -gt 0 ]; do
    if ! common_option "$@"; then
        case "$1" in
        --limit) need_value "$@"; LIMIT="$2"; SHIFT=2 ;;
        --quiet-rate) need_value "$@"; QUIET_RATE="$2"; SHIFT=2 ;;
        *) die "unknown argument '$1' (see --help)" ;;
        esac
    fi
    shift "$SHIFT"
done
for n in "$DURATION" "$RUNS" "$LIMIT" "$QUIET_RATE"; do
    is_uint "$n" || die "--duration, --runs, --limit and --quiet-rate take positive integers"
done

bench_prepare
WRK_LUA="$ROOT/scripts/bench/get_session.lua"
FLOOD_RATE=$((LIMIT * 10))
FLOOD_CONNECTIONS=16

SERVER_ENV=(KAILASH_TENANT_REQUESTS_PER_SECOND="$LIMIT")
step "server: tenant limit $LIMIT requests/s"
start_server
ADMIN="$(KAILASH_API_GATEWAY_SECRET="$SECRET" KAILASH_DATA_DIR="$WORK" RUST_LOG=warn \
    "$BIN" token --sub admin --role admin </dev/null 2>/dev/null)"

# Each tenant: registered where the gateway keeps tenants (a gateway without
# /api/admin/tenants takes any tenant a token names), a user token, and a session.
tenant_session() { # TENANT -> prints "<token> <session id>"
    local tenant="$1" token
    token="$(KAILASH_API_GATEWAY_SECRET="$SECRET" KAILASH_DATA_DIR="$WORK" RUST_LOG=warn \
        "$BIN" token --sub "user-$tenant" --tenant "$tenant" </dev/null 2>/dev/null)"
    "$SVC_PYTHON" - "$SERVER_PORT" "$ADMIN" "$tenant" "$token" "$LIMIT" <<'PY'
import json, sys, urllib.error, urllib.request
port, admin, tenant, token, limit = sys.argv[1:]
base = "http://127.0.0.1:%s" % port
def call(path, body, bearer):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer " + bearer,
                                          "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
try:
    call("/api/admin/tenants", {"tenant_id": tenant, "name": tenant,
                                "limits": {"requests_per_second": int(limit)}}, admin)
except urllib.error.HTTPError as error:
    if error.code not in (404, 409):
        sys.exit("creating tenant %s: HTTP %d %s" % (tenant, error.code, error.read()))
print(token, call("/api/sessions", {}, token)["session_id"])
PY
}
read -r QUIET_TOKEN QUIET_SID <<<"$(tenant_session quiet)" || die "could not set up the quiet tenant"
read -r NOISY_TOKEN NOISY_SID <<<"$(tenant_session noisy)" || die "could not set up the noisy tenant"

TOKEN="$QUIET_TOKEN"
WRK_PATH="/api/sessions/$QUIET_SID"
WRK_ENV=(KAILASH_BENCH_RATE="$QUIET_RATE" KAILASH_BENCH_CONNECTIONS="$CONNECTIONS")
quiet_run() { # OUTFILE [SECONDS]
    run_wrk "$CONNECTIONS" "${2:-$DURATION}" "$1"
}

flood_start() { # OUTFILE; sets FLOOD_PID
    env KAILASH_BENCH_TOKEN="$NOISY_TOKEN" KAILASH_BENCH_LUA_DIR="$ROOT/scripts/bench" \
        KAILASH_BENCH_RATE="$FLOOD_RATE" KAILASH_BENCH_CONNECTIONS="$FLOOD_CONNECTIONS" \
        wrk -t1 -c"$FLOOD_CONNECTIONS" -d"$((DURATION + 2))s" --timeout 10s --latency \
        -s "$WRK_LUA" "http://127.0.0.1:$SERVER_PORT/api/sessions/$NOISY_SID" >"$1" 2>&1 &
    FLOOD_PID=$!
    sleep 1 # the flood is under way before the quiet tenant is measured
}

step "warm-up: 2 s of the quiet tenant"
quiet_run "$WORK/warmup.txt" 2

BASE_FILES=()
FLOOD_FILES=()
for ((r = 1; r <= RUNS; r++)); do
    step "run $r/$RUNS: baseline (quiet tenant alone at $QUIET_RATE/s)"
    quiet_run "$WORK/baseline-$r.txt"
    BASE_FILES+=("$WORK/baseline-$r.txt")
    step "run $r/$RUNS: flood (noisy tenant at $FLOOD_RATE/s, limit $LIMIT/s)"
    flood_start "$WORK/flood-noisy-$r.txt"
    quiet_run "$WORK/flood-$r.txt"
    wait "$FLOOD_PID" || die "the flooding wrk failed (see $WORK/flood-noisy-$r.txt)"
    FLOOD_FILES+=("$WORK/flood-$r.txt")
    grep -E "Requests/sec|Non-2xx" "$WORK/flood-noisy-$r.txt" | sed 's/^/  noisy tenant: /'
done
stop_server

summary() { # LABEL FILES...
    "$SVC_PYTHON" "$ROOT/scripts/bench/wrk_stats.py" "$@" | sed -n 's/^SUMMARY //p'
}
BASE="$(summary "tenants.quiet baseline" "${BASE_FILES[@]}")" || die "could not parse $WORK"
FLOOD="$(summary "tenants.quiet under flood" "${FLOOD_FILES[@]}")" || die "could not parse $WORK"
p99() { sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' <<<"$1"; }

printf '\n==================== noisy-neighbour benchmark summary ====================\n'
printf '%s\n%s\n' "$BASE" "$FLOOD"
"$SVC_PYTHON" - "$(p99 "$BASE")" "$(p99 "$FLOOD")" <<'PY'
import sys
base, flood = map(float, sys.argv[1:])
print("quiet tenant p99 under flood: %.2f ms vs %.2f ms alone: %+.1f %% (target <= +10 %%)"
      % (flood, base, (flood / base - 1) * 100))
PY
printf 'tenant limit %s/s, flood %s/s on %s connections, quiet %s/s on %s connections, %ss runs; wrk and the server share %s cores.\n' \
    "$LIMIT" "$FLOOD_RATE" "$FLOOD_CONNECTIONS" "$QUIET_RATE" "$CONNECTIONS" "$DURATION" "$(nproc)"
printf '===========================================================================\n'
