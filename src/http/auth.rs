//! Bearer-token authentication for `/api/*` and `/ws/*`, and the request size guard.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// Constant-time comparison of a presented token with the admin token.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

fn protected(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path.starts_with("/ws/")
}

/// The token a request presents: `Authorization: Bearer <t>`, or `?token=<t>` on `/ws/*`
/// (browsers cannot set headers on WebSocket upgrades).
fn presented_token(req: &ServiceRequest) -> Option<String> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_string());
    }
    if req.path().starts_with("/ws/") {
        return web::Query::<std::collections::HashMap<String, String>>::from_query(
            req.query_string(),
        )
        .ok()
        .and_then(|q| q.get("token").cloned());
    }
    None
}

/// Rejects unauthenticated requests to protected paths and bodies declared larger than the limit.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("application state missing", "no AppState"))?;
    if protected(req.path()) {
        match presented_token(&req) {
            None => {
                return Err(ApiError::unauthorized(
                    "missing credentials: send Authorization: Bearer <admin token>",
                )
                .into());
            }
            Some(t) if !token_matches(&t, &state.admin_token) => {
                return Err(ApiError::unauthorized("invalid admin token").into());
            }
            Some(_) => {}
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.body_limit) {
        return Err(ApiError::payload_too_large(state.body_limit).into());
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches("abcdef0123456789", "abcdef0123456789"));
        assert!(!token_matches("abcdef0123456788", "abcdef0123456789"));
        assert!(!token_matches("abc", "abcdef0123456789"));
        assert!(!token_matches("", "abcdef0123456789"));
    }

    #[test]
    fn protected_paths() {
        assert!(protected("/api/v1/state"));
        assert!(protected("/api"));
        assert!(protected("/ws/admin"));
        assert!(!protected("/health"));
        assert!(!protected("/"));
        assert!(!protected("/apis"));
    }
}
