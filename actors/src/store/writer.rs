//! [`StoreWriter`]: the bounded, ordered background writer of high-volume facts (events,
//! node runs, finished executions, session activity and ends).
//!
//! One thread drains a bounded queue in batches, in acceptance order (each gathering for up
//! to [`GATHER`]), and hands each batch to [`Store::write_batch`], up to
//! [`CONCURRENT_BATCHES`] at once; a batch that fails is
//! retried (with a growing pause) until it is written, so nothing accepted is dropped while
//! the database is away. When the queue is full, [`StoreWriter::write`] blocks its caller
//! until there is room: backpressure, not loss.
//!
//! Batches may commit out of order, which is safe because every write commutes: events and
//! node runs are inserts keyed by `seq` / node (readers order by `seq`), finished
//! executions and session ends set final values, activity only moves forward. A flush
//! answers once every batch accepted before it is written.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    thread::Thread,
    time::{Duration, Instant},
};

use tokio::sync::{Semaphore, oneshot};

use super::{Store, Write};

/// Most writes applied in one `write_batch` call.
const MAX_BATCH: usize = 2000;
/// Batches written at once. Batches commute (see the module docs), so several can commit
/// concurrently, which keeps up with the engine while one batch waits on the database.
/// Not more: each slot freed early splits the queue into smaller batches, and a batch's
/// fixed cost (statements, commit) then dominates — four slots cost the PostgreSQL server
/// about 40 % more CPU per execution than two, with no gain in throughput.
const CONCURRENT_BATCHES: u32 = 2;
/// How long a batch gathers writes after its first one before it is handed on (unless it
/// fills up, or a flush asks for it). A batch's fixed cost (a transaction, a statement per
/// kind of write, each planned and executed) is paid per batch, and a node's runs are
/// folded into its execution's final update only when both are in one batch; without the
/// wait a batch took whatever a millisecond had brought (a few executions' worth).
/// Nothing waits on it but the history's durability, which a flush does not wait for.
const GATHER: Duration = Duration::from_millis(10);
/// Pause after the first failed attempt; doubles up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

// Nearly every command is a write; boxing it to shrink the rare flush would cost an
// allocation per event.
#[allow(clippy::large_enum_variant)]
enum Command {
    Write(Write),
    /// Answered once everything accepted before it is written.
    Flush(oneshot::Sender<()>),
}

/// A handle on the writer; cheap to clone. The thread ends when the last handle is dropped,
/// after writing what is queued.
#[derive(Clone)]
pub struct StoreWriter {
    queue: SyncSender<Command>,
    /// The writer thread, woken by a flush (writes never wake it: see [`gather`]).
    thread: Thread,
    stats: Arc<WriterStats>,
}

/// What the writer has done, for `/health/detailed`, `/api/stats` and the benchmark.
#[derive(Debug, Default)]
pub struct WriterStats {
    accepted: AtomicU64,
    written: AtomicU64,
    events_written: AtomicU64,
    batches: AtomicU64,
    failed_attempts: AtomicU64,
    /// Writers that had to wait for room in the queue.
    backpressure_waits: AtomicU64,
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl WriterStats {
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub fn events_written(&self) -> u64 {
        self.events_written.load(Ordering::Relaxed)
    }

    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    pub fn failed_attempts(&self) -> u64 {
        self.failed_attempts.load(Ordering::Relaxed)
    }

    pub fn backpressure_waits(&self) -> u64 {
        self.backpressure_waits.load(Ordering::Relaxed)
    }

    /// Writes accepted and not yet written.
    pub fn pending(&self) -> u64 {
        self.accepted().saturating_sub(self.written())
    }

    /// Why the last batch failed, while the writer is still retrying it.
    pub fn failing(&self) -> Option<String> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl StoreWriter {
    /// Starts the writer thread over `store`, with room for `capacity` queued writes.
    pub fn start(store: Arc<dyn Store>, capacity: usize) -> Self {
        let (queue, receiver) = sync_channel(capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("kailash-store-writer".into())
            .spawn(move || drain(store, receiver, thread_stats))
            .expect("the store writer thread starts")
            .thread()
            .clone();
        Self {
            queue,
            thread,
            stats,
        }
    }

    /// Queues a write; waits for room when the queue is full.
    pub fn write(&self, write: Write) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let command = match self.queue.try_send(Command::Write(write)) {
            Ok(()) => return,
            Err(TrySendError::Full(command)) => command,
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("the store writer stopped; a write is lost");
                return;
            }
        };
        self.stats
            .backpressure_waits
            .fetch_add(1, Ordering::Relaxed);
        if self.queue.send(command).is_err() {
            tracing::error!("the store writer stopped; a write is lost");
        }
    }

    /// Waits until everything queued before this call is written.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        let (queue, thread) = (self.queue.clone(), self.thread.clone());
        // The queue may be full: wait for room off the async thread.
        let queued = tokio::task::spawn_blocking(move || {
            let queued = queue.send(Command::Flush(done)).is_ok();
            // A gathering batch does not wait out its time for a flush.
            thread.unpark();
            queued
        })
        .await
        .unwrap_or(false);
        if queued {
            let _ = written.await;
        }
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }
}

/// The writer thread: batch, hand the batch to one of [`CONCURRENT_BATCHES`] write slots
/// (waiting for a free one), repeat; ends when every handle is gone, after the queue and
/// the batches in flight are written.
fn drain(store: Arc<dyn Store>, receiver: Receiver<Command>, stats: Arc<WriterStats>) {
    // Drives the batches in flight while this thread waits on the queue. The store's own I/O
    // may run elsewhere (the PostgreSQL adapter has its own runtime).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("kailash-store-batches")
        .enable_all()
        .build()
        .expect("the store writer's runtime starts");
    let slots = Arc::new(Semaphore::new(CONCURRENT_BATCHES as usize));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut flushes = Vec::new();
    while let Ok(first) = receiver.recv() {
        take(first, &mut batch, &mut flushes);
        gather(&receiver, &mut batch, &mut flushes);
        if !batch.is_empty() {
            // With every slot busy this waits, the queue fills, and writers wait: backpressure.
            let slot = runtime
                .block_on(slots.clone().acquire_owned())
                .expect("the slots are never closed");
            let batch = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
            let (store, stats) = (store.clone(), stats.clone());
            runtime.spawn(async move {
                write_until_written(store.as_ref(), &batch, &stats).await;
                drop(slot);
            });
        }
        if !flushes.is_empty() {
            // Everything accepted before the flush is written once every slot is free.
            drop(wait_for_batches_in_flight(&runtime, &slots));
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }
    drop(wait_for_batches_in_flight(&runtime, &slots));
}

fn take(command: Command, batch: &mut Vec<Write>, flushes: &mut Vec<oneshot::Sender<()>>) {
    match command {
        Command::Write(write) => batch.push(write),
        Command::Flush(done) => flushes.push(done),
    }
}

/// Fills `batch` for up to [`GATHER`] after its first write, until it is full or a flush
/// asks for it. The thread sleeps through the gather and takes what arrived when it wakes:
/// waiting on the queue instead would wake it for every write, and each wake-up costs the
/// writing thread (the actors' thread) a system call and, on a busy machine, its CPU —
/// about 15,000 forced context switches a second under load.
fn gather(
    receiver: &Receiver<Command>,
    batch: &mut Vec<Write>,
    flushes: &mut Vec<oneshot::Sender<()>>,
) {
    let until = Instant::now() + GATHER;
    loop {
        while batch.len() < MAX_BATCH && flushes.is_empty() {
            match receiver.try_recv() {
                Ok(command) => take(command, batch, flushes),
                // Disconnected: the last handle is gone; what is here is written, and the
                // next `recv` ends the thread.
                Err(_) => break,
            }
        }
        let now = Instant::now();
        if batch.len() >= MAX_BATCH || !flushes.is_empty() || now >= until {
            return;
        }
        std::thread::park_timeout(until - now);
    }
}

fn wait_for_batches_in_flight<'a>(
    runtime: &tokio::runtime::Runtime,
    slots: &'a Semaphore,
) -> tokio::sync::SemaphorePermit<'a> {
    runtime
        .block_on(slots.acquire_many(CONCURRENT_BATCHES))
        .expect("the slots are never closed")
}

async fn write_until_written(store: &dyn Store, batch: &[Write], stats: &WriterStats) {
    let mut pause = FIRST_RETRY_PAUSE;
    loop {
        match store.write_batch(batch).await {
            Ok(()) => break,
            Err(error) => {
                stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                if !stats.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(%error, pending = batch.len(), "store writes are failing; retrying until they succeed");
                }
                *stats.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(error.to_string());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
        }
    }
    if stats.failing.swap(false, Ordering::AcqRel) {
        tracing::info!("store writes succeed again");
    }
    let events = batch
        .iter()
        .filter(|w| matches!(w, Write::Event(_)))
        .count();
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .events_written
        .fetch_add(events as u64, Ordering::Relaxed);
    stats
        .written
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
}
