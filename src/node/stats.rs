//! Counters and histograms the node's threads update as things happen, for
//! whoever exports them (the metrics endpoint, INFO).
//!
//! Everything here is a relaxed atomic: the writer and the client threads
//! update these on their hot paths (a write costs about 50 µs all told), so
//! an update must never take a lock or allocate. A reader sees each number
//! as it was at some moment during its read, not all of them at one instant,
//! which is all monitoring needs.

use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with fixed buckets, as Prometheus keeps them: how many
/// observations fell at or below each bound, their count and their sum.
///
/// Each observation adds one to exactly one bucket (the first whose bound
/// holds it, or the overflow bucket) and its value to the sum: three
/// relaxed atomic adds and a scan of a dozen bounds, no lock.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, ascending, in the histogram's own unit.
    bounds: &'static [u64],
    /// One per bound, plus the overflow bucket (`+Inf`): not cumulative, so
    /// an observation touches one of them.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [u64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "ascending bounds");
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(self.bounds.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The histogram as it is now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        HistogramSnapshot {
            bounds: self.bounds,
            cumulative,
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// The buckets' upper bounds, ascending.
    pub bounds: &'static [u64],
    /// Observations at or below each bound, then all of them (the `+Inf`
    /// bucket): one more element than `bounds`, never decreasing. The count
    /// is the last, so it always agrees with the buckets.
    pub cumulative: Vec<u64>,
    /// The sum of all observations (read beside the buckets, so it may
    /// include an observation they do not yet, or the other way round).
    pub sum: u64,
}

impl HistogramSnapshot {
    /// How many observations there were.
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

/// The bounds of the log fsync latency histogram, in microseconds: 50 µs
/// (a fast NVMe drive) to 2.5 s (a disk in trouble).
pub const FSYNC_MICROS: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

/// The bounds of the append batch histogram, in entries: how many entries
/// one log write (one fsync) made durable. Powers of two up to the most a
/// busy leader's group commit gathers.
pub const BATCH_ENTRIES: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/// What the node counts as it runs, beside what the core counts itself.
#[derive(Debug)]
pub(crate) struct NodeStats {
    /// Terms in which this node learnt who leads (its own included).
    pub(crate) leader_changes: AtomicU64,
    /// The last term counted in `leader_changes` (only touched with the
    /// core locked).
    pub(crate) leader_term: AtomicU64,
    /// Entries this node appended to its log as leader (commands and
    /// membership changes).
    pub(crate) proposals: AtomicU64,
    /// Entries this node learnt were committed.
    pub(crate) entries_committed: AtomicU64,
    /// Entries written to the log, by any role, and their size.
    pub(crate) entries_appended: AtomicU64,
    pub(crate) bytes_appended: AtomicU64,
    /// How long each log fsync took, in microseconds.
    pub(crate) fsync: Histogram,
    /// Entries per log write that appended any.
    pub(crate) append_batch: Histogram,
}

impl Default for NodeStats {
    fn default() -> Self {
        NodeStats {
            leader_changes: AtomicU64::new(0),
            leader_term: AtomicU64::new(0),
            proposals: AtomicU64::new(0),
            entries_committed: AtomicU64::new(0),
            entries_appended: AtomicU64::new(0),
            bytes_appended: AtomicU64::new(0),
            fsync: Histogram::new(FSYNC_MICROS),
            append_batch: Histogram::new(BATCH_ENTRIES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_observation_lands_in_the_first_bucket_that_holds_it() {
        let h = Histogram::new(&[1, 10, 100]);
        for v in [0, 1, 2, 10, 11, 100, 101, 5000] {
            h.observe(v);
        }
        let s = h.snapshot();
        // <=1: 0 and 1; <=10: +2, 10; <=100: +11, 100; +Inf: +101, 5000.
        assert_eq!(s.cumulative, vec![2, 4, 6, 8]);
        assert_eq!(s.count(), 8);
        assert_eq!(s.sum, 1 + 2 + 10 + 11 + 100 + 101 + 5000);
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = Histogram::new(BATCH_ENTRIES);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let h = &h;
                s.spawn(move || {
                    for i in 0..10_000u64 {
                        h.observe((i + t) % 2000);
                    }
                });
            }
        });
        let s = h.snapshot();
        assert_eq!(s.count(), 40_000);
        assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
    }
}
