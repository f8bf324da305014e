//! On-demand option chains (issue: one ChainSessionActor per viewer), through the HTTP API and
//! `/ws/chain/{id}` against the simulator.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::actors::chain::{ChainDirectoryActor, CloseAllChainSessions, SetChainGateway};
use ::actors::feed::{Feed, GetRegistryStatus, Mode, SetTarget, StartFeed};
use ::clock::{ManualClock, SharedClock};
use actix::Addr;
use actix_web::http::StatusCode;
use awc::ws::{CloseCode, Frame, Message};
use chrono::TimeZone;
use entity::websocket_sessions::{self, CloseReason};
use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt};
use sea_orm::{ActiveModelTrait, Database, DatabaseConnection, EntityTrait, Set};
use serde_json::{Value, json};
use simulator::{SimConfig, Simulator};
use trading_supervisor::configuration::Settings;
use trading_supervisor::startup::Application;

use crate::feed::{FEED_KEY, probe, sim_config, sim_post, start_sim, target, upstream, wait_live};
use crate::helpers::{
    TEST_TOKEN, TestApp, fresh_database, json_body, poll_until, test_clock, test_settings,
};

struct ChainApp {
    app: TestApp,
    feed: Feed,
    chains: Addr<ChainDirectoryActor>,
    sim: Simulator,
}

/// The service with its feed and chain directory pointed at a fresh simulator (what the
/// supervisor does once it has chosen the feed account).
async fn chain_app(adjust: impl FnOnce(&mut Settings)) -> ChainApp {
    chain_app_on(start_sim(0.0).await, test_clock(), adjust).await
}

/// [`chain_app`] against a given simulator, the service's clock at `clock`.
async fn chain_app_on(
    sim: Simulator,
    clock: SharedClock,
    adjust: impl FnOnce(&mut Settings),
) -> ChainApp {
    let database = fresh_database().await;
    let mut settings = test_settings(&database.url);
    adjust(&mut settings);
    let app = Application::build_with_clock(settings, clock)
        .await
        .expect("build application");
    let feed = app.feed().clone();
    let chains = app.chains().clone();
    let port = app.port();
    actix_rt::spawn(app.run_until_stopped());
    feed.streams.do_send(SetTarget(Some(target(&sim))));
    feed.streams.do_send(StartFeed);
    chains.do_send(SetChainGateway {
        rest_url: sim.rest_url(),
        api_key: FEED_KEY.into(),
    });
    wait_live(&feed).await;
    ChainApp {
        app: TestApp {
            address: format!("http://127.0.0.1:{port}"),
            token: TEST_TOKEN.into(),
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
            database,
        },
        feed,
        chains,
        sim,
    }
}

async fn call(req: awc::ClientRequest, body: Option<Value>) -> (StatusCode, Value) {
    let mut resp = match body {
        Some(body) => req.send_json(&body).await,
        None => req.send().await,
    }
    .expect("request");
    let status = resp.status();
    let body = if status == StatusCode::NO_CONTENT {
        Value::Null
    } else {
        json_body(&mut resp).await
    };
    (status, body)
}

impl ChainApp {
    async fn create(&self, body: Value) -> (StatusCode, Value) {
        call(self.app.post("/api/v1/chain-sessions"), Some(body)).await
    }

    async fn open(&self, body: Value) -> Value {
        let (status, created) = self.create(body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body} → {created}");
        created
    }

    async fn snapshot(&self, id: &str) -> (StatusCode, Value) {
        call(self.app.get(&format!("/api/v1/chain-sessions/{id}")), None).await
    }

    async fn heartbeat(&self, id: &str) -> StatusCode {
        call(
            self.app
                .post(&format!("/api/v1/chain-sessions/{id}/heartbeat")),
            None,
        )
        .await
        .0
    }

    async fn delete(&self, id: &str) -> StatusCode {
        let req = self
            .app
            .client
            .delete(self.app.url(&format!("/api/v1/chain-sessions/{id}")))
            .bearer_auth(&self.app.token);
        call(req, None).await.0
    }

    async fn db(&self) -> DatabaseConnection {
        Database::connect(self.app.database.url.as_str())
            .await
            .expect("connect to the test database")
    }

    async fn row(&self, id: &str) -> websocket_sessions::Model {
        websocket_sessions::Entity::find_by_id(id.to_string())
            .one(&self.db().await)
            .await
            .expect("query websocket_sessions")
            .expect("the session has a row")
    }

    fn ws_url(&self, id: &str, token: Option<&str>) -> String {
        let base = self.app.address.replace("http://", "ws://");
        match token {
            Some(t) => format!("{base}/ws/chain/{id}?token={t}"),
            None => format!("{base}/ws/chain/{id}"),
        }
    }

    async fn frames_sent(&self) -> u64 {
        self.feed
            .registry
            .send(GetRegistryStatus)
            .await
            .unwrap()
            .frames_sent
    }
}

type Upstream = BTreeSet<(String, String, u64)>;

/// What the simulator holds: (exchange, symbol, mode).
async fn held(sim: &Simulator) -> Upstream {
    upstream(sim)
        .await
        .into_iter()
        .map(|(e, s, m, _)| (e, s, m))
        .collect()
}

/// What a created chain subscribes: its options and its underlying, at `mode`.
fn chain_keys(created: &Value, mode: u64) -> Upstream {
    let exchange = match created["exchange"].as_str().unwrap() {
        "BSE_INDEX" | "BSE" => "BFO",
        _ => "NFO",
    };
    let mut keys: Upstream = created["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (exchange.to_string(), s.as_str().unwrap().to_string(), mode))
        .collect();
    keys.insert((
        created["underlying_exchange"].as_str().unwrap().to_string(),
        created["underlying_symbol"].as_str().unwrap().to_string(),
        mode,
    ));
    keys
}

async fn wait_held(sim: &Simulator, want: &Upstream, what: &str) {
    poll_until(Duration::from_secs(10), what, || async move {
        (held(sim).await == *want).then_some(())
    })
    .await;
}

async fn sim_expiries(sim: &Simulator, symbol: &str, exchange: &str) -> Vec<String> {
    let mut resp = awc::Client::default()
        .post(format!("{}/api/v1/expiry", sim.rest_url()))
        .send_json(
            &json!({"apikey": FEED_KEY, "symbol": symbol, "exchange": exchange,
                          "instrumenttype": "options"}),
        )
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

fn strikes_of(snapshot: &Value) -> Vec<f64> {
    snapshot["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["strike"].as_f64().unwrap())
        .collect()
}

/// A viewer's socket as the test client sees it.
trait Socket:
    futures_util::Stream<Item = Result<Frame, awc::error::WsProtocolError>>
    + futures_util::Sink<Message, Error = awc::error::WsProtocolError>
    + Unpin
{
}

impl<S> Socket for S where
    S: futures_util::Stream<Item = Result<Frame, awc::error::WsProtocolError>>
        + futures_util::Sink<Message, Error = awc::error::WsProtocolError>
        + Unpin
{
}

/// Reads until a snapshot arrives (answering pings).
async fn next_text(conn: &mut impl Socket) -> Value {
    loop {
        let frame = actix_rt::time::timeout(Duration::from_secs(10), conn.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a valid frame");
        match frame {
            Frame::Text(bytes) => return serde_json::from_slice(&bytes).expect("JSON snapshot"),
            Frame::Ping(p) => conn.send(Message::Pong(p)).await.unwrap(),
            Frame::Close(reason) => panic!("socket closed: {reason:?}"),
            _ => {}
        }
    }
}

/// Reads until a close frame arrives and returns its reason.
async fn next_close(conn: &mut impl Socket, within: Duration) -> awc::ws::CloseReason {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = actix_rt::time::timeout(left, conn.next())
            .await
            .expect("a close frame in time")
            .expect("the socket is open")
            .expect("a valid frame");
        if let Frame::Close(reason) = frame {
            return reason.expect("a close reason");
        }
    }
}

#[actix_web::test]
async fn a_session_subscribes_its_window_and_the_underlying_through_the_registry() {
    let c = &chain_app(|_| {}).await;
    let listed = sim_expiries(&c.sim, "NIFTY", "NFO").await;
    let created = c
        .open(json!({"underlying": "nifty", "exchange": "NSE_INDEX", "strikes": 2}))
        .await;
    assert_eq!(created["underlying"], "NIFTY");
    assert_eq!(created["expiry"], listed[0], "the nearest listed expiry");
    assert_eq!(created["expiries"].as_array().unwrap().len(), 4);
    assert_eq!(
        created["strike_step"], 50.0,
        "derived from the gateway's strikes"
    );
    assert_eq!(created["mode"], 2, "Quote by default");
    let atm = created["atm_strike"].as_f64().unwrap();
    assert_eq!(atm % 50.0, 0.0);
    let expiry = listed[0].replace('-', "");
    let want: Vec<String> = [-2.0, -1.0, 0.0, 1.0, 2.0]
        .iter()
        .flat_map(|k| {
            let strike = atm + k * 50.0;
            ["CE", "PE"].map(|t| format!("NIFTY{expiry}{strike}{t}"))
        })
        .collect();
    assert_eq!(created["symbols"], json!(want));

    wait_held(
        &c.sim,
        &chain_keys(&created, 2),
        "window + underlying upstream",
    )
    .await;
    let stats = crate::feed::sim_stats(&c.sim).await;
    assert_eq!(
        stats["feed"]["total_connections"], 1,
        "chains use the one feed socket"
    );

    let id = created["id"].as_str().unwrap();
    let (status, snap) = c.snapshot(id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(snap["id"], id);
    assert_eq!(snap["exchange"], "NSE_INDEX");
    assert_eq!(snap["expiry"], listed[0]);
    assert!(snap["underlying_ltp"].as_f64().unwrap() > 0.0);
    assert_eq!(
        strikes_of(&snap),
        [-2.0, -1.0, 0.0, 1.0, 2.0].map(|k| atm + k * 50.0)
    );
    for row in snap["rows"].as_array().unwrap() {
        for side in ["ce", "pe"] {
            let leg = &row[side];
            assert!(leg["ltp"].as_f64().unwrap() > 0.0, "{leg}");
            for field in ["bid", "ask", "volume", "oi"] {
                assert!(
                    leg.get(field).is_some(),
                    "{field} present (maybe null): {leg}"
                );
            }
        }
    }

    let row = c.row(id).await;
    assert_eq!(row.underlying, "NIFTY");
    assert_eq!(row.exchange, "NSE_INDEX");
    assert_eq!(row.expiry.as_deref(), Some(listed[0].as_str()));
    assert_eq!((row.strikes, row.mode), (2, 2));
    assert_eq!(row.closed_at, None);

    let (status, list) = call(c.app.get("/api/v1/chain-sessions"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["sessions"][0]["id"], id);
    assert_eq!(list["sessions"][0]["state"], "Running");
    assert_eq!(list["gateway"]["api_key"], "feed…");
    assert!(
        !list.to_string().contains(FEED_KEY),
        "the key is never shown"
    );
}

#[actix_web::test]
async fn a_hundred_viewers_share_each_symbol_and_only_the_last_one_out_unsubscribes() {
    let c = &chain_app(|s| {
        s.option_chain.max_sessions = 101;
        s.option_chain.max_sessions_per_client = 101;
    })
    .await;
    let nifty = json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 2});
    let answers = join_all((0..100).map(|_| c.create(nifty.clone()))).await;
    let viewers: Vec<Value> = answers
        .into_iter()
        .map(|(status, body)| {
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body
        })
        .collect();
    let nifty_keys = chain_keys(&viewers[0], 2);
    assert!(
        viewers.iter().all(|v| chain_keys(v, 2) == nifty_keys),
        "same chain, same window"
    );
    wait_held(&c.sim, &nifty_keys, "one NIFTY window upstream").await;
    assert!(
        upstream(&c.sim)
            .await
            .iter()
            .all(|(_, _, _, clients)| *clients == 1),
        "each symbol subscribed once"
    );
    let registry = c.feed.registry.send(GetRegistryStatus).await.unwrap();
    assert_eq!(registry.symbols, nifty_keys.len());
    assert!(
        registry
            .subscriptions
            .iter()
            .all(|s| s.holders.len() == 100)
    );

    // A viewer of another chain: the union is held.
    let bank = c
        .open(json!({"underlying": "BANKNIFTY", "exchange": "NSE_INDEX", "strikes": 1}))
        .await;
    assert_eq!(bank["strike_step"], 100.0);
    let bank_keys = chain_keys(&bank, 2);
    let union: Upstream = nifty_keys.union(&bank_keys).cloned().collect();
    wait_held(&c.sim, &union, "union of both chains").await;

    // A position in one of the chain's options holds that symbol on its own.
    let position = probe();
    let held_symbol = viewers[0]["symbols"][4].as_str().unwrap().to_string();
    c.feed
        .registry
        .send(position.subscribe(&[("NFO", &held_symbol, Mode::Quote)]))
        .await
        .unwrap()
        .unwrap();

    let frames_before = c.frames_sent().await;
    for viewer in &viewers[..99] {
        assert_eq!(
            c.delete(viewer["id"].as_str().unwrap()).await,
            StatusCode::NO_CONTENT
        );
    }
    let registry = c.feed.registry.send(GetRegistryStatus).await.unwrap();
    assert_eq!(
        registry.frames_sent, frames_before,
        "no frame while holders remain"
    );
    assert_eq!(held(&c.sim).await, union);

    assert_eq!(
        c.delete(viewers[99]["id"].as_str().unwrap()).await,
        StatusCode::NO_CONTENT
    );
    let mut left = bank_keys.clone();
    left.insert(("NFO".to_string(), held_symbol, 2));
    wait_held(&c.sim, &left, "NIFTY released except the position's symbol").await;
}

#[actix_web::test]
async fn a_viewer_that_stops_heartbeating_is_gone_after_the_timeout() {
    let c = &chain_app(|s| s.option_chain.session_timeout_s = 3).await;
    let body = json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 1});
    let by_http = c.open(body.clone()).await;
    let by_ws = c.open(body).await;
    let (http_id, ws_id) = (
        by_http["id"].as_str().unwrap().to_string(),
        by_ws["id"].as_str().unwrap().to_string(),
    );
    let (_resp, mut conn) = c
        .app
        .client
        .ws(c.ws_url(&ws_id, Some(TEST_TOKEN)))
        .connect()
        .await
        .unwrap();
    next_text(&mut conn).await;

    // Two lease lengths of heartbeats (HTTP) and plain messages (WebSocket), a dozen per lease.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        assert_eq!(c.heartbeat(&http_id).await, StatusCode::NO_CONTENT);
        conn.send(Message::Text(r#"{"action":"heartbeat"}"#.into()))
            .await
            .unwrap();
        actix_rt::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(c.snapshot(&http_id).await.0, StatusCode::OK);
    assert_eq!(c.snapshot(&ws_id).await.0, StatusCode::OK);
    let row = c.row(&http_id).await;
    assert!(
        row.last_heartbeat_at > row.created_at,
        "heartbeats are recorded"
    );
    assert_eq!(row.closed_at, None);

    // Silence: both leases run out (long before five lease lengths, however slow the machine).
    for id in [&http_id, &ws_id] {
        poll_until(Duration::from_secs(15), "session gone", || async move {
            (c.snapshot(id).await.0 == StatusCode::NOT_FOUND).then_some(())
        })
        .await;
    }
    let close = next_close(&mut conn, Duration::from_secs(5)).await;
    assert_eq!(close.code, CloseCode::Normal);
    assert_eq!(
        close.description.as_deref(),
        Some("chain session closed: timeout")
    );
    wait_held(&c.sim, &Upstream::new(), "everything released").await;
    for id in [&http_id, &ws_id] {
        let row = c.row(id).await;
        assert!(row.closed_at.is_some());
        assert_eq!(row.close_reason, Some(CloseReason::Timeout));
    }
    assert_eq!(c.heartbeat(&http_id).await, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn delete_ends_a_session_and_closing_its_socket_does_not() {
    let c = &chain_app(|_| {}).await;
    let created = c
        .open(json!({"underlying": "SENSEX", "exchange": "BSE_INDEX", "strikes": 1}))
        .await;
    let id = created["id"].as_str().unwrap();
    wait_held(&c.sim, &chain_keys(&created, 2), "SENSEX window upstream").await;

    // A socket that comes and goes leaves the session alone.
    let (_resp, mut conn) = c
        .app
        .client
        .ws(c.ws_url(id, Some(TEST_TOKEN)))
        .connect()
        .await
        .unwrap();
    next_text(&mut conn).await;
    conn.close().await.unwrap();
    drop(conn);
    assert_eq!(c.heartbeat(id).await, StatusCode::NO_CONTENT);
    assert_eq!(c.snapshot(id).await.0, StatusCode::OK);

    let (_resp, mut conn) = c
        .app
        .client
        .ws(c.ws_url(id, Some(TEST_TOKEN)))
        .connect()
        .await
        .unwrap();
    next_text(&mut conn).await;
    assert_eq!(c.delete(id).await, StatusCode::NO_CONTENT);
    let close = next_close(&mut conn, Duration::from_secs(5)).await;
    assert_eq!(
        close.description.as_deref(),
        Some("chain session closed: deleted")
    );
    let row = c.row(id).await;
    assert!(row.closed_at.is_some());
    assert_eq!(row.close_reason, Some(CloseReason::Deleted));
    wait_held(&c.sim, &Upstream::new(), "everything released").await;
    assert_eq!(c.snapshot(id).await.0, StatusCode::NOT_FOUND);
    assert_eq!(c.heartbeat(id).await, StatusCode::NOT_FOUND);
    assert_eq!(c.delete(id).await, StatusCode::NOT_FOUND);
    let resp = c
        .app
        .client
        .ws(c.ws_url(id, Some(TEST_TOKEN)))
        .connect()
        .await;
    assert!(resp.is_err(), "no stream for a deleted session");
}

#[actix_web::test]
async fn the_window_recentres_past_the_hysteresis_and_not_on_small_moves() {
    let c = &chain_app(|_| {}).await;
    let created = c
        .open(json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 2}))
        .await;
    let id = created["id"].as_str().unwrap();
    let atm = created["atm_strike"].as_f64().unwrap();
    let first = chain_keys(&created, 2);
    wait_held(&c.sim, &first, "initial window upstream").await;
    let set_nifty = |ltp: f64| {
        let sim = &c.sim;
        async move {
            sim_post(
                sim,
                "/sim/price",
                json!({"exchange": "NSE_INDEX", "symbol": "NIFTY", "ltp": ltp}),
            )
            .await;
        }
    };
    let wait_underlying = |ltp: f64| async move {
        poll_until(
            Duration::from_secs(10),
            "underlying price seen",
            || async move {
                let (_, snap) = c.snapshot(id).await;
                (snap["underlying_ltp"].as_f64() == Some(ltp)).then_some(snap)
            },
        )
        .await
    };

    // Back and forth within one strike of the centre: the window stays.
    let frames_before = c.frames_sent().await;
    for ltp in [atm + 60.0, atm - 40.0, atm + 70.0, atm - 70.0] {
        set_nifty(ltp).await;
        let snap = wait_underlying(ltp).await;
        assert_eq!(
            strikes_of(&snap),
            [-2.0, -1.0, 0.0, 1.0, 2.0].map(|k| atm + k * 50.0)
        );
        assert_eq!(
            snap["atm_strike"].as_f64().unwrap(),
            ((ltp / 50.0) + 0.5).floor() * 50.0,
            "ATM follows the price"
        );
    }
    assert_eq!(
        c.frames_sent().await,
        frames_before,
        "no subscription change"
    );
    assert_eq!(held(&c.sim).await, first);

    // Three strikes up: the window moves to the new ATM.
    set_nifty(atm + 160.0).await;
    let centre = atm + 150.0;
    let snap = poll_until(
        Duration::from_secs(10),
        "window re-centred",
        || async move {
            let (_, snap) = c.snapshot(id).await;
            (strikes_of(&snap).get(2) == Some(&centre)).then_some(snap)
        },
    )
    .await;
    assert_eq!(
        strikes_of(&snap),
        [-2.0, -1.0, 0.0, 1.0, 2.0].map(|k| centre + k * 50.0)
    );
    let expiry = created["expiry"].as_str().unwrap().replace('-', "");
    let mut want: Upstream = (-2..=2)
        .flat_map(|k| {
            let strike = centre + f64::from(k) * 50.0;
            ["CE", "PE"].map(|t| ("NFO".to_string(), format!("NIFTY{expiry}{strike}{t}"), 2))
        })
        .collect();
    want.insert(("NSE_INDEX".into(), "NIFTY".into(), 2));
    wait_held(&c.sim, &want, "old strikes released, new ones subscribed").await;
    // Strikes in both windows kept their quotes; new ones got prices from the feed or stay null.
    let (_, list) = call(c.app.get("/api/v1/chain-sessions"), None).await;
    assert_eq!(list["sessions"][0]["recentres"], 1);
    assert_eq!(list["sessions"][0]["window_centre"], centre);
}

#[actix_web::test]
async fn a_websocket_viewer_sees_price_changes_at_most_max_push_hz() {
    let c = &chain_app(|s| s.option_chain.max_push_hz = 5.0).await;
    let created = c
        .open(json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 1}))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let atm_ce = created["symbols"][2].as_str().unwrap().to_string();
    wait_held(&c.sim, &chain_keys(&created, 2), "window upstream").await;
    let (_resp, mut conn) = c
        .app
        .client
        .ws(c.ws_url(&id, Some(TEST_TOKEN)))
        .connect()
        .await
        .unwrap();
    let first = next_text(&mut conn).await;
    assert_eq!(first["id"], id.as_str());
    assert_eq!(first["rows"].as_array().unwrap().len(), 3);

    sim_post(
        &c.sim,
        "/sim/price",
        json!({"exchange": "NFO", "symbol": atm_ce, "ltp": 777.7}),
    )
    .await;
    loop {
        let snap = next_text(&mut conn).await;
        if snap["rows"][1]["ce"]["ltp"] == 777.7 {
            assert_eq!(snap["rows"][1]["ce"]["symbol"], atm_ce.as_str());
            break;
        }
    }

    // 200 price changes, one every 10 ms: the viewer gets coalesced snapshots.
    let sim_url = c.sim.rest_url();
    let symbol = atm_ce.clone();
    let start = Instant::now();
    let writer = actix_rt::spawn(async move {
        let client = awc::Client::default();
        for i in 0..200 {
            let _ = client
                .post(format!("{sim_url}/sim/price"))
                .send_json(&json!({"exchange": "NFO", "symbol": symbol,
                                   "ltp": 500.0 + f64::from(i) * 0.05}))
                .await;
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let mut received = 0;
    let mut last_ltp = 0.0;
    let mut deadline = None;
    loop {
        if deadline.is_none() && writer.is_finished() {
            // Drain what the last changes produce.
            deadline = Some(Instant::now() + Duration::from_millis(500));
        }
        let wait = deadline.map_or(Duration::from_millis(50), |d| {
            d.saturating_duration_since(Instant::now())
        });
        match actix_rt::time::timeout(wait, conn.next()).await {
            Ok(Some(frame)) => match frame.unwrap() {
                Frame::Text(bytes) => {
                    let snap: Value = serde_json::from_slice(&bytes).unwrap();
                    last_ltp = snap["rows"][1]["ce"]["ltp"].as_f64().unwrap();
                    received += 1;
                }
                Frame::Ping(p) => conn.send(Message::Pong(p)).await.unwrap(),
                other => panic!("unexpected frame {other:?}"),
            },
            Ok(None) => panic!("the socket closed"),
            Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => break,
            Err(_) => {}
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Snapshots leave at least 1/5 s apart: over the time that really passed, at most five a
    // second, one at the start and one already on its way when counting began.
    let most = (elapsed * 5.0).floor() as usize + 2;
    assert!(
        received <= most,
        "{received} snapshots in {elapsed:.2} s (max_push_hz = 5, at most {most})"
    );
    assert!(received >= 5, "snapshots keep coming: {received}");
    assert!(
        (last_ltp - 509.95).abs() < 0.01,
        "the last snapshot has the last price: {last_ltp}"
    );
}

#[actix_web::test]
async fn a_websocket_without_a_token_must_authenticate_with_its_first_message() {
    let c = &chain_app(|_| {}).await;
    let created = c
        .open(json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 1}))
        .await;
    let id = created["id"].as_str().unwrap();

    let (_resp, mut conn) = c.app.client.ws(c.ws_url(id, None)).connect().await.unwrap();
    conn.send(Message::Text(
        json!({"action": "authenticate", "token": TEST_TOKEN})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let snap = next_text(&mut conn).await;
    assert_eq!(snap["id"], id);

    let (_resp, mut conn) = c.app.client.ws(c.ws_url(id, None)).connect().await.unwrap();
    conn.send(Message::Text(
        json!({"action": "authenticate", "token": "not-the-admin-token"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let close = next_close(&mut conn, Duration::from_secs(5)).await;
    assert_eq!(close.code, CloseCode::Other(4401));

    let wrong = c
        .app
        .client
        .ws(c.ws_url(id, Some("not-the-admin-token")))
        .connect()
        .await;
    match wrong {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status, StatusCode::UNAUTHORIZED)
        }
        Err(other) => panic!("a wrong ?token= is refused before the upgrade: {other}"),
        Ok(_) => panic!("a wrong ?token= is refused before the upgrade"),
    }
    let (status, _) = call(
        c.app.client.get(c.app.url(&format!("/ws/chain/{id}"))),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "plain requests need the token"
    );

    let (_resp, mut silent) = c.app.client.ws(c.ws_url(id, None)).connect().await.unwrap();
    let close = next_close(&mut silent, Duration::from_secs(15)).await;
    assert_eq!(close.code, CloseCode::Other(4401));
    assert_eq!(close.description.as_deref(), Some("authentication timeout"));
}

#[actix_web::test]
async fn in_the_evening_of_an_expiry_day_the_chain_opens_on_the_next_expiry() {
    // Tuesday 2026-12-01 is a NIFTY expiry. The gateway still lists it (its contract list was
    // read before the close, as a real gateway's is until the next morning); the service's
    // clock says 22:30.
    let ist = |h, m| {
        chrono_tz::Asia::Kolkata
            .with_ymd_and_hms(2026, 12, 1, h, m, 0)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let sim = Simulator::start(SimConfig {
        clock: Arc::new(ManualClock::new(ist(15, 0))),
        ..sim_config(0.0)
    })
    .await
    .expect("simulator starts");
    let listed = sim_expiries(&sim, "NIFTY", "NFO").await;
    assert_eq!(listed[0], "01-DEC-26");
    let c = &chain_app_on(sim, Arc::new(ManualClock::new(ist(22, 30))), |_| {}).await;

    let created = c
        .open(json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 1}))
        .await;
    assert_eq!(created["expiry"], "08-DEC-26", "{created}");
    let expiries: Vec<&str> = created["expiries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(expiries, listed[1..], "the closed expiry is not offered");
    assert!(
        created["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| !s.as_str().unwrap().contains("01DEC26")),
        "{created}"
    );

    // Asking for it by name is refused, naming what is available.
    let (status, body) = c
        .create(json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry": "01-DEC-26"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("08-DEC-26"), "{message}");
}

#[actix_web::test]
async fn bad_chain_requests_are_refused_with_the_reason_and_change_nothing() {
    let c = &chain_app(|_| {}).await;
    let listed = sim_expiries(&c.sim, "NIFTY", "NFO").await;
    let cases = [
        (
            json!({"underlying": "NOSUCH", "exchange": "NSE_INDEX"}),
            StatusCode::NOT_FOUND,
            "unknown underlying NOSUCH on NSE_INDEX",
        ),
        (
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry": "01-JAN-20"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "available: ",
        ),
        (
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "expiry": "someday"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            &listed[0],
        ),
        (
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "strikes must be between 1 and 50",
        ),
        (
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 51}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "strikes must be between 1 and 50",
        ),
        (
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "mode": "fast"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid mode",
        ),
        (
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "window": 3}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field",
        ),
        (
            json!({"exchange": "NSE_INDEX"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "underlying",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, answer) = c.create(body.clone()).await;
        assert_eq!(got, status, "{body} → {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "{body}: {message:?} lacks {needle:?}"
        );
    }
    assert_eq!(held(&c.sim).await, Upstream::new(), "nothing subscribed");
    let (_, list) = call(c.app.get("/api/v1/chain-sessions"), None).await;
    assert_eq!(list["sessions"], json!([]));

    let unknown = "00000000-0000-0000-0000-000000000000";
    assert_eq!(c.snapshot(unknown).await.0, StatusCode::NOT_FOUND);
    assert_eq!(c.heartbeat(unknown).await, StatusCode::NOT_FOUND);
    assert_eq!(c.delete(unknown).await, StatusCode::NOT_FOUND);

    // Depth when asked, and a listed expiry in either form.
    let created = c
        .open(
            json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 1,
                     "mode": "Depth", "expiry": listed[1].replace('-', "")}),
        )
        .await;
    assert_eq!(created["expiry"], listed[1]);
    wait_held(&c.sim, &chain_keys(&created, 3), "window at Depth").await;
}

#[actix_web::test]
async fn without_a_feed_account_there_are_no_chains() {
    let app = crate::helpers::spawn_app().await;
    let (status, body) = call(
        app.post("/api/v1/chain-sessions"),
        Some(json!({"underlying": "NIFTY", "exchange": "NSE_INDEX"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no feed account"),
        "{body}"
    );
}

#[actix_web::test]
async fn shutdown_closes_every_session_and_a_restart_closes_leftover_rows() {
    let c = &chain_app(|_| {}).await;
    let a = c
        .open(json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 1}))
        .await;
    let b = c
        .open(json!({"underlying": "BANKNIFTY", "exchange": "NSE_INDEX", "strikes": 1}))
        .await;
    c.chains.send(CloseAllChainSessions).await.unwrap();
    for created in [&a, &b] {
        let row = c.row(created["id"].as_str().unwrap()).await;
        assert!(row.closed_at.is_some());
        assert_eq!(row.close_reason, Some(CloseReason::Shutdown));
    }
    wait_held(&c.sim, &Upstream::new(), "everything released").await;

    // A row an earlier process left open (it died without closing it).
    let now = chrono::Utc::now();
    websocket_sessions::ActiveModel {
        id: Set("left-open".into()),
        kind: Set(websocket_sessions::SessionKind::Chain),
        underlying: Set("NIFTY".into()),
        exchange: Set("NSE_INDEX".into()),
        expiry: Set(None),
        strikes: Set(10),
        mode: Set(2),
        created_at: Set(now - chrono::Duration::minutes(5)),
        last_heartbeat_at: Set(now - chrono::Duration::minutes(5)),
        closed_at: Set(None),
        close_reason: Set(None),
    }
    .insert(&c.db().await)
    .await
    .unwrap();
    let restarted = Application::build_with_clock(
        test_settings(&c.app.database.url),
        crate::helpers::test_clock(),
    )
    .await
    .unwrap();
    // The directory sweeps before it serves anything: a status answer means it is done.
    restarted
        .chains()
        .send(::actors::chain::GetChainDirectoryStatus)
        .await
        .unwrap();
    let row = c.row("left-open").await;
    assert!(row.closed_at.is_some());
    assert_eq!(row.close_reason, Some(CloseReason::Shutdown));
}

/// A client of the service that connects from `local` (another loopback address is another
/// client).
fn client_from(local: &str) -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().local_address(local.parse().unwrap()))
        .timeout(Duration::from_secs(30))
        .finish()
}

async fn open_from(c: &ChainApp, client: &awc::Client) -> (StatusCode, Value) {
    let req = client
        .post(c.app.url("/api/v1/chain-sessions"))
        .bearer_auth(TEST_TOKEN);
    call(
        req,
        Some(json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 1})),
    )
    .await
}

#[actix_web::test]
async fn chain_sessions_are_capped_service_wide_and_per_client() {
    let c = &chain_app(|s| {
        s.option_chain.max_sessions = 2;
        s.option_chain.max_sessions_per_client = 1;
    })
    .await;
    let (one, two, three) = (
        client_from("127.0.0.1"),
        client_from("127.0.0.2"),
        client_from("127.0.0.3"),
    );
    let (status, first) = open_from(c, &one).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, err) = open_from(c, &one).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{err}");
    assert_eq!(err["error"]["code"], "too_many_requests");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_sessions_per_client"),
        "{err}"
    );
    let (status, second) = open_from(c, &two).await;
    assert_eq!(status, StatusCode::CREATED, "another client: {second}");
    let (status, err) = open_from(c, &three).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("option_chain.max_sessions "),
        "{err}"
    );
    // Ending a session gives its place back.
    assert_eq!(
        c.delete(first["id"].as_str().unwrap()).await,
        StatusCode::NO_CONTENT
    );
    let (status, third) = open_from(c, &three).await;
    assert_eq!(status, StatusCode::CREATED, "{third}");
}

#[actix_web::test]
async fn rows_of_ended_chain_sessions_are_purged() {
    let c = &chain_app(|s| s.option_chain.closed_session_retention_s = 0).await;
    let body = json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 1});
    let first = c.open(body.clone()).await;
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(c.delete(&id).await, StatusCode::NO_CONTENT);
    let ended = c.row(&id).await;
    assert_eq!(ended.close_reason, Some(CloseReason::Deleted));
    // The next session purges what ended before it.
    let second = c.open(body).await;
    let db = c.db().await;
    poll_until(
        Duration::from_secs(20),
        "the ended session's row to be purged",
        || {
            let (db, id) = (db.clone(), id.clone());
            async move {
                let row = websocket_sessions::Entity::find_by_id(id)
                    .one(&db)
                    .await
                    .expect("query websocket_sessions");
                row.is_none().then_some(())
            }
        },
    )
    .await;
    // The open one is kept.
    let open = c.row(second["id"].as_str().unwrap()).await;
    assert!(open.closed_at.is_none());
}
