//! HTTP surface: routes, authentication, error bodies.

mod accounts;
mod admin;
pub mod auth;
mod calendar;
mod chains;
pub mod error;
mod feed;
mod health;
mod metrics;
pub mod openapi;
pub mod positions;
mod state;
pub mod strategies;

use std::time::Duration;

use actix::Addr;
use actix_web::web;
use actors::accounts::AccountMonitorActor;
use actors::calendar::CalendarActor;
use actors::chain::ChainDirectoryActor;
use actors::feed::Feed;
use actors::orders::OrderGatewayActor;
use actors::positions::PositionMonitorActor;
use actors::secrets::KeyCipher;
use actors::supervisor::SupervisorActor;
use clock::SharedClock;
use sea_orm::DatabaseConnection;

use error::ApiError;

/// Shared, read-mostly state of the HTTP handlers.
pub struct AppState {
    pub db: DatabaseConnection,
    pub admin_token: String,
    pub body_limit: usize,
    pub feed: Feed,
    pub supervisor: Addr<SupervisorActor>,
    /// The time source of the service (a manual clock in tests).
    pub clock: SharedClock,
    pub calendar: Addr<CalendarActor>,
    /// Encrypts and decrypts account API keys; None when no encryption key is configured.
    pub cipher: Option<KeyCipher>,
    pub accounts: Addr<AccountMonitorActor>,
    /// Timeout of one REST call to a gateway.
    pub rest_timeout: Duration,
    pub chains: Addr<ChainDirectoryActor>,
    pub monitor: Addr<PositionMonitorActor>,
    pub gateway: Addr<OrderGatewayActor>,
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health::health))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/api/openapi.json", web::get().to(openapi::document))
        .route("/", web::get().to(admin::index))
        .route("/static/{file}", web::get().to(admin::asset))
        .route("/ws/admin", web::get().to(admin::stream))
        .route("/api/v1/state", web::get().to(state::state))
        .route(
            "/api/v1/connection/reconnect",
            web::post().to(feed::reconnect),
        )
        .route(
            "/api/v1/service/{action}",
            web::post().to(state::service_control),
        )
        .route("/api/v1/chain-sessions", web::post().to(chains::create))
        .route("/api/v1/chain-sessions", web::get().to(chains::list))
        .route(
            "/api/v1/chain-sessions/{id}",
            web::get().to(chains::snapshot),
        )
        .route(
            "/api/v1/chain-sessions/{id}",
            web::delete().to(chains::delete),
        )
        .route(
            "/api/v1/chain-sessions/{id}/heartbeat",
            web::post().to(chains::heartbeat),
        )
        .route("/ws/chain/{id}", web::get().to(chains::stream))
        .service(web::scope("/api/v1/calendar").configure(calendar::routes))
        .configure(risk_routes);
    accounts::routes(cfg);
}

/// Strategies, executions, positions, risk events and the kill switch.
fn risk_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/strategies", web::get().to(strategies::list))
        .route("/api/v1/strategies", web::post().to(strategies::create))
        .route("/api/v1/strategies/{id}", web::get().to(strategies::get))
        .route("/api/v1/strategies/{id}", web::put().to(strategies::update))
        .route(
            "/api/v1/strategies/{id}",
            web::delete().to(strategies::delete),
        )
        .route(
            "/api/v1/strategies/{id}/risk",
            web::put().to(strategies::set_risk),
        )
        .route(
            "/api/v1/strategies/{id}/exit",
            web::post().to(strategies::exit),
        )
        .route("/api/v1/executions", web::post().to(positions::register))
        .route("/api/v1/positions", web::get().to(positions::positions))
        .route("/api/v1/risk-events", web::get().to(positions::risk_events))
        .route(
            "/api/v1/kill-switch",
            web::post().to(positions::kill_switch),
        );
}

/// Unknown routes answer with the JSON error body.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
