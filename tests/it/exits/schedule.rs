//! The seeded random schedule: rounds of strategies with legs on both accounts (some sharing
//! an instrument, some split at a freeze quantity, some the broker holds only in part), the
//! broker faults each account suffers during their exits, and whether the service is killed
//! mid-exit. The same seed gives the same schedule.

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

/// The instruments rounds trade (NSE equities of the simulator).
const SYMBOLS: [&str; 20] = [
    "RELIANCE",
    "INFY",
    "TCS",
    "HDFCBANK",
    "ICICIBANK",
    "SBIN",
    "BHARTIARTL",
    "ITC",
    "LT",
    "KOTAKBANK",
    "AXISBANK",
    "HINDUNILVR",
    "BAJFINANCE",
    "MARUTI",
    "SUNPHARMA",
    "TITAN",
    "ASIANPAINT",
    "WIPRO",
    "HCLTECH",
    "M&M",
];

/// One leg of a strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct LegPlan {
    pub account: usize,
    pub symbol: &'static str,
    /// `BUY` (long) or `SELL` (short).
    pub action: &'static str,
    pub quantity: i64,
    /// Units the broker holds of it (less than `quantity`: a mismatch).
    pub held: i64,
    pub freeze: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// Each strategy's legs.
    pub strategies: Vec<Vec<LegPlan>>,
    /// The `/sim/fault` body each account gets once its legs are open (empty: none).
    pub faults: [Map<String, Value>; 2],
    /// Kill the service this long after the breach, then start a new one.
    pub kill_after_ms: Option<u64>,
}

/// An account's instrument: legs on it in a round all have one side.
pub type Key = (usize, &'static str);

/// Makes rounds from one seed. Instruments whose legs could not be exited are avoided in
/// later rounds (`retire`).
pub struct Schedule {
    rng: StdRng,
    retired: HashSet<Key>,
}

impl Schedule {
    pub fn new(seed: u64) -> Schedule {
        Schedule {
            rng: StdRng::seed_from_u64(seed),
            retired: HashSet::new(),
        }
    }

    /// An instrument with legs left open (an exit that failed): no later round uses it, on
    /// either account (its open legs keep it subscribed, and their prices would price a new
    /// leg on it before the round's own).
    pub fn retire(&mut self, key: Key) {
        self.retired.insert((0, key.1));
        self.retired.insert((1, key.1));
    }

    pub fn round(&mut self) -> Round {
        let rng = &mut self.rng;
        let mut side_of: HashMap<&'static str, &'static str> = HashMap::new();
        let mut keys: Vec<Key> = Vec::new();
        let mut partial: HashSet<Key> = HashSet::new();
        let mut strategies = Vec::new();
        for _ in 0..rng.random_range(2..=4) {
            let mut legs: Vec<LegPlan> = Vec::new();
            for _ in 0..rng.random_range(1..=3) {
                // Sometimes on an instrument another strategy of the round already holds.
                let shared = keys
                    .iter()
                    .filter(|k| {
                        !partial.contains(*k) && !legs.iter().any(|l| (l.account, l.symbol) == **k)
                    })
                    .copied()
                    .collect::<Vec<_>>();
                let (key, fresh) = match shared.choose(rng) {
                    Some(k) if rng.random_bool(0.25) => (*k, false),
                    _ => {
                        let free: Vec<Key> = (0..2)
                            .flat_map(|a| SYMBOLS.iter().map(move |s| (a, *s)))
                            .filter(|k| !keys.contains(k) && !self.retired.contains(k))
                            .collect();
                        let Some(k) = free.choose(rng) else { continue };
                        keys.push(*k);
                        (*k, true)
                    }
                };
                // One side per instrument in a round: a price move breaches all its legs.
                let action = *side_of
                    .entry(key.1)
                    .or_insert_with(|| if rng.random_bool(0.5) { "BUY" } else { "SELL" });
                let quantity = rng.random_range(1..=40);
                // A leg the broker holds only in part is alone on its instrument.
                let held = if fresh && rng.random_bool(0.1) {
                    partial.insert(key);
                    rng.random_range(0..quantity)
                } else {
                    quantity
                };
                let freeze = rng.random_bool(0.3).then(|| rng.random_range(5..=15));
                legs.push(LegPlan {
                    account: key.0,
                    symbol: key.1,
                    action,
                    quantity,
                    held,
                    freeze,
                });
            }
            if !legs.is_empty() {
                strategies.push(legs);
            }
        }
        let faults = [self.faults(), self.faults()];
        let kill_after_ms = self
            .rng
            .random_bool(0.25)
            .then(|| self.rng.random_range(0..1500));
        Round {
            strategies,
            faults,
            kill_after_ms,
        }
    }

    /// Up to two of the broker's faults, merged into one `/sim/fault` body.
    fn faults(&mut self) -> Map<String, Value> {
        let rng = &mut self.rng;
        let mut body = Map::new();
        for _ in 0..rng.random_range(0..=2) {
            let (field, value) = match rng.random_range(0..10) {
                0 => ("place_answer_delay_ms", json!(1500)),
                1 => {
                    body.insert(
                        "lost_answer".into(),
                        json!(if rng.random_bool(0.5) {
                            "502"
                        } else {
                            "timeout"
                        }),
                    );
                    ("lose_answers", json!(rng.random_range(1..=2)))
                }
                2 => ("fill_delay_ms", json!(rng.random_range(200..1500))),
                3 => (
                    "accept_then_reject",
                    json!({"count": rng.random_range(1..=2), "after_ms": rng.random_range(100..500)}),
                ),
                4 => {
                    let rest = ["fill", "cancel", "never"].choose(rng).copied();
                    (
                        "partial_fill",
                        json!({
                            "count": rng.random_range(1..=2),
                            "fraction": rng.random_range(0.3..0.7),
                            "rest_after_ms": rng.random_range(100..800),
                            "rest": rest.unwrap_or("fill"),
                        }),
                    )
                }
                5 => ("book_lag_ms", json!(rng.random_range(200..800))),
                6 => ("books_unavailable_s", json!(rng.random_range(0.5..2.0))),
                7 => ("rate_limit_s", json!(rng.random_range(1.0..2.0))),
                8 => ("reject_orders", json!(rng.random_range(1..=2))),
                // More refusals than attempts: this exit fails, loudly.
                _ if rng.random_bool(0.3) => ("reject_orders", json!(10)),
                _ => ("fill_delay_ms", json!(rng.random_range(50..300))),
            };
            body.insert(field.into(), value);
        }
        body
    }
}

#[test]
fn a_seed_gives_the_same_schedule_and_rounds_keep_one_side_per_instrument() {
    let rounds = |seed| {
        let mut s = Schedule::new(seed);
        (0..20).map(|_| s.round()).collect::<Vec<_>>()
    };
    assert_eq!(rounds(7), rounds(7));
    assert_ne!(rounds(7), rounds(8));
    for round in rounds(11) {
        let mut sides: HashMap<&str, &str> = HashMap::new();
        let mut partial: HashMap<Key, usize> = HashMap::new();
        for (i, legs) in round.strategies.iter().enumerate() {
            assert!(!legs.is_empty());
            for l in legs {
                assert_eq!(*sides.entry(l.symbol).or_insert(l.action), l.action);
                assert!((0..=l.quantity).contains(&l.held));
                if l.held < l.quantity {
                    partial.insert((l.account, l.symbol), i);
                }
            }
            let keys: HashSet<Key> = legs.iter().map(|l| (l.account, l.symbol)).collect();
            assert_eq!(
                keys.len(),
                legs.len(),
                "one leg per instrument per strategy"
            );
        }
        // A leg the broker holds only in part is alone on its instrument.
        for (key, owner) in partial {
            let holders = round
                .strategies
                .iter()
                .filter(|legs| legs.iter().any(|l| (l.account, l.symbol) == key))
                .count();
            assert_eq!(holders, 1, "{key:?} of strategy {owner}");
        }
    }
}
