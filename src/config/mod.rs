//! Typed settings: every knob the gateway has, its default, and the checks that stop a start
//! with one clear line naming the bad setting.
//!
//! Sources, lowest to highest: built-in defaults, `--config FILE` (TOML or YAML), a `.env`
//! file in the working directory, environment variables, CLI flags. [`load`] layers them;
//! [`SETTINGS`] is the one table of names, environment variables and help texts that the CLI,
//! the loader and `kailash-gateway settings` (the README's table) are built from.

mod catalog;
mod load;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

pub use catalog::{SETTINGS, SettingSpec};
pub use load::{ConfigError, add_setting_flags, load, settings_table};

/// `gated` (every route needs a credential) or `open` (local development: no credential,
/// the request's `user_id` is trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Gated,
    Open,
}

/// How the gateway signs the tokens it issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    EdDSA,
}

/// How requests are authorized: roles only, Cedar policies only, or both must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessStrategy {
    Rbac,
    Abac,
    Hybrid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A secret value: deserialized like a string, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Every setting, with its default. Field names are the config-file keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub bind: String,
    pub auth_mode: AuthMode,
    pub api_gateway_secret: Option<Secret>,
    pub public_paths: Vec<String>,
    pub default_tenant: String,
    pub max_sessions: usize,
    pub session_timeout_minutes: f64,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub cors_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub database_url: Option<Secret>,
    pub database_pool_size: usize,
    pub database_timeout_ms: u64,
    pub store_queue_len: usize,
    pub event_history_days: f64,
    pub execution_history_days: f64,
    pub retention_interval_minutes: f64,
    pub redis_url: Option<Secret>,
    pub redis_prefix: String,
    pub node_id: Option<String>,
    pub advertise_address: Option<String>,
    pub workers: usize,
    pub max_connections: usize,
    pub keep_alive_seconds: u64,
    pub client_request_timeout_seconds: u64,
    pub request_timeout_seconds: u64,
    pub compression: bool,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub drain_delay_seconds: f64,
    pub shutdown_timeout_seconds: u64,
    pub execution_drain_seconds: f64,
    pub actor_ask_timeout_ms: u64,
    pub mailbox_capacity: usize,
    pub event_history_len: usize,
    pub event_retention_minutes: f64,
    pub recent_events_capacity: usize,
    pub subscriber_queue_len: usize,
    pub ws_max_frame_bytes: usize,
    pub ws_ping_seconds: f64,
    pub ws_client_timeout_seconds: f64,
    pub sse_heartbeat_seconds: f64,
    pub max_room_members: usize,
    pub webhook_timeout_seconds: f64,
    pub webhook_max_attempts: u32,
    pub webhook_retry_base_ms: u64,
    pub webhook_queue_len: usize,
    pub max_webhooks_per_user: usize,
    pub title: String,
    pub enable_dynamic_workflows: bool,
    pub workflows_dir: Option<PathBuf>,
    pub max_nodes_per_workflow: usize,
    pub node_timeout_seconds: f64,
    pub execution_timeout_seconds: f64,
    pub max_executions_per_session: usize,
    pub max_concurrent_executions: usize,
    pub finished_executions_per_session: usize,
    pub node_data_dirs: Vec<PathBuf>,
    pub egress_allow: Vec<String>,
    pub python_executable: String,
    pub python_workers: usize,
    pub python_allowed_imports: Vec<String>,
    pub python_timeout_seconds: f64,
    pub python_cpu_seconds: u64,
    pub python_memory_mb: usize,
    pub python_max_output_bytes: usize,
    pub python_max_print_bytes: usize,
    pub python_worker_max_runs: u32,
    pub default_role: String,
    pub access_strategy: AccessStrategy,
    pub jwt_algorithm: JwtAlgorithm,
    pub jwt_keys_dir: Option<PathBuf>,
    pub policies_path: Option<PathBuf>,
    pub mfa_required_roles: Vec<String>,
    pub concurrent_sessions_limit: usize,
    pub tenant_requests_per_second: u32,
    pub tenant_api_calls_per_day: u64,
    pub user_requests_per_second: u32,
    pub ip_requests_per_second: u32,
    pub trusted_proxies: Vec<String>,
    pub metrics_by_tenant: bool,
    pub max_login_attempts: u32,
    pub lockout_minutes: f64,
    pub access_token_minutes: f64,
    pub refresh_token_days: f64,
    pub admin_password: Option<Secret>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8000".into(),
            auth_mode: AuthMode::Gated,
            api_gateway_secret: None,
            public_paths: ["/health", "/health/detailed", "/ready", "/metrics"]
                .map(String::from)
                .to_vec(),
            default_tenant: "default".into(),
            max_sessions: 1000,
            session_timeout_minutes: 60.0,
            data_dir: PathBuf::from("kailash-data"),
            log_format: LogFormat::Pretty,
            log_filter: "info".into(),
            cors_origins: Vec::new(),
            max_body_bytes: 1024 * 1024,
            database_url: None,
            database_pool_size: 16,
            database_timeout_ms: 5000,
            store_queue_len: 65_536,
            event_history_days: 7.0,
            execution_history_days: 30.0,
            retention_interval_minutes: 60.0,
            redis_url: None,
            redis_prefix: "kailash".into(),
            node_id: None,
            advertise_address: None,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_connections: 25_000,
            keep_alive_seconds: 5,
            client_request_timeout_seconds: 5,
            request_timeout_seconds: 300,
            compression: true,
            tls_cert_file: None,
            tls_key_file: None,
            drain_delay_seconds: 0.0,
            shutdown_timeout_seconds: 30,
            execution_drain_seconds: 20.0,
            actor_ask_timeout_ms: 5000,
            mailbox_capacity: 1024,
            event_history_len: 100,
            event_retention_minutes: 60.0,
            recent_events_capacity: 1000,
            subscriber_queue_len: 256,
            ws_max_frame_bytes: 64 * 1024,
            ws_ping_seconds: 20.0,
            ws_client_timeout_seconds: 60.0,
            sse_heartbeat_seconds: 15.0,
            max_room_members: 100,
            webhook_timeout_seconds: 10.0,
            webhook_max_attempts: 5,
            webhook_retry_base_ms: 500,
            webhook_queue_len: 1000,
            max_webhooks_per_user: 20,
            title: "Kailash Gateway".into(),
            enable_dynamic_workflows: true,
            workflows_dir: None,
            max_nodes_per_workflow: 1000,
            node_timeout_seconds: 300.0,
            execution_timeout_seconds: 3600.0,
            max_executions_per_session: 20,
            max_concurrent_executions: 1000,
            finished_executions_per_session: 1000,
            node_data_dirs: vec![PathBuf::from("kailash-data/files")],
            egress_allow: Vec::new(),
            python_executable: "python3".into(),
            python_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            python_allowed_imports: crate::nodes::python::DEFAULT_ALLOWED_IMPORTS
                .iter()
                .map(|m| m.to_string())
                .collect(),
            python_timeout_seconds: 30.0,
            python_cpu_seconds: 30,
            python_memory_mb: 1024,
            python_max_output_bytes: 4 * 1024 * 1024,
            python_max_print_bytes: 64 * 1024,
            python_worker_max_runs: 0,
            default_role: "developer".into(),
            access_strategy: AccessStrategy::Rbac,
            jwt_algorithm: JwtAlgorithm::HS256,
            jwt_keys_dir: None,
            policies_path: None,
            mfa_required_roles: Vec::new(),
            concurrent_sessions_limit: 0,
            tenant_requests_per_second: 0,
            tenant_api_calls_per_day: 0,
            user_requests_per_second: 0,
            ip_requests_per_second: 0,
            trusted_proxies: Vec::new(),
            metrics_by_tenant: false,
            max_login_attempts: 5,
            lockout_minutes: 15.0,
            access_token_minutes: 15.0,
            refresh_token_days: 30.0,
            admin_password: None,
        }
    }
}

/// Shortest secret accepted for HS256 signing (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Shortest password accepted for an account.
pub const MIN_PASSWORD_CHARS: usize = 8;

impl Settings {
    /// Checks what types alone cannot; the error names the setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(ConfigError::invalid(key, why));
        if self.bind.parse::<SocketAddr>().is_err() {
            return bad(
                "bind",
                format!("'{}' is not a host:port address", self.bind),
            );
        }
        if self.max_sessions == 0 {
            return bad("max_sessions", "must be at least 1".into());
        }
        if let Some(item) = self
            .trusted_proxies
            .iter()
            .find(|item| crate::cidr::Cidr::parse(item.trim()).is_none())
        {
            return bad(
                "trusted_proxies",
                format!("'{item}' is not an IP address or CIDR range"),
            );
        }
        for (key, minutes) in [
            ("session_timeout_minutes", self.session_timeout_minutes),
            ("event_retention_minutes", self.event_retention_minutes),
        ] {
            if !(minutes.is_finite() && minutes > 0.0 && minutes <= 525_600.0) {
                return bad(
                    key,
                    "must be a number of minutes above 0 and at most a year".into(),
                );
            }
        }
        for (key, days) in [
            ("event_history_days", self.event_history_days),
            ("execution_history_days", self.execution_history_days),
        ] {
            if !(days.is_finite() && days > 0.0 && days <= 36_500.0) {
                return bad(
                    key,
                    "must be a number of days above 0 and at most 100 years".into(),
                );
            }
        }
        let minutes = self.retention_interval_minutes;
        if !(minutes.is_finite() && minutes > 0.0 && minutes <= 10_080.0) {
            return bad(
                "retention_interval_minutes",
                "must be a number of minutes above 0 and at most a week".into(),
            );
        }
        if !(1..=1000).contains(&self.database_pool_size) {
            return bad("database_pool_size", "must be between 1 and 1000".into());
        }
        if !(100..=600_000).contains(&self.database_timeout_ms) {
            return bad(
                "database_timeout_ms",
                "must be between 100 and 600000".into(),
            );
        }
        for (key, seconds) in [
            ("node_timeout_seconds", self.node_timeout_seconds),
            ("execution_timeout_seconds", self.execution_timeout_seconds),
            ("ws_ping_seconds", self.ws_ping_seconds),
            ("ws_client_timeout_seconds", self.ws_client_timeout_seconds),
            ("sse_heartbeat_seconds", self.sse_heartbeat_seconds),
            ("webhook_timeout_seconds", self.webhook_timeout_seconds),
        ] {
            if !(seconds.is_finite() && seconds > 0.0 && seconds <= 604_800.0) {
                return bad(
                    key,
                    "must be a number of seconds above 0 and at most a week".into(),
                );
            }
        }
        if !(self.drain_delay_seconds.is_finite()
            && (0.0..=3600.0).contains(&self.drain_delay_seconds))
        {
            return bad("drain_delay_seconds", "must be between 0 and 3600".into());
        }
        if !(self.execution_drain_seconds.is_finite()
            && (0.0..=3600.0).contains(&self.execution_drain_seconds))
        {
            return bad(
                "execution_drain_seconds",
                "must be between 0 and 3600".into(),
            );
        }
        if self.workers == 0 || self.workers > 1024 {
            return bad("workers", "must be between 1 and 1024".into());
        }
        if self.max_body_bytes < 1024 {
            return bad("max_body_bytes", "must be at least 1024".into());
        }
        for (key, value) in [
            ("max_connections", self.max_connections),
            ("mailbox_capacity", self.mailbox_capacity),
            ("subscriber_queue_len", self.subscriber_queue_len),
            ("ws_max_frame_bytes", self.ws_max_frame_bytes),
            ("max_room_members", self.max_room_members),
            ("webhook_max_attempts", self.webhook_max_attempts as usize),
            ("webhook_queue_len", self.webhook_queue_len),
            ("store_queue_len", self.store_queue_len),
            ("actor_ask_timeout_ms", self.actor_ask_timeout_ms as usize),
            (
                "request_timeout_seconds",
                self.request_timeout_seconds as usize,
            ),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.default_tenant.trim().is_empty() {
            return bad("default_tenant", "must not be empty".into());
        }
        if let Some(secret) = &self.api_gateway_secret
            && secret.expose().len() < MIN_SECRET_BYTES
        {
            return bad(
                "api_gateway_secret",
                format!("must be at least {MIN_SECRET_BYTES} bytes long"),
            );
        }
        if let Some(url) = &self.database_url
            && !["postgres://", "postgresql://"]
                .iter()
                .any(|s| url.expose().starts_with(s))
        {
            return bad(
                "database_url",
                "must be a postgres:// or postgresql:// URL".into(),
            );
        }
        if let Some(url) = &self.redis_url
            && !["redis://", "rediss://"]
                .iter()
                .any(|s| url.expose().starts_with(s))
        {
            return bad("redis_url", "must be a redis:// or rediss:// URL".into());
        }
        if !is_name(&self.redis_prefix) {
            return bad("redis_prefix", NAME_RULE.into());
        }
        if let Some(node_id) = &self.node_id
            && !is_name(node_id)
        {
            return bad("node_id", NAME_RULE.into());
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => return bad("tls_key_file", "is required with tls_cert_file".into()),
            (None, Some(_)) => return bad("tls_cert_file", "is required with tls_key_file".into()),
            _ => {}
        }
        if let Some(path) = self.public_paths.iter().find(|p| !p.starts_with('/')) {
            return bad("public_paths", format!("'{path}' must start with '/'"));
        }
        self.validate_python()?;
        self.validate_identity()?;
        if self.auth_mode == AuthMode::Gated
            && self.api_gateway_secret.is_none()
            && !self.is_embedded()
        {
            return bad(
                "api_gateway_secret",
                format!(
                    "gated mode with DATABASE_URL or REDIS_URL needs KAILASH_API_GATEWAY_SECRET \
                     ({MIN_SECRET_BYTES}+ bytes); only the single-node embedded default generates one"
                ),
            );
        }
        Ok(())
    }

    fn validate_python(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(ConfigError::invalid(key, why));
        if self.python_executable.trim().is_empty() {
            return bad("python_executable", "must not be empty".into());
        }
        if !(1..=256).contains(&self.python_workers) {
            return bad("python_workers", "must be between 1 and 256".into());
        }
        let seconds = self.python_timeout_seconds;
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
            return bad(
                "python_timeout_seconds",
                "must be a number of seconds above 0 and at most a day".into(),
            );
        }
        for (key, value, least) in [
            ("python_cpu_seconds", self.python_cpu_seconds as usize, 1),
            ("python_memory_mb", self.python_memory_mb, 64),
            (
                "python_max_output_bytes",
                self.python_max_output_bytes,
                1024,
            ),
            ("python_max_print_bytes", self.python_max_print_bytes, 0),
        ] {
            if value < least {
                return bad(key, format!("must be at least {least}"));
            }
        }
        let denied = crate::nodes::python::DENIED_IMPORTS;
        for module in &self.python_allowed_imports {
            if module.is_empty()
                || !module
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return bad(
                    "python_allowed_imports",
                    format!("'{module}' is not a top-level module name"),
                );
            }
            if denied.contains(&module.as_str()) {
                return bad(
                    "python_allowed_imports",
                    format!(
                        "'{module}' reaches processes, sockets, files or the interpreter and can never be allowed"
                    ),
                );
            }
        }
        Ok(())
    }

    fn validate_identity(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(ConfigError::invalid(key, why));
        if crate::access::rbac::builtin(&self.default_role).is_none() {
            return bad(
                "default_role",
                "must be a built-in role: admin, developer, operator or viewer".into(),
            );
        }
        if self.jwt_algorithm != JwtAlgorithm::HS256 && self.jwt_keys_dir.is_none() {
            return bad(
                "jwt_keys_dir",
                "is required with jwt_algorithm RS256 or EdDSA: a directory of <kid>.pem PKCS#8 private keys".into(),
            );
        }
        if self.max_login_attempts == 0 {
            return bad("max_login_attempts", "must be at least 1".into());
        }
        for (key, value, most) in [
            ("lockout_minutes", self.lockout_minutes, 10_080.0),
            ("access_token_minutes", self.access_token_minutes, 1_440.0),
            ("refresh_token_days", self.refresh_token_days, 365.0),
        ] {
            if !(value.is_finite() && value > 0.0 && value <= most) {
                return bad(key, format!("must be above 0 and at most {most}"));
            }
        }
        if let Some(password) = &self.admin_password
            && password.expose().len() < MIN_PASSWORD_CHARS
        {
            return bad(
                "admin_password",
                format!("must be at least {MIN_PASSWORD_CHARS} characters"),
            );
        }
        Ok(())
    }

    pub fn lockout(&self) -> chrono::Duration {
        chrono::Duration::milliseconds((self.lockout_minutes * 60_000.0) as i64)
    }

    pub fn access_token_lifetime(&self) -> chrono::Duration {
        chrono::Duration::milliseconds((self.access_token_minutes * 60_000.0) as i64)
    }

    pub fn refresh_token_lifetime(&self) -> chrono::Duration {
        chrono::Duration::milliseconds((self.refresh_token_days * 86_400_000.0) as i64)
    }

    /// The single-node embedded default: no database, no broker.
    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none() && self.redis_url.is_none()
    }

    pub fn bind_addr(&self) -> SocketAddr {
        self.bind.parse().expect("validated at load")
    }

    pub fn session_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.session_timeout_minutes * 60.0)
    }

    pub fn event_retention(&self) -> Duration {
        Duration::from_secs_f64(self.event_retention_minutes * 60.0)
    }

    pub fn node_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.node_timeout_seconds)
    }

    pub fn execution_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.execution_timeout_seconds)
    }

    /// The retention job's ages and period.
    pub fn retention(&self) -> kailash_actors::Retention {
        let days = |d: f64| Duration::from_secs_f64(d * 86_400.0);
        kailash_actors::Retention {
            events: days(self.event_history_days),
            executions: days(self.execution_history_days),
            every: Duration::from_secs_f64(self.retention_interval_minutes * 60.0),
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }
}

/// A connection URL with its password replaced, for reporting which backend is configured.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => format!("{scheme}://{authority}{tail}"),
    }
}

const NAME_RULE: &str = "must be 1 to 64 letters, digits, '.', '_' or '-'";

/// Whether `value` can name a node or prefix Redis keys: it appears in keys and in the
/// `<node> <event>` messages between nodes, so no spaces or separators.
pub(crate) fn is_name(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults validate");
    }

    #[test]
    fn dangerous_python_imports_cannot_be_allowed() {
        let settings = Settings {
            python_allowed_imports: vec!["math".into(), "subprocess".into()],
            ..Settings::default()
        };
        let error = settings.validate().unwrap_err().to_string();
        assert!(
            error.contains("python_allowed_imports") && error.contains("subprocess"),
            "{error}"
        );
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/kailash"),
            "postgres://app:***@db:5432/kailash"
        );
        assert_eq!(redact_url("redis://cache:6379/0"), "redis://cache:6379/0");
    }

    #[test]
    fn a_backend_without_a_secret_is_refused_in_gated_mode() {
        let settings = Settings {
            redis_url: Some(Secret::new("redis://127.0.0.1:6379")),
            ..Settings::default()
        };
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("api_gateway_secret"), "{error}");
    }
}
