//! [`WhenWoken`]: a future polled only when it has asked to be.
//!
//! A connection's task polls, beside the connection itself, a guard that
//! rarely has anything to do (the idle watchdog's timer, the drain signal).
//! In a `select!` the guard would be polled on every wake-up of the task,
//! several times per request, each poll touching its timer entry and its
//! channel's lock. Wrapped in [`WhenWoken`], it is polled once at first and
//! then only after its own waker fired; any other poll is one atomic swap
//! and the registration of the task's waker.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;
use pin_project_lite::pin_project;

/// The waker the inner future is polled with: it marks the future as due
/// and wakes the task that polls the wrapper.
struct Due {
    due: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Due {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::Release);
        self.task.wake();
    }
}

pin_project! {
    pub struct WhenWoken<F> {
        #[pin]
        inner: F,
        due: Arc<Due>,
        waker: Waker,
    }
}

impl<F> WhenWoken<F> {
    pub fn new(inner: F) -> Self {
        let due = Arc::new(Due {
            // The first poll polls the inner future, which registers its
            // interest (timers, channels) with the waker below.
            due: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(due.clone());
        Self { inner, due, waker }
    }
}

impl<F: Future> Future for WhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Registered before the flag is read: a wake-up after the read
        // wakes this task again.
        this.due.task.register(cx.waker());
        if !this.due.due.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Counts its polls; ready after `ready_after` of them.
    struct Counting {
        polls: Arc<AtomicUsize>,
        ready_after: usize,
    }

    impl Future for Counting {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let polls = self.polls.fetch_add(1, Ordering::Relaxed) + 1;
            if polls >= self.ready_after {
                return Poll::Ready(());
            }
            // Asks to be polled again soon, as a timer would.
            let waker = cx.waker().clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                waker.wake();
            });
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_only_after_its_own_wake_ups() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut guarded = std::pin::pin!(WhenWoken::new(Counting {
            polls: polls.clone(),
            ready_after: 3,
        }));
        // Busy neighbour: the task is woken far more often than the
        // guarded future asks for.
        let mut noisy = 0;
        loop {
            tokio::select! {
                biased;
                () = guarded.as_mut() => break,
                () = tokio::task::yield_now() => noisy += 1,
            }
        }
        assert_eq!(polls.load(Ordering::Relaxed), 3);
        assert!(noisy > 3, "the test task was not busy: {noisy}");
    }

    #[tokio::test]
    async fn a_ready_future_completes_on_the_first_poll() {
        let polls = Arc::new(AtomicUsize::new(0));
        WhenWoken::new(Counting {
            polls: polls.clone(),
            ready_after: 1,
        })
        .await;
        assert_eq!(polls.load(Ordering::Relaxed), 1);
    }
}
