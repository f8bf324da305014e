//! The position monitor's database work: the open legs and their runs, registering a fill,
//! resuming an idle strategy, and the legs reconciliation adopts or closes.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use entity::strategies::{self, RiskState};
use entity::strategy_executions::{self, ExecutionStatus, ExitReason};
use entity::{risk_events, trading_accounts};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter,
};

use super::{MonitorError, NewExecution};
use crate::domain::fills::{FillLimits, check_fill};
use crate::domain::pnl::leg_pnl;
use crate::orders::side_of;

pub(super) const OPEN: [ExecutionStatus; 2] =
    [ExecutionStatus::Entered, ExecutionStatus::ExitPending];

pub(super) struct OpenBook {
    /// Strategies with open legs, with their exited legs (any run).
    pub strategies: Vec<(strategies::Model, Vec<strategy_executions::Model>)>,
    pub legs: Vec<strategy_executions::Model>,
}

pub(super) async fn load_open(db: &DatabaseConnection) -> Result<OpenBook, DbErr> {
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
pub(super) async fn resume_idle(
    db: &DatabaseConnection,
    strategy_id: i32,
) -> Result<(), MonitorError> {
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

/// The account's `manual:<account name>` strategy (no limits), created when missing.
pub(super) async fn manual_strategy(
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
pub(super) async fn close_externally(
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
