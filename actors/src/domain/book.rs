//! The position monitor's leg book (docs/ARCHITECTURE.md §4.7): the open legs of every strategy
//! run, which instrument each follows, their latest prices, each run's P&L and whether its
//! prices are fresh enough to decide on.
//!
//! A leg's feed price is stale when none came for `stale_after`, counted from when monitoring
//! of the leg began (the later of the monitoring start and the leg's tracking start); while
//! the feed is down every leg is stale. A stale leg is priced another way (REST quotes) and
//! its run is Degraded; a run decides only when every open leg has a price younger than
//! `stale_after`, whatever its source. Time is always passed in.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::pnl::{RunPnl, Side, is_stale};
use super::subscriptions::Key;

/// Where a leg's latest price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PriceSource {
    /// A tick of the market-data feed.
    Feed,
    /// A REST quote (the feed price was stale or the feed down).
    Rest,
}

/// An open leg as the book needs it; `data` is what the caller keeps with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Leg<M> {
    /// Execution id.
    pub id: i32,
    /// Its strategy.
    pub strategy_id: i32,
    /// The strategy run it belongs to.
    pub run_id: i32,
    /// The account holding it.
    pub account_id: i32,
    /// The instrument.
    pub key: Key,
    /// Long or short.
    pub side: Side,
    /// Units.
    pub quantity: f64,
    /// Entry price.
    pub entry_price: f64,
    /// The caller's record of the leg.
    pub data: M,
}

struct Tracked<M> {
    leg: Leg<M>,
    /// When the book began tracking the leg.
    since: Instant,
    last_feed_at: Option<Instant>,
    source: Option<PriceSource>,
}

/// One strategy's current run.
pub struct Run {
    /// The strategy's name.
    pub name: String,
    /// The run's number.
    pub run_id: i32,
    pnl: RunPnl<i32>,
    /// (fresh, stale legs) as last reported.
    sent: Option<(bool, usize)>,
    /// Before this instant no open leg can turn stale (a lower bound: prices only get newer),
    /// so a tick need not re-check every leg; None when unknown or some leg is stale.
    fresh_until: Option<Instant>,
}

impl Run {
    /// The run's P&L.
    pub fn pnl(&self) -> &RunPnl<i32> {
        &self.pnl
    }
}

/// A run's figures for its risk rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunFigures {
    /// Realized + unrealized; None while an open leg has no price yet.
    pub pnl: Option<f64>,
    /// Realized P&L of the run's closed legs.
    pub realized: f64,
    /// Open legs.
    pub open_legs: usize,
    /// Σ open quantity.
    pub open_qty: f64,
    /// Net premium of the open legs.
    pub net_premium: f64,
    /// Every open leg's price (feed or REST) is younger than `stale_after`.
    pub fresh: bool,
    /// Open legs whose feed price is stale.
    pub stale_legs: usize,
}

/// A leg's latest price.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Priced {
    /// Last traded price.
    pub ltp: f64,
    /// When it was taken.
    pub at: Instant,
    /// Where it came from.
    pub source: Option<PriceSource>,
}

/// What [`PositionBook::open_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenRun {
    /// The run (or a newer one) is already in the book.
    Known,
    /// A new run's book was created; `retired` says an older run's legs were dropped.
    New {
        /// An older run of the strategy was in the book.
        retired: bool,
    },
}

/// What [`PositionBook::track`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// The leg is tracked now.
    Tracked,
    /// Already tracked, or of another run than the strategy's current one.
    Ignored,
    /// The strategy has no run in the book.
    NoRun,
}

/// A leg closed by [`PositionBook::close`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Closed {
    /// Its strategy.
    pub strategy_id: i32,
    /// The run's figures after the close; no open leg left means the run is over and out of
    /// the book.
    pub figures: RunFigures,
}

/// The open legs and their runs.
pub struct PositionBook<M> {
    stale_after: Duration,
    monitoring_since: Option<Instant>,
    feed_down: bool,
    legs: HashMap<i32, Tracked<M>>,
    by_key: HashMap<Key, Vec<i32>>,
    runs: HashMap<i32, Run>,
}

impl<M> PositionBook<M> {
    /// An empty book whose feed prices go stale after `stale_after`.
    pub fn new(stale_after: Duration) -> Self {
        PositionBook {
            stale_after,
            monitoring_since: None,
            feed_down: false,
            legs: HashMap::new(),
            by_key: HashMap::new(),
            runs: HashMap::new(),
        }
    }

    /// Forgets every leg and run (they are loaded again).
    pub fn clear(&mut self) {
        self.legs.clear();
        self.by_key.clear();
        self.runs.clear();
    }

    /// Monitoring began at `since` (None: it stopped; nothing is stale then).
    pub fn set_monitoring(&mut self, since: Option<Instant>) {
        self.monitoring_since = since;
        self.forget_freshness();
    }

    /// The feed went down (every leg is stale) or came back.
    pub fn set_feed_down(&mut self, down: bool) {
        self.feed_down = down;
        self.forget_freshness();
    }

    fn forget_freshness(&mut self) {
        for run in self.runs.values_mut() {
            run.fresh_until = None;
        }
    }

    /// The book of a strategy's run `run_id`, created when missing with the legs of the run
    /// that already exited (side, units, entry, exit). A book of an older run is retired.
    pub fn open_run(
        &mut self,
        strategy_id: i32,
        run_id: i32,
        name: &str,
        exited: impl IntoIterator<Item = (Side, f64, f64, f64)>,
    ) -> OpenRun {
        let mut retired = false;
        if let Some(run) = self.runs.get(&strategy_id) {
            if run.run_id >= run_id {
                return OpenRun::Known;
            }
            let old: Vec<i32> = self
                .legs
                .values()
                .filter(|t| t.leg.strategy_id == strategy_id)
                .map(|t| t.leg.id)
                .collect();
            for id in old {
                self.untrack(id);
            }
            retired = true;
        }
        let mut pnl = RunPnl::new();
        for (side, qty, entry, exit) in exited {
            pnl.record_exited(side, qty, entry, exit);
        }
        self.runs.insert(
            strategy_id,
            Run {
                name: name.to_string(),
                run_id,
                pnl,
                sent: None,
                fresh_until: None,
            },
        );
        OpenRun::New { retired }
    }

    /// Tracks an open leg of its strategy's current run from `now`. A leg on an instrument
    /// another leg follows starts with that leg's latest price.
    pub fn track(&mut self, leg: Leg<M>, now: Instant) -> Track {
        let Some(run) = self.runs.get_mut(&leg.strategy_id) else {
            return Track::NoRun;
        };
        if run.run_id != leg.run_id || self.legs.contains_key(&leg.id) {
            return Track::Ignored;
        }
        run.pnl
            .open_leg(leg.id, leg.side, leg.quantity, leg.entry_price);
        // The new leg has no price yet.
        run.fresh_until = None;
        let copied = self.by_key.get(&leg.key).and_then(|ids| {
            ids.iter().find_map(|other| {
                let o = self.legs.get(other)?;
                let (ltp, at) = self.last(o)?;
                Some((ltp, at, o.last_feed_at, o.source))
            })
        });
        let mut tracked = Tracked {
            leg,
            since: now,
            last_feed_at: None,
            source: None,
        };
        if let Some((ltp, at, feed_at, source)) = copied
            && let Some(run) = self.runs.get_mut(&tracked.leg.strategy_id)
        {
            run.pnl.update_price(&tracked.leg.id, ltp, at);
            tracked.last_feed_at = feed_at;
            tracked.source = source;
        }
        let id = tracked.leg.id;
        self.by_key
            .entry(tracked.leg.key.clone())
            .or_default()
            .push(id);
        self.legs.insert(id, tracked);
        Track::Tracked
    }

    /// Forgets a leg without closing it in its run's P&L.
    fn untrack(&mut self, id: i32) -> Option<Tracked<M>> {
        let tracked = self.legs.remove(&id)?;
        if let Some(ids) = self.by_key.get_mut(&tracked.leg.key) {
            ids.retain(|x| *x != id);
            if ids.is_empty() {
                self.by_key.remove(&tracked.leg.key);
            }
        }
        Some(tracked)
    }

    /// Closes a leg at `exit_price` (its latest price when None, else its entry); `closed`
    /// units of it when fewer than the leg were closed. A run without open legs leaves the
    /// book.
    pub fn close(
        &mut self,
        id: i32,
        exit_price: Option<f64>,
        closed: Option<f64>,
        now: Instant,
    ) -> Option<Closed> {
        let tracked = self.untrack(id)?;
        let last = self.last(&tracked).map(|(p, _)| p);
        let strategy_id = tracked.leg.strategy_id;
        let run = self.runs.get_mut(&strategy_id)?;
        let price = exit_price.or(last).unwrap_or(tracked.leg.entry_price);
        run.pnl.close_leg(&id, price, closed);
        let figures = self.figures(strategy_id, now)?;
        if figures.open_legs == 0 {
            self.runs.remove(&strategy_id);
        }
        Some(Closed {
            strategy_id,
            figures,
        })
    }

    /// A feed price for every leg on `key`; the strategies whose P&L changed.
    pub fn tick(&mut self, key: &Key, ltp: f64, at: Instant) -> Vec<i32> {
        let Some(ids) = self.by_key.get(key) else {
            return Vec::new();
        };
        let mut touched: Vec<i32> = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(tracked) = self.legs.get_mut(id) else {
                continue;
            };
            tracked.last_feed_at = Some(at);
            tracked.source = Some(PriceSource::Feed);
            let strategy_id = tracked.leg.strategy_id;
            if let Some(run) = self.runs.get_mut(&strategy_id) {
                run.pnl.update_price(id, ltp, at);
            }
            if !touched.contains(&strategy_id) {
                touched.push(strategy_id);
            }
        }
        touched
    }

    /// A REST price for one leg; its strategy, when the leg is still tracked.
    pub fn rest_price(&mut self, id: i32, ltp: f64, at: Instant) -> Option<i32> {
        let tracked = self.legs.get_mut(&id)?;
        tracked.source = Some(PriceSource::Rest);
        let strategy_id = tracked.leg.strategy_id;
        if let Some(run) = self.runs.get_mut(&strategy_id) {
            run.pnl.update_price(&id, ltp, at);
        }
        Some(strategy_id)
    }

    /// The run's figures now; remembered as the last reported.
    pub fn figures(&mut self, strategy_id: i32, now: Instant) -> Option<RunFigures> {
        let run = self.runs.get(&strategy_id)?;
        let (fresh, stale_legs, fresh_until) = match run.fresh_until {
            Some(until) if now < until => (true, 0, Some(until)),
            _ => self.staleness(run, now),
        };
        let figures = RunFigures {
            pnl: run.pnl.pnl(),
            realized: run.pnl.realized(),
            open_legs: run.pnl.open_legs().len(),
            open_qty: run.pnl.open_qty_sum(),
            net_premium: run.pnl.net_premium(),
            fresh,
            stale_legs,
        };
        let run = self.runs.get_mut(&strategy_id)?;
        run.sent = Some((fresh, stale_legs));
        run.fresh_until = fresh_until;
        Some(figures)
    }

    /// Whether every leg's price is within `stale_after`, how many legs have no feed price
    /// within it, and (when all are fresh) the earliest instant one could turn stale.
    fn staleness(&self, run: &Run, now: Instant) -> (bool, usize, Option<Instant>) {
        let mut stale_legs = 0;
        let mut fresh = true;
        let mut until: Option<Instant> = None;
        for open in run.pnl.open_legs() {
            let tracked = self.legs.get(&open.id);
            // A leg that never had a price counts as stale too: its run cannot decide.
            if tracked.is_some_and(|t| self.feed_stale(t, now)) {
                stale_legs += 1;
            }
            let Some((_, priced_at)) = open.last else {
                fresh = false;
                continue;
            };
            fresh &= !is_stale(priced_at, now, self.stale_after);
            let mut reference = priced_at;
            if let (Some(t), Some(since)) = (tracked, self.monitoring_since) {
                let start = since.max(t.since);
                reference = reference.min(t.last_feed_at.map_or(start, |at| at.max(start)));
            }
            let deadline = reference + self.stale_after;
            until = Some(until.map_or(deadline, |u| u.min(deadline)));
        }
        let all_fresh = fresh && stale_legs == 0;
        (fresh, stale_legs, until.filter(|_| all_fresh))
    }

    /// No feed price for `stale_after` (counted from when monitoring of the leg began), or the
    /// feed is down.
    fn feed_stale(&self, tracked: &Tracked<M>, now: Instant) -> bool {
        let Some(since) = self.monitoring_since else {
            return false;
        };
        if self.feed_down {
            return true;
        }
        let start = since.max(tracked.since);
        let reference = tracked.last_feed_at.map_or(start, |at| at.max(start));
        is_stale(reference, now, self.stale_after)
    }

    fn last(&self, tracked: &Tracked<M>) -> Option<(f64, Instant)> {
        self.runs
            .get(&tracked.leg.strategy_id)?
            .pnl
            .open_legs()
            .iter()
            .find(|l| l.id == tracked.leg.id)?
            .last
    }

    /// Legs whose feed price is stale and whose latest price is older than `refresh` (or
    /// missing), oldest price first, leaving out those `skip` names.
    pub fn to_price(
        &self,
        now: Instant,
        refresh: Duration,
        skip: impl Fn(i32) -> bool,
    ) -> Vec<i32> {
        let mut candidates: Vec<(Option<Instant>, i32)> = self
            .legs
            .values()
            .filter(|t| !skip(t.leg.id) && self.feed_stale(t, now))
            .filter_map(|t| {
                let priced_at = self.last(t).map(|(_, at)| at);
                priced_at
                    .is_none_or(|at| is_stale(at, now, refresh))
                    .then_some((priced_at, t.leg.id))
            })
            .collect();
        candidates.sort_by_key(|(at, _)| *at);
        candidates.into_iter().map(|(_, id)| id).collect()
    }

    /// Runs whose freshness or count of stale legs differs from what was last reported.
    pub fn staleness_changed(&self, now: Instant) -> Vec<i32> {
        self.runs
            .iter()
            .filter(|(_, run)| {
                let (fresh, stale_legs, _) = self.staleness(run, now);
                run.sent != Some((fresh, stale_legs))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Open legs of the strategy's run whose feed price is stale.
    pub fn stale_legs(&self, strategy_id: i32, now: Instant) -> usize {
        self.runs.get(&strategy_id).map_or(0, |run| {
            run.pnl
                .open_legs()
                .iter()
                .filter(|l| {
                    self.legs
                        .get(&l.id)
                        .is_some_and(|t| self.feed_stale(t, now))
                })
                .count()
        })
    }

    /// The leg's feed price is stale.
    pub fn is_stale(&self, id: i32, now: Instant) -> bool {
        self.legs.get(&id).is_some_and(|t| self.feed_stale(t, now))
    }

    /// Latest price per open leg (of one strategy, or all).
    pub fn last_prices(&self, strategy_id: Option<i32>) -> HashMap<i32, f64> {
        self.runs
            .iter()
            .filter(|(id, _)| strategy_id.is_none_or(|s| s == **id))
            .flat_map(|(_, run)| run.pnl.open_legs().iter())
            .filter_map(|l| l.last.map(|(p, _)| (l.id, p)))
            .collect()
    }

    /// A leg's latest price.
    pub fn priced(&self, id: i32) -> Option<Priced> {
        let tracked = self.legs.get(&id)?;
        let (ltp, at) = self.last(tracked)?;
        Some(Priced {
            ltp,
            at,
            source: tracked.source,
        })
    }

    /// The open legs.
    pub fn legs(&self) -> impl Iterator<Item = &Leg<M>> {
        self.legs.values().map(|t| &t.leg)
    }

    /// A tracked leg.
    pub fn leg(&self, id: i32) -> Option<&Leg<M>> {
        self.legs.get(&id).map(|t| &t.leg)
    }

    /// Open legs.
    pub fn len(&self) -> usize {
        self.legs.len()
    }

    /// No open leg.
    pub fn is_empty(&self) -> bool {
        self.legs.is_empty()
    }

    /// The instruments the open legs follow.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.by_key.keys()
    }

    /// Some open leg follows `key`.
    pub fn follows(&self, key: &Key) -> bool {
        self.by_key.contains_key(key)
    }

    /// Accounts with open legs.
    pub fn accounts(&self) -> HashSet<i32> {
        self.legs.values().map(|t| t.leg.account_id).collect()
    }

    /// The strategies' current runs.
    pub fn runs(&self) -> impl Iterator<Item = (i32, &Run)> {
        self.runs.iter().map(|(id, run)| (*id, run))
    }

    /// A strategy's current run.
    pub fn run(&self, strategy_id: i32) -> Option<&Run> {
        self.runs.get(&strategy_id)
    }

    /// The strategy was renamed.
    pub fn rename(&mut self, strategy_id: i32, name: &str) {
        if let Some(run) = self.runs.get_mut(&strategy_id) {
            run.name = name.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(10);

    fn leg(id: i32, strategy_id: i32, symbol: &str, side: Side, qty: f64, entry: f64) -> Leg<()> {
        Leg {
            id,
            strategy_id,
            run_id: 1,
            account_id: 7,
            key: Key::new("NFO", symbol),
            side,
            quantity: qty,
            entry_price: entry,
            data: (),
        }
    }

    fn book_with(legs: Vec<Leg<()>>, now: Instant) -> PositionBook<()> {
        let mut book = PositionBook::new(STALE);
        for l in legs {
            book.open_run(l.strategy_id, l.run_id, "s", []);
            assert_eq!(book.track(l, now), Track::Tracked);
        }
        book
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_tick_prices_every_leg_on_the_instrument_and_names_their_runs() {
        let t0 = Instant::now();
        let mut book = book_with(
            vec![
                leg(1, 10, "A", Side::Buy, 50.0, 100.0),
                leg(2, 20, "A", Side::Sell, 25.0, 100.0),
                leg(3, 20, "B", Side::Buy, 10.0, 5.0),
            ],
            t0,
        );
        let mut touched = book.tick(&Key::new("NFO", "A"), 110.0, t0);
        touched.sort_unstable();
        assert_eq!(touched, vec![10, 20]);
        assert!(book.tick(&Key::new("NFO", "C"), 1.0, t0).is_empty());
        let f10 = book.figures(10, t0).unwrap();
        assert!(close(f10.pnl.unwrap(), 500.0));
        // Strategy 20 still has a leg without a price: no P&L, not fresh.
        let f20 = book.figures(20, t0).unwrap();
        assert_eq!(f20.pnl, None);
        assert!(!f20.fresh);
        assert_eq!(book.priced(1).unwrap().source, Some(PriceSource::Feed));
    }

    #[test]
    fn a_new_leg_on_a_followed_instrument_starts_with_its_latest_price() {
        let t0 = Instant::now();
        let mut book = book_with(vec![leg(1, 10, "A", Side::Buy, 1.0, 100.0)], t0);
        book.tick(&Key::new("NFO", "A"), 104.0, t0);
        book.open_run(20, 1, "other", []);
        assert_eq!(
            book.track(leg(2, 20, "A", Side::Sell, 1.0, 101.0), t0),
            Track::Tracked
        );
        let priced = book.priced(2).unwrap();
        assert!(close(priced.ltp, 104.0));
        assert!(close(book.figures(20, t0).unwrap().pnl.unwrap(), -3.0));
    }

    #[test]
    fn legs_of_another_run_or_without_a_run_are_not_tracked() {
        let t0 = Instant::now();
        let mut book = book_with(vec![leg(1, 10, "A", Side::Buy, 1.0, 100.0)], t0);
        assert_eq!(
            book.track(leg(1, 10, "A", Side::Buy, 1.0, 100.0), t0),
            Track::Ignored
        );
        let mut old = leg(2, 10, "A", Side::Buy, 1.0, 100.0);
        old.run_id = 0;
        assert_eq!(book.track(old, t0), Track::Ignored);
        assert_eq!(
            book.track(leg(3, 30, "A", Side::Buy, 1.0, 1.0), t0),
            Track::NoRun
        );
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn a_newer_run_retires_the_older_runs_legs() {
        let t0 = Instant::now();
        let mut book = book_with(vec![leg(1, 10, "A", Side::Buy, 1.0, 100.0)], t0);
        assert_eq!(book.open_run(10, 1, "s", []), OpenRun::Known);
        assert_eq!(
            book.open_run(10, 2, "s", [(Side::Buy, 2.0, 100.0, 103.0)]),
            OpenRun::New { retired: true }
        );
        assert!(book.is_empty());
        assert!(!book.follows(&Key::new("NFO", "A")));
        assert!(close(book.run(10).unwrap().pnl().realized(), 6.0));
    }

    #[test]
    fn closing_the_last_leg_ends_the_run() {
        let t0 = Instant::now();
        let mut book = book_with(
            vec![
                leg(1, 10, "A", Side::Buy, 2.0, 100.0),
                leg(2, 10, "B", Side::Sell, 1.0, 50.0),
            ],
            t0,
        );
        book.tick(&Key::new("NFO", "A"), 90.0, t0);
        // Without an exit price, the latest price closes it.
        let closed = book.close(1, None, None, t0).unwrap();
        assert_eq!((closed.strategy_id, closed.figures.open_legs), (10, 1));
        assert!(close(closed.figures.realized, -20.0));
        assert_eq!(book.close(1, None, None, t0), None);
        // Without any price, the entry price: nothing realized.
        let closed = book.close(2, None, None, t0).unwrap();
        assert_eq!(closed.figures.open_legs, 0);
        assert!(close(closed.figures.pnl.unwrap(), -20.0));
        assert!(book.run(10).is_none());
        assert!(book.accounts().is_empty());
    }

    #[test]
    fn feed_prices_go_stale_only_while_monitoring_and_all_of_them_when_the_feed_is_down() {
        let t0 = Instant::now();
        let mut book = book_with(vec![leg(1, 10, "A", Side::Buy, 1.0, 100.0)], t0);
        book.tick(&Key::new("NFO", "A"), 101.0, t0);
        let later = t0 + STALE * 2;
        assert!(!book.is_stale(1, later), "not monitoring");
        book.set_monitoring(Some(t0));
        assert!(book.is_stale(1, later));
        assert_eq!(book.stale_legs(10, later), 1);
        assert!(!book.is_stale(1, t0 + STALE / 2));
        book.set_feed_down(true);
        assert!(book.is_stale(1, t0 + STALE / 2));
        book.set_feed_down(false);
        // Counted from the monitoring start when it is later than the price.
        book.set_monitoring(Some(later));
        assert!(!book.is_stale(1, later + STALE / 2));
    }

    #[test]
    fn figures_say_fresh_until_a_price_could_turn_stale() {
        let t0 = Instant::now();
        let mut book = book_with(vec![leg(1, 10, "A", Side::Buy, 1.0, 100.0)], t0);
        book.set_monitoring(Some(t0));
        book.tick(&Key::new("NFO", "A"), 101.0, t0);
        let f = book.figures(10, t0 + STALE / 2).unwrap();
        assert!(f.fresh);
        assert_eq!(f.stale_legs, 0);
        let f = book.figures(10, t0 + STALE * 2).unwrap();
        assert!(!f.fresh);
        assert_eq!(f.stale_legs, 1);
        // A REST price makes the run fresh again, the feed price stays stale.
        let at = t0 + STALE * 2;
        assert_eq!(book.rest_price(1, 102.0, at), Some(10));
        let f = book.figures(10, at).unwrap();
        assert!(f.fresh);
        assert_eq!(f.stale_legs, 1);
        assert_eq!(book.priced(1).unwrap().source, Some(PriceSource::Rest));
    }

    #[test]
    fn a_leg_that_never_had_a_price_is_stale_once_monitored_long_enough() {
        let t0 = Instant::now();
        let mut book = book_with(vec![leg(1, 10, "A", Side::Buy, 1.0, 100.0)], t0);
        book.set_monitoring(Some(t0));
        assert_eq!(book.figures(10, t0).unwrap().stale_legs, 0);
        let f = book.figures(10, t0 + STALE * 2).unwrap();
        assert_eq!((f.fresh, f.stale_legs, f.pnl), (false, 1, None));
    }

    #[test]
    fn stale_legs_are_priced_oldest_first_and_changes_are_noticed() {
        let t0 = Instant::now();
        let mut book = book_with(
            vec![
                leg(1, 10, "A", Side::Buy, 1.0, 100.0),
                leg(2, 20, "B", Side::Buy, 1.0, 100.0),
                leg(3, 30, "C", Side::Buy, 1.0, 100.0),
            ],
            t0,
        );
        book.set_monitoring(Some(t0));
        book.tick(&Key::new("NFO", "B"), 100.0, t0 + Duration::from_secs(2));
        book.tick(&Key::new("NFO", "A"), 100.0, t0 + Duration::from_secs(3));
        let now = t0 + STALE * 3;
        for id in [10, 20, 30] {
            book.figures(id, t0);
        }
        // Leg 3 never had a price: first; then the oldest price.
        assert_eq!(book.to_price(now, STALE / 2, |_| false), vec![3, 2, 1]);
        assert_eq!(book.to_price(now, STALE / 2, |id| id == 2), vec![3, 1]);
        let mut changed = book.staleness_changed(now);
        changed.sort_unstable();
        assert_eq!(changed, vec![10, 20, 30]);
        for id in [10, 20, 30] {
            book.figures(id, now);
        }
        assert!(book.staleness_changed(now).is_empty());
    }

    #[test]
    fn last_prices_per_leg_of_one_run_or_all() {
        let t0 = Instant::now();
        let mut book = book_with(
            vec![
                leg(1, 10, "A", Side::Buy, 1.0, 100.0),
                leg(2, 20, "B", Side::Buy, 1.0, 100.0),
            ],
            t0,
        );
        book.tick(&Key::new("NFO", "A"), 99.0, t0);
        book.tick(&Key::new("NFO", "B"), 98.0, t0);
        assert_eq!(book.last_prices(Some(10)), HashMap::from([(1, 99.0)]));
        assert_eq!(book.last_prices(None).len(), 2);
    }
}
