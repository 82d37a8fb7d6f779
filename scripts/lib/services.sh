# shellcheck shell=bash
# scripts/lib/services.sh — private PostgreSQL and Redis instances for tests.
#
# Sourced by scripts/test.sh (and usable by other scripts). Nothing here
# touches the machine's own PostgreSQL/Redis (5432/6379): every instance is
# started from its own data directory on a free loopback port and stopped
# again by svc_stop_all.
#
# Public functions (all prefixed svc_):
#   svc_log MSG... / svc_die MSG...
#   svc_apt_install PKG...       apt-get install (runs `apt-get update` once)
#   svc_ensure_python3           installs python3 if missing; sets SVC_PYTHON
#   svc_ensure_postgres          installs `postgresql` if no server binaries
#   svc_ensure_redis             installs `redis-server` if missing
#   svc_free_port                prints a free TCP port on 127.0.0.1
#   svc_stop_stale STATE_DIR     stops instances left behind by a killed run
#   svc_start_postgres STATE_DIR starts PostgreSQL, sets SVC_PG_* variables
#                                (tests' settings: no fsync, small buffers;
#                                SVC_PG_SERVER_LIKE=1: crash-safe commits and
#                                1 GB of shared buffers, as a production server
#                                runs, for benchmarks of what persistence costs)
#   svc_start_redis STATE_DIR    starts Redis, sets SVC_REDIS_* variables
#   svc_stop_all                 stops whatever svc_start_* started
#   svc_dump_logs                prints the tail of the service logs
#
# Variables set after start:
#   SVC_PG_BIN SVC_PG_ROOT SVC_PG_DATA SVC_PG_SOCKDIR SVC_PG_PORT SVC_PG_LOG
#   SVC_PG_CTL (wrapper: "$SVC_PG_CTL" stop|start|restart [pg_ctl args],
#               runs pg_ctl as the postgres OS user with -D/-l already set)
#   SVC_REDIS_BIN SVC_REDIS_DIR SVC_REDIS_PORT SVC_REDIS_CONF SVC_REDIS_PIDFILE
#   SVC_REDIS_LOG
# All settings (port, socket dir, ...) live in config files inside the data
# dirs, so a plain `"$SVC_PG_CTL" start` or `redis-server "$SVC_REDIS_CONF"`
# brings a stopped instance back on the same port.

SVC_PG_OS_USER="${SVC_PG_OS_USER:-postgres}"
SVC_STARTUP_TIMEOUT="${SVC_STARTUP_TIMEOUT:-60}"
_SVC_APT_UPDATED=0
_SVC_PG_STARTED=0
_SVC_REDIS_STARTED=0

svc_log() { printf '[services] %s\n' "$*" >&2; }

# Waits up to SECONDS for process PID to exit; fails if it still runs then.
svc_wait_exit() { # PID SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    ! kill -0 "$1" 2>/dev/null
}
svc_die() {
    printf '[services] ERROR: %s\n' "$*" >&2
    exit 1
}

_svc_is_root() { [ "$(id -u)" -eq 0 ]; }

# --------------------------------------------------------------------------
# Package installation
# --------------------------------------------------------------------------
svc_apt_install() {
    local -a sudo=()
    if ! _svc_is_root; then
        command -v sudo >/dev/null 2>&1 ||
            svc_die "need to install '$*' but not root and no sudo; install them by hand"
        sudo=(sudo -n)
    fi
    command -v apt-get >/dev/null 2>&1 || svc_die "need to install '$*' but apt-get is not available"
    local log
    log="$(mktemp "${TMPDIR:-/tmp}/kailash-apt.XXXXXX")"
    if [ "$_SVC_APT_UPDATED" -eq 0 ]; then
        svc_log "apt-get update"
        if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get -o DPkg::Lock::Timeout=300 update -qq >"$log" 2>&1; then
            tail -n 30 "$log" >&2
            rm -f "$log"
            svc_die "apt-get update failed"
        fi
        _SVC_APT_UPDATED=1
    fi
    svc_log "apt-get install $*"
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        rm -f "$log"
        svc_die "apt-get install $* failed"
    fi
    rm -f "$log"
    hash -r
}

# Sets SVC_PYTHON to a working python3 (PATH first, then Debian's), installing
# Debian's python3 if there is none.
SVC_PYTHON="${SVC_PYTHON:-python3}"
svc_ensure_python3() {
    local cand
    for cand in python3 /usr/bin/python3; do
        if "$cand" -c 'import socket, secrets, multiprocessing' >/dev/null 2>&1; then
            SVC_PYTHON="$cand"
            return 0
        fi
    done
    svc_apt_install python3
    /usr/bin/python3 -c 'import socket, secrets, multiprocessing' >/dev/null 2>&1 ||
        svc_die "python3 still not usable after installing it"
    SVC_PYTHON=/usr/bin/python3
}

# Prints the directory holding initdb/pg_ctl/postgres/pg_isready, newest
# major version first; returns 1 if there is none.
_svc_find_pg_bin() {
    local d
    if [ -n "${KAILASH_TEST_PG_BIN:-}" ] && [ -x "${KAILASH_TEST_PG_BIN}/initdb" ]; then
        printf '%s\n' "$KAILASH_TEST_PG_BIN"
        return 0
    fi
    # Debian layout: /usr/lib/postgresql/<major>/bin
    while IFS= read -r d; do
        [ -n "$d" ] || continue
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_isready" ]; then
            printf '%s\n' "$d"
            return 0
        fi
    done < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r)
    # Anything else on PATH (e.g. a source build)
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        d="$(dirname "$(readlink -f "$(command -v initdb)")")"
        if [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_isready" ]; then
            printf '%s\n' "$d"
            return 0
        fi
    fi
    return 1
}

svc_ensure_postgres() {
    if ! _svc_find_pg_bin >/dev/null; then
        svc_apt_install postgresql
        _svc_find_pg_bin >/dev/null || svc_die "PostgreSQL server binaries not found after installing 'postgresql'"
    fi
    if _svc_is_root && ! id -u "$SVC_PG_OS_USER" >/dev/null 2>&1; then
        # The Debian package creates this user; create it if the binaries
        # came from elsewhere. PostgreSQL refuses to run as root.
        svc_log "creating OS user $SVC_PG_OS_USER"
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$SVC_PG_OS_USER" ||
            svc_die "could not create OS user $SVC_PG_OS_USER"
    fi
}

svc_ensure_redis() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        svc_apt_install redis-server redis-tools
        command -v redis-server >/dev/null 2>&1 || svc_die "redis-server not found after install"
        command -v redis-cli >/dev/null 2>&1 || svc_die "redis-cli not found after install"
    fi
}

# --------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------
_SVC_USED_PORTS=" "

# Free port on 127.0.0.1, outside the kernel's ephemeral range (so client
# sockets can't grab it between our check and the server's bind), and never
# one this shell already handed out. svc_pick_port VAR sets VAR (and records
# the port, which a $(...) subshell could not); svc_free_port prints one.
svc_free_port() {
    local p
    svc_pick_port p
    printf '%s\n' "$p"
}

svc_pick_port() {
    local port
    port="$("$SVC_PYTHON" - "$_SVC_USED_PORTS" <<'PY'
import random, socket, sys
used = {int(p) for p in sys.argv[1].split()}
try:
    lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
except Exception:
    lo, hi = 32768, 60999
ranges = [(15000, lo - 1)] if lo > 16000 else [(hi + 1, 65000)]
rng = random.SystemRandom()
for _ in range(500):
    a, b = rng.choice(ranges)
    p = rng.randint(a, b)
    if p in used:
        continue
    ok = True
    for fam, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "0.0.0.0")):
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.bind((addr, p))
        except OSError:
            ok = False
        finally:
            s.close()
        if not ok:
            break
    if ok:
        print(p)
        sys.exit(0)
sys.exit(1)
PY
    )" || svc_die "could not find a free TCP port"
    _SVC_USED_PORTS="${_SVC_USED_PORTS}${port} "
    printf -v "$1" '%s' "$port"
}

_svc_port_listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------
# Runs a command as the postgres OS user (if we are root), from / so that an
# unreadable current directory (e.g. a repo under /root) doesn't matter.
_svc_as_pg() {
    if _svc_is_root; then
        (cd / && runuser -u "$SVC_PG_OS_USER" -- "$@")
    else
        (cd / && "$@")
    fi
}

_svc_pg_write_conf() {
    # Tests trade crash safety for speed, and many instances may run at once. A server-like
    # instance flushes every commit, and its buffers hold a benchmark's working set (with
    # the 128 MB default, a few seconds of executions fill them and every new page then
    # evicts a dirty one, so throughput fell run after run).
    local safety="fsync = off
synchronous_commit = off
full_page_writes = off" shared_buffers=128MB
    if [ "${SVC_PG_SERVER_LIKE:-0}" = 1 ]; then
        safety="fsync = on
synchronous_commit = on
full_page_writes = on"
        shared_buffers=1GB
    fi
    cat >"$SVC_PG_DATA/kailash.conf" <<EOF
# written by scripts/lib/services.sh
listen_addresses = '127.0.0.1'
port = $SVC_PG_PORT
unix_socket_directories = '$SVC_PG_SOCKDIR'
$safety
max_connections = 300
shared_buffers = $shared_buffers
logging_collector = off
log_min_messages = warning
EOF
    [ -z "${_svc_pg_owner_chown:-}" ] || chown "$SVC_PG_OS_USER": "$SVC_PG_DATA/kailash.conf"
}

_svc_pg_psql() {
    local psql="$SVC_PG_BIN/psql"
    [ -x "$psql" ] || psql="psql"
    PGCONNECT_TIMEOUT=5 "$psql" -X -q -h 127.0.0.1 -p "$SVC_PG_PORT" -U postgres -d postgres "$@"
}

svc_start_postgres() {
    local state="$1" attempt
    SVC_PG_BIN="$(_svc_find_pg_bin)" || svc_die "PostgreSQL server binaries not found (run svc_ensure_postgres)"
    local root="$state/postgres"
    mkdir -p "$root"
    _svc_pg_owner_chown=""
    if _svc_is_root; then
        chown "$SVC_PG_OS_USER": "$root"
        _svc_pg_owner_chown=1
        # Every parent dir must be traversable by the postgres user (a clone
        # under /root is not): fall back to a private dir under /tmp.
        if ! _svc_as_pg test -w "$root" -a -x "$root"; then
            local fallback
            fallback="$(mktemp -d /tmp/kailash-test-pg.XXXXXX)"
            chown "$SVC_PG_OS_USER": "$fallback"
            chmod 700 "$fallback"
            printf '%s\n' "$fallback" >"$state/postgres.external-root"
            svc_log "$root is not reachable by user $SVC_PG_OS_USER; using $fallback"
            root="$fallback"
        fi
    fi
    # shellcheck disable=SC2034  # documented output variable
    SVC_PG_ROOT="$root"
    SVC_PG_DATA="$root/data"
    SVC_PG_LOG="$root/postgres.log"
    SVC_PG_SOCKDIR="$root"
    # A unix socket path is limited to 107 bytes (".s.PGSQL.NNNNN" included).
    if [ "${#SVC_PG_SOCKDIR}" -gt 85 ]; then
        SVC_PG_SOCKDIR="$(mktemp -d /tmp/kailash-pgsock.XXXXXX)"
        [ -z "$_svc_pg_owner_chown" ] || chown "$SVC_PG_OS_USER": "$SVC_PG_SOCKDIR"
        printf '%s\n' "$SVC_PG_SOCKDIR" >>"$state/postgres.external-root"
    fi

    svc_log "initdb ($SVC_PG_BIN) in $SVC_PG_DATA"
    if ! _svc_as_pg "$SVC_PG_BIN/initdb" -D "$SVC_PG_DATA" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C --no-sync >"$root/initdb.log" 2>&1; then
        tail -n 30 "$root/initdb.log" >&2
        svc_die "initdb failed (log: $root/initdb.log)"
    fi
    printf "\ninclude 'kailash.conf'\n" >>"$SVC_PG_DATA/postgresql.conf"

    # Wrapper for tests that stop/start the server (fault injection).
    mkdir -p "$state/bin"
    SVC_PG_CTL="$state/bin/pg_ctl"
    if _svc_is_root; then
        cat >"$SVC_PG_CTL" <<EOF
#!/bin/sh
# pg_ctl for the test instance, run as $SVC_PG_OS_USER. Usage: pg_ctl start|stop|restart|status [args]
cd / && exec runuser -u $SVC_PG_OS_USER -- "$SVC_PG_BIN/pg_ctl" -D "$SVC_PG_DATA" -l "$SVC_PG_LOG" "\$@"
EOF
    else
        cat >"$SVC_PG_CTL" <<EOF
#!/bin/sh
cd / && exec "$SVC_PG_BIN/pg_ctl" -D "$SVC_PG_DATA" -l "$SVC_PG_LOG" "\$@"
EOF
    fi
    chmod 755 "$SVC_PG_CTL"

    for attempt in 1 2 3; do
        svc_pick_port SVC_PG_PORT
        _svc_pg_write_conf
        svc_log "starting PostgreSQL on 127.0.0.1:$SVC_PG_PORT (attempt $attempt)"
        _SVC_PG_STARTED=1
        if "$SVC_PG_CTL" -w -t "$SVC_STARTUP_TIMEOUT" start >/dev/null 2>&1; then
            local i
            for ((i = 0; i < SVC_STARTUP_TIMEOUT * 2; i++)); do
                # Ready, and really ours (not another server on that port)?
                if "$SVC_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$SVC_PG_PORT" -U postgres -d postgres -t 2 &&
                    [ "$(_svc_pg_psql -Atc 'show data_directory' 2>/dev/null)" = "$SVC_PG_DATA" ]; then
                    svc_log "PostgreSQL ready on 127.0.0.1:$SVC_PG_PORT"
                    return 0
                fi
                sleep 0.5
            done
            svc_log "PostgreSQL started but does not answer pg_isready on port $SVC_PG_PORT"
        fi
        _svc_stop_postgres quiet
        if grep -qiE 'could not (create|bind).*(socket|address)|address already in use' "$SVC_PG_LOG" 2>/dev/null &&
            [ "$attempt" -lt 3 ]; then
            svc_log "port $SVC_PG_PORT was taken, retrying"
            continue
        fi
        break
    done
    tail -n 40 "$SVC_PG_LOG" >&2 2>/dev/null || true
    svc_die "PostgreSQL did not start within ${SVC_STARTUP_TIMEOUT}s (log: $SVC_PG_LOG)"
}

_svc_pg_pid() {
    local f="$1/postmaster.pid" pid
    [ -f "$f" ] || return 1
    pid="$(head -n 1 "$f" 2>/dev/null)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

# Stops the instance whose data dir is $1 (pg_ctl fast, then SIGKILL).
_svc_stop_pg_datadir() {
    local data="$1" bin="$2" pid
    pid="$(_svc_pg_pid "$data")" || return 0
    if [ -n "$bin" ] && [ -x "$bin/pg_ctl" ]; then
        _svc_as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 20 stop >/dev/null 2>&1 || true
    else
        kill -INT "$pid" 2>/dev/null || true
    fi
    svc_wait_exit "$pid" 10 && return 0
    svc_log "PostgreSQL (pid $pid) did not stop; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    # Children of a SIGKILLed postmaster exit on their own once they notice.
    sleep 0.5
}

_svc_stop_postgres() {
    [ "$_SVC_PG_STARTED" -eq 1 ] || return 0
    [ -n "${SVC_PG_DATA:-}" ] || return 0
    _svc_stop_pg_datadir "$SVC_PG_DATA" "${SVC_PG_BIN:-}"
    _SVC_PG_STARTED=0
    if [ "${1:-}" != quiet ] && [ -n "${SVC_PG_PORT:-}" ]; then
        if _svc_port_listening "$SVC_PG_PORT"; then
            svc_log "WARNING: something still listens on PostgreSQL port $SVC_PG_PORT"
        else
            svc_log "PostgreSQL stopped (port $SVC_PG_PORT)"
        fi
    fi
}

# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------
svc_start_redis() {
    local state="$1" attempt i pid
    SVC_REDIS_BIN="$(command -v redis-server)" || svc_die "redis-server not found (run svc_ensure_redis)"
    SVC_REDIS_DIR="$state/redis"
    SVC_REDIS_CONF="$SVC_REDIS_DIR/redis.conf"
    SVC_REDIS_PIDFILE="$SVC_REDIS_DIR/redis.pid"
    SVC_REDIS_LOG="$SVC_REDIS_DIR/redis.log"
    mkdir -p "$SVC_REDIS_DIR"
    for attempt in 1 2 3; do
        svc_pick_port SVC_REDIS_PORT
        cat >"$SVC_REDIS_CONF" <<EOF
# written by scripts/lib/services.sh
port $SVC_REDIS_PORT
bind 127.0.0.1
protected-mode yes
save ""
appendonly no
daemonize yes
pidfile $SVC_REDIS_PIDFILE
logfile $SVC_REDIS_LOG
dir $SVC_REDIS_DIR
databases 16
EOF
        rm -f "$SVC_REDIS_PIDFILE"
        : >"$SVC_REDIS_LOG"
        svc_log "starting Redis on 127.0.0.1:$SVC_REDIS_PORT (attempt $attempt)"
        _SVC_REDIS_STARTED=1
        if (cd / && "$SVC_REDIS_BIN" "$SVC_REDIS_CONF") >>"$SVC_REDIS_LOG" 2>&1; then
            for ((i = 0; i < SVC_STARTUP_TIMEOUT * 4; i++)); do
                # PONG alone could come from someone else's server on that
                # port: make sure it is the one reading our config file.
                if [ "$(redis-cli -h 127.0.0.1 -p "$SVC_REDIS_PORT" ping 2>/dev/null)" = PONG ] &&
                    redis-cli -h 127.0.0.1 -p "$SVC_REDIS_PORT" info server 2>/dev/null |
                    tr -d '\r' | grep -qxF "config_file:$SVC_REDIS_CONF"; then
                    svc_log "Redis ready on 127.0.0.1:$SVC_REDIS_PORT"
                    return 0
                fi
                # Daemonized server died (e.g. port taken)? Stop waiting.
                if [ "$i" -gt 8 ] && [ -f "$SVC_REDIS_PIDFILE" ]; then
                    pid="$(cat "$SVC_REDIS_PIDFILE" 2>/dev/null || true)"
                    [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null && break
                fi
                if [ "$i" -gt 8 ] && grep -qiE 'address already in use|could not create server' "$SVC_REDIS_LOG"; then
                    break
                fi
                sleep 0.25
            done
        fi
        _svc_stop_redis quiet
        if grep -qiE 'address already in use|could not create server' "$SVC_REDIS_LOG" && [ "$attempt" -lt 3 ]; then
            svc_log "port $SVC_REDIS_PORT was taken, retrying"
            continue
        fi
        break
    done
    tail -n 30 "$SVC_REDIS_LOG" >&2 2>/dev/null || true
    svc_die "Redis did not answer PING within ${SVC_STARTUP_TIMEOUT}s (log: $SVC_REDIS_LOG)"
}

_svc_stop_redis_pidfile() {
    local pidfile="$1" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    # Only kill it if it really is a redis-server (pid reuse after a crash).
    grep -q redis "/proc/$pid/comm" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    svc_wait_exit "$pid" 10 && return 0
    svc_log "Redis (pid $pid) did not stop; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

_svc_stop_redis() {
    [ "$_SVC_REDIS_STARTED" -eq 1 ] || return 0
    _svc_stop_redis_pidfile "$SVC_REDIS_PIDFILE"
    _SVC_REDIS_STARTED=0
    if [ "${1:-}" != quiet ] && [ -n "${SVC_REDIS_PORT:-}" ]; then
        if _svc_port_listening "$SVC_REDIS_PORT"; then
            svc_log "WARNING: something still listens on Redis port $SVC_REDIS_PORT"
        else
            svc_log "Redis stopped (port $SVC_REDIS_PORT)"
        fi
    fi
}

# --------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------
# Stops servers left running by an earlier run that was SIGKILLed (its
# EXIT trap never ran) so that wiping STATE_DIR is safe.
svc_stop_stale() {
    local state="$1" d bin
    [ -d "$state" ] || return 0
    bin="$(_svc_find_pg_bin 2>/dev/null || true)"
    for d in "$state/postgres/data" $(cat "$state/postgres.external-root" 2>/dev/null | sed 's|$|/data|'); do
        if _svc_pg_pid "$d" >/dev/null; then
            svc_log "stopping stale PostgreSQL in $d"
            _svc_stop_pg_datadir "$d" "$bin"
        fi
    done
    if [ -f "$state/redis/redis.pid" ]; then
        svc_log "stopping Redis left by an earlier run (if still running)"
        _svc_stop_redis_pidfile "$state/redis/redis.pid"
    fi
    for d in $(cat "$state/postgres.external-root" 2>/dev/null); do
        case "$d" in /tmp/kailash-*) rm -rf "$d" ;; esac
    done
}

svc_stop_all() {
    local state_hint="${1:-}"
    _svc_stop_redis || true
    _svc_stop_postgres || true
    if [ -n "$state_hint" ] && [ -f "$state_hint/postgres.external-root" ]; then
        local d
        for d in $(cat "$state_hint/postgres.external-root"); do
            case "$d" in /tmp/kailash-*) rm -rf "$d" ;; esac
        done
        rm -f "$state_hint/postgres.external-root"
    fi
}

svc_dump_logs() {
    if [ -n "${SVC_PG_LOG:-}" ] && [ -s "$SVC_PG_LOG" ]; then
        printf -- '----- tail of %s -----\n' "$SVC_PG_LOG" >&2
        tail -n 40 "$SVC_PG_LOG" >&2 || true
    fi
    if [ -n "${SVC_REDIS_LOG:-}" ] && [ -s "$SVC_REDIS_LOG" ]; then
        printf -- '----- tail of %s -----\n' "$SVC_REDIS_LOG" >&2
        tail -n 20 "$SVC_REDIS_LOG" >&2 || true
    fi
}
