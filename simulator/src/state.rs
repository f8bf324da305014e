//! The simulator's state, shared by the feed sessions, the REST handlers and the ticker
//! behind one mutex. Nothing holds the lock across an `.await`.

use std::collections::HashMap;
use std::mem;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix::Recipient;
use actix::prelude::SendError;
use actix_web::web::Bytes;
use actix_web_actors::ws::CloseReason;
use chrono::{DateTime, Utc};
use clock::SharedClock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::books::{Book, Stamp};
use super::faults::Faults;
use super::market::Market;
use super::orders::Timer;
use super::payload;
use super::ratelimit::RateLimiter;
use super::{SimConfig, mask_key};

/// Broker name reported on the feed and REST: payloads follow OpenAlgo's Angel adapter
/// (the reference adapter, `ltt` in epoch milliseconds, 5 depth levels).
pub(crate) const BROKER: &str = "angel";
/// Starting cash of every simulated account.
pub(crate) const INITIAL_CASH: f64 = 1_000_000.0;
/// Most random-walk ticks generated in one pass, so a stalled ticker does not burst.
const MAX_TICKS_PER_PASS: f64 = 50_000.0;

pub(crate) fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// A frame for one feed connection.
#[derive(Clone, Debug)]
pub(crate) enum Frame {
    Text(Bytes),
    Binary(Bytes),
}

/// What the state sends to a feed session actor.
pub(crate) enum Push {
    Frames(Vec<Frame>),
    /// Send a close frame and end the session.
    Close(CloseReason),
    /// End the session without a close frame (a dropped connection).
    Drop,
}

impl actix::Message for Push {
    type Result = ();
}

/// Settings the sessions and REST handlers read without taking the lock.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub auth_grace: Duration,
    pub ping_interval: Duration,
}

pub(crate) struct Shared {
    pub settings: Settings,
    core: Mutex<Core>,
    limiter: Mutex<RateLimiter>,
    next_client: AtomicU64,
    pub stopping: AtomicBool,
}

impl Shared {
    pub(crate) fn new(config: &SimConfig) -> Shared {
        Shared {
            settings: Settings {
                auth_grace: config.auth_grace,
                ping_interval: config.ping_interval,
            },
            core: Mutex::new(Core::new(config)),
            limiter: Mutex::new(RateLimiter::new(config.rate_limits)),
            next_client: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
        }
    }

    pub(crate) fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn limiter(&self) -> MutexGuard<'_, RateLimiter> {
        self.limiter.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn next_client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }
}

pub(crate) struct Account {
    pub key: String,
    pub masked: String,
    pub user_id: String,
    /// Open authenticated feed connections.
    pub connections: usize,
    pub book: Book,
    pub faults: Faults,
}

pub(crate) struct Client {
    sink: Recipient<Push>,
    pub account: Option<usize>,
    pub orders: bool,
    /// Instruments this client holds at least one mode of.
    held: Vec<usize>,
    outbox: Vec<Frame>,
}

/// One client's hold on one instrument: bit `m - 1` set for each subscribed mode `m`.
#[derive(Clone, Copy, Debug)]
struct Holder {
    client: u64,
    modes: u8,
}

/// Highest mode set in a mode mask (1 = LTP, 2 = Quote, 3 = Depth).
fn top_mode(modes: u8) -> u8 {
    8 - modes.leading_zeros() as u8
}

#[derive(Debug, Default)]
pub(crate) struct FeedStats {
    pub refused_connections: u64,
    pub auth_attempts: u64,
    pub malformed_in: u64,
    pub ticks_sent: u64,
    pub ticks_dropped: u64,
}

pub(crate) enum Outcome {
    Booked(usize),
    Rejected {
        symbol: String,
        exchange: String,
        action: String,
        quantity: u64,
        product: String,
        pricetype: String,
        reason: String,
    },
}

pub(crate) struct OrderRecord {
    pub account: usize,
    pub received_us: i64,
    pub outcome: Outcome,
}

pub(crate) struct Core {
    pub market: Market,
    pub accounts: Vec<Account>,
    key_index: HashMap<String, usize>,
    pub max_connections_per_key: usize,
    pub clients: HashMap<u64, Client>,
    /// Per instrument: who holds it at which modes (the gateway's subscription index,
    /// docs/openalgo.md §2.8).
    holders: Vec<Vec<Holder>>,
    /// Instruments with at least one holder, for picking random-walk ticks.
    active: Vec<usize>,
    active_pos: Vec<Option<usize>>,
    dirty: Vec<u64>,
    pub faults: Faults,
    pub stats: FeedStats,
    pub orders_log: Vec<OrderRecord>,
    pub order_seq: u64,
    /// Instruments with working (open or trigger-pending) orders.
    pub working: Vec<usize>,
    /// Delayed order actions to start once the lock is released.
    pub timers: Vec<Timer>,
    pub rng: StdRng,
    pub ticks_per_s: f64,
    carry: f64,
    scratch: Vec<u8>,
    clock: SharedClock,
}

impl Core {
    fn new(config: &SimConfig) -> Core {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let market = Market::build(config.clock.now(), &mut rng);
        let count = market.instruments.len();
        let accounts: Vec<Account> = config
            .api_keys
            .iter()
            .enumerate()
            .map(|(at, key)| Account {
                key: key.clone(),
                masked: mask_key(key),
                user_id: format!("SIM{:03}", at + 1),
                connections: 0,
                book: Book::default(),
                faults: Faults::default(),
            })
            .collect();
        let key_index = accounts
            .iter()
            .enumerate()
            .map(|(at, a)| (a.key.clone(), at))
            .collect();
        Core {
            market,
            accounts,
            key_index,
            max_connections_per_key: config.max_connections_per_key,
            clients: HashMap::new(),
            holders: vec![Vec::new(); count],
            active: Vec::new(),
            active_pos: vec![None; count],
            dirty: Vec::new(),
            faults: Faults::default(),
            stats: FeedStats::default(),
            orders_log: Vec::new(),
            order_seq: 0,
            working: Vec::new(),
            timers: Vec::new(),
            rng,
            ticks_per_s: config.ticks_per_s,
            carry: 0.0,
            scratch: Vec::with_capacity(1024),
            clock: config.clock.clone(),
        }
    }

    /// The simulator's current time (its clock, not necessarily the machine's).
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn account_of(&self, key: &str) -> Option<usize> {
        self.key_index.get(key).copied()
    }

    // ---- feed connections -------------------------------------------------------------

    pub(crate) fn connect(&mut self, id: u64, sink: Recipient<Push>) {
        self.clients.insert(
            id,
            Client {
                sink,
                account: None,
                orders: false,
                held: Vec::new(),
                outbox: Vec::new(),
            },
        );
    }

    /// Forgets a closed connection and releases everything it held.
    pub(crate) fn disconnect(&mut self, id: u64) {
        self.release_all(id);
        if let Some(client) = self.clients.remove(&id)
            && let Some(account) = client.account
        {
            let a = &mut self.accounts[account];
            a.connections = a.connections.saturating_sub(1);
        }
    }

    pub(crate) fn is_authenticated(&self, id: u64) -> bool {
        self.clients.get(&id).is_some_and(|c| c.account.is_some())
    }

    pub(crate) fn client_account(&self, id: u64) -> Option<usize> {
        self.clients.get(&id).and_then(|c| c.account)
    }

    /// Marks a connection authenticated for `account`, enforcing the per-key connection
    /// limit. Returns false (and counts a refusal) when the limit is reached.
    pub(crate) fn authenticate(&mut self, id: u64, account: usize) -> bool {
        let current = self.client_account(id);
        if current == Some(account) {
            return true;
        }
        if self.accounts[account].connections >= self.max_connections_per_key {
            self.stats.refused_connections += 1;
            return false;
        }
        if let Some(previous) = current {
            self.release_all(id);
            let a = &mut self.accounts[previous];
            a.connections = a.connections.saturating_sub(1);
        }
        if let Some(client) = self.clients.get_mut(&id) {
            client.account = Some(account);
            self.accounts[account].connections += 1;
        }
        true
    }

    /// Connections of the account that asked for its order updates.
    pub(crate) fn order_subscribers(&self, account: usize) -> usize {
        self.clients
            .values()
            .filter(|c| c.orders && c.account == Some(account))
            .count()
    }

    pub(crate) fn set_order_updates(&mut self, id: u64, on: bool) {
        if let Some(client) = self.clients.get_mut(&id) {
            client.orders = on;
        }
    }

    // ---- the subscription index ---------------------------------------------------------

    /// Adds `mode` to the client's hold on `instrument`.
    pub(crate) fn hold(&mut self, id: u64, instrument: usize, mode: u8) {
        let bit = 1u8 << (mode - 1);
        let holders = &mut self.holders[instrument];
        match holders.iter_mut().find(|h| h.client == id) {
            Some(holder) => holder.modes |= bit,
            None => {
                holders.push(Holder {
                    client: id,
                    modes: bit,
                });
                if let Some(client) = self.clients.get_mut(&id) {
                    client.held.push(instrument);
                }
                if self.active_pos[instrument].is_none() {
                    self.active_pos[instrument] = Some(self.active.len());
                    self.active.push(instrument);
                }
            }
        }
    }

    /// Removes `mode` from the client's hold on `instrument`; true if it was held.
    pub(crate) fn release(&mut self, id: u64, instrument: usize, mode: u8) -> bool {
        let bit = 1u8 << (mode - 1);
        let holders = &mut self.holders[instrument];
        let Some(at) = holders.iter().position(|h| h.client == id) else {
            return false;
        };
        if holders[at].modes & bit == 0 {
            return false;
        }
        holders[at].modes &= !bit;
        if holders[at].modes == 0 {
            holders.swap_remove(at);
            if let Some(client) = self.clients.get_mut(&id) {
                client.held.retain(|i| *i != instrument);
            }
            if self.holders[instrument].is_empty() {
                self.deactivate(instrument);
            }
        }
        true
    }

    /// Releases every hold of a client; returns what it held as (instrument, mode).
    pub(crate) fn release_all(&mut self, id: u64) -> Vec<(usize, u8)> {
        let held = match self.clients.get_mut(&id) {
            Some(client) => mem::take(&mut client.held),
            None => return Vec::new(),
        };
        let mut released = Vec::new();
        for instrument in held {
            let holders = &mut self.holders[instrument];
            if let Some(at) = holders.iter().position(|h| h.client == id) {
                let modes = holders.swap_remove(at).modes;
                released.extend(
                    (1..=3)
                        .filter(|m| modes & (1 << (m - 1)) != 0)
                        .map(|m| (instrument, m)),
                );
            }
            if self.holders[instrument].is_empty() {
                self.deactivate(instrument);
            }
        }
        released
    }

    fn deactivate(&mut self, instrument: usize) {
        if let Some(at) = self.active_pos[instrument].take() {
            self.active.swap_remove(at);
            if let Some(moved) = self.active.get(at).copied() {
                self.active_pos[moved] = Some(at);
            }
        }
    }

    /// The index as rows of (instrument, mode, client count), sorted by exchange, symbol
    /// and mode.
    pub(crate) fn subscription_rows(&self) -> Vec<(usize, u8, usize)> {
        let mut rows = Vec::new();
        for &instrument in &self.active {
            for mode in 1..=3u8 {
                let bit = 1u8 << (mode - 1);
                let clients = self.holders[instrument]
                    .iter()
                    .filter(|h| h.modes & bit != 0)
                    .count();
                if clients > 0 {
                    rows.push((instrument, mode, clients));
                }
            }
        }
        let instruments = &self.market.instruments;
        rows.sort_by(|a, b| {
            let (x, y) = (&instruments[a.0], &instruments[b.0]);
            (x.exchange, &x.symbol, a.1).cmp(&(y.exchange, &y.symbol, b.1))
        });
        rows
    }

    // ---- delivery ---------------------------------------------------------------------------

    /// Queues one tick of `instrument` for everyone holding it (docs/openalgo.md §2.8): the payload
    /// is built at the highest mode anyone holds, and each client gets it once, tagged with its own
    /// highest mode.
    fn fan_out(&mut self, instrument: usize, now: DateTime<Utc>, clock: Instant) {
        let holders = &self.holders[instrument];
        let Some(tick_mode) = holders.iter().map(|h| top_mode(h.modes)).max() else {
            return;
        };
        let quote = self.market.quote(instrument, now);
        let meta = &self.market.instruments[instrument];
        payload::market_data(
            &mut self.scratch,
            meta,
            &quote,
            tick_mode,
            now.timestamp_millis(),
            &mut self.rng,
        );
        let mut envelopes: [Option<Bytes>; 3] = [None, None, None];
        for holder in holders {
            let Some(client) = self.clients.get_mut(&holder.client) else {
                continue;
            };
            if client
                .account
                .is_some_and(|a| self.accounts[a].faults.ticks_paused(clock))
            {
                continue;
            }
            let tag = top_mode(holder.modes);
            let frame = envelopes[usize::from(tag - 1)]
                .get_or_insert_with(|| payload::envelope(meta, tag, &self.scratch))
                .clone();
            if client.outbox.is_empty() {
                self.dirty.push(holder.client);
            }
            client.outbox.push(Frame::Text(frame));
        }
    }

    /// Hands every queued tick to its session, one message per session.
    fn flush(&mut self) {
        for id in self.dirty.drain(..) {
            let Some(client) = self.clients.get_mut(&id) else {
                continue;
            };
            let frames = mem::take(&mut client.outbox);
            let count = frames.len() as u64;
            match client.sink.try_send(Push::Frames(frames)) {
                Ok(()) => self.stats.ticks_sent += count,
                Err(SendError::Full(_)) => self.stats.ticks_dropped += count,
                Err(SendError::Closed(_)) => {}
            }
        }
    }

    /// Sends frames to one client now (replies outside the session, malformed frames).
    /// Returns false if the session is gone or saturated.
    pub(crate) fn send_to(&self, id: u64, frames: Vec<Frame>) -> bool {
        self.clients
            .get(&id)
            .is_some_and(|c| c.sink.try_send(Push::Frames(frames)).is_ok())
    }

    /// Sends frames that must not be lost to one client (order updates: a broker conflates
    /// prices for a slow reader, never its orders), past a full queue.
    fn send_reliably(&self, id: u64, frames: Vec<Frame>) {
        if let Some(c) = self.clients.get(&id) {
            c.sink.do_send(Push::Frames(frames));
        }
    }

    /// Ends the sessions matching `account` (all when `None`).
    pub(crate) fn drop_connections(&self, account: Option<usize>) -> usize {
        let mut dropped = 0;
        for client in self.clients.values() {
            if account.is_none() || client.account == account {
                client.sink.do_send(Push::Drop);
                dropped += 1;
            }
        }
        dropped
    }

    pub(crate) fn close_all(&self, reason: CloseReason) {
        for client in self.clients.values() {
            client.sink.do_send(Push::Close(reason.clone()));
        }
    }

    /// Sends `count` malformed frames to each connection of `account` (all when `None`),
    /// cycling through: invalid JSON, market_data without ltp, ltp "abc", a binary frame.
    pub(crate) fn send_malformed(&self, account: Option<usize>, count: u64) {
        let fallback = self.market.id("NSE", "RELIANCE").unwrap_or(0);
        for (id, client) in &self.clients {
            if account.is_some() && client.account != account {
                continue;
            }
            let instrument =
                &self.market.instruments[client.held.first().copied().unwrap_or(fallback)];
            let frames = (0..count)
                .map(|n| payload::malformed(n, instrument))
                .collect();
            self.send_to(*id, frames);
        }
    }

    /// Pushes an `order_update` for each listed change (order, history entry) of `account`
    /// to that account's connections that asked for order updates.
    pub(crate) fn notify_orders(&self, account: usize, changes: &[(usize, usize)]) {
        if changes.is_empty() || self.order_updates_muted(account, Instant::now()) {
            return;
        }
        let listeners: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.orders && c.account == Some(account))
            .map(|(id, _)| *id)
            .collect();
        if listeners.is_empty() {
            return;
        }
        let a = &self.accounts[account];
        let frames: Vec<Frame> = changes
            .iter()
            .filter_map(|(order, entry)| {
                let order = &a.book.orders[*order];
                let snapshot = order.history.get(*entry)?;
                Some(Frame::Text(payload::order_update(
                    &a.user_id, order, snapshot,
                )))
            })
            .collect();
        for id in listeners {
            self.send_reliably(id, frames.clone());
        }
    }

    // ---- prices -------------------------------------------------------------------------------

    /// One ticker pass: generates the random-walk ticks due after `elapsed` seconds at the
    /// current rate, spread over the subscribed instruments, and delivers them.
    pub(crate) fn advance(&mut self, elapsed: f64, now: DateTime<Utc>, clock: Instant) {
        if self.ticks_per_s <= 0.0 || self.active.is_empty() || self.faults.ticks_paused(clock) {
            self.carry = 0.0;
            return;
        }
        self.carry = (self.carry + self.ticks_per_s * elapsed).min(MAX_TICKS_PER_PASS);
        let due = self.carry.floor();
        self.carry -= due;
        for _ in 0..due as u64 {
            let instrument = self.active[self.rng.random_range(0..self.active.len())];
            self.market.step(instrument, &mut self.rng, now);
            self.match_working(now);
            self.fan_out(instrument, now, clock);
        }
        self.flush();
    }

    /// Sets a price (`/sim/price`) and pushes a tick to its holders now, unless ticks are
    /// paused.
    pub(crate) fn set_price(&mut self, instrument: usize, ltp: f64) {
        let now = self.now();
        let clock = Instant::now();
        self.market.set_ltp(instrument, ltp, now);
        self.match_working(now);
        if !self.faults.ticks_paused(clock) {
            self.fan_out(instrument, now, clock);
            self.flush();
        }
    }

    /// Fills working orders that became marketable after a price change.
    fn match_working(&mut self, now: DateTime<Utc>) {
        if self.working.is_empty() {
            return;
        }
        let stamp = Stamp {
            ms: now.timestamp_millis(),
            us: now_us(),
        };
        let instruments = mem::take(&mut self.working);
        for &instrument in &instruments {
            let ltp = self.market.ltp(instrument, now);
            for account in &mut self.accounts {
                account.book.match_working(instrument, ltp, stamp);
            }
        }
        self.working = instruments;
        self.prune_working();
        self.publish();
    }

    pub(crate) fn note_working(&mut self, instrument: usize) {
        if !self.working.contains(&instrument) {
            self.working.push(instrument);
        }
    }

    /// Forgets instruments no account has a working order on any more.
    pub(crate) fn prune_working(&mut self) {
        let mut working = mem::take(&mut self.working);
        working.retain(|i| self.accounts.iter().any(|a| a.book.has_working(*i)));
        self.working = working;
    }
}

#[cfg(test)]
mod tests {
    use super::top_mode;

    #[test]
    fn top_mode_is_the_highest_bit() {
        assert_eq!(top_mode(0b001), 1);
        assert_eq!(top_mode(0b010), 2);
        assert_eq!(top_mode(0b011), 2);
        assert_eq!(top_mode(0b101), 3);
        assert_eq!(top_mode(0b111), 3);
    }
}
