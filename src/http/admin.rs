//! The admin page (docs/ARCHITECTURE.md §4.11): `GET /` and `GET /static/{file}`, embedded in the binary,
//! and its live state stream `GET /ws/admin`.
//!
//! One [`AdminSocket`] actor per browser asks the actors for their statuses at most
//! [`PUSH_EVERY`] apart, one collection at a time, and sends the state only when it changed.
//! A browser that reads slowly cannot make the actors wait or queue: the socket actor runs only
//! while actix-web drains its output to the browser, so a stalled browser stalls its own actor,
//! which then collects nothing; when the browser catches up it gets the current state, never
//! the intermediate ones.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws;
use chrono::Utc;

use super::AppState;
use super::auth::{
    WS_AUTH_TIMEOUT, WS_CLOSE_UNAUTHORIZED, authenticates, socket_admission, token_verified,
};
use super::error::{ApiError, ErrorBody};
use super::limits::Slot;
use super::state::collect;

const INDEX_HTML: &str = include_str!("../../static/index.html");
const ADMIN_JS: &str = include_str!("../../static/admin.js");
const ADMIN_CSS: &str = include_str!("../../static/admin.css");

/// At most this many state messages a second reach one browser (4/s).
pub const PUSH_EVERY: Duration = Duration::from_millis(250);
/// Protocol ping to the browser; a browser silent for `SILENT_MAX` is gone.
const PING_EVERY: Duration = Duration::from_secs(20);
const SILENT_MAX: Duration = Duration::from_secs(60);

/// The security headers (the content security policy among them) are added to every response
/// by [`super::error::finish`].
fn page(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// The admin page. It asks for the admin token and keeps it in `sessionStorage` only.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "admin_page",
    tag = "admin page",
    security(()),
    responses((status = 200, description = "the admin page", content_type = "text/html",
        body = String))
)]
pub async fn index() -> HttpResponse {
    page("text/html; charset=utf-8", INDEX_HTML)
}

/// The files under `/static/`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
enum AssetName {
    #[schema(rename = "admin.js")]
    AdminJs,
    #[schema(rename = "admin.css")]
    AdminCss,
}

/// The admin page's script and style sheet.
#[utoipa::path(
    get,
    path = "/static/{file}",
    operation_id = "admin_asset",
    tag = "admin page",
    security(()),
    params(("file" = inline(AssetName), Path, description = "`admin.js` or `admin.css`")),
    responses(
        (status = 200, description = "the file",
            content((String = "text/javascript"), (String = "text/css"))),
        (status = 404, description = "no such file", body = ErrorBody),
    )
)]
pub async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    match file.as_str() {
        "admin.js" => Ok(page("text/javascript; charset=utf-8", ADMIN_JS)),
        "admin.css" => Ok(page("text/css; charset=utf-8", ADMIN_CSS)),
        other => Err(ApiError::not_found(format!("no static file {other:?}"))),
    }
}

/// `GET /ws/admin`: the state of `GET /api/v1/state`, pushed live. With `?token=` (checked by
/// the guard) the first state follows at once; without, the first message must be
/// `{"action":"authenticate","token":…}` within 10 s, else the socket closes with 4401.
#[utoipa::path(
    get,
    path = "/ws/admin",
    operation_id = "admin_stream",
    tag = "state",
    params(("token" = Option<String>, Query,
        description = "the admin token; prefer sending `{\"action\":\"authenticate\",\"token\":…}` \
            as the first message, which keeps it out of URLs")),
    responses(
        (status = 101, description = "WebSocket. Each text message is \
            `{\"type\":\"state\",\"server_time\":…,\"state\":<the body of GET /api/v1/state>}`, \
            sent at once and then whenever the state changed, at most 4 a second; \
            `{\"type\":\"error\",\"message\":…}` when the state cannot be collected. A socket \
            that does not authenticate within 10 s is closed with code 4401."),
        (status = 400, description = "not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "wrong admin token in `?token=`", body = ErrorBody),
        (status = 429, description = "`server.max_admin_sockets` sockets are open, or \
            `server.max_pending_sockets` sockets wait to authenticate", body = ErrorBody),
    )
)]
pub async fn stream(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    let pending = socket_admission(&req, &state)?;
    let slot = state.admin_sockets.try_take().ok_or_else(|| {
        ApiError::too_many_requests(format!(
            "{} admin sockets are open (server.max_admin_sockets); close one",
            state.admin_sockets.max()
        ))
    })?;
    let socket = AdminSocket {
        _slot: slot,
        pending,
        state,
        authenticated: token_verified(&req),
        collecting: false,
        last_sent: None,
        last_heard: Instant::now(),
    };
    ws::start(socket, &req, payload)
}

/// One browser's live state stream.
struct AdminSocket {
    /// Its place among `server.max_admin_sockets`, given back when the actor is dropped.
    _slot: Slot,
    /// Its place among the sockets waiting to authenticate, until it does.
    pending: Option<Slot>,
    state: web::Data<AppState>,
    authenticated: bool,
    /// A collection is in flight: never start a second one.
    collecting: bool,
    /// What was sent last, to send only changes.
    last_sent: Option<Sent>,
    last_heard: Instant,
}

impl AdminSocket {
    fn close(ctx: &mut ws::WebsocketContext<Self>, code: u16, description: &str) {
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code),
            description: Some(description.to_owned()),
        }));
        ctx.stop();
    }

    /// Collects every status and sends the state if it changed since the last message.
    fn push(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.authenticated || self.collecting {
            return;
        }
        self.collecting = true;
        let state = self.state.clone();
        let collecting = async move { collect(&state).await };
        ctx.spawn(collecting.into_actor(self).map(|result, act, ctx| {
            act.collecting = false;
            let now = match result
                .map_err(|e| e.message)
                .and_then(|s| serde_json::to_string(&s).map_err(|e| e.to_string()))
            {
                Ok(json) => Sent::State(json),
                Err(message) => Sent::Error(message),
            };
            if act.last_sent.as_ref() == Some(&now) {
                return;
            }
            match &now {
                Sent::State(json) => {
                    let server_time = Utc::now().to_rfc3339();
                    ctx.text(format!(
                        r#"{{"type":"state","server_time":"{server_time}","state":{json}}}"#
                    ));
                }
                Sent::Error(message) => {
                    tracing::warn!(error = %message, "admin socket: state not collected");
                    let text = serde_json::json!({"type": "error", "message": message});
                    ctx.text(text.to_string());
                }
            }
            act.last_sent = Some(now);
        }));
    }
}

/// What a socket last sent.
#[derive(PartialEq, Eq)]
enum Sent {
    /// The state's JSON.
    State(String),
    Error(String),
}

impl Actor for AdminSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.authenticated {
            self.push(ctx);
        } else {
            ctx.run_later(WS_AUTH_TIMEOUT, |act, ctx| {
                if !act.authenticated {
                    Self::close(ctx, WS_CLOSE_UNAUTHORIZED, "authentication timeout");
                }
            });
        }
        ctx.run_interval(PUSH_EVERY, |act, ctx| act.push(ctx));
        ctx.run_interval(PING_EVERY, |act, ctx| {
            if act.last_heard.elapsed() > SILENT_MAX {
                tracing::debug!("admin browser silent; closing its socket");
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for AdminSocket {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!(error = %e, "admin socket protocol error");
                ctx.stop();
                return;
            }
        };
        self.last_heard = Instant::now();
        match msg {
            ws::Message::Text(text) if !self.authenticated => {
                if authenticates(&text, &self.state.admin_token) {
                    self.authenticated = true;
                    self.pending = None;
                    self.push(ctx);
                } else {
                    Self::close(
                        ctx,
                        WS_CLOSE_UNAUTHORIZED,
                        "authentication failed: send {\"action\":\"authenticate\",\"token\":…} first",
                    );
                }
            }
            ws::Message::Binary(_) if !self.authenticated => {
                Self::close(ctx, WS_CLOSE_UNAUTHORIZED, "authenticate first");
            }
            ws::Message::Ping(bytes) => ctx.pong(&bytes),
            ws::Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
            ws::Message::Text(_)
            | ws::Message::Binary(_)
            | ws::Message::Continuation(_)
            | ws::Message::Pong(_)
            | ws::Message::Nop => {}
        }
    }
}
