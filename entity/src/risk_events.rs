//! `risk_events`: audit trail of risk decisions (one row per trigger, exit outcome, resume).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

string_enum! {
    /// Kind of risk event (`event_type`).
    RiskEventType {
        MaxLoss = "max_loss",
        MaxProfit = "max_profit",
        TrailingStop = "trailing_stop",
        ManualExit = "manual_exit",
        KillSwitch = "kill_switch",
        ExitFailed = "exit_failed",
        ExitCompleted = "exit_completed",
        /// Monitoring resumed after a pause or a failed exit.
        Resumed = "resumed",
        /// The feed went down while the run had open legs: they are priced over REST quotes.
        FeedDegraded = "feed_degraded",
        /// The feed is live again.
        FeedRestored = "feed_restored",
        /// The run's P&L is not a finite number (absurd quantities or prices): the strategy
        /// went exit_failed, rules cannot be evaluated.
        PnlInvalid = "pnl_invalid",
        /// The broker held less of an instrument than the tracked legs: only what it held
        /// was exited; the message says how much was missing.
        Mismatch = "mismatch",
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = RiskEvent)]
#[sea_orm(table_name = "risk_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub strategy_id: i32,
    pub run_id: i32,
    pub event_type: RiskEventType,
    /// The limit that was breached, if any.
    pub threshold: Option<f64>,
    /// P&L of the run when the event happened.
    pub pnl: f64,
    pub peak: Option<f64>,
    pub stop: Option<f64>,
    /// What was done, in words.
    #[sea_orm(column_type = "Text")]
    pub action: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub message: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::strategies::Entity",
        from = "Column::StrategyId",
        to = "super::strategies::Column::Id",
        on_delete = "Cascade"
    )]
    Strategy,
}

impl Related<super::strategies::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Strategy.def()
    }
}

#[async_trait::async_trait]
impl ActiveModelBehavior for ActiveModel {
    async fn before_save<C>(mut self, _db: &C, insert: bool) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        if insert {
            crate::stamp(&mut self.created_at, chrono::Utc::now());
        }
        Ok(self)
    }
}
