//! Exit planning and the verification rule used before retrying an exit (ARCHITECTURE §6.4).

use std::time::Duration;

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

/// What is known about one persisted exit order (an `exit_requests` row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFate {
    /// The order reached the broker, or the broker shows its quantity closed.
    Done,
    /// Recorded but not known to have reached the broker (pending, timed out, rejected,
    /// failed): the broker's books must be checked before anything else is sent.
    Unresolved,
}

/// How far a leg's exit got, from its persisted requests in the order they were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitProgress {
    /// Units not yet known to be closed (includes an unresolved order's quantity).
    pub remaining: i64,
    /// Index and quantity of the latest request when it is unresolved. Requests are sent one
    /// at a time, so only the latest one can be in doubt; earlier failed ones were followed
    /// by a retry.
    pub unresolved: Option<(usize, i64)>,
}

/// Reconstructs a leg's exit from its requests (restart recovery, re-requested exits).
pub fn exit_progress(quantity: i64, requests: &[(i64, RequestFate)]) -> ExitProgress {
    let done: i64 = requests
        .iter()
        .filter(|(_, fate)| *fate == RequestFate::Done)
        .map(|(qty, _)| *qty)
        .sum();
    let unresolved = match requests.last() {
        Some((qty, RequestFate::Unresolved)) => Some((requests.len() - 1, *qty)),
        _ => None,
    };
    ExitProgress {
        remaining: (quantity - done).max(0),
        unresolved,
    }
}

/// What the broker's net position says about a leg whose exit may already have been sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The leg is still in the broker's position: an exit may be (re)sent.
    StillOpen,
    /// The leg is gone from the broker's position: the exit went through.
    Closed,
    /// Neither: do not send anything, a human (or a later check) must look.
    Unknown,
}

/// Compares the broker's net quantity for the instrument with what it would be with the leg
/// still open (`expected_open_net_including_leg`) and without it (that minus the leg's signed
/// quantity, + for long, − for short).
pub fn leg_still_open(
    broker_net_qty: i64,
    expected_open_net_including_leg: i64,
    leg_signed_qty: i64,
) -> Verdict {
    if leg_signed_qty == 0 {
        return Verdict::Unknown;
    }
    if broker_net_qty == expected_open_net_including_leg {
        return Verdict::StillOpen;
    }
    match expected_open_net_including_leg.checked_sub(leg_signed_qty) {
        Some(without) if broker_net_qty == without => Verdict::Closed,
        _ => Verdict::Unknown,
    }
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
    fn verify_rule() {
        // (broker net, expected with leg, leg signed qty, verdict)
        let cases = [
            // Short leg of −65, alone on the instrument.
            (-65, -65, -65, Verdict::StillOpen),
            (0, -65, -65, Verdict::Closed),
            // Long leg of 130 alongside another strategy's −65 on the same instrument.
            (65, 65, 130, Verdict::StillOpen),
            (-65, 65, 130, Verdict::Closed),
            // Something else happened (partial fill, outside trade): do not guess.
            (0, 65, 130, Verdict::Unknown),
            (-130, -65, -65, Verdict::Unknown),
            // A double exit would show as the leg reversed: not "closed".
            (65, -65, -65, Verdict::Unknown),
            (0, 0, 0, Verdict::Unknown),
        ];
        for (net, expected, signed, want) in cases {
            assert_eq!(
                leg_still_open(net, expected, signed),
                want,
                "net {net} expected {expected} leg {signed}"
            );
        }
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

    #[test]
    fn exit_progress_from_requests() {
        use RequestFate::{Done, Unresolved};
        type Case = (i64, Vec<(i64, RequestFate)>, i64, Option<(usize, i64)>);
        // (quantity, requests, remaining, unresolved)
        let cases: [Case; 7] = [
            (3900, vec![], 3900, None),
            // Killed after writing the first request, before or after sending it.
            (3900, vec![(1755, Unresolved)], 3900, Some((0, 1755))),
            // First chunk sent, second in doubt.
            (
                3900,
                vec![(1755, Done), (1755, Unresolved)],
                2145,
                Some((1, 1755)),
            ),
            // A rejected attempt followed by a successful retry.
            (65, vec![(65, Unresolved), (65, Done)], 0, None),
            // Killed between two chunks: nothing in doubt.
            (3900, vec![(1755, Done), (1755, Done)], 390, None),
            (390, vec![(390, Done)], 0, None),
            // More closed than the leg held is reported as nothing left, not negative.
            (100, vec![(100, Done), (100, Done)], 0, None),
        ];
        for (qty, requests, remaining, unresolved) in cases {
            let p = exit_progress(qty, &requests);
            assert_eq!(
                p,
                ExitProgress {
                    remaining,
                    unresolved
                },
                "{qty} {requests:?}"
            );
        }
    }
}
