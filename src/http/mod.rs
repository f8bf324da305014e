//! HTTP surface: routes, authentication, error bodies.

mod accounts;
pub mod auth;
pub mod error;
mod health;

use std::time::Duration;

use actix::Addr;
use actix_web::web;
use actors::accounts::AccountMonitorActor;
use actors::secrets::KeyCipher;
use sea_orm::DatabaseConnection;

use error::ApiError;

/// Shared, read-mostly state of the HTTP handlers.
pub struct AppState {
    pub db: DatabaseConnection,
    pub admin_token: String,
    pub body_limit: usize,
    /// Encrypts and decrypts account API keys; None when no encryption key is configured.
    pub cipher: Option<KeyCipher>,
    pub accounts: Addr<AccountMonitorActor>,
    /// Timeout of one REST call to a gateway.
    pub rest_timeout: Duration,
}

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health::health));
    accounts::routes(cfg);
}

/// Unknown routes answer with the JSON error body.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}
