//! The gateway's database work: the legs to exit, each order's write-ahead row and what became
//! of it, and the leg's end. `exit_requests` rows are the exit's memory across restarts.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::exit_requests::{self, ExitOutcome};
use entity::strategies;
use entity::strategy_executions::{self, ExecutionStatus, ExitReason, Product};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder,
};

use super::{ExitScope, side_of};
use crate::domain::exit_machine::{End, ExitOrder, Persisted, PersistedState, Phase};
use crate::domain::pnl::Side;

/// Legs that may still be exited.
pub(super) const OPEN: [ExecutionStatus; 2] =
    [ExecutionStatus::Entered, ExecutionStatus::ExitPending];

/// An open leg as the gateway needs it.
#[derive(Debug, Clone)]
pub(super) struct Leg {
    pub id: i32,
    pub strategy_id: i32,
    pub run_id: i32,
    pub strategy_name: String,
    pub account_id: i32,
    pub exchange: String,
    pub symbol: String,
    pub product: Product,
    pub side: Side,
    pub quantity: i64,
    pub entry_price: f64,
    pub freeze_qty: Option<i64>,
    pub lot_size: Option<i64>,
    pub exit_reason: Option<ExitReason>,
    pub exit_pending_since: Option<DateTime<Utc>>,
    pub entered_at: DateTime<Utc>,
}

impl Leg {
    fn from_model(m: &strategy_executions::Model, strategy_name: String) -> Leg {
        Leg {
            id: m.id,
            strategy_id: m.strategy_id,
            run_id: m.run_id,
            strategy_name,
            account_id: m.account_id,
            exchange: m.exchange.clone(),
            symbol: m.symbol.clone(),
            product: m.product,
            side: side_of(m.action),
            quantity: m.quantity,
            entry_price: m.entry_price,
            freeze_qty: m.freeze_qty,
            lot_size: m.lot_size,
            exit_reason: m.exit_reason,
            exit_pending_since: m.exit_pending_since,
            entered_at: m.entered_at,
        }
    }
}

/// An open leg with its persisted exit requests (oldest first).
pub(super) struct LoadedLeg {
    pub leg: Leg,
    pub requests: Vec<exit_requests::Model>,
}

pub(super) enum LegFilter {
    Scope(ExitScope),
    /// `exit_pending` legs of these accounts.
    PendingOn(Vec<i32>),
}

/// Open legs (with their strategy's risk state and their exit requests, oldest first).
pub(super) async fn load_legs(
    db: &DatabaseConnection,
    filter: LegFilter,
) -> Result<Vec<(LoadedLeg, strategies::RiskState)>, DbErr> {
    use strategy_executions::Column as C;
    let query = strategy_executions::Entity::find();
    let query = match filter {
        LegFilter::Scope(ExitScope::Run {
            strategy_id,
            run_id,
        }) => query
            .filter(C::StrategyId.eq(strategy_id))
            .filter(C::RunId.eq(run_id))
            .filter(C::Status.is_in(OPEN)),
        LegFilter::Scope(ExitScope::All) => query.filter(C::Status.is_in(OPEN)),
        LegFilter::PendingOn(accounts) => query
            .filter(C::Status.eq(ExecutionStatus::ExitPending))
            .filter(C::AccountId.is_in(accounts)),
    };
    let rows = query.order_by_asc(C::Id).all(db).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let strategy_ids: HashSet<i32> = rows.iter().map(|r| r.strategy_id).collect();
    let strategies: HashMap<i32, strategies::Model> = strategies::Entity::find()
        .filter(strategies::Column::Id.is_in(strategy_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let mut requests = requests_of(db, rows.iter().map(|r| r.id)).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let (name, state) = strategies.get(&row.strategy_id).map_or_else(
                || {
                    (
                        format!("strategy-{}", row.strategy_id),
                        strategies::RiskState::Monitoring,
                    )
                },
                |s| (s.name.clone(), s.risk_state),
            );
            let leg = Leg::from_model(&row, name);
            let requests = requests.remove(&row.id).unwrap_or_default();
            (LoadedLeg { leg, requests }, state)
        })
        .collect())
}

/// Exit requests of the given legs, oldest first.
pub(crate) async fn requests_of(
    db: &DatabaseConnection,
    ids: impl IntoIterator<Item = i32>,
) -> Result<HashMap<i32, Vec<exit_requests::Model>>, DbErr> {
    let ids: Vec<i32> = ids.into_iter().collect();
    let mut by_leg: HashMap<i32, Vec<exit_requests::Model>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_leg);
    }
    for r in exit_requests::Entity::find()
        .filter(exit_requests::Column::ExecutionId.is_in(ids))
        .order_by_asc(exit_requests::Column::Id)
        .all(db)
        .await?
    {
        by_leg.entry(r.execution_id).or_default().push(r);
    }
    Ok(by_leg)
}

/// Units an exit request filled, as recorded. Rows written before fills were recorded count
/// in full when they were filled or found closed.
pub(crate) fn filled_units(r: &exit_requests::Model) -> i64 {
    let filled = match r.outcome {
        ExitOutcome::Closed => r.quantity,
        ExitOutcome::Filled => r.filled_quantity.unwrap_or(r.quantity),
        _ => r.filled_quantity.unwrap_or(0),
    };
    filled.clamp(0, r.quantity.max(0))
}

/// A persisted exit request as the exit machine resumes it.
pub(super) fn persisted(r: &exit_requests::Model, now: DateTime<Utc>) -> Persisted {
    let error = || r.error.clone().unwrap_or_default();
    let state = match (r.outcome, &r.broker_order_id) {
        (ExitOutcome::Pending | ExitOutcome::Unknown | ExitOutcome::Sent, None) => {
            PersistedState::InDoubt
        }
        (ExitOutcome::Pending | ExitOutcome::Unknown | ExitOutcome::Sent, Some(_)) => {
            PersistedState::Working
        }
        (ExitOutcome::Filled | ExitOutcome::Closed, _) => PersistedState::Done(End::Complete),
        (ExitOutcome::Rejected, _) => PersistedState::Done(End::Rejected(error())),
        (ExitOutcome::Cancelled, _) => PersistedState::Done(End::Cancelled),
        (ExitOutcome::Error, _) => PersistedState::Done(End::NotPlaced(error())),
        (ExitOutcome::NotFound, _) => PersistedState::Done(End::NotThere),
    };
    Persisted {
        request: r.id,
        quantity: r.quantity,
        order_id: r.broker_order_id.clone(),
        state,
        filled: filled_units(r),
        average_price: r.average_price,
        age: (now - r.created_at).to_std().unwrap_or_default(),
    }
}

/// The write-ahead row of a new exit order.
pub(super) struct Recording {
    pub leg_id: i32,
    pub reason: ExitReason,
    pub attempt: i32,
    pub quantity: i64,
    /// Set on the leg's first order.
    pub pending_since: Option<DateTime<Utc>>,
}

/// Marks the leg `exit_pending` and commits a pending `exit_requests` row, before the order is
/// sent. The leg is only marked while it is still open, so a leg closed elsewhere meanwhile
/// is never sent an exit (`None`).
pub(super) async fn record_request(
    db: &DatabaseConnection,
    job: &Recording,
) -> Result<Option<i32>, String> {
    use strategy_executions::Column as C;
    let txn = crate::db::begin_write(db)
        .await
        .map_err(|e| e.to_string())?;
    let mut update = strategy_executions::Entity::update_many()
        .col_expr(C::Status, Expr::value(ExecutionStatus::ExitPending))
        .col_expr(C::ExitReason, Expr::value(job.reason))
        .col_expr(C::ExitAttempts, Expr::value(job.attempt))
        .col_expr(C::UpdatedAt, Expr::value(Utc::now()));
    if let Some(since) = job.pending_since {
        update = update.col_expr(C::ExitPendingSince, Expr::value(since));
    }
    let updated = update
        .filter(C::Id.eq(job.leg_id))
        .filter(C::Status.is_in(OPEN))
        .exec(&txn)
        .await
        .map_err(|e| e.to_string())?;
    if updated.rows_affected != 1 {
        return Ok(None);
    }
    let request = exit_requests::ActiveModel {
        execution_id: Set(job.leg_id),
        attempt: Set(job.attempt),
        client_ref: Set(uuid::Uuid::new_v4().to_string()),
        quantity: Set(job.quantity),
        outcome: Set(ExitOutcome::Pending),
        filled_quantity: Set(Some(0)),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|e| e.to_string())?;
    txn.commit().await.map_err(|e| e.to_string())?;
    Ok(Some(request.id))
}

/// What an exit order's row says of it now.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct OrderRow {
    pub request_id: i32,
    pub outcome: ExitOutcome,
    pub order_id: Option<String>,
    pub filled: i64,
    pub average_price: Option<f64>,
    pub error: Option<String>,
}

/// The row an order of the machine should have (none before its row is written).
pub(super) fn row_of(order: &ExitOrder) -> Option<OrderRow> {
    let (outcome, error) = match &order.phase {
        Phase::Recording => return None,
        Phase::Placing { .. } => (ExitOutcome::Pending, None),
        Phase::InDoubt => (ExitOutcome::Unknown, None),
        Phase::Working => (ExitOutcome::Sent, None),
        Phase::Done(End::Complete) => (ExitOutcome::Filled, None),
        Phase::Done(End::Rejected(m) | End::Refused(m)) => (ExitOutcome::Rejected, Some(m.clone())),
        Phase::Done(End::Cancelled) => (ExitOutcome::Cancelled, None),
        Phase::Done(End::NotThere) => (
            ExitOutcome::NotFound,
            Some("not in the broker's order book after the settle window".into()),
        ),
        Phase::Done(End::NotPlaced(m)) => (ExitOutcome::Error, Some(m.clone())),
    };
    Some(OrderRow {
        request_id: order.request?,
        outcome,
        order_id: order.order_id.clone(),
        filled: order.filled,
        average_price: order.average_price,
        error,
    })
}

pub(super) async fn save_order(db: &DatabaseConnection, row: OrderRow) -> Result<(), DbErr> {
    let mut model = exit_requests::ActiveModel {
        id: Set(row.request_id),
        outcome: Set(row.outcome),
        filled_quantity: Set(Some(row.filled)),
        average_price: Set(row.average_price),
        ..Default::default()
    };
    if row.order_id.is_some() {
        model.broker_order_id = Set(row.order_id);
    }
    if row.error.is_some() {
        model.error = Set(row.error);
    }
    model.update(db).await.map(|_| ())
}

/// The leg's end: exited, with what its orders filled and at what price.
pub(super) struct Exited {
    pub leg_id: i32,
    pub reason: ExitReason,
    pub order_ids: Vec<String>,
    pub exit_price: Option<f64>,
    pub realized_pnl: Option<f64>,
    pub filled: i64,
}

pub(super) async fn record_exited(db: &DatabaseConnection, e: &Exited) -> Result<(), DbErr> {
    strategy_executions::ActiveModel {
        id: Set(e.leg_id),
        status: Set(ExecutionStatus::Exited),
        exit_reason: Set(Some(e.reason)),
        exit_order_id: Set((!e.order_ids.is_empty()).then(|| e.order_ids.join(","))),
        exit_price: Set(e.exit_price),
        realized_pnl: Set(e.realized_pnl),
        exit_filled_quantity: Set(Some(e.filled)),
        exited_at: Set(Some(Utc::now())),
        ..Default::default()
    }
    .update(db)
    .await
    .map(|_| ())
}

/// Entry and exit order ids recorded for the account's legs, with when each was recorded.
pub(super) async fn known_order_ids(
    db: &DatabaseConnection,
    account_id: i32,
) -> Result<HashMap<String, DateTime<Utc>>, DbErr> {
    let legs = strategy_executions::Entity::find()
        .filter(strategy_executions::Column::AccountId.eq(account_id))
        .all(db)
        .await?;
    let mut known: HashMap<String, DateTime<Utc>> = legs
        .iter()
        .filter_map(|l| Some((l.entry_order_id.clone()?, l.entered_at)))
        .collect();
    for requests in requests_of(db, legs.iter().map(|l| l.id))
        .await?
        .into_values()
    {
        known.extend(
            requests
                .into_iter()
                .filter_map(|r| Some((r.broker_order_id?, r.created_at))),
        );
    }
    Ok(known)
}

/// Open legs on an account's instrument and product: (leg id, side, units not yet filled by
/// exit orders).
pub(super) async fn open_legs_on(
    db: &DatabaseConnection,
    account_id: i32,
    exchange: &str,
    symbol: &str,
    product: Product,
) -> Result<Vec<(i32, Side, i64)>, DbErr> {
    use strategy_executions::Column as C;
    let rows = strategy_executions::Entity::find()
        .filter(C::AccountId.eq(account_id))
        .filter(C::Exchange.eq(exchange))
        .filter(C::Symbol.eq(symbol))
        .filter(C::Product.eq(product))
        .filter(C::Status.is_in(OPEN))
        .all(db)
        .await?;
    let requests = requests_of(db, rows.iter().map(|r| r.id)).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let filled: i64 = requests
                .get(&r.id)
                .map(|rs| rs.iter().map(filled_units).sum())
                .unwrap_or(0);
            (r.id, side_of(r.action), (r.quantity - filled).max(0))
        })
        .collect())
}
