#!/usr/bin/env bash
# deploy/local-cluster.sh — a Kailash Gateway cluster on this machine without Docker: a
# private PostgreSQL and Redis (scripts/lib/services.sh), three gateway nodes on free
# loopback ports, and nginx balancing over them (config from local-cluster.nginx.conf.template).
# Everything runs unprivileged from one directory: data, logs, pid files, nginx temp files.
#
#   bash deploy/local-cluster.sh up     [--dir DIR] [--nodes N] [--bin PATH | --no-build]
#   bash deploy/local-cluster.sh down   [--dir DIR]
#   bash deploy/local-cluster.sh status [--dir DIR]
#   bash deploy/local-cluster.sh restart [--dir DIR] [--node N]
#   eval "$(bash deploy/local-cluster.sh env [--dir DIR])"
#
# up      builds the release binary (unless --bin/--no-build), starts the services, the
#         nodes (node-1..node-N) one by one and nginx, waits until each answers /ready, and
#         prints the load balancer's URL, the nodes' URLs, the admin password and the secret.
#         A failure stops whatever it started and prints the logs' tails.
# down    stops nginx, the nodes (SIGTERM, then SIGKILL after 40 s), Redis and PostgreSQL;
#         the directory (logs) stays until the next `up`.
# restart a rolling restart: each node in turn (only node-N with --node) is sent SIGTERM,
#         waited for while it drains (SIGKILL after 90 s), and started again with the same
#         id and port, and waited for until /ready; nginx keeps balancing over the others.
# status  each part's state, /health's broker status per node, and the live nodes as
#         GET /api/admin/nodes reports them; exit code 3 when something is down.
# env     export lines: KAILASH_LB_URL, KAILASH_NODE_URLS, DATABASE_URL, REDIS_URL,
#         KAILASH_REDIS_PREFIX, KAILASH_API_GATEWAY_SECRET, KAILASH_ADMIN_PASSWORD (with
#         them, `kailash-gateway token --sub NAME` mints tokens every node accepts).
#
# DIR defaults to .ci/cluster in the repository. KAILASH_API_GATEWAY_SECRET,
# KAILASH_ADMIN_PASSWORD and KAILASH_REDIS_PREFIX are used when set (else generated, or
# `kgw-local`); other KAILASH_* variables and RUST_LOG pass through to every node.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATE="$ROOT/deploy/local-cluster.nginx.conf.template"
# shellcheck source=scripts/lib/services.sh
source "$ROOT/scripts/lib/services.sh"
# shellcheck source=scripts/lib/deploy-tools.sh
source "$ROOT/scripts/lib/deploy-tools.sh"

DIR="$ROOT/.ci/cluster"
NODES=3
BIN=""
BUILD=1
READY_TIMEOUT=60
ONLY_NODE=""

log() { printf '[local-cluster] %s\n' "$*" >&2; }
die() {
    printf '[local-cluster] ERROR: %s\n' "$*" >&2
    exit 1
}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# --------------------------------------------------------------------------
# State: DIR/cluster.env, written by `up` as it goes, read by the other commands
# --------------------------------------------------------------------------
state_file() { printf '%s/cluster.env' "$DIR"; }

state_set() { # NAME VALUE
    printf '%s=%q\n' "$1" "$2" >>"$(state_file)"
}

load_state() {
    [ -f "$(state_file)" ] || die "no cluster in $DIR (start one with: $0 up --dir $DIR)"
    # shellcheck disable=SC1090  # written by state_set
    source "$(state_file)"
}

# HTTP status of GET URL (000 when nothing answers).
http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

# A pid that still runs the given program (guards against pid reuse after a crash).
pid_runs() { # PID NAME
    [ -n "$2" ] && [[ "$1" =~ ^[0-9]+$ ]] && kill -0 "$1" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

wait_ready() { # URL PID NAME LOG
    local i
    for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
        [ "$(http_code "$1/ready")" = 200 ] && return 0
        if ! pid_runs "$2" "$3"; then
            tail -n 30 "$4" >&2 || true
            die "$3 (pid $2) exited during start-up (log: $4)"
        fi
        sleep 0.1
    done
    tail -n 30 "$4" >&2 || true
    die "$1/ready did not answer 200 within ${READY_TIMEOUT}s (log: $4)"
}

# --------------------------------------------------------------------------
# up
# --------------------------------------------------------------------------
# (Port variables are not called `port`: svc_pick_port sets its target with printf -v
# and has a local of that name.)
start_node() { # N [PORT]: a new node on a free port, or node-N again on its old PORT
    local n="$1" node_port="${2:-}" id logfile pid
    [ -n "$node_port" ] || svc_pick_port node_port
    id="node-$n"
    logfile="$DIR/logs/$id.log"
    mkdir -p "$DIR/nodes/$id"
    env DATABASE_URL="$DATABASE_URL" \
        REDIS_URL="$REDIS_URL" \
        KAILASH_REDIS_PREFIX="$REDIS_PREFIX" \
        KAILASH_NODE_ID="$id" \
        KAILASH_BIND="127.0.0.1:$node_port" \
        KAILASH_API_GATEWAY_SECRET="$SECRET" \
        KAILASH_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
        KAILASH_DATA_DIR="$DIR/nodes/$id" \
        "$BIN" serve >>"$logfile" 2>&1 </dev/null & # appended: a restart keeps the log
    pid=$!
    state_set "NODE_PID_$n" "$pid"
    state_set "NODE_URL_$n" "http://127.0.0.1:$node_port"
    wait_ready "http://127.0.0.1:$node_port" "$pid" "$BIN" "$logfile"
    log "$id ready on http://127.0.0.1:$node_port (pid $pid, log $logfile)"
    UPSTREAM_SERVERS+="        server 127.0.0.1:$node_port max_fails=2 fail_timeout=5s;"$'\n'
}

start_nginx() {
    local lb_port nofile conf="$DIR/nginx/nginx.conf" user_directive=""
    svc_pick_port lb_port
    nofile="$(ulimit -n)"
    # Running as root, nginx's workers switch to the `user` directive's account (nobody by
    # default), which may not reach the cluster directory (e.g. under /root): keep them as
    # the invoking user. Unprivileged, nginx ignores `user` with a warning, so leave it out.
    if [ "$(id -u)" -eq 0 ]; then
        user_directive="user $(id -un) $(id -gn);"
    fi
    mkdir -p "$DIR/nginx"
    sed -e "s|@DIR@|$DIR|g" \
        -e "s|@LB_PORT@|$lb_port|g" \
        -e "s|@NOFILE@|$nofile|g" \
        -e "s|@WORKER_CONNECTIONS@|$((nofile / 2))|g" \
        -e "s|@USER_DIRECTIVE@|$user_directive|g" \
        -e "/@UPSTREAM_SERVERS@/{
r /dev/stdin
d
}" "$TEMPLATE" >"$conf" <<<"${UPSTREAM_SERVERS%$'\n'}"
    # -e: the packaged default error log (/var/log/nginx) is used before the config is read.
    "$DEPLOY_NGINX" -q -t -p "$DIR/nginx" -c "$conf" -e "$DIR/logs/nginx-error.log" ||
        die "nginx rejected $conf"
    "$DEPLOY_NGINX" -p "$DIR/nginx" -c "$conf" -e "$DIR/logs/nginx-error.log" ||
        die "nginx did not start (log: $DIR/logs/nginx-error.log)"
    state_set LB_URL "http://127.0.0.1:$lb_port"
    # The daemonized master writes its pid file a moment after the command returns.
    local i
    for ((i = 0; i < 50; i++)); do
        [ -s "$DIR/nginx/nginx.pid" ] && break
        sleep 0.1
    done
    wait_ready "http://127.0.0.1:$lb_port" "$(cat "$DIR/nginx/nginx.pid" 2>/dev/null)" nginx "$DIR/logs/nginx-error.log"
    log "nginx ready on http://127.0.0.1:$lb_port"
}

up_failed() {
    local rc=$?
    trap - EXIT
    [ "$rc" -ne 0 ] || return 0
    set +e
    log "start failed; stopping what was started"
    svc_dump_logs
    stop_cluster
    exit "$rc"
}

cmd_up() {
    if [ -f "$(state_file)" ]; then
        (load_state && [ -n "$(running_parts)" ]) &&
            die "a cluster is already running in $DIR ($0 down --dir $DIR first)"
        stop_cluster 2>/dev/null
    fi
    svc_stop_stale "$DIR/services"
    rm -rf "$DIR"
    mkdir -p "$DIR/logs" "$DIR/nodes"
    chmod 700 "$DIR" # the state file holds the secret and the admin password
    : >"$(state_file)"

    # Every WebSocket/SSE client holds a descriptor in a node (and two in nginx).
    ulimit -n "$(ulimit -Hn)"
    svc_ensure_python3
    svc_ensure_postgres
    svc_ensure_redis
    deploy_tools_ensure_nginx
    [ -n "$BIN" ] || BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/kailash-gateway"
    if [ "$BUILD" -eq 1 ]; then
        log "cargo build --release --bin kailash-gateway"
        (cd "$ROOT" && cargo build --release --quiet --bin kailash-gateway) || die "release build failed"
    fi
    [ -x "$BIN" ] || die "gateway binary not found at $BIN (build it, or drop --no-build)"
    BIN="$(readlink -f "$BIN")"

    trap up_failed EXIT
    svc_start_postgres "$DIR/services"
    svc_start_redis "$DIR/services"
    DATABASE_URL="postgres://postgres@127.0.0.1:$SVC_PG_PORT/postgres"
    REDIS_URL="redis://127.0.0.1:$SVC_REDIS_PORT/"
    SECRET="${KAILASH_API_GATEWAY_SECRET:-$("$SVC_PYTHON" -c 'import secrets; print(secrets.token_hex(32))')}"
    ADMIN_PASSWORD="${KAILASH_ADMIN_PASSWORD:-$("$SVC_PYTHON" -c 'import secrets; print(secrets.token_urlsafe(18))')}"
    REDIS_PREFIX="${KAILASH_REDIS_PREFIX:-kgw-local}"
    state_set BIN "$BIN"
    state_set NODES "$NODES"
    state_set DATABASE_URL "$DATABASE_URL"
    state_set REDIS_URL "$REDIS_URL"
    state_set PG_BIN "$SVC_PG_BIN"
    state_set REDIS_PREFIX "$REDIS_PREFIX"
    state_set SECRET "$SECRET"
    state_set ADMIN_PASSWORD "$ADMIN_PASSWORD"

    # One at a time: the first node migrates the fresh database.
    UPSTREAM_SERVERS=""
    local n
    for ((n = 1; n <= NODES; n++)); do
        start_node "$n"
    done
    start_nginx
    trap - EXIT

    load_state
    printf '\nKailash Gateway cluster up (%s):\n' "$DIR"
    printf '  load balancer   %s   (WebSocket %s/ws, SSE %s/events)\n' "$LB_URL" "${LB_URL/http/ws}" "$LB_URL"
    for ((n = 1; n <= NODES; n++)); do
        local url="NODE_URL_$n" pid="NODE_PID_$n"
        printf '  node-%s          %s   (pid %s, log %s)\n' "$n" "${!url}" "${!pid}" "$DIR/logs/node-$n.log"
    done
    printf '  PostgreSQL      %s\n  Redis           %s (prefix %s)\n' "$DATABASE_URL" "$REDIS_URL" "$REDIS_PREFIX"
    printf '  admin login     admin / %s\n  token secret    %s\n\n' "$ADMIN_PASSWORD" "$SECRET"
    printf 'Try:    curl -s -XPOST %s/api/auth/login -d %s\n' "$LB_URL" \
        "'{\"username\":\"admin\",\"password\":\"$ADMIN_PASSWORD\"}'"
    # shellcheck disable=SC2016  # the command to type, not to expand here
    printf 'Env:    eval "$(bash %s env --dir %s)"\n' "$0" "$DIR"
    printf 'Status: bash %s status --dir %s\n' "$0" "$DIR"
    printf 'Stop:   bash %s down --dir %s\n' "$0" "$DIR"
}

# --------------------------------------------------------------------------
# down
# --------------------------------------------------------------------------
# The parts of the loaded cluster still running, one word each.
running_parts() {
    local n pid
    pid_runs "$(cat "$DIR/nginx/nginx.pid" 2>/dev/null)" nginx && printf 'nginx '
    for ((n = 1; n <= ${NODES:-0}; n++)); do
        pid="NODE_PID_$n"
        pid_runs "${!pid:-}" "$BIN" && printf 'node-%s ' "$n"
    done
    return 0
}

# Waits for a SIGTERMed node's drain (the longest the defaults allow is well under 90 s),
# then kills it.
await_node_drain() { # PID
    svc_wait_exit "$1" 90 && return 0
    log "node pid $1 still draining after 90 s; killing it"
    kill -KILL "$1" 2>/dev/null || true
}

stop_cluster() {
    local n pid pids=()
    [ -f "$(state_file)" ] && load_state
    pid="$(cat "$DIR/nginx/nginx.pid" 2>/dev/null || true)"
    if pid_runs "$pid" nginx; then
        kill -QUIT "$pid" 2>/dev/null || true # graceful: workers finish their requests
        svc_wait_exit "$pid" 5 || kill -KILL "$pid" 2>/dev/null || true
        log "nginx stopped"
    fi
    for ((n = 1; n <= ${NODES:-0}; n++)); do
        pid="NODE_PID_$n"
        pid="${!pid:-}"
        if pid_runs "$pid" "$BIN"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    # The nodes drain together: SIGTERM to all, then wait.
    for pid in ${pids[@]+"${pids[@]}"}; do
        await_node_drain "$pid"
    done
    [ "${#pids[@]}" -eq 0 ] || log "${#pids[@]} gateway node(s) stopped"
    svc_stop_stale "$DIR/services" 2>/dev/null
    log "PostgreSQL and Redis stopped"
}

cmd_down() {
    [ -f "$(state_file)" ] || die "no cluster in $DIR"
    stop_cluster
    log "logs kept in $DIR/logs"
}

# --------------------------------------------------------------------------
# restart
# --------------------------------------------------------------------------
stop_node() { # PID
    kill -TERM "$1" 2>/dev/null || return 0
    await_node_drain "$1"
}

cmd_restart() { # [N]
    load_state
    local n first=1 last="$NODES" pid url
    if [ -n "$ONLY_NODE" ]; then
        [ "$ONLY_NODE" -le "$NODES" ] || die "no node-$ONLY_NODE in a cluster of $NODES"
        first="$ONLY_NODE" last="$ONLY_NODE"
    fi
    UPSTREAM_SERVERS=""
    for ((n = first; n <= last; n++)); do
        pid="NODE_PID_$n" url="NODE_URL_$n"
        log "node-$n: SIGTERM, draining"
        if pid_runs "${!pid:-}" "$BIN"; then stop_node "${!pid}"; fi
        start_node "$n" "${!url##*:}"
    done
}

# --------------------------------------------------------------------------
# status, env
# --------------------------------------------------------------------------
cmd_status() {
    load_state
    local n url pid code broker down=0 token
    code="$(http_code "$LB_URL/ready")"
    printf '%-8s %-28s ready %s\n' nginx "$LB_URL" "$code"
    [ "$code" = 200 ] || down=1
    for ((n = 1; n <= NODES; n++)); do
        url="NODE_URL_$n"
        pid="NODE_PID_$n"
        code="$(http_code "${!url}/ready")"
        broker="$(curl -s --max-time 2 "${!url}/health" 2>/dev/null |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["components"]["broker"]["status"])' 2>/dev/null ||
            echo '?')"
        pid_runs "${!pid}" "$BIN" || code="not running"
        printf '%-8s %-28s ready %s, broker %s\n' "node-$n" "${!url}" "$code" "$broker"
        [ "$code" = 200 ] || down=1
    done
    if [ "$(redis-cli -u "$REDIS_URL" ping 2>/dev/null)" = PONG ]; then
        printf '%-8s %-28s up\n' redis "$REDIS_URL"
    else
        printf '%-8s %-28s DOWN\n' redis "$REDIS_URL"
        down=1
    fi
    if "$PG_BIN/pg_isready" -q -d "$DATABASE_URL" 2>/dev/null; then
        printf '%-8s %-28s up\n' postgres "${DATABASE_URL#postgres://postgres@}"
    else
        printf '%-8s %-28s DOWN\n' postgres "${DATABASE_URL#postgres://postgres@}"
        down=1
    fi
    token="$(curl -s --max-time 5 -XPOST "$LB_URL/api/auth/login" \
        -d "{\"username\":\"admin\",\"password\":\"$ADMIN_PASSWORD\"}" 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' 2>/dev/null || true)"
    if [ -n "$token" ]; then
        printf 'live nodes (GET /api/admin/nodes): %s\n' "$(curl -s --max-time 5 \
            -H "Authorization: Bearer $token" "$LB_URL/api/admin/nodes" |
            python3 -c 'import json,sys; print(" ".join(n["node_id"] for n in json.load(sys.stdin)["nodes"]))' 2>/dev/null ||
            echo '?')"
    fi
    [ "$down" -eq 0 ] || exit 3
}

cmd_env() {
    load_state
    local n url urls=""
    for ((n = 1; n <= NODES; n++)); do
        url="NODE_URL_$n"
        urls+="${urls:+ }${!url}"
    done
    printf 'export KAILASH_CLUSTER_DIR=%q\n' "$DIR"
    printf 'export KAILASH_LB_URL=%q\n' "$LB_URL"
    printf 'export KAILASH_NODE_URLS=%q\n' "$urls"
    printf 'export DATABASE_URL=%q\n' "$DATABASE_URL"
    printf 'export REDIS_URL=%q\n' "$REDIS_URL"
    printf 'export KAILASH_REDIS_PREFIX=%q\n' "$REDIS_PREFIX"
    printf 'export KAILASH_API_GATEWAY_SECRET=%q\n' "$SECRET"
    printf 'export KAILASH_ADMIN_PASSWORD=%q\n' "$ADMIN_PASSWORD"
}

# --------------------------------------------------------------------------
[ $# -gt 0 ] || {
    usage >&2
    exit 2
}
COMMAND="$1"
shift
while [ $# -gt 0 ]; do
    case "$1" in
    --dir) [ $# -ge 2 ] || die "--dir needs a value"; DIR="$2"; shift 2 ;;
    --dir=*) DIR="${1#*=}"; shift ;;
    --nodes) [ $# -ge 2 ] || die "--nodes needs a value"; NODES="$2"; shift 2 ;;
    --nodes=*) NODES="${1#*=}"; shift ;;
    --bin) [ $# -ge 2 ] || die "--bin needs a value"; BIN="$2"; BUILD=0; shift 2 ;;
    --bin=*) BIN="${1#*=}"; BUILD=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --node) [ $# -ge 2 ] || die "--node needs a value"; ONLY_NODE="$2"; shift 2 ;;
    --node=*) ONLY_NODE="${1#*=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--nodes needs a positive number"
mkdir -p "$(dirname "$DIR")"
DIR="$(cd "$(dirname "$DIR")" && pwd)/$(basename "$DIR")"

case "$COMMAND" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
restart) cmd_restart ;;
env) cmd_env ;;
-h | --help) usage ;;
*) die "unknown command $COMMAND (up, down, restart, status or env)" ;;
esac
