//! Exits exactly once against a broker that misbehaves, under a seeded random schedule of the
//! simulator's broker faults (answers late or lost, fills late or in parts, rejections after
//! acceptance, lagging or unavailable books, 429 windows), across strategies, both accounts,
//! freeze splits, legs the broker holds only in part, and kills of the service mid-exit.
//!
//! Every round opens legs, breaks each strategy's max loss (more breaching ticks follow while
//! the exits run), waits until every strategy is `exited` or `exit_failed`, and then checks,
//! from the simulator's books and the service's database and API:
//! - no leg was ever closed by more than the broker held of it, and an exited leg is closed
//!   exactly (its part of the broker's net position is 0), what it did not hold a mismatch;
//! - the broker's net position of every instrument never crossed zero;
//! - every breach gave exactly one trigger and one end (`exit_completed` or `exit_failed`);
//! - no leg was recorded exited before the broker filled its last exit order;
//! - every `exit_failed` is visible: a risk event with its reason, and `/health`.
//!
//! `EXIT_INVARIANT_SEEDS` (seeds per test, default 1) and `EXIT_INVARIANT_ROUNDS` (rounds per
//! seed, default 8) run more. A seed that ever failed goes in [`REGRESSION_SEEDS`].

mod schedule;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use entity::exit_requests;
use entity::strategy_executions::{self, ExecutionStatus};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::poll_until;
use crate::risk::{Harness, LegSpec, epoch_us, options};
use schedule::{Key, LegPlan, Round, Schedule};

/// Seeds that once broke an invariant; each runs in every CI build.
const REGRESSION_SEEDS: &[u64] = &[5003, 7002];

/// How long a round may take to end (settle windows, restarts, backoffs).
const ROUND_WAIT: Duration = Duration::from_secs(90);

fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// The service's settings for these rounds: short windows so that a round takes seconds.
fn settings() -> trading_supervisor::configuration::Settings {
    let mut s = options();
    s.connection.rest_timeout_ms = 1000;
    s.risk.max_exit_attempts = 4;
    s.risk.exit_retry_initial_ms = 100;
    s.risk.exit_retry_max_ms = 1000;
    s.risk.exit_settle_ms = 1500;
    s.risk.exit_poll_initial_ms = 50;
    s.risk.exit_poll_max_ms = 400;
    s.risk.exit_working_timeout_ms = 3000;
    s.risk.positions_max_age_ms = 2000;
    s
}

/// Runs `EXIT_INVARIANT_SEEDS` seeds from `first`, each for `EXIT_INVARIANT_ROUNDS` rounds.
async fn run_from(first: u64) {
    let seeds = env_count("EXIT_INVARIANT_SEEDS", 1);
    for seed in first..first + seeds {
        run_seed(seed * 1000 + first).await;
    }
}

#[actix_web::test]
async fn random_schedule_a() {
    run_from(1).await;
}

#[actix_web::test]
async fn random_schedule_b() {
    run_from(2).await;
}

#[actix_web::test]
async fn random_schedule_c() {
    run_from(3).await;
}

#[actix_web::test]
async fn random_schedule_d() {
    run_from(4).await;
}

#[actix_web::test]
async fn regression_seeds() {
    for seed in REGRESSION_SEEDS {
        run_seed(*seed).await;
    }
}

async fn run_seed(seed: u64) {
    if std::env::var("EXIT_TRACE").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("EXIT_TRACE").unwrap_or_default())
            .try_init();
    }
    let rounds = env_count("EXIT_INVARIANT_ROUNDS", 8);
    let mut h = Harness::start(settings()).await;
    let mut schedule = Schedule::new(seed);
    let mut exits = 0;
    for n in 0..rounds {
        let round = schedule.round();
        let what = format!("seed {seed} round {n}: {round:?}");
        for key in play(&mut h, &round, seed, n, &what).await {
            schedule.retire(key);
        }
        exits += round.strategies.iter().map(Vec::len).sum::<usize>();
    }
    eprintln!("exit invariants: seed {seed}, {rounds} rounds, {exits} leg exits");
}

/// A leg of the round as opened.
struct Opened {
    id: i32,
    strategy: String,
    plan: LegPlan,
}

/// Plays one round and checks it. Returns the instruments left with open legs (failed exits).
async fn play(h: &mut Harness, round: &Round, seed: u64, n: u64, what: &str) -> Vec<Key> {
    let started_us = epoch_us();
    let mut strategies = Vec::new();
    let mut legs = Vec::new();
    for (i, plan) in round.strategies.iter().enumerate() {
        let name = format!("inv-{seed}-{n}-{i}");
        let id = h.strategy(&name, json!({"max_loss": 1.0})).await;
        for leg in plan {
            let spec = LegSpec {
                freeze_qty: leg.freeze,
                ..LegSpec::equity(id, leg.symbol, leg.action, leg.quantity, 100.0).on(leg.account)
            };
            let leg_id = h.open_held(spec, leg.held).await;
            legs.push(Opened {
                id: leg_id,
                strategy: name.clone(),
                plan: leg.clone(),
            });
        }
        strategies.push((id, name));
    }
    for (account, faults) in round.faults.iter().enumerate() {
        let mut body = Value::Object(faults.clone());
        body["clear"] = json!(true);
        h.fault(Some(account), body).await;
    }
    // Every instrument of the round moves against its legs: every strategy breaches its max
    // loss once; more breaching ticks follow while the exits run.
    let symbols: HashMap<&str, &str> = legs
        .iter()
        .map(|l| (l.plan.symbol, l.plan.action))
        .collect();
    let adverse = |action: &str, step: u32| {
        let moved = f64::from(step) * 2.0;
        if action == "BUY" {
            100.0 - moved
        } else {
            100.0 + moved
        }
    };
    for step in 1..=4 {
        for (symbol, action) in &symbols {
            h.price("NSE", symbol, adverse(action, step)).await;
        }
    }
    if let Some(ms) = round.kill_after_ms {
        // Part of the schedule: the process dies at a random point of the exits. The market
        // goes on: the new process is priced by the next ticks.
        actix_rt::time::sleep(Duration::from_millis(ms)).await;
        h.kill().await;
        h.start_process().await;
        let ids: Vec<i32> = strategies.iter().map(|(id, _)| *id).collect();
        poll_until(
            ROUND_WAIT,
            &format!("every strategy breached after the restart: {what}"),
            || async {
                for (symbol, action) in &symbols {
                    h.price("NSE", symbol, adverse(action, 5)).await;
                }
                for id in &ids {
                    if h.strategy_json(*id).await["state"] == "monitoring" {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
    }
    let ids: Vec<i32> = strategies.iter().map(|(id, _)| *id).collect();
    // What is still under way, for the failure message if the round does not end.
    let pending = std::cell::RefCell::new(String::new());
    let ended = actix_rt::time::timeout(
        ROUND_WAIT,
        poll_until(ROUND_WAIT * 2, "every exit to end", || async {
            let mut open = Vec::new();
            for id in &ids {
                let s = h.strategy_json(*id).await;
                if s["state"] != "exited" && s["state"] != "exit_failed" {
                    open.push(format!("strategy {id}: {}", s["live"]));
                }
            }
            let (_, state) = h.get("/api/v1/state").await;
            let exits = &state["orders"]["exits"];
            let done = open.is_empty() && exits.as_array().is_some_and(Vec::is_empty);
            *pending.borrow_mut() = format!("{open:?}; exits in flight: {exits}");
            done.then_some(())
        }),
    )
    .await;
    assert!(
        ended.is_ok(),
        "timed out after {ROUND_WAIT:?} waiting for every exit to end: {what}; still under way: {}",
        pending.borrow()
    );
    for account in 0..2 {
        h.fault(Some(account), json!({"clear": true})).await;
    }
    check(h, &strategies, &legs, started_us, what).await
}

/// One leg's exit as the simulator's broker saw it.
struct AtBroker {
    filled: i64,
    /// When its last exit fill happened (epoch µs).
    last_fill_us: Option<i64>,
    /// Its exit orders, for the failure message.
    orders: Vec<Value>,
}

fn at_broker(h: &Harness, orders: &[Value], leg: &Opened) -> AtBroker {
    let exit_action = if leg.plan.action == "BUY" {
        "SELL"
    } else {
        "BUY"
    };
    let mut seen = AtBroker {
        filled: 0,
        last_fill_us: None,
        orders: Vec::new(),
    };
    for o in orders.iter().filter(|o| {
        o["strategy"] == leg.strategy.as_str()
            && o["symbol"] == leg.plan.symbol
            && o["key"] == h.masked(leg.plan.account).as_str()
            && o["action"] == exit_action
    }) {
        seen.filled += o["filled_quantity"].as_i64().unwrap_or(0);
        seen.orders.push(json!({
            "orderid": o["orderid"], "quantity": o["quantity"], "status": o["status"],
            "history": o["history"],
        }));
        let mut before = 0;
        for step in o["history"].as_array().into_iter().flatten() {
            let filled = step["filled_quantity"].as_i64().unwrap_or(0);
            if filled > before {
                seen.last_fill_us = seen.last_fill_us.max(step["at_us"].as_i64());
            }
            before = filled;
        }
    }
    seen
}

/// Checks the round's invariants; returns the instruments whose legs stay open.
async fn check(
    h: &Harness,
    strategies: &[(i32, String)],
    legs: &[Opened],
    started_us: i64,
    what: &str,
) -> Vec<Key> {
    let orders = h.sim_get("/sim/orders").await;
    let orders = orders.as_array().cloned().unwrap_or_default();
    let positions = h.sim_get("/sim/positions").await;
    let positions = positions.as_array().cloned().unwrap_or_default();
    let (_, health) = h.get("/health").await;
    let reasons = health["reasons"].to_string();
    let mut open_keys = HashSet::new();
    let mut expected_net: HashMap<Key, i64> = HashMap::new();
    for leg in legs {
        let row = strategy_executions::Entity::find_by_id(leg.id)
            .one(&h.db)
            .await
            .expect("read leg")
            .expect("leg exists");
        let broker = at_broker(h, &orders, leg);
        let rows = exit_requests::Entity::find()
            .filter(exit_requests::Column::ExecutionId.eq(leg.id))
            .all(&h.db)
            .await
            .expect("read exit requests");
        let what = &format!(
            "{what}\nits exit orders at the broker: {}\nits exit_requests: {rows:?}",
            Value::Array(broker.orders.clone())
        );
        let key = (leg.plan.account, leg.plan.symbol);
        let sign = if leg.plan.action == "BUY" { 1 } else { -1 };
        let id = leg.id;
        assert!(
            (0..=leg.plan.held).contains(&broker.filled),
            "leg {id}: the broker closed {} of the {} it held: {what}",
            broker.filled,
            leg.plan.held
        );
        *expected_net.entry(key).or_default() += sign * (leg.plan.held - broker.filled);
        if row.status == ExecutionStatus::Exited {
            assert_eq!(
                broker.filled, leg.plan.held,
                "leg {id} recorded exited with units still held at the broker: {what}"
            );
            assert_eq!(
                row.exit_filled_quantity,
                Some(broker.filled),
                "leg {id}: the recorded fill is what the broker filled: {what}"
            );
            if let (Some(fill), Some(exited)) = (broker.last_fill_us, row.exited_at) {
                assert!(
                    exited.timestamp_micros() >= fill,
                    "leg {id} recorded exited before the broker filled it: {what}"
                );
            }
        } else {
            open_keys.insert(key);
            let recorded: i64 = rows.iter().filter_map(|r| r.filled_quantity).sum();
            assert_eq!(
                recorded, broker.filled,
                "leg {id} still open: its rows say what the broker filled: {what}"
            );
        }
    }
    for (key, net) in &expected_net {
        let (account, symbol) = *key;
        let row = positions.iter().find(|p| {
            p["key"] == h.masked(account).as_str() && p["symbol"] == symbol && p["product"] == "MIS"
        });
        let at_end = row.and_then(|p| p["net"].as_i64()).unwrap_or(0);
        assert_eq!(
            at_end, *net,
            "{symbol} on account {account}: the broker's net position: {what}"
        );
        let side = legs
            .iter()
            .find(|l| (l.plan.account, l.plan.symbol) == *key)
            .map_or(1, |l| if l.plan.action == "BUY" { 1 } else { -1 });
        for step in row
            .and_then(|p| p["history"].as_array())
            .into_iter()
            .flatten()
            .filter(|s| s["at_us"].as_i64().unwrap_or(0) >= started_us)
        {
            let net = step["net"].as_i64().unwrap_or(0);
            assert!(
                net * side >= 0,
                "{symbol} on account {account} crossed zero (net {net}): {what}"
            );
        }
    }
    for (id, name) in strategies {
        let s = h.strategy_json(*id).await;
        let events = h.events(*id).await;
        let count = |t: &str| events.iter().filter(|e| e["event_type"] == t).count();
        assert_eq!(
            count("max_loss"),
            1,
            "{name}: one trigger: {events:?} {what}"
        );
        match s["state"].as_str() {
            Some("exited") => assert_eq!(
                count("exit_completed"),
                1,
                "{name}: one completed exit: {events:?} {what}"
            ),
            Some("exit_failed") => {
                let failed = events
                    .iter()
                    .find(|e| e["event_type"] == "exit_failed")
                    .unwrap_or_else(|| panic!("{name}: exit_failed without its event: {what}"));
                assert!(
                    failed["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{name}: the failure says why: {failed} {what}"
                );
                assert!(
                    reasons.contains(name.as_str()),
                    "{name}: /health names the failed exit: {reasons} {what}"
                );
            }
            other => panic!("{name} ended {other:?}: {what}"),
        }
        for leg in legs.iter().filter(|l| l.strategy == *name) {
            if leg.plan.held < leg.plan.quantity {
                let row = strategy_executions::Entity::find_by_id(leg.id)
                    .one(&h.db)
                    .await
                    .expect("read leg")
                    .expect("leg exists");
                if row.status == ExecutionStatus::Exited {
                    assert!(
                        count("mismatch") >= 1,
                        "{name}: the broker held {} of leg {}'s {}: a mismatch event: {events:?} {what}",
                        leg.plan.held,
                        leg.id,
                        leg.plan.quantity
                    );
                }
            }
        }
    }
    open_keys.into_iter().collect()
}
