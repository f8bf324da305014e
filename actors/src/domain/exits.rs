//! Exit planning (shorts first, freeze-quantity splits), the wait between attempts, and finding
//! an exit order whose placement answer was lost (docs/exits.md).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use crate::domain::pnl::Side;

/// An open leg to be exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitLeg<Id> {
    /// The leg (execution) id.
    pub id: Id,
    /// The side the leg was entered with.
    pub side: Side,
    /// Open quantity in units (legs with zero or less are skipped).
    pub qty: i64,
    /// The instrument's freeze quantity: no single order may exceed it.
    pub freeze_qty: Option<i64>,
    /// The instrument's lot size: split orders stay whole multiples of it.
    pub lot_size: Option<i64>,
}

/// One exit order to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitOrder<Id> {
    /// The leg it closes (all or part of).
    pub leg_id: Id,
    /// The opposite of the leg's side.
    pub action: Side,
    /// Units in this order.
    pub quantity: i64,
}

/// Largest order size allowed for a leg: the freeze quantity, rounded down to whole lots
/// when that leaves at least one lot. None means no limit.
pub fn max_chunk(freeze_qty: Option<i64>, lot_size: Option<i64>) -> Option<i64> {
    let freeze = freeze_qty.filter(|&f| f > 0)?;
    match lot_size.filter(|&l| l > 0) {
        Some(lot) if freeze >= lot => Some(freeze - freeze % lot),
        _ => Some(freeze),
    }
}

/// Plans the exit orders: short legs (closed by BUY) before long legs, each leg's quantity
/// split into orders no larger than its freeze quantity; legs otherwise keep their order.
pub fn plan_exits<Id: Clone>(legs: &[ExitLeg<Id>]) -> Vec<ExitOrder<Id>> {
    let mut orders = Vec::new();
    let shorts = legs.iter().filter(|l| l.side == Side::Sell);
    let longs = legs.iter().filter(|l| l.side == Side::Buy);
    for leg in shorts.chain(longs).filter(|l| l.qty > 0) {
        let chunk = max_chunk(leg.freeze_qty, leg.lot_size).unwrap_or(leg.qty);
        let mut left = leg.qty;
        while left > 0 {
            let quantity = left.min(chunk);
            orders.push(ExitOrder {
                leg_id: leg.id.clone(),
                action: leg.side.opposite(),
                quantity,
            });
            left -= quantity;
        }
    }
    orders
}

/// Quantity of the next exit order of a leg with `remaining` units still open: at most its
/// freeze quantity (in whole lots, see [`max_chunk`]).
pub fn next_chunk(remaining: i64, freeze_qty: Option<i64>, lot_size: Option<i64>) -> i64 {
    max_chunk(freeze_qty, lot_size).map_or(remaining, |chunk| remaining.min(chunk))
}

/// Wait before the next attempt after `failures` failed ones: `initial × 2^(failures − 1)`,
/// at most `max` (no wait before the first attempt).
pub fn retry_delay(initial: Duration, failures: u32, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 2u32.checked_pow(failures - 1).unwrap_or(u32::MAX);
    initial.checked_mul(factor).map_or(max, |d| d.min(max))
}

/// An order in the broker's order book, as [`find_lost_order`] compares it.
#[derive(Debug, Clone, PartialEq)]
pub struct BookOrder<'a> {
    /// The broker's order id.
    pub order_id: &'a str,
    /// Trading symbol.
    pub symbol: &'a str,
    /// Exchange code.
    pub exchange: &'a str,
    /// `BUY` or `SELL` (any case).
    pub action: &'a str,
    /// Units ordered.
    pub quantity: Option<i64>,
    /// Product (`MIS`, `NRML`, `CNC`), empty when the broker leaves it out.
    pub product: &'a str,
    /// The strategy tag, when the gateway echoes it.
    pub strategy: Option<&'a str>,
    /// When the broker took it, when its timestamp could be read.
    pub placed_at: Option<DateTime<Utc>>,
}

/// The exit order whose placement answer was lost.
#[derive(Debug, Clone, PartialEq)]
pub struct LostOrder<'a> {
    /// Trading symbol.
    pub symbol: &'a str,
    /// Exchange code.
    pub exchange: &'a str,
    /// The exit order's action.
    pub action: Side,
    /// Units ordered.
    pub quantity: i64,
    /// Product.
    pub product: &'a str,
    /// Strategy tag it was placed with.
    pub strategy: &'a str,
    /// When its write-ahead row was written, on the supervisor's clock.
    pub recorded_at: DateTime<Utc>,
}

/// How much earlier than an order placed before it the lost order's broker timestamp may read:
/// brokers stamp whole seconds, and may stamp placement or last change.
pub const BOOK_CLOCK_SLACK: Duration = Duration::from_secs(5);

/// The lost order in the account's order book: same symbol, exchange, action, quantity and
/// product (when given), strategy (when echoed), not an order the supervisor already knows
/// (`known`: order id → when the supervisor recorded it, entries and exits), and not older than
/// the orders it knows were placed before the lost one. Times are compared on the broker's
/// clock only (its clock need not be the supervisor's): the floor is the latest broker
/// timestamp of a known order recorded before the lost one, less [`BOOK_CLOCK_SLACK`]; with no
/// such order there is no floor. The earliest match is taken. Returns its index in `book`.
pub fn find_lost_order(
    book: &[BookOrder<'_>],
    lost: &LostOrder<'_>,
    known: &HashMap<String, DateTime<Utc>>,
) -> Option<usize> {
    let slack = chrono::Duration::from_std(BOOK_CLOCK_SLACK).ok()?;
    let floor = book
        .iter()
        .filter(|o| {
            known
                .get(o.order_id)
                .is_some_and(|at| *at <= lost.recorded_at)
        })
        .filter_map(|o| o.placed_at)
        .max()
        .map(|at| at - slack);
    book.iter()
        .enumerate()
        .filter(|(_, o)| {
            o.symbol == lost.symbol
                && o.exchange == lost.exchange
                && o.action.eq_ignore_ascii_case(lost.action.as_str())
                && o.quantity == Some(lost.quantity)
                && (o.product.is_empty() || o.product.eq_ignore_ascii_case(lost.product))
                && o.strategy
                    .is_none_or(|s| s.is_empty() || s == lost.strategy)
                && !known.contains_key(o.order_id)
                && match (floor, o.placed_at) {
                    (Some(floor), Some(at)) => at >= floor,
                    _ => true,
                }
        })
        .min_by_key(|(at, o)| (o.placed_at, *at))
        .map(|(at, _)| at)
}

/// Reads an order book timestamp as brokers write it, in `tz` unless it carries an offset
/// (`28-Nov-2026 10:00:01`, `2026-11-28 10:00:01`, `28-11-2026 10:00:01`, RFC 3339, epoch
/// seconds or milliseconds).
pub fn parse_book_time(text: &str, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    if let Ok(n) = text.parse::<i64>() {
        return if n > 10_000_000_000 {
            DateTime::from_timestamp_millis(n)
        } else {
            DateTime::from_timestamp(n, 0)
        };
    }
    [
        "%d-%b-%Y %H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%d-%m-%Y %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%d/%m/%Y %H:%M:%S",
    ]
    .iter()
    .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    .and_then(|naive| tz.from_local_datetime(&naive).earliest())
    .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(id: u32, side: Side, qty: i64, freeze: Option<i64>, lot: Option<i64>) -> ExitLeg<u32> {
        ExitLeg {
            id,
            side,
            qty,
            freeze_qty: freeze,
            lot_size: lot,
        }
    }

    fn order(leg_id: u32, action: Side, quantity: i64) -> ExitOrder<u32> {
        ExitOrder {
            leg_id,
            action,
            quantity,
        }
    }

    #[test]
    fn shorts_exit_before_longs_with_opposite_actions() {
        let legs = [
            leg(1, Side::Buy, 65, None, None),
            leg(2, Side::Sell, 130, None, None),
            leg(3, Side::Buy, 30, None, None),
            leg(4, Side::Sell, 65, None, None),
        ];
        assert_eq!(
            plan_exits(&legs),
            [
                order(2, Side::Buy, 130),
                order(4, Side::Buy, 65),
                order(1, Side::Sell, 65),
                order(3, Side::Sell, 30),
            ]
        );
    }

    #[test]
    fn quantities_above_freeze_are_split() {
        // (qty, freeze, lot, expected chunks)
        let cases = [
            (1800, Some(1800), None, vec![1800]),
            (1801, Some(1800), None, vec![1800, 1]),
            (4000, Some(1800), None, vec![1800, 1800, 400]),
            // NIFTY: lot 65, freeze 1800 → whole-lot chunks of 27 lots (1755).
            (3900, Some(1800), Some(65), vec![1755, 1755, 390]),
            // BANKNIFTY: lot 30, freeze 600.
            (1500, Some(600), Some(30), vec![600, 600, 300]),
            (500, None, Some(65), vec![500]),
            (500, Some(0), None, vec![500]),
            // A lot larger than the freeze quantity cannot be honoured: freeze wins.
            (100, Some(40), Some(50), vec![40, 40, 20]),
        ];
        for (qty, freeze, lot, want) in cases {
            let got: Vec<i64> = plan_exits(&[leg(9, Side::Sell, qty, freeze, lot)])
                .iter()
                .map(|o| {
                    assert_eq!((o.leg_id, o.action), (9, Side::Buy));
                    o.quantity
                })
                .collect();
            assert_eq!(got, want, "qty {qty} freeze {freeze:?} lot {lot:?}");
        }
    }

    #[test]
    fn empty_legs_are_skipped() {
        let legs = [
            leg(1, Side::Buy, 0, None, None),
            leg(2, Side::Sell, -5, None, None),
        ];
        assert_eq!(plan_exits(&legs), []);
        assert_eq!(plan_exits::<u32>(&[]), []);
    }

    #[test]
    fn next_chunk_respects_freeze_and_lots() {
        assert_eq!(next_chunk(3900, Some(1800), Some(65)), 1755);
        assert_eq!(next_chunk(390, Some(1800), Some(65)), 390);
        assert_eq!(next_chunk(500, None, None), 500);
        assert_eq!(next_chunk(1801, Some(1800), None), 1800);
        assert_eq!(max_chunk(Some(600), Some(30)), Some(600));
        assert_eq!(max_chunk(None, Some(30)), None);
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let ms = Duration::from_millis;
        let max = Duration::from_secs(60);
        let got: Vec<Duration> = (0..5).map(|f| retry_delay(ms(1000), f, max)).collect();
        assert_eq!(got, [ms(0), ms(1000), ms(2000), ms(4000), ms(8000)]);
        assert_eq!(
            retry_delay(ms(1000), 7, Duration::from_secs(30)),
            ms(30_000)
        );
        assert_eq!(retry_delay(ms(1000), 200, max), max);
    }

    fn book_order<'a>(id: &'a str, quantity: i64, at: Option<&str>) -> BookOrder<'a> {
        BookOrder {
            order_id: id,
            symbol: "INFY",
            exchange: "NSE",
            action: "sell",
            quantity: Some(quantity),
            product: "MIS",
            strategy: None,
            placed_at: at.and_then(|t| parse_book_time(t, chrono_tz::Asia::Kolkata)),
        }
    }

    #[test]
    fn a_lost_order_is_found_by_its_fields_and_the_brokers_own_clock() {
        let ist = chrono_tz::Asia::Kolkata;
        let ours = |t: &str| parse_book_time(t, ist).expect("a time");
        // The supervisor's clock reads five days later than the broker's.
        let lost = LostOrder {
            symbol: "INFY",
            exchange: "NSE",
            action: Side::Sell,
            quantity: 10,
            product: "MIS",
            strategy: "s1",
            recorded_at: ours("03-Dec-2026 10:00:00"),
        };
        let known: HashMap<String, DateTime<Utc>> = [
            // The leg's entry, recorded a minute before the lost exit.
            ("E1".to_string(), ours("03-Dec-2026 09:59:00")),
            // An exit recorded later: it sets no floor.
            ("LATER".to_string(), ours("03-Dec-2026 10:05:00")),
        ]
        .into();
        let book = [
            // A manual round trip of the morning, before the entry: not this exit.
            book_order("MORNING", 10, Some("28-Nov-2026 09:20:00")),
            book_order("E1", 10, Some("28-Nov-2026 09:59:00")),
            book_order("Q5", 5, Some("28-Nov-2026 10:00:01")),
            book_order("LATER", 10, Some("28-Nov-2026 10:05:00")),
            // Within the slack of the entry's stamp, and the earliest such order.
            book_order("X1", 10, Some("28-Nov-2026 09:58:56")),
            book_order("X2", 10, Some("28-Nov-2026 10:00:03")),
        ];
        assert_eq!(find_lost_order(&book, &lost, &known), Some(4));
        let mut other_strategy = book_order("X3", 10, None);
        other_strategy.strategy = Some("s2");
        let mut wrong_side = book_order("X4", 10, None);
        wrong_side.action = "BUY";
        assert_eq!(
            find_lost_order(&[other_strategy, wrong_side], &lost, &known),
            None
        );
        // Without a known order to compare with, or a timestamp that cannot be read, time
        // rules nothing out.
        assert_eq!(
            find_lost_order(&[book_order("X5", 10, Some("whenever"))], &lost, &known),
            Some(0)
        );
        assert_eq!(
            find_lost_order(
                &[book_order("MORNING", 10, Some("28-Nov-2026 09:20:00"))],
                &lost,
                &HashMap::new()
            ),
            Some(0)
        );
    }

    #[test]
    fn book_times_parse_in_the_brokers_formats() {
        let ist = chrono_tz::Asia::Kolkata;
        let want = DateTime::parse_from_rfc3339("2026-11-28T04:30:01Z")
            .unwrap()
            .with_timezone(&Utc);
        for text in [
            "28-Nov-2026 10:00:01",
            "2026-11-28 10:00:01",
            "28-11-2026 10:00:01",
            "2026-11-28T10:00:01",
            "2026-11-28T10:00:01+05:30",
            "1795840201",
            "1795840201000",
        ] {
            assert_eq!(parse_book_time(text, ist), Some(want), "{text}");
        }
        assert_eq!(parse_book_time("yesterday", ist), None);
    }
}
