//! The random-walk clock: one timer that wakes every few milliseconds and generates the
//! ticks due since the previous pass (no timer per tick).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::state::Shared;

/// How long to sleep before the next pass at `rate` ticks per second.
fn pass_period(rate: f64) -> Duration {
    if rate <= 0.0 {
        return Duration::from_millis(20);
    }
    Duration::from_secs_f64(1.0 / rate).clamp(Duration::from_millis(1), Duration::from_millis(20))
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut last = Instant::now();
    let mut rate = shared.core().ticks_per_s;
    while !shared.stopping.load(Ordering::Relaxed) {
        actix_rt::time::sleep(pass_period(rate)).await;
        let clock = Instant::now();
        let elapsed = clock.duration_since(last).as_secs_f64();
        last = clock;
        let mut core = shared.core();
        let now = core.now();
        core.advance(elapsed, now, clock);
        rate = core.ticks_per_s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_run_every_one_to_twenty_milliseconds() {
        assert_eq!(pass_period(0.0), Duration::from_millis(20));
        assert_eq!(pass_period(10.0), Duration::from_millis(20));
        assert_eq!(pass_period(200.0), Duration::from_millis(5));
        assert_eq!(pass_period(100_000.0), Duration::from_millis(1));
    }
}
