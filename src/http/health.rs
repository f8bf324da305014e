//! `GET /health`: open, reports status, version and database reachability.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::AppState;

/// The answer of `GET /health`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when the database does not answer.
    status: &'static str,
    version: &'static str,
    database: DatabaseHealth,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DatabaseHealth {
    /// `sqlite` or `postgres`.
    backend: &'static str,
    reachable: bool,
    error: Option<&'static str>,
}

/// Liveness and database reachability; open, no token needed.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "healthy", body = Health,
            example = json!({"status": "ok", "version": "0.1.0",
                "database": {"backend": "sqlite", "reachable": true, "error": null}})),
        (status = 503, description = "the database does not answer", body = Health,
            example = json!({"status": "degraded", "version": "0.1.0",
                "database": {"backend": "postgres", "reachable": false,
                    "error": "database did not answer"}})),
    )
)]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let backend = match state.db.get_database_backend() {
        sea_orm::DatabaseBackend::Sqlite => "sqlite",
        sea_orm::DatabaseBackend::Postgres => "postgres",
        _ => "other",
    };
    let (reachable, error) = match state.db.ping().await {
        Ok(()) => (true, None),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (false, Some("database did not answer"))
        }
    };
    let body = Health {
        status: if reachable { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        database: DatabaseHealth {
            backend,
            reachable,
            error,
        },
    };
    if reachable {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
