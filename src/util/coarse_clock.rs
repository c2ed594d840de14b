//! A monotonic clock read with one atomic load instead of a clock read,
//! for timestamps where a few milliseconds do not matter: when an idle
//! upstream connection was put back, whether a session in the memory store
//! has expired. A request would otherwise read the system clock for each.
//!
//! A background thread, started on first use, advances the clock every
//! [`TICK`]; readings are never ahead of [`Instant::now`] and at most about
//! one tick behind it. Should the thread fail to start, readings fall back
//! to [`Instant::now`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often the clock advances: its resolution.
pub const TICK: Duration = Duration::from_millis(20);

struct Clock {
    start: Instant,
    /// The ticking thread runs.
    ticking: bool,
}

static CLOCK: OnceLock<Clock> = OnceLock::new();
/// Nanoseconds from the clock's start at the last tick.
static ELAPSED: AtomicU64 = AtomicU64::new(0);

/// Now, to within about one [`TICK`] (never later than the real now).
pub fn now() -> Instant {
    let clock = CLOCK.get_or_init(start);
    if !clock.ticking {
        return Instant::now();
    }
    clock.start + Duration::from_nanos(ELAPSED.load(Ordering::Relaxed))
}

fn start() -> Clock {
    let start = Instant::now();
    let ticking = std::thread::Builder::new()
        .name("cloakroom-clock".into())
        .spawn(move || tick_forever(start))
        .is_ok();
    Clock { start, ticking }
}

fn tick_forever(start: Instant) {
    loop {
        std::thread::sleep(TICK);
        let elapsed = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        ELAPSED.store(elapsed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_advance_stay_behind_the_real_clock_and_lag_little() {
        let first = now();
        assert!(first <= Instant::now());
        std::thread::sleep(TICK * 10);
        let later = now();
        let real = Instant::now();
        assert!(later > first, "the clock did not advance");
        assert!(later <= real);
        assert!(
            real - later < Duration::from_secs(1),
            "the clock lags by {:?}",
            real - later
        );
    }
}
