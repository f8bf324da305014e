//! `OrderGatewayActor` (ARCHITECTURE §6.4): exit orders, exactly once.
//!
//! Each account has a serial lane: one REST operation at a time, orders rate-limited, short
//! legs of a request closed before its long legs. Before an order is sent the leg is marked
//! `exit_pending` and an `exit_requests` row (the idempotency record) is committed. A failed,
//! rejected or timed-out order is never re-sent blindly: the account's position book decides
//! ([`leg_still_open`]) whether the quantity is still open (retry after backoff, at most
//! `max_exit_attempts`), gone (done) or neither (exit failed, a human must look). On start,
//! every `exit_pending` leg of a configured account goes through the same check before
//! anything is sent; exits requested before the first [`SetAccounts`] wait for it.
//!
//! The gateway owns the `strategy_executions` exit columns and `exit_requests`; it reports each
//! leg's outcome to the listener (the position monitor), which owns strategy state.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use entity::exit_requests::{self, ExitOutcome};
use entity::strategies;
use entity::strategy_executions::{self, ExecutionStatus, ExitReason, Product, TradeAction};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder,
};
use serde::Serialize;

use crate::domain::exits::{
    ExitLeg, RequestFate, Verdict, exit_progress, leg_still_open, next_chunk, plan_exits,
    retry_delay,
};
use crate::domain::pnl::{Side, leg_pnl};
use crate::domain::rate_limit::RateLimiter;
use crate::openalgo::rest::{Order, OrderRequest, RestClient, RestError};
use crate::secrets::ApiKey;
use crate::status::Lifecycle;
use crate::supervised::RestartTracker;

/// Upper bound of the wait between two exit attempts.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// One account's gateway as the actors need it. `Debug` masks the API key.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountEndpoint {
    pub id: i32,
    pub name: String,
    pub rest_url: String,
    pub api_key: ApiKey,
}

impl std::fmt::Debug for AccountEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountEndpoint")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("rest_url", &self.rest_url)
            .field("api_key", &self.api_key)
            .finish()
    }
}

/// The accounts (with decrypted keys) the actors may talk to. Replaces the previous list.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SetAccounts(pub Vec<AccountEndpoint>);

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub max_exit_attempts: u32,
    pub retry_initial: Duration,
    pub order_rate_per_s: u32,
    pub rest_timeout: Duration,
    pub crash_loop_max_restarts: u32,
    pub crash_loop_window: Duration,
}

/// Which open legs to exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitScope {
    /// Every open leg of one run of a strategy.
    Run { strategy_id: i32, run_id: i32 },
    /// Every open leg of every strategy on every account (kill switch).
    All,
}

/// Exit the open legs in `scope`. Legs already being exited are not queued twice.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ExitTicket, GatewayError>")]
pub struct RequestExit {
    pub scope: ExitScope,
    pub reason: ExitReason,
    /// Latest price per leg (execution id): the exit price when the broker reports none.
    pub last_prices: HashMap<i32, f64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    #[error("reading the open legs failed: {0}")]
    Database(String),
}

/// A leg queued for exit.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueuedLeg {
    pub execution_id: i32,
    pub strategy_id: i32,
    pub account_id: i32,
    pub exchange: String,
    pub symbol: String,
    /// The exit order's action (opposite of the leg's).
    pub action: Side,
    /// Units still to close.
    pub quantity: i64,
    /// Orders planned (more than one when the quantity is above the freeze quantity).
    pub orders: usize,
}

/// What a [`RequestExit`] did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ExitTicket {
    /// Legs queued now, in sending order per account.
    pub queued: Vec<QueuedLeg>,
    /// Legs already being exited (nothing new was queued for them).
    pub already_exiting: Vec<i32>,
    /// Legs that cannot be exited (their account has no endpoint); reported as failed.
    pub failed: Vec<i32>,
}

/// Outcome of a leg's exit, sent to the listener.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum ExitReport {
    LegExited {
        execution_id: i32,
        strategy_id: i32,
        run_id: i32,
        exit_price: Option<f64>,
        realized_pnl: Option<f64>,
    },
    LegFailed {
        execution_id: i32,
        strategy_id: i32,
        run_id: i32,
        message: String,
    },
}

/// Where leg outcomes go (the position monitor attaches itself).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachExitListener(pub Recipient<ExitReport>);

#[derive(Message)]
#[rtype(result = "GatewayStatus")]
pub struct GetGatewayStatus;

#[derive(Debug, Clone, Serialize)]
pub struct LaneView {
    pub account_id: i32,
    pub account: String,
    /// Masked API key prefix.
    pub api_key: String,
    pub queued: usize,
    pub busy: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActiveExitView {
    pub execution_id: i32,
    pub strategy_id: i32,
    pub account_id: i32,
    pub exchange: String,
    pub symbol: String,
    pub action: Side,
    pub remaining: i64,
    pub attempt: u32,
    pub step: &'static str,
    pub reason: ExitReason,
    pub last_error: Option<String>,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GatewayStatus {
    pub state: Lifecycle,
    pub restarts: u64,
    pub accounts: Vec<LaneView>,
    pub exits: Vec<ActiveExitView>,
    pub orders_sent: u64,
    pub orders_failed: u64,
    pub legs_exited: u64,
    pub legs_failed: u64,
    pub legs_recovered: u64,
    pub duplicates_refused: u64,
    pub last_error: Option<String>,
    /// Recording each exit request before its order is sent (the write-ahead row), waiting
    /// for the database included.
    pub write_ahead_latency: crate::domain::latency::LatencySnapshot,
}

/// An open leg as the gateway needs it.
#[derive(Debug, Clone)]
struct Leg {
    id: i32,
    strategy_id: i32,
    run_id: i32,
    strategy_name: String,
    account_id: i32,
    exchange: String,
    symbol: String,
    product: Product,
    side: Side,
    quantity: i64,
    entry_price: f64,
    freeze_qty: Option<i64>,
    lot_size: Option<i64>,
    exit_reason: Option<ExitReason>,
    exit_pending_since: Option<DateTime<Utc>>,
}

impl Leg {
    fn from_model(m: &strategy_executions::Model, strategy_name: String) -> Leg {
        Leg {
            id: m.id,
            strategy_id: m.strategy_id,
            run_id: m.run_id,
            strategy_name,
            account_id: m.account_id,
            exchange: m.exchange.clone(),
            symbol: m.symbol.clone(),
            product: m.product,
            side: side_of(m.action),
            quantity: m.quantity,
            entry_price: m.entry_price,
            freeze_qty: m.freeze_qty,
            lot_size: m.lot_size,
            exit_reason: m.exit_reason,
            exit_pending_since: m.exit_pending_since,
        }
    }

    fn signed(&self, qty: i64) -> i64 {
        match self.side {
            Side::Buy => qty,
            Side::Sell => -qty,
        }
    }
}

pub(crate) fn side_of(action: TradeAction) -> Side {
    match action {
        TradeAction::Buy => Side::Buy,
        TradeAction::Sell => Side::Sell,
    }
}

fn fate(outcome: ExitOutcome) -> RequestFate {
    match outcome {
        ExitOutcome::Sent | ExitOutcome::Filled | ExitOutcome::Closed => RequestFate::Done,
        ExitOutcome::Pending
        | ExitOutcome::Unknown
        | ExitOutcome::Rejected
        | ExitOutcome::Error => RequestFate::Unresolved,
    }
}

/// An open leg with its persisted exit requests (oldest first).
struct LoadedLeg {
    leg: Leg,
    requests: Vec<exit_requests::Model>,
}

/// One exit order known to be done.
#[derive(Debug, Clone)]
struct Done {
    request_id: Option<i32>,
    order_id: Option<String>,
    quantity: i64,
    price: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// Send the next chunk of the remaining quantity.
    Send,
    /// Ask the broker whether `chunk` units are still open before doing anything else.
    Verify { request_id: Option<i32>, chunk: i64 },
    /// Everything was sent: read the fills and close the leg.
    Confirm,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Send => "send",
            Step::Verify { .. } => "verify",
            Step::Confirm => "confirm",
        }
    }
}

struct LegExit {
    leg: Leg,
    reason: ExitReason,
    /// Legs queued by the same request share it (shorts of a request go first).
    seq: u64,
    remaining: i64,
    /// Orders tried for the current chunk in this exit (bounded by `max_exit_attempts`).
    attempt: u32,
    /// Number of the latest exit request of the leg (persisted as `attempt`, never reused).
    request_no: u32,
    /// Verifications that could not be made (gateway unreachable).
    checks_failed: u32,
    step: Step,
    ready_at: Option<Instant>,
    done: Vec<Done>,
    last_price: Option<f64>,
    last_error: Option<String>,
    pending_since: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
}

struct Lane {
    endpoint: AccountEndpoint,
    client: RestClient,
    limiter: RateLimiter,
    /// Legs of this account being exited, in order.
    queue: Vec<i32>,
    busy: bool,
    wake: Option<(Instant, SpawnHandle)>,
}

/// How a set of legs enters the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// A new exit request: attempts count from zero.
    Fresh,
    /// Restart recovery: attempts continue from the persisted ones.
    Recovery,
}

pub struct OrderGatewayActor {
    db: DatabaseConnection,
    settings: GatewaySettings,
    lanes: HashMap<i32, Lane>,
    legs: HashMap<i32, LegExit>,
    /// Legs accepted before the first SetAccounts, in order, waiting for their lanes.
    parked: Vec<i32>,
    listener: Option<Recipient<ExitReport>>,
    recovered_accounts: HashSet<i32>,
    accounts_set: bool,
    next_seq: u64,
    restarts: RestartTracker,
    orders_sent: u64,
    orders_failed: u64,
    legs_exited: u64,
    legs_failed: u64,
    legs_recovered: u64,
    duplicates_refused: u64,
    last_error: Option<String>,
    /// How long recording an exit request (the write-ahead row) took, waiting included.
    write_ahead: crate::domain::latency::LatencyHistogram,
}

impl OrderGatewayActor {
    pub fn new(db: DatabaseConnection, settings: GatewaySettings) -> Self {
        Self {
            restarts: RestartTracker::new(
                settings.crash_loop_max_restarts,
                settings.crash_loop_window,
            ),
            db,
            settings,
            lanes: HashMap::new(),
            legs: HashMap::new(),
            parked: Vec::new(),
            listener: None,
            recovered_accounts: HashSet::new(),
            accounts_set: false,
            next_seq: 0,
            orders_sent: 0,
            orders_failed: 0,
            legs_exited: 0,
            legs_failed: 0,
            legs_recovered: 0,
            duplicates_refused: 0,
            last_error: None,
            write_ahead: Default::default(),
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
            let exit = self.leg_exit(leg, &requests, reason, last_prices, session, seq);
            by_account
                .entry(exit.leg.account_id)
                .or_default()
                .push(exit);
        }
        for (account_id, exits) in by_account {
            let plan_input: Vec<ExitLeg<i32>> = exits
                .iter()
                .map(|e| ExitLeg {
                    id: e.leg.id,
                    side: e.leg.side,
                    qty: e.remaining,
                    freeze_qty: e.leg.freeze_qty,
                    lot_size: e.leg.lot_size,
                })
                .collect();
            let planned = plan_exits(&plan_input);
            // Legs with nothing left to send only need their fills read; then shorts first.
            let mut order: Vec<i32> = exits
                .iter()
                .filter(|e| e.remaining <= 0)
                .map(|e| e.leg.id)
                .collect();
            for o in &planned {
                if !order.contains(&o.leg_id) {
                    order.push(o.leg_id);
                }
            }
            let mut exits: HashMap<i32, LegExit> =
                exits.into_iter().map(|e| (e.leg.id, e)).collect();
            // A leg whose last order is in doubt is checked before anything else on the account.
            order.sort_by_key(|id| {
                !matches!(
                    exits.get(id).map(|e| e.step),
                    Some(Step::Verify {
                        request_id: Some(_),
                        ..
                    })
                )
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
                    quantity: exit.remaining,
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
                    remaining = exit.remaining,
                    step = exit.step.name(),
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

    fn leg_exit(
        &self,
        leg: Leg,
        requests: &[exit_requests::Model],
        reason: Option<ExitReason>,
        last_prices: &HashMap<i32, f64>,
        session: Session,
        seq: u64,
    ) -> LegExit {
        let fates: Vec<(i64, RequestFate)> = requests
            .iter()
            .map(|r| (r.quantity, fate(r.outcome)))
            .collect();
        let progress = exit_progress(leg.quantity, &fates);
        let done: Vec<Done> = requests
            .iter()
            .filter(|r| fate(r.outcome) == RequestFate::Done)
            .map(|r| Done {
                request_id: Some(r.id),
                order_id: r.broker_order_id.clone(),
                quantity: r.quantity,
                price: None,
            })
            .collect();
        let unresolved = progress
            .unresolved
            .and_then(|(at, chunk)| requests.get(at).map(|r| (r, chunk)));
        let (step, attempt) = match unresolved {
            Some((request, chunk)) => {
                // A restart keeps the attempts already made; a new request starts afresh.
                let attempt = match session {
                    Session::Recovery => u32::try_from(request.attempt).unwrap_or(0),
                    Session::Fresh => 0,
                };
                (
                    Step::Verify {
                        request_id: Some(request.id),
                        chunk,
                    },
                    attempt,
                )
            }
            // Exit requests exist but none is in doubt: check what is still open.
            None if !requests.is_empty() && progress.remaining > 0 => (
                Step::Verify {
                    request_id: None,
                    chunk: progress.remaining,
                },
                0,
            ),
            None if progress.remaining == 0 => (Step::Confirm, 0),
            None => (Step::Send, 0),
        };
        let reason = reason.or(leg.exit_reason).unwrap_or(ExitReason::Manual);
        let request_no = requests
            .iter()
            .map(|r| u32::try_from(r.attempt).unwrap_or(0))
            .max()
            .unwrap_or(0);
        LegExit {
            reason,
            seq,
            remaining: progress.remaining,
            attempt,
            request_no,
            checks_failed: 0,
            step,
            ready_at: None,
            done,
            last_price: last_prices.get(&leg.id).copied(),
            last_error: None,
            pending_since: leg.exit_pending_since,
            since: Utc::now(),
            leg,
        }
    }

    /// The next leg of the lane that may act now: not waiting for a retry, and not sending for
    /// a long leg while a short leg of the same request is still being closed on this account.
    fn next_ready(&self, account_id: i32, now: Instant) -> (Option<i32>, Option<Instant>) {
        let Some(lane) = self.lanes.get(&account_id) else {
            return (None, None);
        };
        let mut earliest: Option<Instant> = None;
        for id in &lane.queue {
            let Some(exit) = self.legs.get(id) else {
                continue;
            };
            if let Some(at) = exit.ready_at
                && at > now
            {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
                continue;
            }
            let waits_for_short = exit.step == Step::Send
                && exit.leg.side == Side::Buy
                && lane.queue.iter().any(|other| {
                    self.legs
                        .get(other)
                        .is_some_and(|o| o.seq == exit.seq && o.leg.side == Side::Sell)
                });
            if waits_for_short {
                continue;
            }
            return (Some(*id), None);
        }
        (None, earliest)
    }

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

    /// Runs the next operation of an account's lane unless one is in flight.
    fn pump(&mut self, account_id: i32, ctx: &mut Context<Self>) {
        let now = Instant::now();
        match self.lanes.get(&account_id) {
            Some(lane) if !lane.busy => {}
            _ => return,
        }
        let (next, earliest) = self.next_ready(account_id, now);
        let Some(id) = next else {
            if let Some(at) = earliest {
                self.wake_at(account_id, at, ctx);
            }
            return;
        };
        let Some(step) = self.legs.get(&id).map(|e| e.step) else {
            return;
        };
        match step {
            Step::Send => self.send(account_id, id, ctx),
            Step::Verify { request_id, chunk } => {
                self.verify(account_id, id, request_id, chunk, ctx)
            }
            Step::Confirm => self.confirm(account_id, id, ctx),
        }
    }

    /// Records the next exit request (the leg `exit_pending`, a pending `exit_requests` row),
    /// then sends the order.
    fn send(&mut self, account_id: i32, id: i32, ctx: &mut Context<Self>) {
        let max = self.settings.max_exit_attempts;
        let Some(exit) = self.legs.get_mut(&id) else {
            return;
        };
        if exit.attempt >= max {
            let message = format!(
                "{} exit attempts made; the position is still open at the broker",
                exit.attempt
            );
            self.fail(account_id, id, message);
            return;
        }
        exit.attempt += 1;
        exit.request_no += 1;
        let first_pending = exit.pending_since.is_none();
        let since = *exit.pending_since.get_or_insert_with(Utc::now);
        let chunk = next_chunk(exit.remaining, exit.leg.freeze_qty, exit.leg.lot_size);
        let job = SendJob {
            leg: exit.leg.clone(),
            reason: exit.reason,
            attempt: exit.request_no,
            chunk,
            pending_since: first_pending.then_some(since),
        };
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return;
        };
        lane.busy = true;
        let db = self.db.clone();
        let started = Instant::now();
        ctx.spawn(
            async move { record_request(&db, &job).await }
                .into_actor(self)
                .map(move |recorded, act, ctx| {
                    act.write_ahead.record(started.elapsed());
                    act.on_recorded(account_id, id, chunk, recorded, ctx)
                }),
        );
    }

    fn on_recorded(
        &mut self,
        account_id: i32,
        id: i32,
        chunk: i64,
        recorded: Result<Option<i32>, String>,
        ctx: &mut Context<Self>,
    ) {
        let retry_initial = self.settings.retry_initial;
        match recorded {
            Ok(Some(request_id)) => return self.place(account_id, id, request_id, chunk, ctx),
            Ok(None) => {
                tracing::warn!(
                    execution_id = id,
                    "the leg was closed elsewhere before its exit order; nothing was sent"
                );
                self.remove(account_id, id);
            }
            Err(error) => {
                // Nothing was sent: try again later (counts as an attempt).
                let error = format!("recording the exit request of leg {id}: {error}");
                tracing::error!(execution_id = id, error = %error, "nothing was sent");
                if let Some(exit) = self.legs.get_mut(&id) {
                    exit.last_error = Some(error.clone());
                    exit.ready_at =
                        Some(Instant::now() + retry_delay(retry_initial, exit.attempt, RETRY_MAX));
                }
                self.last_error = Some(error);
            }
        }
        if let Some(lane) = self.lanes.get_mut(&account_id) {
            lane.busy = false;
        }
        self.pump(account_id, ctx);
    }

    /// Sends a recorded exit order as soon as the account's order rate allows.
    fn place(
        &mut self,
        account_id: i32,
        id: i32,
        request_id: i32,
        chunk: i64,
        ctx: &mut Context<Self>,
    ) {
        let Some(exit) = self.legs.get(&id) else {
            if let Some(lane) = self.lanes.get_mut(&account_id) {
                lane.busy = false;
            }
            self.pump(account_id, ctx);
            return;
        };
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return;
        };
        if let Err(wait) = lane.limiter.try_acquire(Instant::now()) {
            ctx.run_later(wait, move |act, ctx| {
                act.place(account_id, id, request_id, chunk, ctx)
            });
            return;
        }
        let job = PlaceJob {
            leg: exit.leg.clone(),
            request_id,
            chunk,
        };
        let client = lane.client.clone();
        let db = self.db.clone();
        ctx.spawn(
            place_chunk(db, client, job)
                .into_actor(self)
                .map(move |result, act, ctx| act.on_sent(account_id, id, chunk, result, ctx)),
        );
    }

    fn on_sent(
        &mut self,
        account_id: i32,
        id: i32,
        chunk: i64,
        result: SendResult,
        ctx: &mut Context<Self>,
    ) {
        if let Some(lane) = self.lanes.get_mut(&account_id) {
            lane.busy = false;
        }
        let Some(exit) = self.legs.get_mut(&id) else {
            self.pump(account_id, ctx);
            return;
        };
        match result {
            SendResult::Placed {
                request_id,
                order_id,
                record_error,
            } => {
                if let Some(e) = record_error {
                    tracing::error!(execution_id = id, order_id = %order_id, error = %e, "exit order placed but its outcome could not be recorded");
                }
                tracing::info!(execution_id = id, order_id = %order_id, quantity = chunk, "exit order placed");
                self.orders_sent += 1;
                exit.done.push(Done {
                    request_id: Some(request_id),
                    order_id: Some(order_id),
                    quantity: chunk,
                    price: None,
                });
                exit.remaining -= chunk;
                exit.attempt = 0;
                exit.last_error = None;
                exit.step = if exit.remaining > 0 {
                    Step::Send
                } else {
                    Step::Confirm
                };
            }
            SendResult::Failed {
                request_id,
                error,
                record_error,
            } => {
                if let Some(e) = record_error {
                    tracing::error!(execution_id = id, error = %e, "could not record the exit order's failure");
                }
                tracing::warn!(execution_id = id, attempt = exit.attempt, error = %error, uncertain = error.is_uncertain(), "exit order failed; checking the broker's positions before any retry");
                self.orders_failed += 1;
                let message = error.to_string();
                exit.last_error = Some(message.clone());
                self.last_error = Some(message);
                exit.step = Step::Verify {
                    request_id: Some(request_id),
                    chunk,
                };
            }
        }
        self.pump(account_id, ctx);
    }

    fn verify(
        &mut self,
        account_id: i32,
        id: i32,
        request_id: Option<i32>,
        chunk: i64,
        ctx: &mut Context<Self>,
    ) {
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return;
        };
        let Some(exit) = self.legs.get(&id) else {
            return;
        };
        lane.busy = true;
        let job = VerifyJob {
            leg: exit.leg.clone(),
            request_id,
            chunk,
        };
        let client = lane.client.clone();
        let db = self.db.clone();
        ctx.spawn(
            verify_chunk(db, client, job)
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.on_verified(account_id, id, request_id, chunk, result, ctx)
                }),
        );
    }

    fn on_verified(
        &mut self,
        account_id: i32,
        id: i32,
        request_id: Option<i32>,
        chunk: i64,
        result: Result<Checked, String>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(lane) = self.lanes.get_mut(&account_id) {
            lane.busy = false;
        }
        let max = self.settings.max_exit_attempts;
        let retry_initial = self.settings.retry_initial;
        let Some(exit) = self.legs.get_mut(&id) else {
            self.pump(account_id, ctx);
            return;
        };
        let checked = match result {
            Ok(c) => c,
            Err(e) => {
                exit.checks_failed += 1;
                exit.last_error = Some(e.clone());
                self.last_error = Some(e.clone());
                if exit.checks_failed >= max {
                    let message =
                        format!("the broker's positions could not be read {max} times: {e}");
                    self.fail(account_id, id, message);
                } else {
                    tracing::warn!(execution_id = id, error = %e, "could not check the broker's positions; checking again later");
                    exit.ready_at = Some(
                        Instant::now() + retry_delay(retry_initial, exit.checks_failed, RETRY_MAX),
                    );
                }
                self.pump(account_id, ctx);
                return;
            }
        };
        exit.checks_failed = 0;
        if exit.last_price.is_none() {
            exit.last_price = checked.broker_ltp;
        }
        match checked.verdict {
            Verdict::Closed => {
                tracing::info!(
                    execution_id = id,
                    quantity = chunk,
                    broker_net = checked.broker_net,
                    "the broker shows the quantity closed"
                );
                exit.done.push(Done {
                    request_id,
                    order_id: checked.found_order.as_ref().map(|(o, _)| o.clone()),
                    quantity: chunk,
                    price: checked.found_order.and_then(|(_, p)| p),
                });
                exit.remaining -= chunk;
                exit.attempt = 0;
                exit.step = if exit.remaining > 0 {
                    Step::Send
                } else {
                    Step::Confirm
                };
            }
            Verdict::StillOpen => {
                exit.step = Step::Send;
                if request_id.is_some() {
                    if exit.attempt >= max {
                        let message = format!(
                            "{} exit attempts failed and the position is still open at the broker (net {}): {}",
                            exit.attempt,
                            checked.broker_net,
                            exit.last_error.clone().unwrap_or_default()
                        );
                        self.fail(account_id, id, message);
                        self.pump(account_id, ctx);
                        return;
                    }
                    let delay = retry_delay(retry_initial, exit.attempt.max(1), RETRY_MAX);
                    tracing::warn!(
                        execution_id = id,
                        attempt = exit.attempt,
                        retry_in_ms = delay.as_millis() as u64,
                        "the position is still open; retrying the exit after backoff"
                    );
                    exit.ready_at = Some(Instant::now() + delay);
                }
            }
            Verdict::Unknown => {
                let message = format!(
                    "the broker's net position ({}) matches neither the leg open ({}) nor closed ({}); nothing more is sent",
                    checked.broker_net,
                    checked.expected_net,
                    checked.expected_net - exit.leg.signed(chunk)
                );
                self.fail(account_id, id, message);
            }
        }
        self.pump(account_id, ctx);
    }

    fn confirm(&mut self, account_id: i32, id: i32, ctx: &mut Context<Self>) {
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return;
        };
        let Some(exit) = self.legs.get(&id) else {
            return;
        };
        lane.busy = true;
        let job = ConfirmJob {
            leg: exit.leg.clone(),
            reason: exit.reason,
            done: exit.done.clone(),
            last_price: exit.last_price,
        };
        let client = lane.client.clone();
        let db = self.db.clone();
        ctx.spawn(
            confirm_leg(db, client, job)
                .into_actor(self)
                .map(move |result, act, ctx| act.on_confirmed(account_id, id, result, ctx)),
        );
    }

    fn on_confirmed(
        &mut self,
        account_id: i32,
        id: i32,
        result: Confirmed,
        ctx: &mut Context<Self>,
    ) {
        if let Some(lane) = self.lanes.get_mut(&account_id) {
            lane.busy = false;
        }
        match result {
            Confirmed::Exited {
                exit_price,
                realized_pnl,
                record_error,
            } => {
                if let Some(e) = record_error {
                    tracing::error!(execution_id = id, error = %e, "the leg is closed but could not be recorded as exited; a restart checks it again");
                    self.last_error = Some(e);
                }
                if let Some(exit) = self.remove(account_id, id) {
                    self.legs_exited += 1;
                    tracing::info!(
                        execution_id = id,
                        strategy_id = exit.leg.strategy_id,
                        exit_price,
                        realized_pnl,
                        "leg exited"
                    );
                    self.report(ExitReport::LegExited {
                        execution_id: id,
                        strategy_id: exit.leg.strategy_id,
                        run_id: exit.leg.run_id,
                        exit_price,
                        realized_pnl,
                    });
                }
            }
            Confirmed::Rejected { chunk, request_id } => {
                if let Some(exit) = self.legs.get_mut(&id) {
                    tracing::warn!(
                        execution_id = id,
                        request_id,
                        "the broker reports the exit order rejected; checking the position"
                    );
                    exit.done.retain(|d| d.request_id != Some(request_id));
                    exit.remaining += chunk;
                    exit.step = Step::Verify {
                        request_id: Some(request_id),
                        chunk,
                    };
                }
            }
        }
        self.pump(account_id, ctx);
    }

    fn remove(&mut self, account_id: i32, id: i32) -> Option<LegExit> {
        if let Some(lane) = self.lanes.get_mut(&account_id) {
            lane.queue.retain(|x| *x != id);
        }
        self.legs.remove(&id)
    }

    /// Gives up on a leg: it stays as it is in the database (open or `exit_pending`) and the
    /// listener puts its strategy in ExitFailed.
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
            remaining = exit.remaining,
            "EXIT FAILED, a human must check this position: {message}"
        );
        self.last_error = Some(message.clone());
        self.report(ExitReport::LegFailed {
            execution_id: id,
            strategy_id: exit.leg.strategy_id,
            run_id: exit.leg.run_id,
            message,
        });
    }

    /// Loads the `exit_pending` legs of newly configured accounts and checks them before
    /// anything is sent. Legs of strategies in ExitFailed wait for a human.
    fn recover(&mut self, accounts: Vec<i32>, ctx: &mut Context<Self>) {
        if accounts.is_empty() {
            return;
        }
        let db = self.db.clone();
        let retry = accounts.clone();
        ctx.spawn(
            async move { load_legs(&db, LegFilter::PendingOn(accounts)).await }
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
        let mut accounts: Vec<LaneView> = self
            .lanes
            .values()
            .map(|l| LaneView {
                account_id: l.endpoint.id,
                account: l.endpoint.name.clone(),
                api_key: l.endpoint.api_key.hint(),
                queued: l.queue.len(),
                busy: l.busy,
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
                remaining: e.remaining,
                attempt: e.attempt,
                step: e.step.name(),
                reason: e.reason,
                last_error: e.last_error.clone(),
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
            orders_sent: self.orders_sent,
            orders_failed: self.orders_failed,
            legs_exited: self.legs_exited,
            legs_failed: self.legs_failed,
            legs_recovered: self.legs_recovered,
            duplicates_refused: self.duplicates_refused,
            last_error: self.last_error.clone(),
            write_ahead_latency: self.write_ahead.snapshot(),
        }
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
    }
}

impl actix::Supervised for OrderGatewayActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts.on_restart("OrderGatewayActor");
        // In-flight operations and timers are gone, so the database is the truth again:
        // `exit_pending` legs are checked at the broker (`started` recovers them); legs that
        // were queued but never sent are reported failed, for a human to decide.
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
        self.recovered_accounts.clear();
        for lane in self.lanes.values_mut() {
            lane.queue.clear();
            lane.busy = false;
            lane.wake = None;
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
        let ids: Vec<i32> = self.lanes.keys().copied().collect();
        for id in ids {
            self.pump(id, ctx);
        }
    }
}

impl Handler<RequestExit> for OrderGatewayActor {
    type Result = ResponseActFuture<Self, Result<ExitTicket, GatewayError>>;

    fn handle(&mut self, msg: RequestExit, _ctx: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let scope = msg.scope;
        Box::pin(
            async move { load_legs(&db, LegFilter::Scope(scope)).await }
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

// ---- database and gateway work, run off the actor -------------------------------------

const OPEN: [ExecutionStatus; 2] = [ExecutionStatus::Entered, ExecutionStatus::ExitPending];

enum LegFilter {
    Scope(ExitScope),
    /// `exit_pending` legs of these accounts.
    PendingOn(Vec<i32>),
}

/// Open legs (with their strategy's risk state and their exit requests, oldest first).
async fn load_legs(
    db: &DatabaseConnection,
    filter: LegFilter,
) -> Result<Vec<(LoadedLeg, strategies::RiskState)>, DbErr> {
    use strategy_executions::Column as C;
    let query = strategy_executions::Entity::find();
    let query = match filter {
        LegFilter::Scope(ExitScope::Run {
            strategy_id,
            run_id,
        }) => query
            .filter(C::StrategyId.eq(strategy_id))
            .filter(C::RunId.eq(run_id))
            .filter(C::Status.is_in(OPEN)),
        LegFilter::Scope(ExitScope::All) => query.filter(C::Status.is_in(OPEN)),
        LegFilter::PendingOn(accounts) => query
            .filter(C::Status.eq(ExecutionStatus::ExitPending))
            .filter(C::AccountId.is_in(accounts)),
    };
    let rows = query.order_by_asc(C::Id).all(db).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let strategy_ids: HashSet<i32> = rows.iter().map(|r| r.strategy_id).collect();
    let strategies: HashMap<i32, strategies::Model> = strategies::Entity::find()
        .filter(strategies::Column::Id.is_in(strategy_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let mut requests = requests_of(db, rows.iter().map(|r| r.id)).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let (name, state) = strategies.get(&row.strategy_id).map_or_else(
                || {
                    (
                        format!("strategy-{}", row.strategy_id),
                        strategies::RiskState::Monitoring,
                    )
                },
                |s| (s.name.clone(), s.risk_state),
            );
            let leg = Leg::from_model(&row, name);
            let requests = requests.remove(&row.id).unwrap_or_default();
            (LoadedLeg { leg, requests }, state)
        })
        .collect())
}

/// Exit requests of the given legs, oldest first.
async fn requests_of(
    db: &DatabaseConnection,
    ids: impl IntoIterator<Item = i32>,
) -> Result<HashMap<i32, Vec<exit_requests::Model>>, DbErr> {
    let ids: Vec<i32> = ids.into_iter().collect();
    let mut by_leg: HashMap<i32, Vec<exit_requests::Model>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_leg);
    }
    for r in exit_requests::Entity::find()
        .filter(exit_requests::Column::ExecutionId.is_in(ids))
        .order_by_asc(exit_requests::Column::Id)
        .all(db)
        .await?
    {
        by_leg.entry(r.execution_id).or_default().push(r);
    }
    Ok(by_leg)
}

/// Σ signed quantity still open of every tracked leg on the account's instrument and product:
/// what the broker's net position should be with all of them open.
pub(crate) async fn open_net(
    db: &DatabaseConnection,
    account_id: i32,
    exchange: &str,
    symbol: &str,
    product: Product,
) -> Result<i64, DbErr> {
    use strategy_executions::Column as C;
    let rows = strategy_executions::Entity::find()
        .filter(C::AccountId.eq(account_id))
        .filter(C::Exchange.eq(exchange))
        .filter(C::Symbol.eq(symbol))
        .filter(C::Product.eq(product))
        .filter(C::Status.is_in(OPEN))
        .all(db)
        .await?;
    let requests = requests_of(db, rows.iter().map(|r| r.id)).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let fates: Vec<(i64, RequestFate)> = requests
                .get(&r.id)
                .map(|rs| rs.iter().map(|q| (q.quantity, fate(q.outcome))).collect())
                .unwrap_or_default();
            let remaining = exit_progress(r.quantity, &fates).remaining;
            match r.action {
                TradeAction::Buy => remaining,
                TradeAction::Sell => -remaining,
            }
        })
        .sum())
}

async fn set_request(
    db: &DatabaseConnection,
    request_id: i32,
    outcome: ExitOutcome,
    order_id: Option<String>,
    error: Option<String>,
) -> Result<(), DbErr> {
    let mut row = exit_requests::ActiveModel {
        id: Set(request_id),
        outcome: Set(outcome),
        ..Default::default()
    };
    if order_id.is_some() {
        row.broker_order_id = Set(order_id);
    }
    if error.is_some() {
        row.error = Set(error);
    }
    row.update(db).await.map(|_| ())
}

struct SendJob {
    leg: Leg,
    reason: ExitReason,
    attempt: u32,
    chunk: i64,
    pending_since: Option<DateTime<Utc>>,
}

enum SendResult {
    Placed {
        request_id: i32,
        order_id: String,
        record_error: Option<String>,
    },
    Failed {
        request_id: i32,
        error: RestError,
        record_error: Option<String>,
    },
}

/// Marks the leg `exit_pending` and commits a pending `exit_requests` row, then sends the
/// order and records what the gateway answered. The leg is only marked while it is still open,
/// so a leg closed elsewhere meanwhile is never sent an exit.
async fn record_request(db: &DatabaseConnection, job: &SendJob) -> Result<Option<i32>, String> {
    use strategy_executions::Column as C;
    let attempt = i32::try_from(job.attempt).unwrap_or(i32::MAX);
    let txn = crate::db::begin_write(db)
        .await
        .map_err(|e| e.to_string())?;
    let mut update = strategy_executions::Entity::update_many()
        .col_expr(C::Status, Expr::value(ExecutionStatus::ExitPending))
        .col_expr(C::ExitReason, Expr::value(job.reason))
        .col_expr(C::ExitAttempts, Expr::value(attempt))
        .col_expr(C::UpdatedAt, Expr::value(Utc::now()));
    if let Some(since) = job.pending_since {
        update = update.col_expr(C::ExitPendingSince, Expr::value(since));
    }
    let updated = update
        .filter(C::Id.eq(job.leg.id))
        .filter(C::Status.is_in(OPEN))
        .exec(&txn)
        .await
        .map_err(|e| e.to_string())?;
    if updated.rows_affected != 1 {
        return Ok(None);
    }
    let request = exit_requests::ActiveModel {
        execution_id: Set(job.leg.id),
        attempt: Set(attempt),
        client_ref: Set(uuid::Uuid::new_v4().to_string()),
        quantity: Set(job.chunk),
        outcome: Set(ExitOutcome::Pending),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| e.to_string())?;
    txn.commit().await.map_err(|e| e.to_string())?;
    Ok(Some(request.id))
}

struct PlaceJob {
    leg: Leg,
    request_id: i32,
    chunk: i64,
}

/// Sends a recorded exit order and records what the gateway answered.
async fn place_chunk(db: DatabaseConnection, client: RestClient, job: PlaceJob) -> SendResult {
    let request_id = job.request_id;
    let order = OrderRequest {
        strategy: job.leg.strategy_name.clone(),
        exchange: job.leg.exchange.clone(),
        symbol: job.leg.symbol.clone(),
        action: job.leg.side.opposite().as_str().to_string(),
        quantity: job.chunk,
        product: job.leg.product.as_str().to_string(),
        pricetype: "MARKET".to_string(),
    };
    match client.place_order(&order).await {
        Ok(order_id) => {
            let record_error = set_request(
                &db,
                request_id,
                ExitOutcome::Sent,
                Some(order_id.clone()),
                None,
            )
            .await
            .err()
            .map(|e| e.to_string());
            SendResult::Placed {
                request_id,
                order_id,
                record_error,
            }
        }
        Err(error) => {
            let outcome = match error {
                RestError::Rejected { .. } => ExitOutcome::Rejected,
                _ => ExitOutcome::Unknown,
            };
            let record_error = set_request(&db, request_id, outcome, None, Some(error.to_string()))
                .await
                .err()
                .map(|e| e.to_string());
            SendResult::Failed {
                request_id,
                error,
                record_error,
            }
        }
    }
}

struct VerifyJob {
    leg: Leg,
    request_id: Option<i32>,
    chunk: i64,
}

struct Checked {
    verdict: Verdict,
    broker_net: i64,
    expected_net: i64,
    broker_ltp: Option<f64>,
    /// The exit order found in the order book for a request whose answer was lost.
    found_order: Option<(String, Option<f64>)>,
}

/// Reads the account's position book and decides whether `chunk` units of the leg are still
/// open; records the verdict on the request in doubt.
async fn verify_chunk(
    db: DatabaseConnection,
    client: RestClient,
    job: VerifyJob,
) -> Result<Checked, String> {
    let leg = &job.leg;
    let positions = client.position_book().await.map_err(|e| e.to_string())?;
    let mut broker_net = 0.0;
    let mut broker_ltp = None;
    for p in positions.iter().filter(|p| {
        p.exchange == leg.exchange
            && p.symbol == leg.symbol
            && (p.product.is_empty() || p.product.eq_ignore_ascii_case(leg.product.as_str()))
    }) {
        broker_net += p.quantity;
        broker_ltp = broker_ltp.or(p.ltp.filter(|v| *v > 0.0));
    }
    let broker_net = broker_net.round() as i64;
    let expected_net = open_net(&db, leg.account_id, &leg.exchange, &leg.symbol, leg.product)
        .await
        .map_err(|e| format!("reading the open legs: {e}"))?;
    let verdict = leg_still_open(broker_net, expected_net, leg.signed(job.chunk));
    let mut found_order = None;
    if let Some(request_id) = job.request_id {
        let recorded = match verdict {
            Verdict::Closed => {
                found_order = find_unrecorded_order(&db, &client, leg, job.chunk).await;
                let (outcome, order_id) = match &found_order {
                    Some((id, _)) => (ExitOutcome::Filled, Some(id.clone())),
                    None => (ExitOutcome::Closed, None),
                };
                set_request(&db, request_id, outcome, order_id, None).await
            }
            Verdict::StillOpen => exit_requests::Entity::update_many()
                .col_expr(exit_requests::Column::Outcome, Expr::value(ExitOutcome::Error))
                .col_expr(
                    exit_requests::Column::Error,
                    Expr::value(format!(
                        "not at the broker: its positions show the quantity still open (net {broker_net})"
                    )),
                )
                .col_expr(exit_requests::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(exit_requests::Column::Id.eq(request_id))
                .filter(
                    exit_requests::Column::Outcome
                        .is_in([ExitOutcome::Pending, ExitOutcome::Unknown]),
                )
                .exec(&db)
                .await
                .map(|_| ()),
            Verdict::Unknown => Ok(()),
        };
        if let Err(e) = recorded {
            tracing::error!(execution_id = leg.id, request_id, error = %e, "could not record the verified outcome of an exit request");
        }
    }
    Ok(Checked {
        verdict,
        broker_net,
        expected_net,
        broker_ltp,
        found_order,
    })
}

/// The most recent completed order in the account's order book that looks like this leg's
/// exit and is not recorded anywhere yet (its answer was lost): its id and average price.
async fn find_unrecorded_order(
    db: &DatabaseConnection,
    client: &RestClient,
    leg: &Leg,
    chunk: i64,
) -> Option<(String, Option<f64>)> {
    let book = match client.order_book().await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(execution_id = leg.id, error = %e, "could not read the order book");
            return None;
        }
    };
    let known = match known_order_ids(db, leg.account_id).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(execution_id = leg.id, error = %e, "could not read the recorded order ids");
            return None;
        }
    };
    let action = leg.side.opposite().as_str();
    book.iter()
        .rev()
        .find(|o| {
            o.symbol == leg.symbol
                && o.exchange == leg.exchange
                && o.action.eq_ignore_ascii_case(action)
                && o.quantity.map(|q| q.round() as i64) == Some(chunk)
                && (o.product.is_empty() || o.product.eq_ignore_ascii_case(leg.product.as_str()))
                && o.order_status.eq_ignore_ascii_case("complete")
                && o.strategy.as_ref().is_none_or(|s| *s == leg.strategy_name)
                && !known.contains(&o.orderid)
        })
        .map(|o| (o.orderid.clone(), o.average_price.filter(|p| *p > 0.0)))
}

/// Entry and exit order ids recorded for the account's legs.
async fn known_order_ids(
    db: &DatabaseConnection,
    account_id: i32,
) -> Result<HashSet<String>, DbErr> {
    let legs = strategy_executions::Entity::find()
        .filter(strategy_executions::Column::AccountId.eq(account_id))
        .all(db)
        .await?;
    let mut known: HashSet<String> = legs
        .iter()
        .filter_map(|l| l.entry_order_id.clone())
        .collect();
    for requests in requests_of(db, legs.iter().map(|l| l.id))
        .await?
        .into_values()
    {
        known.extend(requests.into_iter().filter_map(|r| r.broker_order_id));
    }
    Ok(known)
}

struct ConfirmJob {
    leg: Leg,
    reason: ExitReason,
    done: Vec<Done>,
    last_price: Option<f64>,
}

enum Confirmed {
    Exited {
        exit_price: Option<f64>,
        realized_pnl: Option<f64>,
        record_error: Option<String>,
    },
    /// The broker rejected an order it had accepted: its quantity is in doubt again.
    Rejected { chunk: i64, request_id: i32 },
}

fn is_dead_order(o: &Order) -> bool {
    ["rejected", "cancelled", "canceled"]
        .iter()
        .any(|s| o.order_status.eq_ignore_ascii_case(s))
}

/// Reads the fills of the leg's exit orders and records the leg as exited.
async fn confirm_leg(db: DatabaseConnection, client: RestClient, job: ConfirmJob) -> Confirmed {
    let leg = &job.leg;
    let needs_book = job
        .done
        .iter()
        .any(|d| d.order_id.is_some() && d.price.is_none());
    let book = if needs_book {
        match client.order_book().await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(execution_id = leg.id, error = %e, "could not read the order book for exit prices");
                None
            }
        }
    } else {
        None
    };
    let mut priced = (0.0, 0i64);
    let mut filled_requests = Vec::new();
    for d in &job.done {
        let mut price = d.price;
        let order = d
            .order_id
            .as_ref()
            .and_then(|id| book.as_ref()?.iter().find(|o| &o.orderid == id));
        if let Some(o) = order {
            if is_dead_order(o)
                && let Some(request_id) = d.request_id
            {
                let message = format!("the broker reports the order {}", o.order_status);
                if let Err(e) =
                    set_request(&db, request_id, ExitOutcome::Rejected, None, Some(message)).await
                {
                    tracing::error!(request_id, error = %e, "could not record a rejected exit order");
                }
                return Confirmed::Rejected {
                    chunk: d.quantity,
                    request_id,
                };
            }
            if o.order_status.eq_ignore_ascii_case("complete") {
                price = price.or(o.average_price.filter(|p| *p > 0.0));
                if let Some(request_id) = d.request_id {
                    filled_requests.push(request_id);
                }
            }
        }
        if let Some(p) = price {
            priced.0 += p * d.quantity as f64;
            priced.1 += d.quantity;
        }
    }
    let exit_price = if priced.1 > 0 {
        Some(priced.0 / priced.1 as f64)
    } else {
        job.last_price
    };
    let realized_pnl =
        exit_price.map(|p| leg_pnl(leg.side, leg.quantity as f64, leg.entry_price, p));
    let order_ids: Vec<String> = job.done.iter().filter_map(|d| d.order_id.clone()).collect();
    let record_error = record_exited(
        &db,
        leg.id,
        job.reason,
        order_ids,
        exit_price,
        realized_pnl,
        filled_requests,
    )
    .await
    .err()
    .map(|e| e.to_string());
    Confirmed::Exited {
        exit_price,
        realized_pnl,
        record_error,
    }
}

async fn record_exited(
    db: &DatabaseConnection,
    leg_id: i32,
    reason: ExitReason,
    order_ids: Vec<String>,
    exit_price: Option<f64>,
    realized_pnl: Option<f64>,
    filled_requests: Vec<i32>,
) -> Result<(), DbErr> {
    let txn = crate::db::begin_write(db).await?;
    strategy_executions::ActiveModel {
        id: Set(leg_id),
        status: Set(ExecutionStatus::Exited),
        exit_reason: Set(Some(reason)),
        exit_order_id: Set((!order_ids.is_empty()).then(|| order_ids.join(","))),
        exit_price: Set(exit_price),
        realized_pnl: Set(realized_pnl),
        exited_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(&txn)
    .await?;
    if !filled_requests.is_empty() {
        exit_requests::Entity::update_many()
            .col_expr(
                exit_requests::Column::Outcome,
                Expr::value(ExitOutcome::Filled),
            )
            .col_expr(exit_requests::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(exit_requests::Column::Id.is_in(filled_requests))
            .exec(&txn)
            .await?;
    }
    txn.commit().await
}
