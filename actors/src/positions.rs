//! `PositionMonitorActor` (ARCHITECTURE §6.1, §6.2): the open legs, their prices and the P&L
//! of every strategy run, and one [`RiskActor`] per strategy with open legs.
//!
//! Open legs come from the database at start, from [`RegisterExecution`] (a strategy engine
//! registers a fill) and from reconciliation with each account's position book. While
//! monitoring (market hours: [`StartMonitoring`] / [`StopMonitoring`]) every open leg's
//! instrument is subscribed in Quote mode; each tick updates the legs' P&L and the run's P&L,
//! which goes to the strategy's risk actor at once. A price ≤ 0 (or above `risk.max_price`) is
//! ignored. A leg whose feed price is older than `stale_after` makes the strategy Degraded and
//! its price is fetched over REST (`quotes`, rate-limited per account) instead; the entry price
//! is never assumed. While the feed is down ([`FeedHealth`]) every open leg is priced that way
//! at once, through its own account's gateway or any other that answers: risk evaluation never
//! pauses during market hours.
//!
//! After a restart (a panic included) the open legs and runs are read again from the database;
//! the risk actors, which did not panic, keep running and are taken back by run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use entity::strategies::{self, RiskState};
use entity::strategy_executions::{self, ExecutionStatus, ExitReason, Product, TradeAction};
use entity::{exit_requests, risk_events, trading_accounts};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter,
};
use serde::Serialize;

use crate::accounts::{AccountsReach, Reach};
use crate::domain::fills::{FillLimits, check_fill};
use crate::domain::pnl::{RunPnl, Side, accept_price, is_stale, leg_pnl};
use crate::domain::quotes::{QuoteSource, quote_route};
use crate::domain::rate_limit::RateLimiter;
use crate::domain::reconcile::{self, Action, BrokerPosition, Confirmations, TrackedPosition};
use crate::feed::{
    FeedEvent, Holder, Key, Mode, ReleaseAll, Subscribe, SubscriberId, SubscriptionRegistryActor,
    Tick, Unsubscribe, next_subscriber_id,
};
use crate::openalgo::rest::RestClient;
use crate::orders::{
    AccountEndpoint, AttachExitListener, ExitReport, ExitScope, ExitTicket, GetGatewayStatus,
    OrderGatewayActor, RequestExit, SetAccounts, WatchPositions, filled_units, side_of,
};
use crate::risk::{
    ExitRun, GetRiskStatus, LegClosed, LegExitFailed, ManualExit, Pause, PnlUpdate, Resume,
    RiskActor, RiskSettings, RiskStatus, SetEvaluating, SetLimits, StrategyRisk,
};
use crate::status::{Lifecycle, age_ms};
use crate::supervised::{InjectPanic, RestartTracker};
use crate::supervisor::{FeedHealth, MarketHours};

/// Mailbox size: large enough that the feed never finds it full (ticks are not dropped).
const MAILBOX: usize = 1 << 20;
/// Retry delay after the open legs could not be loaded.
const LOAD_RETRY: Duration = Duration::from_secs(2);
/// While the feed is down, a leg priced over REST less than this long ago is not asked again.
const QUOTE_REFRESH_FEED_DOWN: Duration = Duration::from_secs(1);
/// How long one risk actor may take to answer a status request.
const RISK_STATUS_WITHIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// When false, [`StartMonitoring`] is refused (positions are still recorded).
    pub enabled: bool,
    pub stale_after: Duration,
    /// Position-book reconciliation per account; None = off.
    pub reconcile_interval: Option<Duration>,
    /// REST calls (quotes, position book) per account per second.
    pub quote_fallback_per_s: u32,
    pub rest_timeout: Duration,
    pub crash_loop_max_restarts: u32,
    pub crash_loop_window: Duration,
    /// Bounds of a registered fill (`risk.max_leg_quantity` …); prices above `max_price` are
    /// ignored like prices ≤ 0.
    pub fill_limits: FillLimits,
}

/// A fill to register as an open leg.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecution {
    pub strategy_id: i32,
    pub account_id: i32,
    pub symbol: String,
    pub exchange: String,
    pub product: Product,
    pub action: TradeAction,
    /// Units (> 0; whole lots when `lot_size` is given).
    pub quantity: i64,
    pub entry_price: f64,
    pub entry_order_id: Option<String>,
    pub freeze_qty: Option<i64>,
    pub lot_size: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MonitorError {
    #[error("{0}")]
    NotFound(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<DbErr> for MonitorError {
    fn from(e: DbErr) -> Self {
        MonitorError::Internal(format!("database: {e}"))
    }
}

/// Subscribe the open legs and evaluate risk (market hours began).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), MonitorError>")]
pub struct StartMonitoring;

/// Release the subscriptions and stop evaluating; exits already in the gateway go on.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopMonitoring;

/// Records a fill as an open leg and puts it under monitoring at once. A strategy going from
/// no open legs to some starts a new run (clean risk state; a paused strategy stays paused).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<strategy_executions::Model, MonitorError>")]
pub struct RegisterExecution(pub NewExecution);

/// Exit every open leg of the strategy's run (reason `manual`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<ExitTicket, MonitorError>")]
pub struct ManualExitStrategy(pub i32);

/// Pause every risk actor and exit every open leg on every account.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<KillSwitchReport, MonitorError>")]
pub struct KillSwitch;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KillSwitchReport {
    pub strategies_paused: Vec<i32>,
    pub exits: ExitTicket,
    pub errors: Vec<String>,
}

/// Resume risk evaluation of a paused (or exit-failed) strategy.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), MonitorError>")]
pub struct ResumeStrategy(pub i32);

/// A strategy's limits or name changed in the database.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct StrategyChanged(pub strategies::Model);

#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<PositionView>")]
pub struct GetPositions;

#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "MonitorStatus")]
pub struct GetMonitorStatus;

/// Every risk actor's status.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<RiskStatus>")]
pub struct GetRiskStatuses;

/// Makes the risk actor of a strategy's run panic (see [`InjectPanic`]); false when the
/// strategy has no run.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "bool")]
pub struct InjectRiskPanic(pub i32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PriceSource {
    Feed,
    Rest,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PositionView {
    pub execution_id: i32,
    pub strategy_id: i32,
    pub strategy: String,
    pub run_id: i32,
    pub account_id: i32,
    pub exchange: String,
    pub symbol: String,
    pub product: Product,
    pub action: TradeAction,
    pub quantity: i64,
    pub entry_price: f64,
    pub status: ExecutionStatus,
    pub ltp: Option<f64>,
    pub pnl: Option<f64>,
    pub price_age_ms: Option<u64>,
    pub price_source: Option<PriceSource>,
    /// The feed price is older than `stale_after` (REST quotes stand in).
    pub stale: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StrategySummary {
    pub strategy_id: i32,
    pub strategy: String,
    pub run_id: i32,
    pub open_legs: usize,
    pub pnl: Option<f64>,
    pub realized: f64,
    pub stale_legs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonitorStatus {
    pub state: Lifecycle,
    pub restarts: u64,
    pub monitoring: bool,
    pub loaded: bool,
    pub accounts: usize,
    pub open_legs: usize,
    pub subscribed_symbols: usize,
    pub ticks: u64,
    pub ignored_prices: u64,
    pub quotes_fetched: u64,
    pub quote_errors: u64,
    pub reconciliations: u64,
    pub adopted: u64,
    pub closed_externally: u64,
    pub mismatches: u64,
    /// The feed is down: every open leg is priced over REST quotes.
    pub feed_degraded: bool,
    pub last_error: Option<String>,
    pub strategies: Vec<StrategySummary>,
}

struct LegBook {
    model: strategy_executions::Model,
    key: Key,
    side: Side,
    /// When the monitor began tracking the leg.
    tracked_since: Instant,
    last_feed_at: Option<Instant>,
    source: Option<PriceSource>,
}

struct StrategyBook {
    name: String,
    run_id: i32,
    pnl: RunPnl<i32>,
    risk: Addr<RiskActor>,
    /// (fresh, stale legs) as last sent to the risk actor.
    sent: Option<(bool, usize)>,
    /// Before this instant no open leg can turn stale (a lower bound: prices only get newer),
    /// so a tick need not re-check every leg; None when unknown or some leg is stale.
    fresh_until: Option<Instant>,
}

struct AccountRest {
    endpoint: AccountEndpoint,
    client: RestClient,
    limiter: RateLimiter,
    reconciling: bool,
    /// Differences found by the previous reconciliation pass (taken while one runs).
    confirmations: Confirmations,
    /// The last quote asked through this account failed.
    quote_failed: bool,
}

pub struct PositionMonitorActor {
    db: DatabaseConnection,
    settings: MonitorSettings,
    risk_settings: RiskSettings,
    registry: Addr<SubscriptionRegistryActor>,
    gateway: Addr<OrderGatewayActor>,
    subscriber: SubscriberId,
    accounts: HashMap<i32, AccountRest>,
    legs: HashMap<i32, LegBook>,
    by_key: HashMap<Key, Vec<i32>>,
    strategies: HashMap<i32, StrategyBook>,
    subscribed: HashSet<Key>,
    monitoring: bool,
    monitoring_since: Option<Instant>,
    loaded: bool,
    timers: Vec<SpawnHandle>,
    quotes_in_flight: HashSet<i32>,
    /// Every active account's reachability, from the account monitor.
    reach: HashMap<i32, Reach>,
    /// The feed is down: every open leg is priced over REST.
    feed_degraded: bool,
    feed_reason: String,
    /// Risk actors of the runs before a restart, taken back by run once the legs are loaded.
    adoptable: HashMap<i32, (i32, Addr<RiskActor>)>,
    /// Keys subscribed before a restart: subscribed again (the registry resends their last
    /// price) or released once the legs are loaded.
    orphaned: HashSet<Key>,
    restarts: RestartTracker,
    ticks: u64,
    ignored_prices: u64,
    quotes_fetched: u64,
    quote_errors: u64,
    reconciliations: u64,
    adopted: u64,
    closed_externally: u64,
    mismatches: u64,
    last_error: Option<String>,
    /// Accounts with open legs, as last told to the order gateway.
    watched: HashSet<i32>,
}

impl PositionMonitorActor {
    pub fn new(
        db: DatabaseConnection,
        settings: MonitorSettings,
        risk_settings: RiskSettings,
        registry: Addr<SubscriptionRegistryActor>,
        gateway: Addr<OrderGatewayActor>,
    ) -> Self {
        Self {
            restarts: RestartTracker::new(
                settings.crash_loop_max_restarts,
                settings.crash_loop_window,
            ),
            db,
            settings,
            risk_settings,
            registry,
            gateway,
            subscriber: next_subscriber_id(),
            accounts: HashMap::new(),
            legs: HashMap::new(),
            by_key: HashMap::new(),
            strategies: HashMap::new(),
            subscribed: HashSet::new(),
            monitoring: false,
            monitoring_since: None,
            loaded: false,
            timers: Vec::new(),
            quotes_in_flight: HashSet::new(),
            reach: HashMap::new(),
            feed_degraded: false,
            feed_reason: String::new(),
            adoptable: HashMap::new(),
            orphaned: HashSet::new(),
            ticks: 0,
            ignored_prices: 0,
            quotes_fetched: 0,
            quote_errors: 0,
            reconciliations: 0,
            adopted: 0,
            closed_externally: 0,
            mismatches: 0,
            last_error: None,
            watched: HashSet::new(),
        }
    }

    /// Starts the monitor supervised (restarted after a stop or a panic) on the current
    /// arbiter.
    pub fn start_supervised(
        db: DatabaseConnection,
        settings: MonitorSettings,
        risk_settings: RiskSettings,
        registry: Addr<SubscriptionRegistryActor>,
        gateway: Addr<OrderGatewayActor>,
    ) -> Addr<Self> {
        crate::supervised::start(move |_| {
            PositionMonitorActor::new(db, settings, risk_settings, registry, gateway)
        })
    }

    // ---- loading and tracking ---------------------------------------------------------

    fn load(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        ctx.wait(
            async move { load_open(&db).await }.into_actor(self).map(
                |loaded, act, ctx| match loaded {
                    Ok(open) => {
                        let legs = open.legs.len();
                        for (strategy, exited) in open.strategies {
                            let run: Vec<&strategy_executions::Model> = exited
                                .iter()
                                .filter(|e| e.run_id == strategy.run_id)
                                .collect();
                            act.book_for(&strategy, &run, ctx);
                        }
                        for leg in open.legs {
                            act.track(leg, ctx);
                        }
                        // Risk actors of runs that ended meanwhile are let go.
                        act.adoptable.clear();
                        let orphaned = std::mem::take(&mut act.orphaned);
                        let gone: Vec<Key> = orphaned
                            .into_iter()
                            .filter(|k| !act.by_key.contains_key(k))
                            .collect();
                        if !gone.is_empty() {
                            act.registry.do_send(Unsubscribe {
                                subscriber: act.subscriber,
                                keys: gone,
                            });
                        }
                        act.loaded = true;
                        tracing::info!(
                            legs,
                            strategies = act.strategies.len(),
                            "open positions loaded"
                        );
                        act.sync_subscriptions(ctx);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "loading open positions failed; retrying");
                        act.last_error = Some(format!("loading open positions: {e}"));
                        ctx.run_later(LOAD_RETRY, |act, ctx| act.load(ctx));
                    }
                },
            ),
        );
    }

    /// The book of a strategy's current run, created (with its risk actor) when missing. A
    /// book of an older run is retired: its actor records nothing for the new run.
    fn book_for(
        &mut self,
        strategy: &strategies::Model,
        exited: &[&strategy_executions::Model],
        ctx: &mut Context<Self>,
    ) {
        if let Some(book) = self.strategies.get(&strategy.id) {
            if book.run_id >= strategy.run_id {
                return;
            }
            let old: Vec<i32> = self
                .legs
                .values()
                .filter(|l| l.model.strategy_id == strategy.id)
                .map(|l| l.model.id)
                .collect();
            for id in old {
                self.untrack(id);
            }
        }
        let mut pnl = RunPnl::new();
        for leg in exited {
            let exit = leg.exit_price.unwrap_or(leg.entry_price);
            pnl.record_exited(
                side_of(leg.action),
                leg.exit_filled_quantity.unwrap_or(leg.quantity) as f64,
                leg.entry_price,
                exit,
            );
        }
        let adopted = self
            .adoptable
            .remove(&strategy.id)
            .filter(|(run, addr)| *run == strategy.run_id && addr.connected())
            .map(|(_, addr)| addr);
        let addr = match adopted {
            Some(addr) => addr,
            None => {
                let risk = StrategyRisk::from_model(strategy, self.risk_settings.default_confirm);
                let settings = self.risk_settings.clone();
                let db = self.db.clone();
                let exits = ctx.address().recipient::<ExitRun>();
                crate::supervised::start(move |_| RiskActor::new(db, settings, risk, exits))
            }
        };
        addr.do_send(SetEvaluating(self.monitoring));
        addr.do_send(self.feed_health());
        self.strategies.insert(
            strategy.id,
            StrategyBook {
                name: strategy.name.clone(),
                run_id: strategy.run_id,
                pnl,
                risk: addr,
                sent: None,
                fresh_until: None,
            },
        );
    }

    fn track(&mut self, model: strategy_executions::Model, ctx: &mut Context<Self>) {
        let key = Key::new(model.exchange.clone(), model.symbol.clone());
        let side = side_of(model.action);
        let Some(book) = self.strategies.get_mut(&model.strategy_id) else {
            tracing::error!(execution_id = model.id, "no book for the leg's strategy");
            return;
        };
        if book.run_id != model.run_id || self.legs.contains_key(&model.id) {
            return;
        }
        book.pnl
            .open_leg(model.id, side, model.quantity as f64, model.entry_price);
        // The new leg has no price yet.
        book.fresh_until = None;
        // A sibling leg on the same instrument already has the latest price.
        let mut copied = None;
        if let Some(ids) = self.by_key.get(&key) {
            for other in ids {
                let Some(o) = self.legs.get(other) else {
                    continue;
                };
                let price = self
                    .strategies
                    .get(&o.model.strategy_id)
                    .and_then(|b| b.pnl.open_legs().iter().find(|l| l.id == *other))
                    .and_then(|l| l.last);
                if price.is_some() {
                    copied = price.map(|p| (p, o.last_feed_at, o.source));
                    break;
                }
            }
        }
        let mut leg = LegBook {
            key: key.clone(),
            side,
            tracked_since: Instant::now(),
            last_feed_at: None,
            source: None,
            model,
        };
        if let Some(((ltp, at), feed_at, source)) = copied
            && let Some(book) = self.strategies.get_mut(&leg.model.strategy_id)
        {
            book.pnl.update_price(&leg.model.id, ltp, at);
            leg.last_feed_at = feed_at;
            leg.source = source;
        }
        let (id, strategy_id) = (leg.model.id, leg.model.strategy_id);
        self.by_key.entry(key).or_default().push(id);
        self.legs.insert(id, leg);
        if self.loaded {
            self.sync_subscriptions(ctx);
        }
        self.push_pnl(strategy_id, None, None);
    }

    /// Forgets a leg (exited, or of a retired run); returns its strategy.
    fn untrack(&mut self, id: i32) -> Option<LegBook> {
        let leg = self.legs.remove(&id)?;
        if let Some(ids) = self.by_key.get_mut(&leg.key) {
            ids.retain(|x| *x != id);
            if ids.is_empty() {
                self.by_key.remove(&leg.key);
            }
        }
        Some(leg)
    }

    /// A leg closed (exit filled, or found closed at the broker); `closed` units of it when the
    /// broker held less (`mismatch` says how much less).
    fn leg_closed(
        &mut self,
        id: i32,
        exit_price: Option<f64>,
        closed: Option<f64>,
        mismatch: Option<String>,
        ctx: &mut Context<Self>,
    ) -> Option<()> {
        let leg = self.untrack(id)?;
        let strategy_id = leg.model.strategy_id;
        let book = self.strategies.get_mut(&strategy_id)?;
        let last = book
            .pnl
            .open_legs()
            .iter()
            .find(|l| l.id == id)
            .and_then(|l| l.last)
            .map(|(p, _)| p);
        let price = exit_price.or(last).unwrap_or(leg.model.entry_price);
        book.pnl.close_leg(&id, price, closed);
        let left = book.pnl.open_legs().len();
        book.risk.do_send(LegClosed {
            execution_id: id,
            open_legs_left: left,
            mismatch,
        });
        if left == 0 {
            // The risk actor records the end of the run and stops by itself.
            self.strategies.remove(&strategy_id);
        } else {
            self.push_pnl(strategy_id, None, None);
        }
        self.sync_subscriptions(ctx);
        Some(())
    }

    // ---- subscriptions and prices -----------------------------------------------------

    fn sync_subscriptions(&mut self, ctx: &mut Context<Self>) {
        self.watch_positions();
        if !self.monitoring {
            return;
        }
        let wanted: HashSet<&Key> = self.by_key.keys().collect();
        let gone: Vec<Key> = self
            .subscribed
            .iter()
            .filter(|k| !wanted.contains(k))
            .cloned()
            .collect();
        let new: Vec<Key> = wanted
            .into_iter()
            .filter(|k| !self.subscribed.contains(*k))
            .cloned()
            .collect();
        if !gone.is_empty() {
            for k in &gone {
                self.subscribed.remove(k);
            }
            self.registry.do_send(Unsubscribe {
                subscriber: self.subscriber,
                keys: gone,
            });
        }
        if new.is_empty() {
            return;
        }
        self.subscribed.extend(new.iter().cloned());
        let request = Subscribe {
            subscriber: self.subscriber,
            label: "position-monitor".into(),
            recipient: ctx.address().recipient(),
            keys: new.iter().map(|k| (k.clone(), Mode::Quote)).collect(),
            holder: Holder::Positions,
        };
        let registry = self.registry.clone();
        ctx.spawn(
            async move { registry.send(request).await }
                .into_actor(self)
                .map(move |answer, act, _ctx| {
                    let error = match answer {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => format!("the subscription registry did not answer: {e}"),
                    };
                    // Unsubscribed legs go stale and are priced over REST instead.
                    tracing::error!(error = %error, symbols = new.len(), "subscribing open legs failed; their prices come from REST quotes");
                    act.last_error = Some(format!("subscribing: {error}"));
                    for k in &new {
                        act.subscribed.remove(k);
                    }
                }),
        );
    }

    /// Tells the order gateway which accounts have open legs: it keeps their position books
    /// fresh, so that a breach finds what the broker holds already read.
    fn watch_positions(&mut self) {
        let accounts: HashSet<i32> = self.legs.values().map(|l| l.model.account_id).collect();
        if accounts != self.watched {
            self.watched = accounts.clone();
            self.gateway.do_send(WatchPositions(accounts));
        }
    }

    /// What the risk actors are told about the feed.
    fn feed_health(&self) -> FeedHealth {
        FeedHealth {
            degraded: self.feed_degraded,
            reason: self.feed_reason.clone(),
        }
    }

    /// No feed price for `stale_after` (counted from when monitoring of the leg began), or the
    /// feed is down.
    fn feed_stale(&self, leg: &LegBook, now: Instant) -> bool {
        let Some(since) = self.monitoring_since else {
            return false;
        };
        if self.feed_degraded {
            return true;
        }
        let start = since.max(leg.tracked_since);
        let reference = leg.last_feed_at.map_or(start, |at| at.max(start));
        is_stale(reference, now, self.settings.stale_after)
    }

    /// Sends the run's P&L to the strategy's risk actor (it evaluates only while monitoring).
    fn push_pnl(&mut self, strategy_id: i32, received_at: Option<Instant>, sent_us: Option<u64>) {
        let now = Instant::now();
        let Some(book) = self.strategies.get(&strategy_id) else {
            return;
        };
        let (fresh, stale_legs, fresh_until) = match book.fresh_until {
            Some(until) if now < until => (true, 0, Some(until)),
            _ => self.staleness(book, now),
        };
        let update = PnlUpdate {
            pnl: book.pnl.pnl(),
            realized: book.pnl.realized(),
            open_legs: book.pnl.open_legs().len(),
            open_qty: book.pnl.open_qty_sum(),
            net_premium: book.pnl.net_premium(),
            fresh,
            stale_legs,
            received_at,
            sent_us,
        };
        book.risk.do_send(update);
        if let Some(book) = self.strategies.get_mut(&strategy_id) {
            book.sent = Some((fresh, stale_legs));
            book.fresh_until = fresh_until;
        }
    }

    /// Whether every leg's price is within `stale_after`, how many legs have no feed price
    /// within it, and (when all are fresh) the earliest instant one could turn stale.
    fn staleness(&self, book: &StrategyBook, now: Instant) -> (bool, usize, Option<Instant>) {
        let stale_after = self.settings.stale_after;
        let mut stale_legs = 0;
        let mut fresh = true;
        let mut until: Option<Instant> = None;
        for open in book.pnl.open_legs() {
            let Some((_, priced_at)) = open.last else {
                fresh = false;
                continue;
            };
            fresh &= !is_stale(priced_at, now, stale_after);
            let mut reference = priced_at;
            if let (Some(leg), Some(since)) = (self.legs.get(&open.id), self.monitoring_since) {
                if self.feed_stale(leg, now) {
                    stale_legs += 1;
                }
                let start = since.max(leg.tracked_since);
                reference = reference.min(leg.last_feed_at.map_or(start, |at| at.max(start)));
            }
            let deadline = reference + stale_after;
            until = Some(until.map_or(deadline, |u| u.min(deadline)));
        }
        let all_fresh = fresh && stale_legs == 0;
        (fresh, stale_legs, until.filter(|_| all_fresh))
    }

    fn on_tick(&mut self, tick: Arc<Tick>) {
        self.ticks += 1;
        let Some(ids) = self.by_key.get(&*tick.key) else {
            return;
        };
        if !self.acceptable(tick.ltp) {
            self.ignored_prices += 1;
            return;
        }
        let mut touched: Vec<i32> = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(leg) = self.legs.get_mut(id) else {
                continue;
            };
            leg.last_feed_at = Some(tick.received_at);
            leg.source = Some(PriceSource::Feed);
            let strategy_id = leg.model.strategy_id;
            if let Some(book) = self.strategies.get_mut(&strategy_id) {
                book.pnl.update_price(id, tick.ltp, tick.received_at);
            }
            if !touched.contains(&strategy_id) {
                touched.push(strategy_id);
            }
        }
        for strategy_id in touched {
            self.push_pnl(strategy_id, Some(tick.received_at), tick.sent_us);
        }
    }

    /// A usable price: above zero, finite, at most `max_price`.
    fn acceptable(&self, ltp: f64) -> bool {
        accept_price(ltp) && ltp <= self.settings.fill_limits.max_price
    }

    /// Periodic check while monitoring: refresh stale legs over REST and tell risk actors
    /// whose staleness changed.
    fn check_stale(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        // A leg whose feed price is late is asked again when its REST price is half stale;
        // while the feed is down, REST is the only source and legs are asked as often as the
        // accounts' rate limits allow.
        let half = if self.feed_degraded {
            (self.settings.stale_after / 2).min(QUOTE_REFRESH_FEED_DOWN)
        } else {
            self.settings.stale_after / 2
        };
        let mut candidates: Vec<(Option<Instant>, i32)> = Vec::new();
        for (id, leg) in &self.legs {
            if !self.feed_stale(leg, now) || self.quotes_in_flight.contains(id) {
                continue;
            }
            let priced_at = self
                .strategies
                .get(&leg.model.strategy_id)
                .and_then(|b| b.pnl.open_legs().iter().find(|l| l.id == *id))
                .and_then(|l| l.last)
                .map(|(_, at)| at);
            if priced_at.is_none_or(|at| is_stale(at, now, half)) {
                candidates.push((priced_at, *id));
            }
        }
        // Oldest price first, so every stale leg gets its turn under the rate limit.
        candidates.sort_by_key(|(at, _)| *at);
        for (_, id) in candidates {
            self.fetch_quote(id, now, ctx);
        }
        let changed: Vec<i32> = self
            .strategies
            .iter()
            .filter(|(_, book)| {
                let stale_legs = book
                    .pnl
                    .open_legs()
                    .iter()
                    .filter(|l| {
                        self.legs
                            .get(&l.id)
                            .is_some_and(|leg| self.feed_stale(leg, now))
                    })
                    .count();
                let fresh = book
                    .pnl
                    .stale_legs(now, self.settings.stale_after)
                    .next()
                    .is_none();
                book.sent != Some((fresh, stale_legs))
            })
            .map(|(id, _)| *id)
            .collect();
        for strategy_id in changed {
            self.push_pnl(strategy_id, None, None);
        }
    }

    /// Every account as a source of quotes, with what the pings and earlier quotes say.
    fn quote_sources(&self) -> Vec<QuoteSource> {
        self.accounts
            .values()
            .map(|a| {
                let reach = self.reach.get(&a.endpoint.id);
                QuoteSource {
                    account_id: a.endpoint.id,
                    reachable: reach.is_none_or(|r| r.reachable),
                    answered_last_ping: reach.is_none_or(|r| r.answered_last_ping),
                    last_quote_failed: a.quote_failed,
                }
            })
            .collect()
    }

    /// Asks for a leg's price over REST through the best account whose rate limit allows it
    /// now: its own while that gateway answers, else any other.
    fn fetch_quote(&mut self, id: i32, now: Instant, ctx: &mut Context<Self>) {
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        let route = quote_route(leg.model.account_id, &self.quote_sources());
        let (exchange, symbol) = (leg.key.exchange.clone(), leg.key.symbol.clone());
        let Some(via) = route.into_iter().find(|account_id| {
            self.accounts
                .get_mut(account_id)
                .is_some_and(|a| a.limiter.try_acquire(now).is_ok())
        }) else {
            return;
        };
        let Some(account) = self.accounts.get(&via) else {
            return;
        };
        let client = account.client.clone();
        self.quotes_in_flight.insert(id);
        ctx.spawn(
            async move { client.quotes(&exchange, &symbol).await }
                .into_actor(self)
                .map(move |answer, act, _ctx| {
                    act.quotes_in_flight.remove(&id);
                    if let Some(a) = act.accounts.get_mut(&via) {
                        a.quote_failed = answer.is_err();
                    }
                    match answer {
                        Ok(q) if act.acceptable(q.ltp) => {
                            act.quotes_fetched += 1;
                            let Some(leg) = act.legs.get_mut(&id) else {
                                return;
                            };
                            leg.source = Some(PriceSource::Rest);
                            let strategy_id = leg.model.strategy_id;
                            if let Some(book) = act.strategies.get_mut(&strategy_id) {
                                book.pnl.update_price(&id, q.ltp, Instant::now());
                            }
                            act.push_pnl(strategy_id, None, None);
                        }
                        Ok(q) => {
                            act.ignored_prices += 1;
                            tracing::warn!(execution_id = id, ltp = q.ltp, "REST quote with a price out of range ignored");
                        }
                        Err(e) => {
                            act.quote_errors += 1;
                            tracing::warn!(execution_id = id, account_id = via, error = %e, "REST quote for a stale leg failed");
                            act.last_error = Some(format!("quote through account {via}: {e}"));
                        }
                    }
                }),
        );
    }

    // ---- reconciliation ---------------------------------------------------------------

    fn reconcile_all(&mut self, ctx: &mut Context<Self>) {
        let ids: Vec<i32> = self.accounts.keys().copied().collect();
        for id in ids {
            self.reconcile(id, ctx);
        }
    }

    fn reconcile(&mut self, account_id: i32, ctx: &mut Context<Self>) {
        let Some(account) = self.accounts.get_mut(&account_id) else {
            return;
        };
        if account.reconciling || account.limiter.try_acquire(Instant::now()).is_err() {
            return;
        }
        account.reconciling = true;
        let confirmations = std::mem::take(&mut account.confirmations);
        let client = account.client.clone();
        let account_name = account.endpoint.name.clone();
        let db = self.db.clone();
        let gateway = self.gateway.clone();
        let prices: HashMap<i32, f64> = self.last_prices(None);
        let limits = self.settings.fill_limits;
        ctx.spawn(
            async move {
                let mut confirmations = confirmations;
                let result = reconcile_account(
                    &db,
                    &client,
                    &gateway,
                    account_id,
                    &account_name,
                    &prices,
                    &mut confirmations,
                    &limits,
                )
                .await;
                (result, confirmations)
            }
            .into_actor(self)
            .map(move |(result, confirmations), act, ctx| {
                if let Some(a) = act.accounts.get_mut(&account_id) {
                    a.reconciling = false;
                    a.confirmations = confirmations;
                }
                act.reconciliations += 1;
                match result {
                    Ok(done) => {
                        act.mismatches += done.mismatches;
                        for (strategy, leg) in done.adopted {
                            act.adopted += 1;
                            act.book_for(&strategy, &[], ctx);
                            act.track(leg, ctx);
                        }
                        for (id, price) in done.closed {
                            act.closed_externally += 1;
                            act.leg_closed(id, price, None, None, ctx);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(account_id, error = %e, "reconciliation with the position book failed");
                        act.last_error = Some(format!("reconciling account {account_id}: {e}"));
                    }
                }
            }),
        );
    }

    /// Latest price per open leg (of one strategy, or all).
    fn last_prices(&self, strategy_id: Option<i32>) -> HashMap<i32, f64> {
        self.strategies
            .iter()
            .filter(|(id, _)| strategy_id.is_none_or(|s| s == **id))
            .flat_map(|(_, b)| b.pnl.open_legs().iter())
            .filter_map(|l| l.last.map(|(p, _)| (l.id, p)))
            .collect()
    }

    // ---- monitoring on/off ------------------------------------------------------------

    fn arm_timers(&mut self, ctx: &mut Context<Self>) {
        for h in self.timers.drain(..) {
            ctx.cancel_future(h);
        }
        let every = (self.settings.stale_after / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        self.timers
            .push(ctx.run_interval(every, |act, ctx| act.check_stale(ctx)));
        if let Some(interval) = self.settings.reconcile_interval {
            self.timers
                .push(ctx.run_interval(interval, |act, ctx| act.reconcile_all(ctx)));
        }
    }

    fn status(&self) -> MonitorStatus {
        let now = Instant::now();
        let mut strategies: Vec<StrategySummary> = self
            .strategies
            .iter()
            .map(|(id, b)| StrategySummary {
                strategy_id: *id,
                strategy: b.name.clone(),
                run_id: b.run_id,
                open_legs: b.pnl.open_legs().len(),
                pnl: b.pnl.pnl(),
                realized: b.pnl.realized(),
                stale_legs: if self.monitoring {
                    b.pnl
                        .open_legs()
                        .iter()
                        .filter(|l| {
                            self.legs
                                .get(&l.id)
                                .is_some_and(|leg| self.feed_stale(leg, now))
                        })
                        .count()
                } else {
                    0
                },
            })
            .collect();
        strategies.sort_by_key(|s| s.strategy_id);
        let state = if self.restarts.faulted() {
            Lifecycle::Faulted
        } else if !self.loaded {
            Lifecycle::Starting
        } else if !self.monitoring {
            Lifecycle::Stopped
        } else if strategies.iter().any(|s| s.stale_legs > 0) {
            Lifecycle::Degraded
        } else {
            Lifecycle::Running
        };
        MonitorStatus {
            state,
            restarts: self.restarts.restarts(),
            monitoring: self.monitoring,
            loaded: self.loaded,
            accounts: self.accounts.len(),
            open_legs: self.legs.len(),
            subscribed_symbols: self.subscribed.len(),
            ticks: self.ticks,
            ignored_prices: self.ignored_prices,
            quotes_fetched: self.quotes_fetched,
            quote_errors: self.quote_errors,
            reconciliations: self.reconciliations,
            adopted: self.adopted,
            closed_externally: self.closed_externally,
            mismatches: self.mismatches,
            feed_degraded: self.monitoring && self.feed_degraded,
            last_error: self.last_error.clone(),
            strategies,
        }
    }

    fn positions(&self) -> Vec<PositionView> {
        let now = Instant::now();
        let mut out: Vec<PositionView> = self
            .legs
            .values()
            .map(|leg| {
                let m = &leg.model;
                let book = self.strategies.get(&m.strategy_id);
                let last = book
                    .and_then(|b| b.pnl.open_legs().iter().find(|l| l.id == m.id))
                    .and_then(|l| l.last);
                PositionView {
                    execution_id: m.id,
                    strategy_id: m.strategy_id,
                    strategy: book.map(|b| b.name.clone()).unwrap_or_default(),
                    run_id: m.run_id,
                    account_id: m.account_id,
                    exchange: m.exchange.clone(),
                    symbol: m.symbol.clone(),
                    product: m.product,
                    action: m.action,
                    quantity: m.quantity,
                    entry_price: m.entry_price,
                    status: m.status,
                    ltp: last.map(|(p, _)| p),
                    pnl: last.map(|(p, _)| leg_pnl(leg.side, m.quantity as f64, m.entry_price, p)),
                    price_age_ms: last.map(|(_, at)| age_ms(at)),
                    price_source: leg.source,
                    stale: self.monitoring && self.feed_stale(leg, now),
                }
            })
            .collect();
        out.sort_by_key(|p| p.execution_id);
        out
    }
}

impl Actor for PositionMonitorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Ticks of open positions must never be dropped or coalesced away.
        ctx.set_mailbox_capacity(MAILBOX);
        if self.restarts.faulted() {
            return;
        }
        self.gateway
            .do_send(AttachExitListener(ctx.address().recipient()));
        if !self.loaded {
            self.load(ctx);
        }
        if self.monitoring {
            self.arm_timers(ctx);
        }
    }
}

impl actix::Supervised for PositionMonitorActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts.on_restart("PositionMonitorActor");
        self.timers.clear();
        self.quotes_in_flight.clear();
        for a in self.accounts.values_mut() {
            a.reconciling = false;
            a.confirmations = Confirmations::default();
        }
        // A handler cut short may have left the books half updated: the open legs and runs
        // are read again from the database at start. The risk actors keep running and are
        // taken back by run; the keys held are subscribed again once the legs are loaded (the
        // registry then resends their last prices).
        self.adoptable = self
            .strategies
            .drain()
            .map(|(id, book)| (id, (book.run_id, book.risk)))
            .collect();
        self.legs.clear();
        self.by_key.clear();
        self.watched.clear();
        self.orphaned.extend(self.subscribed.drain());
        self.loaded = false;
        if self.monitoring {
            // Legs are fresh again from the restart (their prices come back with the load).
            self.monitoring_since = Some(Instant::now());
        }
    }
}

impl Handler<InjectPanic> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!("fault injected into the position monitor");
    }
}

impl Handler<InjectRiskPanic> for PositionMonitorActor {
    type Result = bool;

    fn handle(&mut self, msg: InjectRiskPanic, _ctx: &mut Context<Self>) -> bool {
        match self.strategies.get(&msg.0) {
            Some(book) => {
                book.risk.do_send(InjectPanic);
                true
            }
            None => false,
        }
    }
}

impl Handler<FeedHealth> for PositionMonitorActor {
    type Result = ();

    /// The feed went down (every open leg is priced over REST at once) or came back.
    fn handle(&mut self, msg: FeedHealth, ctx: &mut Context<Self>) {
        if msg.degraded {
            tracing::warn!(legs = self.legs.len(), reason = %msg.reason, "feed down: open legs priced over REST quotes");
        } else if self.feed_degraded {
            tracing::info!("feed live again: open legs priced by the feed");
        }
        self.feed_degraded = msg.degraded;
        self.feed_reason = msg.reason;
        for book in self.strategies.values_mut() {
            book.fresh_until = None;
            book.risk.do_send(FeedHealth {
                degraded: self.feed_degraded,
                reason: self.feed_reason.clone(),
            });
        }
        if self.monitoring && self.loaded {
            self.check_stale(ctx);
        }
    }
}

impl Handler<AccountsReach> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, msg: AccountsReach, _ctx: &mut Context<Self>) {
        self.reach = msg.0.into_iter().map(|r| (r.account_id, r)).collect();
    }
}

impl Handler<SetAccounts> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, msg: SetAccounts, _ctx: &mut Context<Self>) {
        let per_s = self.settings.quote_fallback_per_s;
        let mut next: HashMap<i32, AccountRest> = HashMap::new();
        for endpoint in msg.0 {
            let kept = self
                .accounts
                .remove(&endpoint.id)
                .filter(|a| a.endpoint == endpoint);
            let account = kept.unwrap_or_else(|| AccountRest {
                client: RestClient::new(
                    &endpoint.rest_url,
                    &endpoint.api_key,
                    self.settings.rest_timeout,
                ),
                limiter: RateLimiter::new(per_s, Duration::from_secs(1)),
                reconciling: false,
                confirmations: Confirmations::default(),
                quote_failed: false,
                endpoint,
            });
            next.insert(account.endpoint.id, account);
        }
        self.accounts = next;
    }
}

impl Handler<StartMonitoring> for PositionMonitorActor {
    type Result = Result<(), MonitorError>;

    fn handle(&mut self, _: StartMonitoring, ctx: &mut Context<Self>) -> Self::Result {
        if !self.settings.enabled {
            return Err(MonitorError::Conflict(
                "position monitoring is disabled (position_monitor.enabled = false)".into(),
            ));
        }
        if self.monitoring {
            return Ok(());
        }
        tracing::info!(legs = self.legs.len(), "position monitoring started");
        self.monitoring = true;
        self.monitoring_since = Some(Instant::now());
        for book in self.strategies.values() {
            book.risk.do_send(SetEvaluating(true));
        }
        self.arm_timers(ctx);
        if self.loaded {
            self.sync_subscriptions(ctx);
            let ids: Vec<i32> = self.strategies.keys().copied().collect();
            for id in ids {
                self.push_pnl(id, None, None);
            }
        }
        Ok(())
    }
}

/// The supervisor's market-hours signal: start or stop monitoring.
impl Handler<MarketHours> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, msg: MarketHours, ctx: &mut Context<Self>) {
        if msg.0 {
            if let Err(e) = <Self as Handler<StartMonitoring>>::handle(self, StartMonitoring, ctx) {
                tracing::warn!(error = %e, "position monitoring not started");
            }
        } else {
            <Self as Handler<StopMonitoring>>::handle(self, StopMonitoring, ctx);
        }
    }
}

impl Handler<StopMonitoring> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, _: StopMonitoring, ctx: &mut Context<Self>) {
        if !self.monitoring {
            return;
        }
        tracing::info!("position monitoring stopped; exits in flight go on");
        self.monitoring = false;
        self.monitoring_since = None;
        for h in self.timers.drain(..) {
            ctx.cancel_future(h);
        }
        for book in self.strategies.values() {
            book.risk.do_send(SetEvaluating(false));
        }
        self.subscribed.clear();
        self.registry.do_send(ReleaseAll {
            subscriber: self.subscriber,
        });
    }
}

impl Handler<FeedEvent> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, msg: FeedEvent, _ctx: &mut Context<Self>) {
        match msg {
            FeedEvent::Tick(tick) => self.on_tick(tick),
            FeedEvent::Rejected { key, message } => {
                tracing::error!(key = %key, reason = %message, "the gateway refused an open leg's symbol; it is priced over REST");
                self.last_error = Some(format!("{key} refused by the feed: {message}"));
            }
        }
    }
}

impl Handler<RegisterExecution> for PositionMonitorActor {
    type Result = ResponseActFuture<Self, Result<strategy_executions::Model, MonitorError>>;

    fn handle(&mut self, msg: RegisterExecution, _ctx: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let limits = self.settings.fill_limits;
        Box::pin(
            async move { register_execution(&db, msg.0, &limits).await }
                .into_actor(self)
                .map(|result, act, ctx| {
                    let (leg, strategy) = result?;
                    tracing::info!(execution_id = leg.id, strategy_id = leg.strategy_id, run_id = leg.run_id, symbol = %leg.symbol, "execution registered");
                    act.book_for(&strategy, &[], ctx);
                    act.track(leg.clone(), ctx);
                    Ok(leg)
                }),
        )
    }
}

impl Handler<ExitReport> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, msg: ExitReport, ctx: &mut Context<Self>) {
        match msg {
            ExitReport::LegExited {
                execution_id,
                exit_price,
                filled,
                mismatch,
                ..
            } => {
                let closed = mismatch.is_some().then_some(filled as f64);
                self.leg_closed(execution_id, exit_price, closed, mismatch, ctx);
            }
            ExitReport::LegFailed {
                execution_id,
                strategy_id,
                message,
                ..
            } => match self.strategies.get(&strategy_id) {
                Some(book) => book.risk.do_send(LegExitFailed {
                    execution_id,
                    message,
                }),
                None => {
                    tracing::error!(
                        execution_id,
                        strategy_id,
                        "exit failed for a leg without a risk actor: {message}"
                    )
                }
            },
        }
    }
}

impl Handler<ExitRun> for PositionMonitorActor {
    type Result = ResponseFuture<Result<ExitTicket, String>>;

    fn handle(&mut self, msg: ExitRun, _ctx: &mut Context<Self>) -> Self::Result {
        let request = RequestExit {
            scope: ExitScope::Run {
                strategy_id: msg.strategy_id,
                run_id: msg.run_id,
            },
            reason: msg.reason,
            last_prices: self.last_prices(Some(msg.strategy_id)),
        };
        let gateway = self.gateway.clone();
        Box::pin(async move {
            match gateway.send(request).await {
                Ok(Ok(ticket)) => Ok(ticket),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("the order gateway did not answer: {e}")),
            }
        })
    }
}

impl Handler<ManualExitStrategy> for PositionMonitorActor {
    type Result = ResponseFuture<Result<ExitTicket, MonitorError>>;

    fn handle(&mut self, msg: ManualExitStrategy, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(book) = self.strategies.get(&msg.0) else {
            return Box::pin(async move {
                Err(MonitorError::Conflict(format!(
                    "strategy {} has no open legs to exit",
                    msg.0
                )))
            });
        };
        let risk = book.risk.clone();
        Box::pin(async move {
            match risk.send(ManualExit).await {
                Ok(Ok(ticket)) => Ok(ticket),
                Ok(Err(e)) => Err(MonitorError::Conflict(e)),
                Err(e) => Err(MonitorError::Internal(format!(
                    "the risk actor did not answer: {e}"
                ))),
            }
        })
    }
}

impl Handler<KillSwitch> for PositionMonitorActor {
    type Result = ResponseFuture<Result<KillSwitchReport, MonitorError>>;

    fn handle(&mut self, _: KillSwitch, _ctx: &mut Context<Self>) -> Self::Result {
        tracing::warn!(
            strategies = self.strategies.len(),
            legs = self.legs.len(),
            "KILL SWITCH: pausing every risk actor and exiting every open leg"
        );
        let actors: Vec<(i32, Addr<RiskActor>)> = self
            .strategies
            .iter()
            .map(|(id, b)| (*id, b.risk.clone()))
            .collect();
        let last_prices = self.last_prices(None);
        let gateway = self.gateway.clone();
        Box::pin(async move {
            let mut report = KillSwitchReport {
                strategies_paused: Vec::new(),
                exits: ExitTicket::default(),
                errors: Vec::new(),
            };
            let pauses = actors
                .iter()
                .map(|(_, a)| a.send(Pause { kill_switch: true }));
            for ((id, _), answer) in actors
                .iter()
                .zip(futures_util::future::join_all(pauses).await)
            {
                match answer {
                    Ok(Ok(())) => report.strategies_paused.push(*id),
                    Ok(Err(e)) => report.errors.push(format!("strategy {id}: {e}")),
                    Err(e) => report
                        .errors
                        .push(format!("strategy {id}: the risk actor did not answer: {e}")),
                }
            }
            report.strategies_paused.sort_unstable();
            // Exits go out even if a pause could not be recorded: flattening comes first.
            let request = RequestExit {
                scope: ExitScope::All,
                reason: ExitReason::KillSwitch,
                last_prices,
            };
            match gateway.send(request).await {
                Ok(Ok(ticket)) => report.exits = ticket,
                Ok(Err(e)) => return Err(MonitorError::Internal(e.to_string())),
                Err(e) => {
                    return Err(MonitorError::Internal(format!(
                        "the order gateway did not answer: {e}"
                    )));
                }
            }
            Ok(report)
        })
    }
}

impl Handler<ResumeStrategy> for PositionMonitorActor {
    type Result = ResponseFuture<Result<(), MonitorError>>;

    fn handle(&mut self, msg: ResumeStrategy, _ctx: &mut Context<Self>) -> Self::Result {
        let strategy_id = msg.0;
        match self.strategies.get(&strategy_id) {
            Some(book) => {
                let risk = book.risk.clone();
                Box::pin(async move {
                    match risk.send(Resume).await {
                        Ok(r) => r.map_err(MonitorError::Internal),
                        Err(e) => Err(MonitorError::Internal(format!(
                            "the risk actor did not answer: {e}"
                        ))),
                    }
                })
            }
            // No run in progress: the next run starts monitored.
            None => {
                let db = self.db.clone();
                Box::pin(async move { resume_idle(&db, strategy_id).await })
            }
        }
    }
}

impl Handler<StrategyChanged> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, msg: StrategyChanged, _ctx: &mut Context<Self>) {
        let s = msg.0;
        if let Some(book) = self.strategies.get_mut(&s.id) {
            book.name = s.name.clone();
            book.risk.do_send(SetLimits {
                limits: crate::risk::limits_of(&s, self.risk_settings.default_confirm),
                name: s.name,
            });
        }
    }
}

impl Handler<GetPositions> for PositionMonitorActor {
    type Result = MessageResult<GetPositions>;

    fn handle(&mut self, _: GetPositions, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.positions())
    }
}

impl Handler<GetMonitorStatus> for PositionMonitorActor {
    type Result = MessageResult<GetMonitorStatus>;

    fn handle(&mut self, _: GetMonitorStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<GetRiskStatuses> for PositionMonitorActor {
    type Result = ResponseFuture<Vec<RiskStatus>>;

    /// Every risk actor's status; one that does not answer within a short time is listed as
    /// Faulted with the reason, never left out.
    fn handle(&mut self, _: GetRiskStatuses, _ctx: &mut Context<Self>) -> Self::Result {
        let actors: Vec<(i32, String, i32, Addr<RiskActor>)> = self
            .strategies
            .iter()
            .map(|(id, b)| (*id, b.name.clone(), b.run_id, b.risk.clone()))
            .collect();
        Box::pin(async move {
            let asks = actors
                .iter()
                .map(|(_, _, _, a)| a.send(GetRiskStatus).timeout(RISK_STATUS_WITHIN));
            let answers = futures_util::future::join_all(asks).await;
            let mut out: Vec<RiskStatus> = actors
                .into_iter()
                .zip(answers)
                .map(|((id, name, run_id, _), answer)| {
                    answer.unwrap_or_else(|e| {
                        RiskStatus::silent(
                            id,
                            name,
                            run_id,
                            format!("the risk actor did not answer: {e}"),
                        )
                    })
                })
                .collect();
            out.sort_by_key(|s| s.strategy_id);
            out
        })
    }
}

// ---- database ----------------------------------------------------------------------------

const OPEN: [ExecutionStatus; 2] = [ExecutionStatus::Entered, ExecutionStatus::ExitPending];

struct OpenBook {
    /// Strategies with open legs, with their exited legs (any run).
    strategies: Vec<(strategies::Model, Vec<strategy_executions::Model>)>,
    legs: Vec<strategy_executions::Model>,
}

async fn load_open(db: &DatabaseConnection) -> Result<OpenBook, DbErr> {
    use strategy_executions::Column as C;
    let legs = strategy_executions::Entity::find()
        .filter(C::Status.is_in(OPEN))
        .all(db)
        .await?;
    let ids: HashSet<i32> = legs.iter().map(|l| l.strategy_id).collect();
    let strategies = strategies::Entity::find()
        .filter(strategies::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    let mut out = Vec::new();
    for s in strategies {
        let exited = strategy_executions::Entity::find()
            .filter(C::StrategyId.eq(s.id))
            .filter(C::RunId.eq(s.run_id))
            .filter(C::Status.eq(ExecutionStatus::Exited))
            .all(db)
            .await?;
        out.push((s, exited));
    }
    let runs: HashMap<i32, i32> = out.iter().map(|(s, _)| (s.id, s.run_id)).collect();
    // Open legs of an older run than the strategy's current one cannot exist by construction;
    // they are kept out rather than mixed into the wrong run.
    let legs = legs
        .into_iter()
        .filter(|l| {
            let current = runs.get(&l.strategy_id) == Some(&l.run_id);
            if !current {
                tracing::error!(execution_id = l.id, "open leg of a finished run ignored");
            }
            current
        })
        .collect();
    Ok(OpenBook {
        strategies: out,
        legs,
    })
}

fn invalid(field: &'static str, message: impl Into<String>) -> MonitorError {
    MonitorError::Invalid {
        field,
        message: message.into(),
    }
}

/// Checks a fill before it is recorded: fields present, and quantity, price, notional and the
/// exit orders it would need within `limits`.
pub fn validate_execution(new: &NewExecution, limits: &FillLimits) -> Result<(), MonitorError> {
    if new.symbol.trim().is_empty() {
        return Err(invalid("symbol", "must not be empty"));
    }
    if new.exchange.trim().is_empty() {
        return Err(invalid("exchange", "must not be empty"));
    }
    check_fill(
        new.quantity,
        new.entry_price,
        new.freeze_qty,
        new.lot_size,
        limits,
    )
    .map_err(|e| invalid(e.field, e.message))?;
    // check_fill made the lot size at least 1.
    if let Some(lot) = new.lot_size
        && new.quantity % lot != 0
    {
        return Err(invalid(
            "quantity",
            format!(
                "{} is not a whole number of lots of {lot}; brokers reject such orders",
                new.quantity
            ),
        ));
    }
    Ok(())
}

/// Records a fill. The strategy row is written first, which serialises registrations of one
/// strategy on every backend, so exactly one of two concurrent first fills starts the run.
pub async fn register_execution(
    db: &DatabaseConnection,
    new: NewExecution,
    limits: &FillLimits,
) -> Result<(strategy_executions::Model, strategies::Model), MonitorError> {
    use strategies::Column as S;
    validate_execution(&new, limits)?;
    let now = Utc::now();
    let txn = crate::db::begin_write(db).await?;
    let locked = strategies::Entity::update_many()
        .col_expr(S::UpdatedAt, Expr::value(now))
        .filter(S::Id.eq(new.strategy_id))
        .exec(&txn)
        .await?;
    if locked.rows_affected == 0 {
        return Err(MonitorError::NotFound(format!(
            "strategy {} does not exist",
            new.strategy_id
        )));
    }
    if trading_accounts::Entity::find_by_id(new.account_id)
        .one(&txn)
        .await?
        .is_none()
    {
        return Err(MonitorError::NotFound(format!(
            "account {} does not exist",
            new.account_id
        )));
    }
    let open = strategy_executions::Entity::find()
        .filter(strategy_executions::Column::StrategyId.eq(new.strategy_id))
        .filter(strategy_executions::Column::Status.is_in(OPEN))
        .count(&txn)
        .await?;
    let mut strategy = strategies::Entity::find_by_id(new.strategy_id)
        .one(&txn)
        .await?
        .ok_or_else(|| {
            MonitorError::NotFound(format!("strategy {} does not exist", new.strategy_id))
        })?;
    if open == 0 {
        // A new run: risk state starts clean (an operator's pause stays).
        let state = if strategy.risk_state == RiskState::Paused {
            RiskState::Paused
        } else {
            RiskState::Monitoring
        };
        strategy = strategies::ActiveModel {
            id: Set(strategy.id),
            run_id: Set(strategy.run_id + 1),
            run_started_at: Set(Some(now)),
            risk_state: Set(state),
            peak_pnl: Set(0.0),
            stop_level: Set(None),
            max_loss_latched: Set(false),
            max_profit_latched: Set(false),
            trailing_latched: Set(false),
            risk_updated_at: Set(Some(now)),
            ..Default::default()
        }
        .update(&txn)
        .await?;
    }
    let leg = strategy_executions::ActiveModel {
        strategy_id: Set(new.strategy_id),
        account_id: Set(new.account_id),
        run_id: Set(strategy.run_id),
        symbol: Set(new.symbol.trim().to_string()),
        exchange: Set(new.exchange.trim().to_string()),
        product: Set(new.product),
        action: Set(new.action),
        quantity: Set(new.quantity),
        entry_price: Set(new.entry_price),
        status: Set(ExecutionStatus::Entered),
        entry_order_id: Set(new.entry_order_id),
        entered_at: Set(now),
        freeze_qty: Set(new.freeze_qty),
        lot_size: Set(new.lot_size),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok((leg, strategy))
}

/// Resumes a strategy without a run in progress (no risk actor): its next run is monitored.
async fn resume_idle(db: &DatabaseConnection, strategy_id: i32) -> Result<(), MonitorError> {
    let txn = crate::db::begin_write(db).await?;
    let Some(s) = strategies::Entity::find_by_id(strategy_id)
        .one(&txn)
        .await?
    else {
        return Err(MonitorError::NotFound(format!(
            "strategy {strategy_id} does not exist"
        )));
    };
    if !matches!(s.risk_state, RiskState::Paused | RiskState::ExitFailed) {
        return Ok(());
    }
    strategies::ActiveModel {
        id: Set(s.id),
        risk_state: Set(RiskState::Monitoring),
        risk_updated_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(&txn)
    .await?;
    risk_events::ActiveModel {
        strategy_id: Set(s.id),
        run_id: Set(s.run_id),
        event_type: Set(entity::risk_events::RiskEventType::Resumed),
        pnl: Set(0.0),
        action: Set("risk monitoring resumed by an operator".into()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(())
}

struct Reconciled {
    adopted: Vec<(strategies::Model, strategy_executions::Model)>,
    /// Legs marked exited (closed at the broker), with the price used.
    closed: Vec<(i32, Option<f64>)>,
    mismatches: u64,
}

/// One account's reconciliation: position book against the tracked legs.
#[allow(clippy::too_many_arguments)]
async fn reconcile_account(
    db: &DatabaseConnection,
    client: &RestClient,
    gateway: &Addr<OrderGatewayActor>,
    account_id: i32,
    account_name: &str,
    prices: &HashMap<i32, f64>,
    confirmations: &mut Confirmations,
    limits: &FillLimits,
) -> Result<Reconciled, String> {
    use strategy_executions::Column as C;
    let book = client.position_book().await.map_err(|e| e.to_string())?;
    let in_gateway: HashSet<i32> = gateway
        .send(GetGatewayStatus)
        .await
        .map_err(|e| format!("the order gateway did not answer: {e}"))?
        .exits
        .iter()
        .map(|e| e.execution_id)
        .collect();
    let legs = strategy_executions::Entity::find()
        .filter(C::AccountId.eq(account_id))
        .filter(C::Status.is_in(OPEN))
        .all(db)
        .await
        .map_err(|e| e.to_string())?;
    let ids: Vec<i32> = legs.iter().map(|l| l.id).collect();
    let requests = exit_requests::Entity::find()
        .filter(exit_requests::Column::ExecutionId.is_in(ids))
        .all(db)
        .await
        .map_err(|e| e.to_string())?;
    let norm = |s: &str| s.to_ascii_uppercase();
    let mut tracked: HashMap<reconcile::PositionKey, TrackedPosition> = HashMap::new();
    for l in &legs {
        let key = (
            l.exchange.clone(),
            l.symbol.clone(),
            norm(l.product.as_str()),
        );
        let filled: i64 = requests
            .iter()
            .filter(|r| r.execution_id == l.id)
            .map(filled_units)
            .sum();
        let remaining = (l.quantity - filled).max(0);
        let t = tracked.entry(key.clone()).or_insert(TrackedPosition {
            key,
            expected_net: 0,
            exit_in_flight: false,
        });
        let signed = match l.action {
            TradeAction::Buy => remaining,
            TradeAction::Sell => remaining.saturating_neg(),
        };
        t.expected_net = t.expected_net.saturating_add(signed);
        t.exit_in_flight |= l.status == ExecutionStatus::ExitPending || in_gateway.contains(&l.id);
    }
    let broker: Vec<BrokerPosition> = book
        .iter()
        .map(|p| BrokerPosition {
            key: (p.exchange.clone(), p.symbol.clone(), norm(&p.product)),
            net: p.quantity.round() as i64,
            average_price: p
                .average_price
                .filter(|v| *v > 0.0)
                .or(p.ltp.filter(|v| *v > 0.0)),
        })
        .collect();
    let broker_ltp = |key: &reconcile::PositionKey| {
        book.iter()
            .find(|p| p.exchange == key.0 && p.symbol == key.1 && norm(&p.product) == key.2)
            .and_then(|p| p.ltp.filter(|v| *v > 0.0))
    };
    let tracked: Vec<TrackedPosition> = tracked.into_values().collect();
    let mut done = Reconciled {
        adopted: Vec::new(),
        closed: Vec::new(),
        mismatches: 0,
    };
    for action in confirmations.confirmed(reconcile::reconcile(&broker, &tracked)) {
        match action {
            Action::Adopt {
                key,
                net,
                average_price,
            } => {
                let (Some(entry), Ok(product)) = (average_price, key.2.parse::<Product>()) else {
                    tracing::warn!(account_id, exchange = %key.0, symbol = %key.1, product = %key.2, "broker position without a price or with an unknown product; not adopted");
                    done.mismatches += 1;
                    continue;
                };
                let strategy = manual_strategy(db, account_name)
                    .await
                    .map_err(|e| e.to_string())?;
                let new = NewExecution {
                    strategy_id: strategy.id,
                    account_id,
                    symbol: key.1.clone(),
                    exchange: key.0.clone(),
                    product,
                    action: if net > 0 {
                        TradeAction::Buy
                    } else {
                        TradeAction::Sell
                    },
                    quantity: net.abs(),
                    entry_price: entry,
                    entry_order_id: None,
                    freeze_qty: None,
                    lot_size: None,
                };
                match register_execution(db, new, limits).await {
                    Ok((leg, strategy)) => {
                        tracing::warn!(account_id, execution_id = leg.id, symbol = %leg.symbol, quantity = net, "untracked broker position adopted into {}", strategy.name);
                        done.adopted.push((strategy, leg));
                    }
                    Err(e) => {
                        tracing::error!(account_id, symbol = %key.1, error = %e, "adopting a broker position failed");
                        done.mismatches += 1;
                    }
                }
            }
            Action::ClosedExternally { key, .. } => {
                let ltp = broker_ltp(&key);
                for l in legs.iter().filter(|l| {
                    l.exchange == key.0 && l.symbol == key.1 && norm(l.product.as_str()) == key.2
                }) {
                    let price = ltp.or_else(|| prices.get(&l.id).copied());
                    match close_externally(db, l, price).await {
                        Ok(true) => {
                            tracing::warn!(account_id, execution_id = l.id, symbol = %l.symbol, "position gone at the broker; leg marked exited (closed_externally)");
                            done.closed.push((l.id, price));
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(execution_id = l.id, error = %e, "recording an externally closed leg failed")
                        }
                    }
                }
            }
            Action::Mismatch {
                key,
                broker_net,
                expected_net,
            } => {
                tracing::warn!(account_id, exchange = %key.0, symbol = %key.1, product = %key.2, broker_net, expected_net, "broker position differs from the tracked legs; left unchanged");
                done.mismatches += 1;
            }
        }
    }
    Ok(done)
}

/// The account's `manual:<account name>` strategy (no limits), created when missing.
async fn manual_strategy(
    db: &DatabaseConnection,
    account_name: &str,
) -> Result<strategies::Model, DbErr> {
    let name = format!("manual:{account_name}");
    let find = || {
        strategies::Entity::find()
            .filter(strategies::Column::Name.eq(name.clone()))
            .one(db)
    };
    if let Some(s) = find().await? {
        return Ok(s);
    }
    let created = strategies::ActiveModel {
        name: Set(name.clone()),
        description: Set(Some(
            "Broker positions found without a registered execution (reconciliation)".into(),
        )),
        ..Default::default()
    }
    .insert(db)
    .await;
    match created {
        Ok(s) => Ok(s),
        // Created concurrently: use that one.
        Err(e) => find().await?.ok_or(e),
    }
}

/// Marks an open (not exiting) leg exited because its position is gone at the broker.
async fn close_externally(
    db: &DatabaseConnection,
    leg: &strategy_executions::Model,
    price: Option<f64>,
) -> Result<bool, DbErr> {
    use strategy_executions::Column as C;
    let now = Utc::now();
    let realized =
        price.map(|p| leg_pnl(side_of(leg.action), leg.quantity as f64, leg.entry_price, p));
    let updated = strategy_executions::Entity::update_many()
        .col_expr(C::Status, Expr::value(ExecutionStatus::Exited))
        .col_expr(C::ExitReason, Expr::value(ExitReason::ClosedExternally))
        .col_expr(C::ExitPrice, Expr::value(price))
        .col_expr(C::RealizedPnl, Expr::value(realized))
        .col_expr(C::ExitedAt, Expr::value(now))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .filter(C::Id.eq(leg.id))
        .filter(C::Status.eq(ExecutionStatus::Entered))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}
