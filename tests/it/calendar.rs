//! The trading calendar: the CalendarActor driven by a manual clock, its phase broadcasts, the
//! `/api/v1/calendar` CRUD API with its validation, the warning when the holiday list runs out,
//! and importing a year's holidays over HTTP and from the command line.

use std::sync::Arc;
use std::time::Duration;

use ::actors::calendar::{
    CalendarActor, CalendarSettings, GetCalendarStatus, PhaseChanged, ReloadCalendar,
    SubscribePhase,
};
use ::actors::domain::calendar::Phase;
use ::actors::status::Lifecycle;
use ::actors::supervised::Supervision;
use ::clock::{ManualClock, OffsetClock, SharedClock};
use actix::prelude::*;
use actix_web::http::{Method, StatusCode};
use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use entity::{market_holidays, trading_hours_templates};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use trading_supervisor::configuration::DatabaseSettings;
use trading_supervisor::database;

use crate::admin::metrics_of;
use crate::helpers::{TestApp, TestDatabase, fresh_database, poll_until, spawn_app_with_clock};

/// An instant given in IST.
fn ist(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Kolkata
        .with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

/// Tuesday 2026-11-17, an ordinary trading day.
fn tuesday(h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    ist(2026, 11, 17, h, mi, s)
}

fn utc(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
        .parse()
        .unwrap()
}

async fn manual_app(start: DateTime<Utc>) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(start));
    let app = spawn_app_with_clock(|_| {}, clock.clone()).await;
    (app, clock)
}

/// Sends a request with the admin token and an optional JSON body; returns status and body
/// (Null when empty).
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let req = app
        .client
        .request(method, app.url(path))
        .bearer_auth(&app.token);
    let mut resp = match body {
        Some(b) => req.send_json(&b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let status = resp.status();
    let bytes = resp.body().await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, value)
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = call(app, Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

async fn create(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, created) = call(app, Method::POST, path, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "POST {path}: {created}");
    created
}

async fn calendar(app: &TestApp) -> Value {
    get(app, "/api/v1/calendar").await
}

async fn wait_for_phase(app: &TestApp, phase: &str) -> Value {
    poll_until(Duration::from_secs(10), phase, || async {
        let status = calendar(app).await;
        (status["phase"] == phase).then_some(status)
    })
    .await
}

/// Every row of the four calendar tables, as the API lists them.
async fn snapshot(app: &TestApp) -> Vec<Value> {
    let mut all = Vec::new();
    for path in [
        "/api/v1/calendar/templates",
        "/api/v1/calendar/sessions",
        "/api/v1/calendar/holidays",
        "/api/v1/calendar/special-sessions",
    ] {
        all.push(get(app, path).await);
    }
    all
}

// ---- phase through the API ----

#[actix_web::test]
async fn the_phase_follows_the_clock_and_the_seeded_calendar() {
    let (app, clock) = manual_app(tuesday(10, 0, 0)).await;

    let status = calendar(&app).await;
    assert_eq!(status["state"], "Running", "{status}");
    assert_eq!(status["phase"], "Open");
    // Open through 15:30:00 IST inclusive: the change to Closed is at 15:30:01 IST (10:00:01 Z).
    assert_eq!(utc(&status["next_change_at"]), tuesday(15, 30, 1));
    assert_eq!(
        utc(&status["next_change_at"]),
        Utc.with_ymd_and_hms(2026, 11, 17, 10, 0, 1).unwrap()
    );
    assert_eq!(status["next_phase"], "Closed");
    assert_eq!(status["seconds_to_next_change"], 5 * 3600 + 30 * 60 + 1);
    assert_eq!(status["always_open"], false);
    assert_eq!(status["templates"][0]["name"], "NSE Default");
    assert_eq!(status["templates"][0]["timezone"], "Asia/Kolkata");
    assert_eq!(status["holiday_today"], Value::Null);
    assert_eq!(status["last_error"], Value::Null);
    assert!(status["loaded_at"].is_string());

    clock.set(tuesday(15, 30, 1));
    let status = wait_for_phase(&app, "Closed").await;
    assert_eq!(utc(&status["since"]), tuesday(15, 30, 1));
    // Next: Wednesday's pre-open session at 09:00.
    assert_eq!(utc(&status["next_change_at"]), ist(2026, 11, 18, 9, 0, 0));
    assert_eq!(status["next_phase"], "PreOpen");

    clock.set(ist(2026, 11, 18, 9, 5, 0));
    let status = wait_for_phase(&app, "PreOpen").await;
    assert_eq!(utc(&status["next_change_at"]), ist(2026, 11, 18, 9, 15, 0));
    assert_eq!(status["next_phase"], "Open");

    clock.set(ist(2026, 11, 18, 9, 15, 0));
    wait_for_phase(&app, "Open").await;

    // Saturday.
    clock.set(ist(2026, 11, 21, 10, 0, 0));
    let status = wait_for_phase(&app, "Closed").await;
    assert_eq!(utc(&status["next_change_at"]), ist(2026, 11, 23, 9, 0, 0));

    clock.set(ist(2026, 11, 23, 10, 0, 0));
    wait_for_phase(&app, "Open").await;

    // Seeded holiday (Tuesday): closed all day, with its name shown.
    clock.advance(TimeDelta::days(1));
    let status = wait_for_phase(&app, "Closed").await;
    assert_eq!(
        status["holiday_today"],
        "Prakash Gurpurb Sri Guru Nanak Dev"
    );
    assert_eq!(utc(&status["next_change_at"]), ist(2026, 11, 25, 9, 0, 0));
}

#[actix_web::test]
async fn a_holiday_added_for_today_closes_the_market_in_the_next_answer() {
    let (app, _clock) = manual_app(tuesday(10, 0, 0)).await;
    assert_eq!(calendar(&app).await["phase"], "Open");

    let holiday = create(
        &app,
        "/api/v1/calendar/holidays",
        json!({"date": "2026-11-17", "name": "Exchange outage", "exchange": "NSE"}),
    )
    .await;
    // No polling: the write answered only once the calendar had reloaded.
    let status = calendar(&app).await;
    assert_eq!(status["phase"], "Closed");
    assert_eq!(status["holiday_today"], "Exchange outage");

    let id = holiday["id"].as_i64().unwrap();
    let (code, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/calendar/holidays/{id}"),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let status = calendar(&app).await;
    assert_eq!(status["phase"], "Open");
    assert_eq!(status["holiday_today"], Value::Null);
}

#[actix_web::test]
async fn a_special_session_opens_the_market_on_a_holiday() {
    // 2026-11-24 is a seeded holiday; Muhurat-style session 18:00–19:00.
    let (app, clock) = manual_app(ist(2026, 11, 24, 18, 30, 0)).await;
    assert_eq!(calendar(&app).await["phase"], "Closed");

    create(
        &app,
        "/api/v1/calendar/special-sessions",
        json!({"date": "2026-11-24", "name": "Muhurat Trading", "start_time": "18:00",
               "end_time": "19:00", "exchange": "NSE"}),
    )
    .await;
    let status = calendar(&app).await;
    assert_eq!(status["phase"], "Open");
    assert_eq!(utc(&status["next_change_at"]), ist(2026, 11, 24, 19, 0, 1));
    assert_eq!(status["special_today"][0]["name"], "Muhurat Trading");
    assert_eq!(status["special_today"][0]["start_time"], "18:00:00");

    // The pre-open buffer applies to special sessions too.
    clock.set(ist(2026, 11, 24, 17, 50, 0));
    wait_for_phase(&app, "PreOpen").await;
    clock.set(ist(2026, 11, 24, 19, 0, 1));
    wait_for_phase(&app, "Closed").await;
}

#[actix_web::test]
async fn another_active_template_opens_the_market_on_its_own_hours() {
    let (app, _clock) = manual_app(ist(2026, 11, 21, 10, 0, 0)).await; // Saturday
    assert_eq!(calendar(&app).await["phase"], "Closed");

    let template = create(
        &app,
        "/api/v1/calendar/templates",
        json!({"name": "Weekend drill", "exchange": "nse", "timezone": "Asia/Kolkata"}),
    )
    .await;
    let tid = template["id"].as_i64().unwrap();
    create(
        &app,
        "/api/v1/calendar/sessions",
        json!({"template_id": tid, "weekday": 5, "start_time": "09:30", "end_time": "12:00",
               "session_type": "normal"}),
    )
    .await;
    let status = calendar(&app).await;
    assert_eq!(status["phase"], "Open");
    assert_eq!(status["templates"].as_array().unwrap().len(), 2);
    assert_eq!(utc(&status["next_change_at"]), ist(2026, 11, 21, 12, 0, 1));

    // Deactivated: back to the NSE template alone.
    let (code, body) = call(
        &app,
        Method::PUT,
        &format!("/api/v1/calendar/templates/{tid}"),
        Some(
            json!({"name": "Weekend drill", "exchange": "NSE", "timezone": "Asia/Kolkata",
                    "is_active": false}),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let status = calendar(&app).await;
    assert_eq!(status["phase"], "Closed");
    assert_eq!(status["templates"].as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn always_open_overrides_the_calendar() {
    let clock = Arc::new(ManualClock::new(ist(2026, 11, 21, 10, 0, 0)));
    let app = spawn_app_with_clock(|s| s.calendar.always_open = true, clock).await;
    let status = calendar(&app).await;
    assert_eq!(status["phase"], "Open");
    assert_eq!(status["always_open"], true);
    assert_eq!(status["next_change_at"], Value::Null);
}

// ---- CRUD ----

#[actix_web::test]
async fn templates_round_trip() {
    let (app, _clock) = manual_app(tuesday(10, 0, 0)).await;
    let created = create(
        &app,
        "/api/v1/calendar/templates",
        json!({"name": " MCX Evening ", "exchange": "mcx", "timezone": "Asia/Kolkata",
               "description": "Commodities"}),
    )
    .await;
    assert_eq!(created["name"], "MCX Evening");
    assert_eq!(created["exchange"], "MCX");
    assert_eq!(created["is_active"], true);
    assert_eq!(created["description"], "Commodities");
    let id = created["id"].as_i64().unwrap();
    let path = format!("/api/v1/calendar/templates/{id}");
    assert_eq!(get(&app, &path).await, created);
    let list = get(&app, "/api/v1/calendar/templates").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[1], created);

    let (code, updated) = call(
        &app,
        Method::PUT,
        &path,
        Some(
            json!({"name": "MCX", "exchange": "MCX", "timezone": "Europe/London",
                    "is_active": false}),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "MCX");
    assert_eq!(updated["timezone"], "Europe/London");
    assert_eq!(updated["is_active"], false);
    assert_eq!(updated["description"], Value::Null);
    assert_eq!(updated["created_at"], created["created_at"]);
    assert_eq!(get(&app, &path).await, updated);

    // Names are unique.
    let (code, body) = call(
        &app,
        Method::POST,
        "/api/v1/calendar/templates",
        Some(json!({"name": "NSE Default", "exchange": "NSE", "timezone": "Asia/Kolkata"})),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    let (code, _) = call(
        &app,
        Method::PUT,
        &path,
        Some(json!({"name": "NSE Default", "exchange": "NSE", "timezone": "Asia/Kolkata"})),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(get(&app, &path).await, updated);

    // Deleting takes the template's sessions with it.
    create(
        &app,
        "/api/v1/calendar/sessions",
        json!({"template_id": id, "weekday": 0, "start_time": "09:00", "end_time": "23:30",
               "session_type": "normal"}),
    )
    .await;
    let (code, _) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let sessions = get(&app, &format!("/api/v1/calendar/sessions?template_id={id}")).await;
    assert_eq!(sessions, json!([]));
    for method in [Method::GET, Method::DELETE] {
        let (code, body) = call(&app, method.clone(), &path, None).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    let (code, _) = call(
        &app,
        Method::PUT,
        &path,
        Some(json!({"name": "Gone", "exchange": "NSE", "timezone": "Asia/Kolkata"})),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn sessions_round_trip() {
    let (app, _clock) = manual_app(tuesday(10, 0, 0)).await;
    let templates = get(&app, "/api/v1/calendar/templates").await;
    let nse = templates[0]["id"].as_i64().unwrap();
    let seeded = get(
        &app,
        &format!("/api/v1/calendar/sessions?template_id={nse}"),
    )
    .await;
    assert_eq!(seeded.as_array().unwrap().len(), 10);
    assert_eq!(seeded[0]["weekday"], 0);
    assert_eq!(seeded[0]["start_time"], "09:00:00");
    assert_eq!(seeded[0]["session_type"], "pre_open");

    let created = create(
        &app,
        "/api/v1/calendar/sessions",
        json!({"template_id": nse, "weekday": 5, "start_time": "10:00",
               "end_time": "11:00:30", "session_type": "normal"}),
    )
    .await;
    assert_eq!(created["start_time"], "10:00:00");
    assert_eq!(created["end_time"], "11:00:30");
    assert_eq!(created["is_active"], true);
    let id = created["id"].as_i64().unwrap();
    let listed = get(&app, "/api/v1/calendar/sessions").await;
    assert!(listed.as_array().unwrap().contains(&created));

    let path = format!("/api/v1/calendar/sessions/{id}");
    let (code, updated) = call(
        &app,
        Method::PUT,
        &path,
        Some(
            json!({"template_id": nse, "weekday": 6, "start_time": "09:00",
                    "end_time": "09:10", "session_type": "pre_open", "is_active": false}),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["id"], created["id"]);
    assert_eq!(updated["weekday"], 6);
    assert_eq!(updated["session_type"], "pre_open");
    assert_eq!(updated["is_active"], false);
    let listed = get(
        &app,
        &format!("/api/v1/calendar/sessions?template_id={nse}"),
    )
    .await;
    assert!(listed.as_array().unwrap().contains(&updated));

    let (code, _) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, _) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = call(
        &app,
        Method::PUT,
        &path,
        Some(
            json!({"template_id": nse, "weekday": 1, "start_time": "09:00",
                    "end_time": "10:00", "session_type": "normal"}),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&app, "/api/v1/calendar/sessions")
            .await
            .as_array()
            .unwrap()
            .len(),
        10
    );
}

#[actix_web::test]
async fn holidays_round_trip() {
    let (app, _clock) = manual_app(tuesday(10, 0, 0)).await;
    let seeded = get(&app, "/api/v1/calendar/holidays?year=2026&exchange=nse").await;
    assert_eq!(seeded.as_array().unwrap().len(), 15);
    assert_eq!(seeded[0]["date"], "2026-01-26");
    assert_eq!(seeded[0]["name"], "Republic Day");
    assert_eq!(
        get(&app, "/api/v1/calendar/holidays?year=2025").await,
        json!([])
    );
    assert_eq!(
        get(&app, "/api/v1/calendar/holidays?exchange=BSE").await,
        json!([])
    );

    let created = create(
        &app,
        "/api/v1/calendar/holidays",
        json!({"date": "2027-01-26", "name": "Republic Day", "exchange": "NSE"}),
    )
    .await;
    assert_eq!(created["date"], "2027-01-26");
    assert_eq!(created["is_active"], true);
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        get(&app, "/api/v1/calendar/holidays?year=2027").await,
        json!([created])
    );

    // One holiday per date and exchange.
    let (code, body) = call(
        &app,
        Method::POST,
        "/api/v1/calendar/holidays",
        Some(json!({"date": "2027-01-26", "name": "Again", "exchange": "nse"})),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2027-01-26")
    );
    // The same date on another exchange is fine.
    create(
        &app,
        "/api/v1/calendar/holidays",
        json!({"date": "2027-01-26", "name": "Republic Day", "exchange": "BSE"}),
    )
    .await;

    let path = format!("/api/v1/calendar/holidays/{id}");
    let (code, updated) = call(
        &app,
        Method::PUT,
        &path,
        Some(
            json!({"date": "2027-01-27", "name": "Moved", "exchange": "NSE",
                    "is_active": false}),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["date"], "2027-01-27");
    assert_eq!(updated["is_active"], false);
    // Moving onto a date the exchange already has is a conflict too.
    let (code, _) = call(
        &app,
        Method::PUT,
        &path,
        Some(json!({"date": "2026-12-25", "name": "Moved", "exchange": "NSE"})),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);

    let (code, _) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    for (method, body) in [
        (Method::DELETE, None),
        (
            Method::PUT,
            Some(json!({"date": "2027-01-27", "name": "x", "exchange": "NSE"})),
        ),
    ] {
        let (code, _) = call(&app, method, &path, body).await;
        assert_eq!(code, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        get(&app, "/api/v1/calendar/holidays?exchange=NSE")
            .await
            .as_array()
            .unwrap()
            .len(),
        15
    );
}

#[actix_web::test]
async fn special_sessions_round_trip() {
    let (app, _clock) = manual_app(tuesday(10, 0, 0)).await;
    assert_eq!(
        get(&app, "/api/v1/calendar/special-sessions").await,
        json!([])
    );
    let created = create(
        &app,
        "/api/v1/calendar/special-sessions",
        json!({"date": "2026-11-08", "name": "Muhurat Trading", "start_time": "18:00",
               "end_time": "19:15:00", "exchange": "NSE"}),
    )
    .await;
    assert_eq!(created["date"], "2026-11-08");
    assert_eq!(created["start_time"], "18:00:00");
    assert_eq!(created["end_time"], "19:15:00");
    assert_eq!(
        get(&app, "/api/v1/calendar/special-sessions").await,
        json!([created])
    );

    let path = format!("/api/v1/calendar/special-sessions/{}", created["id"]);
    let (code, updated) = call(
        &app,
        Method::PUT,
        &path,
        Some(
            json!({"date": "2026-11-08", "name": "Muhurat Trading", "start_time": "18:15",
                    "end_time": "19:15", "exchange": "NSE", "is_active": false}),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["start_time"], "18:15:00");
    assert_eq!(updated["is_active"], false);
    assert_eq!(
        get(&app, "/api/v1/calendar/special-sessions").await,
        json!([updated])
    );

    let (code, _) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, _) = call(&app, Method::DELETE, &path, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&app, "/api/v1/calendar/special-sessions").await,
        json!([])
    );
}

#[actix_web::test]
async fn invalid_input_is_422_and_changes_nothing() {
    let (app, _clock) = manual_app(tuesday(10, 0, 0)).await;
    let templates = get(&app, "/api/v1/calendar/templates").await;
    let nse = templates[0]["id"].as_i64().unwrap();
    let session = get(&app, "/api/v1/calendar/sessions").await[0]["id"].clone();
    let holiday = get(&app, "/api/v1/calendar/holidays").await[0]["id"].clone();
    let before = snapshot(&app).await;
    let phase_before = calendar(&app).await["phase"].clone();

    let template = |over: Value| {
        let mut body = json!({"name": "X", "exchange": "NSE", "timezone": "Asia/Kolkata"});
        for (k, v) in over.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let session_body = |over: Value| {
        let mut body = json!({"template_id": nse, "weekday": 1, "start_time": "09:15",
                              "end_time": "15:30", "session_type": "normal"});
        for (k, v) in over.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let holiday_body = |over: Value| {
        let mut body = json!({"date": "2026-12-31", "name": "X", "exchange": "NSE"});
        for (k, v) in over.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let special = |over: Value| {
        let mut body = json!({"date": "2026-12-31", "name": "X", "start_time": "18:00",
                              "end_time": "19:00", "exchange": "NSE"});
        for (k, v) in over.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let templates_path = "/api/v1/calendar/templates".to_string();
    let sessions_path = "/api/v1/calendar/sessions".to_string();
    let holidays_path = "/api/v1/calendar/holidays".to_string();
    let specials_path = "/api/v1/calendar/special-sessions".to_string();
    let cases: Vec<(Method, String, Value, &str)> = vec![
        (
            Method::POST,
            templates_path.clone(),
            template(json!({"name": "  "})),
            "name: ",
        ),
        (
            Method::POST,
            templates_path.clone(),
            template(json!({"timezone": "Asia/Mumbai"})),
            "timezone: ",
        ),
        (
            Method::POST,
            templates_path.clone(),
            template(json!({"exchange": "N SE"})),
            "exchange: ",
        ),
        (
            Method::POST,
            templates_path.clone(),
            template(json!({"colour": "red"})),
            "invalid body: unknown field",
        ),
        (
            Method::PUT,
            format!("{templates_path}/{nse}"),
            template(json!({"timezone": "IST"})),
            "timezone: ",
        ),
        (
            Method::POST,
            sessions_path.clone(),
            session_body(json!({"weekday": 7})),
            "weekday: ",
        ),
        (
            Method::POST,
            sessions_path.clone(),
            session_body(json!({"weekday": -1})),
            "weekday: ",
        ),
        (
            Method::POST,
            sessions_path.clone(),
            session_body(json!({"start_time": "9h15"})),
            "start_time: ",
        ),
        (
            Method::POST,
            sessions_path.clone(),
            session_body(json!({"end_time": "24:00"})),
            "end_time: ",
        ),
        (
            Method::POST,
            sessions_path.clone(),
            session_body(json!({"end_time": "09:00"})),
            "end_time: must be after start_time",
        ),
        (
            Method::POST,
            sessions_path.clone(),
            session_body(json!({"session_type": "auction"})),
            "session_type: ",
        ),
        (
            Method::POST,
            sessions_path.clone(),
            session_body(json!({"template_id": 9999})),
            "template_id: ",
        ),
        (
            Method::POST,
            sessions_path.clone(),
            session_body(json!({"day": 1})),
            "invalid body: unknown field",
        ),
        (
            Method::PUT,
            format!("{sessions_path}/{session}"),
            session_body(json!({"weekday": 9})),
            "weekday: ",
        ),
        (
            Method::POST,
            holidays_path.clone(),
            holiday_body(json!({"date": "31/12/2026"})),
            "date: ",
        ),
        (
            Method::POST,
            holidays_path.clone(),
            holiday_body(json!({"date": "2026-02-30"})),
            "date: ",
        ),
        (
            Method::POST,
            holidays_path.clone(),
            holiday_body(json!({"name": ""})),
            "name: ",
        ),
        (
            Method::POST,
            holidays_path.clone(),
            holiday_body(json!({"exchange": ""})),
            "exchange: ",
        ),
        (
            Method::PUT,
            format!("{holidays_path}/{holiday}"),
            holiday_body(json!({"date": "tomorrow"})),
            "date: ",
        ),
        (
            Method::POST,
            specials_path.clone(),
            special(json!({"end_time": "18:00"})),
            "end_time: must be after start_time",
        ),
        (
            Method::POST,
            specials_path.clone(),
            special(json!({"end_time": "17:00"})),
            "end_time: must be after start_time",
        ),
        (
            Method::POST,
            specials_path.clone(),
            special(json!({"date": "2026-13-01"})),
            "date: ",
        ),
        (
            Method::POST,
            specials_path.clone(),
            special(json!({"name": " "})),
            "name: ",
        ),
        (
            Method::POST,
            specials_path.clone(),
            special(json!({"start_time": "6pm"})),
            "start_time: ",
        ),
    ];
    for (method, path, body, prefix) in cases {
        let (code, answer) = call(&app, method.clone(), &path, Some(body.clone())).await;
        assert_eq!(
            code,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path} {body}: {answer}"
        );
        assert_eq!(answer["error"]["code"], "unprocessable");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(prefix),
            "{method} {path} {body}: {message}"
        );
    }
    assert_eq!(snapshot(&app).await, before, "the database changed");
    assert_eq!(calendar(&app).await["phase"], phase_before);

    let (code, body) = call(&app, Method::GET, "/api/v1/calendar/templates/abc", None).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
}

// ---- the holiday list running out ----

/// `GET /health` (open): status code and body.
async fn health(app: &TestApp) -> (StatusCode, Value) {
    let mut resp = app.client.get(app.url("/health")).send().await.unwrap();
    let status = resp.status();
    (status, crate::helpers::json_body(&mut resp).await)
}

/// Waits until `/metrics` shows `want` warnings (a scrape reads a snapshot up to a second old).
async fn wait_for_gauge(app: &TestApp, want: f64) {
    poll_until(Duration::from_secs(10), "the warnings gauge", || async {
        (warnings_gauge(app).await == want).then_some(())
    })
    .await;
}

async fn warnings_gauge(app: &TestApp) -> f64 {
    metrics_of(&app.address).await["supervisor_calendar_warnings"]
}

/// POSTs a holiday list with the given Content-Type; returns status and body.
async fn import(app: &TestApp, content_type: &str, body: &str) -> (StatusCode, Value) {
    let mut resp = app
        .post("/api/v1/calendar/holidays/import")
        .insert_header(("Content-Type", content_type))
        .send_body(body.to_string())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.body().await.unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

/// Checks an error answer's status and code; returns its message.
fn refusal(answer: &(StatusCode, Value), status: StatusCode, code: &str) -> String {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Test data for 2027 (not NSE's list: that is published each December).
const HOLIDAYS_2027: &str = "date,name,exchange\n\
                             2027-01-26,Republic Day,nse\n\
                             2027-03-10,\"Test holiday, with a comma\",NSE\n";

#[actix_web::test]
async fn the_holiday_list_running_out_warns_until_the_year_is_imported() {
    // 2026-12-10, after the close: the next 30 days reach 2027, for which nothing is loaded.
    // (During market hours a service without a feed account would be degraded for that too.)
    let (app, clock) = manual_app(ist(2026, 12, 10, 20, 0, 0)).await;

    let status = calendar(&app).await;
    let warnings = status["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{status}");
    assert_eq!(warnings[0]["exchange"], "NSE");
    assert_eq!(warnings[0]["year"], 2027);
    assert_eq!(warnings[0]["from"], "2027-01-01");
    let message = warnings[0]["message"].as_str().unwrap();
    assert!(
        message
            .starts_with("no holidays loaded for NSE in 2027 (the next 30 days reach 2027-01-01)"),
        "{message}"
    );
    // An operator problem, not a broken actor.
    assert_eq!(status["state"], "Running");

    let (code, body) = health(&app).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["database"]["reachable"], true);
    assert_eq!(body["reasons"], json!([format!("calendar: {message}")]));
    wait_for_gauge(&app, 1.0).await;

    let (code, report) = import(&app, "text/csv", HOLIDAYS_2027).await;
    assert_eq!(code, StatusCode::OK, "{report}");
    assert_eq!(report, json!({"inserted": 2, "skipped": []}));
    // No polling: the import answered once the calendar had reloaded.
    assert_eq!(calendar(&app).await["warnings"], json!([]));
    let (code, body) = health(&app).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["reasons"], json!([]));
    wait_for_gauge(&app, 0.0).await;

    // A year later the window reaches 2028: the warning follows the clock.
    clock.set(ist(2027, 12, 10, 20, 0, 0));
    let status = poll_until(Duration::from_secs(10), "a warning for 2028", || async {
        let status = calendar(&app).await;
        (status["warnings"].as_array().unwrap().len() == 1).then_some(status)
    })
    .await;
    assert_eq!(status["warnings"][0]["year"], 2028);
    assert_eq!(health(&app).await.1["status"], "degraded");
    wait_for_gauge(&app, 1.0).await;
}

#[actix_web::test]
async fn no_warning_while_the_loaded_holidays_reach_30_days_ahead() {
    let (app, clock) = manual_app(ist(2026, 11, 1, 10, 0, 0)).await;
    assert_eq!(calendar(&app).await["warnings"], json!([]));
    let (code, body) = health(&app).await;
    assert_eq!((code, &body["status"]), (StatusCode::OK, &json!("ok")));
    wait_for_gauge(&app, 0.0).await;

    // The last second whose 30 days stay in 2026, then the first that reaches 2027.
    clock.set(ist(2026, 12, 1, 23, 59, 59));
    assert_eq!(calendar(&app).await["warnings"], json!([]));
    clock.set(ist(2026, 12, 2, 0, 0, 0));
    let status = poll_until(Duration::from_secs(10), "the 2027 warning", || async {
        let status = calendar(&app).await;
        (status["warnings"] != json!([])).then_some(status)
    })
    .await;
    assert_eq!(status["warnings"][0]["year"], 2027);

    // An inactive holiday does not count as loaded.
    let (code, _) = import(
        &app,
        "application/json",
        r#"[{"date": "2027-01-26", "name": "Republic Day", "exchange": "NSE",
             "is_active": false}]"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(calendar(&app).await["warnings"][0]["year"], 2027);

    // With the market always open the calendar is not consulted, and nothing is warned about.
    let clock = Arc::new(ManualClock::new(ist(2026, 12, 10, 10, 0, 0)));
    let always = spawn_app_with_clock(|s| s.calendar.always_open = true, clock).await;
    assert_eq!(calendar(&always).await["warnings"], json!([]));
    let reasons = health(&always).await.1["reasons"].clone();
    assert!(
        !reasons
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("calendar")),
        "{reasons}"
    );
}

// ---- importing holidays ----

async fn holidays_of(app: &TestApp, year: i32) -> Value {
    get(app, &format!("/api/v1/calendar/holidays?year={year}")).await
}

#[actix_web::test]
async fn an_invalid_row_imports_nothing_and_every_invalid_line_is_named() {
    let (app, _clock) = manual_app(tuesday(10, 0, 0)).await;
    let csv = "date,name,exchange\n\
               2027-01-26,Republic Day,NSE\n\
               2027-02-30,Not a date,NSE\n\
               2027-03-10,,NSE\n\
               2027-04-14,No exchange,\n\
               2027-05-01,Odd exchange,N/A\n";
    let answer = import(&app, "text/csv", csv).await;
    let message = refusal(&answer, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    let body = answer.1;
    assert!(
        message.starts_with("4 invalid rows, nothing was imported: line 3: date: "),
        "{message}"
    );
    for part in [
        "line 4: name: must not be empty",
        "line 5: exchange: must not be empty",
        "line 6: exchange: must contain only",
    ] {
        assert!(message.contains(part), "{part} in {message}");
    }
    let lines: Vec<&Value> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["line"])
        .collect();
    assert_eq!(lines, [&json!(3), &json!(4), &json!(5), &json!(6)]);
    assert!(
        body["error"]["details"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("date: ")
    );
    assert_eq!(holidays_of(&app, 2027).await, json!([]), "nothing stored");

    // A file without the header is refused as a whole, naming what it expected.
    let answer = import(&app, "text/csv", "2027-01-26,Republic Day,NSE\n").await;
    let message = refusal(&answer, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    assert!(
        message.contains("expected the header date,name,exchange"),
        "{message}"
    );
    assert_eq!(holidays_of(&app, 2027).await, json!([]));
}

#[actix_web::test]
async fn duplicates_are_skipped_and_importing_again_inserts_nothing() {
    let (app, _clock) = manual_app(tuesday(10, 0, 0)).await;
    let csv = "date,name,exchange\n\
               2027-01-26,Republic Day,NSE\n\
               2027-03-10,Test holiday,NSE\n\
               2027-01-26,Republic Day again,nse\n\
               2026-12-25,Christmas,NSE\n";
    let (code, report) = import(&app, "text/csv; charset=utf-8", csv).await;
    assert_eq!(code, StatusCode::OK, "{report}");
    assert_eq!(
        report,
        json!({"inserted": 2, "skipped": [
            {"line": 4, "date": "2027-01-26", "exchange": "NSE", "reason": "repeats line 2"},
            {"line": 5, "date": "2026-12-25", "exchange": "NSE", "reason": "already present"},
        ]})
    );
    let stored = holidays_of(&app, 2027).await;
    let names: Vec<&str> = stored
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Republic Day", "Test holiday"]);
    // The seeded Christmas is untouched.
    assert_eq!(holidays_of(&app, 2026).await.as_array().unwrap().len(), 15);

    // The same import again: idempotent.
    let (code, again) = import(&app, "text/csv", csv).await;
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["inserted"], 0);
    let reasons: Vec<(u64, &str)> = again["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["line"].as_u64().unwrap(), s["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        [
            (2, "already present"),
            (3, "already present"),
            (4, "repeats line 2"),
            (5, "already present"),
        ]
    );
    assert_eq!(holidays_of(&app, 2027).await, stored);
}

#[actix_web::test]
async fn a_json_array_imports_like_the_create_endpoint_takes_holidays() {
    let (app, _clock) = manual_app(tuesday(10, 0, 0)).await;
    let invalid = r#"[
        {"date": "2027-01-26", "name": "Republic Day", "exchange": "NSE"},
        {"date": "2027-03-10", "name": "", "exchange": "NSE"},
        {"date": "2027-04-14", "name": "Extra", "exchange": "NSE", "colour": "red"}
    ]"#;
    let answer = import(&app, "application/json", invalid).await;
    let message = refusal(&answer, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    assert!(
        message.contains("item 1: name: must not be empty"),
        "{message}"
    );
    assert!(
        message.contains("item 2: unknown field `colour`"),
        "{message}"
    );
    assert_eq!(answer.1["error"]["details"][0]["item"], 1);
    assert_eq!(holidays_of(&app, 2027).await, json!([]));

    let list = r#"[
        {"date": "2027-01-26", "name": "Republic Day", "exchange": "nse"},
        {"date": "2027-03-10", "name": "Test holiday", "exchange": "BSE", "is_active": false},
        {"date": "2027-01-26", "name": "Twice", "exchange": "NSE"}
    ]"#;
    let (code, report) = import(&app, "application/json", list).await;
    assert_eq!(code, StatusCode::OK, "{report}");
    assert_eq!(
        report,
        json!({"inserted": 2, "skipped": [
            {"item": 2, "date": "2027-01-26", "exchange": "NSE", "reason": "repeats item 0"},
        ]})
    );
    let stored = holidays_of(&app, 2027).await;
    assert_eq!(stored[0]["exchange"], "NSE");
    assert_eq!(stored[1]["exchange"], "BSE");
    assert_eq!(stored[1]["is_active"], false);

    // Not JSON, or not an array.
    let answer = import(&app, "application/json", "[{").await;
    refusal(&answer, StatusCode::BAD_REQUEST, "bad_request");
    let answer = import(&app, "application/json", r#"{"date": "2027-01-26"}"#).await;
    refusal(&answer, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    assert_eq!(holidays_of(&app, 2027).await, stored);
}

#[actix_web::test]
async fn an_import_needs_a_known_content_type_and_a_body_within_the_limit() {
    let clock = Arc::new(ManualClock::new(tuesday(10, 0, 0)));
    let app = spawn_app_with_clock(|s| s.server.body_limit_bytes = 4096, clock).await;
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let answer = import(&app, content_type, HOLIDAYS_2027).await;
        let message = refusal(
            &answer,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
        assert!(
            message.contains("text/csv") && message.contains("application/json"),
            "{message}"
        );
    }
    let mut resp = app
        .post("/api/v1/calendar/holidays/import")
        .send_body(HOLIDAYS_2027)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let body = crate::helpers::json_body(&mut resp).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("not none")
    );

    let mut big = String::from("date,name,exchange\n");
    while big.len() <= 4096 {
        big.push_str("2027-01-26,Republic Day,NSE\n");
    }
    let answer = import(&app, "text/csv", &big).await;
    refusal(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(holidays_of(&app, 2027).await, json!([]));

    // Without the token, like every /api route.
    let resp = app
        .client
        .post(app.url("/api/v1/calendar/holidays/import"))
        .insert_header(("Content-Type", "text/csv"))
        .send_body(HOLIDAYS_2027)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(holidays_of(&app, 2027).await, json!([]));
}

/// Runs `supervisor calendar import FILE` against the database at `url`.
fn run_import(url: &str, file: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .args(["calendar", "import"])
        .arg(file)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DATABASE_URL")
        .env("SUPERVISOR__DATABASE__URL", url)
        .output()
        .unwrap()
}

async fn stored_holidays(url: &str, year: i32) -> Vec<market_holidays::Model> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let db = database::connect(&DatabaseSettings {
        url: url.into(),
        max_connections: 1,
    })
    .await
    .unwrap();
    let first = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
    let last = NaiveDate::from_ymd_opt(year, 12, 31).unwrap();
    let rows = entity::prelude::MarketHolidays::find()
        .filter(market_holidays::Column::Date.between(first, last))
        .all(&db)
        .await
        .unwrap();
    db.close().await.unwrap();
    rows
}

#[actix_web::test]
async fn the_import_command_loads_a_file_into_a_fresh_database() {
    let test_db = fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("holidays-2027.csv");
    std::fs::write(&file, HOLIDAYS_2027).unwrap();

    // The database is created and migrated first (the seeded 2026 list is there too).
    let out = run_import(&test_db.url, &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("inserted 2, skipped 0 duplicates"),
        "{stdout}"
    );
    assert_eq!(stored_holidays(&test_db.url, 2027).await.len(), 2);
    assert_eq!(stored_holidays(&test_db.url, 2026).await.len(), 15);

    let out = run_import(&test_db.url, &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("inserted 0, skipped 2 duplicates"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 2: NSE 2027-01-26 already present"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "date,name,exchange\n2027-06-01,Fine,NSE\n2027-06-31,Bad date,NSE\n",
    )
    .unwrap();
    let out = run_import(&test_db.url, &bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("1 invalid row, nothing was imported"),
        "{stderr}"
    );
    assert!(stderr.contains("line 3: date: \"2027-06-31\""), "{stderr}");
    assert_eq!(stored_holidays(&test_db.url, 2027).await.len(), 2);

    // The library function behind it; a file without a telling extension is sniffed.
    let json = dir.path().join("holidays.txt");
    std::fs::write(
        &json,
        r#"[{"date": "2027-06-01", "name": "Test holiday", "exchange": "MCX"}]"#,
    )
    .unwrap();
    let settings = DatabaseSettings {
        url: test_db.url.clone(),
        max_connections: 1,
    };
    let report = trading_supervisor::cli::import_holidays(&settings, &json)
        .await
        .unwrap();
    assert_eq!(report.inserted, 1);
    assert!(report.skipped.is_empty());
    let mcx: Vec<_> = stored_holidays(&test_db.url, 2027)
        .await
        .into_iter()
        .filter(|h| h.exchange == "MCX")
        .collect();
    assert_eq!(mcx.len(), 1);
}

// ---- the actor ----

/// Forwards every phase change it receives to the test.
struct Recorder(mpsc::UnboundedSender<PhaseChanged>);

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<PhaseChanged> for Recorder {
    type Result = ();

    fn handle(&mut self, msg: PhaseChanged, _ctx: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

async fn next_change(rx: &mut mpsc::UnboundedReceiver<PhaseChanged>) -> PhaseChanged {
    actix_rt::time::timeout(Duration::from_secs(45), rx.recv())
        .await
        .expect("a phase change within 45 s")
        .expect("recorder alive")
}

struct ActorFixture {
    db: DatabaseConnection,
    calendar: Addr<CalendarActor>,
    changes: mpsc::UnboundedReceiver<PhaseChanged>,
    _database: TestDatabase,
}

async fn start_actor(clock: SharedClock) -> ActorFixture {
    let database = fresh_database().await;
    let db = database::connect(&DatabaseSettings {
        url: database.url.clone(),
        max_connections: 2,
    })
    .await
    .unwrap();
    database::migrate(&db).await.unwrap();
    let settings = CalendarSettings {
        pre_open_buffer: Duration::from_secs(900),
        always_open: false,
        supervision: Supervision {
            max_restarts: 5,
            window: Duration::from_secs(60),
        },
    };
    let actor_db = db.clone();
    let calendar = actix::Supervisor::start(move |_| CalendarActor::new(actor_db, clock, settings));
    let (tx, changes) = mpsc::unbounded_channel();
    let recorder = Recorder(tx).start();
    calendar
        .send(SubscribePhase(recorder.recipient()))
        .await
        .unwrap();
    ActorFixture {
        db,
        calendar,
        changes,
        _database: database,
    }
}

#[actix_web::test]
async fn phase_changes_are_broadcast_to_subscribers() {
    let clock = Arc::new(ManualClock::new(tuesday(10, 0, 0)));
    let mut f = start_actor(clock.clone()).await;

    // A new subscriber gets the current phase at once.
    let first = next_change(&mut f.changes).await;
    assert_eq!(first.phase, Phase::Open);
    assert_eq!(first.previous, None);
    assert_eq!(first.next_change, Some((tuesday(15, 30, 1), Phase::Closed)));

    let holiday = market_holidays::ActiveModel {
        date: Set(NaiveDate::from_ymd_opt(2026, 11, 17).unwrap()),
        name: Set("Unscheduled".into()),
        exchange: Set("NSE".into()),
        is_active: Set(true),
        ..Default::default()
    }
    .insert(&f.db)
    .await
    .unwrap();
    f.calendar.send(ReloadCalendar).await.unwrap().unwrap();
    let closed = next_change(&mut f.changes).await;
    assert_eq!(closed.phase, Phase::Closed);
    assert_eq!(closed.previous, Some(Phase::Open));
    assert_eq!(closed.at, tuesday(10, 0, 0));

    entity::prelude::MarketHolidays::delete_by_id(holiday.id)
        .exec(&f.db)
        .await
        .unwrap();
    f.calendar.send(ReloadCalendar).await.unwrap().unwrap();
    let reopened = next_change(&mut f.changes).await;
    assert_eq!(
        (reopened.phase, reopened.previous),
        (Phase::Open, Some(Phase::Closed))
    );

    // A reload that changes nothing broadcasts nothing; the clock moving does.
    f.calendar.send(ReloadCalendar).await.unwrap().unwrap();
    clock.set(tuesday(15, 30, 1));
    let after_close = next_change(&mut f.changes).await;
    assert_eq!(after_close.phase, Phase::Closed);
    assert_eq!(after_close.previous, Some(Phase::Open));
    assert_eq!(after_close.at, tuesday(15, 30, 1));
    assert_eq!(
        after_close.next_change,
        Some((ist(2026, 11, 18, 9, 0, 0), Phase::PreOpen))
    );
    assert!(f.changes.try_recv().is_err(), "no other broadcast");
}

#[actix_web::test]
async fn the_actor_wakes_at_the_next_boundary() {
    // Two seconds before the close, on a clock that runs in real time: nothing but the actor's
    // own timer can notice the boundary before the once-a-minute re-check.
    let target = tuesday(15, 30, 1);
    let clock = OffsetClock::starting_at(target - TimeDelta::seconds(2));
    let mut f = start_actor(Arc::new(clock)).await;
    assert_eq!(next_change(&mut f.changes).await.phase, Phase::Open);

    let closed = next_change(&mut f.changes).await;
    assert_eq!(closed.phase, Phase::Closed);
    assert!(closed.at >= target, "{} before the boundary", closed.at);
    // Woken by the re-check instead, it would be about a minute late; a slow machine is
    // seconds late at worst.
    assert!(
        closed.at - target < TimeDelta::seconds(30),
        "woke {} late",
        closed.at - target
    );
}

#[actix_web::test]
async fn bad_data_and_database_errors_degrade_without_losing_the_calendar() {
    let clock = Arc::new(ManualClock::new(tuesday(10, 0, 0)));
    let mut f = start_actor(clock.clone()).await;
    assert_eq!(next_change(&mut f.changes).await.phase, Phase::Open);

    // A template with a timezone the API would refuse: ignored, shown, Degraded.
    trading_hours_templates::ActiveModel {
        name: Set("Broken".into()),
        exchange: Set("NSE".into()),
        timezone: Set("Asia/Bombay Standard".into()),
        is_active: Set(true),
        ..Default::default()
    }
    .insert(&f.db)
    .await
    .unwrap();
    f.calendar.send(ReloadCalendar).await.unwrap().unwrap();
    let status = f.calendar.send(GetCalendarStatus).await.unwrap();
    assert_eq!(status.state, Lifecycle::Degraded);
    assert_eq!(status.phase, Phase::Open);
    assert_eq!(status.templates.len(), 2);
    let broken = status
        .templates
        .iter()
        .find(|t| t.name == "Broken")
        .unwrap();
    assert!(broken.error.as_deref().unwrap().contains("timezone"));
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("Asia/Bombay Standard")
    );

    // The database goes away: the reload fails, the last good calendar stays in force.
    let loaded_at = status.loaded_at;
    f.db.close_by_ref().await.unwrap();
    let err = f.calendar.send(ReloadCalendar).await.unwrap().unwrap_err();
    assert!(err.contains("loading the calendar"), "{err}");
    let status = f.calendar.send(GetCalendarStatus).await.unwrap();
    assert_eq!(status.state, Lifecycle::Degraded);
    assert_eq!(status.phase, Phase::Open);
    assert_eq!(status.loaded_at, loaded_at);
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap()
            .contains("loading the calendar")
    );
    assert_eq!(status.templates.len(), 2);

    // And it still follows the clock on the calendar it has.
    clock.set(tuesday(15, 30, 1));
    assert_eq!(next_change(&mut f.changes).await.phase, Phase::Closed);
}
