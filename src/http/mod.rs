//! HTTP surface: routes, authentication, error bodies.

pub mod auth;
pub mod error;
mod feed;
mod health;
pub mod positions;
mod state;
pub mod strategies;

use actix::Addr;
use actix_web::web;
use actors::feed::Feed;
use actors::orders::OrderGatewayActor;
use actors::positions::PositionMonitorActor;
use sea_orm::DatabaseConnection;

use error::ApiError;

/// Shared, read-mostly state of the HTTP handlers.
pub struct AppState {
    pub db: DatabaseConnection,
    pub admin_token: String,
    pub body_limit: usize,
    pub feed: Feed,
    pub monitor: Addr<PositionMonitorActor>,
    pub gateway: Addr<OrderGatewayActor>,
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health::health))
        .route("/api/v1/state", web::get().to(state::state))
        .route(
            "/api/v1/connection/reconnect",
            web::post().to(feed::reconnect),
        )
        .configure(risk_routes);
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
