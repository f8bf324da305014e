//! `strategy_executions`: one leg of a strategy run on one account.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

string_enum! {
    /// Broker product type (`product`).
    Product {
        /// Intraday.
        Mis = "MIS",
        /// Normal (carry-forward derivatives).
        Nrml = "NRML",
        /// Cash and carry (delivery equity).
        Cnc = "CNC",
    }
}

string_enum! {
    /// Side of the entry order (`action`); the exit uses the opposite side.
    TradeAction {
        Buy = "BUY",
        Sell = "SELL",
    }
}

impl TradeAction {
    /// The side that closes a position opened with `self`.
    pub const fn opposite(self) -> Self {
        match self {
            TradeAction::Buy => TradeAction::Sell,
            TradeAction::Sell => TradeAction::Buy,
        }
    }
}

string_enum! {
    /// Lifecycle of a leg (`status`).
    ExecutionStatus {
        /// Registered, entry not confirmed yet.
        Pending = "pending",
        /// Open position.
        Entered = "entered",
        /// An exit order may be at the broker; see `exit_requests`.
        ExitPending = "exit_pending",
        /// Closed.
        Exited = "exited",
        /// Entry failed; never was a position.
        Failed = "failed",
    }
}

string_enum! {
    /// Why a leg was exited (`exit_reason`).
    ExitReason {
        MaxLoss = "max_loss",
        MaxProfit = "max_profit",
        TrailingStop = "trailing_stop",
        Manual = "manual",
        KillSwitch = "kill_switch",
        /// The position disappeared from the broker's position book.
        ClosedExternally = "closed_externally",
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Execution)]
#[sea_orm(table_name = "strategy_executions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub strategy_id: i32,
    pub account_id: i32,
    /// The strategy run this leg belongs to.
    pub run_id: i32,
    pub symbol: String,
    pub exchange: String,
    pub product: Product,
    pub action: TradeAction,
    /// Quantity in units (not lots).
    pub quantity: i64,
    pub entry_price: f64,
    pub status: ExecutionStatus,
    pub entry_order_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub entered_at: DateTimeUtc,
    /// Largest quantity the exchange accepts in one order; exits above it are split.
    pub freeze_qty: Option<i64>,
    /// The instrument's lot size (F&O): exit orders stay whole multiples of it.
    pub lot_size: Option<i64>,
    pub exit_order_id: Option<String>,
    /// Exit attempts so far; 0 when left unset on insert.
    pub exit_attempts: i32,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub exit_pending_since: Option<DateTimeUtc>,
    pub exit_reason: Option<ExitReason>,
    /// Units the exit orders closed: less than `quantity` when the broker did not hold the
    /// rest (a mismatch).
    pub exit_filled_quantity: Option<i64>,
    pub exit_price: Option<f64>,
    pub realized_pnl: Option<f64>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub exited_at: Option<DateTimeUtc>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTimeUtc,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::strategies::Entity",
        from = "Column::StrategyId",
        to = "super::strategies::Column::Id",
        on_delete = "Restrict"
    )]
    Strategy,
    #[sea_orm(
        belongs_to = "super::trading_accounts::Entity",
        from = "Column::AccountId",
        to = "super::trading_accounts::Column::Id",
        on_delete = "Restrict"
    )]
    Account,
    #[sea_orm(has_many = "super::exit_requests::Entity")]
    ExitRequests,
}

impl Related<super::strategies::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Strategy.def()
    }
}

impl Related<super::trading_accounts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Account.def()
    }
}

impl Related<super::exit_requests::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ExitRequests.def()
    }
}

crate::timestamped_active_model!();
