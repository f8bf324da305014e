//! `/api/v1/calendar`: the calendar actor's status and CRUD of the calendar tables
//! (ARCHITECTURE §7, §10).
//!
//! Every successful write waits for the calendar actor to reload before answering, so the new
//! phase is in effect (and broadcast) when the response arrives. Bad input is rejected with 422
//! before anything is written. Exchange codes are stored in upper case and timezones under their
//! canonical IANA name. Sessions, regular or special, must end after they start on the same day
//! (no overnight sessions: a typo such as 03:30 for 15:30 must not open the market all night).

use actix_web::{HttpResponse, web};
use chrono::{Datelike, NaiveDate, NaiveTime};
use chrono_tz::Tz;
use entity::prelude::*;
use entity::{
    market_holidays, special_trading_sessions, trading_hours_templates, trading_sessions,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set, SqlErr,
    TransactionTrait,
};
use serde::Deserialize;

use actors::calendar::{GetCalendarStatus, ReloadCalendar};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::numbers::whole;

/// Longest accepted name or description line.
const MAX_NAME_LEN: usize = 200;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(status))
        .route("/templates", web::get().to(list_templates))
        .route("/templates", web::post().to(create_template))
        .route("/templates/{id}", web::get().to(get_template))
        .route("/templates/{id}", web::put().to(update_template))
        .route("/templates/{id}", web::delete().to(delete_template))
        .route("/sessions", web::get().to(list_sessions))
        .route("/sessions", web::post().to(create_session))
        .route("/sessions/{id}", web::put().to(update_session))
        .route("/sessions/{id}", web::delete().to(delete_session))
        .route("/holidays", web::get().to(list_holidays))
        .route("/holidays", web::post().to(create_holiday))
        .route("/holidays/{id}", web::put().to(update_holiday))
        .route("/holidays/{id}", web::delete().to(delete_holiday))
        .route("/special-sessions", web::get().to(list_specials))
        .route("/special-sessions", web::post().to(create_special))
        .route("/special-sessions/{id}", web::put().to(update_special))
        .route("/special-sessions/{id}", web::delete().to(delete_special));
}

// ---- status ----

/// The calendar actor's status: phase, next change, templates, today's holiday and special sessions.
#[utoipa::path(
    get,
    path = "/api/v1/calendar",
    operation_id = "calendar_status",
    tag = "calendar",
    responses(
        (status = 200, description = "`phase` (PreOpen, Open, Closed), `since`, `next_change_at`, `next_phase`, `seconds_to_next_change`, `always_open`, `templates`, `holiday_today`, `special_today`, `loaded_at`, `last_error`, `state`, `restarts`", body = Object),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
    )
)]
async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let status = state
        .calendar
        .send(GetCalendarStatus)
        .await
        .map_err(|e| ApiError::internal("the calendar actor is not running", e))?;
    Ok(HttpResponse::Ok().json(status))
}

/// Makes the calendar actor reload, so a write is in effect before it is answered.
async fn reload(state: &AppState) -> Result<(), ApiError> {
    match state.calendar.send(ReloadCalendar).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "calendar reload after an edit failed");
            Err(ApiError::unavailable(
                "the change was saved, but the calendar could not reload it from the database; \
                 it retries every minute",
            ))
        }
        Err(e) => Err(ApiError::internal("the calendar actor is not running", e)),
    }
}

// ---- validation ----

fn unprocessable(field: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::unprocessable(format!("{field}: {reason}"))
}

/// Every IANA timezone name the service knows.
fn timezone_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())))
        .description(Some("An IANA timezone, e.g. Asia/Kolkata."))
        .into()
}

/// A trimmed, non-empty name of at most [`MAX_NAME_LEN`] characters.
fn name(field: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(unprocessable(field, "must not be empty"));
    }
    if v.chars().count() > MAX_NAME_LEN {
        return Err(unprocessable(
            field,
            format!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(v.to_string())
}

/// An exchange code (letters, digits, `_`, `-`), stored in upper case.
fn exchange(value: &str) -> Result<String, ApiError> {
    let v = name("exchange", value)?;
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(unprocessable(
            "exchange",
            "must contain only letters, digits, '_' and '-'",
        ));
    }
    Ok(v.to_ascii_uppercase())
}

/// A known IANA timezone, returned under its canonical name.
fn timezone(value: &str) -> Result<String, ApiError> {
    value
        .trim()
        .parse::<Tz>()
        .map(|tz| tz.name().to_string())
        .map_err(|_| {
            unprocessable(
                "timezone",
                format!("{value:?} is not a known IANA timezone (e.g. Asia/Kolkata)"),
            )
        })
}

/// "HH:MM" or "HH:MM:SS".
fn time(field: &str, value: &str) -> Result<NaiveTime, ApiError> {
    let v = value.trim();
    NaiveTime::parse_from_str(v, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(v, "%H:%M"))
        .map_err(|_| unprocessable(field, format!("{value:?} is not a time HH:MM or HH:MM:SS")))
}

/// "YYYY-MM-DD".
fn date(field: &str, value: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| unprocessable(field, format!("{value:?} is not a date YYYY-MM-DD")))
}

/// Start and end of a session on one day: the end must come after the start.
fn span(start: &str, end: &str) -> Result<(NaiveTime, NaiveTime), ApiError> {
    let (start, end) = (time("start_time", start)?, time("end_time", end)?);
    if end <= start {
        return Err(unprocessable("end_time", "must be after start_time"));
    }
    Ok((start, end))
}

/// Maps a unique-constraint violation to 409 with `conflict`, anything else to 500.
fn write_error(
    context: &'static str,
    conflict: impl FnOnce() -> String,
) -> impl FnOnce(DbErr) -> ApiError {
    move |e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => ApiError::conflict(conflict()),
        _ => ApiError::internal(context, e),
    }
}

fn read_error(context: &'static str) -> impl FnOnce(DbErr) -> ApiError {
    move |e| ApiError::internal(context, e)
}

// ---- templates ----

/// A trading-hours template. Unknown fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "NSE Default", "exchange": "NSE", "timezone": "Asia/Kolkata"}))]
struct TemplateBody {
    /// Unique.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    /// Stored in upper case.
    #[schema(
        max_length = 200,
        pattern = "^[ \\t\\r\\n]*[A-Za-z0-9_-]+[ \\t\\r\\n]*$"
    )]
    exchange: String,
    /// An IANA timezone, e.g. Asia/Kolkata.
    #[schema(schema_with = timezone_schema)]
    timezone: String,
    #[serde(default = "yes")]
    #[schema(default = true)]
    is_active: bool,
    #[serde(default)]
    description: Option<String>,
}

fn yes() -> bool {
    true
}

impl TemplateBody {
    fn validate(&self) -> Result<trading_hours_templates::ActiveModel, ApiError> {
        let description = self
            .description
            .as_deref()
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty());
        Ok(trading_hours_templates::ActiveModel {
            name: Set(name("name", &self.name)?),
            exchange: Set(exchange(&self.exchange)?),
            timezone: Set(timezone(&self.timezone)?),
            is_active: Set(self.is_active),
            description: Set(description),
            ..Default::default()
        })
    }
}

fn template_not_found(id: i32) -> ApiError {
    ApiError::not_found(format!("template {id} not found"))
}

async fn find_template(
    state: &AppState,
    id: i32,
) -> Result<trading_hours_templates::Model, ApiError> {
    TradingHoursTemplates::find_by_id(id)
        .one(&state.db)
        .await
        .map_err(read_error("reading the template"))?
        .ok_or_else(|| template_not_found(id))
}

/// Every trading-hours template.
#[utoipa::path(
    get,
    path = "/api/v1/calendar/templates",
    tag = "calendar",
    responses(
        (status = 200, description = "templates: `id`, `name`, `exchange`, `timezone`, `is_active`, `description`, `created_at`, `updated_at`", body = [trading_hours_templates::Model]),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
    )
)]
async fn list_templates(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = TradingHoursTemplates::find()
        .order_by_asc(trading_hours_templates::Column::Id)
        .all(&state.db)
        .await
        .map_err(read_error("listing templates"))?;
    Ok(HttpResponse::Ok().json(rows))
}

/// One template.
#[utoipa::path(
    get,
    path = "/api/v1/calendar/templates/{id}",
    tag = "calendar",
    params(("id" = i32, Path, description = "the row id")),
    responses(
        (status = 200, description = "the template", body = trading_hours_templates::Model),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such template", body = ErrorBody),
    )
)]
async fn get_template(
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(find_template(&state, id.into_inner()).await?))
}

/// Creates a template; answers once the calendar reloaded.
#[utoipa::path(
    post,
    path = "/api/v1/calendar/templates",
    tag = "calendar",
    request_body = TemplateBody,
    responses(
        (status = 201, description = "the template", body = trading_hours_templates::Model),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field, named as `<field>: <reason>`",
            body = ErrorBody),
        (status = 503, description = "saved, but the calendar could not reload it",
            body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
    )
)]
async fn create_template(
    state: web::Data<AppState>,
    body: web::Json<TemplateBody>,
) -> Result<HttpResponse, ApiError> {
    let model = body.validate()?;
    let row = model
        .insert(&state.db)
        .await
        .map_err(write_error("saving the template", || {
            format!("a template named {:?} already exists", body.name.trim())
        }))?;
    reload(&state).await?;
    Ok(HttpResponse::Created().json(row))
}

/// Replaces a template; answers once the calendar reloaded.
#[utoipa::path(
    put,
    path = "/api/v1/calendar/templates/{id}",
    tag = "calendar",
    params(("id" = i32, Path, description = "the row id")),
    request_body = TemplateBody,
    responses(
        (status = 200, description = "the template", body = trading_hours_templates::Model),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field, named as `<field>: <reason>`",
            body = ErrorBody),
        (status = 503, description = "saved, but the calendar could not reload it",
            body = ErrorBody),
        (status = 404, description = "no such template", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
    )
)]
async fn update_template(
    state: web::Data<AppState>,
    id: web::Path<i32>,
    body: web::Json<TemplateBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    find_template(&state, id).await?;
    let mut model = body.validate()?;
    model.id = Set(id);
    let row = model
        .update(&state.db)
        .await
        .map_err(write_error("saving the template", || {
            format!("a template named {:?} already exists", body.name.trim())
        }))?;
    reload(&state).await?;
    Ok(HttpResponse::Ok().json(row))
}

/// Deletes the template and its sessions; answers once the calendar reloaded.
#[utoipa::path(
    delete,
    path = "/api/v1/calendar/templates/{id}",
    tag = "calendar",
    params(("id" = i32, Path, description = "the row id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such template", body = ErrorBody),
        (status = 503, description = "deleted, but the calendar could not reload", body = ErrorBody),
    )
)]
async fn delete_template(
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let txn = state
        .db
        .begin()
        .await
        .map_err(read_error("deleting the template"))?;
    TradingSessions::delete_many()
        .filter(trading_sessions::Column::TemplateId.eq(id))
        .exec(&txn)
        .await
        .map_err(read_error("deleting the template's sessions"))?;
    let deleted = TradingHoursTemplates::delete_by_id(id)
        .exec(&txn)
        .await
        .map_err(read_error("deleting the template"))?;
    if deleted.rows_affected == 0 {
        // Dropping the transaction rolls it back.
        return Err(template_not_found(id));
    }
    txn.commit()
        .await
        .map_err(read_error("deleting the template"))?;
    reload(&state).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- weekly sessions ----

/// A weekly session of a template. Unknown fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"template_id": 1, "weekday": 0, "start_time": "09:15",
    "end_time": "15:30", "session_type": "normal"}))]
struct SessionBody {
    /// An existing template.
    #[serde(deserialize_with = "whole")]
    template_id: i32,
    /// 0 = Monday … 6 = Sunday.
    #[serde(deserialize_with = "whole")]
    #[schema(minimum = 0, maximum = 6)]
    weekday: i32,
    /// `HH:MM` or `HH:MM:SS`.
    #[schema(
        pattern = "^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
        example = "09:15"
    )]
    start_time: String,
    /// `HH:MM` or `HH:MM:SS`, after `start_time` on the same day.
    #[schema(
        pattern = "^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
        example = "15:30"
    )]
    end_time: String,
    /// `normal` or `pre_open`.
    #[schema(pattern = "^(normal|pre_open)$")]
    session_type: String,
    #[serde(default = "yes")]
    #[schema(default = true)]
    is_active: bool,
}

impl SessionBody {
    async fn validate(self, state: &AppState) -> Result<trading_sessions::ActiveModel, ApiError> {
        if !(0..=6).contains(&self.weekday) {
            return Err(unprocessable("weekday", "must be 0 (Monday) to 6 (Sunday)"));
        }
        let (start, end) = span(&self.start_time, &self.end_time)?;
        let session_type = self
            .session_type
            .parse::<SessionType>()
            .map_err(|_| unprocessable("session_type", "must be \"normal\" or \"pre_open\""))?;
        let template = TradingHoursTemplates::find_by_id(self.template_id)
            .one(&state.db)
            .await
            .map_err(read_error("reading the template"))?;
        if template.is_none() {
            return Err(unprocessable(
                "template_id",
                format!("no template with id {}", self.template_id),
            ));
        }
        Ok(trading_sessions::ActiveModel {
            template_id: Set(self.template_id),
            weekday: Set(self.weekday),
            start_time: Set(start),
            end_time: Set(end),
            session_type: Set(session_type),
            is_active: Set(self.is_active),
            ..Default::default()
        })
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SessionQuery {
    /// Only this template's sessions.
    template_id: Option<i32>,
}

fn session_not_found(id: i32) -> ApiError {
    ApiError::not_found(format!("session {id} not found"))
}

/// Weekly sessions, optionally of one template.
#[utoipa::path(
    get,
    path = "/api/v1/calendar/sessions",
    tag = "calendar",
    params(SessionQuery),
    responses(
        (status = 200, description = "sessions: `id`, `template_id`, `weekday`, `start_time`, `end_time`, `session_type`, `is_active`", body = [trading_sessions::Model]),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "an invalid or unknown query parameter", body = ErrorBody),
    )
)]
async fn list_sessions(
    state: web::Data<AppState>,
    query: web::Query<SessionQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut find = TradingSessions::find();
    if let Some(template) = query.template_id {
        find = find.filter(trading_sessions::Column::TemplateId.eq(template));
    }
    let rows = find
        .order_by_asc(trading_sessions::Column::TemplateId)
        .order_by_asc(trading_sessions::Column::Weekday)
        .order_by_asc(trading_sessions::Column::StartTime)
        .order_by_asc(trading_sessions::Column::Id)
        .all(&state.db)
        .await
        .map_err(read_error("listing sessions"))?;
    Ok(HttpResponse::Ok().json(rows))
}

/// Creates a weekly session; answers once the calendar reloaded.
#[utoipa::path(
    post,
    path = "/api/v1/calendar/sessions",
    tag = "calendar",
    request_body = SessionBody,
    responses(
        (status = 201, description = "the session", body = trading_sessions::Model),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field, named as `<field>: <reason>`",
            body = ErrorBody),
        (status = 503, description = "saved, but the calendar could not reload it",
            body = ErrorBody),
    )
)]
async fn create_session(
    state: web::Data<AppState>,
    body: web::Json<SessionBody>,
) -> Result<HttpResponse, ApiError> {
    let model = body.into_inner().validate(&state).await?;
    let row = model
        .insert(&state.db)
        .await
        .map_err(read_error("saving the session"))?;
    reload(&state).await?;
    Ok(HttpResponse::Created().json(row))
}

/// Replaces a weekly session; answers once the calendar reloaded.
#[utoipa::path(
    put,
    path = "/api/v1/calendar/sessions/{id}",
    tag = "calendar",
    params(("id" = i32, Path, description = "the row id")),
    request_body = SessionBody,
    responses(
        (status = 200, description = "the session", body = trading_sessions::Model),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field, named as `<field>: <reason>`",
            body = ErrorBody),
        (status = 503, description = "saved, but the calendar could not reload it",
            body = ErrorBody),
        (status = 404, description = "no such session", body = ErrorBody),
    )
)]
async fn update_session(
    state: web::Data<AppState>,
    id: web::Path<i32>,
    body: web::Json<SessionBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    TradingSessions::find_by_id(id)
        .one(&state.db)
        .await
        .map_err(read_error("reading the session"))?
        .ok_or_else(|| session_not_found(id))?;
    let mut model = body.into_inner().validate(&state).await?;
    model.id = Set(id);
    let row = model
        .update(&state.db)
        .await
        .map_err(read_error("saving the session"))?;
    reload(&state).await?;
    Ok(HttpResponse::Ok().json(row))
}

/// Deletes a weekly session; answers once the calendar reloaded.
#[utoipa::path(
    delete,
    path = "/api/v1/calendar/sessions/{id}",
    tag = "calendar",
    params(("id" = i32, Path, description = "the row id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such session", body = ErrorBody),
        (status = 503, description = "deleted, but the calendar could not reload", body = ErrorBody),
    )
)]
async fn delete_session(
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let deleted = TradingSessions::delete_by_id(id)
        .exec(&state.db)
        .await
        .map_err(read_error("deleting the session"))?;
    if deleted.rows_affected == 0 {
        return Err(session_not_found(id));
    }
    reload(&state).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- holidays ----

/// A market holiday; one per date and exchange. Unknown fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"date": "2026-11-24", "name": "Guru Nanak Jayanti", "exchange": "NSE"}))]
struct HolidayBody {
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    date: String,
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    /// Stored in upper case.
    #[schema(
        max_length = 200,
        pattern = "^[ \\t\\r\\n]*[A-Za-z0-9_-]+[ \\t\\r\\n]*$"
    )]
    exchange: String,
    #[serde(default = "yes")]
    #[schema(default = true)]
    is_active: bool,
}

impl HolidayBody {
    fn validate(&self) -> Result<market_holidays::ActiveModel, ApiError> {
        Ok(market_holidays::ActiveModel {
            date: Set(date("date", &self.date)?),
            name: Set(name("name", &self.name)?),
            exchange: Set(exchange(&self.exchange)?),
            is_active: Set(self.is_active),
            ..Default::default()
        })
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct HolidayQuery {
    /// Only holidays of this year.
    #[param(minimum = 1, maximum = 9999)]
    year: Option<i32>,
    /// Only holidays of this exchange.
    exchange: Option<String>,
}

fn holiday_not_found(id: i32) -> ApiError {
    ApiError::not_found(format!("holiday {id} not found"))
}

fn holiday_conflict(body: &HolidayBody) -> impl FnOnce() -> String + '_ {
    move || {
        format!(
            "{} already has a holiday on {}",
            body.exchange.trim().to_ascii_uppercase(),
            body.date.trim()
        )
    }
}

/// Holidays, optionally of one year and exchange.
#[utoipa::path(
    get,
    path = "/api/v1/calendar/holidays",
    tag = "calendar",
    params(HolidayQuery),
    responses(
        (status = 200, description = "holidays: `id`, `date`, `name`, `exchange`, `is_active`", body = [market_holidays::Model]),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "an invalid or unknown query parameter, or a year out of range", body = ErrorBody),
    )
)]
async fn list_holidays(
    state: web::Data<AppState>,
    query: web::Query<HolidayQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let mut find = MarketHolidays::find();
    if let Some(year) = query.year {
        if !(1..=9999).contains(&year) {
            return Err(ApiError::bad_request(format!(
                "year {year} is out of range: 1 to 9999"
            )));
        }
        let first = NaiveDate::from_ymd_opt(year, 1, 1)
            .ok_or_else(|| ApiError::bad_request(format!("year {year} is out of range")))?;
        let last = first
            .with_month(12)
            .and_then(|d| d.with_day(31))
            .ok_or_else(|| ApiError::bad_request(format!("year {year} is out of range")))?;
        find = find.filter(market_holidays::Column::Date.between(first, last));
    }
    if let Some(code) = query.exchange {
        find = find.filter(market_holidays::Column::Exchange.eq(code.trim().to_ascii_uppercase()));
    }
    let rows = find
        .order_by_asc(market_holidays::Column::Date)
        .order_by_asc(market_holidays::Column::Exchange)
        .all(&state.db)
        .await
        .map_err(read_error("listing holidays"))?;
    Ok(HttpResponse::Ok().json(rows))
}

/// Creates a holiday; answers once the calendar reloaded.
#[utoipa::path(
    post,
    path = "/api/v1/calendar/holidays",
    tag = "calendar",
    request_body = HolidayBody,
    responses(
        (status = 201, description = "the holiday", body = market_holidays::Model),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field, named as `<field>: <reason>`",
            body = ErrorBody),
        (status = 503, description = "saved, but the calendar could not reload it",
            body = ErrorBody),
        (status = 409, description = "the exchange already has a holiday on that date", body = ErrorBody),
    )
)]
async fn create_holiday(
    state: web::Data<AppState>,
    body: web::Json<HolidayBody>,
) -> Result<HttpResponse, ApiError> {
    let row = body
        .validate()?
        .insert(&state.db)
        .await
        .map_err(write_error("saving the holiday", holiday_conflict(&body)))?;
    reload(&state).await?;
    Ok(HttpResponse::Created().json(row))
}

/// Replaces a holiday; answers once the calendar reloaded.
#[utoipa::path(
    put,
    path = "/api/v1/calendar/holidays/{id}",
    tag = "calendar",
    params(("id" = i32, Path, description = "the row id")),
    request_body = HolidayBody,
    responses(
        (status = 200, description = "the holiday", body = market_holidays::Model),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field, named as `<field>: <reason>`",
            body = ErrorBody),
        (status = 503, description = "saved, but the calendar could not reload it",
            body = ErrorBody),
        (status = 404, description = "no such holiday", body = ErrorBody),
        (status = 409, description = "the exchange already has a holiday on that date", body = ErrorBody),
    )
)]
async fn update_holiday(
    state: web::Data<AppState>,
    id: web::Path<i32>,
    body: web::Json<HolidayBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    MarketHolidays::find_by_id(id)
        .one(&state.db)
        .await
        .map_err(read_error("reading the holiday"))?
        .ok_or_else(|| holiday_not_found(id))?;
    let mut model = body.validate()?;
    model.id = Set(id);
    let row = model
        .update(&state.db)
        .await
        .map_err(write_error("saving the holiday", holiday_conflict(&body)))?;
    reload(&state).await?;
    Ok(HttpResponse::Ok().json(row))
}

/// Deletes a holiday; answers once the calendar reloaded.
#[utoipa::path(
    delete,
    path = "/api/v1/calendar/holidays/{id}",
    tag = "calendar",
    params(("id" = i32, Path, description = "the row id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such holiday", body = ErrorBody),
        (status = 503, description = "deleted, but the calendar could not reload", body = ErrorBody),
    )
)]
async fn delete_holiday(
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let deleted = MarketHolidays::delete_by_id(id)
        .exec(&state.db)
        .await
        .map_err(read_error("deleting the holiday"))?;
    if deleted.rows_affected == 0 {
        return Err(holiday_not_found(id));
    }
    reload(&state).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- special sessions ----

/// A special session (e.g. Muhurat trading); open even on a holiday. Unknown fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"date": "2026-11-08", "name": "Muhurat trading",
    "start_time": "18:00", "end_time": "19:15", "exchange": "NSE"}))]
struct SpecialBody {
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    date: String,
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    /// `HH:MM` or `HH:MM:SS`.
    #[schema(
        pattern = "^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
        example = "18:00"
    )]
    start_time: String,
    /// `HH:MM` or `HH:MM:SS`, after `start_time` on the same day.
    #[schema(
        pattern = "^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$",
        example = "19:15"
    )]
    end_time: String,
    /// Stored in upper case.
    #[schema(
        max_length = 200,
        pattern = "^[ \\t\\r\\n]*[A-Za-z0-9_-]+[ \\t\\r\\n]*$"
    )]
    exchange: String,
    #[serde(default = "yes")]
    #[schema(default = true)]
    is_active: bool,
}

impl SpecialBody {
    fn validate(self) -> Result<special_trading_sessions::ActiveModel, ApiError> {
        let date = date("date", &self.date)?;
        let name = name("name", &self.name)?;
        let (start, end) = span(&self.start_time, &self.end_time)?;
        Ok(special_trading_sessions::ActiveModel {
            date: Set(date),
            name: Set(name),
            start_time: Set(start),
            end_time: Set(end),
            exchange: Set(exchange(&self.exchange)?),
            is_active: Set(self.is_active),
            ..Default::default()
        })
    }
}

fn special_not_found(id: i32) -> ApiError {
    ApiError::not_found(format!("special session {id} not found"))
}

/// Every special session.
#[utoipa::path(
    get,
    path = "/api/v1/calendar/special-sessions",
    tag = "calendar",
    responses(
        (status = 200, description = "special sessions: `id`, `date`, `name`, `start_time`, `end_time`, `exchange`, `is_active`", body = [special_trading_sessions::Model]),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
    )
)]
async fn list_specials(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let rows = SpecialTradingSessions::find()
        .order_by_asc(special_trading_sessions::Column::Date)
        .order_by_asc(special_trading_sessions::Column::StartTime)
        .order_by_asc(special_trading_sessions::Column::Id)
        .all(&state.db)
        .await
        .map_err(read_error("listing special sessions"))?;
    Ok(HttpResponse::Ok().json(rows))
}

/// Creates a special session; answers once the calendar reloaded.
#[utoipa::path(
    post,
    path = "/api/v1/calendar/special-sessions",
    tag = "calendar",
    request_body = SpecialBody,
    responses(
        (status = 201, description = "the special session", body = special_trading_sessions::Model),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field, named as `<field>: <reason>`",
            body = ErrorBody),
        (status = 503, description = "saved, but the calendar could not reload it",
            body = ErrorBody),
    )
)]
async fn create_special(
    state: web::Data<AppState>,
    body: web::Json<SpecialBody>,
) -> Result<HttpResponse, ApiError> {
    let row = body
        .into_inner()
        .validate()?
        .insert(&state.db)
        .await
        .map_err(read_error("saving the special session"))?;
    reload(&state).await?;
    Ok(HttpResponse::Created().json(row))
}

/// Replaces a special session; answers once the calendar reloaded.
#[utoipa::path(
    put,
    path = "/api/v1/calendar/special-sessions/{id}",
    tag = "calendar",
    params(("id" = i32, Path, description = "the row id")),
    request_body = SpecialBody,
    responses(
        (status = 200, description = "the special session", body = special_trading_sessions::Model),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field, named as `<field>: <reason>`",
            body = ErrorBody),
        (status = 503, description = "saved, but the calendar could not reload it",
            body = ErrorBody),
        (status = 404, description = "no such special session", body = ErrorBody),
    )
)]
async fn update_special(
    state: web::Data<AppState>,
    id: web::Path<i32>,
    body: web::Json<SpecialBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    SpecialTradingSessions::find_by_id(id)
        .one(&state.db)
        .await
        .map_err(read_error("reading the special session"))?
        .ok_or_else(|| special_not_found(id))?;
    let mut model = body.into_inner().validate()?;
    model.id = Set(id);
    let row = model
        .update(&state.db)
        .await
        .map_err(read_error("saving the special session"))?;
    reload(&state).await?;
    Ok(HttpResponse::Ok().json(row))
}

/// Deletes a special session; answers once the calendar reloaded.
#[utoipa::path(
    delete,
    path = "/api/v1/calendar/special-sessions/{id}",
    tag = "calendar",
    params(("id" = i32, Path, description = "the row id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 404, description = "no such special session", body = ErrorBody),
        (status = 503, description = "deleted, but the calendar could not reload", body = ErrorBody),
    )
)]
async fn delete_special(
    state: web::Data<AppState>,
    id: web::Path<i32>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let deleted = SpecialTradingSessions::delete_by_id(id)
        .exec(&state.db)
        .await
        .map_err(read_error("deleting the special session"))?;
    if deleted.rows_affected == 0 {
        return Err(special_not_found(id));
    }
    reload(&state).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: ApiError) -> String {
        assert_eq!(e.code, "unprocessable");
        e.message
    }

    #[test]
    fn times_accept_minutes_or_seconds_only() {
        assert_eq!(
            time("start_time", "09:15").unwrap(),
            NaiveTime::from_hms_opt(9, 15, 0).unwrap()
        );
        assert_eq!(
            time("start_time", "15:30:05").unwrap(),
            NaiveTime::from_hms_opt(15, 30, 5).unwrap()
        );
        for bad in ["25:00", "9.15", "", "15:30:00.5x", "noon"] {
            let m = message(time("end_time", bad).unwrap_err());
            assert!(m.starts_with("end_time: "), "{bad}: {m}");
        }
    }

    #[test]
    fn sessions_must_end_after_they_start() {
        assert!(span("09:15", "15:30").is_ok());
        assert_eq!(
            message(span("15:30", "09:15").unwrap_err()),
            "end_time: must be after start_time"
        );
        assert!(span("09:15", "09:15:00").is_err());
    }

    #[test]
    fn dates_names_exchanges_and_timezones() {
        assert_eq!(
            date("date", "2026-11-24").unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
        );
        assert!(message(date("date", "24-11-2026").unwrap_err()).starts_with("date: "));
        assert!(message(date("date", "2026-02-30").unwrap_err()).starts_with("date: "));
        assert_eq!(name("name", "  Diwali ").unwrap(), "Diwali");
        assert_eq!(
            message(name("name", "   ").unwrap_err()),
            "name: must not be empty"
        );
        assert!(name("name", &"x".repeat(MAX_NAME_LEN + 1)).is_err());
        assert_eq!(exchange(" nse ").unwrap(), "NSE");
        assert!(message(exchange("N S E").unwrap_err()).starts_with("exchange: "));
        assert_eq!(timezone("Asia/Kolkata").unwrap(), "Asia/Kolkata");
        assert!(message(timezone("Mars/Olympus").unwrap_err()).starts_with("timezone: "));
    }
}
