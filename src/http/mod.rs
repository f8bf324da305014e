//! HTTP surface: routes, authentication, error bodies.

mod accounts;
mod admin;
pub mod auth;
mod body;
mod calendar;
mod chains;
pub mod error;
mod feed;
mod health;
pub mod limits;
mod metrics;
mod numbers;
pub mod openapi;
pub mod positions;
mod state;
pub mod strategies;

use std::time::Duration;

use actix::Addr;
use actix_web::middleware::from_fn;
use actix_web::{ResponseError, web};
use actors::accounts::AccountMonitorActor;
use actors::calendar::CalendarActor;
use actors::chain::ChainDirectoryActor;
use actors::feed::Feed;
use actors::order_events::OrderEventRouter;
use actors::orders::OrderGatewayActor;
use actors::positions::PositionMonitorActor;
use actors::secrets::{KeyCipher, Token};
use actors::supervisor::SupervisorActor;
use clock::SharedClock;
use sea_orm::DatabaseConnection;

use error::ApiError;

/// Shared, read-mostly state of the HTTP handlers.
pub struct AppState {
    pub db: DatabaseConnection,
    pub admin_token: Token,
    /// `metrics.token`: lets Prometheus scrape `/metrics` without the admin token.
    pub metrics_token: Option<Token>,
    /// `metrics.public`: `/metrics` without any token.
    pub metrics_public: bool,
    pub metrics: metrics::MetricsCache,
    /// Admin page sockets open (`server.max_admin_sockets`).
    pub admin_sockets: limits::Slots,
    /// Sockets opened without a token that have not authenticated yet
    /// (`server.max_pending_sockets`).
    pub pending_sockets: limits::Slots,
    pub body_limit: usize,
    /// `security.allow_insecure_gateways`: remote `http://` and `ws://` gateways accepted.
    pub allow_insecure_gateways: bool,
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
    pub order_events: Addr<OrderEventRouter>,
}

/// Registers every route. Public, without a token: the admin page, its two assets and
/// `/health` (and `/metrics`, which takes the admin token or its own, unless configured public). Everything else, including any path
/// that routes nowhere, is inside a scope whose guard requires the admin token.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(admin::index))
        .route("/static/{file}", web::get().to(admin::asset))
        .route("/health", web::get().to(health::health))
        .service(
            web::resource("/metrics")
                .wrap(from_fn(auth::require_metrics_token))
                .route(web::get().to(metrics::metrics)),
        )
        .service(
            web::scope("/ws")
                .wrap(from_fn(auth::require_token_or_socket))
                .configure(socket_routes)
                .default_service(web::to(not_found)),
        )
        .service(
            web::scope("")
                .wrap(from_fn(auth::require_token))
                .configure(api_routes)
                .default_service(web::to(not_found)),
        );
}

/// The WebSockets, inside the `/ws` scope.
fn socket_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(admin::stream))
        .route("/chain/{id}", web::get().to(chains::stream));
}

/// The JSON API, inside the guarded catch-all scope.
fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/openapi.json", web::get().to(openapi::document))
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
        .service(
            web::scope("/api/v1/calendar")
                .configure(calendar::routes)
                .default_service(web::to(not_found)),
        )
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

/// What no handler answers, once the guard let it through: 405 with `Allow` when the path is
/// an operation of the API document under another method, else 404; both with the JSON error
/// body. (Inside the `/ws` scope an upgrade may arrive unverified: it gets 401, not a hint.)
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    if !auth::token_verified(&req) {
        return Err(ApiError::unauthorized(
            "missing credentials: send Authorization: Bearer <admin token>",
        ));
    }
    // The path as the router matched it (percent-decoded), so that 405 and routing agree.
    let routed = req.match_info().as_str();
    if let Some(allowed) = openapi::methods_of(routed) {
        let mut resp = ApiError::method_not_allowed(format!(
            "{} is not allowed on {}: use {}",
            req.method(),
            req.path(),
            allowed.join(", ")
        ))
        .error_response();
        if let Ok(value) = allowed.join(", ").parse() {
            resp.headers_mut()
                .insert(actix_web::http::header::ALLOW, value);
        }
        return Ok(resp);
    }
    Err(ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
