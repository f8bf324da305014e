//! The order gateway actor: per-account lanes that run what each leg's exit machine asks, the
//! broker's holdings per instrument, and restart recovery (see the module docs).

mod events;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use entity::strategies;
use entity::strategy_executions::{ExitReason, Product};
use sea_orm::DatabaseConnection;

use super::broker;
use super::store::{self, Exited, Leg, LegFilter, LoadedLeg, Recording};
use super::{
    AccountEndpoint, ActiveExitView, AttachExitListener, ExitOrderView, ExitReport, ExitTicket,
    FinishedExitView, GatewayError, GatewaySettings, GatewayStatus, GetGatewayStatus, LaneView,
    QueuedLeg, RequestExit, SetAccounts, WatchPositions,
};
use crate::domain::exit_machine::{
    Action, End, Event, ExitConfig, ExitMachine, ExitOrder, Outcome, Permit, Phase, PlaceFailure,
};
use crate::domain::exits::{ExitLeg, max_chunk, plan_exits, retry_delay};
use crate::domain::holdings::{Allowance, Holding, InFlight, Tracked};
use crate::domain::latency::LatencyHistogram;
use crate::domain::pnl::{Side, leg_pnl};
use crate::domain::rate_limit::RateLimiter;
use crate::openalgo::rest::{Position, RestClient, RestError};
use crate::status::Lifecycle;
use crate::supervised::RestartTracker;

/// Exits kept in the status after they ended.
const RECENT: usize = 20;

/// An instrument on an account: what a [`Holding`] is about.
type InstrumentKey = (i32, String, String, Product);

struct LegExit {
    leg: Leg,
    reason: ExitReason,
    /// Legs queued by the same request share it (shorts of a request go first).
    seq: u64,
    machine: ExitMachine,
    /// Fills and unheld units already applied to the instrument's holding (once joined).
    applied: Option<(i64, i64)>,
    /// When each order's write-ahead row was written, by order index.
    recorded_wall: Vec<DateTime<Utc>>,
    /// `exit_requests.attempt` of the latest row (never reused).
    request_no: i32,
    last_price: Option<f64>,
    pending_since: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    requested_at: Instant,
    /// What the leg waits for outside its own orders.
    waiting: Option<&'static str>,
    /// Units filled as last seen without a holding of the instrument (a new fill then delays
    /// the next trusted read).
    seen_filled: i64,
    /// The report that ended its last order came pushed (an order update), not read.
    by_event: bool,
}

impl LegExit {
    fn key(&self) -> InstrumentKey {
        (
            self.leg.account_id,
            self.leg.exchange.clone(),
            self.leg.symbol.clone(),
            self.leg.product,
        )
    }
}

/// A position book read.
struct Snapshot {
    started: Instant,
    wall: DateTime<Utc>,
    rows: Vec<Position>,
}

struct Lane {
    endpoint: AccountEndpoint,
    client: RestClient,
    limiter: RateLimiter,
    /// Legs of this account being exited, in order.
    queue: Vec<i32>,
    busy: bool,
    wake: Option<(Instant, SpawnHandle)>,
    positions: Option<Snapshot>,
    reading: bool,
    read_failures: u32,
    read_error: Option<String>,
    /// No read before then (backoff after a failed one; a retry is scheduled).
    read_retry_at: Option<Instant>,
    /// Orders (leg, index) whose state changed by an order update, to record when the lane is
    /// free.
    dirty: Vec<(i32, usize)>,
}

struct HoldingEntry {
    holding: Holding,
    /// When the read it started from was sent (legs entered later are not in it).
    read_wall: DateTime<Utc>,
    read_started: Instant,
    counting: bool,
    idle_since: Option<Instant>,
    /// When an exit order on the instrument last filled (books may lag behind it).
    last_fill: Option<Instant>,
}

/// How a set of legs enters the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// A new exit request.
    Fresh,
    /// Restart recovery.
    Recovery,
}

pub struct OrderGatewayActor {
    db: DatabaseConnection,
    settings: GatewaySettings,
    config: ExitConfig,
    lanes: HashMap<i32, Lane>,
    legs: HashMap<i32, LegExit>,
    /// Legs accepted before the first SetAccounts, in order, waiting for their lanes.
    parked: Vec<i32>,
    holdings: HashMap<InstrumentKey, HoldingEntry>,
    /// A holding of the instrument may only start from a read sent after this (the last one
    /// ended a settle window before it, or the gateway restarted).
    trusted_after: HashMap<InstrumentKey, Instant>,
    watched: HashSet<i32>,
    /// Accounts whose order updates flow (their sockets are live and subscribed).
    order_streams: HashSet<i32>,
    /// Order updates of orders not known yet, per account, while a placement answer is
    /// awaited (`events.rs`).
    held_updates: HashMap<i32, VecDeque<(Instant, crate::openalgo::feed::OrderUpdate)>>,
    listener: Option<Recipient<ExitReport>>,
    recovered_accounts: HashSet<i32>,
    accounts_set: bool,
    next_seq: u64,
    restarts: RestartTracker,
    recent: VecDeque<FinishedExitView>,
    orders_sent: u64,
    orders_failed: u64,
    orders_in_doubt: u64,
    rate_limited: u64,
    legs_exited: u64,
    legs_failed: u64,
    legs_recovered: u64,
    mismatches: u64,
    duplicates_refused: u64,
    /// Order updates that changed an exit's order.
    event_reports: u64,
    exits_confirmed_by_event: u64,
    exits_confirmed_by_read: u64,
    last_error: Option<String>,
    write_ahead: LatencyHistogram,
    fill_confirm: LatencyHistogram,
}

impl OrderGatewayActor {
    pub fn new(db: DatabaseConnection, settings: GatewaySettings) -> Self {
        let config = ExitConfig {
            max_attempts: settings.max_exit_attempts,
            retry_initial: settings.retry_initial,
            retry_max: settings.retry_max,
            settle: settings.settle,
            poll_initial: settings.poll_initial,
            poll_max: settings.poll_max,
            working_timeout: settings.working_timeout,
        };
        Self {
            restarts: RestartTracker::new(
                settings.crash_loop_max_restarts,
                settings.crash_loop_window,
            ),
            db,
            settings,
            config,
            lanes: HashMap::new(),
            legs: HashMap::new(),
            parked: Vec::new(),
            holdings: HashMap::new(),
            trusted_after: HashMap::new(),
            watched: HashSet::new(),
            order_streams: HashSet::new(),
            held_updates: HashMap::new(),
            listener: None,
            recovered_accounts: HashSet::new(),
            accounts_set: false,
            next_seq: 0,
            recent: VecDeque::new(),
            orders_sent: 0,
            orders_failed: 0,
            orders_in_doubt: 0,
            rate_limited: 0,
            legs_exited: 0,
            legs_failed: 0,
            legs_recovered: 0,
            mismatches: 0,
            duplicates_refused: 0,
            event_reports: 0,
            exits_confirmed_by_event: 0,
            exits_confirmed_by_read: 0,
            last_error: None,
            write_ahead: Default::default(),
            fill_confirm: Default::default(),
        }
    }

    /// Starts the gateway supervised (restarted after a stop or a panic) on the current
    /// arbiter.
    pub fn start_supervised(db: DatabaseConnection, settings: GatewaySettings) -> Addr<Self> {
        crate::supervised::start(move |_| OrderGatewayActor::new(db, settings))
    }

    fn report(&self, report: ExitReport) {
        if let Some(listener) = &self.listener {
            listener.do_send(report);
        }
    }

    // ---- taking legs in -----------------------------------------------------------------

    /// Takes legs in: skips those already being exited, orders each account's new legs shorts
    /// first, and starts the lanes.
    fn accept(
        &mut self,
        loaded: Vec<LoadedLeg>,
        reason: Option<ExitReason>,
        last_prices: &HashMap<i32, f64>,
        session: Session,
        ctx: &mut Context<Self>,
    ) -> ExitTicket {
        self.next_seq += 1;
        let seq = self.next_seq;
        let now = Instant::now();
        let mut ticket = ExitTicket::default();
        let mut by_account: HashMap<i32, Vec<LegExit>> = HashMap::new();
        for LoadedLeg { leg, requests } in loaded {
            if self.legs.contains_key(&leg.id) {
                if session == Session::Fresh {
                    self.duplicates_refused += 1;
                    ticket.already_exiting.push(leg.id);
                }
                continue;
            }
            // Before the first SetAccounts the legs wait for their endpoints (start-up).
            if self.accounts_set && !self.lanes.contains_key(&leg.account_id) {
                self.unroutable(&leg);
                ticket.failed.push(leg.id);
                continue;
            }
            let wall = Utc::now();
            let persisted: Vec<_> = requests.iter().map(|r| store::persisted(r, wall)).collect();
            let chunk = max_chunk(leg.freeze_qty, leg.lot_size);
            let machine = ExitMachine::resume(leg.quantity, chunk, persisted.clone(), now);
            let machine_filled = machine.filled();
            let exit = LegExit {
                reason: reason.or(leg.exit_reason).unwrap_or(ExitReason::Manual),
                seq,
                machine,
                applied: None,
                recorded_wall: requests.iter().map(|r| r.created_at).collect(),
                request_no: requests.iter().map(|r| r.attempt).max().unwrap_or(0),
                last_price: last_prices.get(&leg.id).copied(),
                pending_since: leg.exit_pending_since,
                since: wall,
                requested_at: now,
                waiting: None,
                seen_filled: machine_filled,
                by_event: false,
                leg,
            };
            // Orders of the leg written by an earlier run or attempt may not show in the
            // broker's books yet: a holding of the instrument waits for a read sent a settle
            // window after the newest of them.
            if let Some(newest) = persisted.iter().map(|p| p.age).min() {
                let at = now + self.config.settle.saturating_sub(newest);
                let entry = self.trusted_after.entry(exit.key()).or_insert(at);
                *entry = (*entry).max(at);
            }
            by_account
                .entry(exit.leg.account_id)
                .or_default()
                .push(exit);
        }
        for (account_id, exits) in by_account {
            let plan: Vec<ExitLeg<i32>> = exits
                .iter()
                .map(|e| ExitLeg {
                    id: e.leg.id,
                    side: e.leg.side,
                    qty: e.machine.unsent(),
                    freeze_qty: e.leg.freeze_qty,
                    lot_size: e.leg.lot_size,
                })
                .collect();
            let planned = plan_exits(&plan);
            // Legs with orders already out come first (in doubt before all), then shorts.
            let mut order: Vec<i32> = exits
                .iter()
                .filter(|e| e.machine.unsent() == 0 || !e.machine.orders().is_empty())
                .map(|e| e.leg.id)
                .collect();
            for o in &planned {
                if !order.contains(&o.leg_id) {
                    order.push(o.leg_id);
                }
            }
            let mut exits: HashMap<i32, LegExit> =
                exits.into_iter().map(|e| (e.leg.id, e)).collect();
            order.sort_by_key(|id| {
                !exits
                    .get(id)
                    .is_some_and(|e| e.machine.orders().iter().any(|o| o.phase == Phase::InDoubt))
            });
            let has_lane = self.lanes.contains_key(&account_id);
            for id in order {
                let Some(exit) = exits.remove(&id) else {
                    continue;
                };
                ticket.queued.push(QueuedLeg {
                    execution_id: id,
                    strategy_id: exit.leg.strategy_id,
                    account_id,
                    exchange: exit.leg.exchange.clone(),
                    symbol: exit.leg.symbol.clone(),
                    action: exit.leg.side.opposite(),
                    quantity: exit.machine.unsent(),
                    orders: planned.iter().filter(|o| o.leg_id == id).count(),
                });
                if session == Session::Recovery {
                    self.legs_recovered += 1;
                }
                tracing::info!(
                    execution_id = id,
                    strategy_id = exit.leg.strategy_id,
                    account_id,
                    symbol = %exit.leg.symbol,
                    unsent = exit.machine.unsent(),
                    orders_out = exit.machine.orders().len(),
                    reason = %exit.reason,
                    "exit queued"
                );
                match self.lanes.get_mut(&account_id) {
                    Some(lane) => lane.queue.push(id),
                    None => self.parked.push(id),
                }
                self.legs.insert(id, exit);
            }
            if has_lane {
                self.pump(account_id, ctx);
            }
        }
        ticket
    }

    /// Reports a leg whose account has no endpoint: it cannot be exited.
    fn unroutable(&mut self, leg: &Leg) {
        let message = format!(
            "no gateway endpoint is configured for account {}; the leg cannot be exited",
            leg.account_id
        );
        tracing::error!(
            execution_id = leg.id,
            strategy_id = leg.strategy_id,
            "{message}"
        );
        self.legs_failed += 1;
        self.last_error = Some(message.clone());
        self.report(ExitReport::LegFailed {
            execution_id: leg.id,
            strategy_id: leg.strategy_id,
            run_id: leg.run_id,
            message,
        });
    }

    // ---- the lane ---------------------------------------------------------------------------

    fn wake_at(&mut self, account_id: i32, at: Instant, ctx: &mut Context<Self>) {
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return;
        };
        if let Some((when, handle)) = lane.wake {
            if when <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, move |act, ctx| {
            if let Some(lane) = act.lanes.get_mut(&account_id) {
                lane.wake = None;
            }
            act.pump(account_id, ctx);
        });
        lane.wake = Some((at, handle));
    }

    fn free(&mut self, account_id: i32, ctx: &mut Context<Self>) {
        if let Some(lane) = self.lanes.get_mut(&account_id) {
            lane.busy = false;
        }
        self.pump(account_id, ctx);
    }

    /// Records the orders changed by order updates, one lane operation for all of them.
    fn save_dirty(&mut self, account_id: i32, ctx: &mut Context<Self>) -> bool {
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return false;
        };
        if lane.dirty.is_empty() {
            return false;
        }
        let dirty = std::mem::take(&mut lane.dirty);
        let mut rows: Vec<store::OrderRow> = dirty
            .iter()
            .filter_map(|(id, at)| self.legs.get(id)?.machine.order(*at))
            .filter_map(store::row_of)
            .collect();
        rows.dedup_by_key(|r| r.request_id);
        if let Some(lane) = self.lanes.get_mut(&account_id) {
            lane.busy = true;
        }
        let db = self.db.clone();
        ctx.spawn(
            async move {
                for row in rows {
                    store::save_order(&db, row).await?;
                }
                Ok::<(), sea_orm::DbErr>(())
            }
            .into_actor(self)
            .map(move |saved, act, ctx| {
                if let Err(e) = saved {
                    tracing::error!(error = %e, "could not record an exit order's state from an order update; a restart reads it from the broker again");
                    act.last_error = Some(format!("recording an exit order's state: {e}"));
                }
                act.free(account_id, ctx);
            }),
        );
        true
    }

    /// Runs the next operation of an account's lane unless one is in flight: new orders of
    /// any leg first (a breach's exposure is what matters), then reads of orders out.
    fn pump(&mut self, account_id: i32, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let queue = match self.lanes.get(&account_id) {
            Some(lane) if !lane.busy => lane.queue.clone(),
            _ => return,
        };
        if self.save_dirty(account_id, ctx) {
            return;
        }
        let mut earliest: Option<Instant> = None;
        for sends in [true, false] {
            for &id in &queue {
                let Some(exit) = self.legs.get(&id) else {
                    continue;
                };
                let wants = exit.machine.wants_to_send(now, &self.config);
                if sends != (wants || exit.machine.has_unplaced()) {
                    continue;
                }
                let permit = if wants {
                    self.permit(account_id, id, now, ctx)
                } else {
                    Permit::Hold
                };
                let Some(exit) = self.legs.get_mut(&id) else {
                    continue;
                };
                let action = exit.machine.next_action(now, &self.config, permit);
                self.sync_holding(id);
                match action {
                    Action::Wait { until } => {
                        if let Some(at) = until {
                            earliest = Some(earliest.map_or(at, |e| e.min(at)));
                        }
                    }
                    action => {
                        self.run(account_id, id, action, ctx);
                        return;
                    }
                }
            }
        }
        if let Some(at) = earliest {
            self.wake_at(account_id, at, ctx);
        }
    }

    fn run(&mut self, account_id: i32, id: i32, action: Action, ctx: &mut Context<Self>) {
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return;
        };
        lane.busy = true;
        let client = lane.client.clone();
        let Some(exit) = self.legs.get_mut(&id) else {
            self.free(account_id, ctx);
            return;
        };
        if !matches!(action, Action::Finished(_)) {
            exit.waiting = None;
        }
        let strategy = exit.leg.strategy_name.clone();
        let order_of = |exit: &LegExit, at: usize| {
            exit.machine
                .order(at)
                .map(|o| (o.order_id.clone().unwrap_or_default(), o.quantity))
        };
        match action {
            // The order's rate slot is taken before its write-ahead row is written, so that
            // the row's time is when the order leaves (the settle window counts from it).
            Action::Send { quantity } => self.when_rate_allows(account_id, ctx, move |act, ctx| {
                act.record(account_id, id, quantity, ctx)
            }),
            Action::Place { order } => self.place(account_id, id, order, ctx),
            Action::Query { order } => {
                let Some((order_id, quantity)) = order_of(exit, order) else {
                    return self.free(account_id, ctx);
                };
                let job = broker::query(client, order, order_id, strategy, quantity);
                self.spawn_event(account_id, id, job, ctx);
            }
            Action::Search { order } => {
                let Some((_, quantity)) = order_of(exit, order) else {
                    return self.free(account_id, ctx);
                };
                let recorded = exit.recorded_wall.get(order).copied().unwrap_or(exit.since);
                let job = broker::search(
                    self.db.clone(),
                    client,
                    exit.leg.clone(),
                    order,
                    quantity,
                    recorded,
                );
                self.spawn_event(account_id, id, job, ctx);
            }
            Action::Cancel { order } => {
                let Some((order_id, _)) = order_of(exit, order) else {
                    return self.free(account_id, ctx);
                };
                tracing::warn!(execution_id = id, order_id = %order_id, "exit order working too long; cancelling it");
                self.when_rate_allows(account_id, ctx, move |act, ctx| {
                    let job = broker::cancel(client, order, order_id, strategy);
                    act.spawn_event(account_id, id, job, ctx);
                });
            }
            Action::Finished(outcome) => self.finish(account_id, id, outcome, ctx),
            Action::Wait { .. } => self.free(account_id, ctx),
        }
    }

    /// Runs `then` once the account's order rate allows one more order (the lane stays busy).
    fn when_rate_allows(
        &mut self,
        account_id: i32,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return;
        };
        match lane.limiter.try_acquire(Instant::now()) {
            Ok(()) => then(self, ctx),
            Err(wait) => {
                ctx.run_later(wait, move |act, ctx| {
                    act.when_rate_allows(account_id, ctx, then)
                });
            }
        }
    }

    fn spawn_event(
        &mut self,
        account_id: i32,
        id: i32,
        job: impl Future<Output = Event> + 'static,
        ctx: &mut Context<Self>,
    ) {
        ctx.spawn(
            job.into_actor(self)
                .map(move |event, act, ctx| act.on_event(account_id, id, event, ctx)),
        );
    }

    /// Writes the write-ahead row of a new order, then places it.
    fn record(&mut self, account_id: i32, id: i32, quantity: i64, ctx: &mut Context<Self>) {
        let Some(exit) = self.legs.get_mut(&id) else {
            return self.free(account_id, ctx);
        };
        let order = exit.machine.begin_order(quantity, Instant::now());
        exit.recorded_wall.resize(order, exit.since);
        exit.recorded_wall.push(Utc::now());
        exit.request_no = exit.request_no.saturating_add(1);
        let first = exit.pending_since.is_none();
        let since = *exit.pending_since.get_or_insert_with(Utc::now);
        let job = Recording {
            leg_id: id,
            reason: exit.reason,
            attempt: exit.request_no,
            quantity,
            pending_since: first.then_some(since),
        };
        let db = self.db.clone();
        let started = Instant::now();
        ctx.spawn(
            async move { store::record_request(&db, &job).await }
                .into_actor(self)
                .map(move |recorded, act, ctx| {
                    act.write_ahead.record(started.elapsed());
                    act.on_recorded(account_id, id, order, recorded, ctx)
                }),
        );
    }

    fn on_recorded(
        &mut self,
        account_id: i32,
        id: i32,
        order: usize,
        recorded: Result<Option<i32>, String>,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        let Some(exit) = self.legs.get_mut(&id) else {
            return self.free(account_id, ctx);
        };
        match recorded {
            Ok(Some(request)) => {
                exit.machine
                    .handle(Event::Recorded { order, request }, now, &self.config);
                if let Some(wall) = exit.recorded_wall.get_mut(order) {
                    *wall = Utc::now();
                }
                // Straight on to the broker: nothing else may come between a breach and its
                // order.
                match exit.machine.next_action(now, &self.config, Permit::Hold) {
                    Action::Place { order } => self.place(account_id, id, order, ctx),
                    _ => self.free(account_id, ctx),
                }
            }
            Ok(None) => {
                tracing::warn!(
                    execution_id = id,
                    "the leg was closed elsewhere before its exit order; nothing was sent"
                );
                self.remove(account_id, id);
                self.free(account_id, ctx);
            }
            Err(error) => {
                let error = format!("recording the exit request of leg {id}: {error}");
                tracing::error!(execution_id = id, error = %error, "nothing was sent");
                exit.machine.handle(
                    Event::RecordFailed {
                        order,
                        error: error.clone(),
                    },
                    now,
                    &self.config,
                );
                self.last_error = Some(error);
                self.free(account_id, ctx);
            }
        }
    }

    /// Places a recorded order (its rate slot was taken before its row was written).
    fn place(&mut self, account_id: i32, id: i32, order: usize, ctx: &mut Context<Self>) {
        let Some(lane) = self.lanes.get(&account_id) else {
            return;
        };
        let client = lane.client.clone();
        let Some((leg, quantity)) = self
            .legs
            .get(&id)
            .and_then(|e| e.machine.order(order).map(|o| (e.leg.clone(), o.quantity)))
        else {
            return self.free(account_id, ctx);
        };
        let job = async move {
            match broker::place(client, leg, quantity).await {
                Ok(order_id) => Event::Placed { order, order_id },
                Err(failure) => Event::PlaceFailed { order, failure },
            }
        };
        self.spawn_event(account_id, id, job, ctx);
    }

    /// Feeds what the broker answered to the leg's machine, records the order's new state, and
    /// frees the lane.
    fn on_event(&mut self, account_id: i32, id: i32, event: Event, ctx: &mut Context<Self>) {
        self.count(id, &event);
        let now = Instant::now();
        let Some(exit) = self.legs.get_mut(&id) else {
            return self.free(account_id, ctx);
        };
        let placed = match &event {
            Event::Placed { order, .. } => Some(*order),
            _ => None,
        };
        let changed = exit.machine.handle(event, now, &self.config);
        if let Some(order) = placed
            && self.order_streams.contains(&account_id)
        {
            // Its update is pushed: a read only if none comes.
            exit.machine
                .defer_read(order, now + self.settings.event_wait);
        }
        if changed.is_some() && placed.is_none() {
            exit.by_event = false;
        }
        let row = changed
            .and_then(|at| exit.machine.order(at))
            .and_then(store::row_of);
        self.sync_holding(id);
        if let Some(order) = placed {
            // Updates of it pushed before the answer came.
            self.apply_held(account_id, id, order);
        }
        let Some(row) = row else {
            return self.free(account_id, ctx);
        };
        let db = self.db.clone();
        ctx.spawn(
            async move { store::save_order(&db, row).await }
                .into_actor(self)
                .map(move |saved, act, ctx| {
                    if let Err(e) = saved {
                        tracing::error!(execution_id = id, error = %e, "could not record an exit order's state; a restart reads it from the broker again");
                        act.last_error = Some(format!("recording an exit order's state: {e}"));
                    }
                    act.free(account_id, ctx);
                }),
        );
    }

    /// Counts and logs what the broker answered.
    fn count(&mut self, id: i32, event: &Event) {
        match event {
            Event::Placed { order_id, .. } => {
                self.orders_sent += 1;
                tracing::info!(execution_id = id, order_id = %order_id, "exit order placed");
            }
            Event::PlaceFailed { failure, .. } => match failure {
                PlaceFailure::Uncertain(message) => {
                    self.orders_failed += 1;
                    self.orders_in_doubt += 1;
                    tracing::warn!(execution_id = id, error = %message, "exit order in doubt: its answer was lost; the order book decides, nothing is sent meanwhile");
                    self.last_error = Some(message.clone());
                }
                PlaceFailure::Refused(message) => {
                    self.orders_failed += 1;
                    tracing::warn!(execution_id = id, error = %message, "exit order refused");
                    self.last_error = Some(message.clone());
                }
                PlaceFailure::RateLimited { message, .. } => {
                    self.rate_limited += 1;
                    tracing::warn!(execution_id = id, error = %message, "exit order rate-limited; sent again after the broker's wait");
                }
            },
            Event::ReadFailed {
                failure: crate::domain::exit_machine::ReadFailure::RateLimited { .. },
                ..
            } => self.rate_limited += 1,
            Event::Found { order_id, .. } => {
                tracing::info!(execution_id = id, order_id = %order_id, "the exit order in doubt is at the broker");
            }
            Event::Report { report, .. } if report.state.is_terminal() => {
                tracing::info!(execution_id = id, state = ?report.state, filled = report.filled, "exit order ended");
            }
            _ => {}
        }
    }

    /// The leg's exit is over: record it, report it, free the lane.
    fn finish(&mut self, account_id: i32, id: i32, outcome: Outcome, ctx: &mut Context<Self>) {
        let (filled, average_price) = match outcome {
            Outcome::Failed { message, .. } => {
                self.fail(account_id, id, message);
                return self.free(account_id, ctx);
            }
            Outcome::Exited {
                filled,
                average_price,
                ..
            } => (filled, average_price),
        };
        let Some(exit) = self.legs.get(&id) else {
            return self.free(account_id, ctx);
        };
        let leg = &exit.leg;
        let exit_price = average_price.or(exit.last_price);
        let realized_pnl = if filled == 0 {
            Some(0.0)
        } else {
            exit_price.map(|p| leg_pnl(leg.side, filled as f64, leg.entry_price, p))
        };
        let job = Exited {
            leg_id: id,
            reason: exit.reason,
            order_ids: exit
                .machine
                .orders()
                .iter()
                .filter(|o| o.filled > 0)
                .filter_map(|o| o.order_id.clone())
                .collect(),
            exit_price,
            realized_pnl,
            filled,
        };
        let db = self.db.clone();
        ctx.spawn(
            async move { store::record_exited(&db, &job).await }
                .into_actor(self)
                .map(move |recorded, act, ctx| {
                    if let Err(e) = recorded {
                        tracing::error!(execution_id = id, error = %e, "the leg is closed but could not be recorded as exited; a restart checks it again");
                        act.last_error = Some(format!("recording an exited leg: {e}"));
                    }
                    act.exited(account_id, id, exit_price, realized_pnl, ctx);
                    act.free(account_id, ctx);
                }),
        );
    }

    fn exited(
        &mut self,
        account_id: i32,
        id: i32,
        exit_price: Option<f64>,
        realized_pnl: Option<f64>,
        ctx: &mut Context<Self>,
    ) {
        let Some(exit) = self.remove(account_id, id) else {
            return;
        };
        let (filled, unheld) = (exit.machine.filled(), exit.machine.unheld());
        self.legs_exited += 1;
        if filled > 0 {
            self.fill_confirm.record(exit.requested_at.elapsed());
            if exit.by_event {
                self.exits_confirmed_by_event += 1;
            } else {
                self.exits_confirmed_by_read += 1;
            }
        }
        let mismatch = (unheld > 0).then(|| {
            self.mismatches += 1;
            let account = self
                .lanes
                .get(&account_id)
                .map_or_else(|| account_id.to_string(), |l| l.endpoint.name.clone());
            format!(
                "the broker held {filled} of the leg's {} units of {}:{} on account {account}; the {unheld} it did not hold were not sent",
                exit.leg.quantity, exit.leg.exchange, exit.leg.symbol
            )
        });
        if let Some(m) = &mismatch {
            tracing::error!(execution_id = id, "MISMATCH: {m}");
        }
        tracing::info!(
            execution_id = id,
            strategy_id = exit.leg.strategy_id,
            filled,
            unheld,
            exit_price,
            realized_pnl,
            "leg exited"
        );
        self.remember(&exit, "filled", mismatch.clone());
        self.report(ExitReport::LegExited {
            execution_id: id,
            strategy_id: exit.leg.strategy_id,
            run_id: exit.leg.run_id,
            exit_price,
            realized_pnl,
            filled,
            unheld,
            mismatch,
        });
        self.release_holding(&exit.key(), ctx);
    }

    fn remember(&mut self, exit: &LegExit, state: &'static str, message: Option<String>) {
        self.recent.push_front(FinishedExitView {
            execution_id: exit.leg.id,
            strategy_id: exit.leg.strategy_id,
            symbol: exit.leg.symbol.clone(),
            state,
            filled: exit.machine.filled(),
            unheld: exit.machine.unheld(),
            orders: exit.machine.orders().len(),
            message,
            finished_at_us: Utc::now().timestamp_micros(),
        });
        self.recent.truncate(RECENT);
    }

    fn remove(&mut self, account_id: i32, id: i32) -> Option<LegExit> {
        if let Some(lane) = self.lanes.get_mut(&account_id) {
            lane.queue.retain(|x| *x != id);
        }
        self.legs.remove(&id)
    }

    /// Gives up on a leg: it stays as it is in the database (open or `exit_pending`, with what
    /// its orders filled) and the listener puts its strategy in ExitFailed.
    fn fail(&mut self, account_id: i32, id: i32, message: String) {
        let Some(exit) = self.remove(account_id, id) else {
            return;
        };
        self.legs_failed += 1;
        tracing::error!(
            execution_id = id,
            strategy_id = exit.leg.strategy_id,
            account_id,
            symbol = %exit.leg.symbol,
            exchange = %exit.leg.exchange,
            filled = exit.machine.filled(),
            "EXIT FAILED, a human must check this position: {message}"
        );
        self.last_error = Some(message.clone());
        self.remember(&exit, "failed", Some(message.clone()));
        self.report(ExitReport::LegFailed {
            execution_id: id,
            strategy_id: exit.leg.strategy_id,
            run_id: exit.leg.run_id,
            message,
        });
        let key = exit.key();
        if let Some(entry) = self.holdings.get_mut(&key)
            && !self.legs.values().any(|e| e.key() == key)
        {
            entry.idle_since.get_or_insert_with(Instant::now);
        }
    }

    // ---- what the broker holds -------------------------------------------------------------

    /// How many units the leg may send now, from the instrument's holding (read, counted or
    /// confirmed first when needed).
    fn permit(
        &mut self,
        account_id: i32,
        id: i32,
        now: Instant,
        ctx: &mut Context<Self>,
    ) -> Permit {
        let Some(exit) = self.legs.get(&id) else {
            return Permit::Hold;
        };
        let (side, seq) = (exit.leg.side, exit.seq);
        // Short legs of a request are closed before its long legs.
        let short_first = side == Side::Buy
            && self.lanes.get(&account_id).is_some_and(|lane| {
                lane.queue.iter().any(|other| {
                    *other != id
                        && self
                            .legs
                            .get(other)
                            .is_some_and(|o| o.seq == seq && o.leg.side == Side::Sell)
                })
            });
        if short_first {
            return self.hold(id, "the request's short legs are closed first");
        }
        let key = exit.key();
        let entered_at = exit.leg.entered_at;
        if !self.holdings.contains_key(&key) {
            // Orders out on the instrument (resumed after a restart) may or may not show in a
            // read: they end first, and their fills settle (`sync_holding`).
            let in_flight = self.in_flight(&key);
            if in_flight.long > 0 || in_flight.short > 0 {
                return self.hold(id, "the instrument's orders out end first");
            }
            if let Some(at) = self.trusted_after.get(&key).filter(|at| **at > now) {
                let at = *at;
                self.wake_at(account_id, at, ctx);
                return self.hold(id, "waiting for the broker's books to settle");
            }
            let trusted_after = self.trusted_after.get(&key).copied();
            // The read must also have been sent after every leg being exited on the
            // instrument was registered: an older one cannot show its entry.
            let newest = self.newest_entry(&key);
            let Some((net, wall, started)) = self.fresh_read(account_id, &key, now, |s| {
                trusted_after.is_none_or(|t| s.started >= t) && newest.is_none_or(|at| s.wall >= at)
            }) else {
                self.read_positions(account_id, ctx);
                return self.hold(id, "reading the broker's position book");
            };
            tracing::debug!(execution_id = id, ?key, net, "holding from a read");
            self.holdings.insert(
                key.clone(),
                HoldingEntry {
                    holding: Holding::from_read(net),
                    read_wall: wall,
                    read_started: started,
                    counting: false,
                    idle_since: None,
                    last_fill: None,
                },
            );
            self.join_all(&key);
        }
        let joined = self.legs.get(&id).is_some_and(|e| e.applied.is_some());
        if !joined {
            let read_wall = self.holdings.get(&key).map_or(entered_at, |e| e.read_wall);
            if entered_at <= read_wall {
                self.join(id);
            } else {
                // Registered after the holding's read: its entry is not in it.
                self.confirm(account_id, &key, now, ctx);
                if self.legs.get(&id).is_none_or(|e| e.applied.is_none()) {
                    return self.hold(id, "reading the broker's position book again");
                }
            }
        }
        let in_flight = self.in_flight(&key);
        let Some(exit) = self.legs.get(&id) else {
            return Permit::Hold;
        };
        let wanted = exit.machine.next_quantity();
        let confirmed = self.confirmed(&key);
        let Some(entry) = self.holdings.get_mut(&key) else {
            return Permit::Hold;
        };
        entry.idle_since = None;
        match entry.holding.allowance(side, wanted, in_flight) {
            Allowance::Units { units, settled } if units < wanted && settled && !confirmed => {
                // Less than the legs need, from a read that may not show their entries yet:
                // what it allows goes out, and the rest is decided by a read sent a settle
                // window after them.
                self.confirm(account_id, &key, now, ctx);
                self.hold(id, "confirming with the broker's books what it holds");
                Permit::Units {
                    units,
                    settled: false,
                }
            }
            Allowance::Units { units, settled } => Permit::Units { units, settled },
            Allowance::NeedTracked => {
                self.count_tracked(account_id, key, ctx);
                self.hold(id, "counting the tracked legs of the instrument")
            }
        }
    }

    /// The latest position book read of the account, if it is younger than the maximum age
    /// and passes `ok`: the instrument's net position in it, when the read was sent.
    fn fresh_read(
        &self,
        account_id: i32,
        key: &InstrumentKey,
        now: Instant,
        ok: impl Fn(&Snapshot) -> bool,
    ) -> Option<(i64, DateTime<Utc>, Instant)> {
        let snapshot = self.lanes.get(&account_id)?.positions.as_ref()?;
        let young =
            now.saturating_duration_since(snapshot.started) <= self.settings.positions_max_age;
        (young && ok(snapshot)).then(|| {
            (
                broker::net_of(&snapshot.rows, &key.1, &key.2, key.3.as_str()),
                snapshot.wall,
                snapshot.started,
            )
        })
    }

    /// When the newest leg being exited on the instrument was registered.
    fn newest_entry(&self, key: &InstrumentKey) -> Option<DateTime<Utc>> {
        self.legs
            .values()
            .filter(|e| e.key() == *key)
            .map(|e| e.leg.entered_at)
            .max()
    }

    /// The holding's read was sent a settle window after every leg being exited on the
    /// instrument was registered: what it does not show, the broker does not hold.
    fn confirmed(&self, key: &InstrumentKey) -> bool {
        let Some(entry) = self.holdings.get(key) else {
            return false;
        };
        let settle = chrono::Duration::from_std(self.config.settle).unwrap_or_default();
        self.newest_entry(key)
            .is_none_or(|at| entry.read_wall >= at + settle)
    }

    /// Brings the holding up to date with legs registered after its read, or confirms a
    /// shortfall: once nothing is in flight on the instrument, a read that shows exactly the
    /// holding plus the new legs adds them; otherwise the holding starts again from a read sent
    /// a settle window after both the newest entry and the last fill of an exit order.
    fn confirm(
        &mut self,
        account_id: i32,
        key: &InstrumentKey,
        now: Instant,
        ctx: &mut Context<Self>,
    ) {
        let in_flight = self.in_flight(key);
        if in_flight.long > 0 || in_flight.short > 0 {
            // The fills will pump the lane again.
            return;
        }
        let Some(entry) = self.holdings.get(key) else {
            return;
        };
        let (read_wall, last_fill, ledger) =
            (entry.read_wall, entry.last_fill, entry.holding.net());
        let newest = self.newest_entry(key);
        let joiners: Vec<(i32, Side, i64)> = self
            .legs
            .values()
            .filter(|e| e.key() == *key && e.applied.is_none() && e.leg.entered_at > read_wall)
            .map(|e| {
                let open = e.leg.quantity - e.machine.filled() - e.machine.unheld();
                (e.leg.id, e.leg.side, open.max(0))
            })
            .collect();
        let expected = ledger
            + joiners
                .iter()
                .map(|(_, side, open)| if *side == Side::Buy { *open } else { -*open })
                .sum::<i64>();
        // A read after the new legs that shows exactly the holding plus them: they are held.
        if !joiners.is_empty()
            && let Some((net, ..)) = self.fresh_read(account_id, key, now, |s| {
                newest.is_none_or(|at| s.wall >= at)
            })
            && net == expected
        {
            if let Some(entry) = self.holdings.get_mut(key) {
                for (_, side, open) in &joiners {
                    entry.holding.entered_since(*side, *open);
                }
            }
            for (id, ..) in joiners {
                self.join(id);
            }
            return;
        }
        let settle = self.config.settle;
        // A settle window after the newest entry (on the monotonic clock) and after the
        // last fill; both may be past.
        let since_entry = newest.and_then(|at| {
            let ago = (Utc::now() - at).to_std().unwrap_or_default();
            (ago < settle).then(|| now + (settle - ago))
        });
        let ready_at = [since_entry, last_fill.map(|t| t + settle)]
            .into_iter()
            .flatten()
            .max();
        let ready_at = match ready_at {
            Some(at) if at > now => {
                self.wake_at(account_id, at, ctx);
                return;
            }
            Some(at) => at,
            None => entry_read_started(self, key).unwrap_or(now),
        };
        let settle_chrono = chrono::Duration::from_std(settle).unwrap_or_default();
        let Some((net, wall, started)) = self.fresh_read(account_id, key, now, |s| {
            s.started >= ready_at && newest.is_none_or(|at| s.wall >= at + settle_chrono)
        }) else {
            self.read_positions(account_id, ctx);
            return;
        };
        tracing::info!(
            ?key,
            ledger,
            net,
            "the instrument's holding starts again from a settled read"
        );
        if let Some(entry) = self.holdings.get_mut(key) {
            entry.holding = Holding::from_read(net);
            entry.read_wall = wall;
            entry.read_started = started;
        }
        for exit in self.legs.values_mut().filter(|e| e.key() == *key) {
            exit.applied = None;
        }
        self.join_all(key);
    }

    fn hold(&mut self, id: i32, why: &'static str) -> Permit {
        if let Some(exit) = self.legs.get_mut(&id) {
            exit.waiting = Some(why);
        }
        Permit::Hold
    }

    /// Every leg being exited on the instrument counts in its holding from now on.
    fn join_all(&mut self, key: &InstrumentKey) {
        let ids: Vec<i32> = self
            .legs
            .values()
            .filter(|e| e.key() == *key)
            .map(|e| e.leg.id)
            .collect();
        for id in ids {
            self.join(id);
        }
    }

    /// Makes the leg count in its instrument's holding from now on: its fills move it.
    fn join(&mut self, id: i32) {
        if let Some(exit) = self.legs.get_mut(&id)
            && exit.applied.is_none()
        {
            exit.applied = Some((exit.machine.filled(), exit.machine.unheld()));
        }
    }

    /// Applies the leg's new fills and unheld units to its instrument's holding. Without one
    /// (orders resumed after a restart), a fill makes any read sent before a settle window
    /// after it untrusted.
    fn sync_holding(&mut self, id: i32) {
        let Some(exit) = self.legs.get_mut(&id) else {
            return;
        };
        let Some(entry) = self.holdings.get_mut(&exit.key()) else {
            let filled = exit.machine.filled();
            if filled > exit.seen_filled {
                exit.seen_filled = filled;
                let at = Instant::now() + self.config.settle;
                let trusted = self.trusted_after.entry(exit.key()).or_insert(at);
                *trusted = (*trusted).max(at);
            }
            return;
        };
        let Some((filled, unheld)) = exit.applied else {
            return;
        };
        let (now_filled, now_unheld) = (exit.machine.filled(), exit.machine.unheld());
        if now_filled > filled {
            entry.last_fill = Some(Instant::now());
        }
        entry.holding.filled(exit.leg.side, now_filled - filled);
        entry.holding.unheld(exit.leg.side, now_unheld - unheld);
        exit.applied = Some((now_filled, now_unheld));
    }

    fn in_flight(&self, key: &InstrumentKey) -> InFlight {
        let mut in_flight = InFlight::default();
        for exit in self.legs.values().filter(|e| e.key() == *key) {
            match exit.leg.side {
                Side::Buy => in_flight.long += exit.machine.in_flight(),
                Side::Sell => in_flight.short += exit.machine.in_flight(),
            }
        }
        in_flight
    }

    /// A leg of the instrument ended: once none is left, its holding is kept a settle window
    /// longer (books may lag behind the last fills), then dropped.
    fn release_holding(&mut self, key: &InstrumentKey, ctx: &mut Context<Self>) {
        if self.legs.values().any(|e| e.key() == *key) {
            return;
        }
        if let Some(entry) = self.holdings.get_mut(key) {
            entry.idle_since = Some(Instant::now());
            let settle = self.config.settle;
            ctx.run_later(settle, |act, _| act.expire_holdings());
        }
    }

    fn expire_holdings(&mut self) {
        let now = Instant::now();
        let settle = self.config.settle;
        let expired: Vec<InstrumentKey> = self
            .holdings
            .iter()
            .filter(|(_, e)| e.idle_since.is_some_and(|t| now >= t + settle))
            .map(|(k, _)| k.clone())
            .filter(|k| !self.legs.values().any(|e| e.key() == *k))
            .collect();
        for key in expired {
            self.holdings.remove(&key);
            self.trusted_after.insert(key, now);
        }
        self.trusted_after
            .retain(|_, at| now.saturating_duration_since(*at) < Duration::from_secs(3600));
    }

    /// Counts the tracked legs of an instrument: legs being exited from their machines, the
    /// others from the database.
    fn count_tracked(&mut self, account_id: i32, key: InstrumentKey, ctx: &mut Context<Self>) {
        let Some(entry) = self.holdings.get_mut(&key) else {
            return;
        };
        if entry.counting {
            return;
        }
        entry.counting = true;
        let db = self.db.clone();
        let (exchange, symbol, product) = (key.1.clone(), key.2.clone(), key.3);
        ctx.spawn(
            async move { store::open_legs_on(&db, account_id, &exchange, &symbol, product).await }
                .into_actor(self)
                .map(move |legs, act, ctx| {
                    let counted = legs.map(|legs| {
                        let mut tracked = Tracked::default();
                        for (leg_id, side, open) in legs {
                            let open = act.legs.get(&leg_id).map_or(open, |e| {
                                e.leg.quantity - e.machine.filled() - e.machine.unheld()
                            });
                            match side {
                                Side::Buy => tracked.long += open.max(0),
                                Side::Sell => tracked.short += open.max(0),
                            }
                        }
                        tracked
                    });
                    let Some(entry) = act.holdings.get_mut(&key) else {
                        return;
                    };
                    entry.counting = false;
                    match counted {
                        Ok(tracked) => entry.holding.set_tracked(tracked),
                        Err(e) => {
                            tracing::error!(error = %e, "counting the tracked legs of an instrument failed; trying again");
                            act.last_error = Some(format!("counting the tracked legs: {e}"));
                            let wait = act.config.retry_initial;
                            ctx.run_later(wait, move |act, ctx| act.pump(account_id, ctx));
                            return;
                        }
                    }
                    act.pump(account_id, ctx);
                }),
        );
    }

    /// Reads the account's position book unless a read is in flight or the last one failed
    /// less than its backoff ago (a retry is then scheduled); legs waiting for it are pumped
    /// when it answers.
    fn read_positions(&mut self, account_id: i32, ctx: &mut Context<Self>) {
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return;
        };
        let now = Instant::now();
        if lane.reading || lane.read_retry_at.is_some_and(|at| at > now) {
            return;
        }
        lane.reading = true;
        lane.read_retry_at = None;
        let client = lane.client.clone();
        let (started, wall) = (now, Utc::now());
        ctx.spawn(
            async move { client.position_book().await }
                .into_actor(self)
                .map(move |read, act, ctx| {
                    let config = act.config.clone();
                    let Some(lane) = act.lanes.get_mut(&account_id) else {
                        return;
                    };
                    lane.reading = false;
                    match read {
                        Ok(rows) => {
                            lane.positions = Some(Snapshot {
                                started,
                                wall,
                                rows,
                            });
                            lane.read_failures = 0;
                            lane.read_error = None;
                        }
                        Err(e) => {
                            lane.read_failures = lane.read_failures.saturating_add(1);
                            let wait = match &e {
                                RestError::RateLimited {
                                    retry_after: Some(wait),
                                    ..
                                } => (*wait).clamp(config.retry_initial, config.retry_max),
                                _ => retry_delay(
                                    config.poll_initial,
                                    lane.read_failures,
                                    config.poll_max,
                                ),
                            };
                            tracing::warn!(account_id, error = %e, retry_in_ms = wait.as_millis() as u64, "reading the position book failed");
                            lane.read_error = Some(e.to_string());
                            lane.read_retry_at = Some(Instant::now() + wait);
                            if !lane.queue.is_empty() {
                                ctx.run_later(wait, move |act, ctx| {
                                    act.read_positions(account_id, ctx)
                                });
                            }
                        }
                    }
                    act.pump(account_id, ctx);
                }),
        );
    }

    /// Keeps the position books of accounts with open legs fresh, drops settled holdings, and
    /// wakes every lane.
    fn refresh(&mut self, ctx: &mut Context<Self>) {
        self.expire_holdings();
        let now = Instant::now();
        let half = self.settings.positions_max_age / 2;
        let due: Vec<i32> = self
            .lanes
            .iter()
            .filter(|(id, lane)| {
                (self.watched.contains(id) || !lane.queue.is_empty())
                    && lane
                        .positions
                        .as_ref()
                        .is_none_or(|s| now.saturating_duration_since(s.started) >= half)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.read_positions(id, ctx);
        }
        let ids: Vec<i32> = self.lanes.keys().copied().collect();
        for id in ids {
            self.pump(id, ctx);
        }
    }

    // ---- recovery and status -----------------------------------------------------------------

    /// Loads the `exit_pending` legs of newly configured accounts and resumes their exits from
    /// their rows before anything new is sent. Legs of strategies in ExitFailed wait for a
    /// human.
    fn recover(&mut self, accounts: Vec<i32>, ctx: &mut Context<Self>) {
        if accounts.is_empty() {
            return;
        }
        let db = self.db.clone();
        let retry = accounts.clone();
        ctx.spawn(
            async move { store::load_legs(&db, LegFilter::PendingOn(accounts)).await }
                .into_actor(self)
                .map(move |loaded, act, ctx| match loaded {
                    Ok(loaded) => {
                        let loaded: Vec<LoadedLeg> = loaded
                            .into_iter()
                            .filter(|(l, state)| {
                                if *state == strategies::RiskState::ExitFailed {
                                    tracing::warn!(execution_id = l.leg.id, "exit_pending leg of a strategy in exit_failed is left for a human");
                                    false
                                } else {
                                    true
                                }
                            })
                            .map(|(l, _)| l)
                            .collect();
                        if !loaded.is_empty() {
                            tracing::info!(legs = loaded.len(), "recovering exits left pending by the previous run");
                        }
                        act.accept(loaded, None, &HashMap::new(), Session::Recovery, ctx);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "loading pending exits failed; retrying");
                        act.last_error = Some(format!("loading pending exits: {e}"));
                        for id in &retry {
                            act.recovered_accounts.remove(id);
                        }
                        ctx.run_later(act.settings.retry_initial, move |act, ctx| {
                            let ids: Vec<i32> = retry
                                .iter()
                                .copied()
                                .filter(|id| {
                                    act.lanes.contains_key(id) && act.recovered_accounts.insert(*id)
                                })
                                .collect();
                            act.recover(ids, ctx);
                        });
                    }
                }),
        );
    }

    fn status(&self) -> GatewayStatus {
        let now = Instant::now();
        let mut accounts: Vec<LaneView> = self
            .lanes
            .values()
            .map(|l| LaneView {
                account_id: l.endpoint.id,
                account: l.endpoint.name.clone(),
                api_key: l.endpoint.api_key.hint(),
                queued: l.queue.len(),
                busy: l.busy,
                positions_age_ms: l.positions.as_ref().map(|s| {
                    u64::try_from(now.saturating_duration_since(s.started).as_millis())
                        .unwrap_or(u64::MAX)
                }),
                positions_error: l.read_error.clone(),
            })
            .collect();
        accounts.sort_by_key(|a| a.account_id);
        let mut exits: Vec<ActiveExitView> = self
            .legs
            .values()
            .map(|e| ActiveExitView {
                execution_id: e.leg.id,
                strategy_id: e.leg.strategy_id,
                account_id: e.leg.account_id,
                exchange: e.leg.exchange.clone(),
                symbol: e.leg.symbol.clone(),
                action: e.leg.side.opposite(),
                quantity: e.leg.quantity,
                filled: e.machine.filled(),
                unheld: e.machine.unheld(),
                state: e.machine.state(now, &self.config).as_str(),
                attempt: e.machine.failures(),
                reason: e.reason,
                last_error: e.machine.last_error().map(str::to_string),
                waiting_for: e.waiting.map(str::to_string),
                orders: e.machine.orders().iter().map(order_view).collect(),
                since: e.since,
            })
            .collect();
        exits.sort_by_key(|e| e.execution_id);
        let state = if self.restarts.faulted() {
            Lifecycle::Faulted
        } else if !self.accounts_set {
            Lifecycle::Starting
        } else {
            Lifecycle::Running
        };
        GatewayStatus {
            state,
            restarts: self.restarts.restarts(),
            accounts,
            exits,
            recent: self.recent.iter().cloned().collect(),
            orders_sent: self.orders_sent,
            orders_failed: self.orders_failed,
            orders_in_doubt: self.orders_in_doubt,
            rate_limited: self.rate_limited,
            legs_exited: self.legs_exited,
            legs_failed: self.legs_failed,
            legs_recovered: self.legs_recovered,
            mismatches: self.mismatches,
            duplicates_refused: self.duplicates_refused,
            order_updates_applied: self.event_reports,
            exits_confirmed_by_event: self.exits_confirmed_by_event,
            exits_confirmed_by_read: self.exits_confirmed_by_read,
            order_update_accounts: {
                let mut ids: Vec<i32> = self.order_streams.iter().copied().collect();
                ids.sort_unstable();
                ids
            },
            last_error: self.last_error.clone(),
            write_ahead_latency: self.write_ahead.snapshot(),
            fill_confirm_latency: self.fill_confirm.snapshot(),
        }
    }
}

/// When the read a holding started from was sent: a later read is newer.
fn entry_read_started(act: &OrderGatewayActor, key: &InstrumentKey) -> Option<Instant> {
    act.holdings.get(key).map(|e| e.read_started)
}

fn order_view(o: &ExitOrder) -> ExitOrderView {
    ExitOrderView {
        request_id: o.request,
        order_id: o.order_id.clone(),
        quantity: o.quantity,
        filled: o.filled,
        state: match &o.phase {
            Phase::Recording => "recording",
            Phase::Placing { .. } => "placing",
            Phase::InDoubt => "in_doubt",
            Phase::Working => "working",
            Phase::Done(End::Complete) => "complete",
            Phase::Done(End::Rejected(_)) => "rejected",
            Phase::Done(End::Cancelled) => "cancelled",
            Phase::Done(End::NotThere) => "not_found",
            Phase::Done(End::Refused(_)) => "refused",
            Phase::Done(End::NotPlaced(_)) => "not_placed",
        },
    }
}

impl Actor for OrderGatewayActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let accounts: Vec<i32> = self
            .lanes
            .keys()
            .copied()
            .filter(|id| self.recovered_accounts.insert(*id))
            .collect();
        self.recover(accounts, ctx);
        let every = (self.settings.positions_max_age / 2).max(Duration::from_millis(100));
        ctx.run_interval(every, |act, ctx| act.refresh(ctx));
    }
}

impl actix::Supervised for OrderGatewayActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts.on_restart("OrderGatewayActor");
        // In-flight operations and timers are gone, so the database is the truth again:
        // `exit_pending` legs resume from their rows (`started` recovers them); legs that were
        // queued but never sent are reported failed, for a human to decide.
        let never_sent: Vec<(i32, i32)> = self
            .legs
            .values()
            .filter(|e| e.pending_since.is_none())
            .map(|e| (e.leg.account_id, e.leg.id))
            .collect();
        for (account_id, id) in never_sent {
            self.fail(
                account_id,
                id,
                "the order gateway restarted before this exit was sent".to_string(),
            );
        }
        self.legs.clear();
        self.parked.clear();
        self.holdings.clear();
        self.recovered_accounts.clear();
        for lane in self.lanes.values_mut() {
            lane.queue.clear();
            lane.busy = false;
            lane.wake = None;
            lane.reading = false;
            lane.dirty.clear();
        }
    }
}

impl Handler<SetAccounts> for OrderGatewayActor {
    type Result = ();

    fn handle(&mut self, msg: SetAccounts, ctx: &mut Context<Self>) {
        let listed: HashSet<i32> = msg.0.iter().map(|a| a.id).collect();
        self.lanes
            .retain(|id, lane| listed.contains(id) || !lane.queue.is_empty() || lane.busy);
        for endpoint in msg.0 {
            let client = RestClient::new(
                &endpoint.rest_url,
                &endpoint.api_key,
                self.settings.rest_timeout,
            );
            match self.lanes.get_mut(&endpoint.id) {
                Some(lane) if lane.endpoint == endpoint => {}
                Some(lane) => {
                    lane.endpoint = endpoint;
                    lane.client = client;
                    lane.positions = None;
                }
                None => {
                    self.lanes.insert(
                        endpoint.id,
                        Lane {
                            limiter: RateLimiter::new(
                                self.settings.order_rate_per_s,
                                Duration::from_secs(1),
                            ),
                            endpoint,
                            client,
                            queue: Vec::new(),
                            busy: false,
                            wake: None,
                            positions: None,
                            reading: false,
                            read_failures: 0,
                            read_error: None,
                            read_retry_at: None,
                            dirty: Vec::new(),
                        },
                    );
                }
            }
        }
        self.accounts_set = true;
        for id in std::mem::take(&mut self.parked) {
            let Some(account_id) = self.legs.get(&id).map(|e| e.leg.account_id) else {
                continue;
            };
            match self.lanes.get_mut(&account_id) {
                Some(lane) => lane.queue.push(id),
                None => {
                    if let Some(exit) = self.legs.remove(&id) {
                        self.unroutable(&exit.leg);
                    }
                }
            }
        }
        let fresh: Vec<i32> = listed
            .into_iter()
            .filter(|id| self.recovered_accounts.insert(*id))
            .collect();
        self.recover(fresh, ctx);
        self.refresh(ctx);
    }
}

impl Handler<WatchPositions> for OrderGatewayActor {
    type Result = ();

    fn handle(&mut self, msg: WatchPositions, ctx: &mut Context<Self>) {
        let new: Vec<i32> = msg.0.difference(&self.watched).copied().collect();
        self.watched = msg.0;
        for id in new {
            self.read_positions(id, ctx);
        }
    }
}

impl Handler<RequestExit> for OrderGatewayActor {
    type Result = ResponseActFuture<Self, Result<ExitTicket, GatewayError>>;

    fn handle(&mut self, msg: RequestExit, _ctx: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let scope = msg.scope;
        Box::pin(
            async move { store::load_legs(&db, LegFilter::Scope(scope)).await }
                .into_actor(self)
                .map(move |loaded, act, ctx| {
                    let loaded = loaded.map_err(|e| GatewayError::Database(e.to_string()))?;
                    let loaded = loaded.into_iter().map(|(l, _)| l).collect();
                    Ok(act.accept(
                        loaded,
                        Some(msg.reason),
                        &msg.last_prices,
                        Session::Fresh,
                        ctx,
                    ))
                }),
        )
    }
}

impl Handler<AttachExitListener> for OrderGatewayActor {
    type Result = ();

    fn handle(&mut self, msg: AttachExitListener, _ctx: &mut Context<Self>) {
        self.listener = Some(msg.0);
    }
}

impl Handler<crate::supervised::InjectPanic> for OrderGatewayActor {
    type Result = ();

    fn handle(&mut self, _: crate::supervised::InjectPanic, _ctx: &mut Context<Self>) {
        panic!("fault injected into the order gateway");
    }
}

impl Handler<GetGatewayStatus> for OrderGatewayActor {
    type Result = MessageResult<GetGatewayStatus>;

    fn handle(&mut self, _: GetGatewayStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}
