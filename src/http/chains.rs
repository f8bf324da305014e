//! Option chain sessions (docs/ARCHITECTURE.md §4.10): `POST/GET /api/v1/chain-sessions`,
//! `GET/DELETE /api/v1/chain-sessions/{id}`, `POST /api/v1/chain-sessions/{id}/heartbeat` and
//! the snapshot stream `GET /ws/chain/{id}`.

use std::time::{Duration, Instant};

use ::actors::chain::{
    ChainCreated, ChainDirectoryActor, ChainDirectoryStatus, ChainError, ChainHeartbeat, ChainPush,
    ChainRequest, ChainSessionActor, ChainSnapshot, CloseChainSession, CloseReason,
    CreateChainSession, FindChainSession, GetChainDirectoryStatus, GetChainSnapshot, WatchChain,
};
use ::actors::feed::Mode;
use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws;
use serde::Deserialize;

use ::actors::secrets::Token;

use super::AppState;
use super::auth::{
    WS_AUTH_TIMEOUT, WS_CLOSE_UNAUTHORIZED, authenticates, socket_admission, token_verified,
};
use super::body::Body;
use super::error::{ApiError, ErrorBody};
use super::limits::Slot;
use super::numbers::whole_opt;

/// Protocol ping to the browser; a client silent for `SILENT_MAX` is gone.
const PING_EVERY: Duration = Duration::from_secs(20);
const SILENT_MAX: Duration = Duration::from_secs(60);
/// Snapshots queued for one socket. A browser that reads slowly stalls its socket actor; the
/// session then finds this mailbox full and skips to a later snapshot instead of queueing.
const VIEWER_MAILBOX: usize = 2;
const CLOSE_NOT_FOUND: u16 = 4404;

/// A viewer's request for an option chain.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChainSessionRequest, example = json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 10}))]
pub struct CreateBody {
    /// e.g. NIFTY, BANKNIFTY, SENSEX.
    #[schema(min_length = 1, pattern = "\\S", example = "NIFTY")]
    underlying: String,
    /// The underlying's exchange, e.g. NSE_INDEX (the options trade on NFO).
    #[schema(min_length = 1, pattern = "\\S", example = "NSE_INDEX")]
    exchange: String,
    /// `DD-MMM-YY` or `DDMMMYY`; the nearest listed expiry when absent.
    #[serde(default)]
    expiry: Option<String>,
    /// Strikes on each side of ATM, 1–50; `option_chain.default_strikes` when absent.
    #[serde(default, deserialize_with = "whole_opt")]
    #[schema(minimum = 1, maximum = 50)]
    strikes: Option<i64>,
    /// 1, 2, 3 or "LTP", "Quote", "Depth" (any case); Quote when absent.
    #[serde(default)]
    #[schema(schema_with = mode_schema)]
    mode: Option<Mode>,
}

/// A subscription mode: 1–3, or its name in any case (or the digit as a string).
fn mode_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(3)))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(
                    "^[ \\t\\r\\n]*([Ll][Tt][Pp]|[Qq][Uu][Oo][Tt][Ee]|[Dd][Ee][Pp][Tt][Hh]|[123])[ \\t\\r\\n]*$",
                )),
        )
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some("1 (LTP), 2 (Quote) or 3 (Depth), or the name"))
        .into()
}

fn api_error(e: ChainError) -> ApiError {
    let message = e.to_string();
    match e {
        ChainError::Disabled | ChainError::NoGateway | ChainError::Subscription(_) => {
            ApiError::conflict(message)
        }
        ChainError::UnknownUnderlying { .. } | ChainError::NotFound(_) => {
            ApiError::not_found(message)
        }
        ChainError::UnknownExpiry { .. } | ChainError::Invalid(_) => {
            ApiError::unprocessable(message)
        }
        ChainError::Gateway(_) => ApiError::new(StatusCode::BAD_GATEWAY, "bad_gateway", message),
        ChainError::TooMany(_) => ApiError::too_many_requests(message),
        ChainError::Internal(detail) => ApiError::internal("the chain session failed", detail),
    }
}

fn directory_gone(e: actix::MailboxError) -> ApiError {
    ApiError::internal("the chain directory did not answer", e)
}

fn not_found(id: &str) -> ApiError {
    api_error(ChainError::NotFound(id.to_owned()))
}

async fn find(state: &AppState, id: &str) -> Result<Addr<ChainSessionActor>, ApiError> {
    state
        .chains
        .send(FindChainSession { id: id.to_owned() })
        .await
        .map_err(directory_gone)?
        .ok_or_else(|| not_found(id))
}

/// Opens an option chain for one viewer: subscribes the strike window and the underlying.
#[utoipa::path(
    post,
    path = "/api/v1/chain-sessions",
    operation_id = "create_chain_session",
    tag = "option chains",
    request_body = CreateBody,
    responses(
        (status = 201, description = "the session: `id`, `underlying`, `exchange`, \
            `underlying_exchange`, `underlying_symbol`, `expiry`, `expiries`, `atm_strike`, \
            `strike_step`, `strikes`, `mode`, `symbols`", body = ChainCreated),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "unknown underlying", body = ErrorBody),
        (status = 409, description = "chains disabled, no feed account yet, or the symbol cap \
            would be exceeded", body = ErrorBody),
        (status = 422, description = "unlisted expiry (the available ones are named), bad \
            strikes or mode, or unknown fields", body = ErrorBody),
        (status = 429, description = "`option_chain.max_sessions` sessions are open, or \
            `option_chain.max_sessions_per_client` for this client", body = ErrorBody),
        (status = 502, description = "the gateway failed", body = ErrorBody),
    )
)]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Body<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    // The peer's address, never a forwarded header a client could choose.
    let client = req
        .peer_addr()
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
    let created = state
        .chains
        .send(CreateChainSession(ChainRequest {
            underlying: body.underlying,
            exchange: body.exchange,
            expiry: body.expiry,
            strikes: body.strikes,
            mode: body.mode,
            client,
        }))
        .await
        .map_err(directory_gone)?
        .map_err(api_error)?;
    Ok(HttpResponse::Created().json(created))
}

/// The chain directory's status: every session with its state, window, viewers and lease.
#[utoipa::path(
    get,
    path = "/api/v1/chain-sessions",
    operation_id = "list_chain_sessions",
    tag = "option chains",
    responses(
        (status = 200, description = "the chain directory's status", body = ChainDirectoryStatus),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
    )
)]
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let status = state
        .chains
        .send(GetChainDirectoryStatus)
        .await
        .map_err(directory_gone)?;
    Ok(HttpResponse::Ok().json(status))
}

/// The session's current snapshot.
#[utoipa::path(
    get,
    path = "/api/v1/chain-sessions/{id}",
    operation_id = "get_chain_snapshot",
    tag = "option chains",
    params(("id" = String, Path, description = "the session id")),
    responses(
        (status = 200, description = "`{\"id\",\"underlying\",\"exchange\",\"expiry\",\
            \"atm_strike\",\"underlying_ltp\",\"strike_step\",\"updated_at\",\"rows\":[{\"strike\",\
            \"ce\":{\"symbol\",\"ltp\",\"bid\",\"ask\",\"volume\",\"oi\"},\"pe\":{…}}]}`, null where \
            the feed has nothing yet", body = ChainSnapshot),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such session", body = ErrorBody),
    )
)]
pub async fn snapshot(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = find(&state, &id)
        .await?
        .send(GetChainSnapshot)
        .await
        .map_err(|_| not_found(&id))?
        .map_err(api_error)?;
    Ok(HttpResponse::Ok().json(snapshot))
}

/// Extends the session's lease by `option_chain.session_timeout_s`.
#[utoipa::path(
    post,
    path = "/api/v1/chain-sessions/{id}/heartbeat",
    operation_id = "chain_session_heartbeat",
    tag = "option chains",
    params(("id" = String, Path, description = "the session id")),
    responses(
        (status = 204, description = "lease extended"),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such session", body = ErrorBody),
    )
)]
pub async fn heartbeat(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    find(&state, &id)
        .await?
        .send(ChainHeartbeat)
        .await
        .map_err(|_| not_found(&id))?
        .map_err(api_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Ends the session and releases its subscriptions.
#[utoipa::path(
    delete,
    path = "/api/v1/chain-sessions/{id}",
    operation_id = "delete_chain_session",
    tag = "option chains",
    params(("id" = String, Path, description = "the session id")),
    responses(
        (status = 204, description = "ended"),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such session", body = ErrorBody),
    )
)]
pub async fn delete(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    find(&state, &id)
        .await?
        .send(CloseChainSession {
            reason: CloseReason::Deleted,
        })
        .await
        .map_err(|_| not_found(&id))?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /ws/chain/{id}`: streams the session's snapshots. With `?token=` (checked by the
/// guard) an unknown session is a 404 before the upgrade; without, the first message must be
/// `{"action":"authenticate","token":…}` within 10 s, else the socket closes with 4401.
#[utoipa::path(
    get,
    path = "/ws/chain/{id}",
    operation_id = "chain_stream",
    tag = "option chains",
    params(
        ("id" = String, Path, description = "the session id"),
        ("token" = Option<String>, Query, description = "the admin token; prefer sending \
            `{\"action\":\"authenticate\",\"token\":…}` as the first message, which keeps it out of URLs"),
    ),
    responses(
        (status = 101, description = "WebSocket: the snapshot (as `GET /api/v1/chain-sessions/{id}`) \
            at once, then on every change at most `option_chain.max_push_hz` a second. Any client \
            message extends the lease. Closed with 4401 when authentication fails or times out \
            (10 s), 4404 when the session is gone, 1000 when it ends."),
        (status = 400, description = "not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "wrong admin token in `?token=`", body = ErrorBody),
        (status = 404, description = "no such session (checked before the upgrade when the \
            token is in the URL)", body = ErrorBody),
        (status = 429, description = "`server.max_pending_sockets` sockets wait to \
            authenticate", body = ErrorBody),
    )
)]
pub async fn stream(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, actix_web::Error> {
    let id = id.into_inner();
    let pending = socket_admission(&req, &state)?;
    let authenticated = token_verified(&req);
    if authenticated {
        find(&state, &id).await?;
    }
    let viewer = ChainViewer {
        pending,
        id,
        directory: state.chains.clone(),
        admin_token: state.admin_token.clone(),
        authenticated,
        session: None,
        last_heard: Instant::now(),
    };
    ws::start(viewer, &req, payload)
}

/// One browser socket watching one chain session.
struct ChainViewer {
    /// Its place among the sockets waiting to authenticate, until it does.
    pending: Option<Slot>,
    id: String,
    directory: Addr<ChainDirectoryActor>,
    admin_token: Token,
    authenticated: bool,
    session: Option<Addr<ChainSessionActor>>,
    last_heard: Instant,
}

impl ChainViewer {
    fn close(ctx: &mut ws::WebsocketContext<Self>, code: u16, description: &str) {
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code),
            description: Some(description.to_owned()),
        }));
        ctx.stop();
    }

    /// Registers with the session; closes with 4404 when it is gone.
    fn attach(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let directory = self.directory.clone();
        let id = self.id.clone();
        let me = ctx.address().recipient();
        let watch = async move {
            let session = directory.send(FindChainSession { id }).await.ok()??;
            session.send(WatchChain { viewer: me }).await.ok()?.ok()?;
            Some(session)
        };
        ctx.wait(
            watch
                .into_actor(self)
                .map(|session, act, ctx| match session {
                    Some(session) => act.session = Some(session),
                    None => Self::close(ctx, CLOSE_NOT_FOUND, "chain session not found"),
                }),
        );
    }

    fn authenticate(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        if authenticates(text, &self.admin_token) {
            self.authenticated = true;
            self.pending = None;
            self.attach(ctx);
        } else {
            Self::close(
                ctx,
                WS_CLOSE_UNAUTHORIZED,
                "authentication failed: send {\"action\":\"authenticate\",\"token\":…} first",
            );
        }
    }

    /// Any client message extends the session's lease.
    fn heard_from_client(&self) {
        if let Some(session) = &self.session {
            session.do_send(ChainHeartbeat);
        }
    }
}

impl Actor for ChainViewer {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(VIEWER_MAILBOX);
        if self.authenticated {
            self.attach(ctx);
        } else {
            ctx.run_later(WS_AUTH_TIMEOUT, |act, ctx| {
                if !act.authenticated {
                    Self::close(ctx, WS_CLOSE_UNAUTHORIZED, "authentication timeout");
                }
            });
        }
        ctx.run_interval(PING_EVERY, |act, ctx| {
            if act.last_heard.elapsed() > SILENT_MAX {
                tracing::debug!(session = %act.id, "chain viewer silent; closing its socket");
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
    }
}

impl Handler<ChainPush> for ChainViewer {
    type Result = ();

    fn handle(&mut self, msg: ChainPush, ctx: &mut Self::Context) {
        match msg {
            ChainPush::Snapshot(json) => ctx.text(&*json),
            ChainPush::Closed(reason) => {
                self.session = None;
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Normal,
                    description: Some(format!("chain session closed: {reason}")),
                }));
                ctx.stop();
            }
        }
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ChainViewer {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!(session = %self.id, error = %e, "chain viewer protocol error");
                ctx.stop();
                return;
            }
        };
        self.last_heard = Instant::now();
        match msg {
            ws::Message::Text(text) if !self.authenticated => self.authenticate(&text, ctx),
            ws::Message::Binary(_) if !self.authenticated => {
                Self::close(ctx, WS_CLOSE_UNAUTHORIZED, "authenticate first");
            }
            ws::Message::Text(_) | ws::Message::Binary(_) | ws::Message::Continuation(_) => {
                self.heard_from_client();
            }
            ws::Message::Ping(bytes) => {
                ctx.pong(&bytes);
                self.heard_from_client();
            }
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
        }
    }
}
