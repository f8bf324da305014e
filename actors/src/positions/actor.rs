//! The `PositionMonitorActor`: the leg book, the subscriptions of the open legs' instruments,
//! the P&L sent to each run's risk actor, and the risk actors' lifecycle. Message handlers
//! are in `handlers.rs`.

mod handlers;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use entity::strategies;
use entity::strategy_executions;

use super::quotes::{FetchQuote, QuoteActor, QuoteError};
use super::reconcile::{ReconcileActor, Reconciling};
use super::store::load_open;
use super::{MonitorSettings, MonitorStatus, PositionView, StrategySummary};
use crate::domain::book::{Leg, OpenRun, PositionBook, Track};
use crate::domain::pnl::{accept_price, leg_pnl};
use crate::feed::{
    Holder, Key, Mode, Subscribe, SubscriberId, SubscriptionRegistryActor, Tick, Unsubscribe,
    next_subscriber_id,
};
use crate::orders::{OrderGatewayActor, WatchPositions, side_of};
use crate::risk::{PnlUpdate, RiskActor, RiskSettings, SetEvaluating, StrategyRisk};
use crate::status::{Lifecycle, age_ms};
use crate::supervised::RestartTracker;
use crate::supervisor::FeedHealth;

/// Mailbox size: large enough that the feed never finds it full (ticks are not dropped).
const MAILBOX: usize = 1 << 20;
/// Retry delay after the open legs could not be loaded.
const LOAD_RETRY: Duration = Duration::from_secs(2);
/// While the feed is down, a leg priced over REST less than this long ago is not asked again.
const QUOTE_REFRESH_FEED_DOWN: Duration = Duration::from_secs(1);

pub struct PositionMonitorActor {
    db: sea_orm::DatabaseConnection,
    settings: MonitorSettings,
    risk_settings: RiskSettings,
    registry: Addr<SubscriptionRegistryActor>,
    gateway: Addr<OrderGatewayActor>,
    quotes: Addr<QuoteActor>,
    reconciler: Addr<ReconcileActor>,
    subscriber: SubscriberId,
    book: PositionBook<strategy_executions::Model>,
    /// The risk actor of each strategy's current run.
    risk: HashMap<i32, Addr<RiskActor>>,
    subscribed: HashSet<Key>,
    monitoring: bool,
    loaded: bool,
    stale_timer: Option<SpawnHandle>,
    quotes_in_flight: HashSet<i32>,
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
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        db: sea_orm::DatabaseConnection,
        settings: MonitorSettings,
        risk_settings: RiskSettings,
        registry: Addr<SubscriptionRegistryActor>,
        gateway: Addr<OrderGatewayActor>,
        quotes: Addr<QuoteActor>,
        reconciler: Addr<ReconcileActor>,
    ) -> Self {
        Self {
            restarts: RestartTracker::new(settings.supervision),
            book: PositionBook::new(settings.stale_after),
            db,
            settings,
            risk_settings,
            registry,
            gateway,
            quotes,
            reconciler,
            subscriber: next_subscriber_id(),
            risk: HashMap::new(),
            subscribed: HashSet::new(),
            monitoring: false,
            loaded: false,
            stale_timer: None,
            quotes_in_flight: HashSet::new(),
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
                            act.open_run(&strategy, &run);
                        }
                        for leg in open.legs {
                            act.track(leg, ctx);
                        }
                        // Risk actors of runs that ended meanwhile are let go.
                        act.adoptable.clear();
                        let orphaned = std::mem::take(&mut act.orphaned);
                        let gone: Vec<Key> = orphaned
                            .into_iter()
                            .filter(|k| !act.book.follows(k))
                            .collect();
                        if !gone.is_empty() {
                            act.registry.do_send(Unsubscribe {
                                subscriber: act.subscriber,
                                keys: gone,
                            });
                        }
                        act.loaded = true;
                        tracing::info!(legs, strategies = act.risk.len(), "open positions loaded");
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
    fn open_run(&mut self, strategy: &strategies::Model, exited: &[&strategy_executions::Model]) {
        let exited = exited.iter().map(|leg| {
            (
                side_of(leg.action),
                leg.exit_filled_quantity.unwrap_or(leg.quantity) as f64,
                leg.entry_price,
                leg.exit_price.unwrap_or(leg.entry_price),
            )
        });
        let opened = self
            .book
            .open_run(strategy.id, strategy.run_id, &strategy.name, exited);
        if opened == OpenRun::Known {
            return;
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
                let gateway = self.gateway.clone();
                crate::supervised::start(move |_| RiskActor::new(db, settings, risk, gateway))
            }
        };
        addr.do_send(SetEvaluating(self.monitoring));
        addr.do_send(self.feed_health());
        self.risk.insert(strategy.id, addr);
    }

    fn track(&mut self, model: strategy_executions::Model, ctx: &mut Context<Self>) {
        let leg = Leg {
            id: model.id,
            strategy_id: model.strategy_id,
            run_id: model.run_id,
            account_id: model.account_id,
            key: Key::new(model.exchange.clone(), model.symbol.clone()),
            side: side_of(model.action),
            quantity: model.quantity as f64,
            entry_price: model.entry_price,
            data: model,
        };
        let (id, strategy_id) = (leg.id, leg.strategy_id);
        match self.book.track(leg, Instant::now()) {
            Track::Tracked => {}
            Track::Ignored => return,
            Track::NoRun => {
                tracing::error!(execution_id = id, "no book for the leg's strategy");
                return;
            }
        }
        if self.loaded {
            self.sync_subscriptions(ctx);
        }
        self.push_pnl(strategy_id, None, None);
    }

    /// A leg closed (exit filled, or found closed at the broker); `closed` units of it when the
    /// broker held less. The run's risk actor gets the run's figures without it; with no open
    /// leg left it records the end of the run and stops by itself.
    fn leg_closed(
        &mut self,
        id: i32,
        exit_price: Option<f64>,
        closed: Option<f64>,
        ctx: &mut Context<Self>,
    ) -> Option<()> {
        let closed = self.book.close(id, exit_price, closed, Instant::now())?;
        let strategy_id = closed.strategy_id;
        if let Some(risk) = self.risk.get(&strategy_id) {
            risk.do_send(PnlUpdate {
                figures: closed.figures,
                received_at: None,
                sent_us: None,
            });
        }
        if closed.figures.open_legs == 0 {
            self.risk.remove(&strategy_id);
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
        let wanted: HashSet<&Key> = self.book.keys().collect();
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
        let accounts = self.book.accounts();
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

    /// Sends the run's P&L to the strategy's risk actor (it evaluates only while monitoring).
    fn push_pnl(&mut self, strategy_id: i32, received_at: Option<Instant>, sent_us: Option<u64>) {
        let Some(risk) = self.risk.get(&strategy_id) else {
            return;
        };
        let Some(figures) = self.book.figures(strategy_id, Instant::now()) else {
            return;
        };
        risk.do_send(PnlUpdate {
            figures,
            received_at,
            sent_us,
        });
    }

    fn on_tick(&mut self, tick: Arc<Tick>) {
        self.ticks += 1;
        if !self.book.follows(&tick.key) {
            return;
        }
        if !self.acceptable(tick.ltp) {
            self.ignored_prices += 1;
            return;
        }
        for strategy_id in self.book.tick(&tick.key, tick.ltp, tick.received_at) {
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
        // Oldest price first, so every stale leg gets its turn under the rate limit.
        let in_flight = &self.quotes_in_flight;
        for id in self.book.to_price(now, half, |id| in_flight.contains(&id)) {
            self.fetch_quote(id, ctx);
        }
        for strategy_id in self.book.staleness_changed(now) {
            self.push_pnl(strategy_id, None, None);
        }
    }

    /// Asks the quote fallback for a leg's price.
    fn fetch_quote(&mut self, id: i32, ctx: &mut Context<Self>) {
        let Some(leg) = self.book.leg(id) else {
            return;
        };
        let request = FetchQuote {
            account_id: leg.account_id,
            exchange: leg.key.exchange.clone(),
            symbol: leg.key.symbol.clone(),
        };
        self.quotes_in_flight.insert(id);
        let quotes = self.quotes.clone();
        ctx.spawn(
            async move { quotes.send(request).await }
                .into_actor(self)
                .map(move |answer, act, _ctx| {
                    act.quotes_in_flight.remove(&id);
                    let answer = answer.unwrap_or_else(|e| {
                        Err(QuoteError::Failed {
                            via: 0,
                            message: format!("the quote fallback did not answer: {e}"),
                        })
                    });
                    match answer {
                        Ok(q) if act.acceptable(q.ltp) => {
                            act.quotes_fetched += 1;
                            if let Some(strategy_id) = act.book.rest_price(id, q.ltp, Instant::now())
                            {
                                act.push_pnl(strategy_id, None, None);
                            }
                        }
                        Ok(q) => {
                            act.ignored_prices += 1;
                            tracing::warn!(execution_id = id, ltp = q.ltp, "REST quote with a price out of range ignored");
                        }
                        Err(QuoteError::Busy) => {}
                        Err(e) => {
                            act.quote_errors += 1;
                            tracing::warn!(execution_id = id, error = %e, "REST quote for a stale leg failed");
                            act.last_error = Some(e.to_string());
                        }
                    }
                }),
        );
    }

    // ---- monitoring on/off ------------------------------------------------------------

    fn arm_timers(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.stale_timer.take() {
            ctx.cancel_future(h);
        }
        let every = (self.settings.stale_after / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        self.stale_timer = Some(ctx.run_interval(every, |act, ctx| act.check_stale(ctx)));
        self.reconciler.do_send(Reconciling(true));
    }

    fn status(&self, accounts: usize) -> MonitorStatus {
        let now = Instant::now();
        let mut strategies: Vec<StrategySummary> = self
            .book
            .runs()
            .map(|(id, run)| StrategySummary {
                strategy_id: id,
                strategy: run.name.clone(),
                run_id: run.run_id,
                open_legs: run.pnl().open_legs().len(),
                pnl: run.pnl().pnl(),
                realized: run.pnl().realized(),
                stale_legs: if self.monitoring {
                    self.book.stale_legs(id, now)
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
            accounts,
            open_legs: self.book.len(),
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
            .book
            .legs()
            .map(|leg| {
                let m = &leg.data;
                let priced = self.book.priced(leg.id);
                PositionView {
                    execution_id: m.id,
                    strategy_id: m.strategy_id,
                    strategy: self
                        .book
                        .run(m.strategy_id)
                        .map(|r| r.name.clone())
                        .unwrap_or_default(),
                    run_id: m.run_id,
                    account_id: m.account_id,
                    exchange: m.exchange.clone(),
                    symbol: m.symbol.clone(),
                    product: m.product,
                    action: m.action,
                    quantity: m.quantity,
                    entry_price: m.entry_price,
                    status: m.status,
                    ltp: priced.map(|p| p.ltp),
                    pnl: priced.map(|p| leg_pnl(leg.side, leg.quantity, m.entry_price, p.ltp)),
                    price_age_ms: priced.map(|p| age_ms(p.at)),
                    price_source: priced.and_then(|p| p.source),
                    stale: self.monitoring && self.book.is_stale(leg.id, now),
                }
            })
            .collect();
        out.sort_by_key(|p| p.execution_id);
        out
    }
}
