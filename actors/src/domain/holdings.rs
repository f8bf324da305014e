//! What the broker holds of one instrument on one account, as far as exits may use it
//! (docs/exits.md, "Never past zero").
//!
//! A [`Holding`] starts from a trusted position book read and then moves only with the fills
//! of the supervisor's own exit orders, so that a book that lags behind those fills cannot make
//! it look as if more were held. Exit orders of one side are bounded so that, even if every
//! order in flight fills, the broker's net position never goes past what the still-tracked
//! legs of the other side explain: past zero when there are none.

use crate::domain::pnl::Side;

/// Open units of the tracked legs on the instrument, by the side they were entered with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracked {
    /// Long legs (closed by SELL).
    pub long: i64,
    /// Short legs (closed by BUY).
    pub short: i64,
}

impl Tracked {
    fn of(&mut self, side: Side) -> &mut i64 {
        match side {
            Side::Buy => &mut self.long,
            Side::Sell => &mut self.short,
        }
    }
}

/// Units of exit orders not yet terminal on the instrument, by the side of the legs they close.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Orders closing long legs (SELLs).
    pub long: i64,
    /// Orders closing short legs (BUYs).
    pub short: i64,
}

impl InFlight {
    fn of(self, side: Side) -> i64 {
        match side {
            Side::Buy => self.long,
            Side::Sell => self.short,
        }
    }
}

/// What a leg's exit may send, before [`crate::domain::exit_machine::Permit`] is made of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// At most `units`; `settled` when no order on the instrument is in flight.
    Units {
        /// Units allowed now.
        units: i64,
        /// Nothing in flight can give units back.
        settled: bool,
    },
    /// The broker's net alone does not cover the order: the tracked legs of the instrument
    /// (both sides) must be counted first ([`Holding::set_tracked`]).
    NeedTracked,
}

/// The broker's position in one instrument (account, exchange, symbol, product).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    net: i64,
    tracked: Option<Tracked>,
}

impl Holding {
    /// From a trusted position book read: the broker's signed net position.
    pub fn from_read(net: i64) -> Holding {
        Holding { net, tracked: None }
    }

    /// The broker's signed net position as far as is known.
    pub fn net(&self) -> i64 {
        self.net
    }

    /// The tracked legs, once counted.
    pub fn tracked(&self) -> Option<Tracked> {
        self.tracked
    }

    /// Counts the tracked legs of the instrument (needed when the broker holds less than an
    /// exit wants in that direction).
    pub fn set_tracked(&mut self, tracked: Tracked) {
        self.tracked = Some(tracked);
    }

    /// What the exit of a leg entered on `side` may send now when it wants `wanted` units and
    /// `in_flight` units of orders on the instrument are not terminal (its own included).
    pub fn allowance(&self, side: Side, wanted: i64, in_flight: InFlight) -> Allowance {
        let held = match side {
            Side::Buy => self.net,
            Side::Sell => self.net.saturating_neg(),
        };
        let settled = in_flight.long == 0 && in_flight.short == 0;
        let base = held.saturating_sub(in_flight.of(side));
        if base >= wanted {
            return Allowance::Units {
                units: base,
                settled,
            };
        }
        let Some(mut tracked) = self.tracked else {
            return Allowance::NeedTracked;
        };
        let opposite = *tracked.of(side.opposite());
        Allowance::Units {
            units: base.saturating_add(opposite).max(0),
            settled,
        }
    }

    /// An exit order of a leg entered on `side` filled `units` more.
    pub fn filled(&mut self, side: Side, units: i64) {
        self.net = match side {
            Side::Buy => self.net.saturating_sub(units),
            Side::Sell => self.net.saturating_add(units),
        };
        if let Some(tracked) = &mut self.tracked {
            let open = tracked.of(side);
            *open = open.saturating_sub(units).max(0);
        }
    }

    /// `units` of a leg on `side` were found not held: they are tracked no more.
    pub fn unheld(&mut self, side: Side, units: i64) {
        if let Some(tracked) = &mut self.tracked {
            let open = tracked.of(side);
            *open = open.saturating_sub(units).max(0);
        }
    }

    /// A leg entered after the read this holding started from: its fill is not in the read.
    pub fn entered_since(&mut self, side: Side, units: i64) {
        self.net = match side {
            Side::Buy => self.net.saturating_add(units),
            Side::Sell => self.net.saturating_sub(units),
        };
        if let Some(tracked) = &mut self.tracked {
            let open = tracked.of(side);
            *open = open.saturating_add(units);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: InFlight = InFlight { long: 0, short: 0 };

    fn units(units: i64, settled: bool) -> Allowance {
        Allowance::Units { units, settled }
    }

    #[test]
    fn a_held_position_is_exited_in_full_and_never_past_zero() {
        let mut h = Holding::from_read(10);
        assert_eq!(h.allowance(Side::Buy, 10, NONE), units(10, true));
        // SELL 10 in flight: nothing more may be sold.
        let selling = InFlight { long: 10, short: 0 };
        assert_eq!(h.allowance(Side::Buy, 1, selling), Allowance::NeedTracked);
        h.set_tracked(Tracked { long: 10, short: 0 });
        assert_eq!(h.allowance(Side::Buy, 1, selling), units(0, false));
        h.filled(Side::Buy, 10);
        assert_eq!(h.net(), 0);
        assert_eq!(h.tracked(), Some(Tracked::default()));
        assert_eq!(h.allowance(Side::Buy, 5, NONE), units(0, true));
    }

    #[test]
    fn the_broker_holding_less_bounds_every_strategy_on_the_instrument_together() {
        // Two strategies long 10 and 5; the broker holds 6.
        let mut h = Holding::from_read(6);
        assert_eq!(h.allowance(Side::Buy, 10, NONE), Allowance::NeedTracked);
        h.set_tracked(Tracked { long: 15, short: 0 });
        assert_eq!(h.allowance(Side::Buy, 10, NONE), units(6, true));
        let selling = InFlight { long: 6, short: 0 };
        assert_eq!(h.allowance(Side::Buy, 5, selling), units(0, false));
        h.filled(Side::Buy, 6);
        assert_eq!(h.allowance(Side::Buy, 5, NONE), units(0, true));
        h.unheld(Side::Buy, 9);
        assert_eq!(h.tracked(), Some(Tracked { long: 0, short: 0 }));
    }

    #[test]
    fn a_short_leg_the_broker_does_not_hold_gets_nothing() {
        let mut h = Holding::from_read(0);
        h.set_tracked(Tracked { long: 0, short: 10 });
        assert_eq!(h.allowance(Side::Sell, 10, NONE), units(0, true));
        // The broker is long 4 (someone bought): buying would only add to it.
        let mut h = Holding::from_read(4);
        h.set_tracked(Tracked { long: 0, short: 10 });
        assert_eq!(h.allowance(Side::Sell, 10, NONE), units(0, true));
    }

    #[test]
    fn opposite_legs_of_other_strategies_count_when_the_account_nets_them() {
        // Strategy A long 10, strategy B short 10 on one account: the broker shows 0.
        let mut h = Holding::from_read(0);
        h.set_tracked(Tracked {
            long: 10,
            short: 10,
        });
        assert_eq!(h.allowance(Side::Sell, 10, NONE), units(10, true));
        // B's BUY 10 in flight; A may still sell 10: whichever fills, the net stays within
        // what the tracked legs explain.
        let buying = InFlight { long: 0, short: 10 };
        assert_eq!(h.allowance(Side::Buy, 10, buying), units(10, false));
        h.filled(Side::Sell, 10);
        assert_eq!(h.net(), 10);
        assert_eq!(h.allowance(Side::Buy, 10, NONE), units(10, true));
        h.filled(Side::Buy, 10);
        assert_eq!(h.net(), 0);
        assert_eq!(h.allowance(Side::Buy, 1, NONE), units(0, true));
    }

    #[test]
    fn a_leg_entered_after_the_read_is_added_to_it() {
        let mut h = Holding::from_read(10);
        h.set_tracked(Tracked { long: 10, short: 0 });
        h.filled(Side::Buy, 10);
        h.entered_since(Side::Buy, 5);
        assert_eq!(h.net(), 5);
        assert_eq!(h.allowance(Side::Buy, 5, NONE), units(5, true));
    }
}
