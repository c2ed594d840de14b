//! The proxy in force: the one built from the configuration last applied.
//! A reload swaps it whole; each request is served from start to end by
//! the proxy it started with, so by one consistent configuration.
//!
//! Why a generation number beside the lock: a connection keeps the proxy
//! it last used ([`Cached`]) and, per request, only reads the generation
//! (a load of a value written once per reload) to know whether it is still
//! current; it takes the lock only after a reload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::proxy::Proxy;

pub(crate) struct Live {
    current: RwLock<Arc<Proxy>>,
    generation: AtomicU64,
}

/// A connection's copy of the proxy in force, and its generation.
pub(crate) struct Cached {
    generation: u64,
    proxy: Arc<Proxy>,
}

impl Live {
    pub fn new(proxy: Proxy) -> Self {
        Self {
            current: RwLock::new(Arc::new(proxy)),
            generation: AtomicU64::new(0),
        }
    }

    /// The proxy in force now.
    pub fn current(&self) -> Arc<Proxy> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `proxy` in force; requests already started finish on the one
    /// they started with.
    pub fn replace(&self, proxy: Proxy) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(proxy);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// A copy of the proxy in force, for a connection to keep.
    pub fn cached(&self) -> Cached {
        let generation = self.generation.load(Ordering::Acquire);
        Cached {
            generation,
            proxy: self.current(),
        }
    }

    /// The proxy in force, from `cached` unless a reload happened since.
    #[inline]
    pub fn refresh<'c>(&self, cached: &'c mut Cached) -> &'c Arc<Proxy> {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != cached.generation {
            *cached = Cached {
                generation,
                proxy: self.current(),
            };
        }
        &cached.proxy
    }
}
