//! Feed conformance: docs/openalgo.md §2 message shapes, fan-out, reference counting, limits.

use std::time::Duration;

use awc::ws::CloseCode;
use serde_json::{Value, json};
use simulator::SimConfig;

use super::client::{
    Event, FeedClient, KEY_A, KEY_B, MASK_A, Rest, WAIT, config, eventually, start,
};

fn is_error(reply: &Value, code: &str, message: &str) {
    assert_eq!(
        reply,
        &json!({"status": "error", "code": code, "message": message}),
        "error replies are exactly {{status, code, message}}"
    );
}

#[actix_web::test]
async fn authentication_and_control_messages_answer_in_the_gateway_shapes() {
    let sim = start(config()).await;
    let mut feed = FeedClient::connect(&sim.ws_url()).await.unwrap();

    // Works before authentication, echoing only what was sent.
    let pong = feed
        .request(&json!({"action": "ping", "timestamp": 1234, "_pingId": "p1"}))
        .await
        .unwrap();
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["status"], "success");
    assert_eq!(pong["client_timestamp"], 1234);
    assert_eq!(pong["_pingId"], "p1");
    assert!(pong["server_timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    let bare = feed.request(&json!({"type": "ping"})).await.unwrap();
    let mut keys: Vec<&String> = bare.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["server_timestamp", "status", "type"]);

    let brokers = feed
        .request(&json!({"action": "get_supported_brokers"}))
        .await
        .unwrap();
    assert_eq!(brokers["type"], "supported_brokers");
    assert_eq!(brokers["status"], "success");
    assert_eq!(
        brokers["count"],
        brokers["brokers"].as_array().unwrap().len()
    );

    for needs_auth in [
        json!({"action": "subscribe", "symbol": "RELIANCE", "exchange": "NSE"}),
        json!({"action": "unsubscribe", "symbol": "RELIANCE", "exchange": "NSE"}),
        json!({"action": "unsubscribe_all"}),
        json!({"action": "get_broker_info"}),
        json!({"action": "subscribe_orders"}),
    ] {
        let reply = feed.request(&needs_auth).await.unwrap();
        is_error(&reply, "NOT_AUTHENTICATED", "You must authenticate first");
    }

    let reply = feed
        .request(&json!({"action": "authenticate"}))
        .await
        .unwrap();
    is_error(&reply, "AUTHENTICATION_ERROR", "API key is required");
    let reply = feed
        .request(&json!({"action": "authenticate", "api_key": ""}))
        .await
        .unwrap();
    is_error(&reply, "AUTHENTICATION_ERROR", "API key is required");
    let reply = feed
        .request(&json!({"action": "auth", "api_key": "wrong-key"}))
        .await
        .unwrap();
    is_error(&reply, "AUTHENTICATION_ERROR", "Invalid API key");

    // `type` instead of `action`, `apikey` instead of `api_key`.
    let auth = feed
        .request(&json!({"type": "auth", "apikey": KEY_A}))
        .await
        .unwrap();
    assert_eq!(auth["type"], "auth");
    assert_eq!(auth["status"], "success");
    assert_eq!(auth["message"], "Authentication successful");
    assert!(auth["broker"].is_string());
    assert!(auth["user_id"].is_string());
    assert_eq!(
        auth["supported_features"],
        json!({"ltp": true, "quote": true, "depth": true})
    );

    let info = feed
        .request(&json!({"action": "get_broker_info"}))
        .await
        .unwrap();
    assert_eq!(info["type"], "broker_info");
    assert_eq!(info["status"], "success");
    assert_eq!(info["broker"], auth["broker"]);
    assert_eq!(info["user_id"], auth["user_id"]);
    assert!(info["adapter_status"].is_string());

    let stats = Rest::new(sim.rest_url()).stats().await;
    assert_eq!(stats["feed"]["auth_attempts"], 4);
    assert_eq!(stats["feed"]["connections"][MASK_A], 1);
    sim.stop().await;
}

#[actix_web::test]
async fn bad_frames_get_error_replies_and_never_close_the_socket() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let mut feed = FeedClient::connect(&sim.ws_url()).await.unwrap();

    feed.send_text("{not json").await.unwrap();
    is_error(
        &feed.next_json().await.unwrap(),
        "INVALID_JSON",
        "Invalid JSON message",
    );
    feed.send_text("[1, 2]").await.unwrap();
    is_error(
        &feed.next_json().await.unwrap(),
        "INVALID_JSON",
        "Invalid JSON message",
    );
    feed.send_binary(&[0xff, 0xfe, 0x00]).await.unwrap();
    is_error(
        &feed.next_json().await.unwrap(),
        "INVALID_JSON",
        "Invalid JSON message",
    );
    let reply = feed.request(&json!({"action": "dance"})).await.unwrap();
    is_error(&reply, "INVALID_ACTION", "Invalid action: dance");
    let reply = feed.request(&json!({"symbol": "RELIANCE"})).await.unwrap();
    is_error(&reply, "INVALID_ACTION", "Invalid action: None");

    // Still open and answering.
    let auth = feed
        .request(&json!({"action": "authenticate", "api_key": KEY_A}))
        .await
        .unwrap();
    assert_eq!(auth["status"], "success");
    let stats = rest.stats().await;
    assert_eq!(stats["feed"]["malformed_in"], 5);
    sim.stop().await;
}

#[actix_web::test]
async fn subscribe_accepts_both_forms_and_reports_each_symbol() {
    let sim = start(config()).await;
    let mut feed = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();

    // Single-symbol form, integer mode echoed as its label.
    let ack = feed
        .request(
            &json!({"action": "subscribe", "symbol": "RELIANCE", "exchange": "NSE", "mode": 1}),
        )
        .await
        .unwrap();
    assert_eq!(ack["type"], "subscribe");
    assert_eq!(ack["status"], "success");
    assert_eq!(ack["message"], "Subscription processing complete");
    assert!(ack.get("request_id").is_none());
    assert_eq!(
        ack["subscriptions"],
        json!([{"symbol": "RELIANCE", "exchange": "NSE", "status": "success", "mode": "LTP", "depth": 5, "broker": ack["broker"]}])
    );

    // Batch form with a case-insensitive string mode, an unknown symbol, an entry
    // without an exchange (skipped) and a request id.
    let ack = feed
        .request(&json!({
            "action": "subscribe",
            "symbols": [
                {"symbol": "INFY", "exchange": "NSE"},
                {"symbol": "NIFTY", "exchange": "NSE_INDEX"},
                {"symbol": "NOPE", "exchange": "NSE"},
                {"symbol": "TCS"},
            ],
            "mode": "dEpTh",
            "request_id": "req-7",
        }))
        .await
        .unwrap();
    assert_eq!(ack["status"], "partial");
    assert_eq!(ack["request_id"], "req-7");
    let subs = ack["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 3);
    assert_eq!(subs[0]["mode"], "Depth");
    assert_eq!(subs[1]["symbol"], "NIFTY");
    assert_eq!(subs[1]["status"], "success");
    assert_eq!(subs[2]["status"], "error");
    assert_eq!(subs[2]["message"], "Symbol NOPE not found for exchange NSE");

    // Mode defaults to Quote.
    let ack = feed
        .request(
            &json!({"action": "subscribe", "symbols": [{"symbol": "SBIN", "exchange": "NSE"}]}),
        )
        .await
        .unwrap();
    assert_eq!(ack["subscriptions"][0]["mode"], "Quote");

    // All failed is still "partial", never "error".
    let ack = feed
        .request(&json!({"action": "subscribe", "symbols": [{"symbol": "X", "exchange": "NSE"}]}))
        .await
        .unwrap();
    assert_eq!(ack["status"], "partial");

    for (mode, message) in [
        (
            json!(4),
            "Invalid mode 4; expected 1 (LTP), 2 (Quote), or 3 (Depth)",
        ),
        (
            json!("full"),
            "Invalid mode 'full'; expected 'LTP', 'Quote', or 'Depth' (case-insensitive)",
        ),
    ] {
        let reply = feed
            .request(
                &json!({"action": "subscribe", "symbol": "INFY", "exchange": "NSE", "mode": mode}),
            )
            .await
            .unwrap();
        is_error(&reply, "INVALID_MODE", message);
    }
    for no_symbols in [
        json!({"action": "subscribe", "mode": 1}),
        json!({"action": "subscribe", "symbols": []}),
        json!({"action": "subscribe", "instruments": [{"symbol": "INFY", "exchange": "NSE"}]}),
    ] {
        let reply = feed.request(&no_symbols).await.unwrap();
        is_error(
            &reply,
            "INVALID_PARAMETERS",
            "At least one symbol must be specified",
        );
    }

    let rest = Rest::new(sim.rest_url());
    assert_eq!(rest.holders("NSE", "RELIANCE").await, vec![(1, 1)]);
    assert_eq!(rest.holders("NSE", "INFY").await, vec![(3, 1)]);
    assert_eq!(rest.holders("NSE_INDEX", "NIFTY").await, vec![(3, 1)]);
    assert_eq!(rest.holders("NSE", "SBIN").await, vec![(2, 1)]);
    assert!(rest.holders("NSE", "TCS").await.is_empty());
    sim.stop().await;
}

fn data_keys(tick: &Value) -> Vec<String> {
    let mut keys: Vec<String> = tick["data"].as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[actix_web::test]
async fn market_data_carries_the_reference_fields_for_each_mode() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let mut ltp = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    let mut deep = FeedClient::authenticated(&sim.ws_url(), KEY_B)
        .await
        .unwrap();

    ltp.request(
        &json!({"action": "subscribe", "symbol": "RELIANCE", "exchange": "NSE", "mode": 1}),
    )
    .await
    .unwrap();
    rest.set_price("NSE", "RELIANCE", 1501.25).await;
    let tick = ltp.next_tick().await.unwrap();
    assert_eq!(tick["symbol"], "RELIANCE");
    assert_eq!(tick["exchange"], "NSE");
    assert_eq!(tick["mode"], 1);
    assert!(tick["broker"].is_string());
    assert_eq!(
        data_keys(&tick),
        [
            "exchange",
            "ltp",
            "ltt",
            "mode",
            "sim_sent_us",
            "symbol",
            "timestamp"
        ]
    );
    assert_eq!(tick["data"]["ltp"], 1501.25);
    let sent = tick["data"]["sim_sent_us"].as_i64().unwrap();
    let now_us = chrono::Utc::now().timestamp_micros();
    // Epoch microseconds of the send, not milliseconds or a constant: at most a minute old.
    assert!(
        sent <= now_us && now_us - sent < 60_000_000,
        "sim_sent_us {sent} vs now {now_us}"
    );

    ltp.request(
        &json!({"action": "subscribe", "symbol": "INFY", "exchange": "NSE", "mode": "Quote"}),
    )
    .await
    .unwrap();
    rest.set_price("NSE", "INFY", 1600.0).await;
    let tick = ltp.next_tick().await.unwrap();
    assert_eq!(tick["mode"], 2);
    for field in [
        "ltp",
        "ltt",
        "volume",
        "open",
        "high",
        "low",
        "close",
        "last_trade_quantity",
        "average_price",
        "total_buy_quantity",
        "total_sell_quantity",
        "bid",
        "ask",
    ] {
        assert!(tick["data"].get(field).is_some(), "quote field {field}");
    }
    assert!(tick["data"].get("depth").is_none());
    assert!(tick["data"].get("oi").is_none(), "oi is for options");

    deep.request(&json!({"action": "subscribe", "symbol": "TCS", "exchange": "NSE", "mode": 3}))
        .await
        .unwrap();
    rest.set_price("NSE", "TCS", 3000.0).await;
    let tick = deep.next_tick().await.unwrap();
    assert_eq!(tick["mode"], 3);
    for field in [
        "last_quantity",
        "oi",
        "upper_circuit",
        "lower_circuit",
        "volume",
        "close",
    ] {
        assert!(tick["data"].get(field).is_some(), "depth field {field}");
    }
    for side in ["buy", "sell"] {
        let levels = tick["data"]["depth"][side].as_array().unwrap();
        assert_eq!(levels.len(), 5);
        for level in levels {
            assert!(
                level["price"].is_number()
                    && level["quantity"].is_number()
                    && level["orders"].is_number()
            );
        }
    }

    // Options carry OI in Quote mode.
    let option = option_symbol(&rest, NIFTY, "ATM", "CE").await;
    deep.request(&json!({"action": "subscribe", "symbol": option, "exchange": "NFO", "mode": 2}))
        .await
        .unwrap();
    rest.set_price("NFO", &option, 123.45).await;
    let tick = deep.next_tick().await.unwrap();
    assert_eq!(tick["symbol"], option.as_str());
    assert_eq!(tick["data"]["ltp"], 123.45);
    assert!(tick["data"]["oi"].as_u64().unwrap() > 0);
    sim.stop().await;
}

/// The first expiry of an underlying as `DDMMMYY`.
/// NIFTY: the index's exchange and its options' exchange, for [`option_symbol`].
pub const NIFTY: (&str, &str, &str) = ("NIFTY", "NSE_INDEX", "NFO");

pub async fn nearest_expiry(rest: &Rest, symbol: &str, exchange: &str) -> String {
    let (status, body) = rest
        .api(
            "expiry",
            KEY_A,
            json!({"symbol": symbol, "exchange": exchange, "instrumenttype": "options"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"][0].as_str().unwrap().replace('-', "")
}

/// The symbol of the nearest-expiry option of `underlying` (an index on `index_exchange`,
/// its options on `option_exchange`) at `offset` ("ATM", "OTM1", …) and `option_type`.
pub async fn option_symbol(
    rest: &Rest,
    (underlying, index_exchange, option_exchange): (&str, &str, &str),
    offset: &str,
    option_type: &str,
) -> String {
    let expiry = nearest_expiry(rest, underlying, option_exchange).await;
    let (status, body) = rest
        .api("optionsymbol", KEY_A, json!({"underlying": underlying, "exchange": index_exchange, "expiry_date": expiry, "offset": offset, "option_type": option_type}))
        .await;
    assert_eq!(status, 200, "{body}");
    body["symbol"].as_str().unwrap().to_string()
}

#[actix_web::test]
async fn a_tick_reaches_each_client_once_tagged_with_its_own_mode() {
    let sim = start(SimConfig {
        max_connections_per_key: 2,
        ..config()
    })
    .await;
    let rest = Rest::new(sim.rest_url());
    let mut light = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    let mut heavy = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    let mut other = FeedClient::authenticated(&sim.ws_url(), KEY_B)
        .await
        .unwrap();

    light
        .request(
            &json!({"action": "subscribe", "symbol": "RELIANCE", "exchange": "NSE", "mode": "LTP"}),
        )
        .await
        .unwrap();
    heavy
        .request(&json!({"action": "subscribe", "symbol": "RELIANCE", "exchange": "NSE", "mode": "Depth"}))
        .await
        .unwrap();
    // Two modes on one connection: still one message per tick.
    heavy
        .request(
            &json!({"action": "subscribe", "symbol": "RELIANCE", "exchange": "NSE", "mode": "LTP"}),
        )
        .await
        .unwrap();
    other
        .request(&json!({"action": "subscribe", "symbol": "INFY", "exchange": "NSE", "mode": 1}))
        .await
        .unwrap();

    rest.set_price("NSE", "RELIANCE", 1444.4).await;
    let light_ticks = light.drain_until_pong().await.unwrap();
    let heavy_ticks = heavy.drain_until_pong().await.unwrap();
    let other_ticks = other.drain_until_pong().await.unwrap();
    assert_eq!(light_ticks.len(), 1, "{light_ticks:?}");
    assert_eq!(heavy_ticks.len(), 1, "{heavy_ticks:?}");
    assert!(other_ticks.is_empty(), "{other_ticks:?}");
    // The LTP subscriber gets the Depth payload, tagged with its own mode.
    assert_eq!(light_ticks[0]["mode"], 1);
    assert_eq!(light_ticks[0]["data"]["mode"], 3);
    assert!(light_ticks[0]["data"]["depth"].is_object());
    assert_eq!(heavy_ticks[0]["mode"], 3);
    assert_eq!(light_ticks[0]["data"]["ltp"], 1444.4);

    // When the Depth holder leaves, the tick is built at the highest mode still held.
    heavy.close().await;
    let rest2 = &rest;
    eventually(
        WAIT,
        "the Depth subscription to be released",
        || async move { (rest2.holders("NSE", "RELIANCE").await == vec![(1, 1)]).then_some(()) },
    )
    .await;
    rest.set_price("NSE", "RELIANCE", 1445.0).await;
    let ticks = light.drain_until_pong().await.unwrap();
    assert_eq!(ticks.len(), 1);
    assert_eq!(ticks[0]["mode"], 1);
    assert_eq!(ticks[0]["data"]["mode"], 1);
    assert!(ticks[0]["data"].get("depth").is_none());
    sim.stop().await;
}

#[actix_web::test]
async fn subscriptions_are_reference_counted_per_connection() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let mut a = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    let mut b = FeedClient::authenticated(&sim.ws_url(), KEY_B)
        .await
        .unwrap();
    for client in [&mut a, &mut b] {
        client
            .request(&json!({"action": "subscribe", "symbols": [{"symbol": "RELIANCE", "exchange": "NSE"}], "mode": 1}))
            .await
            .unwrap();
    }
    assert_eq!(rest.holders("NSE", "RELIANCE").await, vec![(1, 2)]);

    // A's unsubscribe must not cut B's feed (#724, #933).
    let ack = a
        .request(&json!({"action": "unsubscribe", "symbol": "RELIANCE", "exchange": "NSE", "mode": 1, "request_id": 9}))
        .await
        .unwrap();
    assert_eq!(ack["type"], "unsubscribe");
    assert_eq!(ack["status"], "success");
    assert_eq!(ack["message"], "Unsubscription processing complete");
    assert_eq!(ack["request_id"], 9);
    assert_eq!(ack["failed"], json!([]));
    assert_eq!(ack["successful"][0]["symbol"], "RELIANCE");
    assert_eq!(ack["successful"][0]["status"], "success");
    assert_eq!(rest.holders("NSE", "RELIANCE").await, vec![(1, 1)]);
    rest.set_price("NSE", "RELIANCE", 1430.0).await;
    assert_eq!(b.drain_until_pong().await.unwrap().len(), 1);
    assert!(a.drain_until_pong().await.unwrap().is_empty());

    // Disconnecting releases what the connection held.
    b.close().await;
    let rest_ref = &rest;
    eventually(WAIT, "B's subscription to be released", || async move {
        rest_ref
            .holders("NSE", "RELIANCE")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    sim.stop().await;
}

#[actix_web::test]
async fn unsubscribe_forms_follow_the_gateway_quirks() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let mut feed = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    feed.request(&json!({"action": "subscribe", "symbols": [{"symbol": "INFY", "exchange": "NSE"}, {"symbol": "TCS", "exchange": "NSE"}], "mode": 2}))
        .await
        .unwrap();
    feed.request(&json!({"action": "subscribe", "symbol": "TCS", "exchange": "NSE", "mode": 1}))
        .await
        .unwrap();

    // Batch form: the top-level mode is ignored; the entry has none, so Quote (2) is released.
    let ack = feed
        .request(&json!({"action": "unsubscribe", "mode": 1, "symbols": [{"symbol": "INFY", "exchange": "NSE"}]}))
        .await
        .unwrap();
    assert_eq!(ack["status"], "success");
    assert!(rest.holders("NSE", "INFY").await.is_empty());

    // Never subscribed still lands in "successful"; a bad entry mode fails that entry.
    let ack = feed
        .request(&json!({"action": "unsubscribe", "symbols": [
            {"symbol": "SBIN", "exchange": "NSE", "mode": 1},
            {"symbol": "TCS", "exchange": "NSE", "mode": "bogus"},
        ]}))
        .await
        .unwrap();
    assert_eq!(ack["status"], "partial");
    assert_eq!(ack["successful"].as_array().unwrap().len(), 1);
    assert_eq!(ack["failed"][0]["symbol"], "TCS");
    assert_eq!(ack["failed"][0]["status"], "error");
    assert!(
        ack["failed"][0]["message"]
            .as_str()
            .unwrap()
            .contains("bogus")
    );
    let ack = feed
        .request(&json!({"action": "unsubscribe", "symbols": [{"symbol": "TCS", "exchange": "NSE", "mode": 7}]}))
        .await
        .unwrap();
    assert_eq!(ack["status"], "error");

    let reply = feed
        .request(&json!({"action": "unsubscribe"}))
        .await
        .unwrap();
    is_error(
        &reply,
        "INVALID_PARAMETERS",
        "Either symbols or unsubscribe_all is required",
    );
    let reply = feed
        .request(&json!({"action": "unsubscribe", "symbol": "TCS", "exchange": "NSE", "mode": 0}))
        .await
        .unwrap();
    assert_eq!(reply["code"], "INVALID_MODE");

    // unsubscribe_all through `type`, one entry per held mode.
    assert_eq!(rest.holders("NSE", "TCS").await, vec![(1, 1), (2, 1)]);
    let ack = feed
        .request(&json!({"type": "unsubscribe_all"}))
        .await
        .unwrap();
    assert_eq!(ack["type"], "unsubscribe");
    assert_eq!(ack["status"], "success");
    assert_eq!(ack["successful"].as_array().unwrap().len(), 2);
    assert!(rest.holders("NSE", "TCS").await.is_empty());
    sim.stop().await;
}

#[actix_web::test]
async fn a_second_connection_for_a_key_is_refused_until_the_first_closes() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let mut first = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    first
        .request(&json!({"action": "subscribe", "symbol": "INFY", "exchange": "NSE", "mode": 1}))
        .await
        .unwrap();

    let mut second = FeedClient::connect(&sim.ws_url()).await.unwrap();
    let reply = second
        .request(&json!({"action": "authenticate", "api_key": KEY_A}))
        .await
        .unwrap();
    is_error(
        &reply,
        "BROKER_CONNECTION_ERROR",
        "Connection Limit Exceeded (429)",
    );
    second.closed().await.unwrap();

    // The other key is unaffected, and so is the first connection.
    let other = FeedClient::authenticated(&sim.ws_url(), KEY_B)
        .await
        .unwrap();
    rest.set_price("NSE", "INFY", 1555.0).await;
    let tick = first.next_tick().await.unwrap();
    assert_eq!(tick["data"]["ltp"], 1555.0);
    let stats = rest.stats().await;
    assert_eq!(stats["feed"]["refused_connections"], 1);
    assert_eq!(stats["feed"]["connections"][MASK_A], 1);

    first.close().await;
    let rest_ref = &rest;
    eventually(WAIT, "the first connection to be gone", || async move {
        (rest_ref.stats().await["feed"]["connections"][MASK_A] == 0).then_some(())
    })
    .await;
    let third = FeedClient::authenticated(&sim.ws_url(), KEY_A).await;
    assert!(third.is_ok(), "{:?}", third.err());
    drop(other);
    sim.stop().await;
}

#[actix_web::test]
async fn unauthenticated_connections_are_closed_with_4401() {
    let sim = start(SimConfig {
        auth_grace: Duration::from_millis(300),
        ..config()
    })
    .await;
    let mut idle = FeedClient::connect(&sim.ws_url()).await.unwrap();
    let mut wrong = FeedClient::connect(&sim.ws_url()).await.unwrap();
    let reply = wrong
        .request(&json!({"action": "authenticate", "api_key": "nope"}))
        .await
        .unwrap();
    assert_eq!(reply["message"], "Invalid API key");
    let mut good = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    for client in [&mut idle, &mut wrong] {
        let reason = client.closed().await.unwrap().expect("a close frame");
        assert_eq!(reason.code, CloseCode::Other(4401));
        assert_eq!(reason.description.as_deref(), Some("auth timeout"));
    }
    // Well past the grace period the authenticated connection still answers.
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert!(good.drain_until_pong().await.unwrap().is_empty());
    sim.stop().await;
}

#[actix_web::test]
async fn the_gateway_pings_and_drops_peers_that_never_answer() {
    let sim = start(SimConfig {
        ping_interval: Duration::from_millis(250),
        ..config()
    })
    .await;
    let mut live = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    let mut deaf = FeedClient::authenticated(&sim.ws_url(), KEY_B)
        .await
        .unwrap();
    deaf.answer_pings = false;
    // Keep reading the live connection (which answers pings as it reads) for six
    // intervals; the deaf one is meanwhile closed by the gateway.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if let Some(event) = live.next_event_within(left).await.unwrap() {
            panic!("unexpected {event:?} on the live connection");
        }
    }
    assert!(live.pings_seen >= 3, "{} pings", live.pings_seen);
    let reason = deaf.closed().await.unwrap().expect("a close frame");
    assert_eq!(reason.code, CloseCode::Error);
    assert!(deaf.pings_seen >= 1);
    assert!(live.drain_until_pong().await.unwrap().is_empty());
    sim.stop().await;
}

#[actix_web::test]
async fn order_updates_reach_only_subscribed_connections_of_that_key() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let mut mine = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    let mut theirs = FeedClient::authenticated(&sim.ws_url(), KEY_B)
        .await
        .unwrap();
    let ack = mine
        .request(&json!({"action": "subscribe_orders"}))
        .await
        .unwrap();
    assert_eq!(
        ack,
        json!({"type": "subscribe_orders", "status": "success", "message": "Subscribed to order updates"})
    );
    theirs
        .request(&json!({"action": "subscribe_orders"}))
        .await
        .unwrap();

    let order = json!({"strategy": "s1", "exchange": "NSE", "symbol": "SBIN", "action": "BUY", "quantity": 5});
    let (status, placed) = rest.api("placeorder", KEY_A, order.clone()).await;
    assert_eq!(status, 200, "{placed}");
    // One update per change: booked open, then filled.
    let booked = mine
        .next_matching("an order update", |v| v["type"] == "order_update")
        .await
        .unwrap();
    assert_eq!(booked["orderid"], placed["orderid"]);
    assert_eq!(booked["order_status"], "open");
    assert_eq!(booked["filled_quantity"], 0);
    assert_eq!(booked["pending_quantity"], 5);
    let update = mine
        .next_matching("an order update", |v| v["type"] == "order_update")
        .await
        .unwrap();
    assert_eq!(update["orderid"], placed["orderid"]);
    assert_eq!(update["symbol"], "SBIN");
    assert_eq!(update["action"], "BUY");
    assert_eq!(update["quantity"], 5);
    assert_eq!(update["order_status"], "complete");
    assert_eq!(update["filled_quantity"], 5);
    assert_eq!(update["pending_quantity"], 0);
    assert_eq!(update["mode"], "live");
    for field in [
        "user_id",
        "broker",
        "price",
        "trigger_price",
        "pricetype",
        "product",
        "average_price",
        "rejection_reason",
    ] {
        assert!(update.get(field).is_some(), "{field}");
    }
    assert!(theirs.drain_until_pong().await.unwrap().is_empty());

    let ack = mine
        .request(&json!({"action": "unsubscribe_orders"}))
        .await
        .unwrap();
    assert_eq!(ack["message"], "Unsubscribed from order updates");
    rest.api("placeorder", KEY_A, order).await;
    assert!(mine.drain_until_pong().await.unwrap().is_empty());
    sim.stop().await;
}

#[actix_web::test]
async fn the_random_walk_ticks_only_subscribed_instruments_at_the_set_rate() {
    let sim = start(SimConfig {
        ticks_per_s: 200.0,
        ..config()
    })
    .await;
    let rest = Rest::new(sim.rest_url());
    let mut feed = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    // No tick can exist before the subscription, so the rate bounds what arrives from here on.
    let started = std::time::Instant::now();
    feed.request(&json!({"action": "subscribe", "symbols": [
        {"symbol": "RELIANCE", "exchange": "NSE"},
        {"symbol": "NIFTY", "exchange": "NSE_INDEX"},
    ], "mode": 1}))
        .await
        .unwrap();
    let mut count = 0u64;
    let mut symbols = std::collections::BTreeSet::new();
    while started.elapsed() < Duration::from_secs(1) {
        let tick = feed.next_tick().await.unwrap();
        symbols.insert(tick["symbol"].as_str().unwrap().to_string());
        count += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // At most the set rate over the time that passed (however slow the machine, the walk never
    // runs ahead of it), and far more than the default 10 a second.
    assert!(
        count as f64 <= 200.0 * elapsed + 2.0,
        "{count} ticks in {elapsed:.2} s at 200/s"
    );
    assert!(count >= 30, "{count} ticks in {elapsed:.2} s at 200/s");
    assert_eq!(
        symbols.into_iter().collect::<Vec<_>>(),
        ["NIFTY", "RELIANCE"]
    );
    assert!(rest.stats().await["ticks_sent"].as_u64().unwrap() >= count);

    let (status, body) = rest.post("/sim/rate", &json!({"ticks_per_s": 0})).await;
    assert_eq!((status, body["ticks_per_s"].as_f64()), (200, Some(0.0)));
    // After the pass in flight, nothing more arrives.
    feed.drain_until_pong().await.unwrap();
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    feed.drain_until_pong().await.unwrap();
    match feed
        .next_event_within(Duration::from_millis(300))
        .await
        .unwrap()
    {
        None => {}
        Some(Event::Json(v)) => panic!("tick after rate 0: {v}"),
        Some(other) => panic!("unexpected {other:?}"),
    }
    sim.stop().await;
}
