//! Latency distributions for metrics: an HDR histogram of microseconds at two significant
//! figures (exact below 256 µs, then 128 buckets per power of two: at most 1/128 < 1 % wide),
//! snapshots that merge exactly across recorders (one per risk actor: every histogram has the
//! same bucket layout), quantiles and cumulative counts for Prometheus buckets.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// Significant figures the buckets keep.
const SIGFIG: u8 = 2;
/// Larger values are recorded as this (one hour).
pub const MAX_US: u64 = 3_600_000_000;

/// Counts with no value recorded, growing as values come.
fn empty() -> Histogram<u32> {
    // Two significant figures are within hdrhistogram's 0–5: this cannot fail.
    Histogram::new(SIGFIG).expect("2 significant figures are supported")
}

/// Records latencies; kept by the actor that measures them.
///
/// The counts grow with the largest value recorded (1 KB empty, 5.5 KB up to 100 ms, 13 KB at
/// most, for [`MAX_US`]); a bucket's count stops at `u32::MAX`. Recording is constant-time
/// apart from those few growths.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    snapshot: LatencySnapshot,
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
        let s = &mut self.snapshot;
        if s.counts.record(us).is_err() {
            // The counts could not grow to cover the value (only where usize is too small for
            // them): it is counted at the largest value they cover.
            s.counts.saturating_record(us);
        }
        s.sum_us = s.sum_us.saturating_add(us);
        s.max_us = s.max_us.max(us);
    }

    /// The recorded distribution (a copy of the counts: the buckets are read from it later,
    /// away from the recording actor).
    pub fn snapshot(&self) -> LatencySnapshot {
        self.snapshot.clone()
    }
}

/// A recorded distribution. Serialises as its summary (`count`, `sum_us`, `max_us`, `p50_us`,
/// `p99_us`, `p999_us`) and its non-empty `buckets` as `[upper bound µs, count]` pairs in
/// ascending order, so readers can merge snapshots or subtract an earlier one.
#[derive(Debug, Clone)]
pub struct LatencySnapshot {
    counts: Histogram<u32>,
    sum_us: u64,
    max_us: u64,
}

impl Default for LatencySnapshot {
    fn default() -> Self {
        Self {
            counts: empty(),
            sum_us: 0,
            max_us: 0,
        }
    }
}

impl PartialEq for LatencySnapshot {
    fn eq(&self, other: &Self) -> bool {
        self.counts == other.counts && self.sum_us == other.sum_us && self.max_us == other.max_us
    }
}

impl LatencySnapshot {
    /// Adds several distributions (exactly: they share the bucket layout).
    pub fn merged<'a>(parts: impl IntoIterator<Item = &'a LatencySnapshot>) -> LatencySnapshot {
        let mut total = LatencySnapshot::default();
        for part in parts {
            if let Err(error) = total.counts.add(&part.counts) {
                // Only where usize is too small for the counts: the part is left out whole.
                tracing::warn!(%error, "a latency distribution left out of a merge");
                continue;
            }
            total.sum_us = total.sum_us.saturating_add(part.sum_us);
            total.max_us = total.max_us.max(part.max_us);
        }
        total
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.counts.len()
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
        (!self.counts.is_empty())
            .then(|| self.counts.value_at_quantile(q.clamp(0.0, 1.0)))
            .map(|us| us.min(self.max_us))
    }

    /// How many values fell in buckets entirely at or below `bound_us` (a Prometheus `le`
    /// bucket; a bucket that straddles the bound counts above it).
    pub fn count_at_or_below(&self, bound_us: u64) -> u64 {
        if bound_us >= self.counts.high() {
            return self.count();
        }
        let through_its_bucket = self.counts.count_between(0, bound_us);
        if self.counts.highest_equivalent(bound_us) > bound_us {
            through_its_bucket - u64::from(self.counts.count_at(bound_us))
        } else {
            through_its_bucket
        }
    }
}

impl Serialize for LatencySnapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("LatencySnapshot", 7)?;
        let count = self.count();
        s.serialize_field("count", &count)?;
        s.serialize_field("sum_us", &self.sum_us)?;
        s.serialize_field("max_us", &(count > 0).then_some(self.max_us))?;
        s.serialize_field("p50_us", &self.quantile_us(0.5))?;
        s.serialize_field("p99_us", &self.quantile_us(0.99))?;
        s.serialize_field("p999_us", &self.quantile_us(0.999))?;
        let buckets: Vec<[u64; 2]> = self
            .counts
            .iter_recorded()
            .map(|v| [v.value_iterated_to(), u64::from(v.count_at_value())])
            .collect();
        s.serialize_field("buckets", &buckets)?;
        s.end()
    }
}

/// The JSON shape [`LatencySnapshot`] serialises to, for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[schema(as = LatencySnapshot)]
#[allow(dead_code)]
struct Shape {
    count: u64,
    sum_us: u64,
    max_us: Option<u64>,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
    p999_us: Option<u64>,
    /// `[upper bound µs, count]` pairs, ascending.
    buckets: Vec<[u64; 2]>,
}

impl utoipa::PartialSchema for LatencySnapshot {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <Shape as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for LatencySnapshot {
    fn name() -> std::borrow::Cow<'static, str> {
        <Shape as utoipa::ToSchema>::name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: u64) -> Duration {
        Duration::from_micros(v)
    }

    /// The bucket (lowest, highest value µs) of `v`.
    fn bucket(v: u64) -> (u64, u64) {
        let mut h = LatencyHistogram::new();
        h.record(us(v));
        let counts = &h.snapshot.counts;
        (counts.lowest_equivalent(v), counts.highest_equivalent(v))
    }

    #[test]
    fn buckets_are_exact_below_256_us_and_under_1_percent_wide_above() {
        for v in 0..256 {
            assert_eq!(bucket(v), (v, v));
        }
        for v in [
            256, 257, 300, 511, 512, 1_000, 65_535, 65_536, 1_000_000, MAX_US,
        ] {
            let (lo, hi) = bucket(v);
            assert!(lo <= v && v <= hi, "{lo} ≤ {v} ≤ {hi}");
            assert!(
                (hi - lo + 1) as f64 <= lo as f64 / 128.0,
                "{v}: {lo}..={hi}"
            );
        }
    }

    #[test]
    fn a_histogram_stays_small() {
        let bytes = |h: &LatencyHistogram| h.snapshot.counts.distinct_values() * size_of::<u32>();
        let mut h = LatencyHistogram::new();
        assert!(bytes(&h) <= 1024, "empty: {} B", bytes(&h));
        h.record(Duration::from_millis(100));
        assert!(bytes(&h) <= 6 * 1024, "up to 100 ms: {} B", bytes(&h));
        h.record(Duration::from_secs(10_000));
        assert!(bytes(&h) <= 14 * 1024, "up to an hour: {} B", bytes(&h));
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
        // 1 000 µs shares its bucket with 1 001–1 003 µs: at or below 1 000 it does not count.
        h.record(us(1_000));
        let s = h.snapshot();
        assert_eq!(s.count_at_or_below(999), 4);
        assert_eq!(s.count_at_or_below(1_000), 4);
        assert_eq!(s.count_at_or_below(1_003), 5);
        assert_eq!(s.count_at_or_below(u64::MAX), 7);
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
