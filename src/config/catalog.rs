//! The catalogue of settings: for each, its config-file key (and CLI flag), its environment
//! variable and what it does — the one list `load` layers, `--help` shows and
//! `kailash-gateway settings` prints.

/// One setting: its config-file key (also the CLI flag, with dashes), its environment
/// variable, and what it does.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    pub key: &'static str,
    pub env: &'static str,
    /// A comma-separated list in the environment and on the command line.
    pub list: bool,
    pub help: &'static str,
    /// Shown instead of the literal default where that depends on the machine.
    pub default_note: Option<&'static str>,
}

const fn setting(key: &'static str, env: &'static str, help: &'static str) -> SettingSpec {
    SettingSpec {
        key,
        env,
        list: false,
        help,
        default_note: None,
    }
}

const fn list(key: &'static str, env: &'static str, help: &'static str) -> SettingSpec {
    SettingSpec {
        list: true,
        ..setting(key, env, help)
    }
}

/// Every setting. Keep in step with [`Settings`]: a test checks both name the same keys.
pub const SETTINGS: &[SettingSpec] = &[
    setting("bind", "KAILASH_BIND", "Address and port to listen on"),
    setting(
        "auth_mode",
        "KAILASH_AUTH_MODE",
        "`gated` (credentials required) or `open` (local development, trusts the request's user_id)",
    ),
    setting(
        "api_gateway_secret",
        "KAILASH_API_GATEWAY_SECRET",
        "HS256 signing secret (32+ bytes); generated into the data directory in the embedded default",
    ),
    list(
        "public_paths",
        "KAILASH_PUBLIC_PATHS",
        "Paths served without a credential in gated mode",
    ),
    setting(
        "default_tenant",
        "KAILASH_DEFAULT_TENANT",
        "Tenant of callers whose token names none",
    ),
    setting(
        "max_sessions",
        "KAILASH_MAX_SESSIONS",
        "Live sessions allowed on this node; more answer 429 max_sessions_reached",
    ),
    setting(
        "session_timeout_minutes",
        "KAILASH_SESSION_TIMEOUT_MINUTES",
        "Idle time after which a session expires (fractions allowed)",
    ),
    setting(
        "data_dir",
        "KAILASH_DATA_DIR",
        "Directory for the generated secret and node data",
    ),
    setting("log_format", "KAILASH_LOG_FORMAT", "`pretty` or `json`"),
    setting(
        "log_filter",
        "RUST_LOG",
        "tracing filter, e.g. `info` or `kailash_gateway=debug,info`",
    ),
    list(
        "cors_origins",
        "KAILASH_CORS_ORIGINS",
        "Origins allowed by CORS (`*` for any); none: no CORS headers",
    ),
    setting(
        "max_body_bytes",
        "KAILASH_MAX_BODY_BYTES",
        "Largest request body accepted; larger answer 413",
    ),
    setting(
        "database_url",
        "DATABASE_URL",
        "PostgreSQL URL: the state of record (sessions, workflows, executions, events); unset: in-memory store",
    ),
    setting(
        "database_pool_size",
        "KAILASH_DATABASE_POOL_SIZE",
        "Most PostgreSQL connections open at once",
    ),
    setting(
        "database_timeout_ms",
        "KAILASH_DATABASE_TIMEOUT_MS",
        "Limit of one SQL statement, of connecting, and of waiting for a pooled connection",
    ),
    setting(
        "store_queue_len",
        "KAILASH_STORE_QUEUE_LEN",
        "Writes (events, node runs, finished executions) queued for the database before writers wait",
    ),
    setting(
        "event_history_days",
        "KAILASH_EVENT_HISTORY_DAYS",
        "Stored events older than this are pruned",
    ),
    setting(
        "execution_history_days",
        "KAILASH_EXECUTION_HISTORY_DAYS",
        "Finished executions (and their node runs) older than this are pruned",
    ),
    setting(
        "retention_interval_minutes",
        "KAILASH_RETENTION_INTERVAL_MINUTES",
        "How often the retention job prunes stored history",
    ),
    setting(
        "redis_url",
        "REDIS_URL",
        "Redis URL: nodes sharing it (and the database) act as one gateway",
    ),
    setting(
        "redis_prefix",
        "KAILASH_REDIS_PREFIX",
        "Prefix of every Redis key and channel (deployments sharing a Redis differ in it)",
    ),
    SettingSpec {
        default_note: Some("host name and a random suffix"),
        ..setting(
            "node_id",
            "KAILASH_NODE_ID",
            "This node's id in the cluster (letters, digits, '.', '_', '-')",
        )
    },
    SettingSpec {
        default_note: Some("the bound address"),
        ..setting(
            "advertise_address",
            "KAILASH_ADVERTISE_ADDRESS",
            "host:port other nodes and operators reach this node at",
        )
    },
    SettingSpec {
        default_note: Some("CPU cores"),
        ..setting("workers", "KAILASH_WORKERS", "HTTP worker threads")
    },
    setting(
        "max_connections",
        "KAILASH_MAX_CONNECTIONS",
        "Concurrent connections per worker",
    ),
    setting(
        "keep_alive_seconds",
        "KAILASH_KEEP_ALIVE_SECONDS",
        "HTTP keep-alive (0 disables)",
    ),
    setting(
        "client_request_timeout_seconds",
        "KAILASH_CLIENT_REQUEST_TIMEOUT_SECONDS",
        "Time a client has to send a request's head",
    ),
    setting(
        "request_timeout_seconds",
        "KAILASH_REQUEST_TIMEOUT_SECONDS",
        "Time a handler has to answer; then 504 request_timeout",
    ),
    setting(
        "compression",
        "KAILASH_COMPRESSION",
        "gzip responses when the client accepts it",
    ),
    setting(
        "tls_cert_file",
        "KAILASH_TLS_CERT_FILE",
        "PEM certificate chain; with tls_key_file serves HTTPS (rustls)",
    ),
    setting(
        "tls_key_file",
        "KAILASH_TLS_KEY_FILE",
        "PEM private key for tls_cert_file",
    ),
    setting(
        "drain_delay_seconds",
        "KAILASH_DRAIN_DELAY_SECONDS",
        "On SIGTERM, time /ready answers 503 before the listener closes",
    ),
    setting(
        "shutdown_timeout_seconds",
        "KAILASH_SHUTDOWN_TIMEOUT_SECONDS",
        "Time in-flight requests get to finish on shutdown",
    ),
    setting(
        "execution_drain_seconds",
        "KAILASH_EXECUTION_DRAIN_SECONDS",
        "On shutdown, time running executions get to finish; the rest end failed (interrupted)",
    ),
    setting(
        "actor_ask_timeout_ms",
        "KAILASH_ACTOR_ASK_TIMEOUT_MS",
        "Time a request waits for an actor; then 503 unavailable",
    ),
    setting(
        "mailbox_capacity",
        "KAILASH_MAILBOX_CAPACITY",
        "Bound of the registry's and tenants' mailboxes",
    ),
    setting(
        "event_history_len",
        "KAILASH_EVENT_HISTORY_LEN",
        "Events retained per session stream",
    ),
    setting(
        "event_retention_minutes",
        "KAILASH_EVENT_RETENTION_MINUTES",
        "How long events stay in a session's history (and an ended session's stream with them)",
    ),
    setting(
        "recent_events_capacity",
        "KAILASH_RECENT_EVENTS_CAPACITY",
        "Events kept for GET /api/events/recent",
    ),
    setting(
        "subscriber_queue_len",
        "KAILASH_SUBSCRIBER_QUEUE_LEN",
        "Outbound queue of each WebSocket and SSE client; a client that fills it is closed as too slow",
    ),
    setting(
        "ws_max_frame_bytes",
        "KAILASH_WS_MAX_FRAME_BYTES",
        "Largest WebSocket frame a client may send; a bigger one closes the connection (1009)",
    ),
    setting(
        "ws_ping_seconds",
        "KAILASH_WS_PING_SECONDS",
        "How often the server pings each WebSocket client",
    ),
    setting(
        "ws_client_timeout_seconds",
        "KAILASH_WS_CLIENT_TIMEOUT_SECONDS",
        "A WebSocket client silent (no frame, no pong) this long is closed",
    ),
    setting(
        "sse_heartbeat_seconds",
        "KAILASH_SSE_HEARTBEAT_SECONDS",
        "How often an idle SSE stream gets a comment heartbeat",
    ),
    setting(
        "max_room_members",
        "KAILASH_MAX_ROOM_MEMBERS",
        "Most WebSocket connections one collaboration room holds",
    ),
    setting(
        "webhook_timeout_seconds",
        "KAILASH_WEBHOOK_TIMEOUT_SECONDS",
        "Time limit of one webhook delivery attempt",
    ),
    setting(
        "webhook_max_attempts",
        "KAILASH_WEBHOOK_MAX_ATTEMPTS",
        "Attempts per webhook delivery before it is given up",
    ),
    setting(
        "webhook_retry_base_ms",
        "KAILASH_WEBHOOK_RETRY_BASE_MS",
        "First retry delay; doubles per attempt (capped at 60 s), with jitter",
    ),
    setting(
        "webhook_queue_len",
        "KAILASH_WEBHOOK_QUEUE_LEN",
        "Events waiting per webhook; beyond it events are given up as queue_full",
    ),
    setting(
        "max_webhooks_per_user",
        "KAILASH_MAX_WEBHOOKS_PER_USER",
        "Webhooks one principal may register",
    ),
    setting(
        "title",
        "KAILASH_TITLE",
        "Gateway title reported by /api/stats",
    ),
    setting(
        "enable_dynamic_workflows",
        "KAILASH_ENABLE_DYNAMIC_WORKFLOWS",
        "Let sessions create workflows; false: only shared workflows run (403 dynamic_workflows_disabled)",
    ),
    setting(
        "workflows_dir",
        "KAILASH_WORKFLOWS_DIR",
        "Directory of shared workflow JSON files loaded at start",
    ),
    setting(
        "max_nodes_per_workflow",
        "KAILASH_MAX_NODES_PER_WORKFLOW",
        "Largest workflow accepted",
    ),
    setting(
        "node_timeout_seconds",
        "KAILASH_NODE_TIMEOUT_SECONDS",
        "Default per-node time limit (a node's `timeout` parameter overrides it)",
    ),
    setting(
        "execution_timeout_seconds",
        "KAILASH_EXECUTION_TIMEOUT_SECONDS",
        "Time limit of a whole execution",
    ),
    setting(
        "max_executions_per_session",
        "KAILASH_MAX_EXECUTIONS_PER_SESSION",
        "Executions running at once in one session; more answer 429 too_many_executions",
    ),
    setting(
        "max_concurrent_executions",
        "KAILASH_MAX_CONCURRENT_EXECUTIONS",
        "Executions running at once on this node; more answer 429 too_many_executions",
    ),
    setting(
        "finished_executions_per_session",
        "KAILASH_FINISHED_EXECUTIONS_PER_SESSION",
        "Finished executions a session keeps readable (oldest forgotten first)",
    ),
    list(
        "node_data_dirs",
        "KAILASH_NODE_DATA_DIRS",
        "Directories file nodes may read and write; relative file paths resolve in the first",
    ),
    list(
        "egress_allow",
        "KAILASH_EGRESS_ALLOW",
        "Host names, IPs and CIDR ranges HTTP/SQL nodes may reach although loopback, private or link-local",
    ),
    setting(
        "python_executable",
        "KAILASH_PYTHON_EXECUTABLE",
        "Python 3 interpreter of the code-node workers (a path or a name on PATH); missing: code nodes answer 400 python_unavailable",
    ),
    SettingSpec {
        default_note: Some("CPU cores"),
        ..setting(
            "python_workers",
            "KAILASH_PYTHON_WORKERS",
            "Pre-started Python worker processes; code nodes beyond that many wait for one",
        )
    },
    list(
        "python_allowed_imports",
        "KAILASH_PYTHON_ALLOWED_IMPORTS",
        "Top-level modules sandboxed code may import (os, sys, subprocess, socket and others are never allowed)",
    ),
    setting(
        "python_timeout_seconds",
        "KAILASH_PYTHON_TIMEOUT_SECONDS",
        "Wall-clock limit of one code-node run; then its worker is killed and replaced",
    ),
    setting(
        "python_cpu_seconds",
        "KAILASH_PYTHON_CPU_SECONDS",
        "CPU-time limit of one code-node run (RLIMIT_CPU)",
    ),
    setting(
        "python_memory_mb",
        "KAILASH_PYTHON_MEMORY_MB",
        "Address-space limit of each Python worker (RLIMIT_AS), also its file-size limit",
    ),
    setting(
        "python_max_output_bytes",
        "KAILASH_PYTHON_MAX_OUTPUT_BYTES",
        "Largest JSON output of one code-node run",
    ),
    setting(
        "python_max_print_bytes",
        "KAILASH_PYTHON_MAX_PRINT_BYTES",
        "What one run may print (stdout and stderr, captured); more fails the node",
    ),
    setting(
        "python_worker_max_runs",
        "KAILASH_PYTHON_WORKER_MAX_RUNS",
        "Runs after which a worker is replaced (0: never; 1: a fresh process per run)",
    ),
    setting(
        "default_role",
        "KAILASH_DEFAULT_ROLE",
        "Role of token holders whose token names no role of their tenant (tokens from a Python Kailash gateway)",
    ),
    setting(
        "jwt_algorithm",
        "KAILASH_JWT_ALGORITHM",
        "`HS256` (the secret), `RS256` or `EdDSA` (the newest key of jwt_keys_dir) for tokens issued at login",
    ),
    setting(
        "jwt_keys_dir",
        "KAILASH_JWT_KEYS_DIR",
        "Directory of `<kid>.pem` PKCS#8 private keys: the last kid in name order signs, all verify (rotation)",
    ),
    setting(
        "access_strategy",
        "KAILASH_ACCESS_STRATEGY",
        "`rbac` (roles), `abac` (Cedar policies) or `hybrid` (both must allow)",
    ),
    setting(
        "policies_path",
        "KAILASH_POLICIES_PATH",
        "Cedar policy file, or directory of `*.cedar` files, loaded at start for every tenant",
    ),
    setting(
        "concurrent_sessions_limit",
        "KAILASH_CONCURRENT_SESSIONS_LIMIT",
        "Live sessions one user may hold (0: no limit); more answer 429 too_many_sessions",
    ),
    setting(
        "tenant_requests_per_second",
        "KAILASH_TENANT_REQUESTS_PER_SECOND",
        "Requests per second a tenant may make, all its users together, unless its own limits say (0: no limit); more answer 429 requests_per_second_exceeded",
    ),
    setting(
        "tenant_api_calls_per_day",
        "KAILASH_TENANT_API_CALLS_PER_DAY",
        "`/api` requests a tenant may make per UTC day, unless its own limits say (0: no limit); more answer 429 api_calls_per_day_exceeded",
    ),
    setting(
        "user_requests_per_second",
        "KAILASH_USER_REQUESTS_PER_SECOND",
        "Requests per second one user may make (0: no limit); more answer 429 user_requests_per_second_exceeded",
    ),
    setting(
        "ip_requests_per_second",
        "KAILASH_IP_REQUESTS_PER_SECOND",
        "Requests per second from one client address, credentials or not (0: no limit); more answer 429 ip_requests_per_second_exceeded",
    ),
    list(
        "trusted_proxies",
        "KAILASH_TRUSTED_PROXIES",
        "Addresses and CIDR ranges of the proxies whose X-Forwarded-For names the client; from anyone else it is ignored",
    ),
    setting(
        "metrics_by_tenant",
        "KAILASH_METRICS_BY_TENANT",
        "Label quota rejections in /metrics with the tenant id too (one series per tenant: mind the cardinality)",
    ),
    list(
        "mfa_required_roles",
        "KAILASH_MFA_REQUIRED_ROLES",
        "Roles whose users must log in with a TOTP code (enrolled at /api/auth/mfa/enroll)",
    ),
    setting(
        "max_login_attempts",
        "KAILASH_MAX_LOGIN_ATTEMPTS",
        "Failed logins after which an account is locked (429 account_locked)",
    ),
    setting(
        "lockout_minutes",
        "KAILASH_LOCKOUT_MINUTES",
        "How long a locked account stays locked",
    ),
    setting(
        "access_token_minutes",
        "KAILASH_ACCESS_TOKEN_MINUTES",
        "Lifetime of access tokens issued at login and refresh",
    ),
    setting(
        "refresh_token_days",
        "KAILASH_REFRESH_TOKEN_DAYS",
        "Lifetime of refresh tokens (each refresh rotates the token)",
    ),
    setting(
        "admin_password",
        "KAILASH_ADMIN_PASSWORD",
        "Password of the `admin` user created on first start; unset: generated and printed once",
    ),
];
