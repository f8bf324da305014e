//! A badly-behaved broker as a client sees it: orderstatus, cancelorder and modifyorder,
//! order and position histories, and each broker fault of `/sim/fault`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::{FeedClient, KEY_A, KEY_B, MASK_A, Rest, WAIT, config, eventually, start};
use super::feed::{NIFTY, option_symbol};

fn order(symbol: &str, action: &str, quantity: u64) -> Value {
    json!({"strategy": "b", "exchange": "NSE", "symbol": symbol, "action": action, "quantity": quantity})
}

fn limit(symbol: &str, action: &str, quantity: u64, price: f64) -> Value {
    let mut body = order(symbol, action, quantity);
    body["pricetype"] = json!("LIMIT");
    body["price"] = json!(price);
    body
}

async fn place(rest: &Rest, key: &str, body: Value) -> String {
    let (status, reply) = rest.api("placeorder", key, body).await;
    assert_eq!(status, 200, "{reply}");
    reply["orderid"].as_str().unwrap().to_string()
}

fn by_id(orderid: &str) -> Value {
    json!({"strategy": "b", "orderid": orderid})
}

async fn order_status(rest: &Rest, key: &str, orderid: &str) -> (u16, Value) {
    rest.api("orderstatus", key, by_id(orderid)).await
}

/// (status, filled quantity, pending quantity) of an order, from orderstatus.
async fn state(rest: &Rest, key: &str, orderid: &str) -> (String, u64, u64) {
    let (code, body) = order_status(rest, key, orderid).await;
    assert_eq!(code, 200, "{body}");
    let data = &body["data"];
    (
        data["order_status"].as_str().unwrap().to_string(),
        data["filled_quantity"].as_u64().unwrap(),
        data["pending_quantity"].as_u64().unwrap(),
    )
}

async fn modify(rest: &Rest, body: Value) -> (u16, Value) {
    rest.api("modifyorder", KEY_A, body).await
}

/// The orderstatus data of an order once it is in `status`.
async fn reaches(rest: &Rest, key: &str, orderid: &str, status: &str) -> Value {
    eventually(
        WAIT,
        &format!("order {orderid} to be {status}"),
        || async move {
            let (code, body) = order_status(rest, key, orderid).await;
            (code == 200 && body["data"]["order_status"] == status).then(|| body["data"].clone())
        },
    )
    .await
}

/// The `/sim/orders` row of an order.
async fn logged(rest: &Rest, orderid: &str) -> Value {
    let (status, log) = rest.get("/sim/orders").await;
    assert_eq!(status, 200, "{log}");
    log.as_array()
        .unwrap()
        .iter()
        .find(|o| o["orderid"] == orderid)
        .cloned()
        .unwrap_or_else(|| panic!("order {orderid} is not in /sim/orders: {log}"))
}

/// (status, filled quantity) of each entry of a `/sim/orders` row's history.
fn steps(row: &Value) -> Vec<(String, u64)> {
    row["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["status"].as_str().unwrap().to_string(),
                s["filled_quantity"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn steps_of(expected: &[(&str, u64)]) -> Vec<(String, u64)> {
    expected.iter().map(|(s, q)| (s.to_string(), *q)).collect()
}

/// When history entry `n` of a `/sim/orders` row was recorded (epoch µs).
fn at_us(row: &Value, n: usize) -> i64 {
    row["history"][n]["at_us"].as_i64().unwrap()
}

/// The net quantity after each fill of a `/sim/positions` row.
fn nets(position: &Value) -> Vec<i64> {
    position["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["net"].as_i64().unwrap())
        .collect()
}

fn wall_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Sets a price; answers when the tick left (epoch µs, taken while the price change and any
/// fill it caused hold the simulator's state).
async fn move_price(rest: &Rest, symbol: &str, ltp: f64) -> i64 {
    let (status, body) = rest
        .post(
            "/sim/price",
            &json!({"exchange": "NSE", "symbol": symbol, "ltp": ltp}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["sent_at_us"].as_i64().unwrap()
}

/// The average price an order filled on a delayed fill: `after` if the fill came after the
/// price moved at `moved_us`, else `before`.
fn price_then(filled_us: i64, moved_us: i64, before: f64, after: f64) -> f64 {
    if filled_us > moved_us { after } else { before }
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-6)
}

/// The orders, trades and positions of `key`'s books, as row counts.
async fn book_sizes(rest: &Rest, key: &str) -> (usize, usize, usize) {
    let (_, orders) = rest.api("orderbook", key, json!({})).await;
    let (_, trades) = rest.api("tradebook", key, json!({})).await;
    let (_, positions) = rest.api("positionbook", key, json!({})).await;
    let len = |v: &Value| v.as_array().map_or(usize::MAX, Vec::len);
    (
        len(&orders["data"]["orders"]),
        len(&trades["data"]),
        len(&positions["data"]),
    )
}

async fn position_of(rest: &Rest, key: &str, symbol: &str) -> i64 {
    let (_, book) = rest.api("positionbook", key, json!({})).await;
    book["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["symbol"] == symbol)
        .map_or(0, |p| p["quantity"].as_i64().unwrap())
}

fn rate_limited(body: &Value) -> u64 {
    assert_eq!(
        body["message"], "Rate limit exceeded. Please slow down your requests.",
        "{body}"
    );
    assert_eq!(body["status"], "error");
    body["retry_after"].as_u64().unwrap()
}

#[actix_web::test]
async fn orderstatus_answers_one_order_as_its_order_book_row() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.set_price("NSE", "SBIN", 800.0).await;
    let id = place(&rest, KEY_A, order("SBIN", "BUY", 3)).await;
    let (status, body) = order_status(&rest, KEY_A, &id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    let data = &body["data"];
    let mut fields: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "action",
            "average_price",
            "exchange",
            "filled_quantity",
            "order_status",
            "orderid",
            "pending_quantity",
            "price",
            "pricetype",
            "product",
            "quantity",
            "rejection_reason",
            "strategy",
            "symbol",
            "timestamp",
            "trigger_price"
        ]
    );
    assert_eq!(data["orderid"], id.as_str());
    assert_eq!(data["order_status"], "complete");
    assert_eq!(
        (
            &data["quantity"],
            &data["filled_quantity"],
            &data["pending_quantity"]
        ),
        (&json!(3), &json!(3), &json!(0))
    );
    assert_eq!(data["average_price"], 800.0);
    assert_eq!(data["rejection_reason"], "");
    assert_eq!(data["strategy"], "b");
    let (_, book) = rest.api("orderbook", KEY_A, json!({})).await;
    assert_eq!(&book["data"]["orders"][0], data);

    let (status, body) = order_status(&rest, KEY_A, "999").await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"status": "error", "message": "Order 999 not found"})
        )
    );
    // Another account's order is not this account's.
    assert_eq!(order_status(&rest, KEY_B, &id).await.0, 404);
    let (status, body) = rest
        .api("orderstatus", KEY_A, json!({"strategy": "b"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "{'orderid': ['Missing data for required field.']}"
    );
    let (status, body) = rest
        .api(
            "orderstatus",
            KEY_A,
            json!({"strategy": "b", "orderid": id, "colour": "red"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "{'colour': ['Unknown field.']}");
    assert_eq!(
        rest.api("orderstatus", "not-a-key", by_id(&id)).await.0,
        403
    );
    sim.stop().await;
}

#[actix_web::test]
async fn cancelorder_cancels_a_working_order_and_refuses_finished_ones() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.set_price("NSE", "INFY", 1500.0).await;
    let resting = place(&rest, KEY_A, limit("INFY", "BUY", 2, 1400.0)).await;
    let filled = place(&rest, KEY_A, order("INFY", "BUY", 1)).await;
    let (status, body) = rest.api("cancelorder", KEY_A, by_id(&resting)).await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "success", "orderid": resting}))
    );
    assert_eq!(
        state(&rest, KEY_A, &resting).await,
        ("cancelled".to_string(), 0, 0)
    );
    // A cancelled order never fills.
    rest.set_price("NSE", "INFY", 1300.0).await;
    assert_eq!(position_of(&rest, KEY_A, "INFY").await, 1);
    assert_eq!(
        steps(&logged(&rest, &resting).await),
        steps_of(&[("open", 0), ("cancelled", 0)])
    );

    for (id, status) in [(&resting, "cancelled"), (&filled, "complete")] {
        let (code, body) = rest.api("cancelorder", KEY_A, by_id(id)).await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(
            body,
            json!({"status": "error", "message": format!("Order {id} cannot be cancelled: it is {status}")})
        );
    }
    let (status, body) = rest.api("cancelorder", KEY_A, by_id("42")).await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"status": "error", "message": "Order 42 not found"})
        )
    );
    let (status, body) = rest
        .api("cancelorder", KEY_A, json!({"orderid": filled}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "{'strategy': ['Missing data for required field.']}"
    );
    sim.stop().await;
}

fn modification(orderid: &str, quantity: u64, pricetype: &str, price: f64, trigger: f64) -> Value {
    json!({"strategy": "b", "exchange": "NSE", "symbol": "TCS", "orderid": orderid,
           "action": "BUY", "product": "MIS", "pricetype": pricetype, "price": price,
           "quantity": quantity, "disclosed_quantity": 0, "trigger_price": trigger})
}

#[actix_web::test]
async fn modifyorder_changes_a_working_order_and_evaluates_it_again() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.set_price("NSE", "TCS", 3000.0).await;
    let id = place(&rest, KEY_A, limit("TCS", "BUY", 5, 2900.0)).await;
    // Still away from the market: it rests with its new quantity and price.
    let (status, body) = modify(&rest, modification(&id, 6, "LIMIT", 2950.0, 0.0)).await;
    assert_eq!(
        (status, body),
        (200, json!({"status": "success", "orderid": id}))
    );
    let (_, body) = order_status(&rest, KEY_A, &id).await;
    assert_eq!(
        (
            &body["data"]["order_status"],
            &body["data"]["quantity"],
            &body["data"]["price"]
        ),
        (&json!("open"), &json!(6), &json!(2950.0))
    );
    // Moved through the market: it fills at once at the current price.
    let (status, _) = modify(&rest, modification(&id, 8, "LIMIT", 3010.0, 0.0)).await;
    assert_eq!(status, 200);
    let (_, body) = order_status(&rest, KEY_A, &id).await;
    assert_eq!(body["data"]["order_status"], "complete");
    assert_eq!(body["data"]["filled_quantity"], 8);
    assert_eq!(body["data"]["average_price"], 3000.0);
    let (_, trades) = rest.api("tradebook", KEY_A, json!({})).await;
    assert_eq!(trades["data"][0]["quantity"], 8);
    assert_eq!(
        steps(&logged(&rest, &id).await),
        steps_of(&[("open", 0), ("open", 0), ("open", 0), ("complete", 8)])
    );

    let (status, body) = modify(&rest, modification(&id, 9, "LIMIT", 3010.0, 0.0)).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"status": "error", "message": format!("Order {id} cannot be modified: it is complete")})
        )
    );
    let (status, body) = modify(&rest, modification("77", 1, "MARKET", 0.0, 0.0)).await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({"status": "error", "message": "Order 77 not found"})
        )
    );

    let other = place(&rest, KEY_A, limit("TCS", "BUY", 5, 2900.0)).await;
    let mut elsewhere = modification(&other, 5, "LIMIT", 2900.0, 0.0);
    elsewhere["symbol"] = json!("INFY");
    let (status, body) = modify(&rest, elsewhere).await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("only its quantity"),
        "{body}"
    );
    let (status, body) = modify(&rest, modification(&other, 5, "SL", 2900.0, 0.0)).await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("trigger_price is required"),
        "{body}"
    );
    // Every field is required.
    let (status, body) = rest
        .api(
            "modifyorder",
            KEY_A,
            json!({"strategy": "b", "orderid": other}),
        )
        .await;
    assert_eq!(status, 400);
    let message = body["message"].as_str().unwrap();
    for field in [
        "exchange",
        "symbol",
        "action",
        "quantity",
        "pricetype",
        "product",
        "price",
        "trigger_price",
        "disclosed_quantity",
    ] {
        assert!(
            message.contains(&format!("'{field}': ['Missing data for required field.']")),
            "{field}: {message}"
        );
    }
    // A stop: pending until its trigger, then it fills.
    let (status, _) = modify(&rest, modification(&other, 5, "SL-M", 0.0, 3100.0)).await;
    assert_eq!(status, 200);
    assert_eq!(state(&rest, KEY_A, &other).await.0, "trigger pending");
    rest.set_price("NSE", "TCS", 3100.0).await;
    let (_, body) = order_status(&rest, KEY_A, &other).await;
    assert_eq!(body["data"]["order_status"], "complete");
    assert_eq!(body["data"]["average_price"], 3100.0);
    sim.stop().await;
}

#[actix_web::test]
async fn a_partial_fill_fills_the_rest_later_with_one_trade_per_fill() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.set_price("NSE", "RELIANCE", 1000.0).await;
    rest.fault(json!({"api_key": KEY_A, "partial_fill": {"count": 1, "fraction": 0.4, "rest_after_ms": 300}}))
        .await;
    let id = place(&rest, KEY_A, order("RELIANCE", "BUY", 10)).await;
    let moved = move_price(&rest, "RELIANCE", 1010.0).await;
    let data = reaches(&rest, KEY_A, &id, "complete").await;
    let row = logged(&rest, &id).await;
    assert_eq!(
        steps(&row),
        steps_of(&[("open", 0), ("open", 4), ("complete", 10)])
    );
    assert!(at_us(&row, 2) - at_us(&row, 1) >= 300_000, "{row}");
    // The rest fills at the price current when it fills; the order's average is weighted.
    let rest_price = price_then(at_us(&row, 2), moved, 1000.0, 1010.0);
    let average = (4.0 * 1000.0 + 6.0 * rest_price) / 10.0;
    assert!(close(&data["average_price"], average), "{data}");
    assert!(close(&row["history"][1]["average_price"], 1000.0), "{row}");
    assert_eq!(
        (
            &row["key"],
            &row["filled_quantity"],
            &row["pending_quantity"],
            &row["rejection_reason"]
        ),
        (&json!(MASK_A), &json!(10), &json!(0), &json!(""))
    );
    assert!(row["received_at_us"].as_i64().unwrap() <= at_us(&row, 0));
    let (_, trades) = rest.api("tradebook", KEY_A, json!({})).await;
    let fills: Vec<(u64, f64)> = trades["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["orderid"], id.as_str());
            (
                t["quantity"].as_u64().unwrap(),
                t["average_price"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(fills, [(4, 1000.0), (6, rest_price)]);

    // The fault was for one order: the exit fills at once.
    let exit = place(&rest, KEY_A, order("RELIANCE", "SELL", 10)).await;
    assert_eq!(
        steps(&logged(&rest, &exit).await),
        steps_of(&[("open", 0), ("complete", 10)])
    );
    let (status, positions) = rest.get("/sim/positions").await;
    assert_eq!(status, 200);
    let rows = positions.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{positions}");
    let p = &rows[0];
    assert_eq!(
        (
            &p["key"],
            &p["exchange"],
            &p["symbol"],
            &p["product"],
            &p["net"]
        ),
        (
            &json!(MASK_A),
            &json!("NSE"),
            &json!("RELIANCE"),
            &json!("MIS"),
            &json!(0)
        )
    );
    let history = p["history"].as_array().unwrap();
    let nets = nets(p);
    assert_eq!(nets, [4, 10, 0]);
    assert!(
        nets.iter().all(|n| *n >= 0),
        "the position never crossed zero"
    );
    assert!(
        history
            .windows(2)
            .all(|w| w[0]["at_us"].as_i64() <= w[1]["at_us"].as_i64())
    );
    sim.stop().await;
}

#[actix_web::test]
async fn a_partial_fill_s_rest_can_be_cancelled_by_the_broker_or_stay_open() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.set_price("NSE", "SBIN", 800.0).await;
    rest.fault(json!({"api_key": KEY_A, "partial_fill": {"count": 1, "fraction": 0.5, "rest_after_ms": 100, "rest": "cancel"}}))
        .await;
    let cancelled = place(&rest, KEY_A, order("SBIN", "BUY", 5)).await;
    let data = reaches(&rest, KEY_A, &cancelled, "cancelled").await;
    assert_eq!(
        (&data["filled_quantity"], &data["pending_quantity"]),
        (&json!(2), &json!(0))
    );
    assert_eq!(data["average_price"], 800.0);
    assert_eq!(position_of(&rest, KEY_A, "SBIN").await, 2);
    assert_eq!(
        steps(&logged(&rest, &cancelled).await),
        steps_of(&[("open", 0), ("open", 2), ("cancelled", 2)])
    );

    // "never": the rest waits for a cancel, and the order cannot shrink below what filled.
    rest.fault(
        json!({"api_key": KEY_A, "partial_fill": {"count": 1, "fraction": 0.3, "rest": "never"}}),
    )
    .await;
    let open = place(&rest, KEY_A, order("SBIN", "BUY", 10)).await;
    assert_eq!(state(&rest, KEY_A, &open).await, ("open".to_string(), 3, 7));
    let mut shrink = modification(&open, 2, "MARKET", 0.0, 0.0);
    shrink["symbol"] = json!("SBIN");
    let (status, body) = modify(&rest, shrink).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        format!("Order {open} cannot be modified: quantity 2 is below the 3 already filled")
    );
    let (status, _) = rest.api("cancelorder", KEY_A, by_id(&open)).await;
    assert_eq!(status, 200);
    assert_eq!(
        state(&rest, KEY_A, &open).await,
        ("cancelled".to_string(), 3, 0)
    );
    assert_eq!(
        steps(&logged(&rest, &open).await),
        steps_of(&[("open", 0), ("open", 3), ("cancelled", 3)])
    );
    assert_eq!(position_of(&rest, KEY_A, "SBIN").await, 5);
    sim.stop().await;
}

#[actix_web::test]
async fn partly_filled_orders_round_to_lots_and_cancelallorder_and_closeposition_handle_them() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let option = option_symbol(&rest, NIFTY, "ATM", "CE").await;
    rest.fault(
        json!({"api_key": KEY_A, "partial_fill": {"count": 1, "fraction": 0.5, "rest": "never"}}),
    )
    .await;
    // 3 lots × 0.5 is one and a half lots: one lot (65) fills.
    let mut buy = order(&option, "BUY", 195);
    buy["exchange"] = json!("NFO");
    let id = place(&rest, KEY_A, buy).await;
    assert_eq!(
        state(&rest, KEY_A, &id).await,
        ("open".to_string(), 65, 130)
    );
    // Square-off sells what filled; the working rest stays until cancelled.
    let (status, _) = rest
        .api("closeposition", KEY_A, json!({"strategy": "b"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(position_of(&rest, KEY_A, &option).await, 0);
    assert_eq!(state(&rest, KEY_A, &id).await.0, "open");
    let (_, cancel) = rest
        .api("cancelallorder", KEY_A, json!({"strategy": "b"}))
        .await;
    assert_eq!(cancel["canceled_orders"], json!([id]));
    assert_eq!(
        state(&rest, KEY_A, &id).await,
        ("cancelled".to_string(), 65, 0)
    );
    let (_, positions) = rest.get("/sim/positions").await;
    assert_eq!(nets(&positions[0]), [65, 0]);
    sim.stop().await;
}

#[actix_web::test]
async fn accept_then_reject_books_an_order_open_then_rejects_it() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let mut feed = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    feed.request(&json!({"action": "subscribe_orders"}))
        .await
        .unwrap();
    rest.fault(json!({"api_key": KEY_A, "accept_then_reject": {"count": 1, "after_ms": 300, "reason": "RMS: no funds (test)"}}))
        .await;
    let id = place(&rest, KEY_A, order("ITC", "BUY", 4)).await;
    let is_update = |v: &Value| v["type"] == "order_update";
    let opened = feed.next_matching("order_update", is_update).await.unwrap();
    assert_eq!(
        (
            &opened["orderid"],
            &opened["order_status"],
            &opened["filled_quantity"]
        ),
        (&json!(id), &json!("open"), &json!(0))
    );
    let rejected = feed.next_matching("order_update", is_update).await.unwrap();
    assert_eq!(
        (
            &rejected["order_status"],
            &rejected["rejection_reason"],
            &rejected["pending_quantity"]
        ),
        (
            &json!("rejected"),
            &json!("RMS: no funds (test)"),
            &json!(0)
        )
    );
    let (_, body) = order_status(&rest, KEY_A, &id).await;
    assert_eq!(body["data"]["order_status"], "rejected");
    assert_eq!(body["data"]["rejection_reason"], "RMS: no funds (test)");
    let (_, book) = rest.api("orderbook", KEY_A, json!({})).await;
    assert_eq!(book["data"]["statistics"]["total_rejected_orders"], 1);
    assert_eq!(book["data"]["statistics"]["total_open_orders"], 0);
    // Nothing filled.
    assert_eq!(book_sizes(&rest, KEY_A).await, (1, 0, 0));
    let row = logged(&rest, &id).await;
    assert_eq!(steps(&row), steps_of(&[("open", 0), ("rejected", 0)]));
    assert_eq!(row["status"], "rejected");
    assert_eq!(row["history"][1]["reason"], "RMS: no funds (test)");
    assert!(at_us(&row, 1) - at_us(&row, 0) >= 300_000, "{row}");

    // Without a reason, the default one; the fault's count used up, orders fill again.
    rest.fault(json!({"api_key": KEY_A, "accept_then_reject": {"count": 1, "after_ms": 0}}))
        .await;
    let second = place(&rest, KEY_A, order("ITC", "BUY", 1)).await;
    let data = reaches(&rest, KEY_A, &second, "rejected").await;
    assert_eq!(
        data["rejection_reason"],
        "RMS: margin exceeds limit (simulated)"
    );
    let third = place(&rest, KEY_A, order("ITC", "BUY", 1)).await;
    assert_eq!(state(&rest, KEY_A, &third).await.0, "complete");
    sim.stop().await;
}

#[actix_web::test]
async fn fill_delay_books_market_orders_open_and_fills_them_later_at_the_price_then() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.set_price("NSE", "WIPRO", 250.0).await;
    rest.fault(json!({"api_key": KEY_A, "fill_delay_ms": 400}))
        .await;
    let id = place(&rest, KEY_A, order("WIPRO", "BUY", 2)).await;
    let moved = move_price(&rest, "WIPRO", 252.0).await;
    let data = reaches(&rest, KEY_A, &id, "complete").await;
    let row = logged(&rest, &id).await;
    assert_eq!(steps(&row), steps_of(&[("open", 0), ("complete", 2)]));
    assert!(at_us(&row, 1) - at_us(&row, 0) >= 400_000, "{row}");
    let price = price_then(at_us(&row, 1), moved, 250.0, 252.0);
    assert_eq!(data["average_price"], price);

    // Only MARKET orders wait, and only this key's.
    let marketable = place(&rest, KEY_A, limit("WIPRO", "BUY", 1, 260.0)).await;
    let other = place(&rest, KEY_B, order("WIPRO", "BUY", 1)).await;
    for id in [marketable, other] {
        let row = logged(&rest, &id).await;
        assert_eq!(steps(&row), steps_of(&[("open", 0), ("complete", 1)]));
        assert_eq!(at_us(&row, 0), at_us(&row, 1), "filled as it was booked");
    }
    sim.stop().await;
}

#[actix_web::test]
async fn place_answer_delay_books_the_order_at_once_and_answers_later() {
    const DELAY: Duration = Duration::from_millis(1500);
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.fault(json!({"api_key": KEY_A, "place_answer_delay_ms": DELAY.as_millis() as u64}))
        .await;
    let started = Instant::now();
    let ((status, body, answered, answered_us), pinged) = futures_util::join!(
        async {
            let (status, body) = rest
                .api("placeorder", KEY_A, order("HCLTECH", "BUY", 1))
                .await;
            (status, body, Instant::now(), wall_us())
        },
        async {
            assert_eq!(rest.api("ping", KEY_A, json!({})).await.0, 200);
            Instant::now()
        }
    );
    assert_eq!(status, 200, "{body}");
    assert!(answered - started >= DELAY);
    assert!(pinged < answered, "other endpoints are not delayed");
    // The order was booked (and filled) at least the delay before its answer came.
    let row = logged(&rest, body["orderid"].as_str().unwrap()).await;
    assert_eq!(row["status"], "complete");
    assert!(
        answered_us - at_us(&row, 0) >= DELAY.as_micros() as i64,
        "{row}"
    );
    sim.stop().await;
}

#[actix_web::test]
async fn lost_answers_answer_502_after_booking_the_order() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.set_price("NSE", "AXISBANK", 1200.0).await;
    rest.fault(json!({"api_key": KEY_A, "lose_answers": 1}))
        .await;
    let (status, body) = rest
        .api("placeorder", KEY_A, order("AXISBANK", "BUY", 3))
        .await;
    assert_eq!(
        (status, body),
        (502, json!({"status": "error", "message": "Bad Gateway"}))
    );
    // The order is live all the same.
    let (_, log) = rest.get("/sim/orders").await;
    let row = &log[0];
    assert_eq!(
        (&row["key"], &row["status"], &row["filled_quantity"]),
        (&json!(MASK_A), &json!("complete"), &json!(3))
    );
    let id = row["orderid"].as_str().unwrap();
    let (_, book) = rest.api("orderbook", KEY_A, json!({})).await;
    assert_eq!(book["data"]["orders"][0]["orderid"], id);
    assert_eq!(book["data"]["orders"][0]["order_status"], "complete");
    assert_eq!(position_of(&rest, KEY_A, "AXISBANK").await, 3);
    // One answer was lost; the next arrives, and refusals were never lost.
    place(&rest, KEY_A, order("AXISBANK", "BUY", 1)).await;
    rest.fault(json!({"lose_answers": 1})).await;
    let (status, _) = rest
        .api("placeorder", KEY_B, order("NOSUCH", "BUY", 1))
        .await;
    assert_eq!(status, 400);
    let (status, _) = rest
        .api("placeorder", KEY_B, order("AXISBANK", "BUY", 1))
        .await;
    assert_eq!(status, 502, "the service-wide fault applies to every key");
    sim.stop().await;
}

#[actix_web::test]
async fn a_lost_answer_can_be_held_until_the_client_gives_up() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.fault(json!({"api_key": KEY_A, "lose_answers": 1, "lost_answer": "timeout"}))
        .await;
    let impatient = Rest::with_timeout(sim.rest_url(), Duration::from_millis(500));
    let outcome = impatient
        .try_api("placeorder", KEY_A, order("TITAN", "BUY", 2))
        .await;
    assert!(outcome.is_err(), "an answer came: {outcome:?}");
    let (_, log) = rest.get("/sim/orders").await;
    assert_eq!(log[0]["status"], "complete", "{log}");
    assert_eq!(position_of(&rest, KEY_A, "TITAN").await, 2);
    place(&rest, KEY_A, order("TITAN", "BUY", 1)).await;
    sim.stop().await;
}

#[actix_web::test]
async fn book_lag_shows_the_books_as_they_were_that_long_ago() {
    const LAG: Duration = Duration::from_millis(1500);
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.set_price("NSE", "LT", 3500.0).await;
    rest.fault(json!({"api_key": KEY_A, "book_lag_ms": LAG.as_millis() as u64}))
        .await;
    let sent = Instant::now();
    let id = place(&rest, KEY_A, order("LT", "BUY", 2)).await;
    let (status, body) = order_status(&rest, KEY_A, &id).await;
    let sizes = book_sizes(&rest, KEY_A).await;
    // Asked within the lag of the order being placed: the books do not show it yet.
    if sent.elapsed() < LAG {
        assert_eq!(status, 404, "{body}");
        assert_eq!(sizes, (0, 0, 0));
    }
    let data = reaches(&rest, KEY_A, &id, "complete").await;
    assert_eq!(data["filled_quantity"], 2);
    assert_eq!(book_sizes(&rest, KEY_A).await, (1, 1, 1));
    assert_eq!(position_of(&rest, KEY_A, "LT").await, 2);
    // Other keys see their books as they are.
    let theirs = place(&rest, KEY_B, order("LT", "BUY", 1)).await;
    assert_eq!(order_status(&rest, KEY_B, &theirs).await.0, 200);

    // A fill more recent than the lag is not shown either.
    let resting = place(&rest, KEY_A, limit("LT", "SELL", 1, 3600.0)).await;
    reaches(&rest, KEY_A, &resting, "open").await;
    let moved = Instant::now();
    rest.set_price("NSE", "LT", 3600.0).await;
    let (_, body) = order_status(&rest, KEY_A, &resting).await;
    let position = position_of(&rest, KEY_A, "LT").await;
    if moved.elapsed() < LAG {
        assert_eq!(body["data"]["order_status"], "open", "{body}");
        assert_eq!(position, 2);
    }
    reaches(&rest, KEY_A, &resting, "complete").await;
    assert_eq!(position_of(&rest, KEY_A, "LT").await, 1);
    sim.stop().await;
}

#[actix_web::test]
async fn books_unavailable_answers_500_on_the_books_for_a_while() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.fault(json!({"api_key": KEY_A, "books_unavailable_s": 60}))
        .await;
    let id = place(&rest, KEY_A, order("KOTAKBANK", "BUY", 1)).await;
    let down =
        json!({"status": "error", "message": "Broker API temporarily unavailable (simulated)"});
    for endpoint in ["orderbook", "tradebook", "positionbook"] {
        assert_eq!(
            rest.api(endpoint, KEY_A, json!({})).await,
            (500, down.clone()),
            "{endpoint}"
        );
    }
    assert_eq!(order_status(&rest, KEY_A, &id).await, (500, down));
    assert_eq!(rest.api("funds", KEY_A, json!({})).await.0, 200);
    assert_eq!(rest.api("orderbook", KEY_B, json!({})).await.0, 200);
    // A shorter outage replaces it and ends by itself.
    rest.fault(json!({"api_key": KEY_A, "books_unavailable_s": 0.3}))
        .await;
    let rest_ref = &rest;
    eventually(WAIT, "the order book to answer again", || async move {
        (rest_ref.api("orderbook", KEY_A, json!({})).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(book_sizes(&rest, KEY_A).await, (1, 1, 1));
    sim.stop().await;
}

#[actix_web::test]
async fn rate_limit_answers_429_with_retry_after_then_normal_answers() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.fault(json!({"api_key": KEY_A, "rate_limit_s": 30}))
        .await;
    for endpoint in ["ping", "funds", "orderbook"] {
        let (status, body) = rest.api(endpoint, KEY_A, json!({})).await;
        assert_eq!(status, 429, "{endpoint}: {body}");
        assert!((1..=30).contains(&rate_limited(&body)), "{body}");
    }
    let (status, body) = rest
        .api("placeorder", KEY_A, order("ASIANPAINT", "BUY", 1))
        .await;
    assert_eq!(status, 429);
    rate_limited(&body);
    let (_, log) = rest.get("/sim/orders").await;
    assert_eq!(log, json!([]), "a refused request books nothing");
    assert_eq!(rest.api("ping", KEY_B, json!({})).await.0, 200);

    rest.fault(json!({"api_key": KEY_A, "rate_limit_s": 0.5}))
        .await;
    let (status, body) = rest.api("ping", KEY_A, json!({})).await;
    if status == 429 {
        assert_eq!(rate_limited(&body), 1, "seconds left, rounded up");
    }
    let rest_ref = &rest;
    eventually(WAIT, "the key to be answered again", || async move {
        (rest_ref.api("ping", KEY_A, json!({})).await.0 == 200).then_some(())
    })
    .await;
    place(&rest, KEY_A, order("ASIANPAINT", "BUY", 1)).await;
    sim.stop().await;
}

#[actix_web::test]
async fn clear_resets_one_scope_before_the_request_s_other_fields_apply() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.fault(json!({"api_key": KEY_A, "rate_limit_s": 60, "reject_orders": 3}))
        .await;
    rest.fault(json!({"books_unavailable_s": 60})).await;
    assert_eq!(rest.api("ping", KEY_A, json!({})).await.0, 429);
    rest.fault(json!({"api_key": KEY_A, "clear": true, "lose_answers": 1}))
        .await;
    assert_eq!(rest.api("ping", KEY_A, json!({})).await.0, 200);
    // Not refused (reject_orders was cleared), and its answer lost (set after the reset).
    let (status, _) = rest
        .api("placeorder", KEY_A, order("MARUTI", "BUY", 1))
        .await;
    assert_eq!(status, 502);
    // The service-wide scope is its own.
    assert_eq!(rest.api("orderbook", KEY_A, json!({})).await.0, 500);
    rest.fault(json!({"clear": true})).await;
    assert_eq!(book_sizes(&rest, KEY_A).await, (1, 1, 1));
    sim.stop().await;
}

#[actix_web::test]
async fn broker_fault_fields_are_validated() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    for (bad, says) in [
        (json!({"clear": 1}), "clear must be a boolean"),
        (
            json!({"place_answer_delay_ms": -5}),
            "place_answer_delay_ms must be a non-negative integer",
        ),
        (json!({"lose_answers": "2"}), "lose_answers must be"),
        (
            json!({"lost_answer": "later"}),
            r#"lost_answer must be "502" or "timeout""#,
        ),
        (json!({"fill_delay_ms": 0.5}), "fill_delay_ms must be"),
        (json!({"book_lag_ms": true}), "book_lag_ms must be"),
        (
            json!({"books_unavailable_s": -1}),
            "books_unavailable_s must be",
        ),
        (json!({"rate_limit_s": "1"}), "rate_limit_s must be"),
        (
            json!({"accept_then_reject": {"count": 1}}),
            "accept_then_reject.after_ms is required",
        ),
        (
            json!({"accept_then_reject": {"count": 1, "after_ms": 5, "when": 1}}),
            "unknown field: when",
        ),
        (
            json!({"partial_fill": {"count": 1, "fraction": 1.5, "rest_after_ms": 5}}),
            "partial_fill.fraction must be a number between 0 and 1",
        ),
        (
            json!({"partial_fill": {"count": 1, "fraction": 0.5, "rest_after_ms": 5, "rest": "drop"}}),
            "partial_fill.rest must be",
        ),
        (
            json!({"partial_fill": []}),
            "partial_fill must be an object",
        ),
    ] {
        let (status, body) = rest.post("/sim/fault", &bad).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_eq!(body["status"], "error");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(says), "{bad} → {message}");
    }
    // A refused request changes nothing, not even its valid fields.
    let (status, _) = rest
        .post(
            "/sim/fault",
            &json!({"rate_limit_s": 60, "lost_answer": "never"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(rest.api("ping", KEY_A, json!({})).await.0, 200);
    sim.stop().await;
}
