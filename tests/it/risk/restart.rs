//! Restarts: exits left pending by a killed process, the trail resumed from the database, and a
//! new run starting clean.

use chrono::Utc;
use entity::exit_requests::{self, ExitOutcome};
use entity::risk_events::{self, RiskEventType};
use entity::strategies::{self, RiskState};
use entity::strategy_executions::{self, ExecutionStatus, ExitReason, Product, TradeAction};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};
use serde_json::json;

use super::{Harness, LegSpec, WAIT, close, options};
use crate::helpers::poll_until;

/// Writes a leg exactly as a process killed right after recording its exit would leave it:
/// `exit_pending` with one pending `exit_requests` row.
async fn pending_exit(
    h: &Harness,
    strategy_id: i32,
    account: usize,
    symbol: &str,
    action: TradeAction,
    entry_order_id: String,
) -> (i32, i32) {
    let now = Utc::now();
    let leg = strategy_executions::ActiveModel {
        strategy_id: Set(strategy_id),
        account_id: Set(h.accounts[account].id),
        run_id: Set(1),
        symbol: Set(symbol.into()),
        exchange: Set("NSE".into()),
        product: Set(Product::Mis),
        action: Set(action),
        quantity: Set(10),
        entry_price: Set(100.0),
        status: Set(ExecutionStatus::ExitPending),
        entry_order_id: Set(Some(entry_order_id)),
        entered_at: Set(now),
        exit_attempts: Set(1),
        exit_pending_since: Set(Some(now)),
        exit_reason: Set(Some(ExitReason::MaxLoss)),
        ..Default::default()
    }
    .insert(&h.db)
    .await
    .unwrap();
    let request = exit_requests::ActiveModel {
        execution_id: Set(leg.id),
        attempt: Set(1),
        client_ref: Set(uuid::Uuid::new_v4().to_string()),
        quantity: Set(10),
        outcome: Set(ExitOutcome::Pending),
        ..Default::default()
    }
    .insert(&h.db)
    .await
    .unwrap();
    (leg.id, request.id)
}

async fn requests_of(h: &Harness, leg: i32) -> Vec<exit_requests::Model> {
    exit_requests::Entity::find()
        .filter(exit_requests::Column::ExecutionId.eq(leg))
        .order_by_asc(exit_requests::Column::Id)
        .all(&h.db)
        .await
        .unwrap()
}

#[actix_web::test]
async fn a_restart_checks_pending_exits_at_the_broker_before_sending_anything() {
    let mut h = Harness::without_process(options()).await;
    // The killed process had triggered max loss on this run and begun exiting it.
    let strategy = strategies::ActiveModel {
        name: Set("killed".into()),
        max_loss: Set(Some(100.0)),
        run_id: Set(1),
        run_started_at: Set(Some(Utc::now())),
        risk_state: Set(RiskState::Exiting),
        max_loss_latched: Set(true),
        ..Default::default()
    }
    .insert(&h.db)
    .await
    .unwrap();
    risk_events::ActiveModel {
        strategy_id: Set(strategy.id),
        run_id: Set(1),
        event_type: Set(RiskEventType::MaxLoss),
        threshold: Set(Some(-100.0)),
        pnl: Set(-100.0),
        action: Set("exit every open leg of the run".into()),
        ..Default::default()
    }
    .insert(&h.db)
    .await
    .unwrap();
    h.price("NSE", "INFY", 100.0).await;
    h.price("NSE", "TCS", 100.0).await;
    let infy_entry = h.sim_order(0, "INFY", "SELL", 10, "entry").await;
    let tcs_entry = h.sim_order(1, "TCS", "BUY", 10, "entry").await;
    let (reached, reached_request) =
        pending_exit(&h, strategy.id, 0, "INFY", TradeAction::Sell, infy_entry).await;
    let (lost, lost_request) =
        pending_exit(&h, strategy.id, 1, "TCS", TradeAction::Buy, tcs_entry).await;
    // INFY's exit order reached the broker before the process died; TCS's never left.
    let reached_order = h.sim_order(0, "INFY", "BUY", 10, "killed").await;

    h.start_process().await;
    h.wait_exited(reached).await;
    h.wait_exited(lost).await;
    h.wait_state(strategy.id, "exited").await;

    let orders = h.orders_of("killed").await;
    let infy: Vec<_> = orders.iter().filter(|o| o["symbol"] == "INFY").collect();
    let tcs: Vec<_> = orders.iter().filter(|o| o["symbol"] == "TCS").collect();
    assert_eq!(
        infy.len(),
        1,
        "the exit at the broker is not sent again: {orders:#?}"
    );
    assert_eq!(
        tcs.len(),
        1,
        "the exit that never left is sent once: {orders:#?}"
    );
    assert_eq!(tcs[0]["action"], "SELL");
    assert_eq!(tcs[0]["key"], h.masked(1), "on the leg's own account");

    let infy_requests = requests_of(&h, reached).await;
    assert_eq!(infy_requests.len(), 1);
    assert_eq!(infy_requests[0].id, reached_request);
    assert_eq!(infy_requests[0].outcome, ExitOutcome::Filled);
    assert_eq!(
        infy_requests[0].broker_order_id.as_deref(),
        Some(reached_order.as_str())
    );
    let tcs_requests = requests_of(&h, lost).await;
    assert_eq!(tcs_requests.len(), 2, "{tcs_requests:#?}");
    assert_eq!(tcs_requests[0].id, lost_request);
    assert_eq!(
        tcs_requests[0].outcome,
        ExitOutcome::NotFound,
        "in doubt, then not in the order book after the settle window"
    );
    assert!(
        tcs_requests[0]
            .error
            .as_deref()
            .unwrap()
            .contains("not in the broker's order book")
    );
    assert_eq!(tcs_requests[1].outcome, ExitOutcome::Filled);
    assert_eq!(tcs_requests[1].attempt, 2);
    let events = h.events(strategy.id).await;
    assert!(events.iter().any(|e| e["event_type"] == "exit_completed"));
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event_type"] == "max_loss")
            .count(),
        1,
        "the restart did not trigger again"
    );
}

#[actix_web::test]
async fn a_restart_mid_trail_resumes_the_persisted_peak_and_stop() {
    let mut h = Harness::start(options()).await;
    let id = h
        .strategy(
            "trail-restart",
            json!({"trailing_sl_type": "amount", "trailing_sl_value": 300.0}),
        )
        .await;
    let leg = h
        .open(LegSpec::equity(id, "RELIANCE", "BUY", 10, 100.0))
        .await;
    h.price("NSE", "RELIANCE", 150.0).await;
    h.wait_pnl(id, 500.0).await;
    poll_until(WAIT, "peak and stop persisted", || async {
        let s = strategies::Entity::find_by_id(id).one(&h.db).await.ok()??;
        (s.trailing_latched && close(s.peak_pnl, 500.0) && s.stop_level == Some(200.0))
            .then_some(())
    })
    .await;

    h.kill().await;
    h.start_process().await;

    // The new process subscribes afresh; the next tick prices the leg again.
    h.wait_subscribed("NSE", "RELIANCE").await;
    h.price("NSE", "RELIANCE", 150.0).await;
    let s = h.wait_pnl(id, 500.0).await;
    assert_eq!(s["live"]["peak"], 500.0, "{s}");
    assert_eq!(s["live"]["stop"], 200.0, "{s}");
    assert_eq!(s["state"], "monitoring");
    // A fresh trail would start at 250 with its stop at −50; the resumed one holds at 200.
    h.price("NSE", "RELIANCE", 125.0).await;
    let s = h.wait_pnl(id, 250.0).await;
    assert_eq!(s["live"]["peak"], 500.0);
    assert!(h.orders_of("trail-restart").await.is_empty());
    h.price("NSE", "RELIANCE", 120.0).await;
    h.wait_exited(leg).await;
    assert_eq!(h.orders_of("trail-restart").await.len(), 1);
    let events = h.events(id).await;
    let trigger = events
        .iter()
        .find(|e| e["event_type"] == "trailing_stop")
        .expect("trailing stop event");
    assert_eq!(trigger["stop"], 200.0);
    assert_eq!(trigger["peak"], 500.0);
}

#[actix_web::test]
async fn a_new_run_after_an_exit_starts_clean() {
    let h = Harness::start(options()).await;
    let id = h
        .strategy(
            "runs",
            json!({"max_loss": 400.0, "trailing_sl_type": "amount", "trailing_sl_value": 300.0}),
        )
        .await;
    // Run 1: the trail reaches peak 300 (stop 0), then max loss fires (it wins over the stop).
    let first = h
        .open(LegSpec::equity(id, "BAJFINANCE", "BUY", 10, 100.0))
        .await;
    h.price("NSE", "BAJFINANCE", 130.0).await;
    h.wait_pnl(id, 300.0).await;
    h.price("NSE", "BAJFINANCE", 60.0).await;
    h.wait_exited(first).await;
    h.wait_state(id, "exited").await;
    let run1 = poll_until(WAIT, "run 1 recorded", || async {
        let s = strategies::Entity::find_by_id(id).one(&h.db).await.ok()??;
        (s.risk_state == RiskState::Exited).then_some(s)
    })
    .await;
    assert_eq!(run1.run_id, 1);
    assert!(run1.max_loss_latched && run1.trailing_latched);
    assert_eq!(run1.stop_level, Some(0.0));

    // Run 2 starts with no latch, no peak and no stop.
    let second = h.open(LegSpec::equity(id, "TITAN", "BUY", 10, 100.0)).await;
    let run2 = strategies::Entity::find_by_id(id)
        .one(&h.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run2.run_id, 2);
    assert_eq!(run2.risk_state, RiskState::Monitoring);
    assert!(!run2.max_loss_latched && !run2.max_profit_latched);
    assert_eq!(h.leg(second).await.run_id, 2);
    let s = h.strategy_json(id).await;
    assert_eq!(s["live"]["run_id"], 2);
    assert!(close(s["live"]["realized"].as_f64().unwrap(), 0.0), "{s}");
    // Below run 1's stop of 0 but above run 2's stop of −300: no exit.
    h.price("NSE", "TITAN", 98.0).await;
    let s = h.wait_pnl(id, -20.0).await;
    assert_eq!(s["state"], "monitoring");
    assert_eq!(s["live"]["stop"], -300.0);
    assert_eq!(h.orders_of("runs").await.len(), 1);
    // Max loss protects the new run again.
    h.price("NSE", "TITAN", 60.0).await;
    h.wait_exited(second).await;
    assert_eq!(h.orders_of("runs").await.len(), 2);
    let events = h.events(id).await;
    let losses: Vec<i64> = events
        .iter()
        .filter(|e| e["event_type"] == "max_loss")
        .map(|e| e["run_id"].as_i64().unwrap())
        .collect();
    assert_eq!(losses, [2, 1], "one max-loss event per run, newest first");
}
