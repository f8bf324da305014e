//! The order gateway actor: per-account lanes that run what each leg's exit machine asks, the
//! broker's holdings per instrument, and restart recovery (see the module docs).
//!
//! This file holds the actor's state, its start and restart, and its message handlers; the
//! work is beside it by job: taking legs in (`intake.rs`), the lane (`lane.rs`), a leg's exit
//! ending (`outcome.rs`), where its outcome is reported (`reports.rs`), what the broker holds
//! (`holdings.rs`), restart recovery (`recovery.rs`), the status (`status.rs`) and pushed order
//! updates (`events.rs`).

mod events;
mod holdings;
mod intake;
mod lane;
mod outcome;
mod recovery;
mod reports;
mod status;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use actix::WeakRecipient;
use actix::prelude::*;
use chrono::{DateTime, Utc};
use entity::strategy_executions::{ExitReason, Product};
use sea_orm::DatabaseConnection;

use super::store::{self, Leg, LegFilter};
use super::{
    AccountEndpoint, AttachBook, AttachRun, ExitReport, ExitTicket, FinishedExitView, GatewayError,
    GatewaySettings, GetGatewayStatus, RequestExit, SetAccounts, WatchPositions,
};
use crate::domain::exit_machine::{ExitConfig, ExitMachine};
use crate::domain::holdings::Holding;
use crate::domain::latency::LatencyHistogram;
use crate::domain::rate_limit::RateLimiter;
use crate::openalgo::rest::{Position, RestClient};
use crate::supervised::RestartTracker;
use reports::ReportQueue;

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
    /// The risk actor of each run (strategy, run) that attached, held weakly: its legs'
    /// outcomes go to it.
    runs: HashMap<(i32, i32), WeakRecipient<ExitReport>>,
    /// The leg book (the position monitor): closed legs go to it too.
    book: Option<Recipient<ExitReport>>,
    /// Reports of runs without a listener, until one attaches (`reports.rs`).
    kept: ReportQueue,
    /// Kept reports dropped because their strategy had too many kept.
    reports_dropped: u64,
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
            restarts: RestartTracker::new(settings.supervision),
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
            runs: HashMap::new(),
            book: None,
            kept: ReportQueue::default(),
            reports_dropped: 0,
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
        // The run listeners, the leg book and the reports kept for runs stay: a restart of the
        // gateway does not cut the risk actors off.
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
                    Ok(act.accept(loaded, Some(msg.reason), Session::Fresh, ctx))
                }),
        )
    }
}

impl Handler<AttachRun> for OrderGatewayActor {
    type Result = ();

    fn handle(&mut self, msg: AttachRun, _ctx: &mut Context<Self>) {
        self.attach_run(msg);
    }
}

impl Handler<AttachBook> for OrderGatewayActor {
    type Result = ();

    fn handle(&mut self, msg: AttachBook, _ctx: &mut Context<Self>) {
        self.book = Some(msg.0);
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
