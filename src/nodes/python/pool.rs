//! [`PythonPool`]: pre-started, reused `python3` worker processes (the script is
//! `worker.py`, passed with `-c`) and the one-request-at-a-time conversation with each.
//!
//! Ownership: an idle worker sits in the pool; a run takes it out in a [`Lease`] and puts it
//! back only after a clean answer. Everything else — a crash, a hang past the wall clock, a
//! fatal error, an oversized frame, or the run's future being dropped (cancel, the engine's
//! node timeout) — drops the worker instead, and dropping a worker kills its process group
//! at once. A replacement is started in the background, so other runs never notice.
//!
//! A worker runs in its own process group with an empty environment, its working directory
//! in the first data directory, and stderr drained into a bounded tail that explains a
//! worker that would not start or died.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use kailash_actors::engine::node::NodeError;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, BufReader},
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::Semaphore,
};

use super::protocol::{self, FrameError, Ready, Response};

const WORKER_SCRIPT: &str = include_str!("worker.py");
/// Time a new worker has to answer its configuration frame.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes of a worker's stderr kept for diagnostics.
const STDERR_TAIL: usize = 2048;
/// Room for the response envelope around the output the worker itself bounds.
const FRAME_SLACK: usize = 64 * 1024;

/// How to start workers and what they enforce.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub executable: String,
    pub workers: usize,
    /// Runs after which a worker is replaced (0: never).
    pub max_runs_per_worker: u32,
    pub wall_clock: Duration,
    pub max_output_bytes: usize,
    /// The first data directory; the workers' working directory.
    pub working_dir: Option<PathBuf>,
    /// The configuration frame every worker gets (limits, imports, data directories).
    pub worker_config: Value,
}

/// A handle to the pool; cheap to clone.
#[derive(Clone)]
pub struct PythonPool {
    inner: Arc<Inner>,
}

struct Inner {
    config: PoolConfig,
    config_frame: Vec<u8>,
    idle: Mutex<Vec<Worker>>,
    /// One permit per worker: a run holds one while it talks to its worker.
    permits: Arc<Semaphore>,
    /// Workers alive now (idle, leased or starting), so refills do not overshoot. Shared
    /// with the workers (not the pool itself: a worker holding the pool would keep it, and
    /// so every idle worker, alive forever).
    alive: Arc<AtomicUsize>,
    available: bool,
}

impl std::fmt::Debug for PythonPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonPool")
            .field("executable", &self.inner.config.executable)
            .field("workers", &self.inner.config.workers)
            .field("available", &self.inner.available)
            .finish()
    }
}

impl PythonPool {
    /// A pool for `config`. When a tokio runtime is running, its workers start now in the
    /// background; without the executable the pool is unavailable (and says so in the log).
    pub fn start(config: PoolConfig) -> Self {
        let available = find_executable(&config.executable).is_some();
        if !available {
            tracing::warn!(
                python = %config.executable,
                "Python executable not found: workflows with PythonCodeNode or DataTransformer \
                 will be refused (400 python_unavailable)"
            );
        }
        let pool = Self {
            inner: Arc::new(Inner {
                config_frame: serde_json::to_vec(&config.worker_config)
                    .expect("the worker configuration serializes"),
                permits: Arc::new(Semaphore::new(config.workers)),
                idle: Mutex::new(Vec::with_capacity(config.workers)),
                alive: Arc::new(AtomicUsize::new(0)),
                available,
                config,
            }),
        };
        if available && tokio::runtime::Handle::try_current().is_ok() {
            for _ in 0..pool.inner.config.workers {
                pool.inner.refill();
            }
        }
        pool
    }

    pub fn is_available(&self) -> bool {
        self.inner.available
    }

    /// Sends `request` (encoded JSON) to a worker and returns its answer. The code is
    /// killed, and its worker replaced, when it outlives the wall clock or when this future
    /// is dropped first.
    pub(crate) async fn run(&self, request: &[u8]) -> Result<Response, NodeError> {
        if !self.inner.available {
            return Err(NodeError::new(format!(
                "Python is not available on this gateway ('{}' not found)",
                self.inner.config.executable
            )));
        }
        let _permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| NodeError::new("the Python worker pool is closed"))?;
        let reused = self.inner.idle.lock().expect("pool lock").pop();
        let worker = match reused {
            Some(worker) => worker,
            None => Worker::start(&self.inner).await?,
        };
        let mut lease = Lease {
            worker: Some(worker),
            inner: &self.inner,
        };
        let wall_clock = self.inner.config.wall_clock;
        let max_frame = self.inner.config.max_output_bytes + FRAME_SLACK;
        let worker = lease.worker.as_mut().expect("a leased worker");
        let outcome = tokio::time::timeout(wall_clock, worker.call(request, max_frame)).await;
        match outcome {
            Ok(Ok(response)) => {
                if !response.fatal {
                    lease.give_back();
                }
                Ok(response)
            }
            Ok(Err(error)) => {
                let worker = lease.worker.as_mut().expect("a leased worker");
                let max_output = self.inner.config.max_output_bytes;
                Err(NodeError::new(worker.failure(error, max_output).await))
            }
            Err(_) => Err(NodeError::new(format!(
                "the code ran longer than {} s and was stopped",
                wall_clock.as_secs_f64()
            ))),
        }
    }
}

impl Inner {
    /// Starts a worker in the background when fewer than the configured number are alive.
    fn refill(self: &Arc<Self>) {
        if self.alive.load(Ordering::Acquire) >= self.config.workers {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = Arc::clone(self);
        runtime.spawn(async move {
            match Worker::start(&inner).await {
                Ok(worker) => inner.park(worker),
                Err(error) => tracing::warn!(%error, "a Python worker did not start"),
            }
        });
    }

    /// Puts a healthy worker back, unless it is surplus or has served its runs.
    fn park(self: &Arc<Self>, worker: Worker) {
        let max_runs = self.config.max_runs_per_worker;
        let spent = max_runs > 0 && worker.runs >= max_runs;
        let surplus = self.alive.load(Ordering::Acquire) > self.config.workers;
        if spent || surplus {
            drop(worker);
            self.refill();
            return;
        }
        self.idle.lock().expect("pool lock").push(worker);
    }
}

/// A worker taken out of the pool for one run. Dropped while still holding it (failure,
/// wall clock, or the run itself dropped), it kills the worker and starts a replacement.
struct Lease<'a> {
    worker: Option<Worker>,
    inner: &'a Arc<Inner>,
}

impl Lease<'_> {
    fn give_back(&mut self) {
        if let Some(mut worker) = self.worker.take() {
            worker.runs += 1;
            self.inner.park(worker);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            drop(worker);
            self.inner.refill();
        }
    }
}

/// One `python3` process running `worker.py`.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_tail: Arc<Mutex<VecDeque<u8>>>,
    runs: u32,
    alive: Arc<AtomicUsize>,
}

impl Worker {
    /// Spawns a worker, sends its configuration and waits for it to say it is ready.
    async fn start(inner: &Arc<Inner>) -> Result<Worker, NodeError> {
        let config = &inner.config;
        let mut command = Command::new(&config.executable);
        // -I: no user site, no PYTHON* variables, no script directory on sys.path;
        // -B: no .pyc files written.
        command
            .args(["-I", "-B", "-c", WORKER_SCRIPT])
            .env_clear()
            .envs([
                ("LANG", "C.UTF-8"),
                // Numeric libraries would start a thread per core; one is all a run gets.
                ("OPENBLAS_NUM_THREADS", "1"),
                ("OMP_NUM_THREADS", "1"),
                ("MKL_NUM_THREADS", "1"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(dir) = config.working_dir.as_deref().filter(|d| d.is_dir()) {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|error| {
            NodeError::new(format!(
                "cannot start the Python worker ('{}'): {error}",
                config.executable
            ))
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(NodeError::new("the Python worker has no pipes"));
        };
        inner.alive.fetch_add(1, Ordering::AcqRel);
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        tokio::spawn(drain(stderr, Arc::clone(&stderr_tail)));
        let mut worker = Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr_tail,
            runs: 0,
            alive: Arc::clone(&inner.alive),
        };
        let handshake = async {
            protocol::write_frame(&mut worker.stdin, &inner.config_frame).await?;
            let frame = protocol::read_frame(&mut worker.stdout, FRAME_SLACK).await?;
            Ok::<Ready, FrameError>(serde_json::from_slice(&frame)?)
        };
        match tokio::time::timeout(START_TIMEOUT, handshake).await {
            Ok(Ok(ready)) if ready.ready => {
                tracing::debug!(python = %ready.python, "Python worker ready");
                Ok(worker)
            }
            Ok(Ok(_)) => Err(NodeError::new("the Python worker did not report ready")),
            Ok(Err(error)) => Err(NodeError::new(format!(
                "the Python worker did not start: {}",
                worker.failure(error, config.max_output_bytes).await
            ))),
            Err(_) => Err(NodeError::new(format!(
                "the Python worker did not start within {} s",
                START_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn call(&mut self, request: &[u8], max_frame: usize) -> Result<Response, FrameError> {
        protocol::write_frame(&mut self.stdin, request).await?;
        let frame = protocol::read_frame(&mut self.stdout, max_frame).await?;
        Ok(serde_json::from_slice(&frame)?)
    }

    /// What went wrong with a worker that broke the protocol: how it ended when it died,
    /// with the tail of its stderr.
    async fn failure(&mut self, error: FrameError, max_output_bytes: usize) -> String {
        let reason = match error {
            FrameError::Closed => {
                // The pipe closes as the process ends; give it a moment to be reaped.
                let status = tokio::time::timeout(Duration::from_millis(500), self.child.wait())
                    .await
                    .ok()
                    .and_then(Result::ok);
                status.map_or_else(|| "the Python worker stopped".to_owned(), describe_exit)
            }
            FrameError::TooLarge(size) => {
                format!("the output is {size} bytes; the limit is {max_output_bytes}")
            }
            other => other.to_string(),
        };
        let tail: Vec<u8> = self
            .stderr_tail
            .lock()
            .expect("stderr lock")
            .iter()
            .copied()
            .collect();
        let tail = String::from_utf8_lossy(&tail);
        let last = tail.trim().lines().last().unwrap_or_default().to_owned();
        if last.is_empty() {
            reason
        } else {
            format!("{reason} ({last})")
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::AcqRel);
        // While the leader runs its group exists and is ours: kill everything in it (the
        // leader and anything it managed to start). kill_on_drop then reaps the leader.
        if let (Ok(None), Some(pid)) = (self.child.try_wait(), self.child.id())
            && let Ok(pid) = i32::try_from(pid)
        {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// How a worker process ended, in words.
fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) if signal == Signal::SIGXCPU as i32 => {
            "the code exceeded its CPU time limit and was stopped".to_owned()
        }
        Some(signal) if signal == Signal::SIGXFSZ as i32 => {
            "the code exceeded the file size limit and was stopped".to_owned()
        }
        Some(signal) => format!(
            "the Python worker was killed by {}",
            Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.to_string())
        ),
        None => format!(
            "the Python worker exited unexpectedly (status {})",
            status.code().unwrap_or(-1)
        ),
    }
}

/// Keeps the last [`STDERR_TAIL`] bytes a worker writes to stderr; the rest is dropped.
async fn drain(mut stderr: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<u8>>>) {
    let mut buffer = [0u8; 1024];
    while let Ok(read @ 1..) = stderr.read(&mut buffer).await {
        let mut tail = tail.lock().expect("stderr lock");
        tail.extend(&buffer[..read]);
        let excess = tail.len().saturating_sub(STDERR_TAIL);
        tail.drain(..excess);
    }
}

/// Where `executable` is: a path as given, or the first match on `PATH`.
fn find_executable(executable: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |path: &Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if executable.contains('/') {
        let path = PathBuf::from(executable);
        return runnable(&path).then_some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(executable))
            .find(|path| runnable(path))
    })
}
