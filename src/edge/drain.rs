//! The graceful drain's signal: the accept loop starts the drain, and every
//! connection learns of it, finishes the request it is serving and closes.
//!
//! One channel per worker thread: a connection waits on its own worker's,
//! so the lock a waiting connection takes each time it is polled is only
//! ever shared with connections of the same thread, never bounced between
//! cores on every request.

use tokio::sync::watch;

/// Starts the drain; held by the accept loop.
pub struct Drain {
    per_worker: Vec<watch::Sender<bool>>,
}

/// What a connection holds to learn that the drain has started.
pub struct DrainWatch {
    receiver: watch::Receiver<bool>,
    /// [`DrainWatch::started`] has resolved.
    seen: bool,
}

impl Drain {
    /// A drain for `workers` worker threads (at least one channel).
    pub fn new(workers: usize) -> Self {
        let per_worker = (0..workers.max(1))
            .map(|_| watch::channel(false).0)
            .collect();
        Self { per_worker }
    }

    /// A watch on the calling worker's channel. Call it from the worker
    /// that runs the connection.
    pub fn watch(&self) -> DrainWatch {
        let index = crate::util::worker::current() % self.per_worker.len();
        DrainWatch {
            receiver: self.per_worker[index].subscribe(),
            seen: false,
        }
    }

    /// Tells every connection, on every worker, that the drain has started.
    pub fn start(&self) {
        for sender in &self.per_worker {
            sender.send_replace(true);
        }
    }
}

impl DrainWatch {
    /// Resolves once the drain has started (or the server is gone).
    pub async fn started(&mut self) {
        // An error means the sender is gone: serving is over either way.
        let _ = self.receiver.wait_for(|started| *started).await;
        self.seen = true;
    }

    /// Whether the drain has started. Lock-free (one atomic load): the
    /// only value ever sent is `true`, so any new value is the start.
    pub fn has_started(&self) -> bool {
        self.seen || !matches!(self.receiver.has_changed(), Ok(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_watch_resolves_once_the_drain_starts() {
        let drain = Drain::new(2);
        let mut watch = drain.watch();
        let other = drain.watch();
        assert!(!watch.has_started());
        let waiting = tokio::time::timeout(Duration::from_millis(50), watch.started()).await;
        assert!(waiting.is_err(), "resolved before the drain started");
        drain.start();
        assert!(other.has_started(), "seen without waiting");
        tokio::time::timeout(Duration::from_secs(5), watch.started())
            .await
            .expect("the drain started but the watch did not resolve");
        assert!(watch.has_started());
    }

    #[tokio::test]
    async fn a_watch_resolves_when_the_server_is_gone() {
        let drain = Drain::new(1);
        let mut watch = drain.watch();
        drop(drain);
        tokio::time::timeout(Duration::from_secs(5), watch.started())
            .await
            .expect("the drain is gone but the watch did not resolve");
    }
}
