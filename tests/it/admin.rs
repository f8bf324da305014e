//! The admin surface (issue 8): `GET /api/v1/state`, the live stream `GET /ws/admin`,
//! `GET /metrics` and the embedded page, against the simulator with the market always open.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use awc::ws::{CloseCode, Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use simulator::Simulator;
use trading_supervisor::configuration::Settings;

use crate::feed::{FEED_KEY, sim_post, start_sim};
use crate::helpers::{
    TEST_ENCRYPTION_KEY, TEST_TOKEN, TestApp, json_body, poll_until, spawn_app, spawn_app_with,
};
use crate::risk::{Harness, LegSpec, WAIT, options};

pub struct LiveApp {
    pub app: TestApp,
    pub sim: Simulator,
}

/// The service against a fresh simulator (deterministic prices) with one primary account and
/// the market always open, its feed Live.
pub async fn live_app(adjust: impl FnOnce(&mut Settings)) -> LiveApp {
    let sim = start_sim(0.0).await;
    let app = spawn_app_with(|s| {
        s.security.encryption_key = TEST_ENCRYPTION_KEY.into();
        s.accounts.ping_interval_s = 1;
        s.calendar.always_open = true;
        s.connection.backoff_initial_ms = 100;
        adjust(s);
    })
    .await;
    app.add_account("primary", &sim.rest_url(), &sim.ws_url(), FEED_KEY, true)
        .await;
    wait_feed(&app, "Live").await;
    LiveApp { app, sim }
}

/// Waits until `GET /api/v1/state` shows the feed connection in `state`.
pub async fn wait_feed(app: &TestApp, state: &str) -> Value {
    poll_until(
        Duration::from_secs(20),
        &format!("feed {state}"),
        || async {
            let s = app.get_json("/api/v1/state").await;
            (s["connection"]["state"] == state).then_some(s)
        },
    )
    .await
}

/// Opens an option chain on NIFTY (±`strikes`) and returns its id.
pub async fn open_chain(app: &TestApp, strikes: u32) -> String {
    let (status, created) = app
        .post_json(
            "/api/v1/chain-sessions",
            &json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": strikes}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("session id").to_string()
}

const LIFECYCLES: [&str; 6] = [
    "Starting",
    "Running",
    "Degraded",
    "BackingOff",
    "Stopped",
    "Faulted",
];

#[actix_web::test]
async fn state_reports_every_actor_with_its_lifecycle_restarts_and_figures() {
    let live = live_app(|_| {}).await;
    let app = &live.app;
    let id = open_chain(app, 1).await;
    sim_post(
        &live.sim,
        "/sim/price",
        json!({"exchange": "NSE_INDEX", "symbol": "NIFTY", "ltp": 25912.5}),
    )
    .await;
    let state = poll_until(
        Duration::from_secs(10),
        "the NIFTY tick in the state",
        || async {
            let s = app.get_json("/api/v1/state").await;
            let nifty = s["registry"]["subscriptions"]
                .as_array()?
                .iter()
                .find(|x| x["symbol"] == "NIFTY")?
                .clone();
            (nifty["ltp"] == 25912.5).then_some(s)
        },
    )
    .await;

    for part in [
        "supervisor",
        "calendar",
        "accounts",
        "connection",
        "registry",
        "chains",
        "monitor",
        "orders",
    ] {
        let status = &state[part];
        let lifecycle = status
            .get("state")
            .filter(|v| LIFECYCLES.contains(&v.as_str().unwrap_or("")))
            .or_else(|| status.get("lifecycle"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{part} has a lifecycle state: {status}"));
        assert!(LIFECYCLES.contains(&lifecycle), "{part}: {lifecycle}");
        assert!(status["restarts"].is_u64(), "{part} reports restarts");
    }
    assert!(state["positions"].is_array() && state["strategies"].is_array());
    assert_eq!(state["supervisor"]["running"], true);
    assert_eq!(state["calendar"]["phase"], "Open");
    assert_eq!(state["accounts"]["feed_account"]["name"], "primary");

    let conn = &state["connection"];
    assert_eq!(conn["state"], "Live");
    assert_eq!(conn["lifecycle"], "Running");
    assert_eq!(conn["account"], "primary");
    assert_eq!(conn["api_key"], "feed…", "the key is masked");
    assert!(conn["last_tick_age_ms"].is_u64());
    assert!(
        !state.to_string().contains(FEED_KEY),
        "the API key never appears in the state"
    );

    // 3 strikes × (CE, PE) + the underlying, each held by the chain session.
    let subs = state["registry"]["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 7, "{subs:?}");
    assert_eq!(state["registry"]["symbols"], 7);
    for sub in subs {
        let holders = sub["holders"].as_array().unwrap();
        assert_eq!(holders.len(), 1, "{sub}");
        assert!(holders[0].as_str().unwrap().starts_with("chain:"), "{sub}");
        assert_eq!(sub["mode_label"], "Quote");
    }
    let sessions = state["chains"]["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["id"], id.as_str());
    assert_eq!(sessions[0]["underlying"], "NIFTY");
    assert_eq!(sessions[0]["underlying_ltp"], 25912.5);
}

// ---- /metrics ----

/// One parsed exposition: samples by series (`name{labels}`), after checking the format: every
/// sample belongs to a family declared by `# TYPE` before it, names and values are valid and no
/// series repeats.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(valid_name(name), "metric name {name:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "{name} declared twice"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "{name} has no # TYPE before it");
        if types[family] == "counter" {
            assert!(
                family.ends_with("_total"),
                "counter {family} ends in _total"
            );
        }
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
        };
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{series} repeated"
        );
    }
    samples
}

async fn metrics(app: &TestApp) -> BTreeMap<String, f64> {
    metrics_of(&app.address).await
}

/// `GET /metrics` of the service at `base` (with the admin token), parsed and checked.
pub async fn metrics_of(base: &str) -> BTreeMap<String, f64> {
    let mut resp = awc::Client::default()
        .get(format!("{base}/metrics"))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "/metrics with the admin token"
    );
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let body = resp.body().await.unwrap();
    parse_metrics(std::str::from_utf8(&body).expect("UTF-8"))
}

/// A histogram's buckets ascend with `le`, never decrease, and `+Inf` equals `_count`.
fn check_histogram(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 2, "{name} has buckets");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "{name}: {buckets:?}"
    );
    let count = m[&format!("{name}_count")];
    assert_eq!(
        buckets.last().map(|b| (b.0, b.1)),
        Some((f64::INFINITY, count))
    );
    assert!(m[&format!("{name}_sum")] >= 0.0);
    count
}

#[actix_web::test]
async fn metrics_count_ticks_fan_out_subscriptions_and_reconnects() {
    let live = live_app(|_| {}).await;
    let app = &live.app;
    let before = metrics(app).await;
    assert_eq!(before["supervisor_subscriptions"], 0.0);
    assert_eq!(
        before[r#"supervisor_feed_connection_state{state="Live"}"#],
        1.0
    );
    assert_eq!(
        before[r#"supervisor_feed_connection_state{state="BackingOff"}"#],
        0.0
    );
    assert_eq!(before[r#"supervisor_calendar_phase{phase="Open"}"#], 1.0);
    assert_eq!(before["supervisor_market_hours_running"], 1.0);
    assert_eq!(
        before[r#"supervisor_actor_state{actor="connection",state="Running"}"#],
        1.0
    );
    assert_eq!(
        before[r#"supervisor_actor_restarts_total{actor="registry"}"#],
        0.0
    );

    open_chain(app, 1).await;
    for (i, ltp) in [25910.0, 25920.0, 25930.0].into_iter().enumerate() {
        sim_post(
            &live.sim,
            "/sim/price",
            json!({"exchange": "NSE_INDEX", "symbol": "NIFTY", "ltp": ltp}),
        )
        .await;
        // Each tick reaches the chain session (one consumer).
        poll_until(Duration::from_secs(10), "the tick fanned out", || async {
            let m = metrics(app).await;
            (m["supervisor_ticks_fanned_out_total"]
                >= before["supervisor_ticks_fanned_out_total"] + i as f64 + 1.0)
                .then_some(())
        })
        .await;
    }
    let after = metrics(app).await;
    assert!(after["supervisor_ticks_in_total"] >= before["supervisor_ticks_in_total"] + 3.0);
    assert!(after["supervisor_feed_messages_total"] >= 3.0);
    assert_eq!(after["supervisor_subscriptions"], 7.0);
    assert_eq!(after["supervisor_subscribers"], 1.0);
    assert_eq!(after["supervisor_chain_sessions"], 1.0);
    assert_eq!(after["supervisor_chain_sessions_opened_total"], 1.0);
    assert!(after["supervisor_feed_last_tick_age_seconds"] < 10.0);
    assert_eq!(after["supervisor_feed_reconnects_total"], 0.0);

    let resp = app
        .post("/api/v1/connection/reconnect")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let m = poll_until(
        Duration::from_secs(20),
        "live again after the reconnect",
        || async {
            let m = metrics(app).await;
            (m["supervisor_feed_reconnects_total"] == 1.0
                && m[r#"supervisor_feed_connection_state{state="Live"}"#] == 1.0)
                .then_some(m)
        },
    )
    .await;
    let states: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("supervisor_feed_connection_state{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(states, 1.0, "exactly one connection state is current");
}

// ---- /ws/admin ----

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

async fn connect_admin(app: &TestApp, token: Option<&str>) -> impl Socket + use<> {
    let base = app.address.replace("http://", "ws://");
    let url = match token {
        Some(t) => format!("{base}/ws/admin?token={t}"),
        None => format!("{base}/ws/admin"),
    };
    let (_resp, conn) = app
        .client
        .ws(url)
        .max_frame_size(16 * 1024 * 1024)
        .connect()
        .await
        .expect("admin socket opens");
    conn
}

/// The next message, or None when nothing arrives within `within`.
async fn next_message(conn: &mut impl Socket, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match actix_rt::time::timeout(left, conn.next()).await {
            Err(_) => return None,
            Ok(frame) => frame.expect("the socket is open").expect("a valid frame"),
        };
        match frame {
            Frame::Text(bytes) => return Some(serde_json::from_slice(&bytes).expect("JSON")),
            Frame::Ping(p) => conn.send(Message::Pong(p)).await.unwrap(),
            Frame::Close(reason) => panic!("socket closed: {reason:?}"),
            _ => {}
        }
    }
}

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
async fn the_admin_socket_authenticates_then_pushes_changes_at_a_bounded_rate() {
    let live = live_app(|_| {}).await;
    let app = &live.app;
    open_chain(app, 1).await;

    let mut conn = connect_admin(app, None).await;
    assert!(
        next_message(&mut conn, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing before authentication"
    );
    conn.send(Message::Text(
        json!({"action": "authenticate", "token": TEST_TOKEN})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let first = next_message(&mut conn, Duration::from_secs(5))
        .await
        .expect("the state at once");
    assert_eq!(first["type"], "state");
    assert!(chrono::DateTime::parse_from_rfc3339(first["server_time"].as_str().unwrap()).is_ok());
    let state = &first["state"];
    for part in [
        "supervisor",
        "calendar",
        "accounts",
        "connection",
        "registry",
        "chains",
    ] {
        assert!(state[part].is_object(), "{part} in the pushed state");
    }
    assert_eq!(state["connection"]["state"], "Live");
    assert!(!first.to_string().contains(FEED_KEY));

    // A price change shows up in the next messages.
    sim_post(
        &live.sim,
        "/sim/price",
        json!({"exchange": "NSE_INDEX", "symbol": "NIFTY", "ltp": 26001.25}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let msg = next_message(&mut conn, Duration::from_secs(5))
            .await
            .expect("a change is pushed");
        let nifty = msg["state"]["chains"]["sessions"][0]["underlying_ltp"].clone();
        if nifty == 26001.25 {
            break;
        }
        assert!(Instant::now() < deadline, "the new price never arrived");
    }

    // A stream of prices: the socket pushes at most 4 states a second, whatever the tick rate.
    let started = Instant::now();
    let ticker = async {
        for i in 0..40 {
            sim_post(
                &live.sim,
                "/sim/price",
                json!({"exchange": "NSE_INDEX", "symbol": "NIFTY", "ltp": 26000.0 + f64::from(i)}),
            )
            .await;
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let counting = async {
        let mut received = 0u32;
        while started.elapsed() < Duration::from_secs(2) {
            let left = Duration::from_secs(2).saturating_sub(started.elapsed());
            if next_message(&mut conn, left).await.is_some() {
                received += 1;
            }
        }
        received
    };
    let ((), received) = futures_util::join!(ticker, counting);
    // Counted over the time that really passed: one push per 250 ms, plus one at the start of
    // the window and one already on its way when counting began.
    let elapsed = started.elapsed().as_secs_f64();
    let most = (elapsed * 4.0).floor() as u32 + 2;
    assert!(received >= 2, "changes keep coming: {received}");
    assert!(
        received <= most,
        "{received} state messages in {elapsed:.2} s: at most 4 a second ({most})"
    );
}

#[actix_web::test]
async fn the_admin_socket_refuses_wrong_tokens_and_accepts_the_query_token() {
    let live = live_app(|_| {}).await;
    let app = &live.app;

    let mut conn = connect_admin(app, None).await;
    conn.send(Message::Text(
        json!({"action": "authenticate", "token": "not-the-admin-token"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let close = next_close(&mut conn, Duration::from_secs(5)).await;
    assert_eq!(close.code, CloseCode::Other(4401));

    let base = app.address.replace("http://", "ws://");
    match app
        .client
        .ws(format!("{base}/ws/admin?token=not-the-admin-token"))
        .connect()
        .await
    {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status, StatusCode::UNAUTHORIZED)
        }
        Err(other) => panic!("a wrong ?token= is refused before the upgrade: {other}"),
        Ok(_) => panic!("a wrong ?token= is refused before the upgrade"),
    }

    let mut conn = connect_admin(app, Some(TEST_TOKEN)).await;
    let first = next_message(&mut conn, Duration::from_secs(5))
        .await
        .expect("the state at once with ?token=");
    assert_eq!(first["state"]["connection"]["state"], "Live");
}

// ---- the page ----

#[actix_web::test]
async fn the_page_and_its_files_are_served_without_a_token_under_a_strict_policy() {
    let app = crate::helpers::spawn_app().await;
    let mut resp = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let header = |resp: &awc::ClientResponse<_>, name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert!(header(&resp, "content-type").starts_with("text/html"));
    let policy = header(&resp, "content-security-policy");
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(header(&resp, "x-content-type-options"), "nosniff");
    let html = String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap();
    for reference in ["/static/admin.js", "/static/admin.css"] {
        assert!(html.contains(reference), "the page loads {reference}");
    }
    assert!(!html.contains("<script>"), "no inline script");

    let mut js = app
        .client
        .get(app.url("/static/admin.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert!(header(&js, "content-type").starts_with("text/javascript"));
    let script = String::from_utf8(js.body().await.unwrap().to_vec()).unwrap();
    assert!(
        script.contains("sessionStorage"),
        "the token is kept per tab"
    );
    assert!(
        !script.contains("localStorage"),
        "never kept beyond the tab"
    );
    assert!(
        !script.contains("token="),
        "the token never goes into a URL"
    );
    let css = app
        .client
        .get(app.url("/static/admin.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    assert!(header(&css, "content-type").starts_with("text/css"));

    let mut missing = app
        .client
        .get(app.url("/static/secrets.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(&mut missing).await["error"]["code"], "not_found");
}

/// Every series a dashboard relies on is present, with its `# TYPE`.
/// (status, body) of `GET /metrics` with `authorization`.
async fn scrape(app: &TestApp, authorization: Option<&str>) -> (u16, String) {
    let mut req = app.client.get(app.url("/metrics"));
    if let Some(value) = authorization {
        req = req.insert_header(("Authorization", value));
    }
    let mut resp = req.send().await.unwrap();
    let body = resp.body().await.unwrap();
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[actix_web::test]
async fn metrics_need_the_admin_or_the_metrics_token_unless_made_public() {
    const METRICS_TOKEN: &str = "prometheus-scrape-token-0123";
    let app = spawn_app_with(|s| s.metrics.token = METRICS_TOKEN.into()).await;
    assert_eq!(scrape(&app, None).await.0, 401);
    assert_eq!(
        scrape(&app, Some("Bearer not-a-token-0123456789")).await.0,
        401
    );
    assert_eq!(
        scrape(&app, Some(&format!("Basic {METRICS_TOKEN}")))
            .await
            .0,
        401
    );
    let (status, body) = scrape(&app, Some(&format!("Bearer {}", app.token))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("supervisor_ticks_in_total"), "{body}");
    let (status, body) = scrape(&app, Some(&format!("Bearer {METRICS_TOKEN}"))).await;
    assert_eq!(status, 200, "{body}");
    // The metrics token opens /metrics only.
    let resp = app
        .client
        .get(app.url("/api/v1/state"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let open = spawn_app_with(|s| s.metrics.public = true).await;
    let (status, body) = scrape(&open, None).await;
    assert_eq!(status, 200, "{body}");
    // The admin token still opens nothing else without being sent.
    let resp = open
        .client
        .get(open.url("/api/v1/state"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn concurrent_scrapes_share_one_collection() {
    let app = spawn_app().await;
    let authorization = format!("Bearer {}", app.token);
    let started = Instant::now();
    let scrapes =
        futures_util::future::join_all((0..20).map(|_| scrape(&app, Some(authorization.as_str()))))
            .await;
    let elapsed = started.elapsed();
    let collections: Vec<f64> = scrapes
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            parse_metrics(body)["supervisor_metrics_collections_total"]
        })
        .collect();
    let distinct: BTreeSet<u64> = collections.iter().map(|c| *c as u64).collect();
    // Twenty scrapes asked the actors at most once per started second, never once each.
    let bound = elapsed.as_secs() + 1;
    assert!(
        (distinct.len() as u64) <= bound && *distinct.iter().max().unwrap() <= bound,
        "collections {distinct:?} within {elapsed:?}"
    );
}

#[actix_web::test]
async fn metrics_declare_every_family() {
    let app = crate::helpers::spawn_app().await;
    let m = metrics(&app).await;
    let families: BTreeSet<&str> = m.keys().map(|k| k.split('{').next().unwrap()).collect();
    for family in [
        "supervisor_ticks_in_total",
        "supervisor_ticks_fanned_out_total",
        "supervisor_ticks_dropped_total",
        "supervisor_feed_connection_state",
        "supervisor_feed_reconnects_total",
        "supervisor_subscriptions",
        "supervisor_chain_sessions",
        "supervisor_calendar_phase",
        "supervisor_calendar_warnings",
        "supervisor_actor_state",
        "supervisor_actor_restarts_total",
    ] {
        assert!(families.contains(family), "{family} in {families:?}");
    }
    assert_eq!(m[r#"supervisor_feed_connection_state{state="Idle"}"#], 1.0);
}

#[actix_web::test]
async fn metrics_count_strategies_exits_and_the_tick_to_decision_latency() {
    let h = Harness::start(options()).await;
    let base = h.p().address.clone();
    let id = h
        .strategy("metrics-max-loss", json!({"max_loss": 500.0}))
        .await;
    h.open(LegSpec::equity(id, "INFY", "BUY", 10, 100.0)).await;
    for ltp in [101.0, 102.5, 99.0] {
        h.price("NSE", "INFY", ltp).await;
        h.wait_pnl(id, (ltp - 100.0) * 10.0).await;
    }
    let m = metrics_of(&base).await;
    assert_eq!(m[r#"supervisor_strategies{state="monitoring"}"#], 1.0);
    assert_eq!(m[r#"supervisor_strategies{state="exiting"}"#], 0.0);
    assert_eq!(
        m[r#"supervisor_strategy_pnl_rupees{strategy="metrics-max-loss"}"#],
        -10.0
    );
    assert_eq!(m["supervisor_open_legs"], 1.0);
    assert_eq!(m[r#"supervisor_risk_actors{state="Running"}"#], 1.0);
    assert_eq!(
        m[r#"supervisor_actor_state{actor="position_monitor",state="Running"}"#],
        1.0
    );
    assert_eq!(m["supervisor_exit_orders_sent_total"], 0.0);

    // Every evaluated tick is in the latency histogram (the entry price and three moves).
    let decisions = check_histogram(&m, "supervisor_tick_to_risk_decision_seconds");
    assert!(decisions >= 3.0, "{decisions} decisions");
    let q = |label: &str| {
        m[&format!("supervisor_tick_to_risk_decision_quantile_seconds{{quantile=\"{label}\"}}")]
    };
    let (p50, p99, p999) = (q("0.5"), q("0.99"), q("0.999"));
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999, "{p50} {p99} {p999}");
    assert!(p999 < 5.0, "a decision within seconds of its tick: {p999}");
    let state = h.get("/api/v1/state").await.1;
    let summary = &state["strategies"][0]["decision_latency"];
    assert_eq!(summary["count"].as_f64(), Some(decisions), "{summary}");

    // A breach of the max loss exits the leg once: the exit counters move.
    h.price("NSE", "INFY", 40.0).await;
    let m = poll_until(WAIT, "the exit in the metrics", || async {
        let m = metrics_of(&base).await;
        (m["supervisor_exit_legs_exited_total"] == 1.0).then_some(m)
    })
    .await;
    assert_eq!(m["supervisor_exit_orders_sent_total"], 1.0);
    assert_eq!(m["supervisor_exit_orders_failed_total"], 0.0);
    assert_eq!(m["supervisor_exit_legs_failed_total"], 0.0);
    assert_eq!(m[r#"supervisor_strategies{state="monitoring"}"#], 0.0);
}

/// The status of an admin socket upgrade (101 when it opened; the socket is then dropped).
async fn admin_upgrade(app: &TestApp, token: Option<&str>) -> u16 {
    let base = app.address.replace("http://", "ws://");
    let url = match token {
        Some(t) => format!("{base}/ws/admin?token={t}"),
        None => format!("{base}/ws/admin"),
    };
    match app.client.ws(url).connect().await {
        Ok((resp, _conn)) => resp.status().as_u16(),
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
        Err(e) => panic!("admin socket: {e}"),
    }
}

#[actix_web::test]
async fn admin_sockets_and_sockets_waiting_to_authenticate_are_bounded() {
    let app = spawn_app_with(|s| {
        s.server.max_admin_sockets = 3;
        s.server.max_pending_sockets = 1;
    })
    .await;
    // One socket may wait for its authentication message; a second one is refused, one that
    // brings its token is not.
    let mut waiting = connect_admin(&app, None).await;
    assert_eq!(admin_upgrade(&app, None).await, 429);
    let with_token = connect_admin(&app, Some(TEST_TOKEN)).await;
    // Authenticating gives the waiting place back.
    waiting
        .send(Message::Text(
            json!({"action": "authenticate", "token": TEST_TOKEN})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    assert_eq!(
        next_message(&mut waiting, WAIT).await.unwrap()["type"],
        "state"
    );
    let _second_waiting = connect_admin(&app, None).await;
    // Three admin sockets are open: a fourth is refused, token or not.
    assert_eq!(admin_upgrade(&app, Some(TEST_TOKEN)).await, 429);
    // Closing one gives its place back.
    drop(with_token);
    poll_until(WAIT, "a free admin socket place", || async {
        (admin_upgrade(&app, Some(TEST_TOKEN)).await == 101).then_some(())
    })
    .await;
}
