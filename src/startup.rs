//! Builds the application: database, migrations, HTTP server bound to its port.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use actors::accounts::{AccountMonitorActor, AccountMonitorSettings, FollowAccounts, FollowReach};
use actors::calendar::{CalendarActor, CalendarSettings, SubscribePhase};
use actors::chain::{ChainDirectoryActor, ChainSettings, CloseAllChainSessions};
use actors::feed::Feed;
use actors::order_events::OrderEventRouter;
use actors::orders::{GatewaySettings, OrderGatewayActor};
use actors::positions::{MonitorSettings, PositionMonitorActor, Positions};
use actors::risk::RiskSettings;
use actors::secrets::{ExposeSecret, KeyCipher, SecretString, Token};
use actors::supervised::{self, RestartTracker};
use actors::supervisor::{
    AddMember, FollowFeedHealth, FollowGateway, SupervisorActor, SupervisorSettings,
};
use anyhow::Context as _;
use clock::{SharedClock, SystemClock};
use rand::Rng;
use sea_orm::DatabaseConnection;
use zeroize::Zeroize;

use crate::configuration::Settings;
use crate::database;
use crate::http::limits::Slots;
use crate::http::{self, AppState, error};

pub struct Application {
    port: u16,
    server: Server,
    admin_token: Token,
    token_generated: bool,
    feed: Feed,
    chains: Addr<ChainDirectoryActor>,
    monitor: Addr<PositionMonitorActor>,
    gateway: Addr<OrderGatewayActor>,
}

impl Application {
    /// Connects and migrates the database, starts the actors and binds the HTTP listener (port 0
    /// picks a free port). Must be called inside an actix system.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with the given clock (tests use a manual one).
    pub async fn build_with_clock(
        settings: Settings,
        clock: SharedClock,
    ) -> anyhow::Result<Application> {
        let db = database::connect(&settings.database).await?;
        database::migrate(&db).await?;
        let cipher =
            check_encryption_key(&db, settings.security.encryption_key.expose_secret()).await?;

        let token_generated = settings.security.admin_token.expose_secret().is_empty();
        let admin_token = Token::new(if token_generated {
            generate_token()
        } else {
            settings.security.admin_token.clone()
        });

        let address = (settings.server.host.as_str(), settings.server.port);
        let listener = TcpListener::bind(address)
            .with_context(|| format!("binding {}:{}", address.0, address.1))?;
        let port = listener
            .local_addr()
            .context("reading the bound address")?
            .port();

        let calendar_settings = CalendarSettings {
            pre_open_buffer: Duration::from_secs(settings.calendar.pre_open_buffer_s),
            always_open: settings.calendar.always_open,
            crash_loop_max_restarts: settings.supervision.crash_loop_max_restarts,
            crash_loop_window: Duration::from_secs(settings.supervision.crash_loop_window_s),
        };
        let (calendar_db, calendar_clock) = (db.clone(), clock.clone());
        let calendar = supervised::start(move |_| {
            CalendarActor::new(calendar_db, calendar_clock, calendar_settings)
        });
        let rest_timeout = Duration::from_millis(settings.connection.rest_timeout_ms);
        let account_monitor_settings = AccountMonitorSettings {
            ping_interval: Duration::from_secs(settings.accounts.ping_interval_s),
            rest_timeout,
            failover_after_failures: settings.accounts.failover_after_failures,
            crash_loop_max_restarts: settings.supervision.crash_loop_max_restarts,
            crash_loop_window: Duration::from_secs(settings.supervision.crash_loop_window_s),
        };
        let gateway = OrderGatewayActor::start_supervised(db.clone(), gateway_settings(&settings));
        let order_events = {
            let (to_exits, liveness) = (gateway.clone().recipient(), gateway.clone().recipient());
            let restarts = RestartTracker::new(
                settings.supervision.crash_loop_max_restarts,
                Duration::from_secs(settings.supervision.crash_loop_window_s),
            );
            supervised::start(move |_| OrderEventRouter::new(to_exits, liveness, restarts))
        };
        let feed = Feed::start(
            settings.feed_settings(),
            None,
            Some(order_events.clone().recipient()),
        );
        let positions = Positions::start(
            db.clone(),
            monitor_settings(&settings),
            risk_settings(&settings),
            feed.registry.clone(),
            gateway.clone(),
        );
        let monitor = positions.monitor.clone();
        let supervisor = {
            let feed = feed.clone();
            let supervisor_settings = SupervisorSettings {
                feed_down_after: Duration::from_secs(settings.position_monitor.feed_down_after_s),
            };
            supervised::start(move |_| SupervisorActor::new(feed, supervisor_settings))
        };
        calendar.do_send(SubscribePhase(supervisor.clone().recipient()));
        let feed_decisions = supervisor.clone().recipient();
        let accounts = {
            let (db, cipher) = (db.clone(), cipher.clone());
            supervised::start(move |_| {
                AccountMonitorActor::new(db, cipher, account_monitor_settings, feed_decisions)
            })
        };

        let body_limit = settings.server.body_limit_bytes;
        let chains = ChainDirectoryActor::start_supervised(
            chain_settings(&settings)?,
            clock.clone(),
            db.clone(),
            feed.registry.clone(),
        );
        supervisor.do_send(FollowGateway(chains.clone().recipient()));
        supervisor.do_send(AddMember(monitor.clone().recipient()));
        supervisor.do_send(FollowFeedHealth(monitor.clone().recipient()));
        accounts.do_send(FollowAccounts(gateway.clone().recipient()));
        accounts.do_send(FollowAccounts(feed.streams.clone().recipient()));
        accounts.do_send(FollowAccounts(positions.quotes.clone().recipient()));
        accounts.do_send(FollowAccounts(positions.reconciler.clone().recipient()));
        accounts.do_send(FollowReach(positions.quotes.clone().recipient()));
        let state = web::Data::new(AppState {
            db,
            admin_token: admin_token.clone(),
            metrics_token: (!settings.metrics.token.expose_secret().is_empty())
                .then(|| Token::new(settings.metrics.token.clone())),
            metrics_public: settings.metrics.public,
            metrics: Default::default(),
            admin_sockets: Slots::new(settings.server.max_admin_sockets),
            pending_sockets: Slots::new(settings.server.max_pending_sockets),
            body_limit,
            allow_insecure_gateways: settings.security.allow_insecure_gateways,
            feed: feed.clone(),
            supervisor,
            clock,
            calendar,
            cipher,
            accounts,
            rest_timeout,
            chains: chains.clone(),
            monitor: monitor.clone(),
            gateway: gateway.clone(),
            order_events,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_limit)
                        .error_handler(move |e, r| error::json_error_handler(e, r, body_limit)),
                )
                .app_data(web::PayloadConfig::default().limit(body_limit))
                .app_data(web::PathConfig::default().error_handler(error::path_error_handler))
                .app_data(web::QueryConfig::default().error_handler(error::query_error_handler))
                .wrap(from_fn(error::finish))
                .wrap(request_logger())
                .configure(http::routes)
        })
        .listen(listener)
        .context("starting the HTTP server")?
        .shutdown_timeout(5)
        .run();

        Ok(Application {
            port,
            server,
            admin_token,
            token_generated,
            feed,
            chains,
            monitor,
            gateway,
        })
    }

    /// Stops the HTTP server from elsewhere (tests).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_token(&self) -> &str {
        self.admin_token.expose()
    }

    /// True when no token was configured and a random one was generated for this run.
    pub fn token_generated(&self) -> bool {
        self.token_generated
    }

    /// The market-data feed (its connection starts idle, without a target).
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// The option-chain directory (it serves chains once given a gateway).
    pub fn chains(&self) -> &Addr<ChainDirectoryActor> {
        &self.chains
    }

    pub fn monitor(&self) -> &Addr<PositionMonitorActor> {
        &self.monitor
    }

    pub fn gateway(&self) -> &Addr<OrderGatewayActor> {
        &self.gateway
    }

    /// Serves until the server stops (SIGINT/SIGTERM trigger a graceful shutdown), then ends
    /// the chain sessions (their keys released, their rows closed as `shutdown`).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        if let Err(e) = self.chains.send(CloseAllChainSessions).await {
            tracing::warn!(error = %e, "could not close the chain sessions at shutdown");
        }
        served
    }
}

fn chain_settings(settings: &Settings) -> anyhow::Result<ChainSettings> {
    let o = &settings.option_chain;
    Ok(ChainSettings {
        enabled: o.on_demand,
        default_strikes: o.default_strikes,
        default_expiries: o.default_expiries,
        session_timeout: Duration::from_secs(o.session_timeout_s),
        max_push_hz: o.max_push_hz,
        max_sessions: o.max_sessions,
        max_sessions_per_client: o.max_sessions_per_client,
        closed_retention: Duration::from_secs(o.closed_session_retention_s),
        rest_timeout: Duration::from_millis(settings.connection.rest_timeout_ms),
        timezone: settings
            .calendar
            .timezone
            .parse()
            .map_err(|e| anyhow::anyhow!("calendar.timezone: {e}"))?,
        crash_loop_max_restarts: settings.supervision.crash_loop_max_restarts,
        crash_loop_window: Duration::from_secs(settings.supervision.crash_loop_window_s),
    })
}

/// Refuses to start when account API keys are stored and the configured encryption key is
/// missing, malformed or not the one they were encrypted with. Keys stored before ciphertexts
/// were bound to their account are re-encrypted with the account id as associated data.
pub(crate) async fn check_encryption_key(
    db: &DatabaseConnection,
    setting: &str,
) -> anyhow::Result<Option<KeyCipher>> {
    let cipher = if setting.is_empty() {
        None
    } else {
        let cipher = KeyCipher::from_base64(setting)
            .map_err(|m| anyhow::anyhow!("invalid setting `security.encryption_key`: {m}"))?;
        Some(cipher)
    };
    if let Some(cipher) = &cipher {
        let bound = actors::accounts::bind_stored_keys(db, cipher).await?;
        if bound > 0 {
            tracing::info!(
                accounts = bound,
                "API keys re-encrypted, bound to their accounts"
            );
        }
    }
    actors::accounts::load_all(db, cipher.as_ref()).await?;
    Ok(cipher)
}

/// Receives the AccountMonitorActor's feed-account decisions and logs them.
/// The order gateway's settings (`risk` section).
pub fn gateway_settings(s: &Settings) -> GatewaySettings {
    GatewaySettings {
        max_exit_attempts: s.risk.max_exit_attempts,
        retry_initial: Duration::from_millis(s.risk.exit_retry_initial_ms),
        retry_max: Duration::from_millis(s.risk.exit_retry_max_ms),
        order_rate_per_s: s.risk.order_rate_per_s,
        rest_timeout: Duration::from_millis(s.connection.rest_timeout_ms),
        settle: Duration::from_millis(s.risk.exit_settle_ms),
        poll_initial: Duration::from_millis(s.risk.exit_poll_initial_ms),
        poll_max: Duration::from_millis(s.risk.exit_poll_max_ms),
        working_timeout: Duration::from_millis(s.risk.exit_working_timeout_ms),
        event_wait: Duration::from_millis(s.risk.exit_event_wait_ms),
        positions_max_age: Duration::from_millis(s.risk.positions_max_age_ms),
        crash_loop_max_restarts: s.supervision.crash_loop_max_restarts,
        crash_loop_window: Duration::from_secs(s.supervision.crash_loop_window_s),
    }
}

/// The position monitor's settings (`position_monitor` section).
pub fn monitor_settings(s: &Settings) -> MonitorSettings {
    let p = &s.position_monitor;
    MonitorSettings {
        enabled: p.enabled,
        stale_after: Duration::from_secs(p.stale_after_s),
        reconcile_interval: (p.reconcile_interval_s > 0)
            .then(|| Duration::from_secs(p.reconcile_interval_s)),
        quote_fallback_per_s: p.quote_fallback_per_s,
        rest_timeout: Duration::from_millis(s.connection.rest_timeout_ms),
        crash_loop_max_restarts: s.supervision.crash_loop_max_restarts,
        crash_loop_window: Duration::from_secs(s.supervision.crash_loop_window_s),
        fill_limits: s.fill_limits(),
    }
}

/// The risk actors' settings (`risk` section).
pub fn risk_settings(s: &Settings) -> RiskSettings {
    RiskSettings {
        enabled: s.risk.enabled,
        auto_exit_on_max_loss: s.risk.auto_exit_on_max_loss,
        auto_exit_on_max_profit: s.risk.auto_exit_on_max_profit,
        default_confirm: Duration::from_millis(s.risk.exit_confirm_ms),
        crash_loop_max_restarts: s.supervision.crash_loop_max_restarts,
        crash_loop_window: Duration::from_secs(s.supervision.crash_loop_window_s),
    }
}

fn request_logger() -> actix_web::middleware::Logger {
    // Never log query strings: WebSocket clients may pass the token there.
    actix_web::middleware::Logger::new("%{request}xi %s %Dms")
        .custom_request_replace("request", |req| format!("{} {}", req.method(), req.path()))
}

fn generate_token() -> SecretString {
    let mut bytes: [u8; 24] = rand::rng().random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    bytes.zeroize();
    SecretString::from(token)
}
