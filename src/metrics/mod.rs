//! Metrics: every counter, gauge and histogram Cloakroom exports on
//! `/metrics`, in the Prometheus (OpenMetrics) text format, through
//! prometheus-client.
//!
//! Handles are resolved once, when [`Metrics`] is made: recording on a
//! request's path is an atomic add, never a label-set lookup; what is
//! recorded on every request is [`sharded`] by thread, so worker threads
//! never write the same cache line. Values that already exist
//! elsewhere (live sessions, open connections, tunnels, certificate
//! expiry) are read when `/metrics` is scraped ([`Scrape`]), not kept up to
//! date on every request.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

pub mod sharded;

use self::sharded::{LatencyHistogram, ShardedCounter};

type Labels = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type FloatGauge = Gauge<f64, AtomicU64>;

/// The route kinds requests are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Public,
    LoginOnly,
}

/// What happened to a session, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    Created,
    Destroyed,
    Rotated,
    /// Found past its idle or absolute deadline on load.
    Expired,
}

/// A store verb, as timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    Load,
    Commit,
    Touch,
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    /// `[status class][route kind]`.
    requests: [[ShardedCounter; 2]; 5],
    denials: Counter,
    sessions: [Counter; 4],
    bad_signatures: Counter,
    store_latency: [LatencyHistogram; 3],
    store_errors: Counter,
    upstream_latency: LatencyHistogram,
    upstream_errors: Counter,
    /// Only for the memory store.
    live_sessions: Option<Gauge>,
    /// Only for the Redis store.
    redis_cache: Option<RedisCacheMetrics>,
    open_connections: Gauge,
    tunnels: Gauge,
    certificate_expiry: Family<Labels, FloatGauge>,
    reloads: Family<Labels, Counter>,
    last_reload: FloatGauge,
    last_reload_success: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// The Redis store's client-side cache, as read at a scrape.
#[derive(Debug, Default, Clone, Copy)]
pub struct RedisCacheScrape {
    pub tracking: bool,
    pub hits: u64,
    pub misses: u64,
    pub invalidations: u64,
}

struct RedisCacheMetrics {
    tracking: Gauge,
    hits: Counter,
    misses: Counter,
    invalidations: Counter,
}

impl RedisCacheMetrics {
    fn register(registry: &mut Registry) -> Self {
        let tracking = Gauge::default();
        registry.register(
            "redis_cache_tracking",
            "1 while every worker's Redis tracking connection is live and the client-side cache is used, 0 while some worker's reads bypass it",
            tracking.clone(),
        );
        let hits = Counter::default();
        registry.register(
            "redis_cache_hits",
            "Session loads answered from the client-side cache",
            hits.clone(),
        );
        let misses = Counter::default();
        registry.register(
            "redis_cache_misses",
            "Session loads that read Redis while the cache was on",
            misses.clone(),
        );
        let invalidations = Counter::default();
        registry.register(
            "redis_cache_invalidations",
            "Session keys Redis reported changed, expired or evicted",
            invalidations.clone(),
        );
        Self {
            tracking,
            hits,
            misses,
            invalidations,
        }
    }

    fn set(&self, scrape: &RedisCacheScrape) {
        self.tracking.set(i64::from(scrape.tracking));
        // The counts only grow: add what is new since the last scrape.
        for (counter, value) in [
            (&self.hits, scrape.hits),
            (&self.misses, scrape.misses),
            (&self.invalidations, scrape.invalidations),
        ] {
            counter.inc_by(value.saturating_sub(counter.get()));
        }
    }
}

/// The values read when `/metrics` is scraped.
#[derive(Debug, Default)]
pub struct Scrape {
    /// Sessions in the memory store (`None` for Redis, which is shared).
    pub live_sessions: Option<usize>,
    /// The Redis store's client-side cache, when it has one.
    pub redis_cache: Option<RedisCacheScrape>,
    pub open_connections: usize,
    pub tunnels: usize,
    /// `(certificate name, not after)`.
    pub certificates: Vec<(String, SystemTime)>,
}

impl Metrics {
    /// Registers every metric; `store` names the store kind (`memory` or
    /// `redis`) in the store metrics' labels.
    pub fn new(store: &'static str) -> Self {
        let mut registry = Registry::with_prefix("cloakroom");
        registry.register(
            "build",
            "Cloakroom's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );

        let requests_family = Family::<Labels2, ShardedCounter>::default();
        registry.register(
            "requests",
            "Requests answered, by status class and route kind (public or login-only)",
            requests_family.clone(),
        );
        let requests = STATUS_CLASSES.map(|class| {
            ["public", "login-only"].map(|route| {
                requests_family
                    .get_or_create(&[("class", class), ("route", route)])
                    .clone()
            })
        });

        let denials = Counter::default();
        registry.register(
            "denials",
            "Requests to login-only routes without a signed-in session (redirected or 401)",
            denials.clone(),
        );

        let sessions_family = Family::<Labels, Counter>::default();
        registry.register(
            "sessions",
            "Session events: created, destroyed, rotated (moved to a fresh id), expired",
            sessions_family.clone(),
        );
        let sessions = ["created", "destroyed", "rotated", "expired"]
            .map(|event| sessions_family.get_or_create(&[("event", event)]).clone());

        let bad_signatures = Counter::default();
        registry.register(
            "bad_signatures",
            "Session cookies whose signature did not verify (forged, tampered or signed with a retired secret)",
            bad_signatures.clone(),
        );

        let store_family = Family::<Labels2, LatencyHistogram>::default();
        registry.register_with_unit(
            "store_operation",
            "Session store operations, by store and operation",
            Unit::Seconds,
            store_family.clone(),
        );
        let store_latency = ["load", "commit", "touch"].map(|op| {
            store_family
                .get_or_create(&[("store", store), ("op", op)])
                .clone()
        });
        let store_errors_family = Family::<Labels, Counter>::default();
        registry.register(
            "store_errors",
            "Session store operations that failed (unavailable or timed out), by store",
            store_errors_family.clone(),
        );
        let store_errors = store_errors_family
            .get_or_create(&[("store", store)])
            .clone();

        let upstream_latency = LatencyHistogram::default();
        registry.register_with_unit(
            "upstream_response",
            "Time from sending a request upstream to its response head",
            Unit::Seconds,
            upstream_latency.clone(),
        );
        let upstream_errors = Counter::default();
        registry.register(
            "upstream_errors",
            "Exchanges with the upstream that failed (refused, timed out, malformed)",
            upstream_errors.clone(),
        );

        // Redis is shared by instances and costly to count: memory only.
        let live_sessions = (store == "memory").then(|| {
            let gauge = Gauge::default();
            registry.register(
                "live_sessions",
                "Sessions held by the memory store (expired ones not yet swept included)",
                gauge.clone(),
            );
            gauge
        });
        let redis_cache = (store == "redis").then(|| RedisCacheMetrics::register(&mut registry));
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open, WebSocket tunnels included",
            open_connections.clone(),
        );
        let tunnels = Gauge::default();
        registry.register(
            "websocket_tunnels",
            "Open WebSocket tunnels",
            tunnels.clone(),
        );
        let certificate_expiry = Family::<Labels, FloatGauge>::default();
        registry.register_with_unit(
            "certificate_expiry",
            "When each served certificate expires, as a Unix time",
            Unit::Seconds,
            certificate_expiry.clone(),
        );

        let reloads = Family::<Labels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads, by result (applied or refused)",
            reloads.clone(),
        );
        let last_reload = FloatGauge::default();
        registry.register_with_unit(
            "config_last_reload",
            "When the configuration was last reloaded (or first loaded), as a Unix time",
            Unit::Seconds,
            last_reload.clone(),
        );
        let last_reload_success = Gauge::default();
        registry.register(
            "config_last_reload_success",
            "1 if the last reload was applied, 0 if it was refused",
            last_reload_success.clone(),
        );
        last_reload.set(unix_seconds(SystemTime::now()));
        last_reload_success.set(1);

        Self {
            registry,
            requests,
            denials,
            sessions,
            bad_signatures,
            store_latency,
            store_errors,
            upstream_latency,
            upstream_errors,
            live_sessions,
            redis_cache,
            open_connections,
            tunnels,
            certificate_expiry,
            reloads,
            last_reload,
            last_reload_success,
        }
    }

    #[inline]
    pub fn request(&self, status: u16, route: RouteKind) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        let route = match route {
            RouteKind::Public => 0,
            RouteKind::LoginOnly => 1,
        };
        self.requests[class][route].inc();
    }

    #[inline]
    pub fn denial(&self) {
        self.denials.inc();
    }

    #[inline]
    pub fn session(&self, event: SessionEvent) {
        self.sessions[event as usize].inc();
    }

    #[inline]
    pub fn bad_signature(&self) {
        self.bad_signatures.inc();
    }

    /// A store operation that took `time`; `ok: false` counts an error.
    #[inline]
    pub fn store(&self, op: StoreOp, time: Duration, ok: bool) {
        self.store_latency[op as usize].observe(time);
        if !ok {
            self.store_errors.inc();
        }
    }

    #[inline]
    pub fn upstream(&self, time: Duration) {
        self.upstream_latency.observe(time);
    }

    #[inline]
    pub fn upstream_error(&self) {
        self.upstream_errors.inc();
    }

    /// A configuration reload, applied or refused.
    pub fn reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.reloads.get_or_create(&[("result", result)]).inc();
        self.last_reload.set(unix_seconds(SystemTime::now()));
        self.last_reload_success.set(i64::from(applied));
    }

    /// The text `/metrics` answers, with `scrape`'s values set first.
    pub fn render(&self, scrape: &Scrape) -> String {
        if let (Some(gauge), Some(live)) = (&self.live_sessions, scrape.live_sessions) {
            gauge.set(saturating_i64(live));
        }
        if let (Some(metrics), Some(cache)) = (&self.redis_cache, &scrape.redis_cache) {
            metrics.set(cache);
        }
        self.open_connections
            .set(saturating_i64(scrape.open_connections));
        self.tunnels.set(saturating_i64(scrape.tunnels));
        self.certificate_expiry.clear();
        for (name, not_after) in &scrape.certificates {
            // Label values must be 'static: certificate names are few and
            // fixed by the configuration, so leaking each once is bounded.
            let name: &'static str = intern(name);
            self.certificate_expiry
                .get_or_create(&[("name", name)])
                .set(unix_seconds(*not_after));
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

fn saturating_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A `'static` copy of a certificate name, made once per distinct name.
fn intern(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_what_was_recorded() {
        let metrics = Metrics::new("memory");
        metrics.request(200, RouteKind::Public);
        metrics.request(302, RouteKind::LoginOnly);
        metrics.request(302, RouteKind::LoginOnly);
        metrics.session(SessionEvent::Rotated);
        metrics.store(StoreOp::Load, Duration::from_millis(1), false);
        let text = metrics.render(&Scrape {
            live_sessions: Some(7),
            redis_cache: None,
            open_connections: 3,
            tunnels: 1,
            certificates: vec![(
                "example.com".into(),
                SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            )],
        });
        for line in [
            "cloakroom_requests_total{class=\"2xx\",route=\"public\"} 1",
            "cloakroom_requests_total{class=\"3xx\",route=\"login-only\"} 2",
            "cloakroom_sessions_total{event=\"rotated\"} 1",
            "cloakroom_store_errors_total{store=\"memory\"} 1",
            "cloakroom_store_operation_seconds_count{store=\"memory\",op=\"load\"} 1",
            "cloakroom_live_sessions 7",
            "cloakroom_open_connections 3",
            "cloakroom_certificate_expiry_seconds{name=\"example.com\"} 100.0",
            "cloakroom_config_last_reload_success 1",
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
    }

    #[test]
    fn the_redis_cache_counts_follow_the_store() {
        let metrics = Metrics::new("redis");
        for (hits, tracking) in [(5, true), (9, false)] {
            let text = metrics.render(&Scrape {
                redis_cache: Some(RedisCacheScrape {
                    tracking,
                    hits,
                    misses: 2,
                    invalidations: 1,
                }),
                ..Scrape::default()
            });
            for line in [
                format!("cloakroom_redis_cache_tracking {}", u8::from(tracking)),
                format!("cloakroom_redis_cache_hits_total {hits}"),
                "cloakroom_redis_cache_misses_total 2".to_owned(),
                "cloakroom_redis_cache_invalidations_total 1".to_owned(),
            ] {
                assert!(text.contains(&line), "{line} missing from:\n{text}");
            }
        }
        let memory = Metrics::new("memory").render(&Scrape::default());
        assert!(!memory.contains("redis_cache"));
    }
}
