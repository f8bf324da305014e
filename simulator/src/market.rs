//! The simulated market: indices, liquid NSE equities and option chains on NIFTY,
//! BANKNIFTY and SENSEX, with a seeded random walk.
//!
//! Prices move by a small log-normal step with a weak pull back to the last price set
//! (`/sim/price` or the starting price), so long runs stay near realistic levels.
//! Options are priced from their underlying with Black-Scholes at a fixed IV. A price set
//! directly on an option through `/sim/price` is kept as long as the underlying's price
//! is the one it had at that moment; once the underlying moves, the option is priced
//! from the model again. A random-walk tick on an option moves its underlying.

use std::collections::HashMap;
use std::ops::Range;

use chrono::{DateTime, NaiveDate, Utc, Weekday};
use rand::Rng;
use rand::rngs::StdRng;

use super::calendar;
use super::pricing::{self, Right};

pub(crate) const TICK_SIZE: f64 = 0.05;
/// Standard deviation of one random-walk step (log return) when the previous step of the same
/// price is at least [`FULL_STEP_MS`] old; closer steps are scaled down by the square root of
/// the gap, so a firehose of ticks moves prices no faster per second than a trickle does.
const STEP_SIGMA: f64 = 0.0002;
const FULL_STEP_MS: f64 = 500.0;
/// Strength of the pull back to the anchor price per step.
const REVERSION: f64 = 0.00001;
/// Strikes listed on each side of the at-the-money strike.
pub(crate) const STRIKES_EACH_SIDE: i64 = 75;
const YEAR_MS: f64 = 365.0 * 86_400_000.0;

pub(crate) fn round_tick(price: f64) -> f64 {
    (price / TICK_SIZE).round() * TICK_SIZE
}

/// Strike as written in symbols: no trailing `.0` when whole.
pub(crate) fn format_strike(strike: f64) -> String {
    if strike.fract() == 0.0 {
        format!("{}", strike as i64)
    } else {
        format!("{strike}")
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Cycle {
    Weekly(Weekday),
    Monthly(Weekday),
}

#[derive(Debug)]
pub(crate) struct UnderlyingSpec {
    pub name: &'static str,
    pub index_exchange: &'static str,
    pub option_exchange: &'static str,
    pub start: f64,
    pub lot: u64,
    pub freeze: u64,
    pub step: f64,
    pub iv: f64,
    pub cycle: Cycle,
    pub expiries: usize,
}

pub(crate) const UNDERLYINGS: [UnderlyingSpec; 3] = [
    UnderlyingSpec {
        name: "NIFTY",
        index_exchange: "NSE_INDEX",
        option_exchange: "NFO",
        start: 25_900.0,
        lot: 65,
        freeze: 1800,
        step: 50.0,
        iv: 0.12,
        cycle: Cycle::Weekly(Weekday::Tue),
        expiries: 4,
    },
    UnderlyingSpec {
        name: "BANKNIFTY",
        index_exchange: "NSE_INDEX",
        option_exchange: "NFO",
        start: 57_500.0,
        lot: 30,
        freeze: 600,
        step: 100.0,
        iv: 0.14,
        cycle: Cycle::Monthly(Weekday::Tue),
        expiries: 3,
    },
    UnderlyingSpec {
        name: "SENSEX",
        index_exchange: "BSE_INDEX",
        option_exchange: "BFO",
        start: 84_500.0,
        lot: 20,
        freeze: 1000,
        step: 100.0,
        iv: 0.12,
        cycle: Cycle::Weekly(Weekday::Thu),
        expiries: 4,
    },
];

const EQUITIES: [(&str, f64); 20] = [
    ("RELIANCE", 1420.0),
    ("INFY", 1510.0),
    ("TCS", 3120.0),
    ("HDFCBANK", 985.0),
    ("ICICIBANK", 1385.0),
    ("SBIN", 955.0),
    ("BHARTIARTL", 2010.0),
    ("ITC", 412.0),
    ("LT", 3930.0),
    ("KOTAKBANK", 2115.0),
    ("AXISBANK", 1180.0),
    ("HINDUNILVR", 2450.0),
    ("BAJFINANCE", 1005.0),
    ("MARUTI", 15_900.0),
    ("SUNPHARMA", 1705.0),
    ("TITAN", 3710.0),
    ("ASIANPAINT", 2505.0),
    ("WIPRO", 251.0),
    ("HCLTECH", 1550.0),
    ("M&M", 3610.0),
];

#[derive(Clone, Copy, Debug)]
pub(crate) struct OptionLeg {
    /// Index into [`UNDERLYINGS`] and [`Market::underlyings`].
    pub underlying: usize,
    /// Instrument id of the underlying index.
    pub index_id: usize,
    pub strike: f64,
    pub expiry: NaiveDate,
    pub right: Right,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Index,
    Equity,
    Option(OptionLeg),
}

#[derive(Debug)]
pub(crate) struct Instrument {
    pub symbol: String,
    pub exchange: &'static str,
    pub kind: Kind,
    pub lot: u64,
    pub freeze: Option<u64>,
    pub ltp: f64,
    anchor: f64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub prev_close: f64,
    pub volume: u64,
    pub last_qty: u64,
    turnover: f64,
    pub oi: u64,
    pub total_buy_qty: u64,
    pub total_sell_qty: u64,
    pub bid_qty: u64,
    pub ask_qty: u64,
    pub ltt_ms: i64,
    /// Option price set through `/sim/price`, with the underlying's price at that moment.
    pin: Option<(f64, f64)>,
}

impl Instrument {
    fn base(
        symbol: &str,
        exchange: &'static str,
        kind: Kind,
        start: f64,
        rng: &mut StdRng,
        now_ms: i64,
    ) -> Self {
        let prev_close = round_tick(start * (1.0 + rng.random_range(-0.01..0.01)));
        let traded = matches!(kind, Kind::Equity);
        // Equities start with traded quantities, everything else with none.
        let mut traded_qty = |range: Range<u64>| {
            if traded { rng.random_range(range) } else { 0 }
        };
        let volume = traded_qty(200_000..5_000_000);
        Instrument {
            symbol: symbol.to_string(),
            exchange,
            kind,
            lot: 1,
            freeze: None,
            ltp: start,
            anchor: start,
            open: start,
            high: start,
            low: start,
            prev_close,
            volume,
            last_qty: 0,
            turnover: volume as f64 * start,
            oi: 0,
            total_buy_qty: traded_qty(50_000..500_000),
            total_sell_qty: traded_qty(50_000..500_000),
            bid_qty: traded_qty(10..2_000),
            ask_qty: traded_qty(10..2_000),
            ltt_ms: now_ms,
            pin: None,
        }
    }

    pub(crate) fn is_index(&self) -> bool {
        matches!(self.kind, Kind::Index)
    }

    pub(crate) fn option(&self) -> Option<&OptionLeg> {
        match &self.kind {
            Kind::Option(leg) => Some(leg),
            _ => None,
        }
    }

    fn note_price(&mut self) {
        self.high = self.high.max(self.ltp);
        self.low = self.low.min(self.ltp);
    }
}

/// A full quote of one instrument at one moment.
#[derive(Clone, Debug)]
pub(crate) struct Quote {
    pub ltp: f64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub prev_close: f64,
    pub volume: u64,
    pub last_qty: u64,
    pub average_price: f64,
    pub total_buy_qty: u64,
    pub total_sell_qty: u64,
    pub bid: f64,
    pub ask: f64,
    pub bid_qty: u64,
    pub ask_qty: u64,
    pub oi: u64,
    pub upper_circuit: f64,
    pub lower_circuit: f64,
    pub ltt_ms: i64,
}

#[derive(Debug)]
pub(crate) struct ChainRow {
    pub strike: f64,
    pub call: usize,
    pub put: usize,
}

#[derive(Debug)]
pub(crate) struct Underlying {
    pub spec: &'static UnderlyingSpec,
    pub index_id: usize,
    pub expiries: Vec<NaiveDate>,
    /// One chain per expiry, strikes ascending.
    pub chains: Vec<Vec<ChainRow>>,
}

impl Underlying {
    /// The chain of one expiry while it trades: None once its session has closed at `now`.
    pub(crate) fn chain(&self, expiry: NaiveDate, now: DateTime<Utc>) -> Option<&[ChainRow]> {
        if !calendar::is_live(expiry, now) {
            return None;
        }
        let at = self.expiries.iter().position(|e| *e == expiry)?;
        self.chains.get(at).map(Vec::as_slice)
    }
}

#[derive(Debug)]
pub(crate) struct Market {
    pub instruments: Vec<Instrument>,
    by_key: HashMap<String, usize>,
    pub underlyings: Vec<Underlying>,
}

pub(crate) fn years_to(expiry: NaiveDate, now: DateTime<Utc>) -> f64 {
    (calendar::expiry_close(expiry) - now).num_milliseconds() as f64 / YEAR_MS
}

impl Market {
    /// Lists every instrument with its starting state; expiries are the next ones still trading
    /// at `now` (today's expiry is listed until 15:30 Asia/Kolkata).
    pub(crate) fn build(now: DateTime<Utc>, rng: &mut StdRng) -> Market {
        let now_ms = now.timestamp_millis();
        let mut market = Market {
            instruments: Vec::new(),
            by_key: HashMap::new(),
            underlyings: Vec::new(),
        };
        for (at, spec) in UNDERLYINGS.iter().enumerate() {
            let index = Instrument::base(
                spec.name,
                spec.index_exchange,
                Kind::Index,
                spec.start,
                rng,
                now_ms,
            );
            let index_prev_close = index.prev_close;
            let index_id = market.push(index);
            let expiries = match spec.cycle {
                Cycle::Weekly(day) => calendar::weekly_expiries(now, day, spec.expiries),
                Cycle::Monthly(day) => calendar::monthly_expiries(now, day, spec.expiries),
            };
            let atm = (spec.start / spec.step).round() * spec.step;
            let mut chains = Vec::with_capacity(expiries.len());
            for expiry in &expiries {
                let mut rows = Vec::with_capacity((2 * STRIKES_EACH_SIDE + 1) as usize);
                for k in -STRIKES_EACH_SIDE..=STRIKES_EACH_SIDE {
                    let strike = atm + k as f64 * spec.step;
                    let mut push_leg = |right| {
                        let leg = OptionLeg {
                            underlying: at,
                            index_id,
                            strike,
                            expiry: *expiry,
                            right,
                        };
                        market.push(option_instrument(spec, leg, k, index_prev_close, rng, now))
                    };
                    let call = push_leg(Right::Call);
                    let put = push_leg(Right::Put);
                    rows.push(ChainRow { strike, call, put });
                }
                chains.push(rows);
            }
            market.underlyings.push(Underlying {
                spec,
                index_id,
                expiries,
                chains,
            });
        }
        for (symbol, start) in EQUITIES {
            market.push(Instrument::base(
                symbol,
                "NSE",
                Kind::Equity,
                start,
                rng,
                now_ms,
            ));
        }
        market
    }

    fn push(&mut self, instrument: Instrument) -> usize {
        let id = self.instruments.len();
        self.by_key
            .insert(format!("{}:{}", instrument.exchange, instrument.symbol), id);
        self.instruments.push(instrument);
        id
    }

    pub(crate) fn id(&self, exchange: &str, symbol: &str) -> Option<usize> {
        self.by_key.get(&format!("{exchange}:{symbol}")).copied()
    }

    pub(crate) fn underlying(&self, name: &str) -> Option<&Underlying> {
        self.underlyings.iter().find(|u| u.spec.name == name)
    }

    /// The current price; options are repriced from their underlying first.
    pub(crate) fn ltp(&mut self, id: usize, now: DateTime<Utc>) -> f64 {
        self.refresh(id, now);
        self.instruments[id].ltp
    }

    fn refresh(&mut self, id: usize, now: DateTime<Utc>) {
        let Some(leg) = self.instruments[id].option().copied() else {
            return;
        };
        let spot = self.instruments[leg.index_id].ltp;
        let instrument = &mut self.instruments[id];
        instrument.ltp = match instrument.pin {
            Some((price, pinned_spot)) if pinned_spot == spot => price,
            _ => {
                instrument.pin = None;
                model_price(&UNDERLYINGS[leg.underlying], &leg, spot, now)
            }
        };
        instrument.note_price();
    }

    /// One random-walk tick on `id`: moves the price (an option moves its underlying)
    /// and records a trade.
    pub(crate) fn step(&mut self, id: usize, rng: &mut StdRng, now: DateTime<Utc>) {
        let walker = match self.instruments[id].kind {
            Kind::Option(leg) => leg.index_id,
            _ => id,
        };
        let now_ms = now.timestamp_millis();
        let gap_ms = (now_ms - self.instruments[walker].ltt_ms).max(0) as f64;
        walk(
            &mut self.instruments[walker],
            rng,
            (gap_ms / FULL_STEP_MS).min(1.0).sqrt(),
        );
        self.instruments[walker].ltt_ms = now_ms;
        self.refresh(id, now);
        self.record_trade(id, rng, now);
    }

    /// Sets a price directly (`/sim/price`).
    pub(crate) fn set_ltp(&mut self, id: usize, price: f64, now: DateTime<Utc>) {
        let pinned_spot = self.instruments[id]
            .option()
            .map(|leg| self.instruments[leg.index_id].ltp);
        let instrument = &mut self.instruments[id];
        instrument.ltp = price;
        match pinned_spot {
            Some(spot) => instrument.pin = Some((price, spot)),
            None => instrument.anchor = price,
        }
        instrument.ltt_ms = now.timestamp_millis();
        instrument.note_price();
    }

    fn record_trade(&mut self, id: usize, rng: &mut StdRng, now: DateTime<Utc>) {
        let instrument = &mut self.instruments[id];
        instrument.ltt_ms = now.timestamp_millis();
        match instrument.kind {
            Kind::Index => {}
            Kind::Equity => {
                let qty = rng.random_range(1..=200);
                instrument.last_qty = qty;
                instrument.volume += qty;
                instrument.turnover += qty as f64 * instrument.ltp;
                instrument.total_buy_qty = jitter(instrument.total_buy_qty, 500, rng);
                instrument.total_sell_qty = jitter(instrument.total_sell_qty, 500, rng);
                instrument.bid_qty = rng.random_range(10..2_000);
                instrument.ask_qty = rng.random_range(10..2_000);
            }
            Kind::Option(_) => {
                let lot = instrument.lot;
                let qty = lot * rng.random_range(1..=10);
                instrument.last_qty = qty;
                instrument.volume += qty;
                instrument.turnover += qty as f64 * instrument.ltp;
                let oi_change = lot * rng.random_range(0..=5);
                instrument.oi = if rng.random_bool(0.5) {
                    instrument.oi + oi_change
                } else {
                    instrument.oi.saturating_sub(oi_change).max(lot)
                };
                instrument.total_buy_qty = jitter(instrument.total_buy_qty, lot * 20, rng);
                instrument.total_sell_qty = jitter(instrument.total_sell_qty, lot * 20, rng);
                instrument.bid_qty = lot * rng.random_range(1..=40);
                instrument.ask_qty = lot * rng.random_range(1..=40);
            }
        }
    }

    pub(crate) fn quote(&mut self, id: usize, now: DateTime<Utc>) -> Quote {
        self.refresh(id, now);
        let i = &self.instruments[id];
        let (bid, ask) = bid_ask(i);
        let (upper_circuit, lower_circuit) = match i.kind {
            Kind::Index => (0.0, 0.0),
            Kind::Equity => (
                round_tick(i.prev_close * 1.2),
                round_tick(i.prev_close * 0.8),
            ),
            Kind::Option(_) => (round_tick(i.prev_close * 4.0 + 50.0), TICK_SIZE),
        };
        Quote {
            ltp: i.ltp,
            open: i.open,
            high: i.high,
            low: i.low,
            prev_close: i.prev_close,
            volume: i.volume,
            last_qty: i.last_qty,
            average_price: if i.volume > 0 {
                (i.turnover / i.volume as f64 * 100.0).round() / 100.0
            } else {
                0.0
            },
            total_buy_qty: i.total_buy_qty,
            total_sell_qty: i.total_sell_qty,
            bid,
            ask,
            bid_qty: i.bid_qty,
            ask_qty: i.ask_qty,
            oi: i.oi,
            upper_circuit,
            lower_circuit,
            ltt_ms: i.ltt_ms,
        }
    }
}

fn bid_ask(i: &Instrument) -> (f64, f64) {
    match i.kind {
        Kind::Index => (0.0, 0.0),
        Kind::Equity => ((i.ltp - TICK_SIZE).max(0.0), i.ltp + TICK_SIZE),
        Kind::Option(_) => {
            let half = round_tick(i.ltp * 0.002).max(TICK_SIZE);
            (
                round_tick((i.ltp - half).max(0.0)),
                round_tick(i.ltp + half),
            )
        }
    }
}

fn jitter(value: u64, by: u64, rng: &mut StdRng) -> u64 {
    let delta = rng.random_range(0..=by);
    if rng.random_bool(0.5) {
        value + delta
    } else {
        value.saturating_sub(delta)
    }
}

/// One step; `scale` (0–1) shrinks the noise for steps that follow closely on the previous one.
fn walk(instrument: &mut Instrument, rng: &mut StdRng, scale: f64) {
    // Uniform noise scaled to unit variance; cheap and good enough for a simulator.
    let z = rng.random_range(-1.0..1.0) * 3f64.sqrt();
    let pull = -REVERSION * (instrument.ltp / instrument.anchor).ln();
    let next = round_tick(instrument.ltp * (STEP_SIGMA * scale * z + pull).exp()).max(TICK_SIZE);
    instrument.ltp = next;
    instrument.note_price();
}

pub(crate) fn model_price(
    spec: &UnderlyingSpec,
    leg: &OptionLeg,
    spot: f64,
    now: DateTime<Utc>,
) -> f64 {
    let years = years_to(leg.expiry, now);
    round_tick(pricing::price(
        spot, leg.strike, years, spec.iv, 0.0, leg.right,
    ))
    .max(TICK_SIZE)
}

fn option_instrument(
    spec: &'static UnderlyingSpec,
    leg: OptionLeg,
    steps_from_atm: i64,
    index_prev_close: f64,
    rng: &mut StdRng,
    now: DateTime<Utc>,
) -> Instrument {
    let symbol = format!(
        "{}{}{}{}",
        spec.name,
        calendar::ddmmmyy(leg.expiry),
        format_strike(leg.strike),
        leg.right.code()
    );
    let start = model_price(spec, &leg, spec.start, now);
    let yesterday = now - chrono::Duration::days(1);
    let prev_close = model_price(spec, &leg, index_prev_close, yesterday);
    let lots_interest = 40_000 / (1 + steps_from_atm.unsigned_abs()) + rng.random_range(0..500);
    let volume = spec.lot * (lots_interest * rng.random_range(2..6));
    Instrument {
        symbol,
        exchange: spec.option_exchange,
        kind: Kind::Option(leg),
        lot: spec.lot,
        freeze: Some(spec.freeze),
        ltp: start,
        anchor: start,
        open: start,
        high: start,
        low: start,
        prev_close,
        volume,
        last_qty: spec.lot,
        turnover: volume as f64 * start,
        oi: spec.lot * lots_interest,
        total_buy_qty: spec.lot * rng.random_range(100..2_000),
        total_sell_qty: spec.lot * rng.random_range(100..2_000),
        bid_qty: spec.lot * rng.random_range(1..=40),
        ask_qty: spec.lot * rng.random_range(1..=40),
        ltt_ms: now.timestamp_millis(),
        pin: None,
    }
}

/// Rounds half away from zero to 2 decimals (display of rupee amounts).
pub(crate) fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::SeedableRng;

    fn market_at(y: i32, m: u32, d: u32) -> (Market, DateTime<Utc>) {
        let now = Utc.with_ymd_and_hms(y, m, d, 5, 0, 0).unwrap();
        let mut rng = StdRng::seed_from_u64(7);
        (Market::build(now, &mut rng), now)
    }

    #[test]
    fn lists_indices_equities_and_chains_with_protocol_symbols() {
        let (market, _) = market_at(2026, 2, 25);
        assert!(market.id("NSE_INDEX", "NIFTY").is_some());
        assert!(market.id("NSE_INDEX", "BANKNIFTY").is_some());
        assert!(market.id("BSE_INDEX", "SENSEX").is_some());
        assert!(market.id("NSE", "RELIANCE").is_some());
        assert!(market.id("NSE", "NIFTY").is_none());
        // NIFTY weekly (Tuesday; 3 March is Holi → 2 March), ATM 25900 ± 75 × 50.
        assert!(market.id("NFO", "NIFTY02MAR2625900CE").is_some());
        assert!(market.id("NFO", "NIFTY02MAR2622150PE").is_some());
        assert!(market.id("NFO", "NIFTY02MAR2629650CE").is_some());
        assert!(market.id("NFO", "NIFTY02MAR2629700CE").is_none());
        assert!(market.id("NFO", "NIFTY03MAR2625900CE").is_none());
        // BANKNIFTY monthly: last Tuesday of Feb 2026 is the 24th, already past on the 25th.
        assert!(market.id("NFO", "BANKNIFTY30MAR2657500PE").is_some());
        // SENSEX weekly Thursday on BFO.
        assert!(market.id("BFO", "SENSEX26FEB2684500CE").is_some());
        let equities = market
            .instruments
            .iter()
            .filter(|i| matches!(i.kind, Kind::Equity))
            .count();
        assert_eq!(equities, 20);
        let nifty = market.underlying("NIFTY").unwrap();
        assert_eq!(nifty.expiries.len(), 4);
        assert_eq!(nifty.chains[0].len(), 151);
        assert_eq!(market.underlying("BANKNIFTY").unwrap().expiries.len(), 3);
    }

    #[test]
    fn option_prices_follow_their_underlying() {
        let (mut market, now) = market_at(2026, 2, 25);
        let nifty = market.id("NSE_INDEX", "NIFTY").unwrap();
        let call = market.id("NFO", "NIFTY10MAR2625900CE").unwrap();
        let put = market.id("NFO", "NIFTY10MAR2625900PE").unwrap();
        let (c0, p0) = (market.ltp(call, now), market.ltp(put, now));
        // ATM, ~13 days, 12% IV: a few hundred rupees of time value each.
        assert!(c0 > 150.0 && c0 < 600.0, "{c0}");
        assert!(p0 > 150.0 && p0 < 600.0, "{p0}");
        market.set_ltp(nifty, 26_400.0, now);
        let (c1, p1) = (market.ltp(call, now), market.ltp(put, now));
        assert!(c1 >= c0 + 300.0, "call {c0} -> {c1}");
        assert!(p1 < p0, "put {p0} -> {p1}");
        assert!(c1 >= 500.0, "at least intrinsic");
    }

    #[test]
    fn a_set_option_price_holds_until_the_underlying_moves() {
        let (mut market, now) = market_at(2026, 2, 25);
        let nifty = market.id("NSE_INDEX", "NIFTY").unwrap();
        let call = market.id("NFO", "NIFTY10MAR2625900CE").unwrap();
        market.set_ltp(call, 999.95, now);
        assert_eq!(market.ltp(call, now), 999.95);
        assert_eq!(market.quote(call, now).ltp, 999.95);
        market.set_ltp(nifty, 25_950.0, now);
        let repriced = market.ltp(call, now);
        assert_ne!(repriced, 999.95);
        assert!(repriced < 600.0);
    }

    #[test]
    fn random_walk_is_seeded_and_stays_on_the_tick_grid() {
        let run = || {
            let (mut market, now) = market_at(2026, 2, 25);
            let mut rng = StdRng::seed_from_u64(42);
            let id = market.id("NSE", "RELIANCE").unwrap();
            (1..=1000)
                .map(|i| {
                    let at = now + chrono::Duration::milliseconds(i * 500);
                    market.step(id, &mut rng, at);
                    market.ltp(id, at)
                })
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|p| *p != 1420.0));
        for p in &a {
            let ticks = p / TICK_SIZE;
            assert!((ticks - ticks.round()).abs() < 1e-6, "{p}");
            assert!(*p > 1300.0 && *p < 1550.0, "{p}");
        }
    }

    #[test]
    fn steps_in_quick_succession_move_prices_no_faster_per_second() {
        // 1000 steps spread over 500 s versus 1000 steps within one millisecond.
        let spread = |gap_ms: i64| {
            let (mut market, now) = market_at(2026, 2, 25);
            let mut rng = StdRng::seed_from_u64(7);
            let id = market.id("NSE", "RELIANCE").unwrap();
            let start = market.ltp(id, now);
            let mut moved: f64 = 0.0;
            for i in 1..=1000 {
                let at = now + chrono::Duration::milliseconds(1 + i * gap_ms);
                market.step(id, &mut rng, at);
                moved = moved.max((market.ltp(id, at) - start).abs());
            }
            moved
        };
        assert!(spread(500) > 5.0, "{}", spread(500));
        assert!(spread(0) < 1.0, "{}", spread(0));
    }

    #[test]
    fn strikes_print_without_trailing_zero() {
        assert_eq!(format_strike(24000.0), "24000");
        assert_eq!(format_strike(292.5), "292.5");
    }
}
