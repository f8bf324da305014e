//! Positions and risk: `POST /api/v1/executions` (register a fill), `GET /api/v1/positions`,
//! `GET /api/v1/risk-events`, `POST /api/v1/kill-switch`.

use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use actors::domain::pnl::Side;
use actors::positions::{
    GetPositions, KillSwitch, KillSwitchReport, MonitorError, NewExecution, PositionView,
    RegisterExecution,
};
use entity::risk_events;
use entity::strategy_executions::{self, Product, TradeAction};
use entity::trading_accounts;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::body::Body;
use super::error::{ApiError, ErrorBody};
use super::numbers::{whole, whole_opt};

const DEFAULT_EVENTS: u64 = 100;
const MAX_EVENTS: u64 = 1000;

pub fn monitor_error(e: MonitorError) -> ApiError {
    match e {
        MonitorError::NotFound(m) => ApiError::not_found(m),
        MonitorError::Invalid { .. } => ApiError::unprocessable(e.to_string()),
        MonitorError::Conflict(m) => ApiError::conflict(m),
        MonitorError::Internal(m) => ApiError::internal("the position monitor failed", m),
    }
}

fn no_answer(e: actix::MailboxError) -> ApiError {
    ApiError::internal("the position monitor did not answer", e)
}

/// A fill to monitor as an open leg. Unknown fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"strategy_id": 1, "account_id": 1, "symbol": "NIFTY23NOV2625900CE",
    "exchange": "NFO", "product": "NRML", "action": "SELL", "quantity": 75, "entry_price": 120.5,
    "lot_size": 75}))]
pub struct ExecutionBody {
    /// An existing strategy.
    #[serde(deserialize_with = "whole")]
    strategy_id: i32,
    /// The leg's own account (an existing one): its exit goes there.
    #[serde(deserialize_with = "whole")]
    account_id: i32,
    #[schema(min_length = 1, pattern = "\\S")]
    symbol: String,
    #[schema(min_length = 1, pattern = "\\S")]
    exchange: String,
    /// MIS, NRML or CNC, in any case.
    #[schema(
        pattern = "^[ \\t\\r\\n]*([Mm][Ii][Ss]|[Nn][Rr][Mm][Ll]|[Cc][Nn][Cc])[ \\t\\r\\n]*$",
        example = "NRML"
    )]
    product: String,
    /// BUY or SELL, in any case.
    #[schema(
        pattern = "^[ \\t\\r\\n]*([Bb][Uu][Yy]|[Ss][Ee][Ll][Ll])[ \\t\\r\\n]*$",
        example = "SELL"
    )]
    action: String,
    /// Units, > 0.
    #[serde(deserialize_with = "whole")]
    #[schema(minimum = 1)]
    quantity: i64,
    #[schema(exclusive_minimum = 0.0)]
    entry_price: f64,
    entry_order_id: Option<String>,
    /// Exchange freeze quantity: exits above it are split.
    #[serde(default, deserialize_with = "whole_opt")]
    #[schema(minimum = 1)]
    freeze_qty: Option<i64>,
    /// When given, `quantity` must be whole lots.
    #[serde(default, deserialize_with = "whole_opt")]
    #[schema(minimum = 1)]
    lot_size: Option<i64>,
}

/// `POST /api/v1/executions`: records a fill as an open leg, monitored at once.
#[utoipa::path(
    post,
    path = "/api/v1/executions",
    operation_id = "register_execution",
    tag = "positions",
    request_body = ExecutionBody,
    responses(
        (status = 201, description = "the leg as stored", body = strategy_executions::Model),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "unknown strategy or account", body = ErrorBody),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field, named as `<field>: <reason>`", body = ErrorBody),
        (status = 409, description = "the strategy cannot take the leg now (e.g. its run is being exited)", body = ErrorBody),
    )
)]
pub async fn register(
    state: web::Data<AppState>,
    body: Body<ExecutionBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let product: Product = b.product.trim().to_ascii_uppercase().parse().map_err(|_| {
        ApiError::unprocessable(format!(
            "product: expected MIS, NRML or CNC, got {:?}",
            b.product
        ))
    })?;
    let action = match b.action.parse::<Side>() {
        Ok(Side::Buy) => TradeAction::Buy,
        Ok(Side::Sell) => TradeAction::Sell,
        Err(e) => return Err(ApiError::unprocessable(format!("action: {e}"))),
    };
    let new = NewExecution {
        strategy_id: b.strategy_id,
        account_id: b.account_id,
        symbol: b.symbol,
        exchange: b.exchange.trim().to_ascii_uppercase(),
        product,
        action,
        quantity: b.quantity,
        entry_price: b.entry_price,
        entry_order_id: b.entry_order_id,
        freeze_qty: b.freeze_qty,
        lot_size: b.lot_size,
    };
    let leg = state
        .monitor
        .send(RegisterExecution(new))
        .await
        .map_err(no_answer)?
        .map_err(monitor_error)?;
    Ok(HttpResponse::Created().json(leg))
}

/// `GET /api/v1/positions`: open legs with price, P&L, age of the price and account.
#[utoipa::path(
    get,
    path = "/api/v1/positions",
    operation_id = "list_positions",
    tag = "positions",
    responses(
        (status = 200, description = "every open leg with its price, P&L, price age and source (`feed`/`rest`) and staleness", body = Positions),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
    )
)]
pub async fn positions(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let legs = state.monitor.send(GetPositions).await.map_err(no_answer)?;
    let accounts: HashMap<i32, String> = trading_accounts::Entity::find()
        .all(&state.db)
        .await
        .map_err(|e| ApiError::internal("reading accounts", e))?
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();
    let positions = legs
        .into_iter()
        .map(|leg| OpenLeg {
            account: accounts.get(&leg.account_id).cloned(),
            leg,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Positions { positions }))
}

/// The answer of `GET /api/v1/positions`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Positions {
    positions: Vec<OpenLeg>,
}

/// An open leg with its account's name.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OpenLeg {
    #[serde(flatten)]
    leg: PositionView,
    /// The account's name (null when it was deleted meanwhile).
    account: Option<String>,
}

/// The answer of `GET /api/v1/risk-events`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RiskEvents {
    /// Newest first.
    events: Vec<risk_events::Model>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this strategy's events.
    strategy_id: Option<i32>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// `GET /api/v1/risk-events?strategy_id=&limit=`: newest first.
#[utoipa::path(
    get,
    path = "/api/v1/risk-events",
    operation_id = "list_risk_events",
    tag = "positions",
    params(EventsQuery),
    responses(
        (status = 200, description = "risk events, newest first (type, threshold, pnl, peak, stop, action)", body = RiskEvents),
        (status = 400, description = "an invalid or unknown query parameter", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 422, description = "limit out of 1–1000", body = ErrorBody),
    )
)]
pub async fn risk_events(
    state: web::Data<AppState>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_EVENTS);
    if !(1..=MAX_EVENTS).contains(&limit) {
        return Err(ApiError::unprocessable(format!(
            "limit: must be between 1 and {MAX_EVENTS}"
        )));
    }
    let mut q = risk_events::Entity::find();
    if let Some(id) = query.strategy_id {
        q = q.filter(risk_events::Column::StrategyId.eq(id));
    }
    let events = q
        .order_by_desc(risk_events::Column::Id)
        .limit(limit)
        .all(&state.db)
        .await
        .map_err(|e| ApiError::internal("reading risk events", e))?;
    Ok(HttpResponse::Ok().json(RiskEvents { events }))
}

/// `POST /api/v1/kill-switch`: pauses every risk actor and exits every open leg on every
/// account; answers with what was sent.
#[utoipa::path(
    post,
    path = "/api/v1/kill-switch",
    operation_id = "kill_switch",
    tag = "positions",
    responses(
        (status = 200, description = "the strategies paused, the exits queued, already running or failed, and errors", body = KillSwitchReport),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
    )
)]
pub async fn kill_switch(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let report = state
        .monitor
        .send(KillSwitch)
        .await
        .map_err(no_answer)?
        .map_err(monitor_error)?;
    Ok(HttpResponse::Ok().json(report))
}
