//! Latency distributions for metrics: a log-linear histogram of microseconds (exact below
//! 64 µs, then 32 buckets per power of two: at most 1/32 ≈ 3 % wide), snapshots that merge
//! exactly across recorders (one per risk actor), quantiles and cumulative counts for
//! Prometheus buckets.

use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// Values below this many µs have a bucket of their own.
const LINEAR: u64 = 64;
/// log2 of the buckets per power of two above [`LINEAR`].
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Larger values are recorded as this (one hour).
pub const MAX_US: u64 = 3_600_000_000;

/// The bucket of a value (µs).
fn index(us: u64) -> usize {
    let v = us.min(MAX_US);
    if v < LINEAR {
        return v as usize;
    }
    let exp = u64::from(63 - v.leading_zeros());
    let sub = (v >> (exp - u64::from(SUB_BITS))) & (SUB - 1);
    (LINEAR + (exp - 6) * SUB + sub) as usize
}

/// The highest value (µs) of bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let exp = 6 + (i - LINEAR) / SUB;
    let sub = (i - LINEAR) % SUB;
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    (1u64 << exp) + sub * width + width - 1
}

/// Records latencies; kept by the actor that measures them.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    /// Counts per bucket, allocated at the first record.
    counts: Vec<u64>,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one latency (capped at [`MAX_US`]).
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_US)
            .min(MAX_US);
        let i = index(us);
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// The recorded distribution, sparse.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (i as u32, *c))
                .collect(),
            count: self.count,
            sum_us: self.sum_us,
            max_us: self.max_us,
        }
    }
}

/// A recorded distribution: non-empty buckets in ascending order. Serialises as its summary
/// (`count`, `sum_us`, `max_us`, `p50_us`, `p99_us`, `p999_us`) and its non-empty `buckets` as
/// `[upper bound µs, count]` pairs, so readers can merge snapshots or subtract an earlier one.
#[derive(utoipa::ToSchema, Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencySnapshot {
    buckets: Vec<(u32, u64)>,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

impl LatencySnapshot {
    /// Adds several distributions (exactly: they share the bucket layout).
    pub fn merged<'a>(parts: impl IntoIterator<Item = &'a LatencySnapshot>) -> LatencySnapshot {
        let mut counts: Vec<u64> = Vec::new();
        let mut total = LatencySnapshot::default();
        for part in parts {
            for &(i, c) in &part.buckets {
                let i = i as usize;
                if counts.len() <= i {
                    counts.resize(i + 1, 0);
                }
                counts[i] += c;
            }
            total.count += part.count;
            total.sum_us = total.sum_us.saturating_add(part.sum_us);
            total.max_us = total.max_us.max(part.max_us);
        }
        total.buckets = counts
            .into_iter()
            .enumerate()
            .filter(|(_, c)| *c > 0)
            .map(|(i, c)| (i as u32, c))
            .collect();
        total
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the recorded values, µs.
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// The largest value recorded, µs.
    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The value at quantile `q` (0–1), µs: the upper end of the bucket holding it (never above
    /// the largest value recorded); None when nothing was recorded.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(i, c) in &self.buckets {
            seen += c;
            if seen >= rank {
                return Some(upper(i as usize).min(self.max_us));
            }
        }
        Some(self.max_us)
    }

    /// How many values fell in buckets entirely at or below `bound_us` (a Prometheus `le`
    /// bucket; a bucket that straddles the bound counts above it).
    pub fn count_at_or_below(&self, bound_us: u64) -> u64 {
        self.buckets
            .iter()
            .take_while(|(i, _)| upper(*i as usize) <= bound_us)
            .map(|(_, c)| c)
            .sum()
    }
}

impl Serialize for LatencySnapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("LatencySnapshot", 7)?;
        s.serialize_field("count", &self.count)?;
        s.serialize_field("sum_us", &self.sum_us)?;
        s.serialize_field("max_us", &(self.count > 0).then_some(self.max_us))?;
        s.serialize_field("p50_us", &self.quantile_us(0.5))?;
        s.serialize_field("p99_us", &self.quantile_us(0.99))?;
        s.serialize_field("p999_us", &self.quantile_us(0.999))?;
        let buckets: Vec<[u64; 2]> = self
            .buckets
            .iter()
            .map(|&(i, c)| [upper(i as usize), c])
            .collect();
        s.serialize_field("buckets", &buckets)?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: u64) -> Duration {
        Duration::from_micros(v)
    }

    #[test]
    fn buckets_are_exact_below_64_us_and_at_most_a_32nd_wide_above() {
        for v in 0..LINEAR {
            assert_eq!(upper(index(v)), v);
        }
        let mut previous = index(LINEAR - 1);
        for v in [
            64, 65, 100, 127, 128, 1_000, 65_535, 65_536, 1_000_000, MAX_US,
        ] {
            let i = index(v);
            assert!(i >= previous, "buckets ascend with the value");
            previous = i;
            let hi = upper(i);
            assert!(hi >= v, "{v} ≤ upper {hi}");
            let lo = if i == 0 { 0 } else { upper(i - 1) + 1 };
            assert!(lo <= v, "{lo} ≤ {v}");
            assert!(
                (hi - lo + 1) as f64 <= lo as f64 / 32.0 + 1.0,
                "{v}: {lo}..={hi}"
            );
        }
        // Consecutive buckets tile the values without gaps or overlaps.
        for i in 1..=index(MAX_US) {
            assert_eq!(
                index(upper(i - 1) + 1),
                i,
                "bucket {i} starts after bucket {}",
                i - 1
            );
            assert_eq!(index(upper(i)), i, "bucket {i} ends at its upper value");
        }
        assert_eq!(index(u64::MAX), index(MAX_US));
    }

    #[test]
    fn quantiles_sum_count_and_max() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.snapshot().quantile_us(0.5), None);
        for v in 1..=1000 {
            h.record(us(v));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        assert_eq!(s.sum_us(), 500_500);
        assert_eq!(s.max_us(), 1000);
        let within = |got: Option<u64>, want: u64| {
            let got = got.unwrap();
            assert!(
                got >= want && got as f64 <= want as f64 * 1.04,
                "{got} ≈ {want}"
            );
        };
        within(s.quantile_us(0.5), 500);
        within(s.quantile_us(0.99), 990);
        within(s.quantile_us(0.999), 999);
        assert_eq!(s.quantile_us(1.0), Some(1000));
        assert_eq!(s.quantile_us(0.0), Some(1));
    }

    #[test]
    fn a_slow_outlier_moves_p999_not_p50() {
        let mut h = LatencyHistogram::new();
        for _ in 0..999 {
            h.record(us(40));
        }
        h.record(Duration::from_millis(250));
        let s = h.snapshot();
        assert_eq!(s.quantile_us(0.5), Some(40));
        assert_eq!(s.quantile_us(0.99), Some(40));
        assert_eq!(s.quantile_us(0.999), Some(40));
        assert_eq!(s.quantile_us(0.9995), Some(250_000));
        assert_eq!(s.max_us(), 250_000);
    }

    #[test]
    fn snapshots_merge_exactly() {
        let (mut a, mut b, mut all) = (
            LatencyHistogram::new(),
            LatencyHistogram::new(),
            LatencyHistogram::new(),
        );
        for v in [3, 70, 70, 900, 12_345] {
            a.record(us(v));
            all.record(us(v));
        }
        for v in [5, 70, 1_000_000] {
            b.record(us(v));
            all.record(us(v));
        }
        let merged = LatencySnapshot::merged([&a.snapshot(), &b.snapshot()]);
        assert_eq!(merged, all.snapshot());
        assert_eq!(LatencySnapshot::merged([]), LatencySnapshot::default());
    }

    #[test]
    fn prometheus_buckets_count_values_at_or_below_the_bound() {
        let mut h = LatencyHistogram::new();
        for v in [10, 50, 51, 99, 5_000, 2_000_000] {
            h.record(us(v));
        }
        let s = h.snapshot();
        assert_eq!(s.count_at_or_below(50), 2);
        assert_eq!(s.count_at_or_below(100), 4);
        assert_eq!(s.count_at_or_below(10_000), 5);
        assert_eq!(s.count_at_or_below(MAX_US), 6);
        assert_eq!(s.count_at_or_below(0), 0);
    }

    #[test]
    fn values_above_an_hour_are_capped() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_secs(10_000));
        let s = h.snapshot();
        assert_eq!(s.max_us(), MAX_US);
        assert_eq!(s.quantile_us(0.5), Some(MAX_US));
    }

    #[test]
    fn serialises_as_its_summary_and_buckets() {
        let mut h = LatencyHistogram::new();
        h.record(us(20));
        h.record(us(30));
        let json = serde_json::to_value(h.snapshot()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"count": 2, "sum_us": 50, "max_us": 30, "p50_us": 20,
                "p99_us": 30, "p999_us": 30, "buckets": [[20, 1], [30, 1]]})
        );
        let empty = serde_json::to_value(LatencySnapshot::default()).unwrap();
        assert_eq!(empty["p50_us"], serde_json::Value::Null);
        assert_eq!(empty["max_us"], serde_json::Value::Null);
    }
}
