//! Reconciliation with each account's position book (docs/ARCHITECTURE.md §4.7): while
//! positions are monitored, [`ReconcileActor`] reads every account's position book each
//! `reconcile_interval` and compares it with the tracked legs ([`crate::domain::reconcile`]).
//! A difference seen twice in a row is acted on: an untracked broker position is adopted into
//! the account's `manual:<account>` strategy, a leg whose position is gone is marked exited
//! (`closed_externally`), anything else is counted as a mismatch and left alone. The position
//! monitor hears what changed ([`Reconciled`]).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use entity::exit_requests;
use entity::strategies;
use entity::strategy_executions::{self, ExecutionStatus, Product, TradeAction};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::NewExecution;
use super::accounts::{client_of, follow};
use super::store::{OPEN, close_externally, manual_strategy, register_execution};
use crate::domain::fills::FillLimits;
use crate::domain::rate_limit::RateLimiter;
use crate::domain::reconcile::{self, Action, BrokerPosition, Confirmations, TrackedPosition};
use crate::openalgo::rest::RestClient;
use crate::orders::{
    AccountEndpoint, GetGatewayStatus, OrderGatewayActor, SetAccounts, filled_units,
};

#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// None: reconciliation is off.
    pub interval: Option<Duration>,
    /// Position book reads per account per second, at most.
    pub per_s: u32,
    pub rest_timeout: Duration,
    pub fill_limits: FillLimits,
}

/// Reconcile while positions are monitored (true) or stop (false).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Reconciling(pub bool);

/// The latest price per open leg (the position monitor answers).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "HashMap<i32, f64>")]
pub struct GetLastPrices;

/// What one account's reconciliation did, for the position monitor.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Reconciled {
    pub account_id: i32,
    pub outcome: Result<Outcome, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Broker positions adopted as legs, with their strategy.
    pub adopted: Vec<(strategies::Model, strategy_executions::Model)>,
    /// Legs marked exited (closed at the broker), with the price used.
    pub closed: Vec<(i32, Option<f64>)>,
    pub mismatches: u64,
}

struct Account {
    endpoint: AccountEndpoint,
    client: RestClient,
    limiter: RateLimiter,
    reconciling: bool,
    /// Differences found by the previous pass (taken while one runs).
    confirmations: Confirmations,
}

pub struct ReconcileActor {
    db: DatabaseConnection,
    settings: ReconcileSettings,
    gateway: Addr<OrderGatewayActor>,
    report: Recipient<Reconciled>,
    prices: Recipient<GetLastPrices>,
    accounts: HashMap<i32, Account>,
    active: bool,
    timer: Option<SpawnHandle>,
}

impl ReconcileActor {
    pub fn new(
        db: DatabaseConnection,
        settings: ReconcileSettings,
        gateway: Addr<OrderGatewayActor>,
        report: Recipient<Reconciled>,
        prices: Recipient<GetLastPrices>,
    ) -> Self {
        ReconcileActor {
            db,
            settings,
            gateway,
            report,
            prices,
            accounts: HashMap::new(),
            active: false,
            timer: None,
        }
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if let (true, Some(every)) = (self.active, self.settings.interval) {
            self.timer = Some(ctx.run_interval(every, |act, ctx| act.reconcile_all(ctx)));
        }
    }

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
        let mut confirmations = std::mem::take(&mut account.confirmations);
        let client = account.client.clone();
        let account_name = account.endpoint.name.clone();
        let db = self.db.clone();
        let gateway = self.gateway.clone();
        let prices = self.prices.clone();
        let limits = self.settings.fill_limits;
        ctx.spawn(
            async move {
                let prices = prices.send(GetLastPrices).await.unwrap_or_default();
                let pass = Pass {
                    db: &db,
                    client: &client,
                    gateway: &gateway,
                    account_id,
                    account_name: &account_name,
                    prices: &prices,
                    limits: &limits,
                };
                let result = pass.run(&mut confirmations).await;
                (result, confirmations)
            }
            .into_actor(self)
            .map(move |(result, confirmations), act, _ctx| {
                if let Some(a) = act.accounts.get_mut(&account_id) {
                    a.reconciling = false;
                    a.confirmations = confirmations;
                }
                if let Err(e) = &result {
                    tracing::warn!(account_id, error = %e, "reconciliation with the position book failed");
                }
                act.report.do_send(Reconciled {
                    account_id,
                    outcome: result,
                });
            }),
        );
    }
}

impl Actor for ReconcileActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.arm(ctx);
    }
}

impl actix::Supervised for ReconcileActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.timer = None;
        for a in self.accounts.values_mut() {
            a.reconciling = false;
            a.confirmations = Confirmations::default();
        }
    }
}

impl Handler<Reconciling> for ReconcileActor {
    type Result = ();

    fn handle(&mut self, msg: Reconciling, ctx: &mut Context<Self>) {
        if self.active != msg.0 {
            self.active = msg.0;
            self.arm(ctx);
        }
    }
}

impl Handler<SetAccounts> for ReconcileActor {
    type Result = ();

    fn handle(&mut self, msg: SetAccounts, _ctx: &mut Context<Self>) {
        let (timeout, per_s) = (self.settings.rest_timeout, self.settings.per_s);
        self.accounts = follow(
            &mut self.accounts,
            msg.0,
            |a| &a.endpoint,
            |endpoint| {
                let (client, limiter) = client_of(&endpoint, timeout, per_s);
                Account {
                    client,
                    limiter,
                    reconciling: false,
                    confirmations: Confirmations::default(),
                    endpoint,
                }
            },
        );
    }
}

/// One account's reconciliation pass.
struct Pass<'a> {
    db: &'a DatabaseConnection,
    client: &'a RestClient,
    gateway: &'a Addr<OrderGatewayActor>,
    account_id: i32,
    account_name: &'a str,
    prices: &'a HashMap<i32, f64>,
    limits: &'a FillLimits,
}

impl Pass<'_> {
    /// The position book against the tracked legs.
    async fn run(&self, confirmations: &mut Confirmations) -> Result<Outcome, String> {
        let Pass {
            db,
            client,
            gateway,
            account_id,
            account_name,
            prices,
            limits,
        } = *self;
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
            t.exit_in_flight |=
                l.status == ExecutionStatus::ExitPending || in_gateway.contains(&l.id);
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
        let mut done = Outcome::default();
        for action in confirmations.confirmed(reconcile::reconcile(&broker, &tracked)) {
            match action {
                Action::Adopt {
                    key,
                    net,
                    average_price,
                } => {
                    let (Some(entry), Ok(product)) = (average_price, key.2.parse::<Product>())
                    else {
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
                        l.exchange == key.0
                            && l.symbol == key.1
                            && norm(l.product.as_str()) == key.2
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
}
