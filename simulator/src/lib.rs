//! An OpenAlgo-compatible gateway simulator (`supervisor sim`, docs/ARCHITECTURE.md §2) for
//! demos, tests and benchmarks: the market-data WebSocket feed (docs/openalgo.md §2), the REST
//! subset (docs/openalgo.md §3) and a `/sim/*` control API on the REST port.
//!
//! It behaves like a connection-limited broker: more than `max_connections_per_key`
//! authenticated feed connections for one key are refused with `BROKER_CONNECTION_ERROR`
//! "Connection Limit Exceeded (429)" and closed. Prices are a seeded random walk (the
//! `market` module documents the rules, including how prices set on options behave).
//!
//! Simulator extensions to the wire formats: `data.sim_sent_us` in every `market_data`
//! frame (epoch microseconds when the frame was built). Feed frames a slow client does not
//! read are dropped beyond a per-connection queue and counted in `/sim/stats`
//! (`ticks_dropped`).

mod books;
mod calendar;
mod control;
mod faults;
mod feed;
mod market;
mod orders;
mod payload;
mod pricing;
mod ratelimit;
mod rest;
mod schema;
mod session;
mod state;
mod ticker;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_rt::Arbiter;
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use actix_web_actors::ws::{CloseCode, CloseReason};
use anyhow::{Context, bail};
use clock::{SharedClock, SystemClock};

pub use ratelimit::RateLimits;
use state::Shared;

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address both servers bind to.
    pub host: String,
    /// REST port (OpenAlgo: 5000); 0 picks a free port.
    pub rest_port: u16,
    /// Feed port (OpenAlgo: 8765); 0 picks a free port.
    pub ws_port: u16,
    /// Each key is one account with its own books.
    pub api_keys: Vec<String>,
    /// Concurrent authenticated feed connections allowed per key.
    pub max_connections_per_key: usize,
    /// Random-walk seed.
    pub seed: u64,
    /// Random-walk ticks per second across all subscribed instruments; 0 = only ticks
    /// pushed through `/sim/price`.
    pub ticks_per_s: f64,
    /// A connection still unauthenticated this long after connecting is closed (4401).
    pub auth_grace: Duration,
    /// Protocol-level ping interval; a connection that answers no ping for two
    /// intervals is closed.
    pub ping_interval: Duration,
    /// REST rate limits per client IP and endpoint.
    pub rate_limits: RateLimits,
    /// The simulator's time of day and date: which expiries are listed, option prices and
    /// greeks, order timestamps. Random-walk steps are scaled by the time between them on this
    /// clock, so a clock that stands still also stills the walk.
    pub clock: SharedClock,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            host: "127.0.0.1".to_string(),
            rest_port: 5000,
            ws_port: 8765,
            api_keys: Vec::new(),
            max_connections_per_key: 1,
            seed: 1,
            ticks_per_s: 10.0,
            auth_grace: Duration::from_secs(15),
            ping_interval: Duration::from_secs(20),
            rate_limits: RateLimits::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl SimConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.api_keys.is_empty() {
            bail!("the simulator needs at least one API key");
        }
        if self.api_keys.iter().any(String::is_empty) {
            bail!("API keys must not be empty");
        }
        for (at, key) in self.api_keys.iter().enumerate() {
            if self.api_keys[..at].contains(key) {
                bail!("API key {} is listed twice", mask_key(key));
            }
        }
        if self.max_connections_per_key == 0 {
            bail!("max_connections_per_key must be at least 1");
        }
        if !self.ticks_per_s.is_finite() || self.ticks_per_s < 0.0 {
            bail!("ticks_per_s must be a non-negative number");
        }
        if self.auth_grace.is_zero() || self.ping_interval.is_zero() {
            bail!("auth_grace and ping_interval must be positive");
        }
        let limits = self.rate_limits;
        if limits.api_per_s == 0 || limits.order_per_s == 0 || limits.smart_order_per_s == 0 {
            bail!("rate limits must be at least 1 per second");
        }
        if limits.window.is_zero() {
            bail!("the rate-limit window must be positive");
        }
        Ok(())
    }
}

/// A key as it may appear in logs and stats: its first 4 characters and an ellipsis.
pub fn mask_key(key: &str) -> String {
    let prefix: String = key.chars().take(4).collect();
    format!("{prefix}…")
}

/// A running simulator.
pub struct Simulator {
    host: String,
    rest_port: u16,
    ws_port: u16,
    rest: ServerHandle,
    ws: ServerHandle,
    ticker: Arbiter,
    shared: Arc<Shared>,
}

fn bind(host: &str, port: u16, what: &str) -> anyhow::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind((host, port))
        .with_context(|| format!("binding the simulator {what} port {host}:{port}"))?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("reading the simulator {what} address"))?
        .port();
    Ok((listener, bound))
}

impl Simulator {
    /// Starts feed + REST inside the current actix System.
    pub async fn start(config: SimConfig) -> anyhow::Result<Simulator> {
        config.validate()?;
        let shared = Arc::new(Shared::new(&config));
        let (rest_listener, rest_port) = bind(&config.host, config.rest_port, "REST")?;
        let (ws_listener, ws_port) = bind(&config.host, config.ws_port, "feed")?;

        let data = web::Data::from(shared.clone());
        let rest_data = data.clone();
        let rest = HttpServer::new(move || {
            App::new()
                .app_data(rest_data.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .service(
                    web::resource(["/api/v1/{endpoint}", "/api/v1/{endpoint}/"])
                        .route(web::post().to(rest::api_endpoint)),
                )
                .route("/sim/stats", web::get().to(control::stats))
                .route("/sim/orders", web::get().to(control::orders))
                .route("/sim/positions", web::get().to(control::positions))
                .route("/sim/instruments", web::get().to(control::instruments))
                .route("/sim/price", web::post().to(control::price))
                .route("/sim/fault", web::post().to(control::fault))
                .route("/sim/rate", web::post().to(control::rate))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(rest_listener)
        .context("starting the simulator REST server")?
        .run();

        let feed = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(session::feed_endpoint))
        })
        // Ticks are small frames that must leave at once (no Nagle delay).
        .on_connect(|io, _| {
            if let Some(tcp) = io.downcast_ref::<actix_rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(ws_listener)
        .context("starting the simulator feed server")?
        .run();

        let rest_handle = rest.handle();
        let ws_handle = feed.handle();
        actix_rt::spawn(rest);
        actix_rt::spawn(feed);

        let ticker = Arbiter::new();
        if !ticker.spawn(ticker::run(shared.clone())) {
            bail!("starting the simulator ticker thread");
        }
        tracing::info!(
            rest_port,
            ws_port,
            keys = config.api_keys.len(),
            "simulator started"
        );
        Ok(Simulator {
            host: config.host,
            rest_port,
            ws_port,
            rest: rest_handle,
            ws: ws_handle,
            ticker,
            shared,
        })
    }

    pub fn rest_port(&self) -> u16 {
        self.rest_port
    }

    pub fn ws_port(&self) -> u16 {
        self.ws_port
    }

    /// `http://<host>:<rest_port>`
    pub fn rest_url(&self) -> String {
        format!("http://{}:{}", self.host, self.rest_port)
    }

    /// `ws://<host>:<ws_port>`
    pub fn ws_url(&self) -> String {
        format!("ws://{}:{}", self.host, self.ws_port)
    }

    /// Stops both servers and closes every feed connection (a stopped gateway).
    pub async fn stop(self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.core().close_all(CloseReason {
            code: CloseCode::Away,
            description: Some("gateway stopped".to_string()),
        });
        self.ws.stop(true).await;
        self.rest.stop(true).await;
        self.ticker.stop();
        tracing::info!(
            rest_port = self.rest_port,
            ws_port = self.ws_port,
            "simulator stopped"
        );
    }
}

/// `supervisor sim` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// REST API port.
    #[arg(long, default_value_t = 5000)]
    pub rest_port: u16,
    /// WebSocket feed port.
    #[arg(long, default_value_t = 8765)]
    pub ws_port: u16,
    /// An accepted API key (one account each); repeat for more.
    #[arg(
        long = "api-key",
        env = "SIM_API_KEYS",
        value_delimiter = ',',
        required = true
    )]
    pub api_keys: Vec<String>,
    /// Concurrent feed connections allowed per key.
    #[arg(long, default_value_t = 1)]
    pub max_connections_per_key: usize,
    /// Random-walk seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Random-walk ticks per second across subscribed instruments (0: only /sim/price).
    #[arg(long, default_value_t = 10.0)]
    pub ticks_per_s: f64,
}

impl From<SimArgs> for SimConfig {
    fn from(args: SimArgs) -> SimConfig {
        SimConfig {
            host: args.host,
            rest_port: args.rest_port,
            ws_port: args.ws_port,
            api_keys: args.api_keys,
            max_connections_per_key: args.max_connections_per_key,
            seed: args.seed,
            ticks_per_s: args.ticks_per_s,
            ..SimConfig::default()
        }
    }
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("listening for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// Runs the simulator until SIGINT/SIGTERM, printing its URLs.
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let config = SimConfig::from(args);
    let keys: Vec<String> = config.api_keys.iter().map(|k| mask_key(k)).collect();
    let simulator = Simulator::start(config).await?;
    println!("OpenAlgo simulator");
    println!("  REST     {}/api/v1/", simulator.rest_url());
    println!("  feed     {}", simulator.ws_url());
    println!("  control  {}/sim/stats", simulator.rest_url());
    println!("  keys     {}", keys.join(", "));
    let result = shutdown_signal().await;
    simulator.stop().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_gateway() {
        let config = SimConfig::default();
        assert_eq!((config.rest_port, config.ws_port), (5000, 8765));
        assert_eq!(config.max_connections_per_key, 1);
        assert_eq!(config.auth_grace, Duration::from_secs(15));
        assert_eq!(config.ping_interval, Duration::from_secs(20));
        assert_eq!(
            config.rate_limits,
            RateLimits {
                api_per_s: 50,
                order_per_s: 10,
                smart_order_per_s: 10,
                window: Duration::from_secs(1),
            }
        );
    }

    #[test]
    fn keys_are_masked_to_four_characters() {
        assert_eq!(mask_key("abcdef123456"), "abcd…");
        assert_eq!(mask_key("ab"), "ab…");
    }

    #[test]
    fn invalid_configurations_are_refused() {
        let valid = SimConfig {
            api_keys: vec!["key-one".into()],
            ..SimConfig::default()
        };
        assert!(valid.validate().is_ok());
        let no_keys = SimConfig::default();
        assert!(no_keys.validate().is_err());
        let twice = SimConfig {
            api_keys: vec!["secret-key".into(), "secret-key".into()],
            ..SimConfig::default()
        };
        let message = twice.validate().unwrap_err().to_string();
        assert!(
            message.contains("secr…") && !message.contains("secret-key"),
            "{message}"
        );
        let zero = SimConfig {
            max_connections_per_key: 0,
            ..valid.clone()
        };
        assert!(zero.validate().is_err());
        let negative = SimConfig {
            ticks_per_s: -1.0,
            ..valid
        };
        assert!(negative.validate().is_err());
    }
}
