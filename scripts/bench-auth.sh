#!/usr/bin/env bash
# scripts/bench-auth.sh — authorization benchmark for kailash-gateway (prints
# numbers; not a test, nothing fails on slow results).
#
#   bash scripts/bench-auth.sh [--duration S] [--runs R] [--connections "32"]
#                              [--no-build] [--bin PATH]
#
# (a) authz.decision: `cargo bench --bench authz` — in-process HS256 token
#     verification plus a hybrid decision (roles and 100 Cedar policies);
#     decisions/s and p50/p99 per decision.
# (b) sessions.get: wrk (-t2 --latency) GETs /api/sessions/{id} with a bearer
#     token (default role, so every request is authenticated, checked for
#     revocation and authorized) at each concurrency (default 32), once with
#     access_strategy=rbac and once with hybrid and the example base policy;
#     a 2 s warm-up, then R runs of S seconds; the median req/s, p50, p99.
#
# Exit code: 0 if all measurements ran and every request was answered 2xx.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH_NAME=bench-auth
BENCH_SCRIPT="${BASH_SOURCE[0]}"
# shellcheck source=scripts/bench/common.sh
source "$ROOT/scripts/bench/common.sh"

DURATION=10
RUNS=3
CONNECTIONS="32"
BUILD=1
BIN=""

while [ $# -gt 0 ]; do
    common_option "$@" || die "unknown argument '$1' (see --help)"
    shift "$SHIFT"
done
is_uint "$DURATION" || die "--duration must be a positive integer (seconds)"
is_uint "$RUNS" || die "--runs must be a positive integer"
for c in $CONNECTIONS; do is_uint "$c" || die "--connections must list positive integers"; done

bench_prepare
SUMMARY=()
WRK_LUA="$ROOT/scripts/bench/get_session.lua"

step "authz.decision: cargo bench --bench authz"
line="$(cargo bench -q --bench authz 2>/dev/null | grep '^authz.decision')" || die "the authz bench failed"
echo "$line"
SUMMARY+=("$line")

for strategy in rbac hybrid; do
    SERVER_ENV=(KAILASH_ACCESS_STRATEGY="$strategy" KAILASH_POLICIES_PATH="$ROOT/policies/examples/00-base.cedar")
    for conns in $CONNECTIONS; do
        step "sessions.get strategy=$strategy c=$conns: fresh server, 2 s warm-up, then $RUNS x ${DURATION}s"
        start_server
        TOKEN="$(mint_token bench-user)"
        sid="$("$SVC_PYTHON" - "$SERVER_PORT" "$TOKEN" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:%s/api/sessions" % sys.argv[1], data=b"{}",
                             headers={"Authorization": "Bearer " + sys.argv[2],
                                      "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["session_id"])
PY
        )" || die "could not create the session"
        WRK_PATH="/api/sessions/$sid"
        run_wrk "$conns" 2 "$WORK/wrk-$strategy-c$conns-warmup.txt"
        files=()
        for ((r = 1; r <= RUNS; r++)); do
            f="$WORK/wrk-$strategy-c$conns-run$r.txt"
            run_wrk "$conns" "$DURATION" "$f"
            files+=("$f")
        done
        out="$("$SVC_PYTHON" "$ROOT/scripts/bench/wrk_stats.py" "sessions.get $strategy c=$conns" "${files[@]}")" ||
            die "could not parse wrk output (files in $WORK)"
        line="$(sed -n 's/^SUMMARY //p' <<<"$out")"
        echo "$line"
        SUMMARY+=("$line")
        if grep -q '^WARNING ' <<<"$out"; then
            warn="$(sed -n 's/^WARNING //p' <<<"$out")"
            SUMMARY+=("  WARNING: $warn")
            grep -q ' [1-9][0-9]* non-2xx' <<<"$warn" && FAILED=1
        fi
        stop_server
    done
done

printf '\n==================== authorization benchmark summary ====================\n'
printf '%s\n' "${SUMMARY[@]}"
printf 'wrk -t2 --latency, %ss runs after a 2s warm-up; client and server share %s cores.\n' "$DURATION" "$(nproc)"
printf '=========================================================================\n'
if [ "$FAILED" -ne 0 ]; then
    echo "bench-auth: some requests were not answered 2xx; the numbers above are not valid" >&2
    exit 1
fi
