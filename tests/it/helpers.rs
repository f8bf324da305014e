//! Spawning the service on port 0 against a fresh database, and small client helpers.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use clock::{OffsetClock, SharedClock};
use sea_orm::{ConnectionTrait, Database};
use tempfile::TempDir;
use trading_supervisor::configuration::Settings;
use trading_supervisor::startup::Application;

pub const TEST_TOKEN: &str = "test-admin-token-0123456789";

/// The instant a test's clock shows when it starts, unless the test pins another: Saturday
/// 2026-11-28 at 10:00 in Asia/Kolkata. The market is closed, the nearest expiries are days
/// away and midnight is hours away, so nothing a test does depends on the machine's date or
/// time of day (docs/time.md).
pub fn test_start() -> DateTime<Utc> {
    chrono_tz::Asia::Kolkata
        .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
        .single()
        .expect("a valid instant")
        .with_timezone(&Utc)
}

/// A clock that starts at [`test_start`] and then runs at the speed of real time; share one
/// between the service and a simulator so both see the same instant.
pub fn test_clock() -> SharedClock {
    Arc::new(OffsetClock::starting_at(test_start()))
}

/// A fresh, empty database: a temp SQLite file, or a new PostgreSQL database when
/// `DATABASE_URL` points at PostgreSQL.
pub struct TestDatabase {
    pub url: String,
    _dir: Option<TempDir>,
}

pub async fn fresh_database() -> TestDatabase {
    match std::env::var("DATABASE_URL") {
        Ok(base) if base.starts_with("postgres") => {
            let name = format!("sup_test_{}", uuid::Uuid::new_v4().simple());
            let admin = Database::connect(base.as_str())
                .await
                .expect("connect to DATABASE_URL");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create test database");
            admin.close().await.ok();
            TestDatabase {
                url: replace_database_name(&base, &name),
                _dir: None,
            }
        }
        _ => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
            TestDatabase {
                url,
                _dir: Some(dir),
            }
        }
    }
}

fn replace_database_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_start..]
        .find('/')
        .map(|i| authority_start + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Settings for tests: the defaults, port 0, a known token, the given database.
pub fn test_settings(database_url: &str) -> Settings {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("settings");
    let mut settings =
        Settings::load_from(&dir, "local", std::iter::empty()).expect("default settings load");
    settings.server.port = 0;
    settings.security.admin_token = TEST_TOKEN.into();
    settings.database.url = database_url.into();
    settings
}

pub struct TestApp {
    pub address: String,
    pub token: String,
    pub client: awc::Client,
    pub database: TestDatabase,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the service with settings adjusted by `adjust`, its clock at [`test_start`].
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_clock(adjust, test_clock()).await
}

/// Spawns the service with settings adjusted by `adjust` and the given clock (e.g. a
/// `ManualClock`).
pub async fn spawn_app_with_clock(
    adjust: impl FnOnce(&mut Settings),
    clock: SharedClock,
) -> TestApp {
    let database = fresh_database().await;
    let mut settings = test_settings(&database.url);
    adjust(&mut settings);
    let app = Application::build_with_clock(settings, clock)
        .await
        .expect("build application");
    let port = app.port();
    let token = app.admin_token().to_string();
    actix_rt::spawn(app.run_until_stopped());
    let app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        token,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish(),
        database,
    };
    // Started: the order gateway has its accounts and the open positions are loaded, so that
    // `/health` no longer names them as starting.
    poll_until(Duration::from_secs(20), "the service to start", || async {
        let state = app.get_json("/api/v1/state").await;
        (state["orders"]["state"] != "Starting" && state["monitor"]["loaded"] == true).then_some(())
    })
    .await;
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A request with the admin token.
    pub fn get(&self, path: &str) -> awc::ClientRequest {
        self.client.get(self.url(path)).bearer_auth(&self.token)
    }

    pub fn post(&self, path: &str) -> awc::ClientRequest {
        self.client.post(self.url(path)).bearer_auth(&self.token)
    }
}

/// Reads a response body as JSON.
pub async fn json_body<S>(resp: &mut awc::ClientResponse<S>) -> serde_json::Value
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let bytes = resp.body().limit(16 * 1024 * 1024).await.expect("body");
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Polls `check` until it returns Some or the deadline passes.
pub async fn poll_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn database_name_is_replaced() {
    assert_eq!(
        replace_database_name("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        replace_database_name("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(replace_database_name("postgres://h", "x"), "postgres://h/x");
}

/// Stores `row` (an account) with `api_key` encrypted as the service does: bound to the row's id,
/// so written once the row has one.
pub async fn insert_account_row(
    db: &sea_orm::DatabaseConnection,
    cipher: &actors::secrets::KeyCipher,
    mut row: entity::trading_accounts::ActiveModel,
    api_key: &str,
) -> entity::trading_accounts::Model {
    use sea_orm::{ActiveModelTrait, Set};
    row.api_key_ciphertext = Set(String::new());
    row.api_key_hint = Set(actors::domain::mask::mask_secret(api_key));
    let model = row.insert(db).await.expect("insert the account");
    let id = model.id;
    let mut sealed: entity::trading_accounts::ActiveModel = model.into();
    sealed.api_key_ciphertext = Set(cipher.encrypt(id, &api_key.into()).expect("encrypt"));
    sealed.update(db).await.expect("store the encrypted key")
}

/// A 32-byte AEAD key (base64) for tests that store accounts.
pub const TEST_ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

impl TestApp {
    pub fn delete(&self, path: &str) -> awc::ClientRequest {
        self.client.delete(self.url(path)).bearer_auth(&self.token)
    }

    /// POSTs JSON and returns (status, body).
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut resp = self.post(path).send_json(body).await.expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.body().await.expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, value)
    }

    /// GETs JSON (asserting 200).
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let mut resp = self.get(path).send().await.expect("request");
        assert_eq!(resp.status(), 200, "GET {path}");
        json_body(&mut resp).await
    }

    /// Registers an account on a gateway (simulator) and returns its id.
    pub async fn add_account(
        &self,
        name: &str,
        rest_url: &str,
        ws_url: &str,
        api_key: &str,
        primary: bool,
    ) -> i64 {
        let (status, body) = self
            .post_json(
                "/api/v1/accounts",
                &serde_json::json!({
                    "name": name, "broker": "sim", "rest_url": rest_url, "ws_url": ws_url,
                    "api_key": api_key, "is_primary": primary,
                }),
            )
            .await;
        assert_eq!(status, 201, "create account: {body}");
        body["id"].as_i64().expect("account id")
    }
}
