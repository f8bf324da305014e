//! Every rule triggers at its documented threshold and not one tick earlier
//! (docs/ARCHITECTURE.md §4.8).

use serde_json::{Value, json};

use super::{Harness, LegSpec, close, epoch_us, options};

/// Asserts that nothing was sent for `name` and the strategy still monitors.
async fn still_monitoring(h: &Harness, id: i32, name: &str) {
    let s = h.strategy_json(id).await;
    assert_eq!(s["state"], "monitoring", "{s}");
    assert!(h.orders_of(name).await.is_empty(), "no exit order yet");
}

/// Waits for the exit of a one-leg run and checks the single exit order and the event.
async fn exits_once(h: &Harness, id: i32, name: &str, leg: i32, event: &str, threshold: f64) {
    let exited = h.wait_exited(leg).await;
    let orders = h.orders_of(name).await;
    assert_eq!(orders.len(), 1, "exactly one exit order: {orders:?}");
    assert_eq!(orders[0]["status"], "complete");
    let s = h.wait_state(id, "exited").await;
    assert_eq!(s["risk_state"], "exited");
    let events = h.events(id).await;
    let trigger: Vec<&Value> = events.iter().filter(|e| e["event_type"] == event).collect();
    assert_eq!(trigger.len(), 1, "one {event} event: {events:?}");
    assert!(
        close(trigger[0]["threshold"].as_f64().unwrap(), threshold),
        "{}",
        trigger[0]
    );
    assert!(
        events.iter().any(|e| e["event_type"] == "exit_completed"),
        "{events:?}"
    );
    assert_eq!(
        exited.exit_reason.map(|r| r.as_str()),
        Some(event),
        "exit reason"
    );
}

#[actix_web::test]
async fn max_loss_and_max_profit_trigger_at_the_threshold() {
    let h = Harness::start(options()).await;

    // Long 10 @ 100, max loss 500: the threshold is a price of 50.
    let loss = h.strategy("max-loss", json!({"max_loss": 500.0})).await;
    let leg = h
        .open(LegSpec::equity(loss, "RELIANCE", "BUY", 10, 100.0))
        .await;
    for (price, pnl) in [(80.0, -200.0), (50.1, -499.0), (50.05, -499.5)] {
        h.price("NSE", "RELIANCE", price).await;
        h.wait_pnl(loss, pnl).await;
        still_monitoring(&h, loss, "max-loss").await;
    }
    h.price("NSE", "RELIANCE", 50.0).await;
    exits_once(&h, loss, "max-loss", leg, "max_loss", -500.0).await;
    let orders = h.orders_of("max-loss").await;
    assert_eq!(orders[0]["action"], "SELL");
    assert_eq!(orders[0]["quantity"], 10);
    assert_eq!(orders[0]["key"], h.masked(0));
    let exited = h.leg(leg).await;
    assert!(close(exited.exit_price.unwrap(), 50.0));
    assert!(close(exited.realized_pnl.unwrap(), -500.0));

    // Short 20 @ 200, max profit 1000: the threshold is a price of 150.
    let profit = h
        .strategy("max-profit", json!({"max_profit": 1000.0}))
        .await;
    let leg = h
        .open(LegSpec::equity(profit, "INFY", "SELL", 20, 200.0).on(1))
        .await;
    for (price, pnl) in [(190.0, 200.0), (150.05, 999.0)] {
        h.price("NSE", "INFY", price).await;
        h.wait_pnl(profit, pnl).await;
        still_monitoring(&h, profit, "max-profit").await;
    }
    h.price("NSE", "INFY", 150.0).await;
    exits_once(&h, profit, "max-profit", leg, "max_profit", 1000.0).await;
    let orders = h.orders_of("max-profit").await;
    assert_eq!(orders[0]["action"], "BUY");
    assert_eq!(
        orders[0]["key"],
        h.masked(1),
        "exit on the leg's own account"
    );
}

/// One trailing-stop scenario on a long leg of 10 @ 100: the prices before the trigger (with
/// the P&L, peak and stop expected after each), then the triggering price and stop.
struct Trail {
    name: &'static str,
    symbol: &'static str,
    limits: Value,
    steps: Vec<(f64, f64, Option<f64>, Option<f64>)>,
    trigger_price: f64,
    stop: f64,
}

async fn run_trail(h: &Harness, t: Trail) {
    let id = h.strategy(t.name, t.limits.clone()).await;
    let leg = h
        .open(LegSpec::equity(id, t.symbol, "BUY", 10, 100.0))
        .await;
    for (price, pnl, peak, stop) in &t.steps {
        h.price("NSE", t.symbol, *price).await;
        let s = h.wait_pnl(id, *pnl).await;
        let live = &s["live"];
        assert_eq!(
            live["peak"].as_f64(),
            *peak,
            "{}: peak at {price}: {live}",
            t.name
        );
        match (live["stop"].as_f64(), stop) {
            (Some(got), Some(want)) => {
                assert!(
                    close(got, *want),
                    "{}: stop at {price}: {got} != {want}",
                    t.name
                )
            }
            (got, want) => assert_eq!(got, *want, "{}: stop at {price}", t.name),
        }
        still_monitoring(h, id, t.name).await;
    }
    h.price("NSE", t.symbol, t.trigger_price).await;
    exits_once(h, id, t.name, leg, "trailing_stop", t.stop).await;
}

#[actix_web::test]
async fn trailing_stops_of_every_type_with_and_without_activation() {
    let h = Harness::start(options()).await;
    let scenarios = vec![
        // Amount 300, no activation: peak 500 → stop 200.
        Trail {
            name: "trail-amount",
            symbol: "TCS",
            limits: json!({"trailing_sl_type": "amount", "trailing_sl_value": 300.0}),
            steps: vec![
                (100.0, 0.0, Some(0.0), Some(-300.0)),
                (150.0, 500.0, Some(500.0), Some(200.0)),
                (130.0, 300.0, Some(500.0), Some(200.0)),
                (120.05, 200.5, Some(500.0), Some(200.0)),
            ],
            trigger_price: 120.0,
            stop: 200.0,
        },
        // Amount 300, activation 400: nothing trails below 400 of profit.
        Trail {
            name: "trail-amount-activation",
            symbol: "HDFCBANK",
            limits: json!({"trailing_sl_type": "amount", "trailing_sl_value": 300.0,
                           "trailing_activation": 400.0}),
            steps: vec![
                (130.0, 300.0, None, None),
                (90.0, -100.0, None, None),
                (139.95, 399.5, None, None),
                (140.0, 400.0, Some(400.0), Some(100.0)),
                (160.0, 600.0, Some(600.0), Some(300.0)),
                (130.05, 300.5, Some(600.0), Some(300.0)),
            ],
            trigger_price: 130.0,
            stop: 300.0,
        },
        // Points 20 × Σ open qty 10 = 200.
        Trail {
            name: "trail-points",
            symbol: "ICICIBANK",
            limits: json!({"trailing_sl_type": "points", "trailing_sl_value": 20.0}),
            steps: vec![
                (100.0, 0.0, Some(0.0), Some(-200.0)),
                (150.0, 500.0, Some(500.0), Some(300.0)),
                (130.05, 300.5, Some(500.0), Some(300.0)),
            ],
            trigger_price: 130.0,
            stop: 300.0,
        },
        // Points with activation 250.
        Trail {
            name: "trail-points-activation",
            symbol: "SBIN",
            limits: json!({"trailing_sl_type": "points", "trailing_sl_value": 20.0,
                           "trailing_activation": 250.0}),
            steps: vec![
                (120.0, 200.0, None, None),
                (80.0, -200.0, None, None),
                (125.0, 250.0, Some(250.0), Some(50.0)),
                (105.05, 50.5, Some(250.0), Some(50.0)),
            ],
            trigger_price: 105.0,
            stop: 50.0,
        },
        // Percentage 10 % of |net premium| 100 × 10 = 100.
        Trail {
            name: "trail-percentage",
            symbol: "ITC",
            limits: json!({"trailing_sl_type": "percentage", "trailing_sl_value": 10.0}),
            steps: vec![
                (100.0, 0.0, Some(0.0), Some(-100.0)),
                (140.0, 400.0, Some(400.0), Some(300.0)),
                (130.05, 300.5, Some(400.0), Some(300.0)),
            ],
            trigger_price: 130.0,
            stop: 300.0,
        },
        // Percentage with activation 200.
        Trail {
            name: "trail-percentage-activation",
            symbol: "LT",
            limits: json!({"trailing_sl_type": "percentage", "trailing_sl_value": 10.0,
                           "trailing_activation": 200.0}),
            steps: vec![
                (115.0, 150.0, None, None),
                (60.0, -400.0, None, None),
                (120.0, 200.0, Some(200.0), Some(100.0)),
                (110.05, 100.5, Some(200.0), Some(100.0)),
            ],
            trigger_price: 110.0,
            stop: 100.0,
        },
    ];
    for t in scenarios {
        run_trail(&h, t).await;
    }
}

#[actix_web::test]
async fn a_breach_shorter_than_the_confirmation_window_does_not_exit() {
    let h = Harness::start(options()).await;
    let confirm_ms = 1500;
    let id = h
        .strategy(
            "confirmed",
            json!({"max_loss": 500.0, "exit_confirm_ms": confirm_ms}),
        )
        .await;
    let leg = h
        .open(LegSpec::equity(id, "AXISBANK", "BUY", 10, 100.0))
        .await;

    // A short breach: at the threshold, then recovered well within the window.
    h.price("NSE", "AXISBANK", 50.0).await;
    let s = h.wait_pnl(id, -500.0).await;
    assert!(
        s["live"]["breaching_since_ms"].is_u64(),
        "the breach is pending confirmation: {s}"
    );
    h.price("NSE", "AXISBANK", 60.0).await;
    let s = h.wait_pnl(id, -400.0).await;
    assert!(s["live"]["breaching_since_ms"].is_null(), "{s}");
    assert_eq!(s["state"], "monitoring");

    // A second breach that persists: the window counts from it, not from the first one.
    let second = epoch_us();
    h.price("NSE", "AXISBANK", 45.0).await;
    h.wait_pnl(id, -550.0).await;
    h.wait_exited(leg).await;
    let orders = h.orders_of("confirmed").await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    let sent_after = orders[0]["received_at_us"].as_i64().unwrap() - second;
    assert!(
        sent_after >= confirm_ms * 1000,
        "exit sent {sent_after} µs after the second breach began, before the {confirm_ms} ms window"
    );
    let events = h.events(id).await;
    let trigger = events
        .iter()
        .find(|e| e["event_type"] == "max_loss")
        .expect("max_loss event");
    assert!(close(trigger["pnl"].as_f64().unwrap(), -550.0), "{trigger}");
}

#[actix_web::test]
async fn a_rule_without_automatic_exit_alerts_once_and_leaves_the_others_working() {
    let mut opts = options();
    opts.risk.auto_exit_on_max_loss = false;
    let h = Harness::start(opts).await;
    let id = h
        .strategy(
            "alert-only",
            json!({"max_loss": 200.0, "trailing_sl_type": "amount", "trailing_sl_value": 300.0}),
        )
        .await;
    let leg = h
        .open(LegSpec::equity(id, "MARUTI", "BUY", 10, 100.0))
        .await;
    h.price("NSE", "MARUTI", 80.0).await;
    h.wait_pnl(id, -200.0).await;
    h.price("NSE", "MARUTI", 75.0).await;
    let s = h.wait_pnl(id, -250.0).await;
    assert_eq!(s["state"], "monitoring");
    assert_eq!(s["live"]["max_loss_latched"], true, "{s}");
    assert!(
        h.orders_of("alert-only").await.is_empty(),
        "an alert sends nothing"
    );
    let events = h.wait_event(id, "max_loss").await;
    let alerts: Vec<&Value> = events
        .iter()
        .filter(|e| e["event_type"] == "max_loss")
        .collect();
    assert_eq!(
        alerts.len(),
        1,
        "alerted once, not on every tick: {events:?}"
    );
    assert!(alerts[0]["action"].as_str().unwrap().contains("alert only"));
    // The trailing stop (peak 0, stop −300) still exits.
    h.price("NSE", "MARUTI", 70.0).await;
    h.wait_exited(leg).await;
    let exited = h.leg(leg).await;
    assert_eq!(
        exited.exit_reason.map(|r| r.as_str()),
        Some("trailing_stop")
    );
    assert_eq!(h.orders_of("alert-only").await.len(), 1);
}
