//! Strategies: CRUD, risk limits (`PUT /api/v1/strategies/{id}/risk`) and manual exit
//! (`POST /api/v1/strategies/{id}/exit`).
//!
//! Limits follow docs/ARCHITECTURE.md §4.8. `PUT …/risk` changes only the fields it carries (a field
//! set to `null` removes that limit) and `"resume": true` resumes a paused or exit-failed
//! strategy. A strategy JSON carries the stored row plus the live figures of its risk actor
//! while a run is open (`pnl`, `peak`, `stop`, `state`, and `live` with the whole status).

use actors::db::begin_write;
use std::collections::HashMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use actors::domain::risk::{self, RiskLimits, Trailing, TrailingKind};
use actors::orders::ExitTicket;
use actors::positions::{GetRiskStatuses, ManualExitStrategy, ResumeStrategy, StrategyChanged};
use actors::risk::RiskStatus;
use entity::strategies::{self, TrailingSlType};
use entity::strategy_executions::{self, ExecutionStatus};
use entity::{exit_requests, risk_events};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, SqlErr,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::body::Body;
use super::error::{ApiError, ErrorBody};
use super::numbers::whole_opt;
use super::positions::monitor_error;

/// Longest accepted confirmation window.
const MAX_CONFIRM_MS: i64 = 3_600_000;
const MAX_NAME_LEN: usize = 100;

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// [`nullable`] for a whole number written either way (`7` or `7.0`).
fn nullable_whole<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    whole_opt(d).map(Some)
}

/// The limit columns of a strategy.
#[derive(Debug, Clone, Default, PartialEq)]
struct Limits {
    max_loss: Option<f64>,
    max_profit: Option<f64>,
    trailing_sl_type: Option<TrailingSlType>,
    trailing_sl_value: Option<f64>,
    trailing_activation: Option<f64>,
    exit_confirm_ms: Option<i64>,
}

impl Limits {
    fn of(s: &strategies::Model) -> Limits {
        Limits {
            max_loss: s.max_loss,
            max_profit: s.max_profit,
            trailing_sl_type: s.trailing_sl_type,
            trailing_sl_value: s.trailing_sl_value,
            trailing_activation: s.trailing_activation,
            exit_confirm_ms: s.exit_confirm_ms,
        }
    }

    /// Checks the limits as a whole; the error names the offending field.
    fn check(&self) -> Result<(), ApiError> {
        let bad = |field: &str, message: &str| {
            Err(ApiError::unprocessable(format!("{field}: {message}")))
        };
        match (self.trailing_sl_type, self.trailing_sl_value) {
            (Some(_), None) => {
                return bad("trailing_sl_value", "is required with trailing_sl_type");
            }
            (None, Some(_)) => {
                return bad("trailing_sl_type", "is required with trailing_sl_value");
            }
            _ => {}
        }
        if self.trailing_activation.is_some() && self.trailing_sl_type.is_none() {
            return bad(
                "trailing_activation",
                "applies only to a trailing stop (set trailing_sl_type and trailing_sl_value)",
            );
        }
        if let Some(ms) = self.exit_confirm_ms
            && !(0..=MAX_CONFIRM_MS).contains(&ms)
        {
            return bad(
                "exit_confirm_ms",
                &format!("must be between 0 and {MAX_CONFIRM_MS}, got {ms}"),
            );
        }
        risk::validate(&self.domain()).map_err(|e| {
            ApiError::unprocessable(
                e.replace("trailing.value", "trailing_sl_value")
                    .replace("trailing.activation", "trailing_activation"),
            )
        })
    }

    fn domain(&self) -> RiskLimits {
        let trailing = match (self.trailing_sl_type, self.trailing_sl_value) {
            (Some(kind), Some(value)) => Some(Trailing {
                kind: match kind {
                    TrailingSlType::Amount => TrailingKind::Amount,
                    TrailingSlType::Points => TrailingKind::Points,
                    TrailingSlType::Percentage => TrailingKind::Percentage,
                },
                value,
                activation: self.trailing_activation.unwrap_or(0.0),
            }),
            _ => None,
        };
        RiskLimits {
            max_loss: self.max_loss,
            max_profit: self.max_profit,
            trailing,
            confirm: Duration::from_millis(
                self.exit_confirm_ms
                    .and_then(|ms| u64::try_from(ms).ok())
                    .unwrap_or(0),
            ),
        }
    }

    fn apply(&self, row: &mut strategies::ActiveModel) {
        row.max_loss = Set(self.max_loss);
        row.max_profit = Set(self.max_profit);
        row.trailing_sl_type = Set(self.trailing_sl_type);
        row.trailing_sl_value = Set(self.trailing_sl_value);
        row.trailing_activation = Set(self.trailing_activation);
        row.exit_confirm_ms = Set(self.exit_confirm_ms);
    }
}

fn trailing_type(value: Option<String>) -> Result<Option<TrailingSlType>, ApiError> {
    value
        .map(|v| {
            let kind: TrailingKind = v
                .parse()
                .map_err(|e| ApiError::unprocessable(format!("trailing_sl_type: {e}")))?;
            Ok(match kind {
                TrailingKind::Amount => TrailingSlType::Amount,
                TrailingKind::Points => TrailingSlType::Points,
                TrailingKind::Percentage => TrailingSlType::Percentage,
            })
        })
        .transpose()
}

fn checked_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::unprocessable(format!(
            "name: must be 1 to {MAX_NAME_LEN} characters"
        )));
    }
    Ok(name.to_string())
}

fn db_error(context: &'static str) -> impl Fn(sea_orm::DbErr) -> ApiError {
    move |e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            ApiError::conflict("a strategy with this name already exists")
        }
        _ => ApiError::internal(context, e),
    }
}

/// The strategy row with its live figures (when its risk actor runs).
pub fn strategy_json(s: &strategies::Model, live: Option<&RiskStatus>) -> Result<Value, ApiError> {
    let mut v =
        serde_json::to_value(s).map_err(|e| ApiError::internal("serialising a strategy", e))?;
    let stored_peak = s.trailing_latched.then_some(s.peak_pnl);
    v["state"] = json!(live.map_or(s.risk_state, |l| l.state));
    v["pnl"] = json!(live.and_then(|l| l.pnl));
    v["peak"] = json!(live.map_or(stored_peak, |l| l.peak));
    v["stop"] = json!(live.map_or(s.stop_level, |l| l.stop));
    v["live"] = match live {
        Some(l) => {
            serde_json::to_value(l).map_err(|e| ApiError::internal("serialising a status", e))?
        }
        None => Value::Null,
    };
    Ok(v)
}

async fn live_figures(state: &AppState) -> Result<HashMap<i32, RiskStatus>, ApiError> {
    let statuses = state
        .monitor
        .send(GetRiskStatuses)
        .await
        .map_err(|e| ApiError::internal("the position monitor did not answer", e))?;
    Ok(statuses.into_iter().map(|s| (s.strategy_id, s)).collect())
}

async fn find(state: &AppState, id: i32) -> Result<strategies::Model, ApiError> {
    strategies::Entity::find_by_id(id)
        .one(&state.db)
        .await
        .map_err(|e| ApiError::internal("reading the strategy", e))?
        .ok_or_else(|| ApiError::not_found(format!("strategy {id} does not exist")))
}

async fn respond(state: &AppState, s: &strategies::Model) -> Result<Value, ApiError> {
    let live = live_figures(state).await?;
    strategy_json(s, live.get(&s.id))
}

/// `GET /api/v1/strategies`
#[utoipa::path(
    get,
    path = "/api/v1/strategies",
    operation_id = "list_strategies",
    tag = "strategies",
    responses(
        (status = 200, description = "`{\"strategies\": [...]}`, each the strategy row (`id`, `name`, `description`, `is_active`, limits, `run_id`, `risk_state`, `peak_pnl`, `stop_level`, latches) with `state`, `pnl`, `peak`, `stop` and `live` (the risk actor's status while a run is open)", body = Object),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
    )
)]
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = strategies::Entity::find()
        .order_by_asc(strategies::Column::Id)
        .all(&state.db)
        .await
        .map_err(|e| ApiError::internal("reading strategies", e))?;
    let live = live_figures(&state).await?;
    let strategies = rows
        .iter()
        .map(|s| strategy_json(s, live.get(&s.id)))
        .collect::<Result<Vec<Value>, ApiError>>()?;
    Ok(HttpResponse::Ok().json(json!({ "strategies": strategies })))
}

/// A new strategy with optional risk limits (docs/ARCHITECTURE.md §4.8). Unknown fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "nifty-straddle", "max_loss": 5000.0,
    "trailing_sl_type": "amount", "trailing_sl_value": 1500.0, "trailing_activation": 1000.0}))]
pub struct CreateStrategy {
    /// Unique, 1–100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    name: String,
    description: Option<String>,
    is_active: Option<bool>,
    /// Exit when P&L ≤ −max_loss (rupees, > 0).
    #[schema(exclusive_minimum = 0.0)]
    max_loss: Option<f64>,
    /// Exit when P&L ≥ max_profit (rupees, > 0).
    #[schema(exclusive_minimum = 0.0)]
    max_profit: Option<f64>,
    /// `amount`, `points` or `percentage` (any case); needs `trailing_sl_value`.
    #[schema(
        pattern = "^[ \\t\\r\\n]*([Aa][Mm][Oo][Uu][Nn][Tt]|[Pp][Oo][Ii][Nn][Tt][Ss]|[Pp][Ee][Rr][Cc][Ee][Nn][Tt][Aa][Gg][Ee])[ \\t\\r\\n]*$"
    )]
    trailing_sl_type: Option<String>,
    /// > 0; at most 100 for `percentage`.
    #[schema(exclusive_minimum = 0.0)]
    trailing_sl_value: Option<f64>,
    /// Profit at which the trail starts (default 0); only with a trailing stop.
    #[schema(minimum = 0.0)]
    trailing_activation: Option<f64>,
    /// How long a breach must persist before the exit, 0–3600000 ms.
    #[serde(default, deserialize_with = "whole_opt")]
    #[schema(minimum = 0, maximum = 3600000)]
    exit_confirm_ms: Option<i64>,
}

/// `POST /api/v1/strategies`
#[utoipa::path(
    post,
    path = "/api/v1/strategies",
    operation_id = "create_strategy",
    tag = "strategies",
    request_body = CreateStrategy,
    responses(
        (status = 201, description = "the strategy row (`id`, `name`, `description`, `is_active`, limits, `run_id`, `risk_state`, `peak_pnl`, `stop_level`, latches) with `state`, `pnl`, `peak`, `stop` and `live` (the risk actor's status while a run is open)", body = Object),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field, named as `<field>: <reason>`", body = ErrorBody),
        (status = 409, description = "a strategy with this name exists", body = ErrorBody),
    )
)]
pub async fn create(
    state: web::Data<AppState>,
    body: Body<CreateStrategy>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let name = checked_name(&body.name)?;
    let limits = Limits {
        max_loss: body.max_loss,
        max_profit: body.max_profit,
        trailing_sl_type: trailing_type(body.trailing_sl_type)?,
        trailing_sl_value: body.trailing_sl_value,
        trailing_activation: body.trailing_activation,
        exit_confirm_ms: body.exit_confirm_ms,
    };
    limits.check()?;
    let mut row = strategies::ActiveModel {
        name: Set(name),
        description: Set(body.description),
        ..Default::default()
    };
    if let Some(active) = body.is_active {
        row.is_active = Set(active);
    }
    limits.apply(&mut row);
    let created = row
        .insert(&state.db)
        .await
        .map_err(db_error("creating the strategy"))?;
    Ok(HttpResponse::Created().json(strategy_json(&created, None)?))
}

/// `GET /api/v1/strategies/{id}`
#[utoipa::path(
    get,
    path = "/api/v1/strategies/{id}",
    operation_id = "get_strategy",
    tag = "strategies",
    params(("id" = i32, Path, description = "the strategy id")),
    responses(
        (status = 200, description = "the strategy row (`id`, `name`, `description`, `is_active`, limits, `run_id`, `risk_state`, `peak_pnl`, `stop_level`, latches) with `state`, `pnl`, `peak`, `stop` and `live` (the risk actor's status while a run is open)", body = Object),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such strategy", body = ErrorBody),
    )
)]
pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    let s = find(&state, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(respond(&state, &s).await?))
}

/// Name, description and activity; the limits change through `PUT …/risk`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStrategy {
    /// Unique, 1–100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    name: Option<String>,
    /// `null` removes the description.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    is_active: Option<bool>,
}

/// `PUT /api/v1/strategies/{id}`: name, description, is_active (limits: `…/risk`).
#[utoipa::path(
    put,
    path = "/api/v1/strategies/{id}",
    operation_id = "update_strategy",
    tag = "strategies",
    params(("id" = i32, Path, description = "the strategy id")),
    request_body = UpdateStrategy,
    responses(
        (status = 200, description = "the strategy row (`id`, `name`, `description`, `is_active`, limits, `run_id`, `risk_state`, `peak_pnl`, `stop_level`, latches) with `state`, `pnl`, `peak`, `stop` and `live` (the risk actor's status while a run is open)", body = Object),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such strategy", body = ErrorBody),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field, named as `<field>: <reason>`", body = ErrorBody),
        (status = 409, description = "a strategy with this name exists", body = ErrorBody),
    )
)]
pub async fn update(
    state: web::Data<AppState>,
    path: web::Path<i32>,
    body: Body<UpdateStrategy>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = body.into_inner();
    let name = body.name.as_deref().map(checked_name).transpose()?;
    let current = find(&state, id).await?;
    let mut row = strategies::ActiveModel {
        id: Set(current.id),
        ..Default::default()
    };
    if let Some(name) = name {
        row.name = Set(name);
    }
    if let Some(description) = body.description {
        row.description = Set(description);
    }
    if let Some(active) = body.is_active {
        row.is_active = Set(active);
    }
    let updated = row
        .update(&state.db)
        .await
        .map_err(db_error("updating the strategy"))?;
    state.monitor.do_send(StrategyChanged(updated.clone()));
    Ok(HttpResponse::Ok().json(respond(&state, &updated).await?))
}

/// `DELETE /api/v1/strategies/{id}`: refused (409) while legs are open; removes the
/// strategy's closed legs and risk events with it.
#[utoipa::path(
    delete,
    path = "/api/v1/strategies/{id}",
    operation_id = "delete_strategy",
    tag = "strategies",
    params(("id" = i32, Path, description = "the strategy id")),
    responses(
        (status = 204, description = "deleted with its closed legs and risk events"),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such strategy", body = ErrorBody),
        (status = 409, description = "the strategy has open legs", body = ErrorBody),
    )
)]
pub async fn delete(
    state: web::Data<AppState>,
    path: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    use strategy_executions::Column as C;
    let id = path.into_inner();
    find(&state, id).await?;
    let txn = begin_write(&state.db)
        .await
        .map_err(|e| ApiError::internal("deleting the strategy", e))?;
    let open = strategy_executions::Entity::find()
        .filter(C::StrategyId.eq(id))
        .filter(C::Status.is_in([
            ExecutionStatus::Pending,
            ExecutionStatus::Entered,
            ExecutionStatus::ExitPending,
        ]))
        .count(&txn)
        .await
        .map_err(|e| ApiError::internal("deleting the strategy", e))?;
    if open > 0 {
        return Err(ApiError::conflict(format!(
            "strategy {id} has {open} open leg(s); exit them before deleting it"
        )));
    }
    let legs: Vec<i32> = strategy_executions::Entity::find()
        .filter(C::StrategyId.eq(id))
        .all(&txn)
        .await
        .map_err(|e| ApiError::internal("deleting the strategy", e))?
        .into_iter()
        .map(|l| l.id)
        .collect();
    let deleted = async {
        exit_requests::Entity::delete_many()
            .filter(exit_requests::Column::ExecutionId.is_in(legs))
            .exec(&txn)
            .await?;
        strategy_executions::Entity::delete_many()
            .filter(C::StrategyId.eq(id))
            .exec(&txn)
            .await?;
        risk_events::Entity::delete_many()
            .filter(risk_events::Column::StrategyId.eq(id))
            .exec(&txn)
            .await?;
        strategies::Entity::delete_by_id(id).exec(&txn).await
    }
    .await;
    let deleted = deleted.map_err(|e| ApiError::internal("deleting the strategy", e))?;
    if deleted.rows_affected == 0 {
        // Deleted meanwhile by another request; dropping the transaction rolls it back.
        return Err(ApiError::not_found(format!("strategy {id} does not exist")));
    }
    txn.commit()
        .await
        .map_err(|e| ApiError::internal("deleting the strategy", e))?;
    Ok(HttpResponse::NoContent().finish())
}

/// Risk limits: only the fields sent change; `null` removes a limit.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"max_loss": 4000.0, "max_profit": null}))]
pub struct RiskBody {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0.0)]
    max_loss: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0.0)]
    max_profit: Option<Option<f64>>,
    /// `amount`, `points` or `percentage` (any case); needs `trailing_sl_value`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, pattern = "^[ \\t\\r\\n]*([Aa][Mm][Oo][Uu][Nn][Tt]|[Pp][Oo][Ii][Nn][Tt][Ss]|[Pp][Ee][Rr][Cc][Ee][Nn][Tt][Aa][Gg][Ee])[ \\t\\r\\n]*$")]
    trailing_sl_type: Option<Option<String>>,
    /// > 0; at most 100 for `percentage`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, exclusive_minimum = 0.0)]
    trailing_sl_value: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<f64>, minimum = 0.0)]
    trailing_activation: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable_whole")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 3600000)]
    exit_confirm_ms: Option<Option<i64>>,
    /// Resume a paused or exit-failed strategy.
    resume: Option<bool>,
}

/// `PUT /api/v1/strategies/{id}/risk`
#[utoipa::path(
    put,
    path = "/api/v1/strategies/{id}/risk",
    operation_id = "set_strategy_risk",
    tag = "strategies",
    params(("id" = i32, Path, description = "the strategy id")),
    request_body = RiskBody,
    responses(
        (status = 200, description = "the strategy row (`id`, `name`, `description`, `is_active`, limits, `run_id`, `risk_state`, `peak_pnl`, `stop_level`, latches) with `state`, `pnl`, `peak`, `stop` and `live` (the risk actor's status while a run is open)", body = Object),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such strategy", body = ErrorBody),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field, named as `<field>: <reason>`", body = ErrorBody),
        (status = 409, description = "`resume` of a strategy that is neither paused nor exit-failed", body = ErrorBody),
    )
)]
pub async fn set_risk(
    state: web::Data<AppState>,
    path: web::Path<i32>,
    body: Body<RiskBody>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = body.into_inner();
    let current = find(&state, id).await?;
    let mut limits = Limits::of(&current);
    if let Some(v) = body.max_loss {
        limits.max_loss = v;
    }
    if let Some(v) = body.max_profit {
        limits.max_profit = v;
    }
    if let Some(v) = body.trailing_sl_type {
        limits.trailing_sl_type = trailing_type(v)?;
    }
    if let Some(v) = body.trailing_sl_value {
        limits.trailing_sl_value = v;
    }
    if let Some(v) = body.trailing_activation {
        limits.trailing_activation = v;
    }
    if let Some(v) = body.exit_confirm_ms {
        limits.exit_confirm_ms = v;
    }
    limits.check()?;
    let mut updated = current.clone();
    if limits != Limits::of(&current) {
        let mut row = strategies::ActiveModel {
            id: Set(id),
            ..Default::default()
        };
        limits.apply(&mut row);
        updated = row
            .update(&state.db)
            .await
            .map_err(|e| ApiError::internal("updating the risk limits", e))?;
        state.monitor.do_send(StrategyChanged(updated.clone()));
    }
    if body.resume == Some(true) {
        state
            .monitor
            .send(ResumeStrategy(id))
            .await
            .map_err(|e| ApiError::internal("the position monitor did not answer", e))?
            .map_err(monitor_error)?;
        updated = find(&state, id).await?;
    }
    Ok(HttpResponse::Ok().json(respond(&state, &updated).await?))
}

/// `POST /api/v1/strategies/{id}/exit`: exits every open leg of the run (reason `manual`).
#[utoipa::path(
    post,
    path = "/api/v1/strategies/{id}/exit",
    operation_id = "exit_strategy",
    tag = "strategies",
    params(("id" = i32, Path, description = "the strategy id")),
    responses(
        (status = 202, description = "the legs queued for exit, already exiting, or failed", body = ExitAccepted),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such strategy", body = ErrorBody),
        (status = 409, description = "no open leg, or an exit is already running", body = ErrorBody),
    )
)]
pub async fn exit(
    state: web::Data<AppState>,
    path: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    find(&state, id).await?;
    let ticket = state
        .monitor
        .send(ManualExitStrategy(id))
        .await
        .map_err(|e| ApiError::internal("the position monitor did not answer", e))?
        .map_err(monitor_error)?;
    Ok(HttpResponse::Accepted().json(ExitAccepted {
        strategy_id: id,
        exit: ticket,
    }))
}

/// The answer of `POST /api/v1/strategies/{id}/exit`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExitAccepted {
    strategy_id: i32,
    exit: ExitTicket,
}
