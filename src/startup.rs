//! Builds the application: database, migrations, HTTP server bound to its port.

use std::net::TcpListener;
use std::sync::Arc;

use actix::Addr;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use actors::accounts::{AccountMonitorActor, FollowAccounts, FollowReach};
use actors::calendar::{CalendarActor, SubscribePhase};
use actors::chain::{ChainDirectoryActor, CloseAllChainSessions};
use actors::feed::Feed;
use actors::order_events::OrderEventRouter;
use actors::orders::OrderGatewayActor;
use actors::positions::{PositionMonitorActor, Positions};
use actors::secrets::{ExposeSecret, KeyCipher, SecretString, Token};
use actors::supervised::{self, RestartTracker};
use actors::supervisor::{AddMember, FollowFeedHealth, FollowGateway, SupervisorActor};
use anyhow::Context as _;
use clock::{SharedClock, SystemClock};
use rand::Rng;
use sea_orm::DatabaseConnection;
use zeroize::Zeroize;

use crate::actor_settings;
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

        let calendar_settings = actor_settings::calendar(&settings);
        let (calendar_db, calendar_clock) = (db.clone(), clock.clone());
        let calendar = supervised::start(move |_| {
            CalendarActor::new(calendar_db, calendar_clock, calendar_settings)
        });
        let rest_timeout = actor_settings::rest_timeout(&settings);
        let account_monitor_settings = actor_settings::accounts(&settings);
        let gateway =
            OrderGatewayActor::start_supervised(db.clone(), actor_settings::gateway(&settings));
        let order_events = {
            let (to_exits, liveness) = (gateway.clone().recipient(), gateway.clone().recipient());
            let restarts = RestartTracker::new(actor_settings::supervision(&settings));
            supervised::start(move |_| OrderEventRouter::new(to_exits, liveness, restarts))
        };
        let feed = Feed::start(
            actor_settings::feed(&settings),
            None,
            Some(order_events.clone().recipient()),
        );
        let positions = Positions::start(
            db.clone(),
            actor_settings::monitor(&settings),
            actor_settings::risk(&settings),
            feed.registry.clone(),
            gateway.clone(),
        );
        let monitor = positions.monitor.clone();
        let supervisor = {
            let feed = feed.clone();
            let supervisor_settings = actor_settings::supervisor(&settings);
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
            actor_settings::chain(&settings)?,
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
