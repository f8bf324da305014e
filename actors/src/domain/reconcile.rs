//! Reconciliation of an account's broker positions with the legs the supervisor tracks
//! (docs/ARCHITECTURE.md §4.7): a broker position nobody tracks is adopted, a tracked position the
//! broker no longer has was closed outside the supervisor. Anything else is only reported.
//! A difference is acted on only when two consecutive passes find it the same way: a fill is
//! often registered just after its order reached the broker, and books can lag.

use std::collections::{BTreeMap, HashSet};

/// An instrument position on one account: (exchange, symbol, product).
pub type PositionKey = (String, String, String);

/// One row of the broker's position book.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerPosition {
    /// Exchange, symbol and product (product in upper case).
    pub key: PositionKey,
    /// Signed net quantity (long positive, short negative).
    pub net: i64,
    /// Average price of the open position, when the broker reports one.
    pub average_price: Option<f64>,
}

/// The supervisor's legs on one instrument of the account.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedPosition {
    /// Exchange, symbol and product (product in upper case).
    pub key: PositionKey,
    /// Σ signed open quantity of the tracked legs.
    pub expected_net: i64,
    /// True while an exit of one of these legs may be at the broker: skipped entirely.
    pub exit_in_flight: bool,
}

/// What to do about one instrument.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The broker holds `net` that no leg accounts for: adopt it as a leg.
    Adopt {
        /// The instrument.
        key: PositionKey,
        /// Signed quantity to adopt.
        net: i64,
        /// The broker's average price (the adopted leg's entry price).
        average_price: Option<f64>,
    },
    /// Tracked legs whose position is gone at the broker: mark them exited.
    ClosedExternally {
        /// The instrument.
        key: PositionKey,
        /// The tracked legs' net quantity.
        expected_net: i64,
    },
    /// Both sides hold something but not the same: reported, nothing is changed.
    Mismatch {
        /// The instrument.
        key: PositionKey,
        /// The broker's net quantity.
        broker_net: i64,
        /// The tracked legs' net quantity.
        expected_net: i64,
    },
}

/// Compares one account's broker positions with its tracked legs. Instruments with an exit in
/// flight are skipped, matching ones produce nothing; the result is ordered by instrument.
pub fn reconcile(broker: &[BrokerPosition], tracked: &[TrackedPosition]) -> Vec<Action> {
    let mut rows: BTreeMap<&PositionKey, (i64, Option<f64>, Option<&TrackedPosition>)> =
        BTreeMap::new();
    for p in broker {
        let row = rows.entry(&p.key).or_insert((0, None, None));
        row.0 += p.net;
        row.1 = row.1.or(p.average_price);
    }
    for t in tracked {
        rows.entry(&t.key).or_insert((0, None, None)).2 = Some(t);
    }
    rows.into_iter()
        .filter_map(|(key, (broker_net, average_price, tracked))| {
            let (expected_net, in_flight) =
                tracked.map_or((0, false), |t| (t.expected_net, t.exit_in_flight));
            if in_flight || broker_net == expected_net {
                return None;
            }
            Some(if expected_net == 0 {
                Action::Adopt {
                    key: key.clone(),
                    net: broker_net,
                    average_price,
                }
            } else if broker_net == 0 {
                Action::ClosedExternally {
                    key: key.clone(),
                    expected_net,
                }
            } else {
                Action::Mismatch {
                    key: key.clone(),
                    broker_net,
                    expected_net,
                }
            })
        })
        .collect()
}

/// Remembers the differences of the previous pass of one account.
#[derive(Debug, Clone, Default)]
pub struct Confirmations {
    previous: HashSet<(PositionKey, i64, i64)>,
}

impl Confirmations {
    /// The adoptions and closures that the previous pass found identically (same instrument,
    /// same broker and tracked quantities); the others wait for the next pass. Mismatches are
    /// reported at once.
    pub fn confirmed(&mut self, actions: Vec<Action>) -> Vec<Action> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for action in actions {
            let signature = match &action {
                Action::Adopt { key, net, .. } => (key.clone(), *net, 0),
                Action::ClosedExternally { key, expected_net } => (key.clone(), 0, *expected_net),
                Action::Mismatch { .. } => {
                    out.push(action);
                    continue;
                }
            };
            if self.previous.contains(&signature) {
                out.push(action);
            } else {
                seen.insert(signature);
            }
        }
        self.previous = seen;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(symbol: &str) -> PositionKey {
        ("NSE".into(), symbol.into(), "MIS".into())
    }

    fn broker(symbol: &str, net: i64, avg: Option<f64>) -> BrokerPosition {
        BrokerPosition {
            key: key(symbol),
            net,
            average_price: avg,
        }
    }

    fn tracked(symbol: &str, expected_net: i64, exit_in_flight: bool) -> TrackedPosition {
        TrackedPosition {
            key: key(symbol),
            expected_net,
            exit_in_flight,
        }
    }

    #[test]
    fn matching_books_need_nothing() {
        let b = [broker("INFY", -10, Some(1500.0)), broker("TCS", 0, None)];
        let t = [tracked("INFY", -10, false)];
        assert_eq!(reconcile(&b, &t), []);
        assert_eq!(reconcile(&[], &[]), []);
        // Closed positions stay in the book with quantity 0 and match nothing tracked.
        assert_eq!(reconcile(&[broker("SBIN", 0, Some(900.0))], &[]), []);
    }

    #[test]
    fn untracked_broker_positions_are_adopted() {
        let b = [broker("INFY", 25, Some(1510.5)), broker("SBIN", -5, None)];
        assert_eq!(
            reconcile(&b, &[]),
            [
                Action::Adopt {
                    key: key("INFY"),
                    net: 25,
                    average_price: Some(1510.5)
                },
                Action::Adopt {
                    key: key("SBIN"),
                    net: -5,
                    average_price: None
                },
            ]
        );
    }

    #[test]
    fn tracked_positions_gone_at_the_broker_were_closed_externally() {
        let t = [tracked("INFY", 10, false), tracked("TCS", -3, false)];
        let b = [broker("TCS", 0, Some(3100.0))];
        assert_eq!(
            reconcile(&b, &t),
            [
                Action::ClosedExternally {
                    key: key("INFY"),
                    expected_net: 10
                },
                Action::ClosedExternally {
                    key: key("TCS"),
                    expected_net: -3
                },
            ]
        );
    }

    #[test]
    fn exits_in_flight_are_skipped_and_differences_reported() {
        let t = [tracked("INFY", 10, true), tracked("TCS", 10, false)];
        let b = [broker("TCS", 4, Some(3100.0))];
        assert_eq!(
            reconcile(&b, &t),
            [Action::Mismatch {
                key: key("TCS"),
                broker_net: 4,
                expected_net: 10
            }]
        );
    }

    #[test]
    fn products_are_separate_positions() {
        let mut nrml = broker("INFY", 10, Some(1500.0));
        nrml.key.2 = "NRML".into();
        let t = [tracked("INFY", 10, false)];
        assert_eq!(
            reconcile(&[nrml.clone()], &t),
            [
                Action::ClosedExternally {
                    key: key("INFY"),
                    expected_net: 10
                },
                Action::Adopt {
                    key: nrml.key.clone(),
                    net: 10,
                    average_price: Some(1500.0)
                },
            ]
        );
    }

    #[test]
    fn only_differences_seen_twice_in_a_row_are_acted_on() {
        let mut c = Confirmations::default();
        let adopt = |net| Action::Adopt {
            key: key("INFY"),
            net,
            average_price: Some(1500.0),
        };
        let closed = Action::ClosedExternally {
            key: key("TCS"),
            expected_net: 5,
        };
        let mismatch = Action::Mismatch {
            key: key("SBIN"),
            broker_net: 1,
            expected_net: 2,
        };
        // First sighting: only the mismatch (report only) goes through.
        assert_eq!(
            c.confirmed(vec![adopt(10), closed.clone(), mismatch.clone()]),
            [mismatch]
        );
        // The same again: acted on.
        assert_eq!(
            c.confirmed(vec![adopt(10), closed.clone()]),
            [adopt(10), closed.clone()]
        );
        // A changed quantity starts over; a difference that went away is forgotten.
        assert_eq!(c.confirmed(vec![adopt(15)]), []);
        assert_eq!(c.confirmed(vec![]), []);
        assert_eq!(c.confirmed(vec![adopt(15)]), []);
        assert_eq!(c.confirmed(vec![adopt(15)]), [adopt(15)]);
    }
}
