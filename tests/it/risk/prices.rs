//! Prices (docs/ARCHITECTURE.md §4.7): a price ≤ 0 never counts; a stale leg makes the strategy
//! Degraded, is priced over REST `quotes`, and its old price never decides an exit.

use std::sync::Arc;
use std::time::Instant;

use ::actors::feed::{FeedEvent, Key, Tick};
use ::actors::positions::GetMonitorStatus;
use serde_json::json;

use super::{Harness, LegSpec, WAIT, options};
use crate::helpers::poll_until;

fn tick(exchange: &str, symbol: &str, ltp: f64) -> FeedEvent {
    FeedEvent::Tick(Arc::new(Tick {
        key: Arc::new(Key::new(exchange, symbol)),
        ltp,
        bid: None,
        ask: None,
        volume: None,
        oi: None,
        received_at: Instant::now(),
        sent_us: None,
    }))
}

fn stale_options() -> trading_supervisor::configuration::Settings {
    let mut opts = options();
    opts.position_monitor.stale_after_s = 1;
    opts
}

#[actix_web::test]
async fn zero_and_negative_prices_never_count() {
    let h = Harness::start(options()).await;
    // Short 10 @ 100 with max profit 500: a price of 0 would read as +1000.
    let id = h.strategy("zero", json!({"max_profit": 500.0})).await;
    let leg = h.open(LegSpec::equity(id, "INFY", "SELL", 10, 100.0)).await;
    let monitor = h.p().monitor.clone();
    let ignored = monitor.send(GetMonitorStatus).await.unwrap().ignored_prices;
    for bad in [0.0, -5.0, f64::NAN] {
        monitor.do_send(tick("NSE", "INFY", bad));
    }
    h.price("NSE", "INFY", 99.0).await;
    let s = h.wait_pnl(id, 10.0).await;
    assert_eq!(s["state"], "monitoring");
    let status = monitor.send(GetMonitorStatus).await.unwrap();
    assert_eq!(status.ignored_prices - ignored, 3);
    let position = h.position(leg).await.unwrap();
    assert_eq!(position["ltp"], 99.0);
    assert!(h.orders_of("zero").await.is_empty());
}

#[actix_web::test]
async fn a_stale_leg_is_priced_over_rest_and_the_strategy_shows_degraded() {
    let h = Harness::start(stale_options()).await;
    let id = h.strategy("stale", json!({"max_profit": 500.0})).await;
    let leg = h.open(LegSpec::equity(id, "INFY", "SELL", 10, 100.0)).await;
    // The feed goes silent; the market moves on.
    h.fault(None, json!({"pause_ticks_s": 120})).await;
    h.price("NSE", "INFY", 95.0).await;
    let position = poll_until(WAIT, "the stale leg priced over REST", || async {
        h.position(leg)
            .await
            .filter(|p| p["ltp"] == 95.0 && p["price_source"] == "rest")
    })
    .await;
    assert_eq!(position["stale"], true);
    let s = h.wait_pnl(id, 50.0).await;
    assert_eq!(s["live"]["lifecycle"], "Degraded", "{s}");
    assert_eq!(s["live"]["degraded"], "stale prices");
    assert_eq!(s["live"]["stale_legs"], 1);
    assert_eq!(s["state"], "monitoring");
    assert!(h.orders_of("stale").await.is_empty());
    let status = h.p().monitor.send(GetMonitorStatus).await.unwrap();
    assert!(status.quotes_fetched >= 1);

    // A REST price is a real price: a breach on it exits, once.
    h.price("NSE", "INFY", 45.0).await;
    h.wait_exited(leg).await;
    let orders = h.orders_of("stale").await;
    assert_eq!(orders.len(), 1, "{orders:#?}");
    assert_eq!(orders[0]["action"], "BUY");
}

#[actix_web::test]
async fn an_old_price_never_decides_an_exit() {
    let h = Harness::start(stale_options()).await;
    let id = h.strategy("old-price", json!({"max_loss": 300.0})).await;
    let busy = h
        .open(LegSpec::equity(id, "HDFCBANK", "BUY", 10, 100.0))
        .await;
    let quiet = h
        .open(LegSpec::equity(id, "TCS", "BUY", 10, 100.0).on(1))
        .await;
    // TCS stops ticking and no gateway quotes it: its own account's REST refuses and the
    // other account's answers too late. Its price only ages.
    h.fault(Some(1), json!({"refuse_auth_s": 120})).await;
    h.fault(Some(0), json!({"latency_ms": 3000})).await;
    poll_until(WAIT, "TCS stale", || async {
        h.position(quiet).await.filter(|p| p["stale"] == true)
    })
    .await;
    // HDFCBANK's fresh tick alone would breach max loss (−350 ≤ −300) on TCS's old price.
    let skipped = h.strategy_json(id).await["live"]["skipped_stale"]
        .as_u64()
        .unwrap();
    h.price("NSE", "HDFCBANK", 65.0).await;
    let s = h.wait_pnl(id, -350.0).await;
    assert!(
        s["live"]["skipped_stale"].as_u64().unwrap() > skipped,
        "the update was not evaluated: {s}"
    );
    let s = h.strategy_json(id).await;
    assert_eq!(s["state"], "monitoring", "{s}");
    assert!(h.orders_of("old-price").await.is_empty());
    let monitor = h.p().monitor.clone();
    poll_until(WAIT, "the REST fallback tried for TCS", || async {
        let status = monitor.send(GetMonitorStatus).await.ok()?;
        (status.quote_errors >= 1).then_some(())
    })
    .await;
    let s = h.strategy_json(id).await;
    assert_eq!(s["state"], "monitoring", "{s}");
    assert!(h.orders_of("old-price").await.is_empty());

    // REST answers again: TCS is priced afresh, the breach is real, the run exits.
    h.fault(Some(1), json!({"refuse_auth_s": 0})).await;
    h.fault(Some(0), json!({"latency_ms": 0})).await;
    h.wait_exited(busy).await;
    h.wait_exited(quiet).await;
    let orders = h.orders_of("old-price").await;
    assert_eq!(orders.len(), 2, "{orders:#?}");
}
