//! Exits exactly once (docs/ARCHITECTURE.md §4.9, §6): one order per open leg on its own account,
//! shorts before longs, freeze-quantity splits, the order rate, retries only after the broker shows
//! the position open, ExitFailed, and the kill switch.

use std::collections::HashMap;
use std::time::Duration;

use ::actors::openalgo::rest::RestClient;
use ::actors::orders::GetGatewayStatus;
use actix_web::http::StatusCode;
use entity::exit_requests::{self, ExitOutcome};
use entity::strategy_executions::ExecutionStatus;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};

use super::{Harness, LegSpec, WAIT, close, options};
use crate::feed::FEED_KEY;
use crate::helpers::poll_until;

async fn requests_of(h: &Harness, leg: i32) -> Vec<exit_requests::Model> {
    exit_requests::Entity::find()
        .filter(exit_requests::Column::ExecutionId.eq(leg))
        .order_by_asc(exit_requests::Column::Id)
        .all(&h.db)
        .await
        .unwrap()
}

/// Per account key, the symbols of the orders in the order the simulator received them.
fn by_account(orders: &[Value]) -> HashMap<String, Vec<(String, String)>> {
    let mut sorted: Vec<&Value> = orders.iter().collect();
    sorted.sort_by_key(|o| o["received_at_us"].as_i64());
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for o in sorted {
        out.entry(o["key"].as_str().unwrap().to_string())
            .or_default()
            .push((
                o["symbol"].as_str().unwrap().to_string(),
                o["action"].as_str().unwrap().to_string(),
            ));
    }
    out
}

#[actix_web::test]
async fn one_exit_per_leg_on_its_own_account_shorts_first_despite_500_breaching_ticks() {
    let mut opts = options();
    opts.connection.rest_timeout_ms = 10_000;
    let h = Harness::start(opts).await;
    let id = h
        .strategy("exactly-once", json!({"max_loss": 1000.0}))
        .await;
    let infy = h.open(LegSpec::equity(id, "INFY", "SELL", 50, 100.0)).await;
    let tcs = h.open(LegSpec::equity(id, "TCS", "BUY", 10, 100.0)).await;
    let itc = h
        .open(LegSpec::equity(id, "ITC", "BUY", 20, 100.0).on(1))
        .await;
    let sbin = h
        .open(LegSpec::equity(id, "SBIN", "SELL", 40, 100.0).on(1))
        .await;
    // Every gateway answer takes 3 s, so the exits (two orders per account, one after the
    // other, each answered and then checked) stay in flight for many seconds while the ticks,
    // which take about a second to send, arrive.
    for account in [0, 1] {
        h.fault(Some(account), json!({"latency_ms": 3000})).await;
    }
    // Short INFY 50 @ 100 at 120: −1000, the max loss.
    h.price("NSE", "INFY", 120.0).await;
    for i in 1..=500 {
        h.price("NSE", "INFY", 120.0 + f64::from(i) * 0.05).await;
    }
    // The monitor priced the last of them (a consumer that falls behind gets the latest price,
    // so the count of ticks it saw may be lower than 501).
    poll_until(WAIT, "the last breaching tick at the monitor", || async {
        let p = h.position(infy).await?;
        close(p["ltp"].as_f64()?, 145.0).then_some(())
    })
    .await;
    let s = h.strategy_json(id).await;
    assert_eq!(
        s["state"], "exiting",
        "the ticks arrived during the exit: {s}"
    );
    // A fill registered while its run is being exited joins the run and is exited too.
    let late = h
        .open(LegSpec::equity(id, "AXISBANK", "BUY", 5, 100.0).on(1))
        .await;
    assert_eq!(h.leg(late).await.run_id, h.leg(infy).await.run_id);
    for leg in [infy, tcs, itc, sbin, late] {
        h.wait_exited(leg).await;
    }
    h.wait_state(id, "exited").await;

    let mut orders = h.orders_of("exactly-once").await;
    let late_exit: Vec<Value> = orders
        .iter()
        .filter(|o| o["symbol"] == "AXISBANK")
        .cloned()
        .collect();
    assert_eq!(late_exit.len(), 1, "{late_exit:#?}");
    assert_eq!(late_exit[0]["key"], h.masked(1));
    orders.retain(|o| o["symbol"] != "AXISBANK");
    assert_eq!(orders.len(), 4, "one exit order per leg: {orders:#?}");
    let accounts = by_account(&orders);
    assert_eq!(
        accounts[&h.masked(0)],
        [
            ("INFY".to_string(), "BUY".to_string()),
            ("TCS".to_string(), "SELL".to_string())
        ],
        "account A: its short closed first, on its own key"
    );
    assert_eq!(
        accounts[&h.masked(1)],
        [
            ("SBIN".to_string(), "BUY".to_string()),
            ("ITC".to_string(), "SELL".to_string())
        ],
        "account B: its short closed first, on its own key"
    );
    let events = h.events(id).await;
    let triggers = events
        .iter()
        .filter(|e| e["event_type"] == "max_loss")
        .count();
    assert_eq!(triggers, 1, "{events:?}");
    for leg in [infy, tcs, itc, sbin] {
        let requests = requests_of(&h, leg).await;
        assert_eq!(requests.len(), 1, "one idempotency record per leg");
        assert!(requests[0].broker_order_id.is_some());
    }
}

/// Resolves the at-the-money NIFTY call of the nearest expiry at the simulator.
async fn nifty_atm_call(h: &Harness) -> (String, i64, i64) {
    let client = RestClient::new(&h.sim.rest_url(), &FEED_KEY.into(), Duration::from_secs(5));
    let expiries = client.expiries("NIFTY", "NFO").await.unwrap();
    let compact = expiries[0].replace('-', "");
    let option = client
        .option_symbol("NIFTY", "NSE_INDEX", &compact, "ATM", "CE")
        .await
        .unwrap();
    (
        option.symbol,
        option.lotsize.unwrap() as i64,
        option.freeze_qty.unwrap() as i64,
    )
}

#[actix_web::test]
async fn quantities_above_freeze_are_split_in_whole_lots_at_the_order_rate() {
    let mut opts = options();
    opts.risk.order_rate_per_s = 2;
    let h = Harness::start(opts).await;
    let (symbol, lot, freeze) = nifty_atm_call(&h).await;
    assert_eq!((lot, freeze), (65, 1800));
    let id = h.strategy("freeze-split", json!({})).await;
    let leg = h
        .open(LegSpec {
            strategy_id: id,
            account: 0,
            exchange: "NFO",
            symbol: symbol.clone(),
            action: "SELL",
            quantity: 60 * lot,
            price: 150.0,
            product: "NRML",
            lot_size: Some(lot),
            freeze_qty: Some(freeze),
        })
        .await;
    let (status, v) = h
        .post(&format!("/api/v1/strategies/{id}/exit"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["exit"]["queued"][0]["orders"], 3, "{v}");
    let exited = h.wait_exited(leg).await;

    let orders = h.orders_of("freeze-split").await;
    let quantities: Vec<i64> = orders
        .iter()
        .map(|o| o["quantity"].as_i64().unwrap())
        .collect();
    assert_eq!(
        quantities,
        [1755, 1755, 390],
        "27-lot chunks below the freeze of 1800"
    );
    for o in &orders {
        assert_eq!(
            o["status"], "complete",
            "the broker accepted every chunk: {o}"
        );
        assert_eq!(o["action"], "BUY");
        assert_eq!(o["product"], "NRML");
        assert_eq!(o["symbol"], symbol.as_str());
    }
    // At most 2 orders per second per account: the third waits for the first to age out.
    // Measured at the simulator, where a slow machine can bring the requests closer together
    // than they left; without the limit they would be milliseconds apart.
    let at: Vec<i64> = orders
        .iter()
        .map(|o| o["received_at_us"].as_i64().unwrap())
        .collect();
    assert!(
        at[2] - at[0] >= 500_000,
        "three orders within {} µs",
        at[2] - at[0]
    );
    let requests = requests_of(&h, leg).await;
    let sizes: Vec<i64> = requests.iter().map(|r| r.quantity).collect();
    assert_eq!(sizes, [1755, 1755, 390]);
    assert!(requests.iter().all(|r| r.outcome == ExitOutcome::Filled));
    assert!(close(exited.exit_price.unwrap(), 150.0));
    assert!(close(exited.realized_pnl.unwrap(), 0.0));
    assert_eq!(
        exited.exit_order_id.unwrap().split(',').count(),
        3,
        "every chunk's order id is kept"
    );
    let events = h.events(id).await;
    assert!(events.iter().any(|e| e["event_type"] == "manual_exit"));
    assert_eq!(exited.exit_reason.map(|r| r.as_str()), Some("manual"));
}

#[actix_web::test]
async fn rejected_exits_are_retried_after_the_position_is_confirmed_open() {
    let h = Harness::start(options()).await;
    let id = h.strategy("rejected", json!({"max_loss": 100.0})).await;
    let leg = h
        .open(LegSpec::equity(id, "KOTAKBANK", "BUY", 10, 100.0))
        .await;
    h.fault(Some(0), json!({"reject_orders": 2})).await;
    h.price("NSE", "KOTAKBANK", 90.0).await;
    let exited = h.wait_exited(leg).await;
    let orders = h.exits_on("KOTAKBANK").await;
    let statuses: Vec<&str> = orders
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["rejected", "rejected", "complete"],
        "{orders:#?}"
    );
    let requests = requests_of(&h, leg).await;
    let seen: Vec<(i32, ExitOutcome)> = requests.iter().map(|r| (r.attempt, r.outcome)).collect();
    assert_eq!(
        seen,
        [
            (1, ExitOutcome::Rejected),
            (2, ExitOutcome::Rejected),
            (3, ExitOutcome::Filled)
        ]
    );
    assert!(requests[0].error.as_deref().unwrap().contains("rejected"));
    assert_eq!(exited.exit_attempts, 3);
    let gateway = h.p().gateway.send(GetGatewayStatus).await.unwrap();
    assert_eq!((gateway.orders_failed, gateway.orders_sent), (2, 1));
    h.wait_state(id, "exited").await;
}

#[actix_web::test]
async fn exits_that_keep_failing_end_in_exit_failed_until_a_human_exits_again() {
    let mut opts = options();
    opts.risk.max_exit_attempts = 3;
    let h = Harness::start(opts).await;
    let id = h.strategy("failing", json!({"max_loss": 100.0})).await;
    let leg = h
        .open(LegSpec::equity(id, "WIPRO", "SELL", 10, 100.0).on(1))
        .await;
    h.fault(Some(1), json!({"reject_orders": 100})).await;
    h.price("NSE", "WIPRO", 110.0).await;
    let s = h.wait_state(id, "exit_failed").await;
    assert_eq!(s["live"]["lifecycle"], "Degraded", "{s}");
    poll_until(WAIT, "exit_failed recorded", || async {
        (h.strategy_json(id).await["risk_state"] == "exit_failed").then_some(())
    })
    .await;
    let orders = h.exits_on("WIPRO").await;
    assert_eq!(
        orders.len(),
        3,
        "max_exit_attempts orders, no more: {orders:#?}"
    );
    assert!(orders.iter().all(|o| o["status"] == "rejected"));
    let gateway = h.p().gateway.send(GetGatewayStatus).await.unwrap();
    assert_eq!(gateway.legs_failed, 1);
    assert!(gateway.exits.is_empty(), "nothing is retried any more");
    let stuck = h.leg(leg).await;
    assert_eq!(stuck.status, ExecutionStatus::ExitPending);
    assert_eq!(stuck.exit_attempts, 3);
    let events = h.events(id).await;
    let failed = events
        .iter()
        .find(|e| e["event_type"] == "exit_failed")
        .expect("exit_failed event");
    assert!(
        failed["message"].as_str().unwrap().contains("still open"),
        "{failed}"
    );
    // Breaching ticks while ExitFailed send nothing.
    h.price("NSE", "WIPRO", 115.0).await;
    h.wait_pnl(id, -150.0).await;
    assert_eq!(h.exits_on("WIPRO").await.len(), 3);

    // The broker accepts orders again; an operator exits by hand.
    h.fault(Some(1), json!({"reject_orders": 0})).await;
    let (status, v) = h
        .post(&format!("/api/v1/strategies/{id}/exit"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    h.wait_exited(leg).await;
    h.wait_state(id, "exited").await;
    let orders = h.exits_on("WIPRO").await;
    assert_eq!(orders.len(), 4);
    assert_eq!(orders[3]["status"], "complete");
    assert_eq!(orders[3]["key"], h.masked(1));
}

#[actix_web::test]
async fn a_timed_out_exit_that_reached_the_broker_is_not_sent_again() {
    let mut opts = options();
    opts.connection.rest_timeout_ms = 500;
    let h = Harness::start(opts).await;
    let id = h.strategy("timeout", json!({"max_profit": 100.0})).await;
    let leg = h
        .open(LegSpec::equity(id, "HCLTECH", "BUY", 10, 100.0))
        .await;
    h.fault(Some(0), json!({"latency_ms": 2000})).await;
    h.price("NSE", "HCLTECH", 110.0).await;
    // The order reaches the broker; its answer will come too late.
    let first = poll_until(WAIT, "the exit order at the broker", || async {
        h.orders_of("timeout").await.first().cloned()
    })
    .await;
    h.fault(Some(0), json!({"latency_ms": 0})).await;
    let exited = h.wait_exited(leg).await;
    let orders = h.orders_of("timeout").await;
    assert_eq!(orders.len(), 1, "not sent again: {orders:#?}");
    let requests = requests_of(&h, leg).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].outcome, ExitOutcome::Filled);
    assert_eq!(
        requests[0].broker_order_id.as_deref(),
        first["orderid"].as_str(),
        "the order id was found in the order book"
    );
    assert!(close(exited.exit_price.unwrap(), 110.0));
}

#[actix_web::test]
async fn kill_switch_exits_every_leg_on_every_account_and_pauses_risk() {
    let h = Harness::start(options()).await;
    let one = h.strategy("kill-one", json!({"max_loss": 500.0})).await;
    let two = h
        .strategy(
            "kill-two",
            json!({"trailing_sl_type": "amount", "trailing_sl_value": 500.0}),
        )
        .await;
    let legs = [
        h.open(LegSpec::equity(one, "INFY", "SELL", 10, 100.0))
            .await,
        h.open(LegSpec::equity(one, "TCS", "BUY", 10, 100.0).on(1))
            .await,
        h.open(LegSpec::equity(two, "SBIN", "BUY", 10, 100.0)).await,
        h.open(LegSpec::equity(two, "ITC", "SELL", 10, 100.0).on(1))
            .await,
    ];
    let (status, report) = h.post("/api/v1/kill-switch", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["strategies_paused"], json!([one, two]));
    assert_eq!(report["exits"]["queued"].as_array().unwrap().len(), 4);
    for leg in legs {
        let l = h.wait_exited(leg).await;
        assert_eq!(l.exit_reason.map(|r| r.as_str()), Some("kill_switch"));
    }
    let mut orders = h.orders_of("kill-one").await;
    orders.extend(h.orders_of("kill-two").await);
    assert_eq!(orders.len(), 4, "{orders:#?}");
    let accounts = by_account(&orders);
    assert_eq!(
        accounts[&h.masked(0)],
        [
            ("INFY".to_string(), "BUY".to_string()),
            ("SBIN".to_string(), "SELL".to_string())
        ]
    );
    assert_eq!(
        accounts[&h.masked(1)],
        [
            ("ITC".to_string(), "BUY".to_string()),
            ("TCS".to_string(), "SELL".to_string())
        ]
    );
    for id in [one, two] {
        let events = h.wait_event(id, "exit_completed").await;
        let s = h.wait_state(id, "paused").await;
        assert!(s["live"].is_null(), "no run open any more: {s}");
        assert!(
            events.iter().any(|e| e["event_type"] == "kill_switch"),
            "{events:?}"
        );
    }

    // A new run of a paused strategy is not evaluated until it is resumed.
    let leg = h.open(LegSpec::equity(one, "LT", "BUY", 10, 100.0)).await;
    h.price("NSE", "LT", 40.0).await;
    let s = h.wait_pnl(one, -600.0).await;
    assert_eq!(s["state"], "paused");
    assert_eq!(
        h.orders_of("kill-one").await.len(),
        2,
        "paused: nothing sent"
    );
    let (status, v) = h
        .put(
            &format!("/api/v1/strategies/{one}/risk"),
            json!({"resume": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "monitoring");
    assert_eq!(v["max_loss"], 500.0, "resuming leaves the limits alone");
    h.price("NSE", "LT", 45.0).await;
    h.wait_exited(leg).await;
    let orders = h.orders_of("kill-one").await;
    assert_eq!(orders.len(), 3);
    assert_eq!(orders[2]["symbol"], "LT");
    h.wait_state(one, "exited").await;
    let events = h.events(one).await;
    assert!(events.iter().any(|e| e["event_type"] == "resumed"));
    assert_eq!(events[0]["event_type"], "exit_completed", "{events:?}");
}
