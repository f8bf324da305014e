//! Open positions (docs/ARCHITECTURE.md §4.7): the [`PositionMonitorActor`] keeps the open legs
//! in a [`PositionBook`](crate::domain::book::PositionBook), prices them and sends each run's
//! P&L to the run's [`RiskActor`](crate::risk::RiskActor), one per strategy with open legs.
//!
//! Open legs come from the database at start, from [`RegisterExecution`] (a strategy engine
//! registers a fill) and from reconciliation with each account's position book
//! ([`ReconcileActor`], `reconcile.rs`). While monitoring (market hours: [`StartMonitoring`] /
//! [`StopMonitoring`]) every open leg's instrument is subscribed in Quote mode; each tick
//! updates the legs' P&L and the run's P&L, which goes to the strategy's risk actor at once. A
//! price ≤ 0 (or above `risk.max_price`) is ignored. A leg whose feed price is older than
//! `stale_after` makes the strategy Degraded and its price is fetched over REST instead
//! ([`QuoteActor`], `quotes.rs`, rate-limited per account); the entry price is never assumed.
//! While the feed is down ([`FeedHealth`](crate::supervisor::FeedHealth)) every open leg is
//! priced that way at once, through its own account's gateway or any other that answers: risk
//! evaluation never pauses during market hours.
//!
//! After a restart (a panic included) the open legs and runs are read again from the database;
//! the risk actors, which did not panic, keep running and are taken back by run.

mod accounts;
mod actor;
mod quotes;
mod reconcile;
mod store;

use std::time::Duration;

use actix::prelude::*;
use entity::strategies;
use entity::strategy_executions::{self, ExecutionStatus, Product, TradeAction};
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;

pub use self::actor::PositionMonitorActor;
pub use self::quotes::{QuoteActor, QuoteSettings};
pub use self::reconcile::{ReconcileActor, ReconcileSettings};
pub use self::store::{register_execution, validate_execution};
pub use crate::domain::book::PriceSource;

use crate::domain::fills::FillLimits;
use crate::feed::SubscriptionRegistryActor;
use crate::orders::{ExitTicket, OrderGatewayActor};
use crate::risk::{RiskSettings, RiskStatus};
use crate::status::Lifecycle;
use crate::supervised::Supervision;

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
    pub supervision: Supervision,
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

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct StrategySummary {
    pub strategy_id: i32,
    pub strategy: String,
    pub run_id: i32,
    pub open_legs: usize,
    pub pnl: Option<f64>,
    pub realized: f64,
    pub stale_legs: usize,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
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

/// The position monitor with its REST quote fallback and its reconciliation, started
/// supervised on the current arbiter. The quote fallback and reconciliation follow the
/// accounts (`SetAccounts`), the quote fallback their reachability too.
#[derive(Clone)]
pub struct Positions {
    pub monitor: Addr<PositionMonitorActor>,
    pub quotes: Addr<QuoteActor>,
    pub reconciler: Addr<ReconcileActor>,
}

impl Positions {
    pub fn start(
        db: DatabaseConnection,
        settings: MonitorSettings,
        risk_settings: RiskSettings,
        registry: Addr<SubscriptionRegistryActor>,
        gateway: Addr<OrderGatewayActor>,
    ) -> Positions {
        let quote_settings = QuoteSettings {
            per_s: settings.quote_fallback_per_s,
            rest_timeout: settings.rest_timeout,
        };
        let quotes = crate::supervised::start(move |_| QuoteActor::new(quote_settings));
        let reconcile_settings = ReconcileSettings {
            interval: settings.reconcile_interval,
            per_s: settings.quote_fallback_per_s,
            rest_timeout: settings.rest_timeout,
            fill_limits: settings.fill_limits,
        };
        let mut reconciler = None;
        let monitor = crate::supervised::start(|ctx: &mut Context<PositionMonitorActor>| {
            let me = ctx.address();
            let addr = {
                let (db, gateway) = (db.clone(), gateway.clone());
                crate::supervised::start(move |_| {
                    ReconcileActor::new(
                        db,
                        reconcile_settings,
                        gateway,
                        me.clone().recipient(),
                        me.recipient(),
                    )
                })
            };
            reconciler = Some(addr.clone());
            PositionMonitorActor::new(
                db,
                settings,
                risk_settings,
                registry,
                gateway,
                quotes.clone(),
                addr,
            )
        });
        let reconciler = reconciler.expect("the monitor's factory runs at once");
        Positions {
            monitor,
            quotes,
            reconciler,
        }
    }
}
