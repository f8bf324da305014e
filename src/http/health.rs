//! `GET /health`: open; reports status, version, database reachability and the reasons the
//! service is degraded.
//!
//! 503 means the database does not answer. Calendar warnings (a year the next 30 days reach
//! without holidays loaded) make the status `degraded` but keep 200: the service runs, an
//! operator has data to load.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use actors::calendar::GetCalendarStatus;
use serde::Serialize;

use super::AppState;

/// The answer of `GET /health`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when there is a reason.
    status: &'static str,
    version: &'static str,
    database: DatabaseHealth,
    /// Why the service is degraded; empty when ok.
    reasons: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DatabaseHealth {
    /// `sqlite` or `postgres`.
    backend: &'static str,
    reachable: bool,
    error: Option<&'static str>,
}

/// How long the calendar actor may take to answer before health reports it as not answering.
const CALENDAR_ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Liveness, database reachability and calendar warnings; open, no token needed.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "`status` `ok`, or `degraded` with the `reasons` (e.g. the \
            next 30 days reach a year without holidays loaded for an active template's \
            exchange: import that year's list). `reasons` is empty when ok", body = Health,
            example = json!({"status": "degraded", "version": "0.1.0",
                "database": {"backend": "sqlite", "reachable": true, "error": null},
                "reasons": ["calendar: no holidays loaded for NSE in 2027 (the next 30 days \
                    reach 2027-01-01); until they are imported, that year's holidays count as \
                    trading days"]})),
        (status = 503, description = "the database does not answer (`status` `degraded`, the \
            database among the `reasons`)", body = Health,
            example = json!({"status": "degraded", "version": "0.1.0",
                "database": {"backend": "postgres", "reachable": false,
                    "error": "database did not answer"},
                "reasons": ["database: database did not answer"]})),
    )
)]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let backend = match state.db.get_database_backend() {
        sea_orm::DatabaseBackend::Sqlite => "sqlite",
        sea_orm::DatabaseBackend::Postgres => "postgres",
        _ => "other",
    };
    let mut reasons = Vec::new();
    let (reachable, error) = match state.db.ping().await {
        Ok(()) => (true, None),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            let error = "database did not answer";
            reasons.push(format!("database: {error}"));
            (false, Some(error))
        }
    };
    match state
        .calendar
        .send(GetCalendarStatus)
        .timeout(CALENDAR_ANSWER_WITHIN)
        .await
    {
        Ok(status) => reasons.extend(
            status
                .warnings
                .iter()
                .map(|w| format!("calendar: {}", w.message)),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: the calendar actor did not answer");
            reasons.push("calendar: the calendar actor did not answer".into());
        }
    }
    let body = Health {
        status: if reasons.is_empty() { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        database: DatabaseHealth {
            backend,
            reachable,
            error,
        },
        reasons,
    };
    if reachable {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
