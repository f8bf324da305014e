//! The strike window of one option-chain session (docs/ARCHITECTURE.md §4.10): CE and PE legs for
//! `centre ± n` strikes, their latest quotes, and how the window moves when ATM drifts.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::Serialize;

use super::options::{OptionType, Recenter, option_symbol, strike_window};

/// The strike step of a chain: the smallest distance between two adjacent listed strikes.
/// None when fewer than two distinct finite strikes are listed.
pub fn strike_step(strikes: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = strikes.iter().copied().filter(|s| s.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted
        .windows(2)
        // Round away binary noise (steps such as 0.05) before comparing gaps.
        .map(|w| ((w[1] - w[0]) * 1e4).round() / 1e4)
        .filter(|gap| *gap > 0.0)
        .min_by(f64::total_cmp)
}

/// What the feed (or the gateway's chain answer) says about one option; None where it has
/// nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LegQuote {
    /// Last traded price.
    pub ltp: Option<f64>,
    /// Best bid.
    pub bid: Option<f64>,
    /// Best ask.
    pub ask: Option<f64>,
    /// Traded volume.
    pub volume: Option<f64>,
    /// Open interest.
    pub oi: Option<f64>,
}

/// One side (CE or PE) of a strike.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = ChainLeg)]
pub struct Leg {
    /// The option's trading symbol.
    pub symbol: String,
    /// Its latest quote.
    #[serde(flatten)]
    pub quote: LegQuote,
}

/// One strike of the window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChainRow {
    /// The strike price.
    pub strike: f64,
    /// The call.
    pub ce: Leg,
    /// The put.
    pub pe: Leg,
}

/// The symbols that enter and leave when the window moves.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowMove {
    /// Symbols of the new window that the old one did not have.
    pub added: Vec<String>,
    /// Symbols of the old window that the new one does not have.
    pub removed: Vec<String>,
}

/// The strikes `centre ± n × step` of one underlying and expiry, each with its CE and PE leg.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainWindow {
    base: String,
    expiry: NaiveDate,
    step: f64,
    strikes_each_side: u32,
    centre: f64,
    rows: Vec<ChainRow>,
    /// Symbol → (row, side).
    index: HashMap<String, (usize, OptionType)>,
}

impl ChainWindow {
    /// The window of `base` options expiring on `expiry`, centred on `centre`, with no quotes.
    pub fn new(
        base: &str,
        expiry: NaiveDate,
        step: f64,
        strikes_each_side: u32,
        centre: f64,
    ) -> ChainWindow {
        let leg = |strike, kind| Leg {
            symbol: option_symbol(base, expiry, strike, kind),
            quote: LegQuote::default(),
        };
        let rows: Vec<ChainRow> = strike_window(centre, step, strikes_each_side)
            .into_iter()
            .map(|strike| ChainRow {
                strike,
                ce: leg(strike, OptionType::Call),
                pe: leg(strike, OptionType::Put),
            })
            .collect();
        let mut index = HashMap::with_capacity(rows.len() * 2);
        for (at, row) in rows.iter().enumerate() {
            index.insert(row.ce.symbol.clone(), (at, OptionType::Call));
            index.insert(row.pe.symbol.clone(), (at, OptionType::Put));
        }
        ChainWindow {
            base: base.to_owned(),
            expiry,
            step,
            strikes_each_side,
            centre,
            rows,
            index,
        }
    }

    /// The centre strike.
    pub fn centre(&self) -> f64 {
        self.centre
    }

    /// The strike step.
    pub fn step(&self) -> f64 {
        self.step
    }

    /// The strikes, ascending.
    pub fn rows(&self) -> &[ChainRow] {
        &self.rows
    }

    /// Every option symbol of the window: per strike ascending, CE then PE.
    pub fn symbols(&self) -> Vec<String> {
        self.rows
            .iter()
            .flat_map(|r| [r.ce.symbol.clone(), r.pe.symbol.clone()])
            .collect()
    }

    /// True when `symbol` is one of the window's legs.
    pub fn contains(&self, symbol: &str) -> bool {
        self.index.contains_key(symbol)
    }

    /// Replaces the quote of `symbol` (fields the update lacks become None: a value the feed
    /// no longer sends must not linger). Returns true when something changed.
    pub fn apply(&mut self, symbol: &str, quote: LegQuote) -> bool {
        let Some(&(at, kind)) = self.index.get(symbol) else {
            return false;
        };
        let Some(row) = self.rows.get_mut(at) else {
            return false;
        };
        let leg = match kind {
            OptionType::Call => &mut row.ce,
            OptionType::Put => &mut row.pe,
        };
        let changed = leg.quote != quote;
        leg.quote = quote;
        changed
    }

    /// The centre the window should move to for an underlying price of `ltp`: only when the
    /// strike nearest to it is more than one step from the current centre (hysteresis).
    pub fn recentre_target(&self, ltp: f64) -> Option<f64> {
        Recenter {
            atm: self.centre,
            step: self.step,
        }
        .should_recenter(ltp)
    }

    /// The same window centred on `centre`, keeping the quotes of the strikes both share, and
    /// the symbols that enter and leave.
    pub fn recentred(&self, centre: f64) -> (ChainWindow, WindowMove) {
        let mut next = ChainWindow::new(
            &self.base,
            self.expiry,
            self.step,
            self.strikes_each_side,
            centre,
        );
        for row in &self.rows {
            for leg in [&row.ce, &row.pe] {
                next.apply(&leg.symbol, leg.quote);
            }
        }
        let added = next
            .symbols()
            .into_iter()
            .filter(|s| !self.contains(s))
            .collect();
        let removed = self
            .symbols()
            .into_iter()
            .filter(|s| !next.contains(s))
            .collect();
        (next, WindowMove { added, removed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiry() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    fn quote(ltp: f64) -> LegQuote {
        LegQuote {
            ltp: Some(ltp),
            bid: Some(ltp - 0.5),
            ask: Some(ltp + 0.5),
            volume: Some(1000.0),
            oi: Some(5000.0),
        }
    }

    #[test]
    fn step_is_the_smallest_gap_between_listed_strikes() {
        assert_eq!(strike_step(&[24000.0, 24050.0, 24100.0]), Some(50.0));
        assert_eq!(strike_step(&[24100.0, 24000.0, 24050.0]), Some(50.0));
        // A missing strike in the listing does not double the step.
        assert_eq!(strike_step(&[52000.0, 52200.0, 52300.0]), Some(100.0));
        assert_eq!(strike_step(&[83.2, 83.25, 83.3]), Some(0.05));
        assert_eq!(strike_step(&[290.0, 292.5, 292.5, 295.0]), Some(2.5));
        assert_eq!(strike_step(&[24000.0]), None);
        assert_eq!(strike_step(&[24000.0, 24000.0]), None);
        assert_eq!(strike_step(&[]), None);
        assert_eq!(strike_step(&[f64::NAN, 100.0]), None);
    }

    #[test]
    fn window_lists_ce_and_pe_for_each_strike() {
        let w = ChainWindow::new("NIFTY", expiry(), 50.0, 1, 24000.0);
        let strikes: Vec<f64> = w.rows().iter().map(|r| r.strike).collect();
        assert_eq!(strikes, [23950.0, 24000.0, 24050.0]);
        assert_eq!(
            w.symbols(),
            [
                "NIFTY24NOV2623950CE",
                "NIFTY24NOV2623950PE",
                "NIFTY24NOV2624000CE",
                "NIFTY24NOV2624000PE",
                "NIFTY24NOV2624050CE",
                "NIFTY24NOV2624050PE",
            ]
        );
        assert!(w.contains("NIFTY24NOV2624000PE"));
        assert!(!w.contains("NIFTY24NOV2624100CE"));
        assert!(w.rows().iter().all(|r| r.ce.quote == LegQuote::default()));
    }

    #[test]
    fn apply_replaces_the_leg_quote_and_reports_changes() {
        let mut w = ChainWindow::new("NIFTY", expiry(), 50.0, 1, 24000.0);
        assert!(w.apply("NIFTY24NOV2624000CE", quote(120.0)));
        assert!(!w.apply("NIFTY24NOV2624000CE", quote(120.0)));
        assert_eq!(w.rows()[1].ce.quote, quote(120.0));
        assert_eq!(w.rows()[1].pe.quote, LegQuote::default());
        // An LTP-only update clears the fields it does not carry.
        let ltp_only = LegQuote {
            ltp: Some(121.0),
            ..LegQuote::default()
        };
        assert!(w.apply("NIFTY24NOV2624000CE", ltp_only));
        assert_eq!(w.rows()[1].ce.quote, ltp_only);
        assert!(!w.apply("NIFTY24NOV2699999CE", quote(1.0)));
    }

    #[test]
    fn recentring_needs_more_than_one_step() {
        let w = ChainWindow::new("NIFTY", expiry(), 50.0, 2, 24000.0);
        assert_eq!(w.recentre_target(24070.0), None);
        assert_eq!(w.recentre_target(23930.0), None);
        assert_eq!(w.recentre_target(24080.0), Some(24100.0));
        assert_eq!(w.recentre_target(23800.0), Some(23800.0));
        assert_eq!(w.recentre_target(0.0), None);
    }

    #[test]
    fn recentred_window_keeps_shared_quotes_and_lists_the_difference() {
        let mut w = ChainWindow::new("NIFTY", expiry(), 50.0, 1, 24000.0);
        w.apply("NIFTY24NOV2624050PE", quote(80.0));
        w.apply("NIFTY24NOV2623950CE", quote(150.0));
        let (next, moved) = w.recentred(24100.0);
        assert_eq!(next.centre(), 24100.0);
        let strikes: Vec<f64> = next.rows().iter().map(|r| r.strike).collect();
        assert_eq!(strikes, [24050.0, 24100.0, 24150.0]);
        assert_eq!(next.rows()[0].pe.quote, quote(80.0));
        assert_eq!(
            moved.added,
            [
                "NIFTY24NOV2624100CE",
                "NIFTY24NOV2624100PE",
                "NIFTY24NOV2624150CE",
                "NIFTY24NOV2624150PE",
            ]
        );
        assert_eq!(
            moved.removed,
            [
                "NIFTY24NOV2623950CE",
                "NIFTY24NOV2623950PE",
                "NIFTY24NOV2624000CE",
                "NIFTY24NOV2624000PE",
            ]
        );
        // The original is untouched until the caller commits the move.
        assert_eq!(w.centre(), 24000.0);
        let (same, none) = w.recentred(24000.0);
        assert_eq!(same.symbols(), w.symbols());
        assert!(none.added.is_empty() && none.removed.is_empty());
    }
}
