//! `GET /health`: open; reports status, version, database reachability and every reason the
//! service is degraded.
//!
//! `ok` only while the database answers, the calendar, the position monitor, every risk actor,
//! the order gateway and the other long-lived actors are Running (and, during market hours, the
//! feed is live on a reachable account); `degraded` with the reasons otherwise. An actor that
//! does not answer within [`ANSWER_WITHIN`] is a reason too. The answer stays 200 for load
//! balancers (only an unreachable database is 503), unless `?strict=1` asks for 503 whenever it
//! is degraded (container health checks). The admin page's banner shows the same reasons: they
//! come from [`assess`], which `GET /api/v1/state` runs as well.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use actors::feed::ConnectionState;
use actors::status::Lifecycle;
use entity::strategies::RiskState;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::state::{Answers, gather};

/// How long each actor (and the database) may take to answer before health reports it.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The answer of `GET /health`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when there is a reason.
    status: &'static str,
    version: &'static str,
    database: DatabaseHealth,
    /// Why the service is degraded, one line per problem; empty when ok.
    reasons: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DatabaseHealth {
    /// `sqlite` or `postgres`.
    backend: &'static str,
    reachable: bool,
    error: Option<String>,
}

/// The verdict: `ok`, or `degraded` with the reasons.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HealthView {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// Why it is degraded, one line per problem; empty when ok.
    pub reasons: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HealthQuery {
    /// `1` (or `true`): answer 503 whenever the status is `degraded`, not only when the
    /// database does not answer.
    #[param(pattern = "^(0|1|true|false)$")]
    strict: Option<String>,
}

fn lifecycle_reason(part: &str, state: Lifecycle, detail: Option<&str>) -> Option<String> {
    (state != Lifecycle::Running).then(|| match detail {
        Some(d) if !d.is_empty() => format!("{part}: {state:?} ({d})"),
        _ => format!("{part}: {state:?}"),
    })
}

/// Every reason the service is not fully working, from what the actors answered.
pub fn assess(a: &Answers) -> HealthView {
    let mut reasons = Vec::new();
    if let Err(e) = &a.database {
        reasons.push(format!("database: {e}"));
    }
    let no_answer = |reasons: &mut Vec<String>, part: &str, e: &str| {
        reasons.push(format!("{part}: {e}"));
    };
    match &a.calendar {
        Ok(c) => {
            reasons.extend(
                c.warnings
                    .iter()
                    .map(|w| format!("calendar: {}", w.message)),
            );
            reasons.extend(lifecycle_reason(
                "calendar",
                c.state,
                c.last_error.as_deref(),
            ));
        }
        Err(e) => no_answer(&mut reasons, "calendar", e),
    }
    let market_hours = match &a.supervisor {
        Ok(s) => {
            if s.running {
                if s.feed_degraded {
                    reasons.push(format!("feed: degraded: {}", s.feed_degraded_reason));
                } else if let Ok(c) = &a.connection
                    && c.state != ConnectionState::Live
                {
                    reasons.push(format!(
                        "feed: {:?}{}",
                        c.state,
                        c.last_error
                            .as_deref()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    ));
                }
                if s.feed_account.is_some() && !s.feed_account_reachable {
                    reasons.push(format!(
                        "accounts: the feed account is unreachable ({})",
                        s.feed_account_reason
                    ));
                }
            }
            Some(s.running)
        }
        Err(e) => {
            no_answer(&mut reasons, "supervisor", e);
            None
        }
    };
    // Each account's order updates (its socket): while they do not flow, its exits are
    // confirmed by reading the books, later (docs/order-updates.md).
    if market_hours == Some(true)
        && let Ok(streams) = &a.streams
    {
        for s in streams
            .streams
            .iter()
            .filter(|s| s.orders.wanted && !s.orders.subscribed)
        {
            reasons.push(format!(
                "order updates of account '{}': {:?}{}; its exits are confirmed by reading the books",
                s.account.as_deref().unwrap_or("?"),
                s.state,
                s.last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
        }
    }
    if let Err(e) = &a.streams {
        no_answer(&mut reasons, "account streams", e);
    }
    if let Ok(events) = &a.order_events {
        if events.state == Lifecycle::Faulted {
            reasons.push("order events: the router is Faulted (crash loop)".into());
        }
    } else if let Err(e) = &a.order_events {
        no_answer(&mut reasons, "order event router", e);
    }
    match &a.connection {
        Ok(c) if c.state == ConnectionState::Faulted => {
            reasons.push("feed: the connection actor is Faulted (crash loop)".into());
        }
        Ok(_) => {}
        Err(e) => no_answer(&mut reasons, "feed connection", e),
    }
    match &a.accounts {
        Ok(acc) => {
            if acc.lifecycle == Lifecycle::Faulted {
                reasons.push("accounts: the account monitor is Faulted (crash loop)".into());
            }
            if let Some(e) = &acc.last_error {
                reasons.push(format!("accounts: {e}"));
            }
        }
        Err(e) => no_answer(&mut reasons, "account monitor", e),
    }
    match &a.registry {
        Ok(r) => reasons.extend(lifecycle_reason("subscription registry", r.state, None)),
        Err(e) => no_answer(&mut reasons, "subscription registry", e),
    }
    match &a.chains {
        Ok(c) => reasons.extend(lifecycle_reason("chain directory", c.state, None)),
        Err(e) => no_answer(&mut reasons, "chain directory", e),
    }
    match &a.monitor {
        // Outside market hours the monitor is Stopped by design.
        Ok(m) if m.state == Lifecycle::Stopped && market_hours == Some(false) => {}
        Ok(m) if m.state == Lifecycle::Degraded => {
            let stale: usize = m.strategies.iter().map(|s| s.stale_legs).sum();
            reasons.push(format!(
                "position monitor: Degraded ({stale} open leg(s) without a live feed price)"
            ));
        }
        Ok(m) => reasons.extend(lifecycle_reason(
            "position monitor",
            m.state,
            m.last_error
                .as_deref()
                .filter(|_| m.state == Lifecycle::Faulted),
        )),
        Err(e) => no_answer(&mut reasons, "position monitor", e),
    }
    match &a.strategies {
        Ok(list) => {
            for r in list {
                let part = format!("strategy '{}'", r.strategy);
                if r.state == RiskState::Paused {
                    reasons.push(format!("{part}: paused, its rules are not evaluated"));
                } else if r.state != RiskState::Exited {
                    reasons.extend(lifecycle_reason(&part, r.lifecycle, r.degraded.as_deref()));
                }
            }
        }
        Err(e) => no_answer(&mut reasons, "risk actors", e),
    }
    match &a.orders {
        Ok(o) => {
            reasons.extend(lifecycle_reason(
                "order gateway",
                o.state,
                o.last_error
                    .as_deref()
                    .filter(|_| o.state == Lifecycle::Faulted),
            ));
            // An exit whose order is in doubt sends nothing until the broker's books say
            // where that order is (docs/exits.md): shown until they do.
            for x in o.exits.iter().filter(|x| x.state == "in_doubt") {
                reasons.push(format!(
                    "order gateway: the exit of leg {} ({}:{}) is in doubt since its placement answer was lost{}",
                    x.execution_id,
                    x.exchange,
                    x.symbol,
                    x.last_error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ));
            }
        }
        Err(e) => no_answer(&mut reasons, "order gateway", e),
    }
    HealthView {
        status: if reasons.is_empty() { "ok" } else { "degraded" },
        reasons,
    }
}

/// Liveness, database reachability and every reason the service is degraded; open, no token
/// needed.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "health",
    security(()),
    params(HealthQuery),
    responses(
        (status = 200, description = "`status` `ok`: the database answers and the calendar, the \
            position monitor, every risk actor, the order gateway and the other long-lived \
            actors are Running (during market hours the feed too, live on a reachable \
            account). Otherwise `degraded` with the `reasons`, one line per problem (a calendar \
            warning, the feed down and legs priced over REST, a strategy whose P&L is not a \
            finite number or whose exit failed, an actor Faulted by its crash-loop breaker or \
            not answering within 2 s, …); still 200 unless `?strict=1`. `reasons` is empty \
            when ok", body = Health,
            example = json!({"status": "degraded", "version": "0.1.0",
                "database": {"backend": "sqlite", "reachable": true, "error": null},
                "reasons": ["feed: degraded: the feed on 'primary' is not live (BackingOff for \
                    12 s); open legs are priced over REST",
                    "strategy 'iron-fly': Degraded (feed down: prices from REST quotes)"]})),
        (status = 400, description = "an unknown query parameter or a `strict` value other \
            than 1, true, 0 or false", body = super::error::ErrorBody),
        (status = 503, description = "the database does not answer, or (with `?strict=1`) the \
            status is `degraded`; the body is the same report", body = Health,
            example = json!({"status": "degraded", "version": "0.1.0",
                "database": {"backend": "postgres", "reachable": false,
                    "error": "database did not answer"},
                "reasons": ["database: database did not answer"]})),
    )
)]
pub async fn health(
    state: web::Data<AppState>,
    query: web::Query<HealthQuery>,
) -> Result<HttpResponse, ApiError> {
    let strict = match query.strict.as_deref() {
        None | Some("0") | Some("false") => false,
        Some("1") | Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "strict: expected 1, true, 0 or false, got {other:?}"
            )));
        }
    };
    let backend = match state.db.get_database_backend() {
        sea_orm::DatabaseBackend::Sqlite => "sqlite",
        sea_orm::DatabaseBackend::Postgres => "postgres",
        _ => "other",
    };
    let answers = gather(&state, ANSWER_WITHIN).await;
    let view = assess(&answers);
    let error = answers.database.as_ref().err();
    let reachable = error.is_none();
    if view.status != "ok" {
        tracing::debug!(reasons = ?view.reasons, "health: degraded");
    }
    let body = Health {
        status: view.status,
        version: env!("CARGO_PKG_VERSION"),
        database: DatabaseHealth {
            backend,
            reachable,
            error: error.cloned(),
        },
        reasons: view.reasons,
    };
    if !reachable || (strict && view.status != "ok") {
        Ok(HttpResponse::ServiceUnavailable().json(body))
    } else {
        Ok(HttpResponse::Ok().json(body))
    }
}
