//! Profit and loss of a strategy run (docs/ARCHITECTURE.md §4.7).
//!
//! A run starts when a strategy goes from no open legs to some. Its P&L is the unrealized P&L
//! of its open legs plus the realized P&L of the legs of the same run that already exited.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Direction of a leg or an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    /// Long (entered with a BUY).
    Buy,
    /// Short (entered with a SELL).
    Sell,
}

impl Side {
    /// The order action that closes a leg of this side.
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// +1 for Buy, −1 for Sell.
    pub fn sign(self) -> f64 {
        match self {
            Side::Buy => 1.0,
            Side::Sell => -1.0,
        }
    }

    /// The wire action: "BUY" or "SELL".
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action other than BUY or SELL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid action {0:?}: expected BUY or SELL")]
pub struct InvalidSide(pub String);

impl FromStr for Side {
    type Err = InvalidSide;

    /// Parses "BUY" or "SELL" in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("BUY") {
            Ok(Side::Buy)
        } else if t.eq_ignore_ascii_case("SELL") {
            Ok(Side::Sell)
        } else {
            Err(InvalidSide(s.to_owned()))
        }
    }
}

/// P&L of `qty` units entered at `entry`, valued at `price`: long `(price − entry) × qty`,
/// short `(entry − price) × qty`. With an exit price this is the leg's realized P&L.
pub fn leg_pnl(side: Side, qty: f64, entry: f64, price: f64) -> f64 {
    side.sign() * (price - entry) * qty
}

/// True for a usable price: finite and above zero (zero or negative ticks are ignored).
pub fn accept_price(ltp: f64) -> bool {
    ltp.is_finite() && ltp > 0.0
}

/// True when a price last updated at `last_update` is older than `stale_after` at `now`.
pub fn is_stale(last_update: Instant, now: Instant, stale_after: Duration) -> bool {
    now.saturating_duration_since(last_update) > stale_after
}

/// An open leg of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLeg<Id> {
    /// The leg (execution) id.
    pub id: Id,
    /// Long or short.
    pub side: Side,
    /// Open quantity in units.
    pub qty: f64,
    /// Entry price.
    pub entry: f64,
    /// Latest accepted price and when it arrived; None until the first one.
    pub last: Option<(f64, Instant)>,
}

/// P&L of one strategy run: its open legs, plus what its exited legs realized.
#[derive(Debug, Clone)]
pub struct RunPnl<Id> {
    open: Vec<OpenLeg<Id>>,
    /// Where each open leg is in `open` (a tick finds its leg at once, however many legs).
    index: HashMap<Id, usize>,
    /// Σ open quantity (whole units: exact in any order).
    open_qty: f64,
    realized: f64,
    net_premium: f64,
}

impl<Id> Default for RunPnl<Id> {
    fn default() -> Self {
        Self {
            open: Vec::new(),
            index: HashMap::new(),
            open_qty: 0.0,
            realized: 0.0,
            net_premium: 0.0,
        }
    }
}

impl<Id: Eq + Hash + Clone> RunPnl<Id> {
    /// An empty run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an open leg (unpriced until its first tick); a leg already open is left as it is.
    pub fn open_leg(&mut self, id: Id, side: Side, qty: f64, entry: f64) {
        if self.index.contains_key(&id) {
            return;
        }
        self.net_premium += side.sign() * entry * qty;
        self.open_qty += qty;
        self.index.insert(id.clone(), self.open.len());
        self.open.push(OpenLeg {
            id,
            side,
            qty,
            entry,
            last: None,
        });
    }

    /// Adds a leg of this run that had already exited (e.g. when reloading after a restart).
    pub fn record_exited(&mut self, side: Side, qty: f64, entry: f64, exit: f64) {
        self.net_premium += side.sign() * entry * qty;
        self.realized += leg_pnl(side, qty, entry, exit);
    }

    /// Applies a tick to leg `id`; false when the price is not accepted or the leg is unknown.
    pub fn update_price(&mut self, id: &Id, ltp: f64, now: Instant) -> bool {
        if !accept_price(ltp) {
            return false;
        }
        match self.index.get(id) {
            Some(&at) => {
                self.open[at].last = Some((ltp, now));
                true
            }
            None => false,
        }
    }

    /// Moves leg `id` from open to realized at `exit` (`closed` of its units, all when None:
    /// the broker may have held less); returns its realized P&L.
    pub fn close_leg(&mut self, id: &Id, exit: f64, closed: Option<f64>) -> Option<f64> {
        let pos = self.index.remove(id)?;
        let leg = self.open.swap_remove(pos);
        if let Some(moved) = self.open.get(pos) {
            self.index.insert(moved.id.clone(), pos);
        }
        self.open_qty -= leg.qty;
        let realized = leg_pnl(leg.side, closed.unwrap_or(leg.qty), leg.entry, exit);
        self.realized += realized;
        Some(realized)
    }

    /// Realized P&L of the run's exited legs.
    pub fn realized(&self) -> f64 {
        self.realized
    }

    /// Unrealized P&L of the open legs; None while any open leg has no price yet, because a
    /// partial sum (one leg of a hedge) could look like a loss that is not there.
    pub fn unrealized(&self) -> Option<f64> {
        self.open.iter().try_fold(0.0, |sum, leg| {
            leg.last
                .map(|(ltp, _)| sum + leg_pnl(leg.side, leg.qty, leg.entry, ltp))
        })
    }

    /// The run's P&L: realized plus unrealized; None while an open leg is unpriced.
    pub fn pnl(&self) -> Option<f64> {
        self.unrealized().map(|u| self.realized + u)
    }

    /// The open legs.
    pub fn open_legs(&self) -> &[OpenLeg<Id>] {
        &self.open
    }

    /// True when the run has no open legs left.
    pub fn is_flat(&self) -> bool {
        self.open.is_empty()
    }

    /// Σ open quantity (the multiplier of a points-based trailing stop).
    pub fn open_qty_sum(&self) -> f64 {
        self.open_qty
    }

    /// Net premium of the run's legs, open and exited: Σ entry × qty, bought legs positive and
    /// sold legs negative (a percentage trailing stop uses its absolute value).
    pub fn net_premium(&self) -> f64 {
        self.net_premium
    }

    /// Open legs whose price is missing or older than `stale_after` at `now`.
    pub fn stale_legs(&self, now: Instant, stale_after: Duration) -> impl Iterator<Item = &Id> {
        self.open
            .iter()
            .filter(move |l| l.last.is_none_or(|(_, at)| is_stale(at, now, stale_after)))
            .map(|l| &l.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn leg_pnl_long_and_short() {
        let cases = [
            (Side::Buy, 65.0, 100.0, 110.0, 650.0),
            (Side::Buy, 65.0, 100.0, 90.0, -650.0),
            (Side::Sell, 65.0, 100.0, 110.0, -650.0),
            (Side::Sell, 65.0, 100.0, 90.0, 650.0),
            (Side::Buy, 10.0, 1424.0, 1424.0, 0.0),
            (Side::Sell, 30.0, 250.5, 200.25, 1507.5),
        ];
        for (side, qty, entry, ltp, want) in cases {
            assert!(
                close(leg_pnl(side, qty, entry, ltp), want),
                "{side} {qty}@{entry} → {ltp}"
            );
        }
    }

    #[test]
    fn prices_and_staleness() {
        for (p, ok) in [
            (0.05, true),
            (1424.0, true),
            (0.0, false),
            (-1.0, false),
            (f64::NAN, false),
            (f64::INFINITY, false),
        ] {
            assert_eq!(accept_price(p), ok, "{p}");
        }
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        assert!(!is_stale(t0, t0 + minute, minute));
        assert!(is_stale(t0, t0 + minute + Duration::from_millis(1), minute));
        // A price newer than "now" is not stale.
        assert!(!is_stale(t0 + minute, t0, minute));
    }

    #[test]
    fn side_parsing_and_opposite() {
        assert_eq!("buy".parse::<Side>(), Ok(Side::Buy));
        assert_eq!("SELL".parse::<Side>(), Ok(Side::Sell));
        assert!("hold".parse::<Side>().is_err());
        assert_eq!(Side::Buy.opposite(), Side::Sell);
        assert_eq!(Side::Sell.opposite().as_str(), "BUY");
        assert_eq!(serde_json::to_string(&Side::Sell).unwrap(), "\"SELL\"");
    }

    #[test]
    fn run_pnl_needs_every_open_leg_priced() {
        let t0 = Instant::now();
        let mut run = RunPnl::new();
        run.open_leg(1, Side::Sell, 65.0, 100.0);
        run.open_leg(2, Side::Buy, 65.0, 40.0);
        assert_eq!(run.pnl(), None);
        assert!(run.update_price(&1, 120.0, t0));
        // Only the short leg is priced: -1300 would be a false loss.
        assert_eq!(run.pnl(), None);
        assert!(run.update_price(&2, 55.0, t0));
        // Short: (100-120)×65 = -1300; long: (55-40)×65 = 975.
        assert!(close(run.pnl().unwrap(), -325.0));
        assert!(close(run.open_qty_sum(), 130.0));
        assert!(close(run.net_premium(), -100.0 * 65.0 + 40.0 * 65.0));
    }

    #[test]
    fn run_pnl_ignores_bad_prices_and_unknown_legs() {
        let t0 = Instant::now();
        let mut run = RunPnl::new();
        run.open_leg(7, Side::Buy, 10.0, 100.0);
        assert!(run.update_price(&7, 105.0, t0));
        for bad in [0.0, -5.0, f64::NAN] {
            assert!(!run.update_price(&7, bad, t0));
        }
        assert!(!run.update_price(&8, 1000.0, t0));
        assert!(close(run.pnl().unwrap(), 50.0));
    }

    #[test]
    fn realized_of_exited_legs_counts_toward_the_run() {
        let t0 = Instant::now();
        let mut run = RunPnl::new();
        run.record_exited(Side::Buy, 10.0, 100.0, 90.0); // -100, reloaded after a restart
        run.open_leg("a", Side::Sell, 20.0, 50.0);
        run.open_leg("b", Side::Buy, 5.0, 200.0);
        run.update_price(&"a", 45.0, t0);
        run.update_price(&"b", 210.0, t0);
        // -100 + (50-45)×20 + (210-200)×5 = -100 + 100 + 50
        assert!(close(run.pnl().unwrap(), 50.0));
        // Short leg closed at 40: realized (50-40)×20 = 200.
        assert_eq!(run.close_leg(&"a", 40.0, None), Some(200.0));
        assert_eq!(run.close_leg(&"a", 40.0, None), None);
        assert!(close(run.realized(), 100.0));
        assert!(close(run.pnl().unwrap(), 150.0));
        assert!(close(run.open_qty_sum(), 5.0));
        // Net premium keeps every leg of the run: +1000 (exited buy) −1000 (sell) +1000 (buy).
        assert!(close(run.net_premium(), 1000.0));
        assert_eq!(run.close_leg(&"b", 190.0, None), Some(-50.0));
        assert!(run.is_flat());
        assert!(close(run.pnl().unwrap(), 50.0));
    }

    #[test]
    fn legs_stay_findable_after_others_close() {
        let now = Instant::now();
        let mut run = RunPnl::new();
        for (id, entry) in [("a", 10.0), ("b", 20.0), ("c", 30.0), ("d", 40.0)] {
            run.open_leg(id, Side::Buy, 1.0, entry);
        }
        run.open_leg("b", Side::Sell, 9.0, 99.0);
        assert!(close(run.open_qty_sum(), 4.0));
        assert_eq!(run.close_leg(&"a", 10.0, None), Some(0.0));
        for (id, ltp) in [("b", 21.0), ("c", 32.0), ("d", 43.0)] {
            assert!(run.update_price(&id, ltp, now), "{id}");
        }
        assert!(close(run.pnl().unwrap(), 6.0));
        assert_eq!(run.close_leg(&"d", 43.0, None), Some(3.0));
        assert!(run.update_price(&"c", 33.0, now));
        assert!(!run.update_price(&"d", 50.0, now));
        assert!(close(run.pnl().unwrap(), 7.0));
        assert!(close(run.open_qty_sum(), 2.0));
    }

    #[test]
    fn stale_legs_are_listed() {
        let t0 = Instant::now();
        let stale_after = Duration::from_secs(60);
        let mut run = RunPnl::new();
        run.open_leg(1, Side::Buy, 1.0, 10.0);
        run.open_leg(2, Side::Buy, 1.0, 10.0);
        run.open_leg(3, Side::Buy, 1.0, 10.0);
        run.update_price(&1, 11.0, t0);
        run.update_price(&2, 11.0, t0 + Duration::from_secs(50));
        let now = t0 + Duration::from_secs(61);
        let stale: Vec<i32> = run.stale_legs(now, stale_after).copied().collect();
        assert_eq!(stale, [1, 3]);
    }

    #[test]
    fn a_leg_of_which_the_broker_held_part_realizes_only_that_part() {
        let mut run: RunPnl<&str> = RunPnl::new();
        run.open_leg("p", Side::Buy, 10.0, 100.0);
        assert_eq!(run.close_leg(&"p", 110.0, Some(4.0)), Some(40.0));
        assert!(close(run.realized(), 40.0));
        assert!(run.is_flat());
    }
}
