//! Bearer-token authentication for `/api/*` and `/ws/*`, and the request size guard.

use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, web};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

/// Constant-time comparison of a presented token with the admin token.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// A WebSocket opened without `?token=` must send its authentication message within this long.
pub const WS_AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code of a WebSocket whose authentication failed or timed out.
pub const WS_CLOSE_UNAUTHORIZED: u16 = 4401;

#[derive(Deserialize)]
struct Authenticate {
    action: String,
    token: String,
}

/// True when a WebSocket's first message, `{"action":"authenticate","token":…}`, carries the
/// admin token.
pub fn authenticates(text: &str, admin_token: &str) -> bool {
    serde_json::from_str::<Authenticate>(text)
        .is_ok_and(|m| m.action == "authenticate" && token_matches(&m.token, admin_token))
}

/// Marks a request whose admin token the guard verified.
#[derive(Debug, Clone, Copy)]
struct TokenVerified;

/// True when the guard verified the request's admin token. A WebSocket upgrade on `/ws/*`
/// that presents no token is let through unverified: its handler must then take the token
/// from the first message (`{"action":"authenticate","token":…}`) before serving anything.
pub fn token_verified(req: &HttpRequest) -> bool {
    req.extensions().contains::<TokenVerified>()
}

/// A WebSocket upgrade request on `/ws/*`.
fn websocket_upgrade(req: &ServiceRequest) -> bool {
    req.path().starts_with("/ws/")
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
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
            // Browsers cannot set headers on upgrades; the handler authenticates the socket.
            None if websocket_upgrade(&req) => {}
            None => {
                return Err(ApiError::unauthorized(
                    "missing credentials: send Authorization: Bearer <admin token>",
                )
                .into());
            }
            Some(t) if !token_matches(&t, &state.admin_token) => {
                return Err(ApiError::unauthorized("invalid admin token").into());
            }
            Some(_) => {
                req.extensions_mut().insert(TokenVerified);
            }
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
    fn first_message_authentication() {
        let token = "abcdef0123456789";
        assert!(authenticates(
            r#"{"action":"authenticate","token":"abcdef0123456789"}"#,
            token
        ));
        assert!(!authenticates(
            r#"{"action":"authenticate","token":"abcdef0123456788"}"#,
            token
        ));
        assert!(!authenticates(
            r#"{"action":"subscribe","token":"abcdef0123456789"}"#,
            token
        ));
        assert!(!authenticates("abcdef0123456789", token));
        assert!(!authenticates(r#"{"action":"authenticate"}"#, token));
    }

    #[test]
    fn websocket_upgrades_are_recognised() {
        use actix_web::test::TestRequest;
        let upgrade = |path: &str, value: Option<&str>| {
            let mut req = TestRequest::get().uri(path);
            if let Some(v) = value {
                req = req.insert_header((header::UPGRADE, v));
            }
            websocket_upgrade(&req.to_srv_request())
        };
        assert!(upgrade("/ws/chain/abc", Some("websocket")));
        assert!(upgrade("/ws/chain/abc", Some("WebSocket")));
        assert!(!upgrade("/ws/chain/abc", None));
        assert!(!upgrade("/ws/chain/abc", Some("h2c")));
        assert!(!upgrade("/api/v1/state", Some("websocket")));
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
