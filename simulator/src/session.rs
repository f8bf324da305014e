//! One feed WebSocket connection.

use std::sync::Arc;
use std::time::Instant;

use actix::{Actor, ActorContext, AsyncContext, Handler, StreamHandler};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws::{self, CloseCode, CloseReason};

use super::state::{Frame, Push, Shared};

/// Ticks queued for a session beyond this many batches (one per ticker pass, a few ms) are
/// dropped and counted, like a gateway that conflates for a slow reader, rather than buffered:
/// a deeper queue only adds latency and memory when the client cannot keep up.
const MAILBOX_CAPACITY: usize = 16;
/// Largest client frame accepted (a batch subscribe of a few thousand symbols).
const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

pub(crate) struct Session {
    id: u64,
    shared: Arc<Shared>,
    last_pong: Instant,
}

/// The feed endpoint: any path upgrades to a feed connection, as the gateway does not
/// check the path.
pub(crate) async fn feed_endpoint(
    req: HttpRequest,
    stream: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    let shared = shared.into_inner();
    let session = Session {
        id: shared.next_client_id(),
        shared,
        last_pong: Instant::now(),
    };
    ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(MAX_FRAME_BYTES)
        .start()
}

impl Session {
    fn on_frame(&mut self, text: Option<&str>, ctx: &mut ws::WebsocketContext<Self>) {
        let reply = self.shared.core().client_frame(self.id, text);
        ctx.text(reply.text);
        if let Some(reason) = reply.close {
            ctx.close(Some(reason));
            ctx.stop();
        }
    }
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.shared
            .core()
            .connect(self.id, ctx.address().recipient());
        let settings = self.shared.settings.clone();
        ctx.run_later(settings.auth_grace, |session, ctx| {
            if !session.shared.core().is_authenticated(session.id) {
                ctx.close(Some(CloseReason {
                    code: CloseCode::Other(4401),
                    description: Some("auth timeout".to_string()),
                }));
                ctx.stop();
            }
        });
        let interval = settings.ping_interval;
        ctx.run_interval(interval, move |session, ctx| {
            // No pong for a whole ping interval after the previous ping: the peer is gone.
            if session.last_pong.elapsed() > interval * 2 {
                ctx.close(Some(CloseReason {
                    code: CloseCode::Error,
                    description: Some("keepalive ping timeout".to_string()),
                }));
                ctx.stop();
                return;
            }
            ctx.ping(b"");
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.shared.core().disconnect(self.id);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match message {
            Ok(ws::Message::Text(text)) => self.on_frame(Some(&text), ctx),
            Ok(ws::Message::Binary(bytes)) => self.on_frame(std::str::from_utf8(&bytes).ok(), ctx),
            Ok(ws::Message::Continuation(_)) => self.on_frame(None, ctx),
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) => self.last_pong = Instant::now(),
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Nop) => {}
            Err(error) => {
                tracing::debug!(client = self.id, %error, "feed protocol error");
                ctx.stop();
            }
        }
    }
}

impl Handler<Push> for Session {
    type Result = ();

    fn handle(&mut self, push: Push, ctx: &mut Self::Context) {
        match push {
            Push::Frames(frames) => {
                for frame in frames {
                    match frame {
                        // Frames are built from `String`s, so this conversion always succeeds.
                        Frame::Text(bytes) => {
                            if let Ok(text) = TryFrom::try_from(bytes) {
                                ctx.write_raw(ws::Message::Text(text));
                            }
                        }
                        Frame::Binary(bytes) => ctx.binary(bytes),
                    }
                }
            }
            Push::Close(reason) => {
                ctx.close(Some(reason));
                ctx.stop();
            }
            Push::Drop => ctx.stop(),
        }
    }
}
