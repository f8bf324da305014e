//! Builds the application: database, migrations, HTTP server bound to its port.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use actors::feed::Feed;
use actors::orders::{GatewaySettings, OrderGatewayActor};
use actors::positions::{MonitorSettings, PositionMonitorActor};
use actors::risk::RiskSettings;
use anyhow::Context;
use rand::Rng;
use std::time::Duration;

use crate::configuration::Settings;
use crate::database;
use crate::http::{self, AppState, error};

pub struct Application {
    port: u16,
    server: Server,
    admin_token: String,
    token_generated: bool,
}

impl Application {
    /// Connects and migrates the database and binds the HTTP listener (port 0 picks a free
    /// port). Must be called inside an actix system.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let db = database::connect(&settings.database).await?;
        database::migrate(&db).await?;

        let token_generated = settings.security.admin_token.is_empty();
        let admin_token = if token_generated {
            generate_token()
        } else {
            settings.security.admin_token.clone()
        };

        let address = (settings.server.host.as_str(), settings.server.port);
        let listener = TcpListener::bind(address)
            .with_context(|| format!("binding {}:{}", address.0, address.1))?;
        let port = listener
            .local_addr()
            .context("reading the bound address")?
            .port();

        let body_limit = settings.server.body_limit_bytes;
        let feed = Feed::start(settings.feed_settings(), None);
        let gateway = OrderGatewayActor::start_supervised(db.clone(), gateway_settings(&settings));
        let monitor = PositionMonitorActor::start_supervised(
            db.clone(),
            monitor_settings(&settings),
            risk_settings(&settings),
            feed.registry.clone(),
            gateway.clone(),
        );
        let state = web::Data::new(AppState {
            db,
            admin_token: admin_token.clone(),
            body_limit,
            feed,
            monitor,
            gateway,
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
                .wrap(from_fn(http::auth::guard))
                .wrap(request_logger())
                .configure(http::routes)
                .default_service(web::to(http::not_found))
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
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// True when no token was configured and a random one was generated for this run.
    pub fn token_generated(&self) -> bool {
        self.token_generated
    }

    /// Serves until the server stops (SIGINT/SIGTERM trigger a graceful shutdown).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// The order gateway's settings (`risk` section).
pub fn gateway_settings(s: &Settings) -> GatewaySettings {
    GatewaySettings {
        max_exit_attempts: s.risk.max_exit_attempts,
        retry_initial: Duration::from_millis(s.risk.exit_retry_initial_ms),
        order_rate_per_s: s.risk.order_rate_per_s,
        rest_timeout: Duration::from_millis(s.connection.rest_timeout_ms),
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

fn generate_token() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
