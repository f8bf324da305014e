//! Trading accounts: CRUD over HTTP with encrypted keys, pings against fake gateways, the
//! AccountMonitorActor's failover, and the start-up refusal when stored keys cannot be read.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler};
use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, web};
use actors::accounts::{
    AccountMonitorActor, AccountMonitorSettings, FeedAccountChanged, GetAccountsStatus,
    load_accounts,
};
use actors::secrets::{ExposeSecret, KeyCipher};
use actors::supervised::Supervision;
use entity::prelude::*;
use entity::{strategies, strategy_executions, trading_accounts};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use trading_supervisor::configuration::{DatabaseSettings, Settings};
use trading_supervisor::database;
use trading_supervisor::startup::Application;

use crate::helpers::{
    TestApp, fresh_database, insert_account_row, poll_until, spawn_app_with, test_settings,
};

const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY_B: &str = "HxwdHhobGBkWFxQVEhMQEQ4PDA0KCwgJBgcEBQIDAAE=";
const API_KEY: &str = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0abcd";
const API_KEY_2: &str = "ffee0011ffee0011ffee0011ffee0011ffee0011ffee0011ffee0011ffee0011";
const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------- fake OpenAlgo gateway

/// An actix-web server answering `/api/v1/ping` like OpenAlgo: pong for `api_key`, 403 otherwise.
struct FakeGateway {
    port: u16,
    handle: ServerHandle,
    hits: Arc<AtomicUsize>,
    max_concurrent: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct GatewayState {
    api_key: String,
    delay: Duration,
    hits: Arc<AtomicUsize>,
    current: Arc<AtomicUsize>,
    max_concurrent: Arc<AtomicUsize>,
}

async fn gateway_ping(state: web::Data<GatewayState>, body: web::Json<Value>) -> HttpResponse {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let now = state.current.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_concurrent.fetch_max(now, Ordering::SeqCst);
    if !state.delay.is_zero() {
        actix_rt::time::sleep(state.delay).await;
    }
    state.current.fetch_sub(1, Ordering::SeqCst);
    if body["apikey"] == state.api_key.as_str() {
        HttpResponse::Ok()
            .json(json!({"status":"success","data":{"message":"pong","broker":"sim"}}))
    } else {
        HttpResponse::Forbidden()
            .json(json!({"status":"error","message":"Invalid openalgo apikey"}))
    }
}

/// Starts a fake gateway on `port` (0: any free port), retrying the bind until the port is free.
async fn fake_gateway(port: u16, api_key: &str, delay: Duration) -> FakeGateway {
    let listener = poll_until(WAIT, "the gateway port to be free", || {
        let bound = TcpListener::bind(("127.0.0.1", port)).ok();
        async move { bound }
    })
    .await;
    let port = listener.local_addr().unwrap().port();
    let state = GatewayState {
        api_key: api_key.to_string(),
        delay,
        hits: Arc::new(AtomicUsize::new(0)),
        current: Arc::new(AtomicUsize::new(0)),
        max_concurrent: Arc::new(AtomicUsize::new(0)),
    };
    let (hits, max_concurrent) = (state.hits.clone(), state.max_concurrent.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/api/v1/ping", web::post().to(gateway_ping))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    FakeGateway {
        port,
        handle,
        hits,
        max_concurrent,
    }
}

impl FakeGateway {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------- helpers

async fn spawn_app_with_key() -> TestApp {
    spawn_app_with(|s| s.security.encryption_key = KEY_A.into()).await
}

async fn connect(url: &str) -> DatabaseConnection {
    database::connect(&DatabaseSettings {
        url: url.to_string(),
        max_connections: 5,
    })
    .await
    .unwrap()
}

async fn migrated(url: &str) -> DatabaseConnection {
    let db = connect(url).await;
    database::migrate(&db).await.unwrap();
    db
}

async fn rows(db: &DatabaseConnection) -> Vec<trading_accounts::Model> {
    TradingAccounts::find()
        .order_by_asc(trading_accounts::Column::Id)
        .all(db)
        .await
        .unwrap()
}

/// The configuration columns of every account (the monitor's pings update the others).
async fn configs(db: &DatabaseConnection) -> Vec<trading_accounts::Model> {
    rows(db)
        .await
        .into_iter()
        .map(|m| trading_accounts::Model {
            connection_status: ConnectionStatus::Unknown,
            last_ping_at: None,
            last_error: None,
            ..m
        })
        .collect()
}

async fn insert_account(
    db: &DatabaseConnection,
    cipher: &KeyCipher,
    name: &str,
    rest_url: &str,
    api_key: &str,
    is_primary: bool,
) -> trading_accounts::Model {
    let row = trading_accounts::ActiveModel {
        name: Set(name.into()),
        broker: Set("sim".into()),
        rest_url: Set(rest_url.into()),
        ws_url: Set("ws://127.0.0.1:8765".into()),
        is_primary: Set(is_primary),
        is_active: Set(true),
        connection_status: Set(ConnectionStatus::Unknown),
        ..Default::default()
    };
    insert_account_row(db, cipher, row, api_key).await
}

fn account_body(name: &str, rest_url: &str, api_key: &str, primary: bool) -> Value {
    json!({
        "name": name,
        "broker": "angelone",
        "rest_url": rest_url,
        "ws_url": "ws://127.0.0.1:8765",
        "api_key": api_key,
        "is_primary": primary,
    })
}

/// Sends a JSON request and returns (status, raw body).
async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let req = match method {
        "GET" => app.client.get(app.url(path)),
        "POST" => app.client.post(app.url(path)),
        "PUT" => app.client.put(app.url(path)),
        "DELETE" => app.client.delete(app.url(path)),
        other => panic!("unsupported method {other}"),
    }
    .bearer_auth(&app.token);
    let mut resp = match body {
        Some(b) => req.send_json(&b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let bytes = resp.body().await.unwrap();
    (resp.status(), String::from_utf8(bytes.to_vec()).unwrap())
}

async fn send_json(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, raw) = send(app, method, path, body).await;
    let value = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("not JSON ({e}): {raw}"))
    };
    (status, value)
}

async fn create(app: &TestApp, body: Value) -> Value {
    let (status, raw) = send(app, "POST", "/api/v1/accounts", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{raw}");
    serde_json::from_str(&raw).unwrap()
}

// ---------------------------------------------------------------- the key follows its host

#[actix_web::test]
async fn moving_an_account_to_another_gateway_needs_its_key_in_the_same_request() {
    let app = spawn_app_with_key().await;
    let home = fake_gateway(0, API_KEY, Duration::ZERO).await;
    let other = fake_gateway(0, API_KEY_2, Duration::ZERO).await;
    let created = create(&app, account_body("main", &home.url(), API_KEY, false)).await;
    let id = created["id"].as_i64().unwrap();
    // Whatever the spelling of the path, a new URL without a key changes nothing.
    for path in [
        format!("/api/v1/accounts/{id}"),
        format!("/%61pi/v1/accounts/{id}"),
    ] {
        for body in [
            json!({"rest_url": other.url()}),
            json!({"ws_url": "ws://127.0.0.1:9"}),
            json!({"rest_url": other.url(), "name": "renamed"}),
        ] {
            let (status, err) = send_json(&app, "PUT", &path, Some(body.clone())).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {err}");
            let message = err["error"]["message"].as_str().unwrap_or_default();
            assert!(message.starts_with("api_key: required"), "{message}");
        }
    }
    let (_, now) = send_json(&app, "GET", &format!("/api/v1/accounts/{id}"), None).await;
    assert_eq!(now["rest_url"], home.url().as_str());
    assert_eq!(now["ws_url"], "ws://127.0.0.1:8765");
    assert_eq!(now["name"], "main");
    // The same URL again is no move.
    let (status, _) = send_json(
        &app,
        "PUT",
        &format!("/api/v1/accounts/{id}"),
        Some(json!({"rest_url": home.url(), "ws_url": "ws://127.0.0.1:8765"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A ping still goes home with the stored key; the other gateway never saw a request.
    let (status, pong) =
        send_json(&app, "POST", &format!("/api/v1/accounts/{id}/ping"), None).await;
    assert_eq!(status, StatusCode::OK, "{pong}");
    assert_eq!(pong["ok"], true, "{pong}");
    assert_eq!(other.hits.load(Ordering::SeqCst), 0);

    // With its key the account moves, and the ping follows it.
    let (status, moved) = send_json(
        &app,
        "PUT",
        &format!("/api/v1/accounts/{id}"),
        Some(json!({"rest_url": other.url(), "api_key": API_KEY_2})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["rest_url"], other.url().as_str());
    let (_, pong) = send_json(&app, "POST", &format!("/api/v1/accounts/{id}/ping"), None).await;
    assert_eq!(pong["ok"], true, "{pong}");
    assert!(other.hits.load(Ordering::SeqCst) >= 1);
    home.stop().await;
    other.stop().await;
}

#[actix_web::test]
async fn plain_http_and_ws_gateways_must_be_on_this_machine_unless_allowed() {
    let app = spawn_app_with_key().await;
    let body = |name: &str, rest: &str, ws: &str| {
        json!({"name": name, "broker": "sim", "rest_url": rest, "ws_url": ws,
            "api_key": API_KEY, "is_active": false})
    };
    for (rest, ws) in [
        ("http://gw.invalid:5000", "wss://gw.invalid/ws"),
        ("https://gw.invalid", "ws://gw.invalid:8765"),
        ("http://127.0.0.1.gw.invalid", "wss://gw.invalid"),
        ("http://user:pass@127.0.0.1:5000", "ws://127.0.0.1:8765"),
        ("http://127.0.0.1@gw.invalid", "ws://127.0.0.1:8765"),
    ] {
        let (status, err) =
            send_json(&app, "POST", "/api/v1/accounts", Some(body("x", rest, ws))).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{rest} {ws} → {err}"
        );
    }
    for (i, (rest, ws)) in [
        ("https://gw.invalid", "wss://gw.invalid/ws"),
        ("http://localhost:5000", "ws://localhost:8765"),
        ("http://127.0.0.2:5000", "ws://[::1]:8765"),
        ("HTTP://LOCALHOST:5000", "WS://127.0.0.1"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, created) = send_json(
            &app,
            "POST",
            "/api/v1/accounts",
            Some(body(&format!("ok{i}"), rest, ws)),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{rest} {ws} → {created}");
    }
    // Nothing was stored by the refused requests.
    let (_, list) = send_json(&app, "GET", "/api/v1/accounts", None).await;
    assert_eq!(list.as_array().unwrap().len(), 4, "{list}");

    let trusting = spawn_app_with(|s| {
        s.security.encryption_key = KEY_A.into();
        s.security.allow_insecure_gateways = true;
    })
    .await;
    let (status, created) = send_json(
        &trusting,
        "POST",
        "/api/v1/accounts",
        Some(body(
            "lan",
            "http://gw.invalid:5000",
            "ws://gw.invalid:8765",
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
}

#[actix_web::test]
async fn a_gateway_error_is_cut_short_before_it_is_stored_or_shown() {
    let app = spawn_app_with_key().await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| {
        App::new().route(
            "/api/v1/ping",
            web::post().to(|| async {
                HttpResponse::Forbidden()
                    .json(json!({"status": "error", "message": "x".repeat(100_000)}))
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let created = create(
        &app,
        account_body(
            "chatty",
            &format!("http://127.0.0.1:{port}"),
            API_KEY,
            false,
        ),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    let (status, pong) =
        send_json(&app, "POST", &format!("/api/v1/accounts/{id}/ping"), None).await;
    assert_eq!(status, StatusCode::OK, "{pong}");
    assert_eq!(pong["ok"], false);
    let shown = pong["error"].as_str().unwrap();
    assert!(shown.len() < 400, "{} characters shown", shown.len());
    assert!(shown.contains("more characters"), "{shown}");
    let (_, account) = send_json(&app, "GET", &format!("/api/v1/accounts/{id}"), None).await;
    let stored = account["last_error"].as_str().unwrap();
    assert!(stored.len() < 400, "{} characters stored", stored.len());
    handle.stop(false).await;
}

// ---------------------------------------------------------------- CRUD

#[actix_web::test]
async fn crud_round_trip_never_exposes_the_api_key() {
    let app = spawn_app_with_key().await;
    let db = connect(&app.database.url).await;
    let cipher = KeyCipher::from_base64(KEY_A).unwrap();

    let (status, raw) = send(
        &app,
        "POST",
        "/api/v1/accounts",
        Some(account_body("main", "http://127.0.0.1:5000", API_KEY, true)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{raw}");
    assert!(!raw.contains(API_KEY), "the key leaked: {raw}");
    assert!(
        !raw.contains("a1b2c3d4"),
        "more than the hint leaked: {raw}"
    );
    let created: Value = serde_json::from_str(&raw).unwrap();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["name"], "main");
    assert_eq!(created["broker"], "angelone");
    assert_eq!(created["rest_url"], "http://127.0.0.1:5000");
    assert_eq!(created["ws_url"], "ws://127.0.0.1:8765");
    assert_eq!(created["api_key_hint"], "a1b2…");
    assert_eq!(created["is_primary"], true);
    assert_eq!(created["is_active"], true, "active by default");
    assert_eq!(created["connection_status"], "unknown");
    assert!(created.get("api_key").is_none());
    assert!(created.get("api_key_ciphertext").is_none());

    // The column holds ciphertext only, and the right key gives the plaintext back.
    let stored = rows(&db).await;
    assert_eq!(stored.len(), 1);
    assert!(!format!("{:?}", stored[0]).contains(API_KEY));
    assert!(!stored[0].api_key_ciphertext.contains("a1b2c3d4"));
    let id32 = stored[0].id;
    assert_eq!(
        cipher
            .decrypt(id32, &stored[0].api_key_ciphertext)
            .unwrap()
            .expose(),
        API_KEY
    );
    let other = KeyCipher::from_base64(KEY_B).unwrap();
    assert!(other.decrypt(id32, &stored[0].api_key_ciphertext).is_err());
    // The ciphertext is bound to its account: under another id it does not decrypt.
    assert!(
        cipher
            .decrypt(id32 + 1, &stored[0].api_key_ciphertext)
            .is_err()
    );

    let (status, raw) = send(&app, "GET", "/api/v1/accounts", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!raw.contains(API_KEY), "{raw}");
    let list: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id);

    let (status, raw) = send(&app, "GET", &format!("/api/v1/accounts/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!raw.contains(API_KEY));
    let one: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(one["name"], "main");

    // Partial update: only the given field changes.
    let (status, updated) = send_json(
        &app,
        "PUT",
        &format!("/api/v1/accounts/{id}"),
        Some(json!({"broker": "zerodha"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["broker"], "zerodha");
    assert_eq!(updated["name"], "main");
    assert_eq!(updated["rest_url"], "http://127.0.0.1:5000");
    assert_eq!(updated["api_key_hint"], "a1b2…");
    assert_eq!(updated["is_primary"], true);
    let stored_after = rows(&db).await;
    assert_eq!(
        stored_after[0].api_key_ciphertext, stored[0].api_key_ciphertext,
        "the key was not re-encrypted"
    );

    // Rotating the key.
    let (status, raw) = send(
        &app,
        "PUT",
        &format!("/api/v1/accounts/{id}"),
        Some(json!({"api_key": API_KEY_2, "is_active": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{raw}");
    assert!(!raw.contains(API_KEY_2));
    let rotated: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(rotated["api_key_hint"], "ffee…");
    assert_eq!(rotated["is_active"], false);
    let stored = rows(&db).await;
    assert_eq!(
        cipher
            .decrypt(stored[0].id, &stored[0].api_key_ciphertext)
            .unwrap()
            .expose(),
        API_KEY_2
    );

    let (status, raw) = send(&app, "DELETE", &format!("/api/v1/accounts/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{raw}");
    assert!(rows(&db).await.is_empty());
    let (status, _) = send(&app, "GET", &format!("/api/v1/accounts/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn making_a_second_account_primary_demotes_the_first() {
    let app = spawn_app_with_key().await;
    let a = create(
        &app,
        account_body("a", "http://127.0.0.1:5001", API_KEY, true),
    )
    .await;
    let b = create(
        &app,
        account_body("b", "http://127.0.0.1:5002", API_KEY_2, true),
    )
    .await;
    let primaries = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["is_primary"] == true)
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, list) = send_json(&app, "GET", "/api/v1/accounts", None).await;
    assert_eq!(primaries(&list), vec!["b"]);

    let (status, body) = send_json(
        &app,
        "PUT",
        &format!("/api/v1/accounts/{}", a["id"]),
        Some(json!({"is_primary": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, list) = send_json(&app, "GET", "/api/v1/accounts", None).await;
    assert_eq!(primaries(&list), vec!["a"]);

    // A non-primary account created later leaves the primary alone.
    create(
        &app,
        account_body("c", "http://127.0.0.1:5003", API_KEY, false),
    )
    .await;
    let (_, list) = send_json(&app, "GET", "/api/v1/accounts", None).await;
    assert_eq!(primaries(&list), vec!["a"]);
    assert_eq!(b["is_primary"], true, "b was primary when created");
}

#[actix_web::test]
async fn bad_input_is_rejected_and_changes_nothing() {
    let app = spawn_app_with_key().await;
    let db = connect(&app.database.url).await;
    let existing = create(
        &app,
        account_body("main", "http://127.0.0.1:5000", API_KEY, true),
    )
    .await;
    let id = existing["id"].as_i64().unwrap();
    let before = configs(&db).await;

    let mut bad_creates = Vec::new();
    for (field, value) in [
        ("name", json!("   ")),
        ("broker", json!("")),
        ("rest_url", json!("ftp://127.0.0.1:5000")),
        ("rest_url", json!("127.0.0.1:5000")),
        ("rest_url", json!("http://")),
        ("ws_url", json!("http://127.0.0.1:8765")),
        ("ws_url", json!("ws://")),
        ("api_key", json!("")),
        ("api_key", json!("has a space")),
        ("is_primary", json!("yes")),
        ("unknown_field", json!(1)),
    ] {
        let mut body = account_body("other", "http://127.0.0.1:5001", API_KEY_2, true);
        body[field] = value;
        bad_creates.push(body);
    }
    let mut missing = account_body("other", "http://127.0.0.1:5001", API_KEY_2, false);
    missing.as_object_mut().unwrap().remove("api_key");
    bad_creates.push(missing);
    for body in bad_creates {
        let (status, err) = send_json(&app, "POST", "/api/v1/accounts", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {err}");
        assert_eq!(err["error"]["code"], "unprocessable");
    }

    for body in [
        json!({"rest_url": "ws://127.0.0.1:5000"}),
        json!({"ws_url": "https://127.0.0.1"}),
        json!({"name": ""}),
        json!({"api_key": " "}),
        json!({"is_primary": false, "colour": "red"}),
        json!({"is_active": "no"}),
    ] {
        let (status, err) = send_json(
            &app,
            "PUT",
            &format!("/api/v1/accounts/{id}"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body} → {err}");
    }

    // Duplicate names: 409, on create and on rename.
    let (status, err) = send_json(
        &app,
        "POST",
        "/api/v1/accounts",
        Some(account_body(
            "main",
            "http://127.0.0.1:5009",
            API_KEY_2,
            true,
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'main' already exists")
    );
    let other = create(
        &app,
        account_body("other", "http://127.0.0.1:5001", API_KEY_2, false),
    )
    .await;
    let (status, _) = send_json(
        &app,
        "PUT",
        &format!("/api/v1/accounts/{}", other["id"]),
        Some(json!({"name": "main", "is_primary": true})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let after = configs(&db).await;
    assert_eq!(after[0], before[0], "the first account is unchanged");
    assert_eq!(after.len(), 2);
    assert_eq!(after[1].name, "other");
    assert!(
        !after[1].is_primary,
        "the failed rename rolled the promotion back"
    );

    // Unknown and malformed ids.
    for (method, path, body) in [
        ("GET", "/api/v1/accounts/9999", None),
        ("PUT", "/api/v1/accounts/9999", Some(json!({"broker": "x"}))),
        ("DELETE", "/api/v1/accounts/9999", None),
        ("POST", "/api/v1/accounts/9999/ping", None),
    ] {
        let (status, err) = send_json(&app, method, path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {err}");
        assert_eq!(err["error"]["code"], "not_found");
    }
    let (status, _) = send_json(&app, "GET", "/api/v1/accounts/abc", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(configs(&db).await, after);
}

#[actix_web::test]
async fn without_an_encryption_key_keys_are_refused_with_instructions() {
    let app = crate::helpers::spawn_app().await;
    let (status, err) = send_json(
        &app,
        "POST",
        "/api/v1/accounts",
        Some(account_body("main", "http://127.0.0.1:5000", API_KEY, true)),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("SUPERVISOR__SECURITY__ENCRYPTION_KEY"),
        "{message}"
    );
    assert!(message.contains("security.encryption_key"), "{message}");
    assert!(!message.contains(API_KEY));
    let db = connect(&app.database.url).await;
    assert!(rows(&db).await.is_empty());
}

#[actix_web::test]
async fn an_account_with_open_positions_or_history_is_not_deleted() {
    let app = spawn_app_with_key().await;
    let db = connect(&app.database.url).await;
    let account = create(
        &app,
        account_body("main", "http://127.0.0.1:5000", API_KEY, true),
    )
    .await;
    let id = account["id"].as_i64().unwrap() as i32;
    let strategy = strategies::ActiveModel {
        name: Set("straddle".into()),
        is_active: Set(true),
        risk_state: Set(RiskState::Monitoring),
        ..Default::default()
    }
    .insert(&db)
    .await
    .unwrap();
    let execution = strategy_executions::ActiveModel {
        strategy_id: Set(strategy.id),
        account_id: Set(id),
        run_id: Set(1),
        symbol: Set("NIFTY28APR2625000CE".into()),
        exchange: Set("NFO".into()),
        product: Set(Product::Nrml),
        action: Set(TradeAction::Sell),
        quantity: Set(75),
        entry_price: Set(182.35),
        status: Set(ExecutionStatus::Entered),
        entered_at: Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(&db)
    .await
    .unwrap();

    let (status, err) = send_json(&app, "DELETE", &format!("/api/v1/accounts/{id}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("account has open positions"),
        "{err}"
    );
    assert_eq!(rows(&db).await.len(), 1);

    // Closed history is kept too: the account can be deactivated, not deleted.
    let mut exited: strategy_executions::ActiveModel = execution.into();
    exited.status = Set(ExecutionStatus::Exited);
    exited.update(&db).await.unwrap();
    let (status, err) = send_json(&app, "DELETE", &format!("/api/v1/accounts/{id}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deactivate"),
        "{err}"
    );
    assert_eq!(rows(&db).await.len(), 1);
    assert_eq!(StrategyExecutions::find().all(&db).await.unwrap().len(), 1);
}

// ---------------------------------------------------------------- pings

#[actix_web::test]
async fn ping_reports_and_records_the_gateway_answer() {
    let gateway = fake_gateway(0, API_KEY, Duration::ZERO).await;
    let app = spawn_app_with_key().await;
    let db = connect(&app.database.url).await;
    let good = create(&app, account_body("good", &gateway.url(), API_KEY, true)).await;
    let wrong = create(
        &app,
        account_body("wrong-key", &gateway.url(), API_KEY_2, false),
    )
    .await;
    let down_url = format!("http://127.0.0.1:{}", closed_port());
    let down = create(&app, account_body("down", &down_url, API_KEY, false)).await;

    let (status, raw) = send(
        &app,
        "POST",
        &format!("/api/v1/accounts/{}/ping", good["id"]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{raw}");
    let answer: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["broker"], "sim");
    assert!(answer["latency_ms"].is_u64());
    assert!(answer["error"].is_null());
    let row = TradingAccounts::find_by_id(good["id"].as_i64().unwrap() as i32)
        .one(&db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.connection_status, ConnectionStatus::Connected);
    assert!(row.last_ping_at.is_some());
    assert_eq!(row.last_error, None);

    let (status, raw) = send(
        &app,
        "POST",
        &format!("/api/v1/accounts/{}/ping", wrong["id"]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!raw.contains(API_KEY_2), "{raw}");
    let answer: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(answer["ok"], false);
    assert!(
        answer["error"].as_str().unwrap().contains("403"),
        "{answer}"
    );

    let (status, answer) = send_json(
        &app,
        "POST",
        &format!("/api/v1/accounts/{}/ping", down["id"]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["ok"], false);
    assert!(!answer["error"].as_str().unwrap().is_empty());
    let (_, shown) = send_json(
        &app,
        "GET",
        &format!("/api/v1/accounts/{}", down["id"]),
        None,
    )
    .await;
    assert_eq!(shown["connection_status"], "failed");
    assert_eq!(shown["last_error"], answer["error"]);
    assert!(shown["last_ping_at"].is_string());
    let (_, raw) = send(&app, "GET", "/api/v1/accounts", None).await;
    assert!(!raw.contains(API_KEY) && !raw.contains(API_KEY_2));
    gateway.stop().await;
}

// ---------------------------------------------------------------- AccountMonitorActor

/// Forwards every decision to the test.
struct Collector(mpsc::UnboundedSender<FeedAccountChanged>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<FeedAccountChanged> for Collector {
    type Result = ();

    fn handle(&mut self, msg: FeedAccountChanged, _ctx: &mut Context<Self>) {
        let _ = self.0.send(msg);
    }
}

async fn next_change(rx: &mut mpsc::UnboundedReceiver<FeedAccountChanged>) -> FeedAccountChanged {
    actix_rt::time::timeout(WAIT, rx.recv())
        .await
        .expect("a FeedAccountChanged within the deadline")
        .expect("the monitor is running")
}

fn monitor_settings(ping_interval: Duration) -> AccountMonitorSettings {
    AccountMonitorSettings {
        ping_interval,
        rest_timeout: Duration::from_secs(2),
        failover_after_failures: 3,
        supervision: Supervision {
            max_restarts: 5,
            window: Duration::from_secs(60),
        },
    }
}

fn start_monitor(
    db: &DatabaseConnection,
    settings: AccountMonitorSettings,
) -> (
    Addr<AccountMonitorActor>,
    mpsc::UnboundedReceiver<FeedAccountChanged>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let recipient = Collector(tx).start().recipient();
    let db = db.clone();
    let cipher = KeyCipher::from_base64(KEY_A).unwrap();
    let addr = actix::Supervisor::start(move |_| {
        AccountMonitorActor::new(db, Some(cipher), settings, recipient)
    });
    (addr, rx)
}

#[actix_web::test]
async fn the_feed_fails_over_to_the_backup_and_returns_to_the_primary() {
    let test_db = fresh_database().await;
    let db = migrated(&test_db.url).await;
    let cipher = KeyCipher::from_base64(KEY_A).unwrap();
    let primary_gw = fake_gateway(0, API_KEY, Duration::ZERO).await;
    let backup_gw = fake_gateway(0, API_KEY_2, Duration::ZERO).await;
    let primary_port = primary_gw.port;
    let primary = insert_account(&db, &cipher, "primary", &primary_gw.url(), API_KEY, true).await;
    let backup = insert_account(&db, &cipher, "backup", &backup_gw.url(), API_KEY_2, false).await;

    let (monitor, mut rx) = start_monitor(&db, monitor_settings(Duration::from_millis(100)));

    let first = next_change(&mut rx).await;
    let target = first.target.clone().expect("a feed account");
    assert_eq!(target.account_id, primary.id);
    assert_eq!(
        target.api_key.expose(),
        API_KEY,
        "the target carries the decrypted key"
    );
    assert!(first.reachable);
    assert!(first.reason.contains("healthy"), "{}", first.reason);
    let status = monitor.send(GetAccountsStatus).await.unwrap();
    assert_eq!(status.feed_account.as_ref().map(|f| f.id), Some(primary.id));
    assert!(!serde_json::to_string(&status).unwrap().contains(API_KEY));

    // The primary's gateway goes away: it stays the reachable feed account through its first
    // failed pings, and after 3 in a row the feed moves to the backup (one announcement).
    primary_gw.stop().await;
    let failover = next_change(&mut rx).await;
    assert_eq!(
        failover.target.as_ref().map(|t| t.account_id),
        Some(backup.id)
    );
    assert_eq!(
        failover.target.as_ref().map(|t| t.api_key.expose()),
        Some(API_KEY_2)
    );
    assert!(failover.reachable);
    assert!(
        failover.reason.contains("failed 3 consecutive pings"),
        "{}",
        failover.reason
    );
    let status = monitor.send(GetAccountsStatus).await.unwrap();
    let health = status.accounts.iter().find(|a| a.id == primary.id).unwrap();
    assert!(health.consecutive_failures >= 3);
    assert!(health.last_error.is_some());
    assert_eq!(status.feed_account.as_ref().map(|f| f.id), Some(backup.id));
    // The failures are recorded in the table.
    poll_until(WAIT, "the primary's failed ping recorded", || {
        let db = db.clone();
        async move {
            let row = TradingAccounts::find_by_id(primary.id)
                .one(&db)
                .await
                .ok()??;
            (row.connection_status == ConnectionStatus::Failed && row.last_error.is_some())
                .then_some(())
        }
    })
    .await;

    // The primary answers again on the same port: the feed goes back.
    let restarted = fake_gateway(primary_port, API_KEY, Duration::ZERO).await;
    let back = next_change(&mut rx).await;
    assert_eq!(back.target.as_ref().map(|t| t.account_id), Some(primary.id));
    assert!(back.reachable);
    restarted.stop().await;
    backup_gw.stop().await;
}

#[actix_web::test]
async fn a_gateway_is_unreachable_only_after_consecutive_failed_pings() {
    let test_db = fresh_database().await;
    let db = migrated(&test_db.url).await;
    let cipher = KeyCipher::from_base64(KEY_A).unwrap();
    let gw = fake_gateway(0, API_KEY, Duration::ZERO).await;
    let port = gw.port;
    let primary = insert_account(&db, &cipher, "primary", &gw.url(), API_KEY, true).await;

    // A high threshold: failed pings accumulate, the account stays reachable.
    let mut settings = monitor_settings(Duration::from_millis(50));
    settings.failover_after_failures = 1000;
    let (monitor, mut rx) = start_monitor(&db, settings);
    assert!(next_change(&mut rx).await.reachable);
    gw.stop().await;
    let status = poll_until(WAIT, "two failed pings of the primary", || {
        let monitor = monitor.clone();
        async move {
            let s = monitor.send(GetAccountsStatus).await.ok()?;
            let failures = s
                .accounts
                .iter()
                .find(|a| a.id == primary.id)?
                .consecutive_failures;
            (failures >= 2).then_some(s)
        }
    })
    .await;
    assert!(
        status.reachable,
        "failed pings below the threshold are no outage"
    );
    assert!(status.accounts[0].reachable);
    assert!(status.accounts[0].last_error.is_some());
    assert!(
        status
            .reason
            .contains("of 1000 tolerated consecutive pings failed"),
        "{}",
        status.reason
    );
    assert!(rx.try_recv().is_err(), "nothing was announced");

    // The default threshold of 3: announced unreachable once, after the third failure.
    let gw = fake_gateway(port, API_KEY, Duration::ZERO).await;
    let (monitor, mut rx) = start_monitor(&db, monitor_settings(Duration::from_millis(50)));
    assert!(next_change(&mut rx).await.reachable);
    gw.stop().await;
    let down = next_change(&mut rx).await;
    assert_eq!(down.target.as_ref().map(|t| t.account_id), Some(primary.id));
    assert!(!down.reachable);
    assert!(
        down.reason.contains("failed 3 consecutive pings"),
        "{}",
        down.reason
    );
    let status = monitor.send(GetAccountsStatus).await.unwrap();
    assert!(status.accounts[0].consecutive_failures >= 3);
    assert!(!status.accounts[0].reachable);
}

#[actix_web::test]
async fn pings_of_one_account_never_overlap() {
    let test_db = fresh_database().await;
    let db = migrated(&test_db.url).await;
    let cipher = KeyCipher::from_base64(KEY_A).unwrap();
    // Each answer takes 300 ms while the monitor wants a ping every 30 ms.
    let slow = fake_gateway(0, API_KEY, Duration::from_millis(300)).await;
    insert_account(&db, &cipher, "slow", &slow.url(), API_KEY, true).await;
    let (_monitor, mut rx) = start_monitor(&db, monitor_settings(Duration::from_millis(30)));
    assert!(next_change(&mut rx).await.reachable);
    let hits = slow.hits.clone();
    poll_until(WAIT, "three pings", || {
        let n = hits.load(Ordering::SeqCst);
        async move { (n >= 3).then_some(()) }
    })
    .await;
    assert_eq!(slow.max_concurrent.load(Ordering::SeqCst), 1);
    slow.stop().await;
}

#[actix_web::test]
async fn load_accounts_decrypts_every_account() {
    let test_db = fresh_database().await;
    let db = migrated(&test_db.url).await;
    let cipher = KeyCipher::from_base64(KEY_A).unwrap();
    insert_account(&db, &cipher, "one", "http://127.0.0.1:1", API_KEY, true).await;
    insert_account(&db, &cipher, "two", "http://127.0.0.1:2", API_KEY_2, false).await;
    let accounts = load_accounts(&db, &cipher).await.unwrap();
    let keys: Vec<(&str, &str)> = accounts
        .iter()
        .map(|a| (a.name.as_str(), a.api_key.expose()))
        .collect();
    assert_eq!(keys, vec![("one", API_KEY), ("two", API_KEY_2)]);
    let err = load_accounts(&db, &KeyCipher::from_base64(KEY_B).unwrap())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("'one'"), "{err}");
}

// ---------------------------------------------------------------- start-up refusal

/// A value as stored before ciphertexts were bound to their account: base64 of nonce ‖
/// ciphertext ‖ tag, without associated data.
fn unbound_ciphertext(key_b64: &str, api_key: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use chacha20poly1305::aead::{Aead, KeyInit};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    let aead = XChaCha20Poly1305::new_from_slice(&STANDARD.decode(key_b64).unwrap()).unwrap();
    let nonce = [7u8; 24];
    let sealed = aead
        .encrypt(&XNonce::from(nonce), api_key.as_bytes())
        .unwrap();
    STANDARD.encode([&nonce[..], &sealed].concat())
}

#[actix_web::test]
async fn keys_stored_before_the_account_binding_are_re_encrypted_at_start() {
    let test_db = fresh_database().await;
    let db = migrated(&test_db.url).await;
    let gateway = fake_gateway(0, API_KEY, Duration::ZERO).await;
    for (name, key) in [("old-one", API_KEY), ("old-two", API_KEY_2)] {
        trading_accounts::ActiveModel {
            name: Set(name.into()),
            broker: Set("sim".into()),
            rest_url: Set(gateway.url()),
            ws_url: Set("ws://127.0.0.1:8765".into()),
            api_key_ciphertext: Set(unbound_ciphertext(KEY_A, key)),
            api_key_hint: Set(actors::domain::mask::mask_secret(key)),
            is_primary: Set(false),
            is_active: Set(false),
            connection_status: Set(ConnectionStatus::Unknown),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();
    }
    let before = rows(&db).await;
    let build = |key: &str| {
        let mut settings = test_settings(&test_db.url);
        settings.security.encryption_key = key.into();
        Application::build(settings)
    };
    // `supervisor migrate` without a key leaves the keys as they are.
    let migrate = |key: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_supervisor"));
        cmd.arg("migrate")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("DATABASE_URL")
            .env("SUPERVISOR__DATABASE__URL", &test_db.url);
        if let Some(key) = key {
            cmd.env("SUPERVISOR__SECURITY__ENCRYPTION_KEY", key);
        }
        cmd.output().unwrap()
    };
    let out = migrate(None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&db).await, before);
    // A wrong key is refused before anything is rewritten, by `migrate` as by `serve`.
    let out = migrate(Some(KEY_B));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("account 'old-one'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&db).await, before);
    let err = build(KEY_B).await.err().expect("wrong key: refused");
    assert!(format!("{err:#}").contains("account 'old-one'"), "{err:#}");
    assert_eq!(rows(&db).await, before, "nothing was rewritten");

    let app = build(KEY_A).await.expect("the right key starts");
    let port = app.port();
    actix_rt::spawn(app.run_until_stopped());
    let cipher = KeyCipher::from_base64(KEY_A).unwrap();
    let after = rows(&db).await;
    for (row, key) in after.iter().zip([API_KEY, API_KEY_2]) {
        assert!(row.api_key_ciphertext.starts_with("v2:"), "{}", row.name);
        assert!(KeyCipher::is_unbound(&before[0].api_key_ciphertext));
        assert_eq!(
            cipher
                .decrypt(row.id, &row.api_key_ciphertext)
                .unwrap()
                .expose(),
            key
        );
        assert!(cipher.decrypt(row.id + 1, &row.api_key_ciphertext).is_err());
    }
    // The service uses the re-encrypted key: the gateway answers the first account's ping.
    let client = awc::Client::default();
    let mut resp = client
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/accounts/{}/ping",
            after[0].id
        ))
        .bearer_auth(crate::helpers::TEST_TOKEN)
        .send()
        .await
        .unwrap();
    let pong: Value = resp.json().await.unwrap();
    assert_eq!(pong["ok"], true, "{pong}");

    // A ciphertext moved to another account's row no longer opens: the service refuses to start.
    TradingAccounts::update_many()
        .col_expr(
            trading_accounts::Column::ApiKeyCiphertext,
            sea_orm::sea_query::Expr::value(after[1].api_key_ciphertext.clone()),
        )
        .filter(trading_accounts::Column::Id.eq(after[0].id))
        .exec(&db)
        .await
        .unwrap();
    let err = build(KEY_A)
        .await
        .err()
        .expect("a swapped ciphertext: refused");
    assert!(format!("{err:#}").contains("account 'old-one'"), "{err:#}");
    gateway.stop().await;
}

#[actix_web::test]
async fn the_service_refuses_to_start_when_stored_keys_cannot_be_read() {
    let test_db = fresh_database().await;
    let db = migrated(&test_db.url).await;
    let cipher = KeyCipher::from_base64(KEY_A).unwrap();
    insert_account(&db, &cipher, "main", "http://127.0.0.1:5000", API_KEY, true).await;
    let before = rows(&db).await;

    let build = |key: &str| {
        let mut settings = test_settings(&test_db.url);
        settings.security.encryption_key = key.into();
        Application::build_with_clock(settings, crate::helpers::test_clock())
    };
    let err = build("").await.err().expect("no key: refused").to_string();
    assert_eq!(
        err,
        "1 trading account(s) have encrypted API keys but security.encryption_key \
         (SUPERVISOR__SECURITY__ENCRYPTION_KEY) is not set"
    );
    let err = build(KEY_B).await.err().expect("wrong key: refused");
    let message = format!("{err:#}");
    assert!(
        message.starts_with(
            "the configured encryption key cannot decrypt the API key of account 'main': wrong key?"
        ),
        "{message}"
    );
    assert!(!message.contains(KEY_B) && !message.contains(KEY_A) && !message.contains(API_KEY));
    let err = build("c2hvcnQ=")
        .await
        .err()
        .expect("malformed key: refused");
    assert!(err.to_string().contains("security.encryption_key"), "{err}");
    assert!(!err.to_string().contains("c2hvcnQ="));
    assert_eq!(rows(&db).await, before, "nothing in the database changed");
    let configs_before = configs(&db).await;

    assert!(build(KEY_A).await.is_ok(), "the right key starts");

    // The real binary: non-zero exit, the message on stderr, no key printed.
    let mut child = Command::new(env!("CARGO_BIN_EXE_supervisor"))
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("DATABASE_URL")
        .env("SUPERVISOR__DATABASE__URL", &test_db.url)
        .env("SUPERVISOR__SERVER__PORT", "0")
        .env("SUPERVISOR__SECURITY__ENCRYPTION_KEY", KEY_B)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exit = poll_until(WAIT, "the supervisor to exit", || {
        let r = child.try_wait().unwrap();
        async move { r }
    })
    .await;
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!exit.success(), "exit {exit:?}");
    assert!(
        stderr.contains("cannot decrypt the API key of account 'main': wrong key?"),
        "{stderr}"
    );
    for secret in [KEY_A, KEY_B, API_KEY] {
        assert!(!stderr.contains(secret) && !stdout.contains(secret));
    }
    assert_eq!(configs(&db).await, configs_before);
}

// ---------------------------------------------------------------- settings

#[test]
fn account_settings_have_defaults_and_are_validated() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("settings");
    let vars = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let s = Settings::load_from(&dir, "local", vars(&[])).unwrap();
    assert_eq!(s.accounts.ping_interval_s, 30);
    assert_eq!(s.accounts.failover_after_failures, 3);
    let s = Settings::load_from(
        &dir,
        "local",
        vars(&[("SUPERVISOR__SECURITY__ENCRYPTION_KEY", KEY_A)]),
    )
    .unwrap();
    assert_eq!(s.security.encryption_key.expose_secret(), KEY_A);
    assert!(!format!("{s:?}").contains(KEY_A));
    for (var, value, key) in [
        (
            "SUPERVISOR__ACCOUNTS__PING_INTERVAL_S",
            "0",
            "accounts.ping_interval_s",
        ),
        (
            "SUPERVISOR__ACCOUNTS__FAILOVER_AFTER_FAILURES",
            "0",
            "accounts.failover_after_failures",
        ),
        (
            "SUPERVISOR__ACCOUNTS__PING_EVERY",
            "5",
            "accounts.ping_every",
        ),
        (
            "SUPERVISOR__SECURITY__ENCRYPTION_KEY",
            "bm90LTMyLWJ5dGVz",
            "security.encryption_key",
        ),
    ] {
        let err = Settings::load_from(&dir, "local", vars(&[(var, value)]))
            .expect_err(&format!("{var}={value} must be rejected"));
        assert_eq!(err.key, key, "{err}");
        assert!(!err.to_string().contains("bm90LTMyLWJ5dGVz"), "{err}");
    }
}
