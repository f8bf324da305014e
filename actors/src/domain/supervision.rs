//! Crash-loop breaker for supervised actors (docs/ARCHITECTURE.md §7.1): more than `max_restarts`
//! restarts within a sliding `window` marks the actor Faulted instead of letting it spin.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Counts restarts and tells when they come too fast.
#[derive(Debug, Clone)]
pub struct CrashLoop {
    max_restarts: u32,
    window: Duration,
    /// The most recent restarts, at most `max_restarts + 1` of them, oldest first.
    recent: VecDeque<Instant>,
    /// `max_restarts` as a length.
    tolerated: usize,
    total: u64,
}

impl CrashLoop {
    /// A breaker that trips on the `max_restarts + 1`-th restart within `window`.
    pub fn new(max_restarts: u32, window: Duration) -> Self {
        let tolerated = usize::try_from(max_restarts).unwrap_or(usize::MAX);
        Self {
            max_restarts,
            window,
            recent: VecDeque::with_capacity(tolerated.saturating_add(1).min(1024)),
            tolerated,
            total: 0,
        }
    }

    /// Records a restart at `now`; true means the actor is now Faulted (more than
    /// `max_restarts` restarts within the last `window`, this one included).
    pub fn record_restart(&mut self, now: Instant) -> bool {
        self.total = self.total.saturating_add(1);
        while self
            .recent
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= self.window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        while self.recent.len() > self.tolerated.saturating_add(1) {
            self.recent.pop_front();
        }
        self.recent.len() > self.tolerated
    }

    /// Restarts recorded over the breaker's lifetime.
    pub fn restarts_total(&self) -> u64 {
        self.total
    }

    /// The configured limit of restarts tolerated within the window.
    pub fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    /// The configured sliding window.
    pub fn window(&self) -> Duration {
        self.window
    }
}

impl Default for CrashLoop {
    /// The default of `settings/base.toml` (`[supervision]`): more than 5 restarts in 60 s.
    fn default() -> Self {
        Self::new(5, Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn trips_on_the_sixth_restart_within_the_window() {
        let t0 = Instant::now();
        let mut c = CrashLoop::default();
        let verdicts: Vec<bool> = (0..6).map(|i| c.record_restart(at(t0, i * 10))).collect();
        assert_eq!(verdicts, [false, false, false, false, false, true]);
        assert_eq!(c.restarts_total(), 6);
    }

    #[test]
    fn restarts_spread_beyond_the_window_never_trip() {
        let t0 = Instant::now();
        let mut c = CrashLoop::default();
        // One restart every 12 s: any 60 s window holds at most 5 of them.
        for i in 0..100 {
            assert!(!c.record_restart(at(t0, i * 12)), "restart {i}");
        }
        assert_eq!(c.restarts_total(), 100);
    }

    #[test]
    fn window_slides() {
        let t0 = Instant::now();
        let mut c = CrashLoop::new(2, Duration::from_secs(10));
        assert!(!c.record_restart(at(t0, 0)));
        assert!(!c.record_restart(at(t0, 5)));
        // Third within 10 s: faulted.
        assert!(c.record_restart(at(t0, 9)));
        // At 15 s the restarts at 0 and 5 have left the window: only 9 and 15 remain.
        assert!(!c.record_restart(at(t0, 15)));
        assert!(c.record_restart(at(t0, 18)));
        assert_eq!(c.restarts_total(), 5);
    }

    #[test]
    fn zero_tolerance_trips_at_once() {
        let mut c = CrashLoop::new(0, Duration::from_secs(60));
        assert!(c.record_restart(Instant::now()));
    }
}
