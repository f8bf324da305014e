//! `/sim/*` control: stats, orders, price, faults, rate, and stopping the gateway.

use std::time::{Duration, Instant};

use serde_json::json;

use super::client::{
    Event, FeedClient, KEY_A, KEY_B, MASK_A, MASK_B, Rest, WAIT, config, eventually, start,
};

#[actix_web::test]
async fn stats_report_connections_subscriptions_orders_and_ticks() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let stats = rest.stats().await;
    assert_eq!(stats["feed"]["connections"][MASK_A], 0);
    assert_eq!(stats["feed"]["connections"][MASK_B], 0);
    assert_eq!(stats["feed"]["total_connections"], 0);
    assert_eq!(stats["subscriptions"], json!([]));
    assert_eq!(stats["orders"]["total"], 0);
    assert_eq!(stats["ticks_sent"], 0);
    let text = stats.to_string();
    assert!(
        !text.contains(KEY_A) && !text.contains(KEY_B),
        "keys are masked: {text}"
    );

    let mut a = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    let _pending = FeedClient::connect(&sim.ws_url()).await.unwrap();
    a.request(&json!({"action": "subscribe", "symbols": [{"symbol": "WIPRO", "exchange": "NSE"}, {"symbol": "ITC", "exchange": "NSE"}], "mode": 1}))
        .await
        .unwrap();
    a.request(&json!({"action": "subscribe", "symbol": "ITC", "exchange": "NSE", "mode": 3}))
        .await
        .unwrap();
    rest.set_price("NSE", "ITC", 400.0).await;
    a.next_tick().await.unwrap();
    rest.api(
        "placeorder",
        KEY_B,
        json!({"strategy": "s", "exchange": "NSE", "symbol": "ITC", "action": "BUY", "quantity": 1}),
    )
    .await;

    let rest_ref = &rest;
    let stats = eventually(WAIT, "both connections to register", || async move {
        let stats = rest_ref.stats().await;
        (stats["feed"]["total_connections"] == 2).then_some(stats)
    })
    .await;
    assert_eq!(stats["feed"]["connections"][MASK_A], 1);
    assert_eq!(
        stats["subscriptions"],
        json!([
            {"exchange": "NSE", "symbol": "ITC", "mode": 1, "clients": 1},
            {"exchange": "NSE", "symbol": "ITC", "mode": 3, "clients": 1},
            {"exchange": "NSE", "symbol": "WIPRO", "mode": 1, "clients": 1},
        ])
    );
    assert_eq!(stats["orders"]["total"], 1);
    assert_eq!(stats["orders"]["by_key"][MASK_B], 1);
    assert_eq!(stats["orders"]["by_key"][MASK_A], 0);
    assert_eq!(stats["ticks_sent"], 1);
    sim.stop().await;
}

#[actix_web::test]
async fn price_control_sets_prices_and_validates_input() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let (status, body) = rest
        .post(
            "/sim/price",
            &json!({"exchange": "NSE", "symbol": "HCLTECH", "ltp": 1612.35}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["ltp"], 1612.35);
    let (_, quote) = rest
        .api(
            "quotes",
            KEY_A,
            json!({"symbol": "HCLTECH", "exchange": "NSE"}),
        )
        .await;
    assert_eq!(quote["data"]["ltp"], 1612.35);
    assert!(quote["data"]["high"].as_f64().unwrap() >= 1612.35);

    let (status, _) = rest
        .post(
            "/sim/price",
            &json!({"exchange": "NSE", "symbol": "NOPE", "ltp": 10}),
        )
        .await;
    assert_eq!(status, 404);
    for bad in [
        json!({"exchange": "NSE", "symbol": "HCLTECH", "ltp": "abc"}),
        json!({"exchange": "NSE", "symbol": "HCLTECH"}),
        json!({"exchange": "NSE", "symbol": "HCLTECH", "ltp": -5}),
        json!({"symbol": "HCLTECH", "ltp": 5}),
        json!({"exchange": "NSE", "symbol": "HCLTECH", "ltp": 5, "extra": 1}),
    ] {
        let (status, body) = rest.post("/sim/price", &bad).await;
        assert_eq!(status, 400, "{bad} → {body}");
    }
    let (status, _) = rest.post_raw("/sim/price", "[]").await;
    assert_eq!(status, 400);

    // An option keeps a set price until its underlying moves.
    let option =
        super::feed::option_symbol(&rest, ("SENSEX", "BSE_INDEX", "BFO"), "ATM", "CE").await;
    rest.set_price("BFO", &option, 4321.0).await;
    let request = json!({"symbol": option, "exchange": "BFO"});
    let (_, quote) = rest.api("quotes", KEY_A, request.clone()).await;
    assert_eq!(quote["data"]["ltp"], 4321.0);
    rest.set_price("BSE_INDEX", "SENSEX", 84_650.0).await;
    let (_, quote) = rest.api("quotes", KEY_A, request).await;
    assert_ne!(quote["data"]["ltp"], 4321.0);
    sim.stop().await;
}

#[actix_web::test]
async fn drop_connections_closes_feed_sockets_for_one_key_or_all() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let mut a = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    let mut b = FeedClient::authenticated(&sim.ws_url(), KEY_B)
        .await
        .unwrap();
    rest.fault(json!({"drop_connections": true, "api_key": KEY_A}))
        .await;
    a.closed().await.unwrap();
    assert!(b.drain_until_pong().await.unwrap().is_empty());
    let rest_ref = &rest;
    eventually(WAIT, "A's connection to be released", || async move {
        (rest_ref.stats().await["feed"]["connections"][MASK_A] == 0).then_some(())
    })
    .await;
    // The dropped key may reconnect at once.
    let _again = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    rest.fault(json!({"drop_connections": true})).await;
    b.closed().await.unwrap();
    eventually(WAIT, "every connection to be gone", || async move {
        (rest_ref.stats().await["feed"]["total_connections"] == 0).then_some(())
    })
    .await;
    sim.stop().await;
}

#[actix_web::test]
async fn refuse_auth_fails_feed_authentication_and_rest_calls_for_a_while() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    // Long enough that the refusal is still on however slowly the checks below run.
    rest.fault(json!({"refuse_auth_s": 60, "api_key": KEY_A}))
        .await;
    let mut feed = FeedClient::connect(&sim.ws_url()).await.unwrap();
    let reply = feed
        .request(&json!({"action": "authenticate", "api_key": KEY_A}))
        .await
        .unwrap();
    assert_eq!(
        reply,
        json!({"status": "error", "code": "AUTHENTICATION_ERROR", "message": "Invalid API key"})
    );
    let (status, body) = rest.api("ping", KEY_A, json!({})).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("Invalid openalgo apikey"))
    );
    // The other key is not affected.
    assert_eq!(rest.api("ping", KEY_B, json!({})).await.0, 200);

    // A shorter refusal replaces it and ends by itself.
    rest.fault(json!({"refuse_auth_s": 0.5, "api_key": KEY_A}))
        .await;
    let rest_ref = &rest;
    eventually(WAIT, "REST to accept the key again", || async move {
        (rest_ref.api("ping", KEY_A, json!({})).await.0 == 200).then_some(())
    })
    .await;
    let reply = feed
        .request(&json!({"action": "authenticate", "api_key": KEY_A}))
        .await
        .unwrap();
    assert_eq!(reply["status"], "success");

    // Global scope, and 0 clears it.
    rest.fault(json!({"refuse_auth_s": 60})).await;
    assert_eq!(rest.api("ping", KEY_B, json!({})).await.0, 403);
    rest.fault(json!({"refuse_auth_s": 0})).await;
    assert_eq!(rest.api("ping", KEY_B, json!({})).await.0, 200);
    sim.stop().await;
}

#[actix_web::test]
async fn pause_ticks_silences_market_data_but_not_the_socket() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let mut feed = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    let mut other = FeedClient::authenticated(&sim.ws_url(), KEY_B)
        .await
        .unwrap();
    for client in [&mut feed, &mut other] {
        client
            .request(
                &json!({"action": "subscribe", "symbol": "TITAN", "exchange": "NSE", "mode": 1}),
            )
            .await
            .unwrap();
    }
    rest.fault(json!({"pause_ticks_s": 30, "api_key": KEY_A}))
        .await;
    rest.set_price("NSE", "TITAN", 3800.0).await;
    assert!(feed.drain_until_pong().await.unwrap().is_empty());
    assert_eq!(other.drain_until_pong().await.unwrap().len(), 1);

    rest.fault(json!({"pause_ticks_s": 30})).await;
    rest.set_price("NSE", "TITAN", 3801.0).await;
    assert!(other.drain_until_pong().await.unwrap().is_empty());
    // The price still moved.
    let (_, quote) = rest
        .api(
            "quotes",
            KEY_B,
            json!({"symbol": "TITAN", "exchange": "NSE"}),
        )
        .await;
    assert_eq!(quote["data"]["ltp"], 3801.0);

    rest.fault(json!({"pause_ticks_s": 0})).await;
    rest.fault(json!({"pause_ticks_s": 0, "api_key": KEY_A}))
        .await;
    rest.set_price("NSE", "TITAN", 3802.0).await;
    assert_eq!(feed.next_tick().await.unwrap()["data"]["ltp"], 3802.0);
    assert_eq!(other.next_tick().await.unwrap()["data"]["ltp"], 3802.0);
    sim.stop().await;
}

#[actix_web::test]
async fn latency_delays_rest_responses_until_cleared() {
    const LATENCY: Duration = Duration::from_millis(1500);
    /// Calls `endpoint` with `key`; answers the status and when the answer came.
    async fn timed(rest: &Rest, endpoint: &str, key: &str) -> (u16, Instant) {
        let (status, _) = rest.api(endpoint, key, json!({})).await;
        (status, Instant::now())
    }
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.fault(json!({"latency_ms": LATENCY.as_millis() as u64, "api_key": KEY_A}))
        .await;
    // Sent together: the delayed key's answer comes after the other key's and no sooner than
    // the latency (ordering and a lower bound, which a slow machine cannot break).
    let started = Instant::now();
    let ((a, a_at), (b, b_at)) =
        futures_util::join!(timed(&rest, "ping", KEY_A), timed(&rest, "ping", KEY_B));
    assert_eq!((a, b), (200, 200));
    assert!(a_at - started >= LATENCY);
    assert!(b_at < a_at, "the other key is not delayed");

    // Service-wide latency delays every key; clearing it ends the delay.
    rest.fault(json!({"latency_ms": 0, "api_key": KEY_A})).await;
    rest.fault(json!({"latency_ms": LATENCY.as_millis() as u64}))
        .await;
    let started = Instant::now();
    let (status, at) = timed(&rest, "funds", KEY_B).await;
    assert_eq!(status, 200);
    assert!(at - started >= LATENCY);
    rest.fault(json!({"latency_ms": 0})).await;
    let started = Instant::now();
    let ((a, a_at), ()) =
        futures_util::join!(timed(&rest, "funds", KEY_A), actix_rt::time::sleep(LATENCY));
    assert_eq!(a, 200);
    assert!(
        a_at - started < LATENCY,
        "answered before the delay would have ended"
    );
    sim.stop().await;
}

#[actix_web::test]
async fn malformed_frames_are_sent_to_every_connected_client() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    let mut feed = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    feed.request(&json!({"action": "subscribe", "symbol": "LT", "exchange": "NSE", "mode": 1}))
        .await
        .unwrap();
    let mut bystander = FeedClient::authenticated(&sim.ws_url(), KEY_B)
        .await
        .unwrap();
    rest.fault(json!({"malformed_frames": 4, "api_key": KEY_A}))
        .await;

    match feed.next_event().await.unwrap() {
        Event::Text(text) => assert!(serde_json::from_str::<serde_json::Value>(&text).is_err()),
        other => panic!("expected invalid JSON, got {other:?}"),
    }
    let no_ltp = feed.next_json().await.unwrap();
    assert_eq!(no_ltp["type"], "market_data");
    assert_eq!(no_ltp["symbol"], "LT");
    assert!(no_ltp["data"].get("ltp").is_none());
    let bad_ltp = feed.next_json().await.unwrap();
    assert_eq!(bad_ltp["data"]["ltp"], "abc");
    match feed.next_event().await.unwrap() {
        Event::Binary(bytes) => assert!(std::str::from_utf8(&bytes).is_err(), "{bytes:?}"),
        other => panic!("expected a binary frame, got {other:?}"),
    }
    assert!(bystander.drain_until_pong().await.unwrap().is_empty());

    rest.fault(json!({"malformed_frames": 1})).await;
    assert!(matches!(
        bystander.next_event().await.unwrap(),
        Event::Text(_)
    ));
    // The connection stays usable.
    rest.set_price("NSE", "LT", 4000.0).await;
    assert_eq!(feed.next_tick().await.unwrap()["data"]["ltp"], 4000.0);
    sim.stop().await;
}

#[actix_web::test]
async fn reject_orders_fails_the_next_orders_without_filling() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    rest.fault(json!({"reject_orders": 2, "api_key": KEY_A}))
        .await;
    let buy = json!({"strategy": "s", "exchange": "NSE", "symbol": "MARUTI", "action": "BUY", "quantity": 1});
    let smart = json!({"strategy": "s", "exchange": "NSE", "symbol": "MARUTI", "action": "BUY", "quantity": 0, "position_size": 3});
    let refused = json!({"status": "error", "message": "Order rejected by broker: simulated rejection (reject_orders fault)"});
    let (status, body) = rest.api("placeorder", KEY_A, buy.clone()).await;
    assert_eq!((status, body), (400, refused.clone()));
    let (status, body) = rest.api("placesmartorder", KEY_A, smart).await;
    assert_eq!((status, body), (400, refused));
    // The other key is unaffected, and the third order for this key fills.
    assert_eq!(rest.api("placeorder", KEY_B, buy.clone()).await.0, 200);
    assert_eq!(rest.api("placeorder", KEY_A, buy).await.0, 200);

    let (_, book) = rest.api("positionbook", KEY_A, json!({})).await;
    assert_eq!(book["data"][0]["quantity"], 1);
    let (_, orders) = rest.api("orderbook", KEY_A, json!({})).await;
    assert_eq!(orders["data"]["orders"].as_array().unwrap().len(), 1);
    let (_, log) = rest.get("/sim/orders").await;
    let statuses: Vec<(&str, &str)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["key"].as_str().unwrap(), o["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            (MASK_A, "rejected"),
            (MASK_A, "rejected"),
            (MASK_B, "complete"),
            (MASK_A, "complete")
        ]
    );
    sim.stop().await;
}

#[actix_web::test]
async fn control_requests_are_validated() {
    let sim = start(config()).await;
    let rest = Rest::new(sim.rest_url());
    for bad in [
        json!({"explode": true}),
        json!({"latency_ms": -1}),
        json!({"latency_ms": "5"}),
        json!({"reject_orders": 1.5}),
        json!({"drop_connections": "yes"}),
        json!({"pause_ticks_s": 1, "api_key": "unknown-key"}),
    ] {
        let (status, body) = rest.post("/sim/fault", &bad).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_eq!(body["status"], "error");
    }
    for bad in [
        json!({"ticks_per_s": -1}),
        json!({"ticks_per_s": "fast"}),
        json!({"rate": 5}),
        json!({}),
    ] {
        let (status, _) = rest.post("/sim/rate", &bad).await;
        assert_eq!(status, 400, "{bad}");
    }
    let (status, body) = rest.post("/sim/rate", &json!({"ticks_per_s": 1500})).await;
    assert_eq!(status, 200);
    assert_eq!(body["ticks_per_s"], 1500.0);
    assert_eq!(rest.stats().await["ticks_per_s"], 1500.0);
    sim.stop().await;
}

#[actix_web::test]
async fn stopping_the_simulator_closes_feeds_and_the_rest_port() {
    let sim = start(config()).await;
    let mut feed = FeedClient::authenticated(&sim.ws_url(), KEY_A)
        .await
        .unwrap();
    let (ws_url, rest_url) = (sim.ws_url(), sim.rest_url());
    sim.stop().await;
    feed.closed().await.unwrap();
    assert!(FeedClient::connect(&ws_url).await.is_err());
    let refused = awc::Client::new()
        .post(format!("{rest_url}/api/v1/ping"))
        .send_json(&json!({"apikey": KEY_A}))
        .await;
    assert!(refused.is_err());
}
