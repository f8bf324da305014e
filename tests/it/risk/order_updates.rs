//! Order updates on the one socket per key (docs/order-updates.md): every account's socket
//! carries its order updates, only the feed account's carries market data; an exit is
//! confirmed by its order's update without reading the books; a rejection pushed after
//! acceptance starts the retry; updates of orders no exit placed are recorded; a socket
//! dropped mid-exit asks for its order updates again before it counts as live, and the exit is
//! confirmed once from the books.

use ::actors::orders::GetGatewayStatus;
use serde_json::{Value, json};

use super::{Harness, LegSpec, WAIT, options};
use crate::feed::sim_stats;
use crate::helpers::poll_until;

/// Reads of an exit order's state only after a minute: within a test's wait, only an order
/// update can confirm it.
fn events_only() -> trading_supervisor::configuration::Settings {
    let mut s = options();
    s.risk.exit_event_wait_ms = 60_000;
    s
}

async fn streams(h: &Harness) -> Vec<Value> {
    let (_, state) = h.get("/api/v1/state").await;
    state["streams"]["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until every account's socket is live with its order updates subscribed.
async fn wait_streams_live(h: &Harness) -> Vec<Value> {
    poll_until(WAIT, "every account's order updates flowing", || async {
        let all = streams(h).await;
        (all.len() == 2
            && all
                .iter()
                .all(|s| s["state"] == "Live" && s["orders"]["subscribed"] == true))
        .then_some(all)
    })
    .await
}

#[actix_web::test]
async fn every_account_has_one_socket_with_its_order_updates_and_only_the_feed_carries_ticks() {
    let h = Harness::start(options()).await;
    let id = h.strategy("two-accounts", json!({})).await;
    h.open(LegSpec::equity(id, "INFY", "BUY", 10, 100.0).on(1))
        .await;
    let all = wait_streams_live(&h).await;
    let stats = sim_stats(&h.sim).await;
    for account in 0..2 {
        let key = h.masked(account);
        assert_eq!(stats["feed"]["connections"][&key], 1, "{stats}");
        assert_eq!(stats["feed"]["order_subscribers"][&key], 1, "{stats}");
    }
    let of = |name: &str| all.iter().find(|s| s["account"] == name).cloned();
    let (a, b) = (of("acct-a").unwrap(), of("acct-b").unwrap());
    assert_eq!(a["feed"], true, "{a}");
    assert_eq!(b["feed"], false, "{b}");
    // The leg on the second account is priced through the feed account's socket.
    assert!(a["held_symbols"].as_u64().unwrap() >= 1, "{a}");
    assert_eq!(b["held_symbols"], 0, "{b}");
    assert_eq!(stats["feed"]["refused_connections"], 0, "{stats}");
}

#[actix_web::test]
async fn an_exit_is_confirmed_by_its_order_update_without_reading_the_books() {
    let h = Harness::start(events_only()).await;
    let id = h.strategy("pushed", json!({"max_loss": 100.0})).await;
    let leg = h
        .open(LegSpec::equity(id, "TCS", "BUY", 10, 100.0).on(1))
        .await;
    wait_streams_live(&h).await;
    // The order is accepted open; its fill comes later, pushed.
    h.fault(Some(1), json!({"fill_delay_ms": 300})).await;
    h.price("NSE", "TCS", 80.0).await;
    let exited = h.wait_exited(leg).await;
    assert_eq!(exited.exit_filled_quantity, Some(10));
    let gateway = h.p().gateway.send(GetGatewayStatus).await.unwrap();
    assert_eq!(
        (
            gateway.exits_confirmed_by_event,
            gateway.exits_confirmed_by_read
        ),
        (1, 0),
        "{gateway:?}"
    );
    let orders = h.orders_of("pushed").await;
    assert_eq!(orders.len(), 1, "{orders:#?}");
    let (_, state) = h.get("/api/v1/state").await;
    let account = state["order_events"]["accounts"]
        .as_array()
        .and_then(|all| all.iter().find(|a| a["account_id"] == h.accounts[1].id))
        .cloned()
        .expect("the second account's order events");
    assert!(account["matched"].as_u64().unwrap() >= 1, "{account}");
    assert_eq!(account["routing_failures"], 0, "{account}");
}

#[actix_web::test]
async fn a_rejection_pushed_after_acceptance_starts_the_retry() {
    let h = Harness::start(events_only()).await;
    let id = h
        .strategy("pushed-reject", json!({"max_loss": 100.0}))
        .await;
    let leg = h
        .open(LegSpec::equity(id, "WIPRO", "SELL", 10, 100.0))
        .await;
    wait_streams_live(&h).await;
    h.fault(
        Some(0),
        json!({"accept_then_reject": {"count": 1, "after_ms": 200}}),
    )
    .await;
    h.price("NSE", "WIPRO", 120.0).await;
    h.wait_exited(leg).await;
    let orders = h.orders_of("pushed-reject").await;
    let statuses: Vec<&str> = orders
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["rejected", "complete"], "{orders:#?}");
    let gateway = h.p().gateway.send(GetGatewayStatus).await.unwrap();
    assert_eq!(gateway.exits_confirmed_by_event, 1, "{gateway:?}");
    assert_eq!(gateway.exits_confirmed_by_read, 0, "{gateway:?}");
}

#[actix_web::test]
async fn updates_of_orders_no_exit_placed_are_recorded() {
    let h = Harness::start(options()).await;
    wait_streams_live(&h).await;
    let order_id = h.sim_order(1, "ITC", "BUY", 3, "manual").await;
    let account = poll_until(WAIT, "the manual order's update recorded", || async {
        let (_, state) = h.get("/api/v1/state").await;
        state["order_events"]["accounts"]
            .as_array()?
            .iter()
            .find(|a| {
                a["account_id"] == h.accounts[1].id && a["unmatched"].as_u64().unwrap_or(0) >= 1
            })
            .cloned()
    })
    .await;
    let recent = account["recent"].as_array().unwrap();
    assert!(
        recent
            .iter()
            .any(|e| e["order_id"] == order_id.as_str() && e["matched"] == false),
        "{account}"
    );
}

#[actix_web::test]
async fn a_socket_dropped_mid_exit_resubscribes_before_live_and_the_exit_is_confirmed_once() {
    let h = Harness::start(events_only()).await;
    let id = h.strategy("dropped", json!({"max_loss": 100.0})).await;
    let leg = h.open(LegSpec::equity(id, "SBIN", "BUY", 10, 100.0)).await;
    let before = wait_streams_live(&h).await;
    let reconnects = |all: &[Value]| -> u64 {
        all.iter()
            .map(|s| s["reconnects"].as_u64().unwrap_or(0))
            .sum()
    };
    let reconnects_before = reconnects(&before);
    // Filled while every socket is down: its update is lost, the books have it.
    h.fault(Some(0), json!({"fill_delay_ms": 800})).await;
    h.price("NSE", "SBIN", 80.0).await;
    poll_until(WAIT, "the exit order at the broker", || async {
        h.orders_of("dropped").await.first().cloned()
    })
    .await;
    h.fault(None, json!({"drop_connections": true})).await;
    let after = poll_until(WAIT, "the sockets back and subscribed", || async {
        let all = streams(&h).await;
        let live = all
            .iter()
            .all(|s| s["state"] == "Live" && s["orders"]["subscribed"] == true);
        (live && reconnects(&all) > reconnects_before).then_some(all)
    })
    .await;
    // A socket counts as live only once its order updates are subscribed again.
    let stats = sim_stats(&h.sim).await;
    for s in &after {
        let key = s["api_key"].as_str().unwrap();
        assert_eq!(stats["feed"]["order_subscribers"][key], 1, "{stats}");
    }
    let exited = h.wait_exited(leg).await;
    assert_eq!(exited.exit_filled_quantity, Some(10));
    let orders = h.orders_of("dropped").await;
    assert_eq!(
        orders.len(),
        1,
        "confirmed once, never sent again: {orders:#?}"
    );
    h.wait_state(id, "exited").await;
}

#[actix_web::test]
async fn a_gateway_without_order_updates_keeps_the_socket_and_exits_are_read_from_the_books() {
    let h = Harness::start(events_only()).await;
    let id = h.strategy("no-updates", json!({"max_loss": 100.0})).await;
    let leg = h
        .open(LegSpec::equity(id, "HCLTECH", "BUY", 10, 100.0).on(1))
        .await;
    wait_streams_live(&h).await;
    h.fault(
        Some(1),
        json!({"refuse_order_updates_s": 600, "drop_connections": true}),
    )
    .await;
    let key = h.masked(1);
    let stream = poll_until(
        WAIT,
        "the second socket live without order updates",
        || async {
            streams(&h).await.into_iter().find(|s| {
                s["api_key"] == key.as_str()
                    && s["state"] == "Live"
                    && s["orders"]["subscribed"] == false
                    && s["reconnects"].as_u64().unwrap_or(0) >= 1
            })
        },
    )
    .await;
    assert!(
        stream["last_error"]
            .as_str()
            .unwrap()
            .contains("subscribe_orders refused"),
        "{stream}"
    );
    let (_, health) = h.get("/health").await;
    assert!(
        health["reasons"]
            .to_string()
            .contains("order updates of account 'acct-b'"),
        "{health}"
    );
    // Its exit does not wait for an update that cannot come: the books are read at once.
    h.price("NSE", "HCLTECH", 80.0).await;
    h.wait_exited(leg).await;
    let gateway = h.p().gateway.send(GetGatewayStatus).await.unwrap();
    assert_eq!(gateway.exits_confirmed_by_read, 1, "{gateway:?}");
    assert_eq!(h.orders_of("no-updates").await.len(), 1);
}

#[actix_web::test]
async fn an_update_pushed_before_the_placement_answer_is_kept_for_it() {
    let h = Harness::start(events_only()).await;
    let id = h.strategy("early-update", json!({"max_loss": 100.0})).await;
    let leg = h.open(LegSpec::equity(id, "LT", "BUY", 10, 100.0)).await;
    wait_streams_live(&h).await;
    // The order fills at once and its update is pushed at once; the answer with its id comes
    // 300 ms later.
    h.fault(Some(0), json!({"place_answer_delay_ms": 300}))
        .await;
    h.price("NSE", "LT", 80.0).await;
    h.wait_exited(leg).await;
    let gateway = h.p().gateway.send(GetGatewayStatus).await.unwrap();
    assert_eq!(
        (
            gateway.exits_confirmed_by_event,
            gateway.exits_confirmed_by_read
        ),
        (1, 0),
        "{gateway:?}"
    );
    let (_, state) = h.get("/api/v1/state").await;
    let account = state["order_events"]["accounts"]
        .as_array()
        .and_then(|all| all.iter().find(|a| a["account_id"] == h.accounts[0].id))
        .cloned()
        .expect("the first account's order events");
    assert!(account["held"].as_u64().unwrap() >= 1, "{account}");
    assert_eq!(h.orders_of("early-update").await.len(), 1);
}
