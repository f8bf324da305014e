//! Who may call what, decided by routing: every route that is not public is registered inside
//! a scope wrapped by [`require_token`] (or, for the WebSockets, [`require_token_or_socket`]).
//! Those scopes match the path the router matches (percent-decoded), so no spelling of a path
//! can reach a handler around them; and the catch-all scope also answers unknown paths, so
//! anything not explicitly public needs the token. The guards also refuse state-changing
//! requests from a foreign `Origin` and bodies declared larger than the limit.

use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, ResponseError, web};
use actors::secrets::{ExposeSecret, SecretString, Token};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::limits::Slot;

/// A WebSocket opened without `?token=` must send its authentication message within this long.
pub const WS_AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code of a WebSocket whose authentication failed or timed out.
pub const WS_CLOSE_UNAUTHORIZED: u16 = 4401;

#[derive(Deserialize)]
struct Authenticate {
    action: String,
    token: SecretString,
}

/// True when a WebSocket's first message, `{"action":"authenticate","token":…}`, carries the
/// admin token.
pub fn authenticates(text: &str, admin_token: &Token) -> bool {
    serde_json::from_str::<Authenticate>(text)
        .is_ok_and(|m| m.action == "authenticate" && admin_token.matches(m.token.expose_secret()))
}

/// Marks a request whose admin token a guard verified.
#[derive(Debug, Clone, Copy)]
struct TokenVerified;

/// True when a guard verified the request's admin token. Only a WebSocket upgrade inside the
/// `/ws` scope can reach its handler unverified: that handler must then take the token from
/// the first message (`{"action":"authenticate","token":…}`) before serving anything.
pub fn token_verified(req: &HttpRequest) -> bool {
    req.extensions().contains::<TokenVerified>()
}

/// A WebSocket upgrade request.
fn websocket_upgrade(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// What a request presents as its credentials.
enum Presented {
    Nothing,
    /// An `Authorization` header that is not `Bearer <token>`.
    Malformed,
    Token(SecretString),
}

/// `Authorization: Bearer <t>`, or `?token=<t>` when `query` is allowed (WebSockets: browsers
/// cannot set headers on upgrades).
fn presented_token(req: &ServiceRequest, query: bool) -> Presented {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        return bearer(value.to_str().ok())
            .map_or(Presented::Malformed, |t| Presented::Token(t.into()));
    }
    if query {
        let token =
            web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
                .ok()
                .and_then(|mut q| q.remove("token"));
        if let Some(token) = token {
            return Presented::Token(token.into());
        }
    }
    Presented::Nothing
}

/// The token of an `Authorization: Bearer <token>` value.
pub fn bearer(value: Option<&str>) -> Option<String> {
    let (scheme, token) = value?.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn app_state(req: &ServiceRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("application state missing", "no AppState"))
}

fn missing_credentials() -> ApiError {
    ApiError::unauthorized("missing credentials: send Authorization: Bearer <admin token>")
}

fn invalid_token() -> ApiError {
    ApiError::unauthorized("invalid admin token")
}

/// Checks the presented token; `Ok(false)` when nothing was presented.
fn verify(req: &ServiceRequest, state: &AppState, query: bool) -> Result<bool, ApiError> {
    match presented_token(req, query) {
        Presented::Nothing => Ok(false),
        Presented::Token(t) if state.admin_token.matches(t.expose_secret()) => {
            req.extensions_mut().insert(TokenVerified);
            Ok(true)
        }
        Presented::Token(_) | Presented::Malformed => Err(invalid_token()),
    }
}

/// The guard of every non-public route but the WebSockets: the admin token, a same-origin
/// request when it changes state, and a body within the limit.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let checked = app_state(&req).and_then(|state| {
        if !verify(&req, &state, false)? {
            return Err(missing_credentials());
        }
        same_origin(&req)?;
        within_limit(&req, state.body_limit)
    });
    pass_or_refuse(req, next, checked).await
}

/// Calls the next service, or answers with the refusal (a response, not a middleware error,
/// so that the outer middleware still add their headers).
async fn pass_or_refuse<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
    checked: Result<(), ApiError>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    match checked {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(e) => Ok(req.into_response(e.error_response()).map_into_right_body()),
    }
}

/// The guard of the `/ws` scope: as [`require_token`], with the token also accepted as
/// `?token=`, and an upgrade without any token let through to a handler that reads it from the
/// socket's first message.
pub async fn require_token_or_socket(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let checked = app_state(&req).and_then(|state| {
        if !verify(&req, &state, true)? && !websocket_upgrade(&req) {
            return Err(missing_credentials());
        }
        same_origin(&req)?;
        within_limit(&req, state.body_limit)
    });
    pass_or_refuse(req, next, checked).await
}

/// The guard of `/metrics`: the admin token or `metrics.token`, as `Authorization: Bearer`
/// (Prometheus' `authorization: credentials`), unless `metrics.public` opens it.
pub async fn require_metrics_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let checked = app_state(&req).and_then(|state| {
        if state.metrics_public {
            return Ok(());
        }
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| bearer(v.to_str().ok()).map(SecretString::from));
        match presented {
            None => Err(ApiError::unauthorized(
                "missing credentials: send Authorization: Bearer <admin token or metrics.token>",
            )),
            Some(Some(t))
                if state.admin_token.matches(t.expose_secret())
                    || state
                        .metrics_token
                        .as_ref()
                        .is_some_and(|m| m.matches(t.expose_secret())) =>
            {
                Ok(())
            }
            Some(_) => Err(ApiError::unauthorized("invalid token")),
        }
    });
    pass_or_refuse(req, next, checked).await
}

/// Refuses a WebSocket request that is not an upgrade (JSON 400), and takes a slot among the
/// sockets waiting to authenticate for one that came without a token (429 when all are taken).
/// The slot is given back when the socket authenticates or ends.
pub fn socket_admission(req: &HttpRequest, state: &AppState) -> Result<Option<Slot>, ApiError> {
    actix_web_actors::ws::handshake(req)
        .map_err(|e| ApiError::bad_request(format!("not a WebSocket upgrade: {e}")))?;
    if token_verified(req) {
        return Ok(None);
    }
    state.pending_sockets.try_take().map(Some).ok_or_else(|| {
        ApiError::too_many_requests(format!(
            "{} sockets are already waiting to authenticate (server.max_pending_sockets); \
             authenticate with ?token= or retry later",
            state.pending_sockets.max()
        ))
    })
}

fn within_limit(req: &ServiceRequest, limit: usize) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    Ok(())
}

/// Refuses a request that changes state (any method but GET, HEAD and OPTIONS, and every
/// WebSocket upgrade) when it carries an `Origin` other than this service's own: a page on
/// another site must not drive the API through a browser that can reach it, even when it got
/// hold of the token. Requests without `Origin` (curl, Prometheus, the service's own page for
/// same-origin GETs) are not affected.
fn same_origin(req: &ServiceRequest) -> Result<(), ApiError> {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe && !websocket_upgrade(req) {
        return Ok(());
    }
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match origin.to_str() {
        Ok(origin) if origin_matches_host(origin, host) => Ok(()),
        _ => Err(ApiError::forbidden(
            "cross-origin request refused: the Origin header names another site",
        )),
    }
}

/// True when `origin` (`scheme://host[:port]`) names the authority in `host` (`host[:port]`),
/// default ports being equal to none.
fn origin_matches_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let normalise = |a: &str| {
        let a = a.trim().to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(bare) => bare.to_string(),
            None => a,
        }
    };
    !host.is_empty() && !authority.contains('/') && normalise(authority) == normalise(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_message_authentication() {
        let token = Token::new(SecretString::from("abcdef0123456789"));
        assert!(authenticates(
            r#"{"action":"authenticate","token":"abcdef0123456789"}"#,
            &token
        ));
        assert!(!authenticates(
            r#"{"action":"authenticate","token":"abcdef0123456788"}"#,
            &token
        ));
        assert!(!authenticates(
            r#"{"action":"subscribe","token":"abcdef0123456789"}"#,
            &token
        ));
        assert!(!authenticates("abcdef0123456789", &token));
        assert!(!authenticates(r#"{"action":"authenticate"}"#, &token));
    }

    #[test]
    fn websocket_upgrades_are_recognised() {
        use actix_web::test::TestRequest;
        let upgrade = |value: Option<&str>| {
            let mut req = TestRequest::get().uri("/ws/chain/abc");
            if let Some(v) = value {
                req = req.insert_header((header::UPGRADE, v));
            }
            websocket_upgrade(&req.to_srv_request())
        };
        assert!(upgrade(Some("websocket")));
        assert!(upgrade(Some("WebSocket")));
        assert!(!upgrade(None));
        assert!(!upgrade(Some("h2c")));
    }

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc".into()));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc".into()));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn origins() {
        assert!(origin_matches_host(
            "http://127.0.0.1:8000",
            "127.0.0.1:8000"
        ));
        assert!(origin_matches_host("http://LOCALHOST:80", "localhost"));
        assert!(origin_matches_host(
            "https://sup.example",
            "sup.example:443"
        ));
        assert!(!origin_matches_host(
            "http://evil.example",
            "127.0.0.1:8000"
        ));
        assert!(!origin_matches_host(
            "http://127.0.0.1:8001",
            "127.0.0.1:8000"
        ));
        assert!(!origin_matches_host("null", "127.0.0.1:8000"));
        assert!(!origin_matches_host("http://127.0.0.1:8000", ""));
        assert!(!origin_matches_host(
            "file://127.0.0.1:8000",
            "127.0.0.1:8000"
        ));
    }
}
