//! The HTTP API of strategies, executions, positions and risk events through the full app:
//! CRUD, validation (422 naming the field) and bad input changing nothing.

use actix_web::http::StatusCode;
use chrono::Utc;
use entity::strategies;
use entity::strategy_executions::{self, ExecutionStatus, Product, TradeAction};
use entity::trading_accounts;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait, PaginatorTrait,
};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json_body, spawn_app};

async fn call(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = match method {
        "GET" => app.client.get(app.url(path)),
        "POST" => app.client.post(app.url(path)),
        "PUT" => app.client.put(app.url(path)),
        "DELETE" => app.client.delete(app.url(path)),
        other => panic!("method {other}"),
    }
    .bearer_auth(&app.token);
    let mut resp = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .expect("request");
    let status = resp.status();
    let value = if status == StatusCode::NO_CONTENT {
        Value::Null
    } else {
        json_body(&mut resp).await
    };
    (status, value)
}

/// Asserts a 422 whose message names `field`.
async fn rejected(app: &TestApp, method: &str, path: &str, body: Value, field: &str) {
    let (status, v) = call(app, method, path, Some(body.clone())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {v}");
    assert_eq!(v["error"]["code"], "unprocessable");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(field),
        "{body}: {message:?} should name {field}"
    );
}

async fn db(app: &TestApp) -> DatabaseConnection {
    sea_orm::Database::connect(app.database.url.as_str())
        .await
        .expect("connect")
}

async fn account(db: &DatabaseConnection) -> i32 {
    trading_accounts::ActiveModel {
        name: Set("acct".into()),
        broker: Set("sim".into()),
        rest_url: Set("http://127.0.0.1:1".into()),
        ws_url: Set("ws://127.0.0.1:1".into()),
        api_key_ciphertext: Set("x".into()),
        api_key_hint: Set("abcd…".into()),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap()
    .id
}

/// A connection to the app's database, an account and a strategy (its id) to register legs on.
async fn with_strategy(app: &TestApp, name: &str) -> (DatabaseConnection, i32, i64) {
    let conn = db(app).await;
    let account_id = account(&conn).await;
    let (status, s) = call(
        app,
        "POST",
        "/api/v1/strategies",
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    (conn, account_id, s["id"].as_i64().unwrap())
}

#[actix_web::test]
async fn strategies_crud_and_risk_limit_validation() {
    let app = spawn_app().await;
    let (status, s) = call(
        &app,
        "POST",
        "/api/v1/strategies",
        Some(json!({"name": " alpha ", "max_loss": 1000.0})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    let id = s["id"].as_i64().unwrap();
    assert_eq!(s["name"], "alpha");
    assert_eq!(s["max_loss"], 1000.0);
    assert_eq!(
        (s["state"].as_str(), s["run_id"].as_i64()),
        (Some("monitoring"), Some(0))
    );
    assert!(s["live"].is_null());

    let (status, v) = call(
        &app,
        "POST",
        "/api/v1/strategies",
        Some(json!({"name": "alpha"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    for (body, field) in [
        (json!({"name": "b", "max_loss": -5}), "max_loss"),
        (json!({"name": ""}), "name"),
        (json!({"name": "b", "colour": "red"}), "colour"),
        (
            json!({"name": "b", "trailing_sl_type": "amount"}),
            "trailing_sl_value",
        ),
    ] {
        rejected(&app, "POST", "/api/v1/strategies", body, field).await;
    }

    let path = format!("/api/v1/strategies/{id}");
    let risk = format!("{path}/risk");
    for (body, field) in [
        (json!({"max_loss": -1}), "max_loss"),
        (json!({"max_loss": 0}), "max_loss"),
        (json!({"max_profit": "lots"}), "max_profit"),
        (json!({"trailing_sl_type": "amount"}), "trailing_sl_value"),
        (json!({"trailing_sl_value": 5}), "trailing_sl_type"),
        (json!({"trailing_activation": 10}), "trailing_activation"),
        (
            json!({"trailing_sl_type": "ladder", "trailing_sl_value": 1}),
            "trailing_sl_type",
        ),
        (
            json!({"trailing_sl_type": "points", "trailing_sl_value": -2}),
            "trailing_sl_value",
        ),
        (
            json!({"trailing_sl_type": "percentage", "trailing_sl_value": 150}),
            "trailing_sl_value",
        ),
        (
            json!({"trailing_sl_type": "amount", "trailing_sl_value": 100,
                   "trailing_activation": -1}),
            "trailing_activation",
        ),
        (
            json!({"max_profit": 500, "trailing_sl_type": "amount", "trailing_sl_value": 100,
                   "trailing_activation": 600}),
            "max_profit",
        ),
        (json!({"exit_confirm_ms": -1}), "exit_confirm_ms"),
        (json!({"exit_confirm_ms": 86_400_000}), "exit_confirm_ms"),
        (json!({"stop_loss": 5}), "stop_loss"),
    ] {
        rejected(&app, "PUT", &risk, body, field).await;
    }
    // Nothing changed.
    let (_, s) = call(&app, "GET", &path, None).await;
    assert_eq!(s["max_loss"], 1000.0);
    assert!(s["max_profit"].is_null() && s["trailing_sl_type"].is_null());

    let (status, s) = call(
        &app,
        "PUT",
        &risk,
        Some(
            json!({"trailing_sl_type": "POINTS", "trailing_sl_value": 2.5,
                    "trailing_activation": 100, "exit_confirm_ms": 250}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["trailing_sl_type"], "points");
    assert_eq!(s["trailing_sl_value"], 2.5);
    assert_eq!(s["trailing_activation"], 100.0);
    assert_eq!(s["exit_confirm_ms"], 250);
    assert_eq!(s["max_loss"], 1000.0, "fields not sent are kept");
    let (status, s) = call(&app, "PUT", &risk, Some(json!({"max_loss": null}))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(s["max_loss"].is_null(), "null removes a limit");
    assert_eq!(s["trailing_sl_type"], "points");

    let (status, s) = call(
        &app,
        "PUT",
        &path,
        Some(json!({"name": "alpha-2", "description": "hedged"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(
        (s["name"].as_str(), s["description"].as_str()),
        (Some("alpha-2"), Some("hedged"))
    );
    let (status, list) = call(&app, "GET", "/api/v1/strategies", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["strategies"].as_array().unwrap().len(), 1);

    for (method, p) in [
        ("GET", "/api/v1/strategies/999"),
        ("DELETE", "/api/v1/strategies/999"),
    ] {
        let (status, _) = call(&app, method, p, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {p}");
    }
    let (status, _) = call(&app, "PUT", "/api/v1/strategies/999/risk", Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = call(&app, "POST", &format!("{path}/exit"), Some(json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "no open legs to exit: {v}");

    // Resuming a paused strategy with no run open records the resume.
    let conn = db(&app).await;
    strategies::ActiveModel {
        id: Set(id as i32),
        risk_state: Set(strategies::RiskState::Paused),
        ..Default::default()
    }
    .update(&conn)
    .await
    .unwrap();
    let (status, s) = call(&app, "PUT", &risk, Some(json!({"resume": true}))).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["state"], "monitoring");
    assert_eq!(s["trailing_sl_value"], 2.5);
    let (_, events) = call(
        &app,
        "GET",
        &format!("/api/v1/risk-events?strategy_id={id}"),
        None,
    )
    .await;
    assert_eq!(events["events"][0]["event_type"], "resumed");
    let (status, _) = call(&app, "GET", "/api/v1/risk-events?limit=0", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(&app, "GET", "/api/v1/risk-events?limit=x", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[actix_web::test]
async fn executions_are_validated_and_strategies_with_open_legs_cannot_be_deleted() {
    let app = spawn_app().await;
    let (conn, account_id, strategy_id) = with_strategy(&app, "legs").await;
    let valid = json!({
        "strategy_id": strategy_id, "account_id": account_id, "symbol": "NIFTY28APR2625000CE",
        "exchange": "NFO", "product": "NRML", "action": "SELL", "quantity": 130,
        "entry_price": 182.35, "lot_size": 65, "freeze_qty": 1800,
    });
    let with = |field: &str, value: Value| {
        let mut b = valid.clone();
        b[field] = value;
        b
    };
    let with2 = |field: &str, value: Value, other: &str, other_value: Value| {
        let mut b = with(field, value);
        b[other] = other_value;
        b
    };
    let cases = [
        (with("quantity", json!(0)), "quantity"),
        (with("quantity", json!(-65)), "quantity"),
        (with("quantity", json!(1.5)), "quantity"),
        (with("quantity", json!(100)), "quantity"),
        (with("entry_price", json!(0)), "entry_price"),
        (with("entry_price", json!(-1.0)), "entry_price"),
        (with("action", json!("HOLD")), "action"),
        (with("product", json!("XYZ")), "product"),
        (with("lot_size", json!(0)), "lot_size"),
        (with("freeze_qty", json!(-1)), "freeze_qty"),
        (with("symbol", json!(" ")), "symbol"),
        (with("leverage", json!(5)), "leverage"),
        // Absurd fills: their P&L would be infinite, their exit a flood of orders.
        (with("quantity", json!(i64::MAX)), "quantity"),
        (with("quantity", json!(1e20)), "quantity"),
        (with("entry_price", json!(1e300)), "entry_price"),
        (with("entry_price", json!(10_000_000.5)), "entry_price"),
        (
            with2("quantity", json!(3_000_000), "lot_size", Value::Null),
            "risk.max_leg_quantity",
        ),
        // 650 000 × 20 000 = 1.3e10 above the notional cap of 1e10.
        (
            with2("quantity", json!(650_000), "entry_price", json!(20_000.0)),
            "risk.max_leg_notional",
        ),
        // 201 orders of the freeze quantity 65 (one lot), above 200.
        (
            with2("quantity", json!(201 * 65), "freeze_qty", json!(65)),
            "risk.max_exit_orders_per_leg",
        ),
        (with("freeze_qty", json!(2_000_000)), "freeze_qty"),
    ];
    for (body, field) in cases {
        rejected(&app, "POST", "/api/v1/executions", body, field).await;
    }
    for (field, value, what) in [
        ("strategy_id", json!(999), "strategy 999"),
        ("account_id", json!(999), "account 999"),
    ] {
        let (status, v) = call(&app, "POST", "/api/v1/executions", Some(with(field, value))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(what),
            "{v}"
        );
    }
    // Bad input changed nothing: no leg, no run.
    assert_eq!(
        strategy_executions::Entity::find()
            .count(&conn)
            .await
            .unwrap(),
        0
    );
    let (_, s) = call(
        &app,
        "GET",
        &format!("/api/v1/strategies/{strategy_id}"),
        None,
    )
    .await;
    assert_eq!(s["run_id"], 0);

    let (status, leg) = call(&app, "POST", "/api/v1/executions", Some(valid.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{leg}");
    assert_eq!(
        (leg["run_id"].as_i64(), leg["status"].as_str()),
        (Some(1), Some("entered"))
    );
    assert_eq!(
        (leg["action"].as_str(), leg["lot_size"].as_i64()),
        (Some("SELL"), Some(65))
    );
    let (status, second) = call(
        &app,
        "POST",
        "/api/v1/executions",
        Some(with("action", json!("buy"))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second["run_id"], 1, "the same run while legs are open");

    let (status, p) = call(&app, "GET", "/api/v1/positions", None).await;
    assert_eq!(status, StatusCode::OK);
    let positions = p["positions"].as_array().unwrap();
    assert_eq!(positions.len(), 2);
    assert_eq!(positions[0]["account"], "acct");
    assert_eq!(positions[0]["symbol"], "NIFTY28APR2625000CE");
    assert!(
        positions[0]["ltp"].is_null(),
        "no price yet, no P&L assumed"
    );
    assert!(positions[0]["pnl"].is_null());
    let (_, s) = call(
        &app,
        "GET",
        &format!("/api/v1/strategies/{strategy_id}"),
        None,
    )
    .await;
    assert_eq!(s["live"]["open_legs"], 2, "{s}");
    assert!(s["pnl"].is_null());

    let path = format!("/api/v1/strategies/{strategy_id}");
    let (status, v) = call(&app, "DELETE", &path, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");

    // A strategy whose legs are all closed is deleted with its history.
    let (_, s) = call(
        &app,
        "POST",
        "/api/v1/strategies",
        Some(json!({"name": "done"})),
    )
    .await;
    let done = s["id"].as_i64().unwrap() as i32;
    strategy_executions::ActiveModel {
        strategy_id: Set(done),
        account_id: Set(account_id),
        run_id: Set(1),
        symbol: Set("INFY".into()),
        exchange: Set("NSE".into()),
        product: Set(Product::Mis),
        action: Set(TradeAction::Buy),
        quantity: Set(1),
        entry_price: Set(1500.0),
        status: Set(ExecutionStatus::Exited),
        entered_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&conn)
    .await
    .unwrap();
    let (status, _) = call(&app, "DELETE", &format!("/api/v1/strategies/{done}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        strategies::Entity::find_by_id(done)
            .one(&conn)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        strategy_executions::Entity::find()
            .count(&conn)
            .await
            .unwrap(),
        2
    );
}

#[actix_web::test]
async fn the_fill_bounds_are_settings() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.risk.max_leg_quantity = 100;
        s.risk.max_price = 50.0;
    })
    .await;
    let (conn, account_id, strategy_id) = with_strategy(&app, "small").await;
    let body = |quantity: i64, price: f64| {
        json!({
            "strategy_id": strategy_id, "account_id": account_id, "symbol": "INFY",
            "exchange": "NSE", "product": "MIS", "action": "BUY", "quantity": quantity,
            "entry_price": price,
        })
    };
    rejected(
        &app,
        "POST",
        "/api/v1/executions",
        body(101, 10.0),
        "quantity",
    )
    .await;
    rejected(
        &app,
        "POST",
        "/api/v1/executions",
        body(100, 50.5),
        "entry_price",
    )
    .await;
    assert_eq!(
        strategy_executions::Entity::find()
            .count(&conn)
            .await
            .unwrap(),
        0
    );
    let (status, leg) = call(&app, "POST", "/api/v1/executions", Some(body(100, 50.0))).await;
    assert_eq!(status, StatusCode::CREATED, "{leg}");
}
