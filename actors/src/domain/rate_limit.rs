//! Moving-window rate limiter, the same model as the gateway's own limiter: at most `n`
//! acquisitions in any window of length `per` (orders per account, REST quote fallbacks).
//!
//! Not GCRA (the `governor` crate): GCRA keeps one instant, so it cannot both let `n` go at
//! once and refill at `n` per `per` without allowing up to `2n − 1` in some window (a burst of
//! `n`, then one every `per / n`), which the gateway answers with 429s. Keeping within `n` per
//! window costs it either the burst (burst 1: a 4-leg exit takes 300 ms at 10/s) or the rate
//! (a period of `per`: one order a second after the first `n`). The window keeps both.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// At most `n` permits in any sliding window of `per`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    limit: usize,
    per: Duration,
    /// Instants of the granted permits still inside the window, oldest first.
    granted: VecDeque<Instant>,
}

impl RateLimiter {
    /// A limiter granting `n` permits per `per` (`n` of 0 is treated as 1).
    pub fn new(n: u32, per: Duration) -> Self {
        let limit = usize::try_from(n.max(1)).unwrap_or(usize::MAX);
        Self {
            limit,
            per,
            granted: VecDeque::with_capacity(limit.min(4096)),
        }
    }

    /// Takes a permit at `now`, or says how long to wait until one frees up.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        while self
            .granted
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= self.per)
        {
            self.granted.pop_front();
        }
        if self.granted.len() < self.limit {
            self.granted.push_back(now);
            return Ok(());
        }
        match self.granted.front() {
            Some(&oldest) => Err((oldest + self.per).saturating_duration_since(now)),
            None => Err(self.per),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn grants_n_then_reports_the_wait() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10, Duration::from_secs(1));
        for i in 0..10 {
            assert_eq!(r.try_acquire(t0 + ms(i * 10)), Ok(()), "permit {i}");
        }
        // The oldest permit (t0) leaves the window at t0 + 1 s.
        assert_eq!(r.try_acquire(t0 + ms(100)), Err(ms(900)));
        assert_eq!(r.try_acquire(t0 + ms(999)), Err(ms(1)));
        assert_eq!(r.try_acquire(t0 + ms(1000)), Ok(()));
        // Next to leave is the one granted at t0 + 10 ms.
        assert_eq!(r.try_acquire(t0 + ms(1000)), Err(ms(10)));
    }

    #[test]
    fn window_moves_rather_than_resetting() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(2, Duration::from_secs(1));
        assert!(r.try_acquire(t0 + ms(900)).is_ok());
        assert!(r.try_acquire(t0 + ms(950)).is_ok());
        // A fixed window would reset at t0 + 1 s; a moving one must still refuse.
        assert_eq!(r.try_acquire(t0 + ms(1100)), Err(ms(800)));
        assert!(r.try_acquire(t0 + ms(1900)).is_ok());
        assert_eq!(r.try_acquire(t0 + ms(1900)), Err(ms(50)));
    }

    #[test]
    fn refusals_do_not_consume_permits() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1, ms(100));
        assert!(r.try_acquire(t0).is_ok());
        for i in 1..50 {
            assert!(r.try_acquire(t0 + ms(i)).is_err());
        }
        assert!(r.try_acquire(t0 + ms(100)).is_ok());
    }

    #[test]
    fn zero_is_treated_as_one() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(0, Duration::from_secs(1));
        assert!(r.try_acquire(t0).is_ok());
        assert_eq!(r.try_acquire(t0), Err(Duration::from_secs(1)));
    }
}
