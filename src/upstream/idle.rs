//! Idle upstream connections kept for reuse, for either client: one list
//! per worker thread, since a connection is used by the worker that opened
//! it (its socket is registered with that worker's reactor).
//!
//! Each list is a LIFO stack behind a `std::sync::Mutex`: the most recently
//! used connection is the warmest and the least likely to have been closed
//! by the upstream. The lock is held for a push or a pop only, never across
//! an `.await`. Timestamps come from [`coarse_clock`]: an idle timeout
//! need not be exact to the millisecond.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::util::coarse_clock;

/// One worker's idle connections, each with the time it was put back.
type List<C> = Mutex<Vec<(C, Instant)>>;

pub struct IdleLists<C> {
    lists: Box<[List<C>]>,
    /// Per list: `upstream.pool_max_idle` is for the whole proxy.
    max_per_list: usize,
    timeout: Duration,
}

impl<C> IdleLists<C> {
    /// At most `max_idle` connections over `workers` lists, each kept for
    /// `timeout` at most.
    pub fn new(max_idle: usize, timeout: Duration, workers: usize) -> Self {
        let workers = workers.max(1);
        Self {
            lists: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
            max_per_list: max_idle.div_ceil(workers),
            timeout,
        }
    }

    fn here(&self) -> &List<C> {
        &self.lists[crate::util::worker::current() % self.lists.len()]
    }

    /// Keeps `conn` for the calling worker, unless its list is full.
    pub fn put(&self, conn: C) {
        let mut list = self.here().lock().unwrap_or_else(PoisonError::into_inner);
        if list.len() < self.max_per_list {
            list.push((conn, coarse_clock::now()));
        }
    }

    /// The calling worker's most recently kept connection that is still
    /// `usable` and not idle for too long; the others met on the way go.
    pub fn take(&self, usable: impl Fn(&C) -> bool) -> Option<C> {
        let mut list = self.here().lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((conn, since)) = list.pop() {
            if usable(&conn) && coarse_clock::now().saturating_duration_since(since) < self.timeout
            {
                return Some(conn);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_usable_connection_comes_first_and_the_limit_holds() {
        let lists = IdleLists::new(2, Duration::from_secs(60), 1);
        for conn in [1, 2, 3] {
            lists.put(conn);
        }
        assert_eq!(lists.take(|_| true), Some(2), "3 was over the limit");
        lists.put(4);
        assert_eq!(lists.take(|&c| c != 4), Some(1), "4 was not usable");
        assert_eq!(lists.take(|_| true), None);
    }

    #[test]
    fn connections_idle_too_long_are_not_reused() {
        let lists = IdleLists::new(4, Duration::ZERO, 1);
        lists.put(1);
        assert_eq!(lists.take(|_| true), None);
    }
}
