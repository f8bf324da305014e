//! The benchmark harness, run for a few seconds with tiny parameters: every field of its JSON
//! line is present and sane (the figures themselves are checked by `make bench`, not here).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[test]
fn bench_prints_one_sane_json_line() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args([
            "bench",
            "--symbols",
            "20",
            "--strategies",
            "2",
            "--viewers",
            "1",
            "--duration",
            "2",
            "--rate",
            "2000",
            "--json",
        ])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting supervisor bench");
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the benchmark") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("supervisor bench did not finish within 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("reading the benchmark's output");
    assert!(status.success(), "bench failed: {status}; stdout: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "--json prints exactly one line: {out}");
    let r: Value = serde_json::from_str(lines[0]).expect("the line is JSON");

    let number = |field: &str| {
        r[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} missing or not a number: {r}"))
    };
    assert_eq!(number("symbols"), 20.0);
    assert_eq!(number("strategies"), 2.0);
    assert_eq!(number("viewers"), 1.0);
    assert_eq!(number("offered_ticks_per_s"), 2000.0);
    let ticks = number("ticks_per_s");
    let ceiling = number("ceiling_ticks_per_s");
    assert!(ticks > 0.0 && ceiling > 0.0, "{r}");
    assert!(
        ceiling <= 2000.0 * 1.2,
        "the ceiling cannot exceed the offered load: {r}"
    );
    let ratio = number("ratio");
    assert!(
        (ratio - ticks / ceiling).abs() < 0.01 && ratio > 0.0,
        "ratio is ticks_per_s / ceiling: {r}"
    );
    for (field, quantiles) in [
        ("tick_to_risk_us", &["p50", "p99", "p999"][..]),
        ("breach_to_exit_us", &["p50", "p99"][..]),
        ("exit_fill_confirm_us", &["p50", "p99"][..]),
        ("exit_fill_confirm_polling_us", &["p50", "p99"][..]),
    ] {
        let values: Vec<u64> = quantiles
            .iter()
            .map(|q| {
                r[field][q]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{field}.{q} missing: {r}"))
            })
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] <= w[1]),
            "{field} quantiles ordered: {r}"
        );
        assert!(
            values[0] > 0 && values[0] < 60_000_000,
            "{field} plausible: {r}"
        );
        assert!(
            r[field]["count"].as_u64().unwrap_or(0) > 0,
            "{field} counted: {r}"
        );
    }
    assert_eq!(
        r["breach_to_exit_us"]["count"], 20,
        "every breach trial exited: {r}"
    );
    assert_eq!(r["breach_exits_missed"], 0, "no missed stop: {r}");
    for field in ["exit_fill_confirm_us", "exit_fill_confirm_polling_us"] {
        assert_eq!(
            r[field]["count"], 10,
            "{field}: every breach trial's fill was confirmed: {r}"
        );
    }

    // The exits' write-ahead rows were timed while HTTP clients wrote strategies, none failing.
    let write_ahead = &r["exit_write_ahead_us"];
    assert!(
        write_ahead["count"].as_u64().is_some_and(|n| n >= 10),
        "one write-ahead row per breach at least: {r}"
    );
    let (p50, p99, max) = (
        write_ahead["p50"].as_u64().expect("p50"),
        write_ahead["p99"].as_u64().expect("p99"),
        write_ahead["max"].as_u64().expect("max"),
    );
    assert!(p50 <= p99 && p99 <= max, "{r}");
    assert!(number("http_writes") > 0.0, "{r}");
    assert_eq!(number("http_write_errors"), 0.0, "{r}");
    let rss = number("rss_mb");
    assert!(rss > 1.0 && rss < 4096.0, "{r}");
    assert!(number("rss_slope_mb_per_min").is_finite());
    assert!(number("cpu_s_per_mtick") > 0.0, "{r}");
    assert_eq!(r["upstream_connections"], 1, "one feed connection: {r}");
    assert!(number("upstream_subscriptions") >= 20.0, "{r}");
    assert_eq!(r["dropped_ticks"], 0, "the risk path loses nothing: {r}");
    for field in [
        "viewer_ticks_coalesced",
        "sim_ticks_dropped",
        "viewer_snapshots",
    ] {
        assert!(r[field].is_u64(), "{field} missing: {r}");
    }
}
