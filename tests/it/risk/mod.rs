//! Live P&L and per-strategy risk with exactly-once exits (docs/ARCHITECTURE.md §4.7–§4.9, §6),
//! against the simulator.
//!
//! The harness runs what the service runs: the simulator (no random walk: prices move only
//! through `/sim/price`), a fresh migrated database with two `trading_accounts` rows (one per
//! simulator key), the feed, and a "supervisor process": the order gateway, the position
//! monitor (with its risk actors) and the HTTP API, all on their own arbiter so a test can
//! kill the process and start a new one on the same database. Tests talk to the process over
//! HTTP (strategies, executions, exits, kill switch, positions) and check the simulator's
//! order log, the database and the API; only the wiring the supervisor will own (accounts,
//! market hours) goes through actor messages.

mod api;
mod exits;
mod liveness;
mod order_updates;
mod prices;
mod reconcile;
mod restart;
mod rules;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::actors::orders::{AccountEndpoint, OrderGatewayActor};
use ::actors::positions::{GetMonitorStatus, PositionMonitorActor};
use ::actors::secrets::KeyCipher;
use actix::Addr;
use actix_rt::Arbiter;
use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use entity::strategy_executions;
use entity::trading_accounts;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use serde_json::{Value, json};
use simulator::{RateLimits, SimConfig, Simulator};
use trading_supervisor::configuration::{DatabaseSettings, Settings};
use trading_supervisor::database;
use trading_supervisor::startup::Application;

use crate::feed::{FEED_KEY, sim_post, sim_stats};
use crate::helpers::{
    TEST_ENCRYPTION_KEY, TEST_TOKEN, TestDatabase, fresh_database, insert_account_row, poll_until,
    test_settings,
};

/// The simulator's second key: the second account.
pub const SECOND_KEY: &str = "backupkey-0002-cccc";
/// How long a test waits for anything asynchronous.
pub const WAIT: Duration = Duration::from_secs(20);

/// The service's settings for these tests (the database URL is filled in by the harness):
/// market always open, fast pings and retries.
pub fn options() -> Settings {
    let mut s = test_settings("");
    s.security.encryption_key = TEST_ENCRYPTION_KEY.into();
    s.calendar.always_open = true;
    s.accounts.ping_interval_s = 1;
    s.connection.backoff_initial_ms = 100;
    s.connection.limit_backoff_min_s = 1;
    s.connection.rest_timeout_ms = 2000;
    s.risk.exit_retry_initial_ms = 100;
    s.risk.exit_settle_ms = 2000;
    s.risk.exit_poll_initial_ms = 50;
    s.position_monitor.quote_fallback_per_s = 5;
    s.position_monitor.reconcile_interval_s = 0;
    s
}

/// One run of the service (a process): the whole application on its own arbiter, so a test
/// can kill it with whatever was in flight and start another on the same database.
pub struct Process {
    arbiter: Arbiter,
    server: ServerHandle,
    pub monitor: Addr<PositionMonitorActor>,
    pub gateway: Addr<OrderGatewayActor>,
    pub address: String,
}

impl Drop for Process {
    /// A test that ends leaves no service behind (its connections would pile up).
    fn drop(&mut self) {
        self.arbiter.stop();
    }
}

pub struct Harness {
    pub sim: Simulator,
    /// Keeps the test database (its temp folder) alive.
    _database: TestDatabase,
    pub db: DatabaseConnection,
    pub accounts: Vec<AccountEndpoint>,
    pub opts: Settings,
    pub process: Option<Process>,
    client: awc::Client,
}

/// A leg to open: an entry order at the simulator, then `POST /api/v1/executions`.
#[derive(Debug, Clone)]
pub struct LegSpec {
    pub strategy_id: i32,
    pub account: usize,
    pub exchange: &'static str,
    pub symbol: String,
    pub action: &'static str,
    pub quantity: i64,
    pub price: f64,
    pub product: &'static str,
    pub lot_size: Option<i64>,
    pub freeze_qty: Option<i64>,
}

impl LegSpec {
    pub fn equity(
        strategy_id: i32,
        symbol: &str,
        action: &'static str,
        qty: i64,
        price: f64,
    ) -> Self {
        LegSpec {
            strategy_id,
            account: 0,
            exchange: "NSE",
            symbol: symbol.to_string(),
            action,
            quantity: qty,
            price,
            product: "MIS",
            lot_size: None,
            freeze_qty: None,
        }
    }

    pub fn on(mut self, account: usize) -> Self {
        self.account = account;
        self
    }
}

pub fn epoch_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

async fn connect(url: &str) -> DatabaseConnection {
    database::connect(&DatabaseSettings {
        url: url.to_string(),
        max_connections: 5,
    })
    .await
    .expect("connect to the test database")
}

impl Harness {
    /// Simulator, database, accounts and a running process.
    pub async fn start(opts: Settings) -> Harness {
        let mut h = Harness::without_process(opts).await;
        h.start_process().await;
        h
    }

    /// Everything but the process (a test writes the database as a killed process left it).
    pub async fn without_process(mut opts: Settings) -> Harness {
        let sim = Simulator::start(SimConfig {
            rest_port: 0,
            ws_port: 0,
            api_keys: vec![FEED_KEY.into(), SECOND_KEY.into()],
            ticks_per_s: 0.0,
            // Both accounts share the test's IP; the gateway's own per-account limit is what
            // these tests exercise, not the simulator's per-IP one.
            rate_limits: RateLimits {
                api_per_s: 500,
                order_per_s: 100,
                smart_order_per_s: 100,
                ..RateLimits::default()
            },
            clock: crate::helpers::test_clock(),
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let database = fresh_database().await;
        opts.database.url = database.url.clone();
        let db = connect(&database.url).await;
        database::migrate(&db).await.expect("migrations");
        let cipher = KeyCipher::from_base64(TEST_ENCRYPTION_KEY).expect("test key");
        let mut accounts = Vec::new();
        for (name, key, primary) in [("acct-a", FEED_KEY, true), ("acct-b", SECOND_KEY, false)] {
            let row = trading_accounts::ActiveModel {
                name: Set(name.into()),
                broker: Set("sim".into()),
                rest_url: Set(sim.rest_url()),
                ws_url: Set(sim.ws_url()),
                is_primary: Set(primary),
                ..Default::default()
            };
            let row = insert_account_row(&db, &cipher, row, key).await;
            accounts.push(AccountEndpoint {
                id: row.id,
                name: name.into(),
                rest_url: sim.rest_url(),
                ws_url: sim.ws_url(),
                api_key: key.into(),
            });
        }
        Harness {
            sim,
            _database: database,
            db,
            accounts,
            opts,
            process: None,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
        }
    }

    /// Starts the service on the harness database and waits until it monitors positions.
    pub async fn start_process(&mut self) {
        assert!(self.process.is_none(), "a process is already running");
        let arbiter = Arbiter::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let settings = self.opts.clone();
        let spawned = arbiter.spawn(async move {
            let app = Application::build_with_clock(settings, crate::helpers::test_clock())
                .await
                .expect("the service starts");
            let _ = tx.send((
                app.port(),
                app.monitor().clone(),
                app.gateway().clone(),
                app.server_handle(),
            ));
            let _ = app.run_until_stopped().await;
        });
        assert!(spawned, "the process arbiter runs");
        let (port, monitor, gateway, server) = rx.await.expect("the service starts");
        poll_until(WAIT, "position monitoring to start", || {
            let monitor = monitor.clone();
            async move {
                let s = monitor.send(GetMonitorStatus).await.ok()?;
                (s.monitoring && s.loaded && s.accounts == 2).then_some(())
            }
        })
        .await;
        self.process = Some(Process {
            arbiter,
            server,
            monitor,
            gateway,
            address: format!("http://127.0.0.1:{port}"),
        });
    }

    /// Kills the process: its arbiter stops with whatever was in flight.
    pub async fn kill(&mut self) {
        let p = self.process.take().expect("a running process");
        p.server.stop(false).await;
        p.arbiter.stop();
        let (monitor, gateway) = (p.monitor.clone(), p.gateway.clone());
        poll_until(WAIT, "the killed process's actors to be gone", || {
            let gone = !monitor.connected() && !gateway.connected();
            async move { gone.then_some(()) }
        })
        .await;
    }

    pub fn p(&self) -> &Process {
        self.process.as_ref().expect("a running process")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.p().address)
    }

    async fn answer<S>(mut resp: awc::ClientResponse<S>) -> (StatusCode, Value)
    where
        S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
            + Unpin,
    {
        let status = resp.status();
        let bytes = resp.body().await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(TEST_TOKEN)
            .send()
            .await
            .expect("GET");
        Self::answer(resp).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .bearer_auth(TEST_TOKEN)
            .send_json(&body)
            .await
            .expect("POST");
        Self::answer(resp).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .client
            .put(self.url(path))
            .bearer_auth(TEST_TOKEN)
            .send_json(&body)
            .await
            .expect("PUT");
        Self::answer(resp).await
    }

    /// Creates a strategy with the given limit fields; returns its id.
    pub async fn strategy(&self, name: &str, limits: Value) -> i32 {
        let mut body = limits;
        body["name"] = json!(name);
        let (status, v) = self.post("/api/v1/strategies", body).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["id"].as_i64().expect("strategy id") as i32
    }

    /// Places an NSE MIS market order directly at the simulator (as a trader would).
    pub async fn sim_order(
        &self,
        account: usize,
        symbol: &str,
        action: &'static str,
        quantity: i64,
        strategy: &str,
    ) -> String {
        let order = LegSpec::equity(0, symbol, action, quantity, 0.0).on(account);
        self.place(&order, quantity, strategy).await
    }

    /// Places a market order for `quantity` of `leg`'s instrument on its account.
    pub async fn place(&self, leg: &LegSpec, quantity: i64, strategy: &str) -> String {
        let mut resp = self
            .client
            .post(format!("{}/api/v1/placeorder", self.sim.rest_url()))
            .send_json(&json!({
                "apikey": self.accounts[leg.account].api_key.expose(),
                "strategy": strategy,
                "exchange": leg.exchange,
                "symbol": leg.symbol,
                "action": leg.action,
                "quantity": quantity.to_string(),
                "pricetype": "MARKET",
                "product": leg.product,
            }))
            .await
            .expect("placeorder");
        let v: Value = resp.json().await.expect("placeorder json");
        assert_eq!(v["status"], "success", "{v}");
        v["orderid"].as_str().expect("orderid").to_string()
    }

    /// Opens a leg: sets the price, fills an entry order at the simulator, registers the
    /// execution and waits until the leg is priced by the feed.
    pub async fn open(&self, leg: LegSpec) -> i32 {
        let quantity = leg.quantity;
        self.open_held(leg, quantity).await
    }

    /// Opens a leg of which the broker holds only `held` units (0: the broker never saw it):
    /// entry orders for `held`, the execution registered for the leg's whole quantity.
    pub async fn open_held(&self, leg: LegSpec, held: i64) -> i32 {
        self.price(leg.exchange, &leg.symbol, leg.price).await;
        // Entries above the freeze quantity are split too (whole lots), as a broker needs.
        let chunk = match (leg.freeze_qty, leg.lot_size) {
            (Some(f), Some(l)) => f - f % l,
            (Some(f), None) => f,
            _ => held.max(1),
        };
        let mut left = held;
        let mut order_id = None;
        while left > 0 {
            let qty = left.min(chunk);
            order_id = Some(self.place(&leg, qty, "entry").await);
            left -= qty;
        }
        let (status, v) = self
            .post(
                "/api/v1/executions",
                json!({
                    "strategy_id": leg.strategy_id,
                    "account_id": self.accounts[leg.account].id,
                    "symbol": leg.symbol,
                    "exchange": leg.exchange,
                    "product": leg.product,
                    "action": leg.action,
                    "quantity": leg.quantity,
                    "entry_price": leg.price,
                    "entry_order_id": order_id,
                    "lot_size": leg.lot_size,
                    "freeze_qty": leg.freeze_qty,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        let id = v["id"].as_i64().expect("execution id") as i32;
        self.wait_subscribed(leg.exchange, &leg.symbol).await;
        self.price(leg.exchange, &leg.symbol, leg.price).await;
        self.wait_priced(id, leg.price).await;
        id
    }

    /// Sets a price at the simulator (a tick is pushed to subscribers at once).
    pub async fn price(&self, exchange: &str, symbol: &str, ltp: f64) {
        sim_post(
            &self.sim,
            "/sim/price",
            json!({"exchange": exchange, "symbol": symbol, "ltp": ltp}),
        )
        .await;
    }

    pub async fn wait_subscribed(&self, exchange: &str, symbol: &str) {
        poll_until(
            WAIT,
            &format!("{exchange}:{symbol} subscribed upstream"),
            || async {
                let stats = sim_stats(&self.sim).await;
                stats["subscriptions"]
                    .as_array()?
                    .iter()
                    .any(|s| s["exchange"] == exchange && s["symbol"] == symbol)
                    .then_some(())
            },
        )
        .await;
    }

    /// Waits until the position of leg `id` shows `ltp`.
    pub async fn wait_priced(&self, id: i32, ltp: f64) -> Value {
        poll_until(WAIT, &format!("leg {id} priced at {ltp}"), || async {
            self.position(id)
                .await
                .filter(|p| p["ltp"].as_f64().is_some_and(|v| close(v, ltp)))
        })
        .await
    }

    /// The open leg `id` as `GET /api/v1/positions` shows it.
    pub async fn position(&self, id: i32) -> Option<Value> {
        let (_, v) = self.get("/api/v1/positions").await;
        v["positions"]
            .as_array()?
            .iter()
            .find(|p| p["execution_id"] == id)
            .cloned()
    }

    pub async fn strategy_json(&self, id: i32) -> Value {
        let (status, v) = self.get(&format!("/api/v1/strategies/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    /// Waits until the strategy's live P&L equals `pnl` (the tick was evaluated).
    pub async fn wait_pnl(&self, id: i32, pnl: f64) -> Value {
        poll_until(WAIT, &format!("strategy {id} P&L {pnl}"), || async {
            let s = self.strategy_json(id).await;
            s["live"]["pnl"]
                .as_f64()
                .is_some_and(|v| close(v, pnl))
                .then_some(s)
        })
        .await
    }

    /// Waits until the strategy's state (live, or stored when no run is open) is `state` and the
    /// stored row says so too: the risk actor shows a transition at once and commits it after.
    pub async fn wait_state(&self, id: i32, state: &str) -> Value {
        poll_until(WAIT, &format!("strategy {id} in state {state}"), || async {
            let s = self.strategy_json(id).await;
            (s["state"] == state && s["risk_state"] == state).then_some(s)
        })
        .await
    }

    /// A `GET` of the simulator's control API (`/sim/orders`, `/sim/positions`, …).
    pub async fn sim_get(&self, path: &str) -> Value {
        let mut resp = self
            .client
            .get(format!("{}{path}", self.sim.rest_url()))
            .send()
            .await
            .expect("sim control GET");
        resp.json().await.expect("sim control json")
    }

    async fn sim_orders(&self) -> Vec<Value> {
        let all = self.sim_get("/sim/orders").await;
        all.as_array().expect("orders array").clone()
    }

    /// Orders the simulator booked for `strategy` (the `strategy` tag of each order).
    pub async fn orders_of(&self, strategy: &str) -> Vec<Value> {
        self.sim_orders()
            .await
            .into_iter()
            .filter(|o| o["strategy"] == strategy)
            .collect()
    }

    /// Every order the simulator received on `symbol` except the test's entry orders,
    /// including those it rejected (which carry no strategy tag).
    pub async fn exits_on(&self, symbol: &str) -> Vec<Value> {
        self.sim_orders()
            .await
            .into_iter()
            .filter(|o| o["symbol"] == symbol && o["strategy"] != "entry")
            .collect()
    }

    pub async fn events(&self, strategy_id: i32) -> Vec<Value> {
        let (status, v) = self
            .get(&format!("/api/v1/risk-events?strategy_id={strategy_id}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["events"].as_array().expect("events").clone()
    }

    /// Waits until the strategy's risk events include one of type `event`; returns them all.
    pub async fn wait_event(&self, strategy_id: i32, event: &str) -> Vec<Value> {
        poll_until(
            WAIT,
            &format!("a {event} event of strategy {strategy_id}"),
            || async {
                let events = self.events(strategy_id).await;
                events
                    .iter()
                    .any(|e| e["event_type"] == event)
                    .then_some(events)
            },
        )
        .await
    }

    pub async fn leg(&self, id: i32) -> strategy_executions::Model {
        strategy_executions::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .expect("read leg")
            .expect("leg exists")
    }

    /// Waits until leg `id` is `exited` in the database.
    pub async fn wait_exited(&self, id: i32) -> strategy_executions::Model {
        poll_until(WAIT, &format!("leg {id} exited"), || async {
            let leg = self.leg(id).await;
            (leg.status == strategy_executions::ExecutionStatus::Exited).then_some(leg)
        })
        .await
    }

    /// Sets a fault at the simulator for one account's key (or globally with None).
    pub async fn fault(&self, account: Option<usize>, mut body: Value) {
        if let Some(a) = account {
            body["api_key"] = json!(self.accounts[a].api_key.expose());
        }
        sim_post(&self.sim, "/sim/fault", body).await;
    }

    /// The masked key the simulator shows for an account's orders.
    pub fn masked(&self, account: usize) -> String {
        self.accounts[account].api_key.hint()
    }
}
