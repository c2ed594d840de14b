//! [`Observer`]: what the log phase records (metrics, the access line),
//! and so which clocks the other phases read for it.

use std::sync::Arc;
use std::time::Instant;

use crate::metrics::{Metrics, StoreOp};

/// What the log phase records, and the clocks it needs.
#[derive(Debug, Clone, Default)]
pub struct Observer {
    /// Metrics are recorded (shared by every configuration the proxy is
    /// reloaded with).
    pub metrics: Option<Arc<Metrics>>,
    /// One access line per request.
    pub access: bool,
    /// The access line shows the query string.
    pub access_query: bool,
}

impl Observer {
    /// Whether requests are timed: only when a line or a metric uses the
    /// time (a clock read costs on every request).
    #[inline]
    pub(super) fn timing(&self) -> bool {
        self.access || self.metrics.is_some()
    }

    /// The start of a store operation, when it is timed.
    #[inline]
    pub(super) fn store_started(&self) -> Option<Instant> {
        self.metrics.as_ref().map(|_| Instant::now())
    }

    /// A store operation done (`ok: false`: it failed).
    #[inline]
    pub(super) fn store_done(&self, op: StoreOp, started: Option<Instant>, ok: bool) {
        if let (Some(metrics), Some(started)) = (&self.metrics, started) {
            metrics.store(op, started.elapsed(), ok);
        }
    }

    /// A session cookie whose signature did not verify.
    #[inline]
    pub(super) fn bad_signature(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.bad_signature();
        }
    }
}
