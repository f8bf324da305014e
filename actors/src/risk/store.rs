//! The risk actor's database work: its strategy's risk columns and `risk_events`, always
//! scoped to the run.

use chrono::Utc;
use entity::risk_events::{self, RiskEventType};
use entity::strategies::{self, RiskState};
use entity::strategy_executions::ExitReason;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
};

/// Columns written with every write, snapshotted when it runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Snapshot {
    pub peak: Option<f64>,
    pub stop: Option<f64>,
    pub max_loss_latched: bool,
    pub max_profit_latched: bool,
    pub pnl: f64,
}

pub(super) async fn persist_trail(
    db: &DatabaseConnection,
    strategy_id: i32,
    run_id: i32,
    snap: Snapshot,
) -> Result<(), DbErr> {
    use strategies::Column as C;
    strategies::Entity::update_many()
        .col_expr(C::PeakPnl, Expr::value(snap.peak.unwrap_or(0.0)))
        .col_expr(C::StopLevel, Expr::value(snap.stop))
        .col_expr(C::TrailingLatched, Expr::value(snap.peak.is_some()))
        .col_expr(C::RiskUpdatedAt, Expr::value(Utc::now()))
        .filter(C::Id.eq(strategy_id))
        .filter(C::RunId.eq(run_id))
        .exec(db)
        .await
        .map(|_| ())
}

pub(super) async fn write_transition(
    db: &DatabaseConnection,
    strategy_id: i32,
    run_id: i32,
    state: RiskState,
    snap: Snapshot,
    event: Option<risk_events::ActiveModel>,
) -> Result<(), DbErr> {
    use strategies::Column as C;
    let now = Utc::now();
    let txn = crate::db::begin_write(db).await?;
    let updated = strategies::Entity::update_many()
        .col_expr(C::RiskState, Expr::value(state))
        .col_expr(C::PeakPnl, Expr::value(snap.peak.unwrap_or(0.0)))
        .col_expr(C::StopLevel, Expr::value(snap.stop))
        .col_expr(C::TrailingLatched, Expr::value(snap.peak.is_some()))
        .col_expr(C::MaxLossLatched, Expr::value(snap.max_loss_latched))
        .col_expr(C::MaxProfitLatched, Expr::value(snap.max_profit_latched))
        .col_expr(C::RiskUpdatedAt, Expr::value(now))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .filter(C::Id.eq(strategy_id))
        .filter(C::RunId.eq(run_id))
        .exec(&txn)
        .await?;
    // A new run has begun: this run's actor records nothing more.
    if updated.rows_affected == 1
        && let Some(event) = event
    {
        event.insert(&txn).await?;
    }
    txn.commit().await
}

/// Why the run's exit began: its latest trigger event.
pub(super) async fn last_exit_reason(
    db: &DatabaseConnection,
    strategy_id: i32,
    run_id: i32,
) -> Result<ExitReason, DbErr> {
    use risk_events::Column as C;
    let event = risk_events::Entity::find()
        .filter(C::StrategyId.eq(strategy_id))
        .filter(C::RunId.eq(run_id))
        .filter(C::EventType.is_in([
            RiskEventType::MaxLoss,
            RiskEventType::MaxProfit,
            RiskEventType::TrailingStop,
            RiskEventType::ManualExit,
            RiskEventType::KillSwitch,
        ]))
        .order_by_desc(C::Id)
        .one(db)
        .await?;
    Ok(match event.map(|e| e.event_type) {
        Some(RiskEventType::MaxLoss) => ExitReason::MaxLoss,
        Some(RiskEventType::MaxProfit) => ExitReason::MaxProfit,
        Some(RiskEventType::TrailingStop) => ExitReason::TrailingStop,
        Some(RiskEventType::KillSwitch) => ExitReason::KillSwitch,
        _ => ExitReason::Manual,
    })
}

/// The strategy's row, to read the run's state back after a restart.
pub(super) async fn strategy(
    db: &DatabaseConnection,
    strategy_id: i32,
) -> Result<Option<strategies::Model>, DbErr> {
    strategies::Entity::find_by_id(strategy_id).one(db).await
}
