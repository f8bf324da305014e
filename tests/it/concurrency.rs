//! Parallel writes of every kind never fail for lack of a database lock (docs/liveness.md):
//! strategy create, update and delete (two deletes of each strategy at once), risk limits,
//! executions, calendar edits and account edits, all fired at once, on both backends.

use std::time::{Duration, Instant};

use actix_web::http::Method;
use serde_json::{Value, json};

use crate::helpers::{TEST_ENCRYPTION_KEY, TestApp, spawn_app_with};

/// One request's status and how long it took.
async fn timed(
    app: &TestApp,
    method: Method,
    path: String,
    body: Option<Value>,
) -> (u16, Duration) {
    let started = Instant::now();
    let req = app
        .client
        .request(method, app.url(&path))
        .bearer_auth(&app.token);
    let mut resp = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    if status >= 500 {
        let body = resp.body().await.unwrap_or_default();
        eprintln!("{path} → {status}: {}", String::from_utf8_lossy(&body));
    }
    (status, started.elapsed())
}

async fn created(app: &TestApp, path: &str, body: Value) -> i64 {
    let (status, v) = app.post_json(path, &body).await;
    assert_eq!(status, 201, "{path} {body}: {v}");
    v["id"].as_i64().unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Fires every request at once; returns the statuses and prints the latencies.
async fn fire(
    app: &TestApp,
    what: &str,
    requests: Vec<(Method, String, Option<Value>)>,
) -> Vec<u16> {
    let n = requests.len();
    let started = Instant::now();
    let answers =
        futures_util::future::join_all(requests.into_iter().map(|(m, p, b)| timed(app, m, p, b)))
            .await;
    let wall = started.elapsed();
    let mut times: Vec<Duration> = answers.iter().map(|(_, t)| *t).collect();
    times.sort();
    let failed = answers.iter().filter(|(s, _)| *s >= 500).count();
    println!(
        "{what}: {n} requests, {failed} 5xx, latency p50 {:?} p99 {:?} max {:?}, all in {wall:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[n - 1],
    );
    answers.into_iter().map(|(s, _)| s).collect()
}

#[actix_web::test]
async fn parallel_deletes_of_the_same_strategies_never_fail() {
    let app = spawn_app_with(|_| {}).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(created(&app, "/api/v1/strategies", json!({"name": format!("s{i}")})).await);
    }
    // Two deletes of each strategy at once: 40 deletes.
    let requests = ids
        .iter()
        .chain(ids.iter())
        .map(|id| (Method::DELETE, format!("/api/v1/strategies/{id}"), None))
        .collect();
    let statuses = fire(&app, "40 parallel deletes of 20 strategies", requests).await;
    assert!(
        statuses.iter().all(|s| *s == 204 || *s == 404),
        "{statuses:?}"
    );
    // Each strategy is deleted once; the other delete finds it gone.
    assert_eq!(statuses.iter().filter(|s| **s == 204).count(), 20);
    let list = app.get_json("/api/v1/strategies").await;
    assert_eq!(
        list["strategies"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
}

#[actix_web::test]
async fn parallel_writes_of_every_kind_never_fail() {
    let app = spawn_app_with(|s| s.security.encryption_key = TEST_ENCRYPTION_KEY.into()).await;
    let account = |name: &str| {
        json!({"name": name, "broker": "sim", "rest_url": "http://127.0.0.1:9",
               "ws_url": "ws://127.0.0.1:9", "api_key": format!("key-{name}-0123456789")})
    };
    let account_id = created(&app, "/api/v1/accounts", account("main")).await;
    let mut strategies = Vec::new();
    for i in 0..40 {
        strategies.push(
            created(
                &app,
                "/api/v1/strategies",
                json!({"name": format!("existing-{i}"), "max_loss": 1000.0}),
            )
            .await,
        );
    }
    let mut holidays = Vec::new();
    for day in 1..=10 {
        holidays.push(
            created(
                &app,
                "/api/v1/calendar/holidays",
                json!({"date": format!("2027-03-{day:02}"), "name": "test", "exchange": "NSE"}),
            )
            .await,
        );
    }
    let (to_delete, rest) = strategies.split_at(10);
    let (to_update, rest) = rest.split_at(10);
    let (to_limit, to_fill) = rest.split_at(10);
    let mut requests: Vec<(Method, String, Option<Value>)> = Vec::new();
    for i in 0..10 {
        requests.push((
            Method::POST,
            "/api/v1/strategies".into(),
            Some(json!({"name": format!("new-{i}")})),
        ));
    }
    for id in to_delete.iter().chain(to_delete.iter()) {
        requests.push((Method::DELETE, format!("/api/v1/strategies/{id}"), None));
    }
    for id in to_update {
        requests.push((
            Method::PUT,
            format!("/api/v1/strategies/{id}"),
            Some(json!({"description": "renamed in parallel"})),
        ));
    }
    for id in to_limit {
        requests.push((
            Method::PUT,
            format!("/api/v1/strategies/{id}/risk"),
            Some(json!({"max_loss": 500.0, "max_profit": 900.0})),
        ));
    }
    for id in to_fill.iter().chain(to_fill.iter()) {
        requests.push((
            Method::POST,
            "/api/v1/executions".into(),
            Some(
                json!({"strategy_id": id, "account_id": account_id, "symbol": "INFY",
                        "exchange": "NSE", "product": "MIS", "action": "BUY",
                        "quantity": 10, "entry_price": 100.0}),
            ),
        ));
    }
    for day in 11..=20 {
        requests.push((
            Method::POST,
            "/api/v1/calendar/holidays".into(),
            Some(json!({"date": format!("2027-03-{day:02}"), "name": "new", "exchange": "NSE"})),
        ));
    }
    for id in &holidays[..5] {
        requests.push((
            Method::PUT,
            format!("/api/v1/calendar/holidays/{id}"),
            Some(
                json!({"date": format!("2027-04-{:02}", id % 28 + 1), "name": "moved",
                        "exchange": "NSE"}),
            ),
        ));
    }
    for id in &holidays[5..] {
        requests.push((
            Method::DELETE,
            format!("/api/v1/calendar/holidays/{id}"),
            None,
        ));
    }
    for i in 0..5 {
        requests.push((
            Method::POST,
            "/api/v1/accounts".into(),
            Some(account(&format!("extra-{i}"))),
        ));
        requests.push((
            Method::PUT,
            format!("/api/v1/accounts/{account_id}"),
            Some(json!({"broker": format!("sim-{i}")})),
        ));
    }
    let n = requests.len();
    let statuses = fire(&app, "parallel writes of every kind", requests).await;
    assert_eq!(statuses.len(), n);
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s >= 500).collect();
    assert!(failed.is_empty(), "{failed:?} of {statuses:?}");
    // Everything that could succeed did: the deletes once each, every fill, every create.
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        10 + 20 + 10 + 5
    );
    let strategies = app.get_json("/api/v1/strategies").await;
    assert_eq!(
        strategies["strategies"].as_array().unwrap().len(),
        40 - 10 + 10
    );
    let positions = app.get_json("/api/v1/positions").await;
    assert_eq!(positions["positions"].as_array().unwrap().len(), 20);
}
