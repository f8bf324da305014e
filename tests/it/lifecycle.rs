//! The market-hours subtree follows the calendar, the feed account's health and the service
//! controls (SupervisorActor), against the simulator, with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use ::clock::{ManualClock, SharedClock};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Asia::Kolkata;
use serde_json::{Value, json};
use simulator::{SimConfig, Simulator};

use crate::feed::{FEED_KEY, sim_stats, start_sim};
use crate::helpers::{TEST_ENCRYPTION_KEY, TestApp, poll_until, spawn_app_with_clock};

fn ist(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
    Kolkata
        .with_ymd_and_hms(y, m, d, h, min, s)
        .single()
        .expect("valid IST time")
        .with_timezone(&Utc)
}

async fn app_with_clock(clock: SharedClock, always_open: bool) -> TestApp {
    spawn_app_with_clock(
        move |s| {
            s.security.encryption_key = TEST_ENCRYPTION_KEY.into();
            s.accounts.ping_interval_s = 1;
            s.calendar.always_open = always_open;
            s.connection.backoff_initial_ms = 100;
        },
        clock,
    )
    .await
}

async fn supervisor(app: &TestApp) -> Value {
    app.get_json("/api/v1/state").await["supervisor"].clone()
}

async fn wait_running(app: &TestApp, running: bool, what: &str) -> Value {
    poll_until(Duration::from_secs(20), what, || async move {
        let state = app.get_json("/api/v1/state").await;
        let ok = state["supervisor"]["running"] == running
            && (state["connection"]["state"] == "Live") == running;
        ok.then_some(state)
    })
    .await
}

async fn connections(sim: &Simulator) -> u64 {
    sim_stats(sim).await["feed"]["total_connections"]
        .as_u64()
        .unwrap()
}

#[actix_web::test]
async fn the_subtree_starts_at_open_stops_at_close_and_follows_holiday_edits() {
    let sim = start_sim(0.0).await;
    let clock = Arc::new(ManualClock::new(ist(2026, 11, 17, 8, 0, 0)));
    let app = app_with_clock(clock.clone(), false).await;
    app.add_account("primary", &sim.rest_url(), &sim.ws_url(), FEED_KEY, true)
        .await;

    // Before the pre-open buffer: the account answers, but the market is closed.
    let state = poll_until(Duration::from_secs(20), "account decision", || async {
        let s = supervisor(&app).await;
        (s["feed_account"]["name"] == "primary").then_some(s)
    })
    .await;
    assert_eq!(state["running"], false);
    assert_eq!(state["reason"], "market closed");
    assert_eq!(
        connections(&sim).await,
        0,
        "no feed while the market is closed"
    );

    clock.set(ist(2026, 11, 17, 10, 0, 0));
    let state = wait_running(&app, true, "running at 10:00").await;
    assert!(
        state["supervisor"]["reason"]
            .as_str()
            .unwrap()
            .contains("market open")
    );
    assert_eq!(connections(&sim).await, 1);

    clock.set(ist(2026, 11, 17, 15, 30, 1));
    wait_running(&app, false, "stopped after the close").await;
    poll_until(Duration::from_secs(10), "socket closed", || async {
        (connections(&sim).await == 0).then_some(())
    })
    .await;

    // Today becomes a holiday through the API: the subtree stops at once; removing it reopens.
    clock.set(ist(2026, 11, 17, 11, 0, 0));
    wait_running(&app, true, "running again at 11:00").await;
    let (status, holiday) = app
        .post_json(
            "/api/v1/calendar/holidays",
            &json!({"date": "2026-11-17", "name": "Unscheduled closure", "exchange": "NSE"}),
        )
        .await;
    assert_eq!(status, 201, "{holiday}");
    let state = supervisor(&app).await;
    assert_eq!(
        state["running"], false,
        "closed as soon as the edit returns"
    );
    assert_eq!(state["phase"], "Closed");
    let id = holiday["id"].as_i64().unwrap();
    let resp = app
        .delete(&format!("/api/v1/calendar/holidays/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(supervisor(&app).await["running"], true);
    wait_running(&app, true, "live again after the holiday is removed").await;
    assert_eq!(connections(&sim).await, 1);
}

#[actix_web::test]
async fn service_stop_and_start_through_the_api() {
    let sim = start_sim(0.0).await;
    let app = app_with_clock(crate::helpers::test_clock(), true).await;
    app.add_account("primary", &sim.rest_url(), &sim.ws_url(), FEED_KEY, true)
        .await;
    wait_running(&app, true, "running (always open)").await;

    // The chain directory follows the feed account's gateway without further setup.
    let (status, chain) = app
        .post_json(
            "/api/v1/chain-sessions",
            &json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 2}),
        )
        .await;
    assert_eq!(status, 201, "{chain}");
    assert_eq!(
        chain["symbols"].as_array().unwrap().len(),
        2 * 5,
        "CE and PE of 5 strikes"
    );

    let (status, body) = app.post_json("/api/v1/service/stop", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["running"], false);
    assert_eq!(body["reason"], "stopped through the API");
    wait_running(&app, false, "stopped").await;
    poll_until(Duration::from_secs(10), "socket closed", || async {
        (connections(&sim).await == 0).then_some(())
    })
    .await;

    let (status, body) = app.post_json("/api/v1/service/start", &json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["manually_stopped"], false);
    wait_running(&app, true, "running again").await;

    let (status, body) = app.post_json("/api/v1/service/restart", &json!({})).await;
    assert_eq!(status, 404, "{body}");
}

#[actix_web::test]
async fn the_feed_fails_over_to_the_backup_gateway_and_returns() {
    let primary_sim = start_sim(0.0).await;
    let (rest_port, ws_port) = (primary_sim.rest_port(), primary_sim.ws_port());
    let backup_key = "backupkey-0002-cccc";
    let backup_sim = Simulator::start(SimConfig {
        rest_port: 0,
        ws_port: 0,
        api_keys: vec![backup_key.into()],
        ticks_per_s: 0.0,
        clock: crate::helpers::test_clock(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let app = app_with_clock(crate::helpers::test_clock(), true).await;
    let (p_rest, p_ws) = (primary_sim.rest_url(), primary_sim.ws_url());
    app.add_account("primary", &p_rest, &p_ws, FEED_KEY, true)
        .await;
    app.add_account(
        "backup",
        &backup_sim.rest_url(),
        &backup_sim.ws_url(),
        backup_key,
        false,
    )
    .await;
    wait_running(&app, true, "live on the primary").await;
    assert_eq!(supervisor(&app).await["feed_account"]["name"], "primary");
    assert_eq!(connections(&primary_sim).await, 1);

    primary_sim.stop().await;
    let state = poll_until(
        Duration::from_secs(30),
        "failover to the backup",
        || async {
            let s = app.get_json("/api/v1/state").await;
            (s["supervisor"]["feed_account"]["name"] == "backup"
                && s["connection"]["state"] == "Live")
                .then_some(s)
        },
    )
    .await;
    assert!(
        state["supervisor"]["feed_account_reason"]
            .as_str()
            .unwrap()
            .contains("failed 3 consecutive pings"),
        "{}",
        state["supervisor"]
    );
    assert_eq!(connections(&backup_sim).await, 1);

    // The primary's gateway comes back on the same ports.
    let primary_sim = Simulator::start(SimConfig {
        rest_port,
        ws_port,
        api_keys: vec![FEED_KEY.into()],
        ticks_per_s: 0.0,
        clock: crate::helpers::test_clock(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    poll_until(Duration::from_secs(30), "back on the primary", || async {
        let s = app.get_json("/api/v1/state").await;
        assert!(connections(&primary_sim).await <= 1);
        assert!(connections(&backup_sim).await <= 1);
        (s["supervisor"]["feed_account"]["name"] == "primary" && s["connection"]["state"] == "Live")
            .then_some(())
    })
    .await;
    assert_eq!(connections(&primary_sim).await, 1);
    // The backup's socket stays, for its order updates only: it carries no market data.
    assert_eq!(connections(&backup_sim).await, 1);
    let streams = app.get_json("/api/v1/state").await["streams"].clone();
    let feed_of = |name: &str| {
        streams["streams"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["account"] == name))
            .map(|s| s["feed"].clone())
    };
    assert_eq!(feed_of("primary"), Some(json!(true)), "{streams}");
    assert_eq!(feed_of("backup"), Some(json!(false)), "{streams}");
    for sim in [&primary_sim, &backup_sim] {
        let stats = sim_stats(sim).await;
        assert_eq!(stats["feed"]["refused_connections"], 0, "{stats}");
    }
}
