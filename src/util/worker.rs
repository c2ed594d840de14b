//! The index of the worker thread running the caller, for the structures
//! kept one per worker (idle upstream connections, Redis connections). The
//! edge's workers set it when they start.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running the caller (0 outside the workers).
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

/// Marks the calling thread as worker `index`.
pub fn set_current(index: usize) {
    WORKER.with(|worker| worker.set(index));
}
