//! Option symbols, expiries and strike selection (docs/ARCHITECTURE.md §4.10,
//! docs/openalgo.md §5).

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// Call or put.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OptionType {
    /// Call ("CE").
    #[serde(rename = "CE")]
    Call,
    /// Put ("PE").
    #[serde(rename = "PE")]
    Put,
}

impl OptionType {
    /// The symbol suffix: "CE" or "PE".
    pub fn as_str(self) -> &'static str {
        match self {
            OptionType::Call => "CE",
            OptionType::Put => "PE",
        }
    }
}

fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [t @ b'0'..=b'9', u @ b'0'..=b'9'] => Some(u32::from(t - b'0') * 10 + u32::from(u - b'0')),
        _ => None,
    }
}

/// Parses an expiry written "DD-MMM-YY" (gateway `/expiry` output) or "DDMMMYY" (symbols),
/// month in any case, year 20YY.
pub fn parse_expiry(s: &str) -> Option<NaiveDate> {
    let b = s.trim().as_bytes();
    let (day, month, year) = match b.len() {
        9 if b[2] == b'-' && b[6] == b'-' => (&b[0..2], &b[3..6], &b[7..9]),
        7 => (&b[0..2], &b[2..5], &b[5..7]),
        _ => return None,
    };
    let month = MONTHS
        .iter()
        .position(|m| m.as_bytes().eq_ignore_ascii_case(month))?;
    let month = u32::try_from(month).ok()? + 1;
    let year = 2000 + i32::try_from(two_digits(year)?).ok()?;
    NaiveDate::from_ymd_opt(year, month, two_digits(day)?)
}

fn month_name(date: NaiveDate) -> &'static str {
    MONTHS[date.month0() as usize % 12]
}

/// "28NOV26": the expiry as written inside option and futures symbols.
pub fn format_expiry_compact(date: NaiveDate) -> String {
    format!(
        "{:02}{}{:02}",
        date.day(),
        month_name(date),
        date.year().rem_euclid(100)
    )
}

/// "28-NOV-26": the expiry as the gateway's `/expiry` endpoint lists it.
pub fn format_expiry_dashed(date: NaiveDate) -> String {
    format!(
        "{:02}-{}-{:02}",
        date.day(),
        month_name(date),
        date.year().rem_euclid(100)
    )
}

/// Rounds away binary noise from strike arithmetic (steps such as 0.05 or 2.5).
fn snap(strike: f64) -> f64 {
    (strike * 1e4).round() / 1e4
}

/// An OpenAlgo option symbol, `[base][DDMMMYY][strike][CE|PE]`: "NIFTY28NOV2624000CE",
/// "VEDL25APR24292.5CE" (no trailing ".0" on whole strikes).
pub fn option_symbol(base: &str, expiry: NaiveDate, strike: f64, kind: OptionType) -> String {
    format!(
        "{base}{}{}{}",
        format_expiry_compact(expiry),
        snap(strike),
        kind.as_str()
    )
}

/// The at-the-money strike: the multiple of `step` nearest to `ltp`, ties rounding up.
/// None unless both are finite and positive.
pub fn atm_strike(ltp: f64, step: f64) -> Option<f64> {
    if !(ltp.is_finite() && ltp > 0.0 && step.is_finite() && step > 0.0) {
        return None;
    }
    Some(snap((ltp / step + 0.5).floor() * step))
}

/// The strikes from `atm − n × step` to `atm + n × step`, ascending (2n + 1 of them).
pub fn strike_window(atm: f64, step: f64, n: u32) -> Vec<f64> {
    let n = i64::from(n);
    (-n..=n).map(|i| snap(atm + i as f64 * step)).collect()
}

/// The centre of a displayed strike window, re-centred with hysteresis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recenter {
    /// Current centre strike.
    pub atm: f64,
    /// Strike step of the underlying.
    pub step: f64,
}

impl Recenter {
    /// The new centre when the strike nearest to `ltp` is more than one step away from the
    /// current one; None otherwise (so a price moving back and forth across one strike
    /// never makes the window flap).
    pub fn should_recenter(&self, ltp: f64) -> Option<f64> {
        let nearest = atm_strike(ltp, self.step)?;
        let moved = (nearest - self.atm).abs();
        // A relative slack keeps floating-point noise from counting as a move.
        (moved > self.step * (1.0 + 1e-9)).then_some(nearest)
    }
}

/// The time of day an expiry stops trading on `option_exchange`, in the exchange's timezone:
/// equity and index derivatives (NFO, BFO) at 15:30, currency derivatives (CDS, BCD) at 17:00.
/// Any other exchange (MCX, …) counts until the end of the expiry date, so a contract that
/// still trades is never hidden.
fn expiry_close_time(option_exchange: &str) -> NaiveTime {
    let (h, m, s) = match option_exchange {
        "NFO" | "BFO" => (15, 30, 0),
        "CDS" | "BCD" => (17, 0, 0),
        _ => (23, 59, 59),
    };
    NaiveTime::from_hms_opt(h, m, s).unwrap_or(NaiveTime::MIN)
}

/// The instant an expiry stops trading: its close time on the expiry date in `tz`.
pub fn expiry_close(option_exchange: &str, expiry: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let local = expiry.and_time(expiry_close_time(option_exchange));
    tz.from_local_datetime(&local)
        .latest()
        .map_or_else(|| Utc.from_utc_datetime(&local), |t| t.with_timezone(&Utc))
}

/// True while an expiry still trades at `now`; from its close on, the contract is gone.
pub fn expiry_is_live(
    option_exchange: &str,
    expiry: NaiveDate,
    now: DateTime<Utc>,
    tz: Tz,
) -> bool {
    now < expiry_close(option_exchange, expiry, tz)
}

/// The expiries still trading at `now`, ascending and without repeats: the first is the nearest.
/// An expiry whose session closed earlier today is not among them.
pub fn live_expiries(
    option_exchange: &str,
    expiries: impl IntoIterator<Item = NaiveDate>,
    now: DateTime<Utc>,
    tz: Tz,
) -> Vec<NaiveDate> {
    let mut live: Vec<NaiveDate> = expiries
        .into_iter()
        .filter(|&d| expiry_is_live(option_exchange, d, now, tz))
        .collect();
    live.sort();
    live.dedup();
    live
}

/// The exchange options on an underlying trade on: NSE/NSE_INDEX → NFO, BSE/BSE_INDEX → BFO,
/// any other exchange is its own.
pub fn option_exchange(underlying_exchange: &str) -> &str {
    match underlying_exchange {
        "NSE" | "NSE_INDEX" => "NFO",
        "BSE" | "BSE_INDEX" => "BFO",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn expiry_parsing() {
        let cases = [
            ("28-NOV-26", Some(d(2026, 11, 28))),
            ("28NOV26", Some(d(2026, 11, 28))),
            ("05-jan-27", Some(d(2027, 1, 5))),
            ("10Jul25", Some(d(2025, 7, 10))),
            (" 31-DEC-26 ", Some(d(2026, 12, 31))),
            ("29-FEB-28", Some(d(2028, 2, 29))),
            ("29-FEB-26", None),
            ("31-APR-26", None),
            ("28-NOV-2026", None),
            ("28/NOV/26", None),
            ("2NOV26", None),
            ("28XYZ26", None),
            ("", None),
            ("28-ноя-26", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_expiry(text), want, "{text:?}");
        }
    }

    #[test]
    fn expiry_formatting_round_trips() {
        let cases = [
            (d(2026, 11, 28), "28NOV26", "28-NOV-26"),
            (d(2027, 1, 5), "05JAN27", "05-JAN-27"),
            (d(2030, 9, 9), "09SEP30", "09-SEP-30"),
        ];
        for (date, compact, dashed) in cases {
            assert_eq!(format_expiry_compact(date), compact);
            assert_eq!(format_expiry_dashed(date), dashed);
            assert_eq!(parse_expiry(compact), Some(date));
            assert_eq!(parse_expiry(dashed), Some(date));
        }
    }

    #[test]
    fn option_symbols() {
        let cases = [
            (
                "NIFTY",
                d(2026, 11, 28),
                24000.0,
                OptionType::Call,
                "NIFTY28NOV2624000CE",
            ),
            (
                "NIFTY",
                d(2024, 3, 28),
                20800.0,
                OptionType::Call,
                "NIFTY28MAR2420800CE",
            ),
            (
                "BANKNIFTY",
                d(2026, 12, 1),
                52100.0,
                OptionType::Put,
                "BANKNIFTY01DEC2652100PE",
            ),
            (
                "VEDL",
                d(2024, 4, 25),
                292.5,
                OptionType::Call,
                "VEDL25APR24292.5CE",
            ),
            (
                "USDINR",
                d(2026, 6, 26),
                0.1 + 83.15,
                OptionType::Put,
                "USDINR26JUN2683.25PE",
            ),
        ];
        for (base, expiry, strike, kind, want) in cases {
            assert_eq!(option_symbol(base, expiry, strike, kind), want);
        }
    }

    #[test]
    fn atm_rounds_to_nearest_with_ties_up() {
        let cases = [
            (24024.99, 50.0, Some(24000.0)),
            (24025.0, 50.0, Some(24050.0)),
            (24049.0, 50.0, Some(24050.0)),
            (24000.0, 50.0, Some(24000.0)),
            (52149.0, 100.0, Some(52100.0)),
            (52150.0, 100.0, Some(52200.0)),
            (291.3, 2.5, Some(292.5)),
            (83.33, 0.05, Some(83.35)),
            (0.0, 50.0, None),
            (24000.0, 0.0, None),
            (f64::NAN, 50.0, None),
        ];
        for (ltp, step, want) in cases {
            assert_eq!(atm_strike(ltp, step), want, "{ltp} / {step}");
        }
    }

    #[test]
    fn window_is_atm_plus_minus_n() {
        assert_eq!(
            strike_window(24000.0, 50.0, 2),
            [23900.0, 23950.0, 24000.0, 24050.0, 24100.0]
        );
        assert_eq!(strike_window(24000.0, 50.0, 0), [24000.0]);
        let w = strike_window(24000.0, 50.0, 10);
        assert_eq!(w.len(), 21);
        assert_eq!((w[0], w[20]), (23500.0, 24500.0));
        assert_eq!(strike_window(83.25, 0.05, 1), [83.2, 83.25, 83.3]);
    }

    #[test]
    fn recentre_only_beyond_one_step() {
        let r = Recenter {
            atm: 24000.0,
            step: 50.0,
        };
        let cases = [
            (24000.0, None),
            (24074.99, None), // nearest 24050: one step, no move
            (23925.0, None),  // nearest 23950: one step down
            (24075.0, Some(24100.0)),
            (23924.99, Some(23900.0)),
            (25000.0, Some(25000.0)),
            (0.0, None),
        ];
        for (ltp, want) in cases {
            assert_eq!(r.should_recenter(ltp), want, "ltp {ltp}");
        }
        // Oscillating around the boundary after a recentre does not flap back.
        let r = Recenter {
            atm: 24100.0,
            step: 50.0,
        };
        for ltp in [24074.0, 24075.0, 24060.0, 24090.0, 24040.0] {
            assert_eq!(r.should_recenter(ltp), None, "ltp {ltp}");
        }
    }

    /// An instant given in Asia/Kolkata.
    fn ist(y: i32, m: u32, day: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Kolkata
            .with_ymd_and_hms(y, m, day, h, min, s)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn nearest(exchange: &str, list: &[NaiveDate], now: DateTime<Utc>) -> Option<NaiveDate> {
        live_expiries(
            exchange,
            list.iter().copied(),
            now,
            chrono_tz::Asia::Kolkata,
        )
        .first()
        .copied()
    }

    #[test]
    fn live_expiries_are_sorted_without_repeats_and_the_first_is_the_nearest() {
        let list = [
            d(2026, 11, 24),
            d(2026, 12, 1),
            d(2026, 11, 17),
            d(2026, 12, 29),
            d(2026, 12, 1),
        ];
        assert_eq!(
            live_expiries(
                "NFO",
                list,
                ist(2026, 11, 18, 9, 0, 0),
                chrono_tz::Asia::Kolkata
            ),
            [d(2026, 11, 24), d(2026, 12, 1), d(2026, 12, 29)]
        );
        assert_eq!(
            nearest("NFO", &list, ist(2026, 11, 17, 9, 0, 0)),
            Some(d(2026, 11, 17))
        );
        assert_eq!(
            nearest("NFO", &list, ist(2026, 11, 25, 9, 0, 0)),
            Some(d(2026, 12, 1))
        );
        assert_eq!(nearest("NFO", &list, ist(2026, 12, 30, 9, 0, 0)), None);
        assert_eq!(nearest("NFO", &[], ist(2026, 1, 1, 9, 0, 0)), None);
    }

    #[test]
    fn an_expiry_day_ends_at_the_close_of_its_session() {
        let tz = chrono_tz::Asia::Kolkata;
        let list = [d(2026, 12, 1), d(2026, 12, 8)];
        // Tuesday 2026-12-01 is a NIFTY expiry: nearest until 15:30 IST, gone from then on.
        // Equity and index derivatives close at 15:30, currency derivatives at 17:00, other
        // exchanges count until the end of the day.
        for (exchange, now, want) in [
            ("NFO", ist(2026, 12, 1, 15, 29, 59), d(2026, 12, 1)),
            ("NFO", ist(2026, 12, 1, 15, 30, 0), d(2026, 12, 8)),
            ("NFO", ist(2026, 12, 1, 22, 30, 0), d(2026, 12, 8)),
            ("BFO", ist(2026, 12, 1, 15, 29, 59), d(2026, 12, 1)),
            ("BFO", ist(2026, 12, 1, 15, 30, 0), d(2026, 12, 8)),
            ("CDS", ist(2026, 12, 1, 16, 0, 0), d(2026, 12, 1)),
            ("CDS", ist(2026, 12, 1, 17, 0, 0), d(2026, 12, 8)),
            ("MCX", ist(2026, 12, 1, 23, 0, 0), d(2026, 12, 1)),
            ("MCX", ist(2026, 12, 2, 0, 0, 0), d(2026, 12, 8)),
        ] {
            assert_eq!(
                nearest(exchange, &list, now),
                Some(want),
                "{exchange} at {now}"
            );
        }
        assert_eq!(
            expiry_close("NFO", d(2026, 12, 1), tz).to_rfc3339(),
            "2026-12-01T10:00:00+00:00"
        );
    }

    #[test]
    fn option_exchanges() {
        for (underlying, want) in [
            ("NSE", "NFO"),
            ("NSE_INDEX", "NFO"),
            ("BSE", "BFO"),
            ("BSE_INDEX", "BFO"),
            ("MCX", "MCX"),
            ("CDS", "CDS"),
            ("NCO", "NCO"),
        ] {
            assert_eq!(option_exchange(underlying), want);
        }
    }
}
