//! The broker port on Redis: what makes several gateway nodes one gateway.
//!
//! [`RedisBroker`] owns this node's two Redis connections and the tasks around them:
//! - the command connection (a `ConnectionManager`, reconnecting by itself): event
//!   publication ([`events`]: one Lua script numbers, appends to the session's stream and
//!   publishes each event), stream reads for resumes, and the node's heartbeat ([`nodes`]);
//! - the subscriber connection (RESP3, resubscribing by itself after a reconnect), which
//!   receives every node's events on one channel and hands them to the event bus, and the
//!   requests other nodes send this one ([`control`]) on its own channel.
//!
//! Every key and channel starts with the configured prefix (`KAILASH_REDIS_PREFIX`), so
//! several deployments or test runs can share one Redis. All Redis work runs on the
//! adapter's own small tokio runtime, never on an actix thread (as the PostgreSQL adapter).
//!
//! When Redis stops answering, the adapter says so ([`RedisBroker::health`]: `/health`
//! reports the node `degraded`), hands events back for local delivery instead of waiting,
//! and probes with a growing pause until Redis answers again.

mod control;
mod counts;
mod events;
mod nodes;
mod owners;
mod runs;

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use actix::Recipient;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use kailash_actors::{
    TenantId,
    broker::{
        Broker, BrokerError, Claim, FromBroker, Outbound, SessionKey, SessionLimits, TenantCount,
    },
    store::{EventRecord, Fence},
};
use redis::{
    Client, ProtocolVersion, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::sync::mpsc;
use uuid::Uuid;

pub use self::{control::IncomingRequest, nodes::NodeInfo, owners::Route};

/// How this node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Prefix of every key and channel.
    pub prefix: String,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// Where other nodes and operators reach this node (`host:port`).
    pub address: String,
    /// Events kept in each session's shared stream.
    pub history_len: usize,
    /// How long a session's stream is kept after its last event.
    pub retention: Duration,
    /// Bound of each Redis command's wait.
    pub timeout: Duration,
}

/// Whether Redis answers, as `/health` reports it.
#[derive(Debug, Clone, Default)]
pub struct BrokerHealth {
    /// The problem, while Redis is not answering.
    pub problem: Option<String>,
    /// When the current state began.
    pub since: Option<DateTime<Utc>>,
}

/// Shared between the adapter's tasks: whether Redis currently answers.
#[derive(Default)]
struct Link {
    state: Mutex<BrokerHealth>,
}

impl Link {
    fn is_up(&self) -> bool {
        self.state.lock().expect("link state").problem.is_none()
    }

    /// Records a failure; answers whether the link was up until now.
    fn down(&self, problem: impl ToString) -> bool {
        let mut state = self.state.lock().expect("link state");
        let was_up = state.problem.is_none();
        if was_up {
            state.since = Some(Utc::now());
        }
        state.problem = Some(problem.to_string());
        was_up
    }

    /// Records a success; answers whether the link was down until now.
    fn up(&self) -> bool {
        let mut state = self.state.lock().expect("link state");
        let was_down = state.problem.take().is_some();
        if was_down {
            state.since = Some(Utc::now());
        }
        was_down
    }
}

/// What the adapter's tasks share.
struct Shared {
    options: BrokerOptions,
    commands: ConnectionManager,
    subscriber: ConnectionManager,
    link: Link,
    started_at: DateTime<Utc>,
    /// The event bus, once attached.
    bus: OnceLock<Recipient<FromBroker>>,
    /// The sessions this node has claimed, to claim again if Redis lost them (it restarted
    /// without persistence): see `nodes::heartbeat`.
    claimed: Mutex<HashSet<SessionKey>>,
    /// The runs this node holds a lease on, renewed by the heartbeat.
    running: Mutex<HashSet<Uuid>>,
    /// The tenant leases this node holds (`counts`), renewed by the heartbeat.
    leases: Mutex<counts::Leases>,
    /// Sessions other nodes took over while this one was cut off, until the node stops
    /// serving them (see [`RedisBroker::lost_sessions`]).
    lost: Mutex<Vec<SessionKey>>,
    /// Requests to and from other nodes.
    control: control::Control,
    scripts: Scripts,
    /// Set when the node leaves the cluster on shutdown: the heartbeat stops.
    left: AtomicBool,
    /// Held by the heartbeat while it beats, so leaving cannot interleave with a beat that
    /// would write the node's record back.
    beating: tokio::sync::Mutex<()>,
}

/// The adapter's Lua scripts, hashed once (a call sends only the hash; Redis is sent the
/// script again when it lost it).
struct Scripts {
    publish: Script,
    route: Script,
    claim: Script,
    orphans: Script,
    reserve: Script,
    hold: Script,
    count_workflow: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            publish: Script::new(events::PUBLISH_SCRIPT),
            route: Script::new(owners::ROUTE_SCRIPT),
            claim: Script::new(owners::CLAIM_SCRIPT),
            orphans: Script::new(owners::ORPHANS_SCRIPT),
            reserve: Script::new(runs::RESERVE_SCRIPT),
            hold: Script::new(counts::HOLD_SCRIPT),
            count_workflow: Script::new(counts::COUNT_WORKFLOW_SCRIPT),
        }
    }
}

impl Shared {
    /// A key or channel of this deployment.
    fn key(&self, parts: std::fmt::Arguments<'_>) -> String {
        format!("{}:{parts}", self.options.prefix)
    }

    /// Sends a pipeline of `script`'s invocations. A pipelined invocation sends only the
    /// script's hash, so where Redis does not know the script yet (its first use, or Redis
    /// restarted) it is loaded and the pipeline sent again.
    async fn query_scripted<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        script: &redis::Script,
    ) -> redis::RedisResult<T> {
        let mut connection = self.commands.clone();
        match pipe.query_async(&mut connection).await {
            Err(error)
                if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                script.prepare_invoke().load_async(&mut connection).await?;
                pipe.query_async(&mut connection).await
            }
            result => result,
        }
    }
}

/// The Redis broker of one node.
pub struct RedisBroker {
    shared: Arc<Shared>,
    outbound: mpsc::Sender<Outbound>,
    /// Taken by [`Broker::attach`], which starts the publisher with it.
    outbound_rx: Mutex<Option<mpsc::Receiver<Outbound>>>,
    /// Pushes (pub/sub messages) from the subscriber connection, until attached.
    pushes: Mutex<Option<mpsc::UnboundedReceiver<redis::PushInfo>>>,
    /// Requests from other nodes, until taken by [`RedisBroker::take_requests`].
    requests: Mutex<Option<mpsc::UnboundedReceiver<IncomingRequest>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Events waiting for Redis before the bus gets them back for local delivery.
const OUTBOUND_QUEUE: usize = 65_536;

impl RedisBroker {
    /// Prepares the connections to `url` (made lazily: a node starts, degraded, while Redis
    /// is away) and starts the heartbeat.
    pub fn new(url: &str, options: BrokerOptions) -> Result<Self, BrokerError> {
        let failed = |error: redis::RedisError| BrokerError(error.to_string());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kailash-broker")
            .enable_all()
            .build()
            .map_err(|error| BrokerError(error.to_string()))?;
        let client = Client::open(url).map_err(failed)?;
        let resp3 = client.get_connection_info().clone().set_redis_settings(
            client
                .get_connection_info()
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3),
        );
        let subscriber_client = Client::open(resp3).map_err(failed)?;
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let reconnecting = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let (commands, subscriber) = {
            let _inside = runtime.enter();
            let commands = ConnectionManager::new_lazy_with_config(client, reconnecting.clone())
                .map_err(failed)?;
            let subscriber = ConnectionManager::new_lazy_with_config(
                subscriber_client,
                reconnecting
                    .set_push_sender(push_tx)
                    .set_automatic_resubscription(),
            )
            .map_err(failed)?;
            (commands, subscriber)
        };
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (control, requests) = control::Control::new();
        let shared = Arc::new(Shared {
            options,
            commands,
            subscriber,
            link: Link::default(),
            started_at: Utc::now(),
            bus: OnceLock::new(),
            claimed: Mutex::default(),
            running: Mutex::default(),
            leases: Mutex::default(),
            lost: Mutex::default(),
            control,
            scripts: Scripts::default(),
            left: AtomicBool::new(false),
            beating: tokio::sync::Mutex::new(()),
        });
        runtime.spawn(nodes::heartbeat(shared.clone()));
        Ok(Self {
            shared,
            outbound,
            outbound_rx: Mutex::new(Some(outbound_rx)),
            pushes: Mutex::new(Some(push_rx)),
            requests: Mutex::new(Some(requests)),
            runtime: Some(runtime),
        })
    }

    fn runtime(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives as long as the broker")
            .handle()
    }

    /// Whether Redis answers.
    pub fn health(&self) -> BrokerHealth {
        self.shared.link.state.lock().expect("link state").clone()
    }

    pub fn options(&self) -> &BrokerOptions {
        &self.shared.options
    }

    /// Where `session_id`'s requests are served (see [`owners`]).
    pub async fn route(&self, session_id: Uuid) -> Result<Route, BrokerError> {
        let shared = self.shared.clone();
        self.on_runtime(async move { owners::route(&shared, session_id).await })
            .await
    }

    /// The sessions this node owned before it restarted (with the same node id).
    pub async fn own_sessions(&self) -> Result<Vec<SessionKey>, BrokerError> {
        let shared = self.shared.clone();
        self.on_runtime(async move { owners::own_sessions(&shared).await })
            .await
    }

    /// The sessions this node served that another node took over while this one was cut
    /// off from Redis (each answered once): the node must stop serving them.
    pub fn lost_sessions(&self) -> Vec<SessionKey> {
        std::mem::take(&mut *self.shared.lost.lock().expect("lost sessions"))
    }

    /// Leaves the cluster at the end of a drain, once this node's runs have ended and its
    /// writes are flushed: waits (up to `within`) for the events still queued for Redis,
    /// stops the heartbeat and deletes this node's record. A survivor then finds its
    /// sessions without an owner that lives, and takes them over at the next request or
    /// sweep (≤ 2 s), instead of after the heartbeat's lapse.
    pub async fn leave(&self, within: Duration) -> Result<(), BrokerError> {
        let deadline = tokio::time::Instant::now() + within;
        while self.outbound.capacity() < self.outbound.max_capacity()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.shared.left.store(true, Ordering::Release);
        let shared = self.shared.clone();
        self.on_runtime(async move { nodes::leave(&shared).await })
            .await
    }

    /// Takes over the sessions of lost nodes; answers them, now owned here.
    pub async fn orphans(&self) -> Result<Vec<SessionKey>, BrokerError> {
        let shared = self.shared.clone();
        self.on_runtime(async move { owners::orphans(&shared).await })
            .await
    }

    /// Runs `work` on the adapter's runtime; its error (Redis's, or a decoding one) becomes
    /// the port's.
    fn on_runtime<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, E>> + Send + 'static,
    ) -> impl Future<Output = Result<T, BrokerError>> + 'static {
        let task = self.runtime().spawn(work);
        async move {
            task.await
                .map_err(|error| BrokerError(error.to_string()))?
                .map_err(|error| BrokerError(error.to_string()))
        }
    }

    /// Adds each `(counter, amount, ttl seconds)` to its shared counter (created, expiring
    /// after the ttl, if new); answers the counters' totals, in order.
    pub async fn add_to_counters(
        &self,
        counters: Vec<(String, u64, u64)>,
    ) -> Result<Vec<u64>, BrokerError> {
        let shared = self.shared.clone();
        self.on_runtime(async move {
            let mut pipe = redis::pipe();
            for (counter, add, ttl) in &counters {
                let key = shared.key(format_args!("rate:{counter}"));
                pipe.incr(&key, *add).expire(&key, *ttl as i64).ignore();
            }
            pipe.query_async::<Vec<u64>>(&mut shared.commands.clone())
                .await
        })
        .await
    }

    /// The requests other nodes send this one (once: the node serves them from one task).
    pub fn take_requests(&self) -> Option<mpsc::UnboundedReceiver<IncomingRequest>> {
        self.requests.lock().expect("request queue").take()
    }

    /// Sends `body` to the node `node_id` and answers its answer, waiting up to `within`.
    pub async fn ask(
        &self,
        node_id: &str,
        body: serde_json::Value,
        within: Duration,
    ) -> Result<serde_json::Value, BrokerError> {
        let (shared, node_id) = (self.shared.clone(), node_id.to_owned());
        self.on_runtime(async move { control::ask(&shared, &node_id, body, within).await })
            .await
    }

    /// The live nodes of the cluster (those whose heartbeat has not lapsed).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, BrokerError> {
        let shared = self.shared.clone();
        self.on_runtime(async move { nodes::live(&shared).await })
            .await
    }
}

impl Broker for RedisBroker {
    fn node_id(&self) -> &str {
        &self.shared.options.node_id
    }

    fn attach(&self, bus: Recipient<FromBroker>) {
        let outbound = self.outbound_rx.lock().expect("outbound queue").take();
        let pushes = self.pushes.lock().expect("push queue").take();
        let (Some(outbound), Some(pushes), Ok(())) =
            (outbound, pushes, self.shared.bus.set(bus.clone()))
        else {
            tracing::error!("the broker was attached twice; the second bus gets nothing");
            return;
        };
        self.runtime()
            .spawn(events::publish_loop(self.shared.clone(), outbound));
        self.runtime()
            .spawn(events::receive_loop(self.shared.clone(), pushes, bus));
    }

    fn publish(&self, event: Outbound) {
        if let Err(full_or_closed) = self.outbound.try_send(event) {
            // The bus delivers it here alone; other nodes will see a `seq` jump.
            let event = match full_or_closed {
                mpsc::error::TrySendError::Full(event)
                | mpsc::error::TrySendError::Closed(event) => event,
            };
            tracing::warn!("the broker's queue is full; an event is delivered on this node only");
            events::hand_back(&self.shared, vec![event]);
        }
    }

    fn claim(
        &self,
        session: &SessionKey,
        limits: Option<SessionLimits>,
    ) -> BoxFuture<'static, Result<Claim, BrokerError>> {
        let (shared, session) = (self.shared.clone(), session.clone());
        Box::pin(self.on_runtime(async move { owners::claim(&shared, &session, limits).await }))
    }

    fn owns(&self, session_id: Uuid) -> BoxFuture<'static, Result<bool, BrokerError>> {
        let shared = self.shared.clone();
        Box::pin(self.on_runtime(async move {
            Ok::<_, redis::RedisError>(owners::route(&shared, session_id).await? == Route::Here)
        }))
    }

    fn release(&self, session: &SessionKey) {
        let (shared, session) = (self.shared.clone(), session.clone());
        self.runtime().spawn(async move {
            if let Err(error) = owners::release(&shared, &session).await {
                tracing::warn!(%error, session_id = %session.session_id,
                    "could not release an ended session's owner key");
            }
        });
    }

    fn reserve_run(
        &self,
        execution_id: Uuid,
        limit: usize,
    ) -> BoxFuture<'static, Result<Option<Fence>, BrokerError>> {
        let shared = self.shared.clone();
        Box::pin(self.on_runtime(async move { runs::reserve(&shared, execution_id, limit).await }))
    }

    fn resume_run(
        &self,
        execution_id: Uuid,
        limit: usize,
    ) -> BoxFuture<'static, Result<bool, BrokerError>> {
        let shared = self.shared.clone();
        Box::pin(self.on_runtime(async move { runs::resume(&shared, execution_id, limit).await }))
    }

    fn end_run(&self, execution_id: Uuid) {
        let shared = self.shared.clone();
        self.runtime().spawn(async move {
            if let Err(error) = runs::end(&shared, execution_id).await {
                // The lease lapses by itself within `runs::LEASE`.
                tracing::debug!(%error, %execution_id, "could not end a run's lease");
            }
        });
    }

    fn count_workflow(
        &self,
        session: &SessionKey,
        max: Option<u64>,
    ) -> BoxFuture<'static, Result<bool, BrokerError>> {
        let (shared, session) = (self.shared.clone(), session.clone());
        Box::pin(
            self.on_runtime(async move { counts::count_workflow(&shared, &session, max).await }),
        )
    }

    fn hold(
        &self,
        count: TenantCount,
        tenant_id: &TenantId,
        item: Uuid,
        max: u64,
    ) -> BoxFuture<'static, Result<bool, BrokerError>> {
        let (shared, tenant_id) = (self.shared.clone(), tenant_id.clone());
        Box::pin(
            self.on_runtime(
                async move { counts::hold(&shared, count, &tenant_id, item, max).await },
            ),
        )
    }

    fn let_go(&self, count: TenantCount, tenant_id: &TenantId, item: Uuid) {
        let (shared, tenant_id) = (self.shared.clone(), tenant_id.clone());
        self.runtime().spawn(async move {
            if let Err(error) = counts::let_go(&shared, count, &tenant_id, item).await {
                // The lease lapses by itself within `runs::LEASE`.
                tracing::debug!(%error, %item, "could not give back a tenant lease");
            }
        });
    }

    fn events_after(
        &self,
        session_id: Uuid,
        after_seq: u64,
    ) -> BoxFuture<'static, Result<Vec<EventRecord>, BrokerError>> {
        let shared = self.shared.clone();
        Box::pin(
            self.on_runtime(
                async move { events::read_stream(&shared, session_id, after_seq).await },
            ),
        )
    }
}

impl Drop for RedisBroker {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
