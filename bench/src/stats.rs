//! Figures from what the benchmark reads: Prometheus counters, latency buckets of the risk
//! actors, samples of its own, and the RSS slope of a soak.

use std::collections::BTreeMap;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

/// The unlabelled samples of a Prometheus text exposition, by name.
pub fn prometheus(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.contains('{'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The risk actors' `field` distributions of a `/api/v1/state` answer, merged: count per
/// bucket upper bound (µs).
pub fn latency_buckets(state: &Value, field: &str) -> BTreeMap<u64, u64> {
    let mut merged = BTreeMap::new();
    let strategies = state["strategies"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for strategy in strategies {
        let buckets = strategy[field]["buckets"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        for pair in buckets {
            if let (Some(upper), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) {
                *merged.entry(upper).or_default() += count;
            }
        }
    }
    merged
}

/// What was recorded between two bucket readings, as an HDR histogram (each value at its
/// bucket's upper bound).
pub fn between(
    before: &BTreeMap<u64, u64>,
    after: &BTreeMap<u64, u64>,
) -> anyhow::Result<Histogram<u64>> {
    let mut h = histogram()?;
    for (upper, count) in after {
        let n = count.saturating_sub(before.get(upper).copied().unwrap_or(0));
        if n > 0 {
            h.record_n((*upper).max(1), n)
                .context("recording a latency bucket")?;
        }
    }
    Ok(h)
}

/// A histogram of 1 µs to one hour at 3 significant digits.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).context("creating a latency histogram")
}

/// Quantiles of a latency distribution, µs (null when nothing was recorded).
#[derive(Debug, Serialize)]
pub struct Quantiles {
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    pub p999: Option<u64>,
    pub count: u64,
}

impl Quantiles {
    pub fn of(h: &Histogram<u64>) -> Quantiles {
        let at = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q));
        Quantiles {
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            count: h.len(),
        }
    }
}

/// Least-squares slope of `(seconds, MB)` samples, MB per minute (0 with fewer than two).
pub fn slope_mb_per_min(samples: &[(f64, f64)]) -> f64 {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return 0.0;
    }
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_m = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let var: f64 = samples.iter().map(|s| (s.0 - mean_t).powi(2)).sum();
    if var == 0.0 {
        return 0.0;
    }
    let cov: f64 = samples
        .iter()
        .map(|s| (s.0 - mean_t) * (s.1 - mean_m))
        .sum();
    cov / var * 60.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prometheus_reads_unlabelled_samples() {
        let text = "# HELP a_total x\n# TYPE a_total counter\na_total 42\n\
                    b_bucket{le=\"1\"} 3\nc NaN\nd 1.5e3\n";
        let m = prometheus(text);
        assert_eq!(m.get("a_total"), Some(&42.0));
        assert_eq!(m.get("d"), Some(&1500.0));
        assert!(m.get("c").is_some_and(|v| v.is_nan()));
        assert!(!m.keys().any(|k| k.starts_with("b_bucket")));
    }

    #[test]
    fn buckets_merge_across_strategies_and_subtract() {
        let before = json!({"strategies": [
            {"feed_latency": {"buckets": [[10, 1]]}},
            {"feed_latency": {"buckets": []}}]});
        let after = json!({"strategies": [
            {"feed_latency": {"buckets": [[10, 3], [200, 1]]}},
            {"feed_latency": {"buckets": [[10, 2], [5000, 94]]}}]});
        let b = latency_buckets(&before, "feed_latency");
        let a = latency_buckets(&after, "feed_latency");
        assert_eq!(a.get(&10), Some(&5));
        let h = between(&b, &a).unwrap();
        assert_eq!(h.len(), 99);
        let q = Quantiles::of(&h);
        assert!(q.p50.unwrap() >= 4990 && q.p50.unwrap() <= 5010);
        assert!(h.value_at_quantile(0.01) <= 11);
    }

    #[test]
    fn empty_distributions_have_no_quantiles() {
        let q = Quantiles::of(&histogram().unwrap());
        assert_eq!((q.p50, q.count), (None, 0));
    }

    #[test]
    fn slope_is_per_minute_and_flat_when_memory_is() {
        assert_eq!(
            slope_mb_per_min(&[(0.0, 30.0), (60.0, 30.0), (120.0, 30.0)]),
            0.0
        );
        let rising = slope_mb_per_min(&[(0.0, 30.0), (30.0, 31.0), (60.0, 32.0)]);
        assert!((rising - 2.0).abs() < 1e-9);
        assert_eq!(slope_mb_per_min(&[(0.0, 1.0)]), 0.0);
    }
}
