//! `supervisor bench` (method and figures: BENCHMARKS.md): the simulator in firehose mode and the
//! supervisor against it, each in its own process, under S subscribed symbols, K strategies with
//! open legs and V chain viewers. Prints one JSON line of figures.
//!
//! Order of a run: the supervisor first: set-up through its HTTP API, a warm-up, the measured
//! window (counters, latency buckets and CPU read at both ends, RSS and upstream connections
//! sampled every second), then breach trials (a price that breaks a strategy's max loss, timed
//! from the simulator's send to the exit order's receipt at the simulator) while HTTP clients
//! write strategies, so the exits' write-ahead rows contend with HTTP writes for the database
//! (the order gateway times each one). Then, with the
//! supervisor stopped, the ceiling: a bare client reads and parses the same upstream symbols at
//! the same offered rate.

pub mod api_client;
mod ceiling;
mod procs;
mod stats;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use awc::ws;
use futures_util::{SinkExt, StreamExt, stream};
use serde::Serialize;
use serde_json::{Value, json};

use crate::api_client::ApiClient;
use procs::Child;
use stats::Quantiles;

/// API key the supervisor's feed uses, and the bare client's (the simulator allows one feed
/// connection per key, so each has its own).
const FEED_KEY: &str = "feed-bench-key-0001";
const CEILING_KEY: &str = "ceil-bench-key-0002";
/// The key of a second account whose gateway gives no order updates: its exits are confirmed
/// by reading the books only.
const POLL_KEY: &str = "poll-bench-key-0003";
/// Offered ticks per second in firehose mode: more than either reader can take, so both read
/// as fast as they can (the simulator drops what a reader leaves, and counts it).
const FIREHOSE_TICKS_PER_S: f64 = 400_000.0;
/// Strategies with one leg and a small max loss, broken one after the other at the end.
const BREACH_TRIALS: usize = 10;
const BREACH_ENTRY: f64 = 1000.0;
const BREACH_PRICE: f64 = 100.0;
const BREACH_MAX_LOSS: f64 = 500.0;
/// HTTP clients writing strategies during the breach trials, each at most one write per
/// `HTTP_WRITE_EVERY` (100 writes/s together: far more than operators make, without turning the
/// run into a test of the HTTP layer's CPU).
const HTTP_WRITERS: usize = 4;
const HTTP_WRITE_EVERY: Duration = Duration::from_millis(40);
/// How often a viewer pings its chain socket (well inside the default 300 s lease).
const VIEWER_PING_EVERY: Duration = Duration::from_secs(60);
/// Chains the viewers watch, in turn.
const CHAINS: [(&str, &str); 3] = [
    ("NIFTY", "NSE_INDEX"),
    ("BANKNIFTY", "NSE_INDEX"),
    ("SENSEX", "BSE_INDEX"),
];

/// `supervisor bench` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Symbols held by the strategies' open legs (up to the simulator's ~3300 tradable ones).
    #[arg(long, default_value_t = 1000)]
    pub symbols: usize,
    /// Strategies with open legs (the symbols are spread over them).
    #[arg(long, default_value_t = 50)]
    pub strategies: usize,
    /// Option chain viewers, each with its own chain session and WebSocket.
    #[arg(long, default_value_t = 20)]
    pub viewers: usize,
    /// Measured seconds (after set-up and warm-up). 300 or more is a soak: RSS is reported
    /// every minute on stderr and its slope after warm-up is in the result.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Ticks per second the simulator offers; 0: firehose (more than the feed can carry).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Print only the JSON line (no progress on stderr).
    #[arg(long)]
    pub json: bool,
}

/// The result line.
#[derive(Debug, Serialize)]
struct Report {
    symbols: usize,
    strategies: usize,
    viewers: usize,
    duration_s: u64,
    offered_ticks_per_s: f64,
    /// Ticks the supervisor took in and routed per second (registry → position monitor → risk
    /// actors, and registry → chain sessions → viewers).
    ticks_per_s: f64,
    /// Of those, ticks that reached the position monitor (and from it the risk actors).
    risk_ticks_per_s: f64,
    ceiling_ticks_per_s: f64,
    ratio: f64,
    /// Simulator send → risk decision.
    tick_to_risk_us: Quantiles,
    /// The supervisor's share of it: frame read from the socket → risk decision.
    receipt_to_risk_us: Quantiles,
    /// Breach tick sent → exit order received by the simulator.
    breach_to_exit_us: Quantiles,
    /// Breach tick sent → the order gateway knew the exit's fill from the broker (the leg is
    /// exited): on the account whose order updates are pushed.
    exit_fill_confirm_us: Quantiles,
    /// The same on the account whose gateway gives no order updates (its orders are read from
    /// the books).
    exit_fill_confirm_polling_us: Quantiles,
    /// Breaches that got no exit order at the simulator within 15 s (a missed stop).
    breach_exits_missed: u64,
    /// The order gateway recording each exit request before sending it (the write-ahead row,
    /// waiting for the database included), while `http_writes` ran alongside.
    exit_write_ahead_us: WriteAhead,
    /// Strategy writes (create, update, risk limits, delete) by HTTP clients during the breach
    /// trials, and how many of them failed (5xx or no answer).
    http_writes: u64,
    http_write_errors: u64,
    /// Peak resident memory of the supervisor process.
    rss_mb: f64,
    /// RSS growth after warm-up (least squares over the samples).
    rss_slope_mb_per_min: f64,
    cpu_s_per_mtick: f64,
    /// Most feed connections the simulator saw for the supervisor's key at any sample.
    upstream_connections: u64,
    upstream_subscriptions: u64,
    /// Ticks the risk path (position monitor) never saw.
    dropped_ticks: u64,
    /// Ticks coalesced away for chain viewers (by design: a viewer needs the latest only).
    viewer_ticks_coalesced: u64,
    /// Frames the simulator dropped because a reader fell behind (the offered excess).
    sim_ticks_dropped: u64,
    viewer_snapshots: u64,
}

#[derive(Debug, Serialize)]
struct WriteAhead {
    p50: Option<u64>,
    p99: Option<u64>,
    max: Option<u64>,
    count: u64,
}

impl WriteAhead {
    fn of(state: &Value) -> WriteAhead {
        let w = &state["orders"]["write_ahead_latency"];
        WriteAhead {
            p50: w["p50_us"].as_u64(),
            p99: w["p99_us"].as_u64(),
            max: w["max_us"].as_u64(),
            count: w["count"].as_u64().unwrap_or(0),
        }
    }
}

/// Runs the benchmark and prints the JSON line on stdout.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.symbols == 0 || args.strategies == 0 || args.duration == 0 {
        bail!("--symbols, --strategies and --duration must be positive");
    }
    if args.rate < 0.0 || !args.rate.is_finite() {
        bail!("--rate must be a non-negative number of ticks per second");
    }
    let log = Log(!args.json);
    let report = Bench::new(args, log).await?.run().await?;
    println!(
        "{}",
        serde_json::to_string(&report).context("serialising the report")?
    );
    Ok(())
}

#[derive(Clone, Copy)]
struct Log(bool);

impl Log {
    fn say(self, message: impl AsRef<str>) {
        if self.0 {
            eprintln!("bench: {}", message.as_ref());
        }
    }
}

struct Bench {
    args: BenchArgs,
    log: Log,
    offered: f64,
    _sim_process: Child,
    sim: ApiClient,
    rest_url: String,
    ws_url: String,
    /// Tradable symbols, equities first: (exchange, symbol, lot size).
    instruments: Vec<(String, String, u64)>,
}

impl Bench {
    async fn new(args: BenchArgs, log: Log) -> anyhow::Result<Bench> {
        let offered = if args.rate > 0.0 {
            args.rate
        } else {
            FIREHOSE_TICKS_PER_S
        };
        let mut sim_process = Child::spawn(
            "simulator",
            &[
                "sim",
                "--rest-port",
                "0",
                "--ws-port",
                "0",
                "--api-key",
                FEED_KEY,
                "--api-key",
                CEILING_KEY,
                "--api-key",
                POLL_KEY,
                // No ticks until every subscription is in place (see `offer`).
                "--ticks-per-s",
                "0",
            ],
            &[("RUST_LOG", child_log_filter())],
        )?;
        let rest_url = sim_process.wait_for_line(Duration::from_secs(30), |l| {
            l.trim()
                .strip_prefix("REST")
                .map(|u| u.trim().trim_end_matches("/api/v1/").to_string())
        })?;
        let ws_url = sim_process.wait_for_line(Duration::from_secs(5), |l| {
            l.trim().strip_prefix("feed").map(|u| u.trim().to_string())
        })?;
        let sim = ApiClient::new(rest_url.clone(), None);
        let listed = sim.get("/sim/instruments").await?;
        let mut instruments: Vec<(String, String, u64)> = listed
            .as_array()
            .context("/sim/instruments is not a list")?
            .iter()
            .filter_map(|i| {
                Some((
                    i["exchange"].as_str()?.to_string(),
                    i["symbol"].as_str()?.to_string(),
                    i["lot_size"].as_u64().unwrap_or(1),
                ))
            })
            .filter(|(exchange, _, _)| !exchange.ends_with("_INDEX"))
            .collect();
        instruments.sort_by_key(|(exchange, _, _)| exchange != "NSE");
        if args.symbols > instruments.len() {
            bail!(
                "--symbols {} is more than the simulator lists ({})",
                args.symbols,
                instruments.len()
            );
        }
        if instruments.iter().filter(|i| i.0 == "NSE").count() < 2 * BREACH_TRIALS {
            bail!(
                "the simulator lists fewer than {} equities",
                2 * BREACH_TRIALS
            );
        }
        sim.post(
            "/sim/fault",
            json!({"api_key": POLL_KEY, "refuse_order_updates_s": 1e6}),
        )
        .await
        .context("refusing the polling account's order updates")?;
        Ok(Bench {
            args,
            log,
            offered,
            _sim_process: sim_process,
            sim,
            rest_url,
            ws_url,
            instruments,
        })
    }

    async fn run(self) -> anyhow::Result<Report> {
        let warmup = Duration::from_secs(self.args.duration.clamp(1, 5));
        let window = Duration::from_secs(self.args.duration);
        let dir = tempfile::tempdir().context("creating a temporary directory")?;
        let token = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let key: [u8; 32] = rand::random();
        let db = dir.path().join("bench.db");
        let env = [
            ("RUST_LOG", child_log_filter()),
            ("APP_ENVIRONMENT", "local".to_string()),
            ("SUPERVISOR__SERVER__PORT", "0".to_string()),
            ("SUPERVISOR__SECURITY__ADMIN_TOKEN", token.clone()),
            (
                "SUPERVISOR__SECURITY__ENCRYPTION_KEY",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key),
            ),
            (
                "SUPERVISOR__DATABASE__URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            ),
            ("SUPERVISOR__CALENDAR__ALWAYS_OPEN", "true".to_string()),
            (
                "SUPERVISOR__CONNECTION__MAX_SYMBOLS",
                (self.args.symbols + 2000).to_string(),
            ),
            // Every viewer's chain session comes from this one client.
            (
                "SUPERVISOR__OPTION_CHAIN__MAX_SESSIONS",
                self.args.viewers.max(1).to_string(),
            ),
            (
                "SUPERVISOR__OPTION_CHAIN__MAX_SESSIONS_PER_CLIENT",
                self.args.viewers.max(1).to_string(),
            ),
            // Viewers are refused once the feed would carry more than the cap less the reserve:
            // the positions' S symbols and 1000 for the chain viewers, 1000 more kept for
            // positions.
            (
                "SUPERVISOR__CONNECTION__POSITION_RESERVE_SHARE",
                (1000.0 / (self.args.symbols + 2000) as f64).to_string(),
            ),
            (
                "SUPERVISOR__POSITION_MONITOR__RECONCILE_INTERVAL_S",
                "0".to_string(),
            ),
        ];
        let mut process = Child::spawn("supervisor", &["serve"], &env)?;
        let base = process.wait_for_line(Duration::from_secs(60), |l| {
            l.strip_prefix("supervisor listening on ")
                .map(|u| u.trim().trim_end_matches('/').to_string())
        })?;
        self.log
            .say(format!("supervisor at {base}/ while the run lasts"));
        let api = ApiClient::new(base.clone(), Some(token.clone()));
        let breach_legs = self.set_up(&api).await?;
        let snapshots = Rc::new(Cell::new(0u64));
        let viewers = self.open_viewers(&api, &base, &token, &snapshots).await?;
        self.wait_flowing(&api).await?;
        self.log
            .say(format!("supervisor ready; warming up for {warmup:?}"));
        actix_rt::time::sleep(warmup).await;

        let state0 = api.get("/api/v1/state").await?;
        let metrics0 = stats::prometheus(&api.get_text("/metrics").await?);
        let cpu0 = process.cpu_s()?;
        let t0 = Instant::now();
        self.log.say(format!("measuring for {window:?}"));
        let mut rss_samples = Vec::new();
        let mut connections = 0;
        let report_every = if self.args.duration >= 300 { 60 } else { 10 };
        let mut next_report = report_every;
        while t0.elapsed() < window {
            actix_rt::time::sleep(Duration::from_secs(1).min(window - t0.elapsed())).await;
            let (rss, _) = process.rss_mb()?;
            let at = t0.elapsed().as_secs_f64();
            rss_samples.push((at, rss));
            connections = connections.max(self.feed_connections().await?);
            if at >= next_report as f64 {
                next_report += report_every;
                self.log.say(format!(
                    "t={at:.0}s rss={rss:.1} MB slope={:.3} MB/min",
                    stats::slope_mb_per_min(&rss_samples)
                ));
            }
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu1 = process.cpu_s()?;
        let metrics1 = stats::prometheus(&api.get_text("/metrics").await?);
        let state1 = api.get("/api/v1/state").await?;

        let counter = |m: &std::collections::BTreeMap<String, f64>, name: &str| {
            m.get(name).copied().unwrap_or(0.0)
        };
        let delta = |name: &str| counter(&metrics1, name) - counter(&metrics0, name);
        let processed = delta("supervisor_ticks_in_total");
        let ticks_per_s = processed / elapsed;
        let risk_ticks_per_s = delta("supervisor_monitor_ticks_total") / elapsed;
        let window_of = |field: &str| {
            stats::between(
                &stats::latency_buckets(&state0, field),
                &stats::latency_buckets(&state1, field),
            )
        };
        let latency = window_of("feed_latency")?;
        let internal = window_of("decision_latency")?;

        self.log
            .say("breach trials, HTTP clients writing strategies meanwhile");
        let writing = Rc::new(Cell::new(true));
        let writers: Vec<_> = (0..HTTP_WRITERS)
            .map(|n| actix_rt::spawn(http_writer(base.clone(), token.clone(), n, writing.clone())))
            .collect();
        let breaches = self.breach_trials(&api, &breach_legs).await?;
        writing.set(false);
        let (mut http_writes, mut http_write_errors) = (0, 0);
        for writer in writers {
            let (done, failed) = writer.await.context("an HTTP writer panicked")?;
            http_writes += done;
            http_write_errors += failed;
        }
        connections = connections.max(self.feed_connections().await?);

        let final_state = api.get("/api/v1/state").await?;
        let consumers = final_state["registry"]["consumers"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let dropped_by = |risk_path: bool| {
            consumers
                .iter()
                .filter(|c| (c["label"] == "position-monitor") == risk_path)
                .filter_map(|c| c["dropped"].as_u64())
                .sum::<u64>()
        };
        let sim_stats = self.sim.get("/sim/stats").await?;
        let upstream = self.upstream().await?;
        let (_, peak) = process.rss_mb()?;
        let warm: Vec<(f64, f64)> = rss_samples
            .iter()
            .copied()
            .filter(|(t, _)| *t >= elapsed * 0.2)
            .collect();
        // Viewers leave first: open sockets would hold the supervisor's graceful shutdown for
        // its full timeout.
        viewers.iter().for_each(|viewer| viewer.abort());
        process.stop().await;

        self.log.say(format!(
            "ceiling: bare client on the same {} symbols",
            upstream.len()
        ));
        self.offer(0.0).await?;
        let mut feed = ceiling::connect(&self.ws_url, CEILING_KEY, &upstream).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.upstream().await?.len() < upstream.len() {
            if Instant::now() > deadline {
                bail!("the bare client's subscriptions not in place within 60 s");
            }
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
        self.offer(self.offered).await?;
        let ceiling =
            ceiling::measure(&mut feed, warmup, window.min(Duration::from_secs(10))).await?;
        self.log.say(format!(
            "ceiling: {ceiling:.0} ticks/s parsed by the bare client"
        ));
        Ok(Report {
            symbols: self.args.symbols,
            strategies: self.args.strategies,
            viewers: self.args.viewers,
            duration_s: self.args.duration,
            offered_ticks_per_s: self.offered,
            ticks_per_s: round1(ticks_per_s),
            risk_ticks_per_s: round1(risk_ticks_per_s),
            ceiling_ticks_per_s: round1(ceiling),
            ratio: if ceiling > 0.0 {
                (ticks_per_s / ceiling * 1000.0).round() / 1000.0
            } else {
                0.0
            },
            tick_to_risk_us: Quantiles::of(&latency),
            receipt_to_risk_us: Quantiles::of(&internal),
            breach_to_exit_us: Quantiles::of(&breaches.to_exit),
            exit_fill_confirm_us: Quantiles::of(&breaches.confirmed_by_events),
            exit_fill_confirm_polling_us: Quantiles::of(&breaches.confirmed_by_polling),
            breach_exits_missed: breaches.missed,
            exit_write_ahead_us: WriteAhead::of(&final_state),
            http_writes,
            http_write_errors,
            rss_mb: round1(peak),
            rss_slope_mb_per_min: (stats::slope_mb_per_min(&warm) * 1000.0).round() / 1000.0,
            cpu_s_per_mtick: if processed > 0.0 {
                round1((cpu1 - cpu0) / (processed / 1e6))
            } else {
                0.0
            },
            upstream_connections: connections,
            upstream_subscriptions: upstream.len() as u64,
            dropped_ticks: dropped_by(true),
            viewer_ticks_coalesced: dropped_by(false),
            sim_ticks_dropped: sim_stats["ticks_dropped"].as_u64().unwrap_or(0),
            viewer_snapshots: snapshots.get(),
        })
    }

    /// The feed account, the polling account, the strategies and their legs. Returns the
    /// breach legs' execution ids by symbol.
    async fn set_up(&self, api: &ApiClient) -> anyhow::Result<HashMap<String, i64>> {
        let account = api
            .post(
                "/api/v1/accounts",
                json!({"name": "bench", "broker": "sim", "rest_url": self.rest_url,
                       "ws_url": self.ws_url, "api_key": FEED_KEY, "is_primary": true}),
            )
            .await?;
        let account_id = account["id"].clone();
        let polling = api
            .post(
                "/api/v1/accounts",
                json!({"name": "bench-polling", "broker": "sim", "rest_url": self.rest_url,
                       "ws_url": self.ws_url, "api_key": POLL_KEY, "is_primary": false}),
            )
            .await?;
        let mut load = Vec::with_capacity(self.args.strategies);
        for i in 0..self.args.strategies {
            let created = api
                .post(
                    "/api/v1/strategies",
                    json!({"name": format!("load {i}"), "max_loss": 1e9}),
                )
                .await?;
            load.push(created["id"].clone());
        }
        self.log.say(format!(
            "registering {} legs over {} strategies",
            self.args.symbols, self.args.strategies
        ));
        let mut legs = Vec::with_capacity(self.args.symbols + BREACH_TRIALS);
        for (i, (exchange, symbol, lot)) in self.instruments[..self.args.symbols].iter().enumerate()
        {
            let equity = exchange == "NSE";
            legs.push(json!({
                "strategy_id": load[i % load.len()], "account_id": account_id,
                "symbol": symbol, "exchange": exchange,
                "product": if equity { "MIS" } else { "NRML" },
                "action": if i % 2 == 0 { "BUY" } else { "SELL" },
                "quantity": if equity { 1 } else { *lot }, "entry_price": 100.0,
                "lot_size": (!equity).then_some(*lot),
            }));
        }
        let mut breach_strategies = HashSet::new();
        for (i, (exchange, symbol, _)) in self.breach_symbols().into_iter().enumerate() {
            // The first half on the feed account (order updates), the rest on the polling one.
            let (key, account) = if i < BREACH_TRIALS {
                (FEED_KEY, &account_id)
            } else {
                (POLL_KEY, &polling["id"])
            };
            let created = api
                .post(
                    "/api/v1/strategies",
                    json!({"name": format!("breach {i}"), "max_loss": BREACH_MAX_LOSS}),
                )
                .await?;
            breach_strategies.extend(created["id"].as_i64());
            self.sim
                .post(
                    "/sim/price",
                    json!({"exchange": exchange, "symbol": symbol, "ltp": BREACH_ENTRY}),
                )
                .await?;
            // The breach legs are held at the broker (exits never send more than it holds).
            let entry = self
                .sim
                .post(
                    "/api/v1/placeorder",
                    json!({"apikey": key, "strategy": format!("breach {i}"),
                           "exchange": exchange, "symbol": symbol, "action": "BUY",
                           "quantity": 1, "pricetype": "MARKET", "product": "MIS"}),
                )
                .await
                .context("entering a breach leg at the simulator")?;
            // Within the simulator's order rate (10 a second from one client).
            actix_rt::time::sleep(Duration::from_millis(110)).await;
            legs.push(json!({
                "strategy_id": created["id"], "account_id": account,
                "symbol": symbol, "exchange": exchange, "product": "MIS", "action": "BUY",
                "quantity": 1, "entry_price": BREACH_ENTRY, "entry_order_id": entry["orderid"],
            }));
        }
        let results: Vec<anyhow::Result<Value>> = stream::iter(legs)
            .map(|leg| api.post("/api/v1/executions", leg))
            .buffer_unordered(8)
            .collect()
            .await;
        let mut breach_legs = HashMap::new();
        for result in results {
            let leg = result.context("registering a leg")?;
            if let (Some(symbol), Some(id)) = (leg["symbol"].as_str(), leg["id"].as_i64())
                && leg["strategy_id"]
                    .as_i64()
                    .is_some_and(|s| breach_strategies.contains(&s))
            {
                breach_legs.insert(symbol.to_string(), id);
            }
        }
        Ok(breach_legs)
    }

    fn breach_symbols(&self) -> Vec<(String, String, u64)> {
        self.instruments
            .iter()
            .filter(|i| i.0 == "NSE")
            .take(2 * BREACH_TRIALS)
            .cloned()
            .collect()
    }

    /// Chain sessions, each streamed over its own WebSocket by a task of its own; `snapshots`
    /// counts what arrives. Aborting a task closes its socket.
    async fn open_viewers(
        &self,
        api: &ApiClient,
        base: &str,
        token: &str,
        snapshots: &Rc<Cell<u64>>,
    ) -> anyhow::Result<Vec<actix_rt::task::JoinHandle<()>>> {
        let mut viewers = Vec::with_capacity(self.args.viewers);
        for i in 0..self.args.viewers {
            let (underlying, exchange) = CHAINS[i % CHAINS.len()];
            let session = api
                .post(
                    "/api/v1/chain-sessions",
                    json!({"underlying": underlying, "exchange": exchange}),
                )
                .await?;
            let id = session["id"]
                .as_str()
                .context("a chain session without id")?;
            let url = format!(
                "{}/ws/chain/{id}?token={token}",
                base.replacen("http", "ws", 1)
            );
            let (_, mut socket) = awc::Client::new()
                .ws(url)
                .max_frame_size(16 * 1024 * 1024)
                .connect()
                .await
                .map_err(|e| anyhow::anyhow!("opening chain viewer {i}: {e}"))?;
            let count = snapshots.clone();
            viewers.push(actix_rt::spawn(async move {
                // A ping now and then keeps the session's lease, as a browser's heartbeat does.
                let mut lease = actix_rt::time::interval(VIEWER_PING_EVERY);
                loop {
                    tokio::select! {
                        frame = socket.next() => match frame {
                            Some(Ok(ws::Frame::Text(_))) => count.set(count.get() + 1),
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                        _ = lease.tick() => {
                            if socket.send(ws::Message::Ping(Default::default())).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }));
        }
        Ok(viewers)
    }

    /// Waits until the simulator holds every subscription the supervisor made, then starts the
    /// offered load and waits for ticks to reach the position monitor. (A saturated feed
    /// session reads its client's frames late, so subscribing under load would leave symbols
    /// unsubscribed for a while and skew the figures.)
    async fn wait_flowing(&self, api: &ApiClient) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let metrics = stats::prometheus(&api.get_text("/metrics").await?);
            let wanted = metrics
                .get("supervisor_subscriptions")
                .copied()
                .unwrap_or(0.0) as usize;
            let held = self.upstream().await?.len();
            if wanted >= self.args.symbols && held >= wanted {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "subscriptions not in place within 60 s ({wanted} wanted by the supervisor, \
                     {held} held by the simulator)"
                );
            }
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
        self.offer(self.offered).await?;
        loop {
            let metrics = stats::prometheus(&api.get_text("/metrics").await?);
            let ticks = metrics
                .get("supervisor_monitor_ticks_total")
                .copied()
                .unwrap_or(0.0);
            if ticks > 0.0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no ticks reached the position monitor within 60 s");
            }
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sets the simulator's offered ticks per second.
    async fn offer(&self, ticks_per_s: f64) -> anyhow::Result<()> {
        self.sim
            .post("/sim/rate", json!({"ticks_per_s": ticks_per_s}))
            .await?;
        Ok(())
    }

    /// The instruments subscribed at the simulator, by anyone.
    async fn upstream(&self) -> anyhow::Result<Vec<(String, String)>> {
        let stats = self.sim.get("/sim/stats").await?;
        Ok(stats["subscriptions"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(|s| Some((s["exchange"].as_str()?.into(), s["symbol"].as_str()?.into())))
            .collect())
    }

    /// Feed connections the simulator holds for the supervisor's key.
    async fn feed_connections(&self) -> anyhow::Result<u64> {
        let stats = self.sim.get("/sim/stats").await?;
        let masked = simulator::mask_key(FEED_KEY);
        Ok(stats["feed"]["connections"][&masked].as_u64().unwrap_or(0))
    }

    /// Breaks each breach strategy's max loss, 150 ms apart (under the account's order rate
    /// limit) without waiting for the previous exit, then collects simulator send → exit order
    /// received for each, and simulator send → the fill confirmed (the order gateway's recent
    /// exits, `finished_at_us`). Returns both latencies and how many breaches got no exit order
    /// within 15 s of the last one.
    async fn breach_trials(
        &self,
        api: &ApiClient,
        legs: &HashMap<String, i64>,
    ) -> anyhow::Result<BreachFigures> {
        let mut pending = Vec::new();
        for (exchange, symbol, _) in self.breach_symbols() {
            let sent = self
                .sim
                .post(
                    "/sim/price",
                    json!({"exchange": exchange, "symbol": symbol, "ltp": BREACH_PRICE}),
                )
                .await?;
            let sent_at = sent["sent_at_us"]
                .as_i64()
                .context("/sim/price gave no send time")?;
            pending.push((exchange, symbol, sent_at));
            actix_rt::time::sleep(Duration::from_millis(150)).await;
        }
        let mut h = stats::histogram()?;
        let mut confirmed = [stats::histogram()?, stats::histogram()?];
        // The second half of the breaches is on the account without order updates.
        let mut unconfirmed: HashMap<i64, (i64, usize)> = pending
            .iter()
            .enumerate()
            .filter_map(|(i, (_, symbol, sent_at))| {
                Some((
                    *legs.get(symbol)?,
                    (*sent_at, usize::from(i >= BREACH_TRIALS)),
                ))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !pending.is_empty() && Instant::now() < deadline {
            let orders = self.sim.get("/sim/orders").await?;
            let orders = orders.as_array().map_or(&[][..], Vec::as_slice);
            let mut still = Vec::new();
            for (exchange, symbol, sent_at) in pending {
                let exit = orders.iter().find_map(|o| {
                    (o["symbol"] == symbol.as_str() && o["action"] == "SELL")
                        .then(|| o["received_at_us"].as_i64())
                        .flatten()
                });
                match exit {
                    Some(received) => h
                        .record(u64::try_from(received - sent_at).unwrap_or(0).max(1))
                        .context("recording a breach latency")?,
                    None => still.push((exchange, symbol, sent_at)),
                }
            }
            pending = still;
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        // The gateway stamps each confirmation itself: the (large) state is read only once the
        // exit orders are all in, so that reading it does not load the breaches being timed.
        while !unconfirmed.is_empty() && Instant::now() < deadline {
            let state = api.get("/api/v1/state").await?;
            for exit in state["orders"]["recent"].as_array().into_iter().flatten() {
                let (Some(id), Some(at)) = (
                    exit["execution_id"].as_i64(),
                    exit["finished_at_us"].as_i64(),
                ) else {
                    continue;
                };
                if exit["state"] == "filled"
                    && let Some((sent_at, half)) = unconfirmed.remove(&id)
                {
                    confirmed[half]
                        .record(u64::try_from(at - sent_at).unwrap_or(0).max(1))
                        .context("recording a fill confirmation latency")?;
                }
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        for (exchange, symbol, _) in &pending {
            self.log.say(format!(
                "no exit order for {exchange}:{symbol} within 15 s of the last breach"
            ));
        }
        let [events, polling] = confirmed;
        Ok(BreachFigures {
            to_exit: h,
            confirmed_by_events: events,
            confirmed_by_polling: polling,
            missed: pending.len() as u64,
        })
    }
}

/// What the breach trials measured.
struct BreachFigures {
    to_exit: hdrhistogram::Histogram<u64>,
    confirmed_by_events: hdrhistogram::Histogram<u64>,
    confirmed_by_polling: hdrhistogram::Histogram<u64>,
    missed: u64,
}

/// Writes strategies until `writing` turns false, one write per `HTTP_WRITE_EVERY`: create one,
/// change its description and its limits, delete it. Answers (writes done, writes failed).
async fn http_writer(base: String, token: String, n: usize, writing: Rc<Cell<bool>>) -> (u64, u64) {
    use actix_web::http::Method;
    let api = ApiClient::new(base, Some(token));
    let (mut done, mut failed) = (0u64, 0u64);
    let mut count = |ok: bool| {
        done += 1;
        failed += u64::from(!ok);
    };
    let pace = || actix_rt::time::sleep(HTTP_WRITE_EVERY);
    let mut i = 0u64;
    while writing.get() {
        i += 1;
        let created = api
            .post(
                "/api/v1/strategies",
                json!({"name": format!("http writer {n} #{i}"), "description": "churn"}),
            )
            .await;
        pace().await;
        let Ok(created) = created else {
            count(false);
            continue;
        };
        count(true);
        let path = format!("/api/v1/strategies/{}", created["id"]);
        for (method, path, body) in [
            (
                Method::PUT,
                path.clone(),
                Some(json!({"description": "changed"})),
            ),
            (
                Method::PUT,
                format!("{path}/risk"),
                Some(json!({"max_loss": 1000.0, "max_profit": 2000.0})),
            ),
            (Method::DELETE, path.clone(), None),
        ] {
            let status = api.status(method, &path, body).await;
            count(status.is_ok_and(|s| s.is_success()));
            pace().await;
        }
    }
    (done, failed)
}

/// The children log warnings and errors unless `RUST_LOG` says otherwise.
fn child_log_filter() -> String {
    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_string())
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
