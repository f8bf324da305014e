//! Exit planning and the verification rule used before retrying an exit (ARCHITECTURE §6.4).

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
fn max_chunk(freeze_qty: Option<i64>, lot_size: Option<i64>) -> Option<i64> {
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
}
