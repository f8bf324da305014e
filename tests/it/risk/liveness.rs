//! Liveness (docs/liveness.md): a slow or failed gateway never pauses risk evaluation, a down
//! feed is replaced by REST quotes through any account that answers, and a panicking actor comes
//! back with its state read from the database. Each is shown the way a user sees it: the state,
//! `/health`, the metrics, the risk events and the orders at the gateway.

use ::actors::positions::InjectRiskPanic;
use ::actors::supervised::InjectPanic;
use actix_web::http::StatusCode;
use serde_json::{Value, json};

use super::{Harness, LegSpec, WAIT, close, options};
use crate::admin::metrics_of;
use crate::helpers::poll_until;

/// The strategy's entry in `GET /api/v1/state`.
fn risk_of(state: &Value, id: i32) -> Value {
    state["strategies"]
        .as_array()
        .and_then(|list| list.iter().find(|s| s["strategy_id"] == id))
        .cloned()
        .unwrap_or(Value::Null)
}

fn account_of<'a>(state: &'a Value, name: &str) -> Option<&'a Value> {
    state["accounts"]["accounts"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)
}

async fn health(h: &Harness, strict: bool) -> (StatusCode, Value) {
    h.get(if strict {
        "/health?strict=1"
    } else {
        "/health"
    })
    .await
}

/// Waits until `/health` answers `ok` (after start-up, or once a problem is gone).
async fn wait_healthy(h: &Harness) {
    poll_until(WAIT, "/health ok", || async {
        let (code, body) = health(h, true).await;
        (code == StatusCode::OK && body["status"] == "ok").then_some(())
    })
    .await;
}

#[actix_web::test]
async fn a_failed_ping_of_the_feed_account_pauses_no_risk_evaluation() {
    let h = Harness::start(options()).await;
    let id = h.strategy("slow-primary", json!({"max_loss": 200.0})).await;
    let leg = h
        .open(LegSpec::equity(id, "INFY", "BUY", 10, 100.0).on(1))
        .await;
    wait_healthy(&h).await;

    // The feed account's gateway answers REST too slowly for a while: its pings time out
    // (2 s), its market-data socket goes on.
    h.fault(Some(0), json!({"latency_ms": 3000})).await;
    let state = poll_until(WAIT, "a failed ping of the feed account", || async {
        let (_, s) = h.get("/api/v1/state").await;
        let failures = account_of(&s, "acct-a")?["consecutive_failures"].as_u64()?;
        (failures >= 1).then_some(s)
    })
    .await;
    // Failures come at least one ping timeout apart: this is before the third.
    assert!(
        account_of(&state, "acct-a").unwrap()["consecutive_failures"]
            .as_u64()
            .unwrap()
            < 3
    );
    assert_eq!(state["supervisor"]["feed_account_reachable"], true);
    assert_eq!(state["supervisor"]["running"], true);
    assert_eq!(state["monitor"]["monitoring"], true);
    assert_eq!(risk_of(&state, id)["evaluating"], true, "{state}");

    // A breach in that window exits, on the leg's own account, once.
    h.price("NSE", "INFY", 75.0).await;
    h.wait_exited(leg).await;
    let orders = h.orders_of("slow-primary").await;
    assert_eq!(orders.len(), 1, "{orders:#?}");
    assert_eq!(orders[0]["key"], h.masked(1));
    assert_eq!(orders[0]["action"], "SELL");
    h.fault(Some(0), json!({"latency_ms": 0})).await;
}

#[actix_web::test]
async fn a_down_feed_is_replaced_by_rest_quotes_and_a_breach_still_exits() {
    let mut opts = options();
    // No failover in this test: the feed stays down on the primary.
    opts.accounts.failover_after_failures = 1000;
    opts.position_monitor.feed_down_after_s = 1;
    let h = Harness::start(opts).await;
    let guarded = h.strategy("guarded", json!({"max_loss": 200.0})).await;
    let watched = h.strategy("watched", json!({})).await;
    // A leg on the second account, and one on the feed account.
    let tcs = h
        .open(LegSpec::equity(guarded, "TCS", "BUY", 10, 100.0).on(1))
        .await;
    let infy = h
        .open(LegSpec::equity(watched, "INFY", "SELL", 10, 100.0))
        .await;
    wait_healthy(&h).await;

    // The feed account's gateway drops the socket and refuses its key (REST included).
    h.fault(
        Some(0),
        json!({"refuse_auth_s": 300, "drop_connections": true}),
    )
    .await;
    let state = poll_until(WAIT, "the feed degraded", || async {
        let (_, s) = h.get("/api/v1/state").await;
        (s["supervisor"]["feed_degraded"] == true).then_some(s)
    })
    .await;
    assert!(
        state["supervisor"]["feed_degraded_reason"]
            .as_str()
            .unwrap()
            .contains("priced over REST"),
        "{}",
        state["supervisor"]
    );
    assert_eq!(state["supervisor"]["running"], true);
    for events in [
        h.wait_event(guarded, "feed_degraded").await,
        h.wait_event(watched, "feed_degraded").await,
    ] {
        assert_eq!(
            events
                .iter()
                .filter(|e| e["event_type"] == "feed_degraded")
                .count(),
            1
        );
    }
    let metrics = metrics_of(&h.p().address).await;
    assert_eq!(metrics["supervisor_feed_degraded"], 1.0);

    // The leg on the feed account is quoted through the other account's gateway.
    h.price("NSE", "INFY", 90.0).await;
    let position = poll_until(WAIT, "INFY priced over REST", || async {
        h.position(infy)
            .await
            .filter(|p| p["ltp"] == 90.0 && p["price_source"] == "rest")
    })
    .await;
    assert_eq!(position["stale"], true);
    h.wait_pnl(watched, 100.0).await;

    // Risk is evaluated on REST prices, and the page and /health say why it is degraded.
    let (_, state) = h.get("/api/v1/state").await;
    let risk = risk_of(&state, guarded);
    assert_eq!(risk["evaluating"], true);
    assert_eq!(risk["feed_degraded"], true);
    assert_eq!(risk["lifecycle"], "Degraded");
    assert_eq!(risk["degraded"], "feed down: prices from REST quotes");
    let reasons = state["health"]["reasons"].as_array().unwrap().clone();
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("feed: degraded")),
        "{reasons:?}"
    );
    let (code, body) = health(&h, false).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["reasons"].as_array().unwrap(), &reasons);
    let (code, body) = health(&h, true).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "degraded");

    // A breach on a REST price exits on the leg's own account, once.
    h.price("NSE", "TCS", 75.0).await;
    h.wait_exited(tcs).await;
    let orders = h.orders_of("guarded").await;
    assert_eq!(orders.len(), 1, "{orders:#?}");
    assert_eq!(orders[0]["key"], h.masked(1));
    let events = h.events(guarded).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event_type"] == "max_loss")
            .count(),
        1
    );

    // The gateway takes the key again: the feed comes back and says so.
    h.fault(Some(0), json!({"refuse_auth_s": 0})).await;
    h.wait_event(watched, "feed_restored").await;
    let state = poll_until(WAIT, "the feed live again", || async {
        let (_, s) = h.get("/api/v1/state").await;
        (s["supervisor"]["feed_degraded"] == false && s["supervisor"]["feed_live"] == true)
            .then_some(s)
    })
    .await;
    assert_eq!(risk_of(&state, watched)["feed_degraded"], false);
    let metrics = metrics_of(&h.p().address).await;
    assert_eq!(metrics["supervisor_feed_degraded"], 0.0);
}

#[actix_web::test]
async fn panicking_actors_come_back_and_a_later_breach_exits_once() {
    let h = Harness::start(options()).await;
    let id = h.strategy("survivor", json!({"max_loss": 300.0})).await;
    let leg = h.open(LegSpec::equity(id, "INFY", "BUY", 10, 100.0)).await;
    wait_healthy(&h).await;
    let (monitor, gateway) = (h.p().monitor.clone(), h.p().gateway.clone());

    // The position monitor panics in a handler: it comes back behind the same address, its
    // legs read again from the database, the risk actor of the run taken back as it was.
    assert!(
        monitor.send(InjectPanic).await.is_err(),
        "the panic drops the message"
    );
    let state = poll_until(WAIT, "the position monitor back", || async {
        let (_, s) = h.get("/api/v1/state").await;
        let m = &s["monitor"];
        (m["restarts"] == 1 && m["loaded"] == true && m["open_legs"] == 1).then_some(s)
    })
    .await;
    assert_eq!(state["monitor"]["monitoring"], true);
    assert_eq!(
        risk_of(&state, id)["restarts"],
        0,
        "the risk actor did not panic"
    );
    h.price("NSE", "INFY", 98.0).await;
    h.wait_pnl(id, -20.0).await;

    // The run's risk actor panics: it reads its state back from the strategy's row.
    assert!(monitor.send(InjectRiskPanic(id)).await.unwrap());
    poll_until(WAIT, "the risk actor back", || async {
        let (_, s) = h.get("/api/v1/state").await;
        let r = risk_of(&s, id);
        (r["restarts"] == 1 && r["lifecycle"] == "Running").then_some(())
    })
    .await;
    h.price("NSE", "INFY", 97.0).await;
    let s = h.wait_pnl(id, -30.0).await;
    assert_eq!(s["state"], "monitoring");

    // The order gateway panics.
    assert!(gateway.send(InjectPanic).await.is_err());
    poll_until(WAIT, "the order gateway back", || async {
        let (_, s) = h.get("/api/v1/state").await;
        (s["orders"]["restarts"] == 1 && s["orders"]["state"] == "Running").then_some(())
    })
    .await;

    // Risk evaluation goes on: a breach exits, once.
    h.price("NSE", "INFY", 65.0).await;
    h.wait_exited(leg).await;
    h.wait_state(id, "exited").await;
    let orders = h.orders_of("survivor").await;
    assert_eq!(orders.len(), 1, "{orders:#?}");
    assert_eq!(orders[0]["action"], "SELL");
    assert_eq!(orders[0]["quantity"], 10);
    let events = h.events(id).await;
    let max_loss: Vec<_> = events
        .iter()
        .filter(|e| e["event_type"] == "max_loss")
        .collect();
    assert_eq!(max_loss.len(), 1, "{events:#?}");
    assert!(close(max_loss[0]["pnl"].as_f64().unwrap(), -350.0));

    // Restarts are counted, and a service that recovered is healthy again.
    let metrics = metrics_of(&h.p().address).await;
    assert_eq!(
        metrics["supervisor_actor_restarts_total{actor=\"position_monitor\"}"],
        1.0
    );
    assert_eq!(
        metrics["supervisor_actor_restarts_total{actor=\"order_gateway\"}"],
        1.0
    );
    wait_healthy(&h).await;
}

#[actix_web::test]
async fn a_risk_actor_in_a_crash_loop_is_faulted_loudly() {
    let h = Harness::start(options()).await;
    let id = h.strategy("crashing", json!({"max_loss": 300.0})).await;
    h.open(LegSpec::equity(id, "INFY", "BUY", 10, 100.0)).await;
    let monitor = h.p().monitor.clone();
    // The crash-loop breaker: more than 5 restarts within 60 s.
    for n in 1..=6u64 {
        assert!(monitor.send(InjectRiskPanic(id)).await.unwrap());
        poll_until(WAIT, &format!("restart {n}"), || async {
            let (_, s) = h.get("/api/v1/state").await;
            (risk_of(&s, id)["restarts"] == n).then_some(())
        })
        .await;
    }
    let (_, state) = h.get("/api/v1/state").await;
    let risk = risk_of(&state, id);
    assert_eq!(risk["lifecycle"], "Faulted", "{risk}");
    let (code, body) = health(&h, true).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    let reasons: Vec<&str> = body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("strategy 'crashing': Faulted (crash loop")),
        "{reasons:?}"
    );
}

/// Rows stored before fills were bounded: one absurd leg made the run's P&L infinite and its
/// max loss never fired, even for a leg losing ₹997 000 next to it.
#[actix_web::test]
async fn a_pnl_that_is_not_a_number_puts_the_strategy_in_exit_failed_loudly() {
    use chrono::Utc;
    use entity::strategies;
    use entity::strategy_executions::{self, ExecutionStatus, Product, TradeAction};
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};

    let mut h = Harness::without_process(options()).await;
    let strategy = strategies::ActiveModel {
        name: Set("legacy".into()),
        max_loss: Set(Some(1.0)),
        run_id: Set(1),
        run_started_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .insert(&h.db)
    .await
    .unwrap();
    for (symbol, quantity, entry) in [("INFY", i64::MAX, 1e300), ("TCS", 10_000, 200.0)] {
        strategy_executions::ActiveModel {
            strategy_id: Set(strategy.id),
            account_id: Set(h.accounts[1].id),
            run_id: Set(1),
            symbol: Set(symbol.into()),
            exchange: Set("NSE".into()),
            product: Set(Product::Mis),
            action: Set(TradeAction::Buy),
            quantity: Set(quantity),
            entry_price: Set(entry),
            status: Set(ExecutionStatus::Entered),
            entered_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&h.db)
        .await
        .unwrap();
    }
    h.price("NSE", "INFY", 100.0).await;
    h.price("NSE", "TCS", 100.0).await;
    h.start_process().await;
    h.wait_subscribed("NSE", "TCS").await;
    // TCS loses (100 − 200) × 10 000 = −₹1 000 000 against a max loss of ₹1.
    h.price("NSE", "INFY", 100.0).await;
    h.price("NSE", "TCS", 100.3).await;

    let s = h.wait_state(strategy.id, "exit_failed").await;
    assert_eq!(s["live"]["degraded"], "P&L is not a finite number", "{s}");
    let events = h.wait_event(strategy.id, "pnl_invalid").await;
    let event = events
        .iter()
        .find(|e| e["event_type"] == "pnl_invalid")
        .unwrap();
    let message = event["message"].as_str().unwrap();
    assert!(
        message.contains("is -inf") || message.contains("is NaN"),
        "{message}"
    );
    assert!(!events.iter().any(|e| e["event_type"] == "max_loss"));
    // Nothing is sent on a number that means nothing: a human decides.
    assert!(h.exits_on("TCS").await.is_empty());
    assert!(h.exits_on("INFY").await.is_empty());
    let (code, body) = health(&h, false).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        body["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "strategy 'legacy': Degraded (P&L is not a finite number)"),
        "{body}"
    );
}
