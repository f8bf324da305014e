//! `ConnectionActor` (docs/ARCHITECTURE.md §4.4; wire formats in docs/openalgo.md §2): the one
//! upstream WebSocket of an account's API key.
//!
//! At most one socket and one connection attempt exist at any moment: a new attempt starts only
//! from `Idle`/`BackingOff`/`Stopped` with no socket left, and every async result carries the
//! generation it belongs to so a late answer of an abandoned attempt is ignored. Backoff state
//! lives in fields so it survives supervised restarts.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use actix_codec::Framed;
use awc::BoxedSocket;
use awc::error::WsProtocolError;
use awc::ws::{Codec, Frame, Message};
use chrono::{DateTime, Utc};
use futures_util::stream::{SplitSink, StreamExt};
use serde::Serialize;

use super::FeedTarget;
use super::registry::{FeedLive, RawTick, SubscriptionRegistryActor, SymbolsRejected};
use crate::domain::backoff::{Backoff, BackoffPolicy, FailureKind, classify_feed_error};
use crate::openalgo::feed::{
    Control, OrderUpdate, authenticate_frame, is_market_data, parse_control,
    subscribe_orders_frame, unsubscribe_all_frame,
};
use crate::status::{Lifecycle, age_ms};
use crate::supervised::{RestartTracker, Supervision};

type WsSink = SplitSink<Framed<BoxedSocket, Codec>, Message>;

/// How many recent connection events the status keeps.
const EVENTS_KEPT: usize = 20;

#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub backoff: BackoffPolicy,
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    pub connect_timeout: Duration,
    pub max_frame_bytes: usize,
    pub subscribe_batch_size: usize,
    pub max_symbols: usize,
    /// The share of `max_symbols` kept for the position monitor: option-chain viewers are
    /// refused once the feed would carry more than the rest.
    pub position_reserve_share: f64,
    pub supervision: Supervision,
}

#[derive(utoipa::ToSchema, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConnectionState {
    Idle,
    Connecting,
    Authenticating,
    Live,
    BackingOff,
    Stopped,
    Faulted,
}

impl ConnectionState {
    fn lifecycle(self) -> Lifecycle {
        match self {
            ConnectionState::Idle | ConnectionState::Stopped => Lifecycle::Stopped,
            ConnectionState::Connecting | ConnectionState::Authenticating => Lifecycle::Starting,
            ConnectionState::Live => Lifecycle::Running,
            ConnectionState::BackingOff => Lifecycle::BackingOff,
            ConnectionState::Faulted => Lifecycle::Faulted,
        }
    }
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct ConnectionEvent {
    pub at: DateTime<Utc>,
    pub event: &'static str,
    pub detail: String,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct ConnectionStatus {
    pub state: ConnectionState,
    pub lifecycle: Lifecycle,
    pub restarts: u64,
    pub account_id: Option<i32>,
    pub account: Option<String>,
    /// Masked API key prefix.
    pub api_key: Option<String>,
    pub ws_url: Option<String>,
    pub attempt: u32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub connected_since: Option<DateTime<Utc>>,
    pub messages_received: u64,
    pub messages_per_s: f64,
    pub last_tick_age_ms: Option<u64>,
    pub reconnects: u64,
    pub malformed: u64,
    pub held_symbols: usize,
    pub recent_events: Vec<ConnectionEvent>,
    /// This socket carries the market-data feed.
    pub feed: bool,
    /// The key's order updates on this socket.
    pub orders: OrderStreamView,
}

impl ConnectionStatus {
    /// The status reported for a socket that does not exist or did not answer.
    pub fn unanswered(why: &str) -> ConnectionStatus {
        ConnectionStatus {
            state: ConnectionState::Idle,
            lifecycle: Lifecycle::Stopped,
            restarts: 0,
            account_id: None,
            account: None,
            api_key: None,
            ws_url: None,
            attempt: 0,
            next_retry_at: None,
            last_error: Some(why.to_string()),
            connected_since: None,
            messages_received: 0,
            messages_per_s: 0.0,
            last_tick_age_ms: None,
            reconnects: 0,
            malformed: 0,
            held_symbols: 0,
            recent_events: Vec::new(),
            feed: false,
            orders: OrderStreamView {
                wanted: false,
                subscribed: false,
                events: 0,
                events_last_minute: 0,
                last_event_at: None,
            },
        }
    }
}

/// The order-update stream of a socket.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct OrderStreamView {
    /// The socket asks for them (`subscribe_orders` after every authentication).
    pub wanted: bool,
    /// Live and subscribed: updates arrive.
    pub subscribed: bool,
    /// Updates received.
    pub events: u64,
    /// Updates in the last minute.
    pub events_last_minute: usize,
    /// When the last one arrived.
    pub last_event_at: Option<DateTime<Utc>>,
}

/// Whether this socket carries the market-data feed (the registry's subscriptions); a socket
/// that stops carrying it unsubscribes everything and keeps only its order updates.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetFeed(pub bool);

/// What an account's socket tells the order-event router.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum OrderStreamEvent {
    /// The socket is live and subscribed to the key's order updates, or no longer.
    Live { account_id: i32, live: bool },
    /// One order of the key changed.
    Update {
        account_id: i32,
        update: Box<OrderUpdate>,
        received_at: Instant,
    },
}

/// Ends the connection for good (its account was removed): the socket closes and, its last
/// address dropped, the actor is not restarted.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Retire;

/// Run the feed (market hours began, or the service was started).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartFeed;

/// Close the feed and stay closed until [`StartFeed`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopFeed;

/// Carry the feed on another account's gateway (failover), or none.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetTarget(pub Option<FeedTarget>);

/// Drop the socket and reconnect after the initial backoff delay. Refused while backing off
/// after an authentication or connection-limit error (reconnecting then is how keys get banned).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Reconnect;

#[derive(Message)]
#[rtype(result = "ConnectionStatus")]
pub struct GetConnectionStatus;

/// Frames from the registry to write upstream, and how many keys it now holds.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SendFrames {
    pub frames: Vec<String>,
    pub held: usize,
}

/// One item of the socket's stream, tagged with its generation; `None` = the stream ended.
#[derive(Message)]
#[rtype(result = "()")]
struct Incoming {
    generation: u64,
    item: Option<Result<Frame, WsProtocolError>>,
}

pub struct ConnectionActor {
    settings: ConnectionSettings,
    target: Option<FeedTarget>,
    registry: Addr<SubscriptionRegistryActor>,
    state: ConnectionState,
    wanted: bool,
    backoff: Backoff,
    generation: u64,
    sink: Option<SinkWrite<Message, WsSink>>,
    stream: Option<SpawnHandle>,
    retry: Option<SpawnHandle>,
    next_retry_at: Option<DateTime<Utc>>,
    /// Set while backing off after an auth/limit error: manual reconnects wait until then.
    limit_until: Option<Instant>,
    held: usize,
    live_since: Option<(Instant, DateTime<Utc>)>,
    /// Reference point of the idle watchdog: last tick, or when subscriptions/liveness began.
    idle_ref: Instant,
    last_frame_at: Instant,
    last_ping_at: Instant,
    last_tick_at: Option<Instant>,
    messages: u64,
    rate_window: (Instant, u64),
    rate: f64,
    malformed: u64,
    /// Times the feed went live again after having been live.
    reconnects: u64,
    ever_live: bool,
    last_error: Option<String>,
    events: VecDeque<ConnectionEvent>,
    restarts: RestartTracker,
    /// This socket carries the market-data feed.
    feed: bool,
    /// Where order updates go; `None`: the socket does not ask for them.
    orders: Option<Recipient<OrderStreamEvent>>,
    /// Authenticated, waiting for the `subscribe_orders` ack before going live.
    awaiting_orders: bool,
    orders_live: bool,
    order_events: u64,
    last_order_event_at: Option<DateTime<Utc>>,
    /// Arrival of the updates of the last minute.
    order_times: VecDeque<Instant>,
    /// The broker named at authentication, until the socket goes live.
    pending_broker: Option<String>,
}

impl ConnectionActor {
    /// A connection for one account's key: it carries the market-data feed when `feed`, and
    /// the key's order updates (to `orders`) when given.
    pub fn new(
        settings: ConnectionSettings,
        target: Option<FeedTarget>,
        registry: Addr<SubscriptionRegistryActor>,
        feed: bool,
        orders: Option<Recipient<OrderStreamEvent>>,
    ) -> Self {
        let now = Instant::now();
        Self {
            backoff: Backoff::new(settings.backoff),
            restarts: RestartTracker::new(settings.supervision),
            settings,
            target,
            registry,
            state: ConnectionState::Idle,
            wanted: false,
            generation: 0,
            sink: None,
            stream: None,
            retry: None,
            next_retry_at: None,
            limit_until: None,
            held: 0,
            live_since: None,
            idle_ref: now,
            last_frame_at: now,
            last_ping_at: now,
            last_tick_at: None,
            messages: 0,
            rate_window: (now, 0),
            rate: 0.0,
            malformed: 0,
            reconnects: 0,
            ever_live: false,
            last_error: None,
            events: VecDeque::new(),
            feed,
            orders,
            awaiting_orders: false,
            orders_live: false,
            order_events: 0,
            last_order_event_at: None,
            order_times: VecDeque::new(),
            pending_broker: None,
        }
    }

    fn account_id(&self) -> Option<i32> {
        self.target.as_ref().map(|t| t.account_id)
    }

    /// Tells the order-event router whether this socket's order updates flow.
    fn orders_flowing(&mut self, live: bool) {
        if self.orders_live == live {
            return;
        }
        self.orders_live = live;
        if let (Some(orders), Some(account_id)) = (&self.orders, self.account_id()) {
            orders.do_send(OrderStreamEvent::Live { account_id, live });
        }
    }

    fn masked_key(&self) -> String {
        self.target
            .as_ref()
            .map(|t| t.api_key.hint())
            .unwrap_or_default()
    }

    fn event(&mut self, event: &'static str, detail: impl Into<String>) {
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(ConnectionEvent {
            at: Utc::now(),
            event,
            detail: detail.into(),
        });
    }

    /// Opens a socket unless one exists or an attempt is already in flight.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.retry = None;
        self.next_retry_at = None;
        if !self.wanted || self.restarts.faulted() {
            return;
        }
        if matches!(
            self.state,
            ConnectionState::Connecting | ConnectionState::Authenticating | ConnectionState::Live
        ) || self.sink.is_some()
            || self.stream.is_some()
        {
            return;
        }
        let Some(target) = self.target.clone() else {
            self.state = ConnectionState::Idle;
            self.last_error = Some("no feed account configured".into());
            return;
        };
        self.generation += 1;
        let generation = self.generation;
        self.state = ConnectionState::Connecting;
        tracing::info!(
            account = %target.account_name,
            key = %target.api_key.hint(),
            attempt = self.backoff.attempt(),
            "connecting to the market-data feed"
        );
        let timeout = self.settings.connect_timeout;
        let max_frame = self.settings.max_frame_bytes;
        let url = target.ws_url.clone();
        let attempt = async move {
            let client = awc::Client::builder()
                .max_http_version(awc::http::Version::HTTP_11)
                .timeout(timeout)
                .finish();
            let connecting = client.ws(url.as_str()).max_frame_size(max_frame).connect();
            match actix_rt::time::timeout(timeout, connecting).await {
                Ok(Ok((_resp, framed))) => Ok(framed),
                Ok(Err(e)) => Err(format!("connecting to {url}: {e}")),
                Err(_) => Err(format!("connecting to {url}: no answer within {timeout:?}")),
            }
        };
        ctx.spawn(
            attempt
                .into_actor(self)
                .map(move |result, act, ctx| act.on_connected(generation, result, ctx)),
        );
    }

    fn on_connected(
        &mut self,
        generation: u64,
        result: Result<Framed<BoxedSocket, Codec>, String>,
        ctx: &mut Context<Self>,
    ) {
        if generation != self.generation || self.state != ConnectionState::Connecting {
            // Abandoned attempt (stopped or retargeted meanwhile): dropping the socket closes it.
            return;
        }
        let framed = match result {
            Ok(f) => f,
            Err(e) => return self.fail(FailureKind::Transient, e, ctx),
        };
        let (sink, stream) = framed.split();
        let tagged = stream
            .map(move |item| Incoming {
                generation,
                item: Some(item),
            })
            .chain(futures_util::stream::once(async move {
                Incoming {
                    generation,
                    item: None,
                }
            }));
        self.stream = Some(ctx.add_stream(tagged));
        let mut sink = SinkWrite::new(sink, ctx);
        let frame = authenticate_frame(self.target.as_ref().map_or("", |t| t.api_key.expose()));
        let _ = sink.write(Message::Text(frame.into()));
        self.sink = Some(sink);
        self.state = ConnectionState::Authenticating;
        let now = Instant::now();
        self.last_frame_at = now;
        ctx.run_later(self.settings.connect_timeout, move |act, ctx| {
            if act.generation == generation && act.state == ConnectionState::Authenticating {
                act.fail(
                    FailureKind::Transient,
                    "no answer to authenticate".into(),
                    ctx,
                );
            }
        });
    }

    /// The socket is gone: the registry hears it when this socket carried the feed, the
    /// order-event router that its order updates stopped.
    fn went_down(&mut self, ctx: &mut Context<Self>) {
        if self.state == ConnectionState::Live && self.feed {
            self.registry.do_send(FeedLive {
                from: ctx.address(),
                live: false,
            });
        }
        self.awaiting_orders = false;
        self.orders_flowing(false);
    }

    /// Closes the socket (if any) and forgets its stream.
    fn close_socket(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.stream.take() {
            ctx.cancel_future(handle);
        }
        if let Some(mut sink) = self.sink.take() {
            let _ = sink.write(Message::Close(None));
            sink.close();
        }
        self.went_down(ctx);
        self.live_since = None;
    }

    /// Tears the connection down and schedules the next attempt per the backoff policy.
    fn fail(&mut self, kind: FailureKind, error: String, ctx: &mut Context<Self>) {
        let was_live = self.state == ConnectionState::Live;
        self.close_socket(ctx);
        self.generation += 1;
        self.backoff.maybe_reset(Instant::now());
        let delay = self.backoff.next_delay(kind, rand::random::<f64>());
        tracing::warn!(
            account = self.target.as_ref().map(|t| t.account_name.as_str()).unwrap_or(""),
            key = %self.masked_key(),
            error = %error,
            ?kind,
            retry_in_ms = delay.as_millis() as u64,
            "market-data feed down"
        );
        self.event(
            if was_live { "disconnected" } else { "failed" },
            format!("{error}; retry in {:.1} s", delay.as_secs_f64()),
        );
        self.last_error = Some(error);
        self.limit_until = (kind != FailureKind::Transient).then(|| Instant::now() + delay);
        self.schedule_retry(delay, ctx);
    }

    fn schedule_retry(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        if let Some(h) = self.retry.take() {
            ctx.cancel_future(h);
        }
        if !self.wanted {
            self.state = ConnectionState::Stopped;
            return;
        }
        self.state = ConnectionState::BackingOff;
        self.next_retry_at = chrono::Duration::from_std(delay)
            .ok()
            .map(|d| Utc::now() + d);
        self.retry = Some(ctx.run_later(delay, |act, ctx| {
            act.state = ConnectionState::Idle;
            act.connect(ctx);
        }));
    }

    /// Live; `orders`: its order updates are subscribed.
    fn go_live(&mut self, broker: Option<String>, orders: bool, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.state = ConnectionState::Live;
        self.live_since = Some((now, Utc::now()));
        self.idle_ref = now;
        self.backoff.on_live(now);
        self.limit_until = None;
        self.last_error = None;
        if self.ever_live {
            self.reconnects += 1;
        }
        self.ever_live = true;
        tracing::info!(
            account = self.target.as_ref().map(|t| t.account_name.as_str()).unwrap_or(""),
            key = %self.masked_key(),
            broker = broker.as_deref().unwrap_or(""),
            "market-data feed live"
        );
        self.event("connected", broker.unwrap_or_default());
        if self.feed {
            self.registry.do_send(FeedLive {
                from: ctx.address(),
                live: true,
            });
        }
        if orders {
            self.orders_flowing(true);
        }
    }

    /// Authenticated: ask for the key's order updates first (the socket is live once they are
    /// subscribed), or go live at once when it carries none.
    fn authenticated(&mut self, broker: Option<String>, ctx: &mut Context<Self>) {
        if self.orders.is_none() {
            return self.go_live(broker, false, ctx);
        }
        self.awaiting_orders = true;
        self.pending_broker = broker;
        if let Some(sink) = &mut self.sink {
            let _ = sink.write(Message::Text(subscribe_orders_frame().into()));
        }
        let generation = self.generation;
        ctx.run_later(self.settings.connect_timeout, move |act, ctx| {
            if act.generation == generation && act.awaiting_orders {
                act.without_orders("no answer to subscribe_orders".into(), ctx);
            }
        });
    }

    /// The gateway gives no order updates: the socket goes live without them (market data
    /// matters more), and exits of the account are confirmed by reading the books.
    fn without_orders(&mut self, why: String, ctx: &mut Context<Self>) {
        self.awaiting_orders = false;
        tracing::warn!(key = %self.masked_key(), reason = %why, "no order updates on this socket; exits are confirmed by reading the books");
        self.event("no order updates", why.clone());
        let broker = self.pending_broker.take();
        self.go_live(broker, false, ctx);
        // `go_live` cleared the error; the missing updates stay visible.
        self.last_error = Some(format!("order updates: {why}"));
    }

    fn order_update(&mut self, update: Box<OrderUpdate>) {
        let now = Instant::now();
        self.order_events += 1;
        self.last_order_event_at = Some(Utc::now());
        self.order_times.push_back(now);
        while self
            .order_times
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.order_times.pop_front();
        }
        if let (Some(orders), Some(account_id)) = (&self.orders, self.account_id()) {
            orders.do_send(OrderStreamEvent::Update {
                account_id,
                update,
                received_at: now,
            });
        }
    }

    fn on_text(&mut self, text: bytes::Bytes, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let as_str = std::str::from_utf8(&text).unwrap_or("");
        if is_market_data(as_str) {
            if self.state == ConnectionState::Live && self.feed {
                self.messages += 1;
                self.last_tick_at = Some(now);
                self.idle_ref = now;
                self.registry.do_send(RawTick {
                    frame: text,
                    received_at: now,
                });
            }
            return;
        }
        match parse_control(as_str) {
            Ok(Control::AuthOk { broker })
                if self.state == ConnectionState::Authenticating && !self.awaiting_orders =>
            {
                self.authenticated(broker, ctx);
            }
            Ok(Control::OrdersSubscribed) if self.awaiting_orders => {
                self.awaiting_orders = false;
                let broker = self.pending_broker.take();
                self.go_live(broker, true, ctx);
            }
            Ok(Control::OrderUpdate(update)) => self.order_update(update),
            Ok(Control::Error { code, message }) if self.awaiting_orders => {
                let text = match &code {
                    Some(c) => format!("{c}: {message}"),
                    None => message,
                };
                self.without_orders(format!("subscribe_orders refused: {text}"), ctx);
            }
            Ok(Control::Error { code, message }) => {
                let kind = classify_feed_error(code.as_deref(), &message);
                let text = match &code {
                    Some(c) => format!("{c}: {message}"),
                    None => message,
                };
                if self.state == ConnectionState::Authenticating || kind != FailureKind::Transient {
                    self.fail(kind, text, ctx);
                } else {
                    tracing::warn!(error = %text, "feed error reply");
                    self.last_error = Some(text);
                }
            }
            Ok(Control::SubscribeAck { rejected }) if !rejected.is_empty() => {
                self.registry.do_send(SymbolsRejected(rejected));
            }
            Ok(_) => {}
            Err(_) => {
                self.malformed += 1;
                tracing::debug!("malformed feed frame ignored");
            }
        }
    }

    fn housekeeping(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let (since, count) = self.rate_window;
        let elapsed = now.duration_since(since).as_secs_f64();
        if elapsed > 0.0 {
            self.rate = (self.messages - count) as f64 / elapsed;
        }
        self.rate_window = (now, self.messages);
        if self.state != ConnectionState::Live {
            return;
        }
        if now.duration_since(self.last_ping_at) >= self.settings.ping_interval {
            self.last_ping_at = now;
            if let Some(sink) = &mut self.sink {
                let _ = sink.write(Message::Ping(bytes::Bytes::new()));
            }
        }
        if self.feed
            && self.held > 0
            && now.duration_since(self.idle_ref) > self.settings.idle_timeout
        {
            let secs = self.settings.idle_timeout.as_secs();
            return self.fail(
                FailureKind::Transient,
                format!("no market data for {secs} s with symbols subscribed: feed stalled"),
                ctx,
            );
        }
        let silent = now.duration_since(self.last_frame_at);
        if silent > self.settings.ping_interval * 2 + Duration::from_secs(1) {
            self.fail(
                FailureKind::Transient,
                format!(
                    "no frame (not even a pong) for {} s: socket dead",
                    silent.as_secs()
                ),
                ctx,
            );
        }
    }

    fn status(&self) -> ConnectionStatus {
        ConnectionStatus {
            state: self.state,
            lifecycle: self.state.lifecycle(),
            restarts: self.restarts.restarts(),
            account_id: self.target.as_ref().map(|t| t.account_id),
            account: self.target.as_ref().map(|t| t.account_name.clone()),
            api_key: self.target.as_ref().map(|t| t.api_key.hint()),
            ws_url: self.target.as_ref().map(|t| t.ws_url.clone()),
            attempt: self.backoff.attempt(),
            next_retry_at: self.next_retry_at,
            last_error: self.last_error.clone(),
            connected_since: self.live_since.map(|(_, at)| at),
            messages_received: self.messages,
            messages_per_s: (self.rate * 10.0).round() / 10.0,
            last_tick_age_ms: self.last_tick_at.map(age_ms),
            reconnects: self.reconnects,
            malformed: self.malformed,
            held_symbols: self.held,
            recent_events: self.events.iter().cloned().collect(),
            feed: self.feed,
            orders: OrderStreamView {
                wanted: self.orders.is_some(),
                subscribed: self.orders_live,
                events: self.order_events,
                events_last_minute: self
                    .order_times
                    .iter()
                    .filter(|t| t.elapsed() <= Duration::from_secs(60))
                    .count(),
                last_event_at: self.last_order_event_at,
            },
        }
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.housekeeping(ctx));
        if self.restarts.faulted() {
            self.state = ConnectionState::Faulted;
        } else if self.wanted {
            // Restarted while wanted: come back through the backoff, never in a tight loop.
            let delay = self
                .backoff
                .next_delay(FailureKind::Transient, rand::random::<f64>());
            self.schedule_retry(delay, ctx);
        }
    }
}

impl actix::Supervised for ConnectionActor {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        // Timers and streams died with the old context; forget their handles.
        self.sink = None;
        self.stream = None;
        self.retry = None;
        self.generation += 1;
        self.went_down(ctx);
        self.state = ConnectionState::Idle;
        self.restarts.on_restart("ConnectionActor");
    }
}

impl StreamHandler<Incoming> for ConnectionActor {
    fn handle(&mut self, msg: Incoming, ctx: &mut Context<Self>) {
        if msg.generation != self.generation {
            return;
        }
        self.last_frame_at = Instant::now();
        match msg.item {
            None => {
                self.stream = None;
                self.fail(
                    FailureKind::Transient,
                    "the gateway closed the connection".into(),
                    ctx,
                );
            }
            Some(Err(e)) => self.fail(
                FailureKind::Transient,
                format!("feed protocol error: {e}"),
                ctx,
            ),
            Some(Ok(Frame::Text(text))) => self.on_text(text, ctx),
            Some(Ok(Frame::Ping(payload))) => {
                if let Some(sink) = &mut self.sink {
                    let _ = sink.write(Message::Pong(payload));
                }
            }
            Some(Ok(Frame::Pong(_))) => {}
            Some(Ok(Frame::Close(reason))) => {
                let detail = reason
                    .as_ref()
                    .and_then(|r| r.description.clone())
                    .unwrap_or_default();
                let code = reason.map(|r| u16::from(r.code).to_string());
                let kind = classify_feed_error(code.as_deref(), &detail);
                self.fail(
                    kind,
                    format!(
                        "the gateway closed the connection ({} {detail})",
                        code.unwrap_or_default()
                    ),
                    ctx,
                );
            }
            Some(Ok(Frame::Binary(_))) | Some(Ok(Frame::Continuation(_))) => {
                self.malformed += 1;
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The end of a stream arrives as `Incoming { item: None }`; never stop the actor here.
    }
}

impl WriteHandler<WsProtocolError> for ConnectionActor {
    fn error(&mut self, err: WsProtocolError, ctx: &mut Context<Self>) -> Running {
        self.fail(
            FailureKind::Transient,
            format!("feed write failed: {err}"),
            ctx,
        );
        Running::Continue
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl Handler<StartFeed> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _: StartFeed, ctx: &mut Context<Self>) {
        self.wanted = true;
        if matches!(self.state, ConnectionState::Idle | ConnectionState::Stopped) {
            self.state = ConnectionState::Idle;
            self.connect(ctx);
        }
    }
}

impl Handler<StopFeed> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _: StopFeed, ctx: &mut Context<Self>) {
        self.wanted = false;
        if let Some(h) = self.retry.take() {
            ctx.cancel_future(h);
        }
        self.close_socket(ctx);
        self.generation += 1;
        self.next_retry_at = None;
        if self.state != ConnectionState::Faulted {
            self.state = ConnectionState::Stopped;
        }
        self.event("stopped", "");
    }
}

impl Handler<SetTarget> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: SetTarget, ctx: &mut Context<Self>) {
        if self.target == msg.0 {
            return;
        }
        let from = self.target.as_ref().map(|t| t.account_name.clone());
        let to = msg.0.as_ref().map(|t| t.account_name.clone());
        tracing::info!(?from, ?to, "feed account changed");
        self.event(
            "retargeted",
            format!(
                "{} → {}",
                from.unwrap_or_else(|| "none".into()),
                to.unwrap_or_else(|| "none".into())
            ),
        );
        self.close_socket(ctx);
        self.generation += 1;
        self.target = msg.0;
        // A different gateway starts with a clean backoff; the old socket is closed first.
        self.backoff = Backoff::new(self.settings.backoff);
        self.limit_until = None;
        if self.state != ConnectionState::Faulted {
            self.state = ConnectionState::Idle;
        }
        let delay = self.settings.backoff.initial;
        self.schedule_retry(delay, ctx);
    }
}

impl Handler<Reconnect> for ConnectionActor {
    type Result = Result<(), String>;

    fn handle(&mut self, _: Reconnect, ctx: &mut Context<Self>) -> Self::Result {
        if !self.wanted {
            return Err("the feed is stopped; start the service first".into());
        }
        if self.restarts.faulted() {
            return Err("the connection actor is Faulted (crash loop); see the logs".into());
        }
        if let Some(until) = self.limit_until.filter(|u| *u > Instant::now()) {
            return Err(format!(
                "backing off after an authentication or connection-limit error; next attempt in {} s",
                until.duration_since(Instant::now()).as_secs() + 1
            ));
        }
        self.event("reconnect", "requested");
        tracing::info!(key = %self.masked_key(), "reconnect requested");
        self.close_socket(ctx);
        self.generation += 1;
        let delay = self.settings.backoff.initial;
        self.schedule_retry(delay, ctx);
        Ok(())
    }
}

impl Handler<SendFrames> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: SendFrames, _ctx: &mut Context<Self>) {
        // Frames from a registry this socket no longer carries the feed for.
        if !self.feed {
            return;
        }
        if self.held == 0 && msg.held > 0 {
            self.idle_ref = Instant::now();
        }
        self.held = msg.held;
        if self.state != ConnectionState::Live {
            return;
        }
        if let Some(sink) = &mut self.sink {
            for frame in msg.frames {
                let _ = sink.write(Message::Text(frame.into()));
            }
        }
    }
}

impl Handler<SetFeed> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, msg: SetFeed, ctx: &mut Context<Self>) {
        if msg.0 == self.feed {
            return;
        }
        self.feed = msg.0;
        let key = self.masked_key();
        tracing::info!(key = %key, feed = msg.0, "the socket {} the market-data feed", if msg.0 { "carries" } else { "no longer carries" });
        self.event(if msg.0 { "feed" } else { "orders only" }, "");
        if self.state != ConnectionState::Live {
            return;
        }
        if msg.0 {
            self.idle_ref = Instant::now();
            self.registry.do_send(FeedLive {
                from: ctx.address(),
                live: true,
            });
        } else {
            if self.held > 0
                && let Some(sink) = &mut self.sink
            {
                let _ = sink.write(Message::Text(unsubscribe_all_frame().into()));
            }
            self.held = 0;
            self.registry.do_send(FeedLive {
                from: ctx.address(),
                live: false,
            });
        }
    }
}

impl Handler<Retire> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.wanted = false;
        self.close_socket(ctx);
        self.generation += 1;
        self.state = ConnectionState::Stopped;
        ctx.stop();
    }
}

impl Handler<GetConnectionStatus> for ConnectionActor {
    type Result = MessageResult<GetConnectionStatus>;

    fn handle(&mut self, _: GetConnectionStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}
