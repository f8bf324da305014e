//! REST conformance: docs/openalgo.md §3 bodies, books, broker checks, option endpoints, limits.

use std::sync::Arc;

use chrono::TimeZone;
use clock::ManualClock;
use serde_json::{Value, json};
use simulator::{RateLimits, SimConfig};

use super::client::{KEY_A, KEY_B, MASK_A, Rest, config, start, test_start};
use super::feed::{NIFTY, nearest_expiry, option_symbol};

fn order(symbol: &str, exchange: &str, action: &str, quantity: u64) -> Value {
    json!({"strategy": "t", "exchange": exchange, "symbol": symbol, "action": action, "quantity": quantity})
}

async fn place(rest: &Rest, key: &str, body: Value) -> String {
    let (status, reply) = rest.api("placeorder", key, body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "success");
    let id = reply["orderid"].as_str().unwrap().to_string();
    assert!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "{id}"
    );
    id
}

#[actix_web::test]
async fn ping_answers_and_bad_keys_and_bodies_are_refused() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let (status, body) = rest.api("ping", KEY_A, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"]["message"], "pong");
    assert!(body["data"]["broker"].is_string());
    // Trailing slash is accepted.
    let (status, _) = rest.post("/api/v1/ping/", &json!({"apikey": KEY_B})).await;
    assert_eq!(status, 200);

    for endpoint in ["ping", "funds", "positionbook", "orderbook", "tradebook"] {
        let (status, body) = rest.api(endpoint, "not-a-key", json!({})).await;
        assert_eq!(status, 403, "{endpoint}");
        assert_eq!(
            body,
            json!({"status": "error", "message": "Invalid openalgo apikey"})
        );
    }
    // Missing apikey: the books report the raw error dict.
    let (status, body) = rest.post("/api/v1/funds", &json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "error");
    assert_eq!(
        body["message"],
        json!({"apikey": ["Missing data for required field."]})
    );
    let (status, body) = rest.post_raw("/api/v1/ping", "{not json").await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "error");
    let (status, _) = rest
        .post("/api/v1/nosuchthing", &json!({"apikey": KEY_A}))
        .await;
    assert_eq!(status, 404);
    sim.stop().await;
}

#[actix_web::test]
async fn validation_errors_use_each_endpoint_s_shape() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    // Order endpoints: the error dict printed as a Python string.
    let (status, body) = rest
        .api(
            "placeorder",
            KEY_A,
            json!({"strategy": "t", "exchange": "NSE", "symbol": "SBIN", "action": "BUY"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "{'quantity': ['Missing data for required field.']}"
    );
    let (_, body) = rest
        .api("placeorder", KEY_A, json!({"strategy": "t", "exchange": "NSX", "symbol": "SBIN", "action": "HOLD", "quantity": 0, "colour": "red"}))
        .await;
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("'exchange': ['Must be one of: NSE, NFO"),
        "{message}"
    );
    assert!(
        message.contains("'action': ['Must be one of: BUY, SELL, buy, sell.']"),
        "{message}"
    );
    assert!(
        message.contains("'quantity': ['Quantity must be a positive number.']"),
        "{message}"
    );
    assert!(
        message.contains("'colour': ['Unknown field.']"),
        "{message}"
    );
    let (status, body) = rest
        .api("placeorder", KEY_A, json!({"strategy": "t", "exchange": "NSE", "symbol": "SBIN", "action": "BUY", "quantity": 1.5}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "{'quantity': ['Fractional quantity (1.5) is not allowed for non-crypto exchanges.']}"
    );
    let (status, body) = rest.api("closeposition", KEY_A, json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "{'strategy': ['Missing data for required field.']}"
    );
    // Data endpoints: the raw dict.
    let (status, body) = rest.api("quotes", KEY_A, json!({"exchange": "NSE"})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        json!({"symbol": ["Missing data for required field."]})
    );
    let (_, body) = rest
        .api(
            "expiry",
            KEY_A,
            json!({"symbol": "NIFTY", "exchange": "NSE", "instrumenttype": "weekly"}),
        )
        .await;
    assert!(body["message"]["exchange"].is_array());
    assert!(body["message"]["instrumenttype"].is_array());
    // Option endpoints: "Validation error" with the dict under "errors".
    let (status, body) = rest
        .api(
            "optionchain",
            KEY_A,
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strike_count": 0}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "Validation error");
    assert_eq!(
        body["errors"]["expiry_date"],
        json!(["Missing data for required field."])
    );
    assert!(body["errors"]["strike_count"].is_array());
    let (_, body) = rest
        .api("optionsymbol", KEY_A, json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "offset": "OTM99", "option_type": "XX"}))
        .await;
    assert_eq!(
        body["errors"]["offset"],
        json!(["Offset must be ATM, ITM1-ITM50, or OTM1-OTM50"])
    );
    assert!(body["errors"]["option_type"].is_array());
    // A bad key is checked after the schema: valid bodies with a bad key get 403.
    let (status, _) = rest
        .api("placeorder", "bad", order("SBIN", "NSE", "BUY", 1))
        .await;
    assert_eq!(status, 403);
    sim.stop().await;
}

#[actix_web::test]
async fn market_orders_fill_and_keep_positions_orders_and_trades_consistent() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.set_price("NSE", "RELIANCE", 1500.0).await;
    let buy = place(&rest, KEY_A, order("RELIANCE", "NSE", "BUY", 10)).await;
    rest.set_price("NSE", "RELIANCE", 1510.0).await;
    let sell = place(&rest, KEY_A, order("RELIANCE", "NSE", "sell", 4)).await;

    let (status, book) = rest.api("positionbook", KEY_A, json!({})).await;
    assert_eq!(status, 200);
    let rows = book["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let p = &rows[0];
    assert_eq!(
        (
            p["symbol"].as_str(),
            p["exchange"].as_str(),
            p["product"].as_str()
        ),
        (Some("RELIANCE"), Some("NSE"), Some("MIS"))
    );
    assert_eq!(p["quantity"], 6);
    assert_eq!(
        p["average_price"].as_str().unwrap().parse::<f64>().unwrap(),
        1500.0
    );
    assert_eq!(p["ltp"], 1510.0);
    // Realized 4 × 10 plus unrealized 6 × 10.
    assert_eq!(p["pnl"], 100.0);

    let (_, book) = rest.api("orderbook", KEY_A, json!({})).await;
    let orders = book["data"]["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0]["orderid"], buy.as_str());
    assert_eq!(orders[1]["orderid"], sell.as_str());
    assert_eq!(orders[1]["action"], "SELL");
    for o in orders {
        assert_eq!(o["order_status"], "complete");
        assert_eq!(o["pricetype"], "MARKET");
        for field in [
            "symbol",
            "exchange",
            "product",
            "quantity",
            "price",
            "trigger_price",
            "timestamp",
        ] {
            assert!(o.get(field).is_some(), "{field}");
        }
    }
    assert_eq!(
        book["data"]["statistics"],
        json!({"total_buy_orders": 1, "total_sell_orders": 1, "total_completed_orders": 2, "total_open_orders": 0, "total_rejected_orders": 0})
    );

    let (_, trades) = rest.api("tradebook", KEY_A, json!({})).await;
    let trades = trades["data"].as_array().unwrap();
    assert_eq!(trades.len(), 2);
    assert_eq!(trades[0]["orderid"], buy.as_str());
    assert_eq!(trades[0]["average_price"], 1500.0);
    assert_eq!(trades[0]["trade_value"], 15000.0);
    assert_eq!(trades[1]["quantity"], 4);
    assert!(trades[1]["timestamp"].is_string());

    let (_, open) = rest
        .api(
            "openposition",
            KEY_A,
            json!({"strategy": "t", "symbol": "RELIANCE", "exchange": "NSE", "product": "MIS"}),
        )
        .await;
    assert_eq!(open, json!({"status": "success", "quantity": "6"}));
    let (_, funds) = rest.api("funds", KEY_A, json!({})).await;
    assert_eq!(funds["data"]["m2mrealized"], "40.00");
    assert_eq!(funds["data"]["m2munrealized"], "60.00");
    assert_eq!(funds["data"]["utiliseddebits"], "9000.00");
    assert_eq!(funds["data"]["availablecash"], "991040.00");
    assert_eq!(funds["data"]["collateral"], "0.00");

    // Closing leaves the position listed at quantity 0.
    place(&rest, KEY_A, order("RELIANCE", "NSE", "SELL", 6)).await;
    let (_, book) = rest.api("positionbook", KEY_A, json!({})).await;
    assert_eq!(book["data"][0]["quantity"], 0);
    assert_eq!(book["data"][0]["pnl"], 100.0);

    // Each key has its own books.
    let (_, other) = rest.api("positionbook", KEY_B, json!({})).await;
    assert_eq!(other["data"], json!([]));
    let (_, other) = rest.api("orderbook", KEY_B, json!({})).await;
    assert_eq!(other["data"]["orders"], json!([]));
    sim.stop().await;
}

#[actix_web::test]
async fn limit_orders_wait_until_marketable_and_cancelallorder_cancels_the_rest() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.set_price("NSE", "INFY", 1500.0).await;
    let mut limit = order("INFY", "NSE", "BUY", 3);
    limit["pricetype"] = json!("LIMIT");
    limit["price"] = json!(1490);
    let resting = place(&rest, KEY_A, limit.clone()).await;
    limit["price"] = json!(1400);
    let far = place(&rest, KEY_A, limit).await;
    let statuses = |book: &Value| -> Vec<String> {
        book["data"]["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["order_status"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, book) = rest.api("orderbook", KEY_A, json!({})).await;
    assert_eq!(statuses(&book), ["open", "open"]);
    assert_eq!(book["data"]["statistics"]["total_open_orders"], 2);

    rest.set_price("NSE", "INFY", 1489.5).await;
    let (_, book) = rest.api("orderbook", KEY_A, json!({})).await;
    assert_eq!(statuses(&book), ["complete", "open"]);
    assert_eq!(book["data"]["orders"][0]["orderid"], resting.as_str());
    let (_, trades) = rest.api("tradebook", KEY_A, json!({})).await;
    assert_eq!(trades["data"][0]["average_price"], 1489.5);

    let (status, cancel) = rest
        .api("cancelallorder", KEY_A, json!({"strategy": "t"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        cancel,
        json!({"status": "success", "message": "Canceled 1 orders. Failed to cancel 0 orders.", "canceled_orders": [far], "failed_cancellations": []})
    );
    let (_, book) = rest.api("orderbook", KEY_A, json!({})).await;
    assert_eq!(statuses(&book), ["complete", "cancelled"]);
    // A cancelled order never fills.
    rest.set_price("NSE", "INFY", 1300.0).await;
    let (_, book) = rest.api("positionbook", KEY_A, json!({})).await;
    assert_eq!(book["data"][0]["quantity"], 3);
    sim.stop().await;
}

#[actix_web::test]
async fn fno_lot_and_freeze_rules_and_index_orders_are_enforced() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let option = option_symbol(&rest, NIFTY, "ATM", "PE").await;

    let (status, body) = rest
        .api("placeorder", KEY_A, order(&option, "NFO", "BUY", 100))
        .await;
    assert_eq!(status, 400);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("lot size 65"), "{message}");
    let (status, body) = rest
        .api("placeorder", KEY_A, order(&option, "NFO", "BUY", 1820))
        .await;
    assert_eq!(status, 400);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("freeze quantity 1800"), "{message}");
    let (status, body) = rest
        .api("placeorder", KEY_A, order("NIFTY", "NSE_INDEX", "BUY", 65))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("index"),
        "{body}"
    );
    let (status, body) = rest
        .api("placeorder", KEY_A, order("NOSUCH", "NSE", "BUY", 1))
        .await;
    assert_eq!(status, 400, "{body}");
    place(&rest, KEY_A, order(&option, "NFO", "BUY", 1755)).await;

    let (_, log) = rest.get("/sim/orders").await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 5);
    let statuses: Vec<&str> = log.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["rejected", "rejected", "rejected", "rejected", "complete"]
    );
    assert_eq!(log[4]["key"], MASK_A);
    assert_eq!(log[4]["quantity"], 1755);
    assert!(log[0]["orderid"].is_null());
    assert!(
        log.windows(2)
            .all(|w| w[0]["received_at_us"].as_i64() <= w[1]["received_at_us"].as_i64())
    );
    sim.stop().await;
}

#[actix_web::test]
async fn smart_orders_trade_the_difference_to_the_target_position() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let smart = |size: i64, quantity: u64, action: &str| json!({"strategy": "t", "exchange": "NSE", "symbol": "TCS", "action": action, "quantity": quantity, "position_size": size});
    let (status, body) = rest
        .api("placesmartorder", KEY_A, smart(10, 10, "BUY"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["orderid"].is_string());
    let (_, body) = rest
        .api("placesmartorder", KEY_A, smart(10, 0, "BUY"))
        .await;
    assert_eq!(
        body,
        json!({"status": "success", "message": "Positions Already Matched. No Action needed."})
    );
    let (_, body) = rest
        .api("placesmartorder", KEY_A, smart(-5, 0, "SELL"))
        .await;
    assert!(body["orderid"].is_string(), "{body}");
    let (_, open) = rest
        .api(
            "openposition",
            KEY_A,
            json!({"strategy": "t", "symbol": "TCS", "exchange": "NSE", "product": "MIS"}),
        )
        .await;
    assert_eq!(open["quantity"], "-5");
    let (_, trades) = rest.api("tradebook", KEY_A, json!({})).await;
    assert_eq!(trades["data"][1]["action"], "SELL");
    assert_eq!(trades["data"][1]["quantity"], 15);
    sim.stop().await;
}

#[actix_web::test]
async fn closeposition_squares_off_everything_splitting_at_the_freeze_quantity() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let option = option_symbol(&rest, NIFTY, "OTM1", "CE").await;
    for _ in 0..2 {
        let mut o = order(&option, "NFO", "SELL", 1755);
        o["product"] = json!("NRML");
        place(&rest, KEY_A, o).await;
    }
    place(&rest, KEY_A, order("SBIN", "NSE", "BUY", 7)).await;
    place(&rest, KEY_B, order("SBIN", "NSE", "BUY", 1)).await;

    let (status, body) = rest
        .api("closeposition", KEY_A, json!({"strategy": "t"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "success", "message": "All Open Positions Squared Off"})
    );
    let (_, book) = rest.api("positionbook", KEY_A, json!({})).await;
    let rows = book["data"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|p| p["quantity"] == 0), "{rows:?}");
    let (_, orders) = rest.api("orderbook", KEY_A, json!({})).await;
    let orders = orders["data"]["orders"].as_array().unwrap();
    // 3 entries, then the option exit (3510 split into 1755 + 1755) and the equity exit.
    assert_eq!(orders.len(), 6);
    let exits: Vec<(&str, &str, u64, &str)> = orders[3..]
        .iter()
        .map(|o| {
            (
                o["symbol"].as_str().unwrap(),
                o["action"].as_str().unwrap(),
                o["quantity"].as_u64().unwrap(),
                o["product"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        exits,
        [
            (option.as_str(), "BUY", 1755, "NRML"),
            (option.as_str(), "BUY", 1755, "NRML"),
            ("SBIN", "SELL", 7, "MIS"),
        ]
    );
    assert!(orders.iter().all(|o| o["order_status"] == "complete"));
    // The other account is untouched.
    let (_, other) = rest.api("positionbook", KEY_B, json!({})).await;
    assert_eq!(other["data"][0]["quantity"], 1);
    sim.stop().await;
}

#[actix_web::test]
async fn quotes_and_expiries_describe_the_simulated_market() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let (status, quote) = rest
        .api(
            "quotes",
            KEY_A,
            json!({"symbol": "RELIANCE", "exchange": "NSE"}),
        )
        .await;
    assert_eq!(status, 200);
    for field in [
        "open",
        "high",
        "low",
        "ltp",
        "ask",
        "bid",
        "prev_close",
        "volume",
        "oi",
    ] {
        assert!(quote["data"][field].is_number(), "{field}");
    }
    let q = &quote["data"];
    assert!(q["bid"].as_f64() < q["ask"].as_f64());
    assert!(q["low"].as_f64() <= q["ltp"].as_f64() && q["ltp"].as_f64() <= q["high"].as_f64());
    let (status, _) = rest
        .api(
            "quotes",
            KEY_A,
            json!({"symbol": "NOPE", "exchange": "NSE"}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, index) = rest
        .api(
            "quotes",
            KEY_A,
            json!({"symbol": "SENSEX", "exchange": "BSE_INDEX"}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(index["data"]["ltp"].as_f64().unwrap() > 50_000.0);

    for (symbol, exchange, count) in [
        ("NIFTY", "NFO", 4),
        ("BANKNIFTY", "NFO", 3),
        ("SENSEX", "BFO", 4),
    ] {
        let (status, body) = rest
            .api(
                "expiry",
                KEY_A,
                json!({"symbol": symbol, "exchange": exchange, "instrumenttype": "options"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["message"],
            format!("Found {count} expiry dates for {symbol} options in {exchange}")
        );
        let dates: Vec<chrono::NaiveDate> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| chrono::NaiveDate::parse_from_str(d.as_str().unwrap(), "%d-%b-%y").unwrap())
            .collect();
        assert_eq!(dates.len(), count);
        assert!(dates.windows(2).all(|w| w[0] < w[1]), "{dates:?}");
        let today = test_start()
            .with_timezone(&chrono_tz::Asia::Kolkata)
            .date_naive();
        assert!(dates[0] >= today);
        assert!(
            body["data"][0]
                .as_str()
                .unwrap()
                .chars()
                .all(|c| !c.is_ascii_lowercase())
        );
    }
    let (status, _) = rest
        .api(
            "expiry",
            KEY_A,
            json!({"symbol": "NIFTY", "exchange": "BFO", "instrumenttype": "options"}),
        )
        .await;
    assert_eq!(status, 404);
    sim.stop().await;
}

#[actix_web::test]
async fn optionsymbol_and_optionchain_resolve_strikes_around_the_underlying() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.set_price("NSE_INDEX", "NIFTY", 25_912.0).await;
    let expiry = nearest_expiry(&rest, "NIFTY", "NFO").await;
    let resolve = |offset: &str, option_type: &str| json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry_date": expiry, "offset": offset, "option_type": option_type});
    let (status, atm) = rest.api("optionsymbol", KEY_A, resolve("ATM", "CE")).await;
    assert_eq!(status, 200, "{atm}");
    assert_eq!(atm["symbol"], format!("NIFTY{expiry}25900CE"));
    assert_eq!(atm["exchange"], "NFO");
    assert_eq!(atm["lotsize"], 65);
    assert_eq!(atm["freeze_qty"], 1800);
    assert_eq!(atm["underlying_ltp"], 25_912.0);
    assert!(atm["tick_size"].is_number());
    let (_, itm) = rest.api("optionsymbol", KEY_A, resolve("ITM2", "CE")).await;
    assert_eq!(itm["symbol"], format!("NIFTY{expiry}25800CE"));
    let (_, itm) = rest.api("optionsymbol", KEY_A, resolve("itm2", "pe")).await;
    assert_eq!(itm["symbol"], format!("NIFTY{expiry}26000PE"));
    let (status, _) = rest
        .api("optionsymbol", KEY_A, resolve("OTM50", "CE"))
        .await;
    assert_eq!(status, 200);
    // Beyond the listed strikes.
    rest.set_price("NSE_INDEX", "NIFTY", 28_500.0).await;
    let (status, missing) = rest
        .api("optionsymbol", KEY_A, resolve("OTM50", "CE"))
        .await;
    assert_eq!(status, 404, "{missing}");
    rest.set_price("NSE_INDEX", "NIFTY", 25_912.0).await;
    // Expiry embedded in the underlying.
    let (status, embedded) = rest
        .api("optionsymbol", KEY_A, json!({"underlying": format!("NIFTY{expiry}FUT"), "exchange": "NFO", "offset": "ATM", "option_type": "CE"}))
        .await;
    assert_eq!(status, 200, "{embedded}");
    assert_eq!(embedded["symbol"], atm["symbol"]);
    let (status, _) = rest
        .api("optionsymbol", KEY_A, json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry_date": "01JAN20", "offset": "ATM", "option_type": "CE"}))
        .await;
    assert_eq!(status, 404);

    let (status, chain) = rest
        .api("optionchain", KEY_A, json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry_date": expiry, "strike_count": 2}))
        .await;
    assert_eq!(status, 200, "{chain}");
    for field in [
        "underlying",
        "underlying_symbol",
        "underlying_exchange",
        "underlying_ltp",
        "underlying_prev_close",
        "expiry_date",
        "expiry_ts",
        "server_ts",
        "atm_strike",
        "quotes_included",
        "greeks_included",
        "forward_price",
    ] {
        assert!(chain.get(field).is_some(), "{field}");
    }
    assert_eq!(chain["atm_strike"], 25_900.0);
    assert_eq!(chain["underlying_exchange"], "NSE_INDEX");
    assert_eq!(chain["greeks_included"], false);
    let rows = chain["chain"].as_array().unwrap();
    let strikes: Vec<f64> = rows.iter().map(|r| r["strike"].as_f64().unwrap()).collect();
    assert_eq!(strikes, [25_800.0, 25_850.0, 25_900.0, 25_950.0, 26_000.0]);
    assert_eq!(rows[0]["ce"]["label"], "ITM2");
    assert_eq!(rows[0]["pe"]["label"], "OTM2");
    assert_eq!(rows[2]["ce"]["label"], "ATM");
    assert_eq!(rows[4]["ce"]["label"], "OTM2");
    let leg = &rows[2]["ce"];
    for field in [
        "symbol",
        "ltp",
        "bid",
        "ask",
        "bid_qty",
        "ask_qty",
        "open",
        "high",
        "low",
        "prev_close",
        "volume",
        "oi",
        "lotsize",
        "tick_size",
    ] {
        assert!(leg.get(field).is_some(), "{field}");
    }
    assert!(leg.get("delta").is_none());
    // Calls get cheaper with the strike, puts dearer.
    let price = |row: &Value, side: &str| row[side]["ltp"].as_f64().unwrap();
    assert!(price(&rows[0], "ce") > price(&rows[4], "ce"));
    assert!(price(&rows[0], "pe") < price(&rows[4], "pe"));

    let (_, greeks) = rest
        .api("optionchain", KEY_A, json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry_date": expiry, "strike_count": 1, "with_greeks": true}))
        .await;
    assert_eq!(greeks["greeks_included"], true);
    let ce = &greeks["chain"][1]["ce"];
    let pe = &greeks["chain"][1]["pe"];
    let delta = ce["delta"].as_f64().unwrap();
    assert!(delta > 0.3 && delta < 0.7, "{delta}");
    assert!(pe["delta"].as_f64().unwrap() < 0.0);
    for field in ["implied_volatility", "gamma", "theta", "vega"] {
        assert!(ce[field].is_number(), "{field}");
    }
    // The whole chain when strike_count is omitted: every listed strike, ATM ± 75.
    let (_, full) = rest
        .api("optionchain", KEY_A, json!({"underlying": "BANKNIFTY", "exchange": "NSE_INDEX", "expiry_date": nearest_expiry(&rest, "BANKNIFTY", "NFO").await}))
        .await;
    assert_eq!(full["chain"].as_array().unwrap().len(), 151);
    sim.stop().await;
}

/// The first NIFTY expiry the gateway lists, and the status of its option chain with greeks.
async fn first_listed_expiry(rest: &Rest) -> (String, u16, Value) {
    let (status, body) = rest
        .api(
            "expiry",
            KEY_A,
            json!({"symbol": "NIFTY", "exchange": "NFO", "instrumenttype": "options"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let first = body["data"][0].as_str().unwrap().replace('-', "");
    let (status, chain) = rest
        .api(
            "optionchain",
            KEY_A,
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry_date": first,
                   "strike_count": 1, "with_greeks": true}),
        )
        .await;
    (first, status, chain)
}

#[actix_web::test]
async fn an_expiry_is_gone_from_the_close_of_its_session() {
    // Tuesday 2026-12-01 is a NIFTY expiry; the clock stands one second before the close.
    let ist = |h, m, s| {
        chrono_tz::Asia::Kolkata
            .with_ymd_and_hms(2026, 12, 1, h, m, s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let clock = Arc::new(ManualClock::new(ist(15, 29, 59)));
    let sim = start(SimConfig {
        clock: clock.clone(),
        ..config()
    })
    .await;
    let rest = Rest::new(sim.rest_url());
    // The underlying exactly at a strike: the at-the-money call's delta is one half even a
    // second before expiry.
    rest.set_price("NSE_INDEX", "NIFTY", 25_900.0).await;
    let (first, status, chain) = first_listed_expiry(&rest).await;
    assert_eq!(first, "01DEC26");
    assert_eq!(status, 200, "{chain}");
    assert_eq!(chain["atm_strike"], 25_900.0);
    let atm = &chain["chain"][1];
    assert_eq!(atm["strike"], 25_900.0);
    let delta = atm["ce"]["delta"].as_f64().unwrap();
    assert!(
        (0.3..0.7).contains(&delta),
        "a live contract's delta: {delta}"
    );
    let symbol_request = json!({"underlying": "NIFTY", "exchange": "NSE_INDEX",
        "expiry_date": "01DEC26", "offset": "ATM", "option_type": "CE"});
    assert_eq!(
        rest.api("optionsymbol", KEY_A, symbol_request.clone())
            .await
            .0,
        200
    );

    // At 15:30 the contract is gone: not listed, no chain, no greeks, no symbol.
    clock.set(ist(15, 30, 0));
    let (first, status, chain) = first_listed_expiry(&rest).await;
    assert_eq!(first, "08DEC26");
    assert_eq!(status, 200, "{chain}");
    let (status, body) = rest
        .api(
            "optionchain",
            KEY_A,
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry_date": "01DEC26",
                   "with_greeks": true}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.get("chain").is_none(), "{body}");
    assert_eq!(rest.api("optionsymbol", KEY_A, symbol_request).await.0, 404);
    sim.stop().await;

    // A gateway started in the evening never lists the day's expiry.
    let evening = start(SimConfig {
        clock: Arc::new(ManualClock::new(ist(22, 30, 0))),
        ..config()
    })
    .await;
    let rest = Rest::new(evening.rest_url());
    let (first, status, _) = first_listed_expiry(&rest).await;
    assert_eq!((first.as_str(), status), ("08DEC26", 200));
    evening.stop().await;
}

#[actix_web::test]
async fn rate_limits_answer_429_per_endpoint() {
    // A minute-long window: every burst below is refused however slowly the requests go out
    // (the moving window itself is unit-tested in the simulator).
    let sim = start(SimConfig {
        rate_limits: RateLimits {
            api_per_s: 3,
            order_per_s: 2,
            smart_order_per_s: 1,
            window: std::time::Duration::from_secs(60),
        },
        ..config()
    })
    .await;
    let rest = Rest::new(sim.rest_url());
    let limited = json!({
        "status": "error",
        "message": "Rate limit exceeded. Please slow down your requests.",
        "retry_after": 60,
    });
    for _ in 0..3 {
        assert_eq!(rest.api("funds", KEY_A, json!({})).await.0, 200);
    }
    let (status, body) = rest.api("funds", KEY_A, json!({})).await;
    assert_eq!((status, body), (429, limited.clone()));
    // Another endpoint has its own window.
    assert_eq!(rest.api("ping", KEY_A, json!({})).await.0, 200);
    for _ in 0..2 {
        place(&rest, KEY_A, order("ITC", "NSE", "BUY", 1)).await;
    }
    let (status, body) = rest
        .api("placeorder", KEY_A, order("ITC", "NSE", "BUY", 1))
        .await;
    assert_eq!((status, body), (429, limited.clone()));
    let smart = json!({"strategy": "t", "exchange": "NSE", "symbol": "ITC", "action": "BUY", "quantity": 0, "position_size": 2});
    assert_eq!(
        rest.api("placesmartorder", KEY_A, smart.clone()).await.0,
        200
    );
    assert_eq!(
        rest.api("placesmartorder", KEY_A, smart).await,
        (429, limited)
    );
    // Limits count per client IP, not per key: the other key is refused on the same endpoint.
    assert_eq!(rest.api("funds", KEY_B, json!({})).await.0, 429);
    sim.stop().await;
}
