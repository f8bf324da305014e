//! Fault state (`POST /sim/fault`) and how a service-wide fault and one account's combine:
//! a delay takes the longer of the two, a fault with an end time is on while either is, and
//! a counted fault takes the account's count first, then the service-wide one.

use std::time::{Duration, Instant};

use super::state::Core;

/// The reason `accept_then_reject` gives when the request names none.
pub(crate) const DEFAULT_REJECTION: &str = "RMS: margin exceeds limit (simulated)";

/// How `lose_answers` loses a placeorder answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum LostAnswer {
    /// HTTP 502 at once.
    #[default]
    BadGateway,
    /// Held for [`LOST_ANSWER_HOLD`] (any client gives up first), then HTTP 504.
    Timeout,
}

/// How long a `"timeout"` lost answer is held.
pub(crate) const LOST_ANSWER_HOLD: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AcceptThenReject {
    pub after: Duration,
    pub reason: String,
}

impl Default for AcceptThenReject {
    fn default() -> Self {
        AcceptThenReject {
            after: Duration::ZERO,
            reason: DEFAULT_REJECTION.to_string(),
        }
    }
}

/// What becomes of the rest of a partly filled order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Rest {
    /// Fills at the price current then.
    #[default]
    Fill,
    /// The broker cancels it; the partial fill stays.
    Cancel,
    /// Stays open until cancelled through cancelorder.
    Never,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct PartialFill {
    pub fraction: f64,
    pub rest_after: Duration,
    pub rest: Rest,
}

/// A fault for the next `left` orders or answers, each taking one.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Counted<T> {
    pub left: u64,
    pub how: T,
}

/// Fault injection state, either service-wide or for one account.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub refuse_auth_until: Option<Instant>,
    pub pause_ticks_until: Option<Instant>,
    pub latency_ms: u64,
    pub reject_orders: Counted<()>,
    pub place_answer_delay_ms: u64,
    pub lose_answers: Counted<LostAnswer>,
    pub fill_delay_ms: u64,
    pub accept_then_reject: Counted<AcceptThenReject>,
    pub partial_fill: Counted<PartialFill>,
    pub book_lag_ms: u64,
    pub books_unavailable_until: Option<Instant>,
    pub rate_limit_until: Option<Instant>,
    /// No `order_update` is pushed until then (a broker whose order stream is silent).
    pub mute_order_updates_until: Option<Instant>,
    /// `subscribe_orders` is refused until then (a broker without order updates).
    pub refuse_order_updates_until: Option<Instant>,
}

impl Faults {
    pub(crate) fn ticks_paused(&self, now: Instant) -> bool {
        self.pause_ticks_until.is_some_and(|until| now < until)
    }
}

/// Which fault a counted-fault lookup takes from.
pub(crate) type CountedField<T> = fn(&mut Faults) -> &mut Counted<T>;

/// How much of an order of `quantity` a partial fill of `fraction` fills at once:
/// `quantity × fraction` rounded down to whole lots, at least one lot, never the whole
/// order. `None` when the order is too small to split (one lot or one unit).
pub(crate) fn partial_quantity(quantity: u64, lot: u64, fraction: f64) -> Option<u64> {
    let lot = lot.max(1);
    let share = (quantity as f64 * fraction).floor() as u64;
    let part = (share / lot * lot).max(lot);
    (part < quantity).then_some(part)
}

impl Core {
    /// The account's faults then the service-wide ones (only those when `account` is `None`).
    fn scopes(&self, account: Option<usize>) -> impl Iterator<Item = &Faults> {
        account
            .map(|a| &self.accounts[a].faults)
            .into_iter()
            .chain(std::iter::once(&self.faults))
    }

    /// The longer of the account's and the service-wide delay read by `ms`.
    pub(crate) fn longest(&self, account: Option<usize>, ms: fn(&Faults) -> u64) -> Duration {
        Duration::from_millis(self.scopes(account).map(ms).max().unwrap_or(0))
    }

    /// How long the fault ending at `until` stays on (the later end of the two scopes), or
    /// `None` when it is off.
    pub(crate) fn remaining(
        &self,
        account: Option<usize>,
        until: fn(&Faults) -> Option<Instant>,
        now: Instant,
    ) -> Option<Duration> {
        self.scopes(account)
            .filter_map(until)
            .filter(|end| now < *end)
            .max()
            .map(|end| end - now)
    }

    /// Takes one of a counted fault for `account` (its own count first, then the
    /// service-wide one) when `applies` says it fits this order; returns how it applies.
    pub(crate) fn take<T: Clone>(
        &mut self,
        account: usize,
        field: CountedField<T>,
        applies: impl Fn(&T) -> bool,
    ) -> Option<T> {
        let Core {
            accounts, faults, ..
        } = self;
        [&mut accounts[account].faults, faults]
            .into_iter()
            .map(field)
            .find(|counted| counted.left > 0 && applies(&counted.how))
            .map(|counted| {
                counted.left -= 1;
                counted.how.clone()
            })
    }

    pub(crate) fn auth_refused(&self, account: Option<usize>, now: Instant) -> bool {
        self.remaining(account, |f| f.refuse_auth_until, now)
            .is_some()
    }

    pub(crate) fn order_updates_muted(&self, account: usize, now: Instant) -> bool {
        self.remaining(Some(account), |f| f.mute_order_updates_until, now)
            .is_some()
    }

    pub(crate) fn order_updates_refused(&self, account: usize, now: Instant) -> bool {
        self.remaining(Some(account), |f| f.refuse_order_updates_until, now)
            .is_some()
    }

    pub(crate) fn books_unavailable(&self, account: usize, now: Instant) -> bool {
        self.remaining(Some(account), |f| f.books_unavailable_until, now)
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_fills_round_down_to_whole_lots_and_never_fill_everything() {
        assert_eq!(partial_quantity(10, 1, 0.4), Some(4));
        assert_eq!(partial_quantity(10, 1, 0.99), Some(9));
        // At least one unit, and an order of one unit cannot be split.
        assert_eq!(partial_quantity(10, 1, 0.01), Some(1));
        assert_eq!(partial_quantity(1, 1, 0.5), None);
        // Lot-sized: 3 lots × 0.5 = 97.5 units → one lot.
        assert_eq!(partial_quantity(195, 65, 0.5), Some(65));
        assert_eq!(partial_quantity(195, 65, 0.7), Some(130));
        assert_eq!(partial_quantity(195, 65, 0.1), Some(65));
        assert_eq!(partial_quantity(65, 65, 0.5), None);
        assert_eq!(partial_quantity(130, 65, 0.99), Some(65));
        // A lot of 0 counts as 1.
        assert_eq!(partial_quantity(4, 0, 0.5), Some(2));
    }
}
