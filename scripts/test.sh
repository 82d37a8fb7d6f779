#!/usr/bin/env bash
# scripts/test.sh — run the whole test suite (what CI runs via .ci/run).
#
#   bash scripts/test.sh [extra cargo test args...]
#
# Works on a fresh Debian machine with only the Rust toolchain: installs
# PostgreSQL, Redis and python3 via apt-get if missing, starts PRIVATE
# instances on free 127.0.0.1 ports (data under .ci/state/, wiped at start),
# then runs, failing fast:
#   1. cargo fmt --all -- --check
#   2. cargo clippy --workspace --all-targets -- -D warnings
#   3. cargo test --workspace --no-fail-fast [args]
# and stops both servers on exit, whatever happened.
#
# Environment exported to the tests:
#   KAILASH_TEST_DATABASE_URL  postgres://postgres@127.0.0.1:PORT/postgres
#   KAILASH_TEST_REDIS_URL     redis://127.0.0.1:PORT/
#   KAILASH_TEST_PG_BIN        dir with initdb/pg_ctl/postgres/pg_isready
#   KAILASH_TEST_PG_DATA       PostgreSQL data dir
#   KAILASH_TEST_PG_PORT       PostgreSQL port
#   KAILASH_TEST_PG_CTL        wrapper: "$KAILASH_TEST_PG_CTL" stop -m immediate
#                              / "$KAILASH_TEST_PG_CTL" start -w (runs pg_ctl as
#                              the postgres OS user with -D and -l already set;
#                              settings live in the data dir so it comes back
#                              on the same port)
#   KAILASH_TEST_PG_OS_USER    OS user the server runs as (pg refuses root)
#   KAILASH_TEST_REDIS_PORT    Redis port
#   KAILASH_TEST_REDIS_SERVER  redis-server binary
#   KAILASH_TEST_REDIS_CONF    config file: `redis-server "$KAILASH_TEST_REDIS_CONF"`
#                              restarts it (daemonized) on the same port
#   KAILASH_TEST_REDIS_PIDFILE pidfile of the running redis-server
#   KAILASH_TEST_PYTHON        python3 of a venv with pandas (.ci/python-venv,
#                              kept between runs): the code nodes' interpreter
#   KAILASH_TEST_NGINX, KAILASH_TEST_KUBECTL, KAILASH_TEST_KUBE_VALIDATE
#                              the deployment validators (scripts/lib/deploy-tools.sh)
#
# Knobs (environment):
#   KAILASH_SKIP_LINT=1        skip fmt and clippy (quick local runs)
#   KAILASH_TEST_TIMEOUT       limit for `cargo test` when stdin is not a
#                              terminal, e.g. in CI (default 70m)
#   CI=true                    also prints tool versions and service log tails
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"
# shellcheck source=scripts/lib/deploy-tools.sh
source "$ROOT/scripts/lib/deploy-tools.sh"

STATE="$ROOT/.ci/state"
CI="${CI:-false}"
START_TS=$(date +%s)

banner() {
    local elapsed=$(($(date +%s) - START_TS))
    printf '\n==> [%dm%02ds] %s\n' $((elapsed / 60)) $((elapsed % 60)) "$*"
}
fail() {
    printf '\nFAILED: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------- toolchain
banner "checking toolchain and dependencies"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || fail "cargo not found (install the Rust toolchain with rustup)"

missing_components=()
cargo fmt --version >/dev/null 2>&1 || missing_components+=(rustfmt)
cargo clippy --version >/dev/null 2>&1 || missing_components+=(clippy)
if [ "${#missing_components[@]}" -gt 0 ]; then
    command -v rustup >/dev/null 2>&1 ||
        fail "missing ${missing_components[*]} and rustup is not available to add them"
    echo "rustup component add ${missing_components[*]}"
    rustup component add "${missing_components[@]}" ||
        fail "could not add rustup components: ${missing_components[*]}"
    cargo fmt --version >/dev/null 2>&1 || fail "cargo fmt still unavailable"
    cargo clippy --version >/dev/null 2>&1 || fail "cargo clippy still unavailable"
fi

svc_ensure_python3
svc_ensure_postgres
svc_ensure_redis
# The code nodes' tests run pandas workflows: a venv outside .ci/state (which is wiped
# each run) so pandas is installed once, then reused.
PY_VENV="$ROOT/.ci/python-venv"
if ! "$PY_VENV/bin/python3" -c 'import pandas' >/dev/null 2>&1; then
    banner "creating $PY_VENV with pandas"
    "$SVC_PYTHON" -m venv "$PY_VENV" || {
        svc_apt_install python3-venv
        rm -rf "$PY_VENV"
        "$SVC_PYTHON" -m venv "$PY_VENV"
    } || fail "cannot create a Python venv at $PY_VENV"
    "$PY_VENV/bin/python3" -m pip install --quiet --disable-pip-version-check pandas ||
        fail "pip install pandas failed"
fi
export KAILASH_TEST_PYTHON="$PY_VENV/bin/python3"
deploy_tools_ensure "$PY_VENV"
command -v timeout >/dev/null 2>&1 || fail "coreutils 'timeout' not found"

if [ "$CI" = true ]; then
    cargo --version
    rustc --version
    cargo fmt --version
    cargo clippy --version
    "$SVC_PYTHON" --version
    "$(_svc_find_pg_bin)/postgres" --version
    redis-server --version
fi

# ---------------------------------------------------------------- services
banner "starting private PostgreSQL and Redis (state: ${STATE#"$ROOT"/})"

TEST_RC=0
STAGE=services
TEST_LOG="$STATE/cargo-test.log"
rm -f "$TEST_LOG"

# Sums cargo's "test result: ok. N passed; N failed; N ignored; ..." lines.
summarize_tests() {
    awk '/^test result:/ {
            for (i = 1; i < NF; i++) {
                if ($(i + 1) ~ /^passed/) passed += $i
                if ($(i + 1) ~ /^failed/) failed += $i
                if ($(i + 1) ~ /^ignored/) skipped += $i
            }
        }
        END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped }' "$1"
}

on_exit() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    # Service logs only help when the services or the tests failed.
    if [ "$rc" -ne 0 ] && [ "$CI" = true ] && [ "$STAGE" != lint ]; then
        svc_dump_logs
    fi
    banner "stopping services"
    svc_stop_all "$STATE"
    if [ "$rc" -eq 0 ]; then
        banner "all checks passed"
    else
        printf '\nscripts/test.sh: exit code %d\n' "$rc" >&2
    fi
    # Last line: the totals over every test binary, in the plain form CI reads.
    [ -f "$TEST_LOG" ] && summarize_tests "$TEST_LOG"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

svc_stop_stale "$STATE"
rm -rf "$STATE"
mkdir -p "$STATE"

svc_start_postgres "$STATE"
svc_start_redis "$STATE"

export KAILASH_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:${SVC_PG_PORT}/postgres"
export KAILASH_TEST_REDIS_URL="redis://127.0.0.1:${SVC_REDIS_PORT}/"
export KAILASH_TEST_PG_BIN="$SVC_PG_BIN"
export KAILASH_TEST_PG_DATA="$SVC_PG_DATA"
export KAILASH_TEST_PG_PORT="$SVC_PG_PORT"
export KAILASH_TEST_PG_CTL="$SVC_PG_CTL"
export KAILASH_TEST_PG_OS_USER="$SVC_PG_OS_USER"
export KAILASH_TEST_REDIS_PORT="$SVC_REDIS_PORT"
export KAILASH_TEST_REDIS_SERVER="$SVC_REDIS_BIN"
export KAILASH_TEST_REDIS_CONF="$SVC_REDIS_CONF"
export KAILASH_TEST_REDIS_PIDFILE="$SVC_REDIS_PIDFILE"
echo "KAILASH_TEST_DATABASE_URL=$KAILASH_TEST_DATABASE_URL"
echo "KAILASH_TEST_REDIS_URL=$KAILASH_TEST_REDIS_URL"

# ---------------------------------------------------------------- checks
if [ "${KAILASH_SKIP_LINT:-0}" = 1 ]; then
    banner "skipping cargo fmt / clippy (KAILASH_SKIP_LINT=1)"
else
    STAGE=lint
    banner "cargo fmt --all -- --check"
    cargo fmt --all -- --check ||
        fail "formatting differs from rustfmt: run 'cargo fmt --all' and commit the result"

    banner "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings ||
        fail "clippy reported warnings or errors (see above)"
fi

STAGE="test"
banner "cargo test --workspace --no-fail-fast $*"
# --no-fail-fast: run every test binary and report all failures at once.
# Not interactive (CI): a time limit that kills the whole process group (test
# binaries included) so a hung test fails the run with a clear message while
# the EXIT trap still stops the services. On a terminal: no limit, so that
# Ctrl-C reaches cargo (timeout moves itself out of the foreground group).
if [ -t 0 ]; then
    cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$TEST_LOG" || TEST_RC=$?
else
    timeout -k 30s "${KAILASH_TEST_TIMEOUT:-70m}" cargo test --workspace --no-fail-fast "$@" 2>&1 |
        tee "$TEST_LOG" || TEST_RC=$?
fi
if [ "$TEST_RC" -eq 124 ] || [ "$TEST_RC" -eq 137 ]; then
    fail "cargo test did not finish within ${KAILASH_TEST_TIMEOUT:-70m} (killed)"
elif [ "$TEST_RC" -ne 0 ]; then
    fail "cargo test failed (exit code $TEST_RC)"
fi
