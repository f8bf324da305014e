//! `GET /api/openapi.json`: the OpenAPI 3 document of the whole HTTP API, generated from the
//! handlers' annotations (a test checks that every registered route is in it).

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::{
    accounts, admin, calendar, chains, feed, health, metrics, positions, state, strategies,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "trading-supervisor",
        description = "One supervised market-data feed per API key, live P&L and exactly-once \
            risk exits next to an OpenAlgo gateway. Every `/api/*` and `/ws/*` route needs \
            `Authorization: Bearer <admin token>` (WebSockets may instead pass `?token=` or send \
            `{\"action\":\"authenticate\",\"token\":…}` as their first message within 10 s). \
            Errors are `{\"error\":{\"code\",\"message\"}}`; bodies with unknown fields are \
            refused with 422 and change nothing."
    ),
    paths(
        health::health,
        metrics::metrics,
        document,
        admin::index,
        admin::asset,
        admin::stream,
        state::state,
        state::service_control,
        feed::reconnect,
        accounts::list,
        accounts::create,
        accounts::get,
        accounts::update,
        accounts::delete,
        accounts::ping,
        calendar::status,
        calendar::list_templates,
        calendar::create_template,
        calendar::get_template,
        calendar::update_template,
        calendar::delete_template,
        calendar::list_sessions,
        calendar::create_session,
        calendar::update_session,
        calendar::delete_session,
        calendar::list_holidays,
        calendar::create_holiday,
        calendar::import_holidays,
        calendar::update_holiday,
        calendar::delete_holiday,
        calendar::list_specials,
        calendar::create_special,
        calendar::update_special,
        calendar::delete_special,
        chains::create,
        chains::list,
        chains::snapshot,
        chains::heartbeat,
        chains::delete,
        chains::stream,
        strategies::list,
        strategies::create,
        strategies::get,
        strategies::update,
        strategies::delete,
        strategies::set_risk,
        strategies::exit,
        positions::register,
        positions::positions,
        positions::risk_events,
        positions::kill_switch,
    ),
    components(schemas(ErrorBody)),
    modifiers(&AdminToken, &Contract),
    security(("admin_token" = [])),
    tags(
        (name = "state", description = "every actor's status, live, and the service controls"),
        (name = "feed", description = "the upstream market-data connection"),
        (name = "accounts", description = "trading accounts and their gateways"),
        (name = "calendar", description = "trading hours, holidays and special sessions"),
        (name = "strategies", description = "strategies, their risk limits and manual exits"),
        (name = "positions", description = "fills, open positions, risk events and the kill switch"),
        (name = "option chains", description = "on-demand option chains, one session per viewer"),
        (name = "metrics", description = "Prometheus metrics"),
        (name = "health", description = "liveness"),
        (name = "admin page", description = "the admin web page, embedded in the binary"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer token every protected route requires.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "the admin token (settings `security.admin_token`, or printed at start)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`metrics.token`, for `/metrics` only (Prometheus' \
                         `authorization: credentials`)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The answers every operation may get from the layers around its handler, declared on each:
/// 401 from the token guard (all but the public routes), 403 from the same-origin check
/// (state-changing requests and WebSocket upgrades), and for a JSON body 400 (malformed),
/// 413 (over `server.body_limit_bytes`), 415 (not `application/json`) and 422 (wrong shape).
struct Contract;

impl Modify for Contract {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let public = PUBLIC.contains(&path.as_str());
            let socket = path.starts_with("/ws/");
            let operations = [
                (false, item.get.as_mut()),
                (true, item.post.as_mut()),
                (true, item.put.as_mut()),
                (true, item.patch.as_mut()),
                (true, item.delete.as_mut()),
            ];
            for (changes_state, operation) in operations {
                let Some(operation) = operation else { continue };
                let mut add = |status: &str, description: &str| {
                    operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(description));
                };
                if !public {
                    add("401", "missing or wrong token");
                }
                if changes_state || socket {
                    add(
                        "403",
                        "a foreign `Origin`: cross-site requests that change state are refused",
                    );
                }
                if operation.request_body.is_some() {
                    add("400", "malformed JSON");
                    add("413", "body above `server.body_limit_bytes`");
                    add("415", "not `Content-Type: application/json`");
                    add("422", "a field of the wrong type, out of range, or unknown");
                }
            }
        }
    }
}

/// The paths open without any token.
pub const PUBLIC: [&str; 3] = ["/", "/static/{file}", "/health"];

/// The methods the document lists for the operation whose path template matches `path` (a
/// `{name}` segment matches any one non-empty segment); None when no template matches.
pub fn methods_of(path: &str) -> Option<Vec<&'static str>> {
    static OPERATIONS: OnceLock<Vec<(Vec<String>, Vec<&'static str>)>> = OnceLock::new();
    let operations = OPERATIONS.get_or_init(|| {
        ApiDoc::openapi()
            .paths
            .paths
            .into_iter()
            .map(|(template, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ];
                let segments = template.split('/').map(str::to_owned).collect();
                let allowed = methods.iter().filter(|m| m.1).map(|m| m.0).collect();
                (segments, allowed)
            })
            .collect()
    });
    let segments: Vec<&str> = path.split('/').collect();
    operations
        .iter()
        .find(|(template, _)| {
            template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| {
                    t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                })
        })
        .map(|(_, allowed)| allowed.clone())
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi_document",
    tag = "state",
    responses(
        (status = 200, description = "the OpenAPI 3 document of this API", body = Object),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
    )
)]
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
