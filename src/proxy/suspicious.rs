//! Warnings about forged session cookies, rate-limited: the first forged
//! cookie of an interval is logged at once, the rest of the interval are
//! counted and summed up in one line (how many, and the peers that sent
//! the most), so a flood of forged cookies cannot flood the log or fill a
//! disk.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

/// One summary line per interval at most.
pub(super) const INTERVAL: Duration = Duration::from_secs(10);
/// Distinct peers counted per interval; more are summed up as others.
const MAX_PEERS: usize = 256;
/// Peers named in a summary.
const TOP_PEERS: usize = 3;

/// What an interval saw after its first forged cookie.
#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    /// Forged cookies after the first one.
    count: u64,
    peers: HashMap<IpAddr, u64>,
    /// Forged cookies from peers past `MAX_PEERS`.
    others: u64,
}

/// A summary of an interval's forged cookies.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Summary {
    pub count: u64,
    /// The peers that sent the most, most first.
    pub top: Vec<(IpAddr, u64)>,
}

/// Counts forged cookies. Why a mutex: it is taken only on a forged
/// cookie, never on an honest request, and never held across an `.await`.
#[derive(Debug, Default)]
pub(super) struct ForgedCookies {
    window: Mutex<Window>,
}

/// What to log for one forged cookie.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Report {
    /// The first of an interval: a line of its own (after the previous
    /// interval's summary, if it had more).
    First(Option<Summary>),
    /// Counted for the interval's summary.
    Counted,
}

impl ForgedCookies {
    /// Counts a forged cookie from `peer` seen at `now`.
    pub fn record(&self, peer: IpAddr, now: Instant) -> Report {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        match window.started {
            Some(started) if now.saturating_duration_since(started) < INTERVAL => {
                window.count += 1;
                if window.peers.len() < MAX_PEERS || window.peers.contains_key(&peer) {
                    *window.peers.entry(peer).or_default() += 1;
                } else {
                    window.others += 1;
                }
                Report::Counted
            }
            _ => {
                let previous = take_summary(&mut window);
                window.started = Some(now);
                Report::First(previous)
            }
        }
    }

    /// The summary of an interval that has ended, if it counted any.
    pub fn flush(&self, now: Instant) -> Option<Summary> {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let ended = window
            .started
            .is_some_and(|started| now.saturating_duration_since(started) >= INTERVAL);
        if !ended {
            return None;
        }
        window.started = None;
        take_summary(&mut window)
    }
}

fn take_summary(window: &mut Window) -> Option<Summary> {
    if window.count == 0 {
        return None;
    }
    let mut top: Vec<(IpAddr, u64)> = window.peers.drain().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(TOP_PEERS);
    let summary = Summary {
        count: window.count,
        top,
    };
    window.count = 0;
    window.others = 0;
    Some(summary)
}

/// Logs a forged cookie from `peer`, as [`ForgedCookies::record`] says.
pub(super) fn warn_forged(forged: &ForgedCookies, peer: IpAddr) {
    if let Report::First(previous) = forged.record(peer, Instant::now()) {
        if let Some(summary) = previous {
            log_summary(&summary);
        }
        tracing::warn!(%peer, "session cookie with a forged signature ignored; more in the next {}s are counted", INTERVAL.as_secs());
    }
}

fn log_summary(summary: &Summary) {
    let top = summary
        .top
        .iter()
        .map(|(peer, count)| format!("{peer} ({count})"))
        .collect::<Vec<_>>()
        .join(", ");
    tracing::warn!(
        count = summary.count,
        top_peers = %top,
        "more session cookies with a forged signature ignored"
    );
}

/// Logs the summary of each ended interval, until `forged` is gone.
pub(super) fn spawn_flusher(forged: Weak<ForgedCookies>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(forged) = forged.upgrade() else {
                return;
            };
            if let Some(summary) = forged.flush(Instant::now()) {
                log_summary(&summary);
            }
        }
    });
}

/// A shared counter with its flusher running.
pub(super) fn forged_cookies() -> Arc<ForgedCookies> {
    let forged = Arc::new(ForgedCookies::default());
    spawn_flusher(Arc::downgrade(&forged));
    forged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_line_then_one_summary() {
        let forged = ForgedCookies::default();
        let start = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(forged.record(a, start), Report::First(None));
        for n in 0..299u32 {
            let peer = if n % 3 == 0 { b } else { a };
            let at = start + Duration::from_millis(u64::from(n));
            assert_eq!(forged.record(peer, at), Report::Counted);
        }
        assert_eq!(
            forged.flush(start + Duration::from_secs(1)),
            None,
            "not yet"
        );
        let summary = forged.flush(start + INTERVAL).unwrap();
        assert_eq!(summary.count, 299);
        assert_eq!(summary.top, [(a, 199), (b, 100)]);
        assert_eq!(forged.flush(start + INTERVAL * 3), None, "nothing left");
        // The next forged cookie opens a new interval with a line of its own.
        assert_eq!(forged.record(b, start + INTERVAL * 4), Report::First(None));
    }

    #[test]
    fn an_interval_that_ends_by_the_next_cookie_is_summed_up_then() {
        let forged = ForgedCookies::default();
        let start = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        forged.record(a, start);
        forged.record(a, start + Duration::from_secs(1));
        let report = forged.record(a, start + INTERVAL + Duration::from_secs(1));
        assert_eq!(
            report,
            Report::First(Some(Summary {
                count: 1,
                top: vec![(a, 1)]
            }))
        );
    }

    #[test]
    fn distinct_peers_are_bounded() {
        let forged = ForgedCookies::default();
        let start = Instant::now();
        forged.record("10.0.0.1".parse().unwrap(), start);
        for n in 0..1000u32 {
            let peer = IpAddr::from([10, 1, (n / 256) as u8, (n % 256) as u8]);
            forged.record(peer, start);
        }
        let window = forged.window.lock().unwrap();
        assert_eq!(window.peers.len(), MAX_PEERS);
        assert_eq!(window.others, 1000 - MAX_PEERS as u64);
    }
}
