//! A latency histogram in the manner of HdrHistogram: log-linear buckets,
//! so that every recorded value is known to within 1% whatever its size.
//!
//! Values are nanoseconds. Below 1,024 ns the buckets are 8 ns wide; above,
//! each power of two is split into 128 equal buckets, so a bucket is at most
//! 1/128 (0.8%) of the values in it. The top bucket ends past 2^36 ns
//! (68 s); longer values are counted there. One histogram is 3,600 counters
//! (28 KiB): each client thread keeps its own, with no sharing while it
//! records, and they are merged when the run ends.

/// Finest resolution: values are counted in units of 2^3 = 8 ns.
const UNIT_SHIFT: u32 = 3;
/// Buckets per power of two (and the number of linear ones at the bottom).
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// The highest power of two (in units) with buckets of its own: 2^33 units
/// of 8 ns is 68.7 s.
const TOP_MAGNITUDE: u32 = 33;
const BUCKETS: usize = (SUB + (TOP_MAGNITUDE - SUB_BITS + 1) as u64 * SUB) as usize;

/// Counts of latencies, with the exact minimum and maximum beside them.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Counts one value, in nanoseconds.
    pub(crate) fn record(&mut self, nanos: u64) {
        self.counts[bucket_of(nanos)] += 1;
        self.total += 1;
        self.min = self.min.min(nanos);
        self.max = self.max.max(nanos);
    }

    /// Adds another histogram's counts to this one.
    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded, exactly; 0 if none.
    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.5 for the median): the upper edge of
    /// the bucket holding the `ceil(q·n)`-th smallest value, capped by the
    /// exact maximum, so never under the true quantile by more than a
    /// bucket's width. 0 if nothing was recorded.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return upper_edge(i).min(self.max).max(self.min);
            }
        }
        self.max
    }
}

fn bucket_of(nanos: u64) -> usize {
    let units = nanos >> UNIT_SHIFT;
    if units < SUB {
        return units as usize;
    }
    let magnitude = (63 - units.leading_zeros()).min(TOP_MAGNITUDE);
    if magnitude == TOP_MAGNITUDE && units >> magnitude > 1 {
        return BUCKETS - 1;
    }
    let shift = magnitude - SUB_BITS;
    let sub = (units >> shift) - SUB;
    (SUB + u64::from(shift) * SUB + sub) as usize
}

/// The largest value (in nanoseconds) that falls into bucket `i`.
fn upper_edge(i: usize) -> u64 {
    let i = i as u64;
    let (shift, sub) = match i < SUB {
        true => return ((i + 1) << UNIT_SHIFT) - 1,
        false => ((i - SUB) / SUB, (i - SUB) % SUB),
    };
    (((SUB + sub + 1) << shift) << UNIT_SHIFT) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_within_one_percent() {
        let mut v = 1u64;
        while v < 60_000_000_000 {
            let i = bucket_of(v);
            let upper = upper_edge(i);
            assert!(upper >= v, "{v} above its bucket's edge {upper}");
            if v >= 1_000 {
                assert!((upper - v) as f64 <= v as f64 * 0.01, "{v}: edge {upper}");
            }
            if i > 0 {
                assert!(upper_edge(i - 1) < v, "{v} belongs to an earlier bucket");
            }
            v = v + v / 37 + 1;
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_uniform_spread() {
        let mut h = Histogram::new();
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        let within = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.01;
        assert!(within(h.quantile(0.5), 500_000), "{}", h.quantile(0.5));
        assert!(within(h.quantile(0.99), 990_000), "{}", h.quantile(0.99));
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(h.max(), 1_000_000);

        let mut other = Histogram::new();
        other.record(5_000_000);
        h.merge(&other);
        assert_eq!(h.count(), 1001);
        assert_eq!(h.max(), 5_000_000);
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }
}
