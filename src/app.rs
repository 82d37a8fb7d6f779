//! [`Application`]: builds the whole gateway — actor tree, authenticator, metrics and HTTP
//! server — from [`Settings`], binds its listener (port 0 in tests) and reports the port.
//! `main` and the integration tests start the gateway the same way.

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use actix_cors::Cors;
use actix_web::{
    App, HttpServer,
    dev::{Server, ServerHandle},
    http::KeepAlive,
    middleware::{Compress, Condition, from_fn},
    web,
};
use chrono::{DateTime, Utc};
use jsonwebtoken::Algorithm;
use kailash_actors::{
    Gateway, GatewayConfig, GatewayError, Persistence,
    accounts::{AccountStore, MemoryAccounts},
    broker::{BrokerError, SharedBroker},
    bus::BusConfig,
    engine::workflow::WorkflowLimits,
    execution::RunLimits,
    store::{MemoryStore, Store, StoreError},
};

use crate::{
    access::{
        Access,
        abac::{Policies, PolicyLoadError},
        audit::AuditLog,
        rbac::Roles,
    },
    adapters::{
        postgres::{PgOptions, PgStore, accounts::PgAccounts},
        redis::{BrokerOptions, RedisBroker},
    },
    auth::{self, Authenticator, passwords::Passwords, token::TokenKeys},
    clock::{Clock, SystemClock},
    cluster::{self, Cluster},
    config::{AuthMode, JwtAlgorithm, Secret, Settings},
    limits::{self, RateLimits},
    metrics::Metrics,
    nodes::{self, NodeEnvironment},
    realtime::webhooks::Webhooks,
    routes, shared_workflows,
    tenants::Tenants,
    tls,
};

/// How often expired revocations and refresh tokens are dropped from the accounts store.
const REVOCATION_PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Everything a request handler may need; shared by all workers.
pub struct AppState {
    pub gateway: Gateway,
    pub settings: Arc<Settings>,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    pub lifecycle: Lifecycle,
    pub webhooks: Webhooks,
    pub accounts: Arc<dyn AccountStore>,
    pub passwords: Passwords,
    pub access: Access,
    pub clock: Arc<dyn Clock>,
    /// Every tenant's record (see [`Tenants`]).
    pub tenants: Tenants,
    /// This node's part in a cluster, with `redis_url`.
    pub cluster: Option<Cluster>,
    pub limits: RateLimits,
}

/// The state a middleware's request carries (registered on every `App`).
pub fn state_of(req: &actix_web::dev::ServiceRequest) -> web::Data<AppState> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .expect("AppState is registered on the App")
}

/// The replaceable parts of a gateway: what time it is, and where accounts live (`None`:
/// where the settings say, the database or memory).
pub struct Services {
    pub accounts: Option<Arc<dyn AccountStore>>,
    pub clock: Arc<dyn Clock>,
}

impl Default for Services {
    fn default() -> Self {
        Self {
            accounts: None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Start time and readiness of this node, and the signal that ends its live streams.
pub struct Lifecycle {
    started: Instant,
    pub started_at: DateTime<Utc>,
    ready: AtomicBool,
    draining: AtomicBool,
    /// Turns true when WebSocket and SSE clients should be told to reconnect elsewhere.
    streams_closing: tokio::sync::watch::Sender<bool>,
}

impl Lifecycle {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            started_at: Utc::now(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            streams_closing: tokio::sync::watch::Sender::new(false),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ready for traffic: started and not draining.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.is_draining()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Tells every live stream to close ("going away", reconnect elsewhere).
    pub fn close_streams(&self) {
        self.streams_closing.send_replace(true);
    }

    /// What a live stream watches to learn it must close.
    pub fn streams_closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.streams_closing.subscribe()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    SharedWorkflows(#[from] shared_workflows::LoadError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Policies(#[from] PolicyLoadError),
    #[error("jwt_keys_dir: {0}")]
    Keys(String),
    #[error("cannot open the accounts: {0}")]
    Accounts(String),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("restoring from the database: {0}")]
    Restore(#[from] GatewayError),
    #[error("redis: {0}")]
    Broker(#[from] BrokerError),
}

/// A built, bound, not yet running gateway.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Builds the gateway; must be called inside an actix `System` (the actors need one).
    /// `signing_secret` is required in gated mode. With a database, its migrations run and
    /// what it holds is restored before the server is bound. Call
    /// [`Application::open_accounts`] before serving.
    pub async fn build(
        settings: Settings,
        signing_secret: Option<&Secret>,
    ) -> Result<Self, BuildError> {
        Self::build_with(settings, signing_secret, Services::default()).await
    }

    /// [`Application::build`] with the given clock (and accounts store, if any).
    pub async fn build_with(
        settings: Settings,
        signing_secret: Option<&Secret>,
        services: Services,
    ) -> Result<Self, BuildError> {
        let settings = Arc::new(settings);
        let keys = signing_secret
            .map(|secret| token_keys(&settings, secret))
            .transpose()?;
        let config = gateway_config(&settings)?;
        let listener = TcpListener::bind(&settings.bind).map_err(|source| BuildError::Bind {
            addr: settings.bind.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| BuildError::Bind {
                addr: settings.bind.clone(),
                source,
            })?
            .port();

        let stores = open_stores(&settings, port).await?;
        let accounts = services.accounts.unwrap_or(stores.accounts);
        let broker = stores.broker;
        let gateway = Gateway::start_with(config, stores.persistence);
        let restored = gateway.restore().await?;
        if restored != Default::default() {
            tracing::info!(
                sessions = restored.sessions,
                workflows = restored.workflows,
                executions = restored.executions,
                events = restored.events,
                interrupted = restored.interrupted,
                "restored from the database"
            );
        }
        let metrics = Arc::new(Metrics::new(settings.metrics_by_tenant));
        let tenant_table = gateway.tenant_table();
        let state = web::Data::new(AppState {
            webhooks: Webhooks::new(&settings, gateway.clone(), metrics.clone()),
            gateway,
            auth: Authenticator::new(&settings, keys),
            metrics,
            lifecycle: Lifecycle::new(),
            access: Access {
                strategy: settings.access_strategy,
                roles: Roles::default(),
                policies: Policies::load(settings.policies_path.as_deref())?,
                default_role: settings.default_role.clone(),
                audit: AuditLog::new(accounts.clone(), services.clock.clone()),
                accounts: accounts.clone(),
                clock: services.clock.clone(),
                platform_tenant: settings.default_tenant.as_str().into(),
            },
            tenants: Tenants::new(&settings.default_tenant, tenant_table),
            passwords: Passwords::new(),
            limits: RateLimits::new(&settings),
            cluster: broker.map(|redis| {
                Cluster::new(
                    redis,
                    signing_secret.map_or(b"".as_slice(), |secret| secret.expose().as_bytes()),
                    Duration::from_secs(settings.request_timeout_seconds),
                )
            }),
            accounts,
            clock: services.clock,
            settings: settings.clone(),
        });

        let webhooks = state.webhooks.restore().await?;
        if webhooks > 0 {
            tracing::info!(webhooks, "webhooks restored from the database");
        }

        let app_state = state.clone();
        let server = HttpServer::new(move || {
            let settings = &app_state.settings;
            App::new()
                .app_data(app_state.clone())
                .app_data(web::PayloadConfig::new(settings.max_body_bytes))
                .configure(routes::configure)
                .wrap(from_fn(cluster::forward_to_owner))
                .wrap(from_fn(limits::enforce))
                .wrap(from_fn(auth::gate))
                .wrap(Condition::new(settings.compression, Compress::default()))
                .wrap(Condition::new(
                    !settings.cors_origins.is_empty(),
                    cors(settings),
                ))
                .wrap(from_fn(crate::http::observe::observe))
        })
        .workers(settings.workers)
        .max_connections(settings.max_connections)
        .keep_alive(match settings.keep_alive_seconds {
            0 => KeepAlive::Disabled,
            seconds => KeepAlive::Timeout(Duration::from_secs(seconds)),
        })
        .client_request_timeout(Duration::from_secs(settings.client_request_timeout_seconds))
        // Events leave as bursts of small WebSocket/SSE writes: with Nagle's algorithm each
        // write after the first waits for the client's (delayed, up to 40 ms) ACK.
        .tcp_nodelay(true)
        .shutdown_timeout(settings.shutdown_timeout_seconds)
        // Signals are handled by `shutdown`, which drains in order before stopping the server.
        .disable_signals();
        let server = match tls::server_config(&settings)? {
            Some(tls_config) => server.listen_rustls_0_23(listener, tls_config),
            None => server.listen(listener),
        }
        .map_err(|source| BuildError::Bind {
            addr: settings.bind.clone(),
            source,
        })?
        .run();

        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Loads the tenants (creating the default one on first start), their custom roles and
    /// policies, and creates the `admin` user on first start. Returns the generated admin
    /// password when one was made, for the caller to show once.
    pub async fn open_accounts(&self) -> Result<Option<String>, BuildError> {
        let fail = |error: &dyn std::fmt::Display| BuildError::Accounts(error.to_string());
        self.state
            .tenants
            .open(&*self.state.accounts)
            .await
            .map_err(|e| fail(&e))?;
        for role in self
            .state
            .accounts
            .all_roles()
            .await
            .map_err(|e| fail(&e))?
        {
            self.state.access.roles.put(role);
        }
        for policy in self
            .state
            .accounts
            .all_policies()
            .await
            .map_err(|e| fail(&e))?
        {
            self.state.access.policies.put(policy);
        }
        if self.state.settings.auth_mode == AuthMode::Open {
            return Ok(None);
        }
        // Revocations and spent refresh tokens are kept only until the tokens they stop expire.
        let state = self.state.clone();
        actix_rt::spawn(async move {
            let mut every = tokio::time::interval(REVOCATION_PURGE_INTERVAL);
            loop {
                every.tick().await;
                if let Err(error) = state.accounts.purge_revoked(Utc::now()).await {
                    tracing::warn!(%error, "purging expired revocations failed");
                }
            }
        });
        auth::login::bootstrap_admin(&self.state)
            .await
            .map_err(|e| fail(&e))
    }

    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (see [`crate::shutdown`]).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        if self.state.auth.mode() == AuthMode::Open {
            tracing::warn!(
                "auth_mode=open: no credentials are checked and request user_ids are trusted; for local development only"
            );
        }
        cluster::start_takeovers(self.state.clone());
        cluster::start_shared_state_sync(self.state.clone());
        cluster::start_serving_other_nodes(self.state.clone());
        limits::start_sync(self.state.clone());
        self.state.lifecycle.ready.store(true, Ordering::Release);
        tracing::info!(port = self.port, "kailash gateway ready");
        self.server.await
    }
}

/// Where state lives: the actors' store and the accounts, and the broker shared with the
/// other nodes.
struct Stores {
    persistence: Persistence,
    accounts: Arc<dyn AccountStore>,
    broker: Option<Arc<RedisBroker>>,
}

/// PostgreSQL (migrated) for both when `database_url` is set, else memory; the Redis broker
/// when `redis_url` is set (this node listening on `port`).
async fn open_stores(settings: &Settings, port: u16) -> Result<Stores, BuildError> {
    let (store, accounts): (Arc<dyn Store>, Arc<dyn AccountStore>) = match &settings.database_url {
        None => (
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryAccounts::new()),
        ),
        Some(url) => {
            let store = Arc::new(connect(url.expose(), settings)?);
            let applied = store.migrate().await?;
            tracing::info!(applied, "database migrations are up to date");
            (store.clone(), Arc::new(PgAccounts::new(store)))
        }
    };
    let broker = match &settings.redis_url {
        None => None,
        Some(url) => Some(Arc::new(RedisBroker::new(
            url.expose(),
            broker_options(settings, port),
        )?)),
    };
    Ok(Stores {
        persistence: Persistence {
            store,
            broker: broker.clone().map(|broker| broker as SharedBroker),
            writer_queue_len: settings.store_queue_len,
            retention: Some(settings.retention()),
        },
        accounts,
        broker,
    })
}

/// How this node joins the cluster: its id and address default to the host name (plus a
/// random suffix, so two processes on one host differ) and the bound address.
fn broker_options(settings: &Settings, port: u16) -> BrokerOptions {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|host| crate::config::is_name(host))
        .unwrap_or_else(|| "node".into());
    let node_id = settings.node_id.clone().unwrap_or_else(|| {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        format!("{host}-{}", &suffix[..8])
    });
    let bound_host = settings
        .bind
        .rsplit_once(':')
        .map_or("127.0.0.1", |(h, _)| h);
    let address = settings
        .advertise_address
        .clone()
        .unwrap_or_else(|| match bound_host {
            "0.0.0.0" | "[::]" | "::" => format!("{host}:{port}"),
            bound => format!("{bound}:{port}"),
        });
    BrokerOptions {
        prefix: settings.redis_prefix.clone(),
        node_id,
        address,
        history_len: settings.event_history_len,
        retention: settings.event_retention(),
        timeout: Duration::from_millis(settings.database_timeout_ms),
    }
}

/// The PostgreSQL store for `url` with the pool settings (no connection is made yet).
pub fn connect(url: &str, settings: &Settings) -> Result<PgStore, StoreError> {
    PgStore::new(
        url,
        PgOptions {
            pool_size: settings.database_pool_size,
            timeout: Duration::from_millis(settings.database_timeout_ms),
        },
    )
}

/// The HS256 secret's key, plus the RS256/EdDSA key set when one is configured.
fn token_keys(settings: &Settings, secret: &Secret) -> Result<TokenKeys, BuildError> {
    let secret = secret.expose().as_bytes();
    let algorithm = match settings.jwt_algorithm {
        JwtAlgorithm::HS256 => return Ok(TokenKeys::hs256(secret)),
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    };
    let keys = auth::secret::signing_keys(settings).map_err(|e| BuildError::Keys(e.to_string()))?;
    TokenKeys::asymmetric(secret, algorithm, keys).map_err(|e| BuildError::Keys(e.to_string()))
}

fn gateway_config(settings: &Settings) -> Result<GatewayConfig, BuildError> {
    let node_registry = nodes::native_registry(&NodeEnvironment {
        data_dirs: settings.node_data_dirs.clone(),
        egress_allow: settings.egress_allow.clone(),
        python: Some(nodes::python::PythonPool::start(
            nodes::python::pool_config(settings),
        )),
    });
    let limits = WorkflowLimits {
        max_nodes: settings.max_nodes_per_workflow,
    };
    let shared_workflows = match &settings.workflows_dir {
        Some(dir) => shared_workflows::load(dir, &node_registry, limits)?,
        None => Default::default(),
    };
    Ok(GatewayConfig {
        node_registry: Arc::new(node_registry),
        shared_workflows,
        run_limits: RunLimits {
            node_timeout: settings.node_timeout(),
            execution_timeout: settings.execution_timeout(),
        },
        max_nodes_per_workflow: settings.max_nodes_per_workflow,
        max_executions_per_session: settings.max_executions_per_session,
        max_concurrent_executions: settings.max_concurrent_executions,
        finished_executions_per_session: settings.finished_executions_per_session,
        max_sessions: settings.max_sessions,
        session_timeout: settings.session_timeout(),
        ask_timeout: Duration::from_millis(settings.actor_ask_timeout_ms),
        mailbox_capacity: settings.mailbox_capacity,
        bus: BusConfig {
            history_len: settings.event_history_len,
            retention: settings.event_retention(),
            recent_capacity: settings.recent_events_capacity,
        },
        max_room_members: settings.max_room_members,
        concurrent_sessions_limit: settings.concurrent_sessions_limit,
        tenants: Default::default(),
    })
}

fn cors(settings: &Settings) -> Cors {
    let cors = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allowed_headers([
            "authorization",
            "content-type",
            "x-api-key",
            "last-event-id",
            "x-request-id",
        ])
        .expose_headers(["x-request-id", "retry-after", "www-authenticate"])
        .max_age(3600);
    if settings.cors_origins.iter().any(|o| o == "*") {
        cors.allow_any_origin()
    } else {
        settings
            .cors_origins
            .iter()
            .fold(cors, |cors, origin| cors.allowed_origin(origin))
    }
}
