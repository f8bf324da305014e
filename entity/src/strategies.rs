//! `strategies`: a named set of legs with optional risk limits, and the persisted risk state
//! of its current run (so a restart resumes a trailing stop instead of resetting it).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

string_enum! {
    /// How `trailing_sl_value` is turned into a stop distance (`trailing_sl_type`).
    TrailingSlType {
        /// `value` rupees.
        Amount = "amount",
        /// `value` × total open quantity.
        Points = "points",
        /// `value` % of the absolute net premium of the run.
        Percentage = "percentage",
    }
}

string_enum! {
    /// State of the strategy's risk actor (`risk_state`).
    RiskState {
        /// Rules are evaluated on every P&L update.
        Monitoring = "monitoring",
        /// A rule breached; the exit is about to be requested.
        Triggered = "triggered",
        /// Exit orders are in flight.
        Exiting = "exiting",
        /// Every leg of the run is closed.
        Exited = "exited",
        /// Exits ran out of attempts; needs a human.
        ExitFailed = "exit_failed",
        /// Rules are not evaluated (kill switch or operator).
        Paused = "paused",
    }
}

/// Columns left unset on insert take the schema defaults: `is_active` true, `run_id` 0,
/// `risk_state` monitoring, `peak_pnl` 0, latches false.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "strategies")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub name: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    pub is_active: bool,
    /// Exit when P&L ≤ −max_loss (rupees, > 0); `None` disables the rule.
    pub max_loss: Option<f64>,
    /// Exit when P&L ≥ max_profit (rupees, > 0); `None` disables the rule.
    pub max_profit: Option<f64>,
    /// `None` disables the trailing stop.
    pub trailing_sl_type: Option<TrailingSlType>,
    pub trailing_sl_value: Option<f64>,
    /// Profit at which the trail starts; `None` means 0.
    pub trailing_activation: Option<f64>,
    /// Per-strategy override of how long a breach must persist, in milliseconds.
    pub exit_confirm_ms: Option<i64>,
    /// Current run; 0 until the first run starts.
    pub run_id: i32,
    pub run_started_at: Option<DateTimeUtc>,
    pub risk_state: RiskState,
    /// Highest P&L of the run since the trail activated.
    pub peak_pnl: f64,
    /// Current trailing stop level (P&L), ratcheting up only.
    pub stop_level: Option<f64>,
    pub max_loss_latched: bool,
    pub max_profit_latched: bool,
    pub trailing_latched: bool,
    pub risk_updated_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::strategy_executions::Entity")]
    StrategyExecutions,
    #[sea_orm(has_many = "super::risk_events::Entity")]
    RiskEvents,
}

impl Related<super::strategy_executions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::StrategyExecutions.def()
    }
}

impl Related<super::risk_events::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::RiskEvents.def()
    }
}

crate::timestamped_active_model!();
