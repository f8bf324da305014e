//! The wall clock as an input (docs/time.md).
//!
//! Code that needs the date or the time of day (market phase, expiries, "today") asks a
//! [`SharedClock`] for "now" instead of calling `Utc::now()`, so that a test can say what time
//! it is. Timers still run on real time, so an actor that sleeps until the next boundary also
//! watches [`Clock::changes`]: a [`ManualClock`] that is set or advanced notifies it, and it
//! re-evaluates at once.
//!
//! Three clocks:
//! - [`SystemClock`]: the machine's clock, in production.
//! - [`ManualClock`]: stands still until a test sets or advances it.
//! - [`OffsetClock`]: starts at a chosen instant and then advances with real time, for tests
//!   that need both a known date and time that passes (timers, price walks, leases).

use std::fmt::Debug;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

/// A source of the current time.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// A receiver that is notified whenever the clock jumps (a manual clock is set or advanced);
    /// None for a clock that only follows real time.
    fn changes(&self) -> Option<watch::Receiver<DateTime<Utc>>> {
        None
    }
}

/// The clock every actor and handler shares.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until it is set or advanced (tests and demos).
#[derive(Debug)]
pub struct ManualClock {
    time: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            time: watch::Sender::new(start),
        }
    }

    /// Sets the time and notifies every watcher.
    pub fn set(&self, t: DateTime<Utc>) {
        self.time.send_replace(t);
    }

    /// Moves the time by `d` (may be negative) and notifies every watcher.
    pub fn advance(&self, d: TimeDelta) {
        self.time.send_modify(|t| *t += d);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.time.borrow()
    }

    fn changes(&self) -> Option<watch::Receiver<DateTime<Utc>>> {
        Some(self.time.subscribe())
    }
}

/// Real time shifted by a fixed offset: it shows `start` when created and then runs at the
/// speed of the system clock.
#[derive(Debug, Clone, Copy)]
pub struct OffsetClock {
    offset: TimeDelta,
}

impl OffsetClock {
    /// A clock that shows `start` now.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self {
            offset: start - Utc::now(),
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn system_clock_follows_real_time() {
        let before = Utc::now();
        let now = SystemClock.now();
        assert!(now >= before);
        assert!(SystemClock.now() >= now);
        assert!(SystemClock.changes().is_none());
    }

    #[tokio::test]
    async fn manual_clock_stands_still_and_notifies_when_moved() {
        let start = Utc.with_ymd_and_hms(2026, 11, 17, 4, 30, 0).unwrap();
        let clock = ManualClock::new(start);
        let mut changes = clock.changes().unwrap();
        assert_eq!(clock.now(), start);
        assert!(!changes.has_changed().unwrap());

        clock.advance(TimeDelta::minutes(90));
        assert_eq!(clock.now(), start + TimeDelta::minutes(90));
        changes.changed().await.unwrap();
        assert_eq!(*changes.borrow_and_update(), start + TimeDelta::minutes(90));

        let later = Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap();
        clock.set(later);
        assert_eq!(clock.now(), later);
        changes.changed().await.unwrap();
        assert_eq!(*changes.borrow_and_update(), later);

        // Usable behind the shared trait object.
        let shared: SharedClock = Arc::new(clock);
        assert_eq!(shared.now(), later);
        assert!(shared.changes().is_some());
    }

    #[test]
    fn offset_clock_starts_at_the_chosen_instant_and_moves_forward() {
        let start = Utc.with_ymd_and_hms(2026, 11, 30, 4, 30, 0).unwrap();
        let clock = OffsetClock::starting_at(start);
        let first = clock.now();
        // Only the time spent between the two statements separates them: a small amount,
        // never negative, and nowhere near a day.
        assert!(first >= start);
        assert!(first - start < TimeDelta::hours(1), "{first}");
        assert!(clock.now() >= first);
        assert!(clock.changes().is_none());
    }
}
