//! Thread-per-core serving: a fixed set of worker threads, each running its
//! own single-threaded tokio runtime, and each accepted connection handed to
//! one of them (round robin) for its whole life.
//!
//! Why: a connection's task, its upstream connection's task and their I/O
//! then all live on one thread. Nothing migrates between threads, a wake-up
//! never needs another core, and no work-stealing queue is touched per
//! request; the way nginx runs one event loop per worker process. The
//! upstream pool keeps one idle list per worker ([`crate::util::worker::current`]) so a request
//! reuses connections driven by its own thread.
//!
//! Shared state (the store, the certificates, the proxy's configuration) is
//! behind `Arc`s and locks that are never held across an `.await`, so it is
//! safe from any worker.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

/// A connection's whole life, to be run on a worker.
pub type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The worker threads. Dropping this stops them and drops the jobs still
/// running, with every task they spawned (a WebSocket tunnel, say): drop it
/// only after the graceful drain.
pub struct Workers {
    senders: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `count` workers (at least one).
    pub fn start(count: usize) -> std::io::Result<Self> {
        let count = count.max(1);
        let mut senders = Vec::with_capacity(count);
        for index in 0..count {
            let (sender, receiver) = mpsc::unbounded_channel::<Job>();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("cloakroom-worker-{index}"))
                .spawn(move || {
                    crate::util::worker::set_current(index);
                    runtime.block_on(run_jobs(receiver));
                })?;
            senders.push(sender);
        }
        Ok(Self {
            senders,
            next: AtomicUsize::new(0),
        })
    }

    pub fn count(&self) -> usize {
        self.senders.len()
    }

    /// Runs `job` on worker `index`.
    pub fn run_on(&self, index: usize, job: Job) {
        if let Err(mpsc::error::SendError(job)) = self.senders[index % self.senders.len()].send(job)
        {
            tokio::spawn(job);
        }
    }

    /// Runs `job` on the next worker.
    pub fn spawn(&self, job: Job) {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        if let Err(mpsc::error::SendError(job)) = self.senders[index].send(job) {
            // A worker that is gone (it panicked): run the job here instead.
            tokio::spawn(job);
        }
    }
}

/// Spawns every job it receives until the sender is dropped. The jobs
/// still running then go with the runtime, which the worker thread drops
/// as it ends (the drain is over by then).
///
/// Why not a `JoinSet`: this future is the runtime's `block_on` future,
/// and waking it always writes to the runtime's eventfd. A `JoinSet` would
/// wake it each time a connection ends; plain spawned tasks wake nobody.
async fn run_jobs(mut receiver: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = receiver.recv().await {
        tokio::spawn(job);
    }
}
