//! `SubscriptionRegistryActor` (docs/ARCHITECTURE.md §4.5): reference-counted subscriptions per
//! (exchange, symbol) and mode, upstream frames only on edges, resubscribe after every reconnect,
//! non-blocking fan-out with per-consumer coalescing, and a latest-tick cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;

use super::connection::{ConnectionActor, ConnectionSettings, SendFrames};
use super::{FeedEvent, Key, Mode, SubscriberId, Tick};
use crate::domain::subscriptions::{Edge, Frame, SubscriptionTable, batch_frames};
use crate::openalgo::feed::{SymbolError, parse_market_data};
use crate::status::{Lifecycle, age_ms};
use crate::supervised::{RestartTracker, Supervision};

/// How often coalesced ticks are retried for consumers whose mailbox was full.
const FLUSH_EVERY: Duration = Duration::from_millis(2);
/// How often stopped subscribers are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub(super) struct RegistrySettings {
    batch_size: usize,
    max_symbols: usize,
    /// The most distinct symbols the feed may carry when a viewer adds some: `max_symbols`
    /// less the share reserved for open positions.
    viewer_symbols: usize,
    supervision: Supervision,
}

impl From<&ConnectionSettings> for RegistrySettings {
    fn from(s: &ConnectionSettings) -> Self {
        Self {
            batch_size: s.subscribe_batch_size,
            max_symbols: s.max_symbols,
            viewer_symbols: viewer_symbols(s.max_symbols, s.position_reserve_share),
            supervision: s.supervision,
        }
    }
}

/// `max_symbols` less the reserved share (rounded up, so that the reserve is never smaller than
/// asked).
fn viewer_symbols(max_symbols: usize, reserve_share: f64) -> usize {
    let reserved = (max_symbols as f64 * reserve_share.clamp(0.0, 1.0)).ceil() as usize;
    max_symbols.saturating_sub(reserved)
}

/// Who holds keys: the position monitor may use the whole symbol cap, option-chain viewers only
/// what the reserve for positions leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Positions,
    Viewer,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "symbol limit reached: the feed carries {held} of at most {cap} symbols and this request adds {adding}; nothing was subscribed"
    )]
    SymbolCap {
        cap: usize,
        held: usize,
        adding: usize,
    },
    #[error(
        "option chains may use at most {allowed} of the feed's {cap} symbols (the rest is kept \
         for open positions): {held} are in use and this chain adds {adding}; close a chain or \
         ask for fewer strikes"
    )]
    ViewerShare {
        cap: usize,
        allowed: usize,
        held: usize,
        adding: usize,
    },
    #[error("no keys given")]
    Empty,
}

/// Adds (or changes the mode of) keys for one subscriber. All or nothing: when the symbol cap
/// would be exceeded nothing changes. Subscribers receive [`FeedEvent`]s on `recipient`; the
/// latest cached tick of each key is delivered at once.
#[derive(Message)]
#[rtype(result = "Result<(), RegistryError>")]
pub struct Subscribe {
    pub subscriber: SubscriberId,
    /// Shown as the holder in status output (e.g. "position-monitor", "chain:3f2a…").
    pub label: String,
    pub recipient: Recipient<FeedEvent>,
    pub keys: Vec<(Key, Mode)>,
    pub holder: Holder,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub subscriber: SubscriberId,
    pub keys: Vec<Key>,
}

/// Releases every key of a subscriber in one sweep (it is stopping).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseAll {
    pub subscriber: SubscriberId,
}

#[derive(Message)]
#[rtype(result = "RegistryStatus")]
pub struct GetRegistryStatus;

#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct AttachConnection(pub Addr<ConnectionActor>);

/// The connection went live (resubscribe everything) or down.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct FeedLive {
    /// The connection it comes from: only the attached one counts.
    pub from: Addr<ConnectionActor>,
    pub live: bool,
}

/// A raw `market_data` frame, parsed and routed here.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct RawTick {
    pub frame: bytes::Bytes,
    pub received_at: Instant,
}

/// Per-symbol errors from a subscribe ack.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SymbolsRejected(pub Vec<SymbolError>);

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct SubscriptionView {
    pub exchange: String,
    pub symbol: String,
    pub mode: Mode,
    pub mode_label: &'static str,
    pub holders: Vec<String>,
    pub ltp: Option<f64>,
    pub last_tick_age_ms: Option<u64>,
    pub ticks: u64,
    pub rejected: Option<String>,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct ConsumerView {
    pub id: u64,
    pub label: String,
    pub keys: usize,
    pub delivered: u64,
    pub dropped: u64,
    pub pending: usize,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct RegistryStatus {
    pub state: Lifecycle,
    pub restarts: u64,
    pub feed_live: bool,
    pub symbols: usize,
    pub max_symbols: usize,
    pub ticks_in: u64,
    pub ticks_delivered: u64,
    pub ticks_dropped: u64,
    pub ticks_unrouted: u64,
    pub malformed: u64,
    pub frames_sent: u64,
    pub rejected: usize,
    pub subscriptions: Vec<SubscriptionView>,
    pub consumers: Vec<ConsumerView>,
}

struct Slot {
    key: Arc<Key>,
    /// Holders in fan-out order (kept in sync with the table).
    holders: Vec<SubscriberId>,
    last: Option<Arc<Tick>>,
    ticks: u64,
    rejected: Option<String>,
}

struct Consumer {
    label: String,
    recipient: Recipient<FeedEvent>,
    keys: usize,
    delivered: u64,
    dropped: u64,
    /// Latest undelivered tick per key while the consumer's mailbox is full.
    pending: HashMap<Arc<Key>, Arc<Tick>>,
}

pub struct SubscriptionRegistryActor {
    settings: RegistrySettings,
    table: SubscriptionTable,
    slots: HashMap<String, HashMap<String, Slot>>,
    consumers: HashMap<SubscriberId, Consumer>,
    connection: Option<Addr<ConnectionActor>>,
    feed_live: bool,
    flush_scheduled: bool,
    restarts: RestartTracker,
    ticks_in: u64,
    ticks_delivered: u64,
    ticks_dropped: u64,
    ticks_unrouted: u64,
    malformed: u64,
    frames_sent: u64,
}

impl SubscriptionRegistryActor {
    pub(super) fn new(settings: RegistrySettings) -> Self {
        Self {
            table: SubscriptionTable::new(settings.max_symbols),
            restarts: RestartTracker::new(settings.supervision),
            settings,
            slots: HashMap::new(),
            consumers: HashMap::new(),
            connection: None,
            feed_live: false,
            flush_scheduled: false,
            ticks_in: 0,
            ticks_delivered: 0,
            ticks_dropped: 0,
            ticks_unrouted: 0,
            malformed: 0,
            frames_sent: 0,
        }
    }

    fn slot_mut(&mut self, key: &Key) -> Option<&mut Slot> {
        self.slots.get_mut(&key.exchange)?.get_mut(&key.symbol)
    }

    /// Re-derives a key's fan-out list from the table after a change; drops the slot when the
    /// key is no longer held.
    fn sync_slot(&mut self, key: &Key) {
        let holders: Vec<SubscriberId> = self.table.holders(key).map(|(s, _)| s).collect();
        if holders.is_empty() {
            if let Some(symbols) = self.slots.get_mut(&key.exchange) {
                symbols.remove(&key.symbol);
                if symbols.is_empty() {
                    self.slots.remove(&key.exchange);
                }
            }
            return;
        }
        let slot = self
            .slots
            .entry(key.exchange.clone())
            .or_default()
            .entry(key.symbol.clone())
            .or_insert_with(|| Slot {
                key: Arc::new(key.clone()),
                holders: Vec::new(),
                last: None,
                ticks: 0,
                rejected: None,
            });
        slot.holders = holders;
    }

    /// Sends the frames for `edges` upstream (when live) and tells the connection how many
    /// keys are held (its idle watchdog only runs while something is subscribed).
    fn send_edges(&mut self, edges: &[Edge]) {
        let frames = if self.feed_live {
            batch_frames(edges, self.settings.batch_size)
        } else {
            Vec::new()
        };
        self.send_frames(frames);
    }

    fn send_frames(&mut self, frames: Vec<Frame>) {
        let Some(connection) = &self.connection else {
            return;
        };
        let texts: Vec<String> = frames
            .iter()
            .filter_map(|f| match serde_json::to_string(f) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(error = %e, "could not serialise a subscription frame");
                    None
                }
            })
            .collect();
        self.frames_sent += texts.len() as u64;
        connection.do_send(SendFrames {
            frames: texts,
            held: self.table.len(),
        });
    }

    fn release(&mut self, subscriber: SubscriberId) {
        let keys: Vec<Key> = self.table.keys_of(subscriber).cloned().collect::<Vec<_>>();
        let edges = self.table.release_all(subscriber);
        for key in &keys {
            self.sync_slot(key);
        }
        self.consumers.remove(&subscriber);
        if !edges.is_empty() || !keys.is_empty() {
            self.send_edges(&edges);
        }
    }

    /// Delivers a tick to one consumer without blocking: when its mailbox is full the tick is
    /// parked as the latest value of its key (replacing, and counting, an older parked one).
    fn deliver(
        consumer: &mut Consumer,
        tick: &Arc<Tick>,
        delivered: &mut u64,
        dropped: &mut u64,
    ) -> bool {
        if !consumer.pending.is_empty() {
            if consumer
                .pending
                .insert(tick.key.clone(), tick.clone())
                .is_some()
            {
                consumer.dropped += 1;
                *dropped += 1;
            }
            return true;
        }
        match consumer.recipient.try_send(FeedEvent::Tick(tick.clone())) {
            Ok(()) => {
                consumer.delivered += 1;
                *delivered += 1;
                false
            }
            Err(SendError::Full(_)) => {
                consumer.pending.insert(tick.key.clone(), tick.clone());
                true
            }
            // A stopped consumer is released by the sweep.
            Err(SendError::Closed(_)) => false,
        }
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.run_later(FLUSH_EVERY, |act, ctx| {
                act.flush_scheduled = false;
                act.flush(ctx);
            });
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        let mut again = false;
        for consumer in self.consumers.values_mut() {
            if consumer.pending.is_empty() {
                continue;
            }
            let keys: Vec<Arc<Key>> = consumer.pending.keys().cloned().collect();
            for key in keys {
                let Some(tick) = consumer.pending.remove(&key) else {
                    continue;
                };
                match consumer.recipient.try_send(FeedEvent::Tick(tick)) {
                    Ok(()) => {
                        consumer.delivered += 1;
                        self.ticks_delivered += 1;
                    }
                    Err(SendError::Full(FeedEvent::Tick(t))) => {
                        consumer.pending.insert(key, t);
                        again = true;
                        break;
                    }
                    Err(_) => {
                        consumer.pending.clear();
                        break;
                    }
                }
            }
        }
        if again {
            self.schedule_flush(ctx);
        }
    }

    fn route(&mut self, msg: RawTick, ctx: &mut Context<Self>) {
        self.ticks_in += 1;
        let md = match parse_market_data(&msg.frame) {
            Ok(md) => md,
            Err(e) => {
                self.malformed += 1;
                tracing::debug!(error = %e, "malformed market_data frame ignored");
                return;
            }
        };
        let Some(slot) = self
            .slots
            .get_mut(md.exchange.as_ref())
            .and_then(|s| s.get_mut(md.symbol.as_ref()))
        else {
            self.ticks_unrouted += 1;
            return;
        };
        let d = &md.data;
        let tick = Arc::new(Tick {
            key: slot.key.clone(),
            ltp: d.ltp,
            bid: d.best_bid(),
            ask: d.best_ask(),
            volume: d.volume,
            oi: d.oi,
            received_at: msg.received_at,
            sent_us: d.sim_sent_us.filter(|v| *v > 0.0).map(|v| v as u64),
        });
        slot.ticks += 1;
        slot.last = Some(tick.clone());
        let mut parked = false;
        for sid in &slot.holders {
            if let Some(consumer) = self.consumers.get_mut(sid) {
                parked |= Self::deliver(
                    consumer,
                    &tick,
                    &mut self.ticks_delivered,
                    &mut self.ticks_dropped,
                );
            }
        }
        if parked {
            self.schedule_flush(ctx);
        }
    }

    fn sweep(&mut self) {
        let dead: Vec<SubscriberId> = self
            .consumers
            .iter()
            .filter(|(_, c)| !c.recipient.connected())
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            tracing::debug!(subscriber = %id, "subscriber stopped; releasing its keys");
            self.release(id);
        }
    }

    fn status(&self) -> RegistryStatus {
        let mut subscriptions: Vec<SubscriptionView> = self
            .table
            .upstream()
            .map(|(key, mode)| {
                let slot = self
                    .slots
                    .get(&key.exchange)
                    .and_then(|s| s.get(&key.symbol));
                let holders = slot
                    .map(|s| {
                        s.holders
                            .iter()
                            .map(|id| {
                                self.consumers
                                    .get(id)
                                    .map(|c| c.label.clone())
                                    .unwrap_or_else(|| id.to_string())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let last = slot.and_then(|s| s.last.as_ref());
                SubscriptionView {
                    exchange: key.exchange.clone(),
                    symbol: key.symbol.clone(),
                    mode,
                    mode_label: mode.label(),
                    holders,
                    ltp: last.map(|t| t.ltp),
                    last_tick_age_ms: last.map(|t| age_ms(t.received_at)),
                    ticks: slot.map(|s| s.ticks).unwrap_or(0),
                    rejected: slot.and_then(|s| s.rejected.clone()),
                }
            })
            .collect();
        subscriptions.sort_by(|a, b| (&a.exchange, &a.symbol).cmp(&(&b.exchange, &b.symbol)));
        let mut consumers: Vec<ConsumerView> = self
            .consumers
            .iter()
            .map(|(id, c)| ConsumerView {
                id: id.0,
                label: c.label.clone(),
                keys: c.keys,
                delivered: c.delivered,
                dropped: c.dropped,
                pending: c.pending.len(),
            })
            .collect();
        consumers.sort_by_key(|c| c.id);
        RegistryStatus {
            state: if self.restarts.faulted() {
                Lifecycle::Faulted
            } else {
                Lifecycle::Running
            },
            restarts: self.restarts.restarts(),
            feed_live: self.feed_live,
            symbols: self.table.len(),
            max_symbols: self.settings.max_symbols,
            ticks_in: self.ticks_in,
            ticks_delivered: self.ticks_delivered,
            ticks_dropped: self.ticks_dropped,
            ticks_unrouted: self.ticks_unrouted,
            malformed: self.malformed,
            frames_sent: self.frames_sent,
            rejected: subscriptions
                .iter()
                .filter(|s| s.rejected.is_some())
                .count(),
            subscriptions,
            consumers,
        }
    }
}

impl Actor for SubscriptionRegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The connection forwards every tick here: never make it wait. Not usize::MAX: actix
        // counts the address's senders against (its maximum − capacity), so usize::MAX leaves
        // no room and cloning the address after start overflows (a panic in debug builds).
        ctx.set_mailbox_capacity(usize::MAX >> 2);
        ctx.run_interval(SWEEP_EVERY, |act, _| act.sweep());
    }
}

impl actix::Supervised for SubscriptionRegistryActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.flush_scheduled = false;
        self.restarts.on_restart("SubscriptionRegistryActor");
    }
}

impl Handler<Subscribe> for SubscriptionRegistryActor {
    type Result = Result<(), RegistryError>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) -> Self::Result {
        if msg.keys.is_empty() {
            return Err(RegistryError::Empty);
        }
        let mut new_keys: Vec<&Key> = msg
            .keys
            .iter()
            .map(|(k, _)| k)
            .filter(|k| self.table.upstream_mode(k).is_none())
            .collect();
        new_keys.sort();
        new_keys.dedup();
        let held = self.table.len();
        if msg.holder == Holder::Viewer
            && !new_keys.is_empty()
            && held + new_keys.len() > self.settings.viewer_symbols
        {
            return Err(RegistryError::ViewerShare {
                cap: self.settings.max_symbols,
                allowed: self.settings.viewer_symbols,
                held,
                adding: new_keys.len(),
            });
        }
        if held + new_keys.len() > self.settings.max_symbols {
            return Err(RegistryError::SymbolCap {
                cap: self.settings.max_symbols,
                held,
                adding: new_keys.len(),
            });
        }
        let consumer = self
            .consumers
            .entry(msg.subscriber)
            .or_insert_with(|| Consumer {
                label: msg.label.clone(),
                recipient: msg.recipient.clone(),
                keys: 0,
                delivered: 0,
                dropped: 0,
                pending: HashMap::new(),
            });
        consumer.recipient = msg.recipient;
        let mut edges = Vec::new();
        for (key, mode) in &msg.keys {
            match self.table.subscribe(msg.subscriber, key.clone(), *mode) {
                Ok(e) => edges.extend(e),
                // Unreachable after the capacity check above; report rather than panic.
                Err(e) => tracing::error!(error = %e, "subscription refused"),
            }
        }
        for (key, _) in &msg.keys {
            self.sync_slot(key);
        }
        if let Some(consumer) = self.consumers.get_mut(&msg.subscriber) {
            consumer.keys = self.table.keys_of(msg.subscriber).count();
            // A new subscriber gets the last known price at once.
            for (key, _) in &msg.keys {
                let last = self
                    .slots
                    .get(&key.exchange)
                    .and_then(|s| s.get(&key.symbol))
                    .and_then(|s| s.last.clone());
                if let Some(tick) = last {
                    let _ = consumer.recipient.try_send(FeedEvent::Tick(tick));
                }
            }
        }
        self.send_edges(&edges);
        Ok(())
    }
}

impl Handler<Unsubscribe> for SubscriptionRegistryActor {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Context<Self>) {
        let mut edges = Vec::new();
        for key in &msg.keys {
            edges.extend(self.table.unsubscribe(msg.subscriber, key));
            self.sync_slot(key);
        }
        let remaining = self.table.keys_of(msg.subscriber).count();
        if remaining == 0 {
            self.consumers.remove(&msg.subscriber);
        } else if let Some(c) = self.consumers.get_mut(&msg.subscriber) {
            c.keys = remaining;
            for key in &msg.keys {
                c.pending.remove(key);
            }
        }
        self.send_edges(&edges);
    }
}

impl Handler<ReleaseAll> for SubscriptionRegistryActor {
    type Result = ();

    fn handle(&mut self, msg: ReleaseAll, _ctx: &mut Context<Self>) {
        self.release(msg.subscriber);
    }
}

impl Handler<GetRegistryStatus> for SubscriptionRegistryActor {
    type Result = MessageResult<GetRegistryStatus>;

    fn handle(&mut self, _: GetRegistryStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<AttachConnection> for SubscriptionRegistryActor {
    type Result = ();

    fn handle(&mut self, msg: AttachConnection, _ctx: &mut Context<Self>) {
        // The feed moved to another socket: nothing is subscribed there until it says live.
        if self.connection.as_ref() != Some(&msg.0) {
            self.feed_live = false;
        }
        self.connection = Some(msg.0);
    }
}

impl Handler<FeedLive> for SubscriptionRegistryActor {
    type Result = ();

    fn handle(&mut self, msg: FeedLive, _ctx: &mut Context<Self>) {
        if self.connection.as_ref() != Some(&msg.from) {
            return;
        }
        self.feed_live = msg.live;
        if msg.live {
            for slot in self.slots.values_mut().flat_map(|s| s.values_mut()) {
                slot.rejected = None;
            }
            let frames = self.table.resubscribe_frames(self.settings.batch_size);
            tracing::info!(
                symbols = self.table.len(),
                frames = frames.len(),
                "feed live: resubscribing everything held"
            );
            self.send_frames(frames);
        }
    }
}

impl Handler<RawTick> for SubscriptionRegistryActor {
    type Result = ();

    fn handle(&mut self, msg: RawTick, ctx: &mut Context<Self>) {
        self.route(msg, ctx);
    }
}

impl Handler<SymbolsRejected> for SubscriptionRegistryActor {
    type Result = ();

    fn handle(&mut self, msg: SymbolsRejected, _ctx: &mut Context<Self>) {
        for err in msg.0 {
            let key = Key::new(err.exchange, err.symbol);
            tracing::warn!(key = %key, reason = %err.message, "gateway refused a symbol");
            let Some(slot) = self.slot_mut(&key) else {
                continue;
            };
            slot.rejected = Some(err.message.clone());
            let holders = slot.holders.clone();
            for sid in holders {
                if let Some(c) = self.consumers.get(&sid) {
                    let _ = c.recipient.try_send(FeedEvent::Rejected {
                        key: key.clone(),
                        message: err.message.clone(),
                    });
                }
            }
        }
    }
}
