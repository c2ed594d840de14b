//! Counters and latency histograms recorded on every request without the
//! threads sharing a cache line: each thread adds to its own shard, and a
//! scrape of `/metrics` sums the shards.
//!
//! Why not prometheus-client's own `Counter` and `Histogram`: every worker
//! thread would write the same atomic (the counter) or take the same lock
//! (the histogram is a `RwLock` written per observation), so on every
//! request the cache line moves between cores. With the JSON access log,
//! that cost session reads 6% of their rate (`bench/run.sh`,
//! `cloakroom-observed`). Here a thread's shard is written by that thread
//! alone (uncontended atomic adds), and both types encode through
//! prometheus-client's encoder, as its own types do.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Shards per metric: more than the threads that record on a machine of
/// a few cores; beyond, threads share shards (still correct, only slower).
const SHARDS: usize = 8;

/// The shard this thread records into.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

/// One atomic on a cache line of its own (128 bytes: adjacent-line
/// prefetching pairs lines on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// A monotonic counter. Clones share the count.
#[derive(Debug, Default, Clone)]
pub struct ShardedCounter {
    shards: Arc<[Padded; SHARDS]>,
}

impl ShardedCounter {
    #[inline]
    pub fn inc(&self) {
        self.shards[shard()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// The sum over the shards.
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|shard| shard.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Upper bounds of the latency buckets: 100 µs to about 13 s, doubling
/// (the last bucket, `+Inf`, takes the rest).
pub const LATENCY_BOUNDS: usize = 18;

fn bound_nanos(index: usize) -> u64 {
    100_000 << index
}

/// One thread's part of a histogram.
#[derive(Debug, Default)]
#[repr(align(128))]
struct HistogramShard {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS + 1],
    count: AtomicU64,
    /// The sum of the observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

/// A histogram of durations, in seconds. Clones share the counts.
#[derive(Debug, Default, Clone)]
pub struct LatencyHistogram {
    shards: Arc<[HistogramShard; SHARDS]>,
}

impl LatencyHistogram {
    #[inline]
    pub fn observe(&self, time: Duration) {
        let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        let bucket = (0..LATENCY_BOUNDS)
            .find(|&index| nanos <= bound_nanos(index))
            .unwrap_or(LATENCY_BOUNDS);
        let shard = &self.shards[shard()];
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard.count.fetch_add(1, Ordering::Relaxed);
        shard.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The sum in seconds, the count, and each bucket's upper bound in
    /// seconds (`f64::MAX` for `+Inf`, as prometheus-client's encoder
    /// expects) with its own count.
    pub fn get(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0u64;
        let mut sum_nanos = 0u64;
        let mut buckets: Vec<(f64, u64)> = (0..=LATENCY_BOUNDS)
            .map(|index| {
                let bound = if index == LATENCY_BOUNDS {
                    f64::MAX
                } else {
                    bound_nanos(index) as f64 / 1e9
                };
                (bound, 0)
            })
            .collect();
        for shard in self.shards.iter() {
            count = count.wrapping_add(shard.count.load(Ordering::Relaxed));
            sum_nanos = sum_nanos.wrapping_add(shard.sum_nanos.load(Ordering::Relaxed));
            for (total, bucket) in buckets.iter_mut().zip(&shard.buckets) {
                total.1 = total.1.wrapping_add(bucket.load(Ordering::Relaxed));
            }
        }
        (sum_nanos as f64 / 1e9, count, buckets)
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.get();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let counter = Arc::new(ShardedCounter::default());
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| counter.inc()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.get(), 12_000);
    }

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let histogram = LatencyHistogram::default();
        for micros in [50, 100, 101, 200, 201, 400] {
            histogram.observe(Duration::from_micros(micros));
        }
        histogram.observe(Duration::from_secs(3600));
        let (sum, count, buckets) = histogram.get();
        assert_eq!(count, 7);
        assert!((sum - (3600.0 + 0.001_052)).abs() < 1e-9, "{sum}");
        let counts: Vec<u64> = buckets.iter().map(|(_, n)| *n).collect();
        // ≤100 µs: 50, 100; ≤200 µs: 101, 200; ≤400 µs: 201, 400; +Inf: 1 h.
        assert_eq!(&counts[..4], &[2, 2, 2, 0]);
        assert_eq!(counts[LATENCY_BOUNDS], 1);
        assert_eq!(buckets[0].0, 0.0001);
        assert_eq!(buckets[LATENCY_BOUNDS].0, f64::MAX);
    }
}
