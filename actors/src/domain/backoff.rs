//! Reconnect backoff for the upstream sockets (docs/ARCHITECTURE.md §4.4; the error replies it
//! classifies: docs/openalgo.md §2.1).
//!
//! `delay = min(max, initial × factor^n) × (1 + u × jitter)`, where `n` counts the consecutive
//! failures before this one (the first retry waits about `initial`). Authentication and
//! connection-limit failures wait at least `limit_min`, because a retry storm is what gets API
//! keys banned. The counter resets once the connection has stayed live for `reset_after`.

use std::time::{Duration, Instant};

/// Tunables of the reconnect backoff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Delay before the first retry (before jitter).
    pub initial: Duration,
    /// Growth factor applied per consecutive failure.
    pub factor: f64,
    /// Upper bound of the exponential part (jitter is applied on top).
    pub max: Duration,
    /// Fraction of the delay added at most as random jitter (0.2 = up to +20 %).
    pub jitter: f64,
    /// How long a connection must stay live before the failure count resets.
    pub reset_after: Duration,
    /// Minimum delay after an authentication rejection or a connection-limit error.
    pub limit_min: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(60),
            jitter: 0.2,
            reset_after: Duration::from_secs(30),
            limit_min: Duration::from_secs(30),
        }
    }
}

/// Why a connection attempt (or a live connection) failed, as far as backoff is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Network errors, timeouts, dropped sockets, unexpected replies.
    Transient,
    /// The gateway rejected the API key.
    AuthRejected,
    /// The broker refused another feed connection (429 / connection limit).
    ConnectionLimit,
}

/// Classifies an error reply or close reason from the feed.
///
/// `AUTHENTICATION_ERROR` → [`FailureKind::AuthRejected`]; `BROKER_CONNECTION_ERROR`, or a code or
/// message mentioning `429`, "Connection Limit Exceeded" or "Maximum websocket connections
/// exceeded" (any case) → [`FailureKind::ConnectionLimit`]; anything else is transient.
pub fn classify_feed_error(code: Option<&str>, message: &str) -> FailureKind {
    let code = code.unwrap_or("");
    if code.eq_ignore_ascii_case("AUTHENTICATION_ERROR") {
        return FailureKind::AuthRejected;
    }
    let limit_phrases = [
        "429",
        "connection limit exceeded",
        "maximum websocket connections exceeded",
    ];
    if code.eq_ignore_ascii_case("BROKER_CONNECTION_ERROR")
        || limit_phrases
            .iter()
            .any(|p| contains_ignore_ascii_case(code, p) || contains_ignore_ascii_case(message, p))
    {
        return FailureKind::ConnectionLimit;
    }
    FailureKind::Transient
}

/// Case-insensitive (ASCII) substring test that does not allocate.
fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Backoff state of one connection; keep it in the actor so it survives supervised restarts.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
    live_since: Option<Instant>,
}

impl Backoff {
    /// A fresh state: no failures recorded, not live.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            failures: 0,
            live_since: None,
        }
    }

    /// The policy this state applies.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Records a failure and returns how long to wait before the next attempt.
    ///
    /// `u` is a uniform random number in `[0, 1)` (clamped; NaN counts as 0). When a live
    /// connection drops, call [`Self::maybe_reset`] first so stable uptime is credited.
    pub fn next_delay(&mut self, kind: FailureKind, u: f64) -> Duration {
        let p = &self.policy;
        let exp = i32::try_from(self.failures).unwrap_or(i32::MAX);
        let grown = p.initial.as_secs_f64() * p.factor.powi(exp);
        let mut base = if grown.is_finite() && grown >= 0.0 {
            grown.min(p.max.as_secs_f64())
        } else {
            p.max.as_secs_f64()
        };
        if kind != FailureKind::Transient {
            base = base.max(p.limit_min.as_secs_f64());
        }
        let u = if u.is_nan() { 0.0 } else { u.clamp(0.0, 1.0) };
        let jitter = if p.jitter.is_finite() && p.jitter > 0.0 {
            p.jitter
        } else {
            0.0
        };
        let secs = base * (1.0 + u * jitter);
        self.failures = self.failures.saturating_add(1);
        self.live_since = None;
        Duration::try_from_secs_f64(secs).unwrap_or(p.max)
    }

    /// Marks the connection live (authenticated and subscribed) at `now`.
    pub fn on_live(&mut self, now: Instant) {
        self.live_since = Some(now);
    }

    /// Resets the failure count once the connection has been live for `reset_after`;
    /// returns true when it did reset.
    pub fn maybe_reset(&mut self, now: Instant) -> bool {
        match self.live_since {
            Some(since)
                if self.failures > 0
                    && now.saturating_duration_since(since) >= self.policy.reset_after =>
            {
                self.failures = 0;
                true
            }
            _ => false,
        }
    }

    /// Number of the current connection attempt (1 for the first, 2 after one failure, …).
    pub fn attempt(&self) -> u32 {
        self.failures.saturating_add(1)
    }

    /// Consecutive failures recorded since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(BackoffPolicy::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn transient_delays_double_up_to_the_cap() {
        let mut b = Backoff::default();
        let got: Vec<Duration> = (0..9)
            .map(|_| b.next_delay(FailureKind::Transient, 0.0))
            .collect();
        let want: Vec<Duration> = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
            .into_iter()
            .map(secs)
            .collect();
        assert_eq!(got, want);
        assert_eq!(b.attempt(), 10);
        assert_eq!(b.failures(), 9);
    }

    #[test]
    fn cap_holds_after_very_many_failures() {
        let mut b = Backoff::default();
        for _ in 0..5000 {
            b.next_delay(FailureKind::Transient, 0.0);
        }
        assert_eq!(b.next_delay(FailureKind::Transient, 0.0), secs(60.0));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        // (failures before, u, expected delay in seconds)
        let cases = [
            (0, 0.0, 1.0),
            (0, 0.5, 1.1),
            (0, 0.999_999, 1.0 + 0.999_999 * 0.2),
            (3, 0.5, 8.8),
            (10, 0.999_999, 60.0 * (1.0 + 0.999_999 * 0.2)),
            (2, -1.0, 4.0),
            (2, 7.0, 4.8),
            (2, f64::NAN, 4.0),
        ];
        for (before, u, want) in cases {
            let mut b = Backoff::default();
            for _ in 0..before {
                b.next_delay(FailureKind::Transient, 0.0);
            }
            let got = b.next_delay(FailureKind::Transient, u).as_secs_f64();
            assert!(
                (got - want).abs() < 1e-6,
                "before={before} u={u}: got {got}, want {want}"
            );
        }
        let mut b = Backoff::default();
        for i in 0..200 {
            let u = f64::from(i) / 200.0;
            let base = b.clone().next_delay(FailureKind::Transient, 0.0);
            let d = b.next_delay(FailureKind::Transient, u);
            assert!(d >= base && d.as_secs_f64() <= base.as_secs_f64() * 1.2 + 1e-9);
        }
    }

    #[test]
    fn auth_and_limit_errors_wait_at_least_limit_min() {
        for kind in [FailureKind::AuthRejected, FailureKind::ConnectionLimit] {
            let mut b = Backoff::default();
            assert_eq!(b.next_delay(kind, 0.0), secs(30.0), "{kind:?} first");
            assert_eq!(b.next_delay(kind, 0.0), secs(30.0), "{kind:?} second");
            assert!(b.next_delay(kind, 0.99) >= secs(30.0));
            for _ in 0..10 {
                b.next_delay(kind, 0.0);
            }
            assert_eq!(b.next_delay(kind, 0.0), secs(60.0), "{kind:?} capped");
        }
        // A limit error after a few transient failures still waits at least limit_min,
        // and a later transient failure continues the exponential sequence.
        let mut b = Backoff::default();
        b.next_delay(FailureKind::Transient, 0.0);
        assert_eq!(b.next_delay(FailureKind::ConnectionLimit, 0.0), secs(30.0));
        assert_eq!(b.next_delay(FailureKind::Transient, 0.0), secs(4.0));
    }

    #[test]
    fn resets_only_after_stable_uptime() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        for _ in 0..4 {
            b.next_delay(FailureKind::Transient, 0.0);
        }
        // Live, but dropped after 29 s: no reset, the sequence continues.
        b.on_live(t0);
        assert!(!b.maybe_reset(t0 + secs(29.0)));
        assert_eq!(b.attempt(), 5);
        assert_eq!(b.next_delay(FailureKind::Transient, 0.0), secs(16.0));
        // A failure clears the live mark: a later check without on_live does not reset.
        assert!(!b.maybe_reset(t0 + secs(120.0)));
        // Live for exactly reset_after: reset.
        b.on_live(t0 + secs(200.0));
        assert!(b.maybe_reset(t0 + secs(230.0)));
        assert_eq!(b.attempt(), 1);
        assert_eq!(b.next_delay(FailureKind::Transient, 0.0), secs(1.0));
    }

    #[test]
    fn classifies_feed_errors() {
        let cases = [
            (
                Some("AUTHENTICATION_ERROR"),
                "Invalid API key",
                FailureKind::AuthRejected,
            ),
            (
                Some("BROKER_CONNECTION_ERROR"),
                "upstream connect failed",
                FailureKind::ConnectionLimit,
            ),
            (
                Some("BROKER_ERROR"),
                "Error 429 from broker",
                FailureKind::ConnectionLimit,
            ),
            (
                None,
                "connection LIMIT exceeded (429)",
                FailureKind::ConnectionLimit,
            ),
            (
                None,
                "Connection Limit Exceeded",
                FailureKind::ConnectionLimit,
            ),
            (
                Some("805"),
                "Maximum websocket connections exceeded",
                FailureKind::ConnectionLimit,
            ),
            (
                Some("BROKER_ERROR"),
                "Broker adapter not found",
                FailureKind::Transient,
            ),
            (None, "connection reset by peer", FailureKind::Transient),
            (
                Some("INVALID_JSON"),
                "Invalid JSON message",
                FailureKind::Transient,
            ),
            (None, "", FailureKind::Transient),
        ];
        for (code, message, want) in cases {
            assert_eq!(
                classify_feed_error(code, message),
                want,
                "{code:?} {message}"
            );
        }
    }
}
