//! `/api/v1/calendar`: the calendar actor's status and CRUD of the calendar tables
//! (docs/ARCHITECTURE.md §4.2, §4.11).
//!
//! Every successful write waits for the calendar actor to reload before answering, so the new
//! phase is in effect (and broadcast) when the response arrives. Bad input is rejected with 422
//! before anything is written. Exchange codes are stored in upper case and timezones under their
//! canonical IANA name. Sessions, regular or special, must end after they start on the same day
//! (no overnight sessions: a typo such as 03:30 for 15:30 must not open the market all night).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use actors::db::begin_write;
use chrono::{Datelike, NaiveDate};
use entity::prelude::*;
use entity::{
    market_holidays, special_trading_sessions, trading_hours_templates, trading_sessions,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, PrimaryKeyTrait, QueryFilter, QueryOrder,
    Set, SqlErr,
};
use serde::Deserialize;

use actors::calendar::{CalendarStatus, GetCalendarStatus, ReloadCalendar};

use super::AppState;
use super::body::Body;
use super::error::{ApiError, ErrorBody};
use super::numbers::whole;
use crate::calendar_input::{
    FieldError, HolidayInput, NewHoliday, date, exchange, name, span, timezone,
};
use crate::holiday_import::{self, Format, ImportError};

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
        // A resource of its own (not a method-guarded route), so that another method on this
        // path gets 405 instead of reaching `/holidays/{id}`.
        .service(web::resource("/holidays/import").route(web::post().to(import_holidays)))
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
        (status = 200, description = "`phase` (PreOpen, Open, Closed), `since`, `next_change_at`, `next_phase`, `seconds_to_next_change`, `always_open`, `templates`, `holiday_today`, `special_today`, `loaded_at`, `last_error`, `state`, `restarts`", body = CalendarStatus),
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

/// Every IANA timezone name the service knows.
fn timezone_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())))
        .description(Some("An IANA timezone, e.g. Asia/Kolkata."))
        .into()
}

fn unprocessable(field: &'static str, reason: impl std::fmt::Display) -> ApiError {
    FieldError::new(field, reason).into()
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

/// A calendar table whose rows the API edits one by one by id.
trait CalendarRow: EntityTrait<PrimaryKey: PrimaryKeyTrait<ValueType = i32>> {
    /// How an answer names a row, e.g. `special session`.
    const NAME: &'static str;
}

impl CalendarRow for TradingHoursTemplates {
    const NAME: &'static str = "template";
}

impl CalendarRow for TradingSessions {
    const NAME: &'static str = "session";
}

impl CalendarRow for MarketHolidays {
    const NAME: &'static str = "holiday";
}

impl CalendarRow for SpecialTradingSessions {
    const NAME: &'static str = "special session";
}

fn not_found<E: CalendarRow>(id: i32) -> ApiError {
    ApiError::not_found(format!("{} {id} not found", E::NAME))
}

/// The row with this id, or 404.
async fn existing<E: CalendarRow>(state: &AppState, id: i32) -> Result<E::Model, ApiError> {
    E::find_by_id(id)
        .one(&state.db)
        .await
        .map_err(|e| ApiError::internal(&format!("reading the {}", E::NAME), e))?
        .ok_or_else(|| not_found::<E>(id))
}

/// Deletes the row with this id (404 if there is none); answers once the calendar reloaded.
async fn delete_row<E: CalendarRow>(state: &AppState, id: i32) -> Result<HttpResponse, ApiError> {
    let deleted = E::delete_by_id(id)
        .exec(&state.db)
        .await
        .map_err(|e| ApiError::internal(&format!("deleting the {}", E::NAME), e))?;
    if deleted.rows_affected == 0 {
        return Err(not_found::<E>(id));
    }
    reload(state).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Answers with a written row once the calendar reloaded: 201 when it was created, else 200.
async fn written(
    state: &AppState,
    created: bool,
    row: impl serde::Serialize,
) -> Result<HttpResponse, ApiError> {
    reload(state).await?;
    let mut answer = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(answer.json(row))
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
    Ok(HttpResponse::Ok().json(existing::<TradingHoursTemplates>(&state, id.into_inner()).await?))
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
    body: Body<TemplateBody>,
) -> Result<HttpResponse, ApiError> {
    let model = body.validate()?;
    let row = model
        .insert(&state.db)
        .await
        .map_err(write_error("saving the template", || {
            format!("a template named {:?} already exists", body.name.trim())
        }))?;
    written(&state, true, row).await
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
    body: Body<TemplateBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    existing::<TradingHoursTemplates>(&state, id).await?;
    let mut model = body.validate()?;
    model.id = Set(id);
    let row = model
        .update(&state.db)
        .await
        .map_err(write_error("saving the template", || {
            format!("a template named {:?} already exists", body.name.trim())
        }))?;
    written(&state, false, row).await
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
    let txn = begin_write(&state.db)
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
        return Err(not_found::<TradingHoursTemplates>(id));
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
    body: Body<SessionBody>,
) -> Result<HttpResponse, ApiError> {
    let model = body.into_inner().validate(&state).await?;
    let row = model
        .insert(&state.db)
        .await
        .map_err(read_error("saving the session"))?;
    written(&state, true, row).await
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
    body: Body<SessionBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    existing::<TradingSessions>(&state, id).await?;
    let mut model = body.into_inner().validate(&state).await?;
    model.id = Set(id);
    let row = model
        .update(&state.db)
        .await
        .map_err(read_error("saving the session"))?;
    written(&state, false, row).await
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
    delete_row::<TradingSessions>(&state, id.into_inner()).await
}

// ---- holidays ----

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

fn holiday_conflict(holiday: &NewHoliday) -> impl FnOnce() -> String + '_ {
    move || {
        format!(
            "{} already has a holiday on {}",
            holiday.exchange, holiday.date
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
    request_body = HolidayInput,
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
    body: Body<HolidayInput>,
) -> Result<HttpResponse, ApiError> {
    let holiday = body.validate()?;
    let row = holiday
        .active_model()
        .insert(&state.db)
        .await
        .map_err(write_error(
            "saving the holiday",
            holiday_conflict(&holiday),
        ))?;
    written(&state, true, row).await
}

/// The JSON form of a holiday import: a non-empty array of holidays.
struct HolidayList;

impl utoipa::PartialSchema for HolidayList {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::ArrayBuilder;
        ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("HolidayInput"))
            .min_items(Some(1))
            .into()
    }
}

impl utoipa::ToSchema for HolidayList {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            "HolidayInput".into(),
            <HolidayInput as utoipa::PartialSchema>::schema(),
        ));
        HolidayInput::schemas(schemas);
    }
}

/// Imports a list of holidays in one step (e.g. next year's, from the exchange's circular):
/// all or nothing, duplicates skipped; answers once the calendar reloaded.
#[utoipa::path(
    post,
    path = "/api/v1/calendar/holidays/import",
    operation_id = "import_holidays",
    tag = "calendar",
    request_body(
        description = "`text/csv` with the header `date,name,exchange` (any column order, an \
            optional `is_active` column, lines starting with `#` ignored; a name with a comma is \
            quoted), or `application/json`: an array of holidays as `POST \
            /api/v1/calendar/holidays` takes them. Dates `YYYY-MM-DD`, exchanges stored in upper \
            case. At most `server.body_limit_bytes`.",
        content(
            (HolidayList = "application/json", example = json!([
                {"date": "2026-12-25", "name": "Christmas", "exchange": "NSE"}
            ])),
            (String = "text/csv",
                example = "date,name,exchange\n2026-12-25,Christmas,NSE\n"),
        )
    ),
    responses(
        (status = 200, description = "`inserted`: rows stored; `skipped`: rows whose date and \
            exchange were already stored or repeat an earlier row, each with `line` (CSV, the \
            header is line 1) or `item` (JSON array index, from 0), `date`, `exchange` and \
            `reason`. Importing the same list again inserts nothing", body = Object,
            example = json!({"inserted": 1, "skipped": [{"line": 3, "date": "2026-12-25",
                "exchange": "NSE", "reason": "repeats line 2"}]})),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 400, description = "the JSON does not parse", body = ErrorBody),
        (status = 409, description = "another writer stored one of the holidays meanwhile; \
            nothing was imported", body = ErrorBody),
        (status = 413, description = "body above `server.body_limit_bytes`", body = ErrorBody),
        (status = 415, description = "a Content-Type other than text/csv or application/json",
            body = ErrorBody),
        (status = 422, description = "invalid rows, nothing imported: the message names each, \
            and `details` lists them as `{\"line\" or \"item\", \"reason\"}`; also a missing or \
            wrong CSV header, JSON that is not an array, or no rows", body = ErrorBody),
        (status = 503, description = "saved, but the calendar could not reload it",
            body = ErrorBody),
    )
)]
async fn import_holidays(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let format = import_format(&req)?;
    let limit = state.body_limit;
    let bytes = body
        .to_bytes_limited(limit)
        .await
        .map_err(|_| ApiError::payload_too_large(limit))?
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    let rows = holiday_import::parse(format, &bytes).map_err(import_error)?;
    let report = holiday_import::import(&state.db, rows)
        .await
        .map_err(import_error)?;
    tracing::info!(
        inserted = report.inserted,
        skipped = report.skipped.len(),
        "holidays imported"
    );
    reload(&state).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// CSV or JSON, from the request's Content-Type.
fn import_format(req: &HttpRequest) -> Result<Format, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/csv" => Ok(Format::Csv),
        "application/json" => Ok(Format::Json),
        _ => Err(ApiError::unsupported_media_type(format!(
            "expected Content-Type text/csv (a file with the header date,name,exchange) or \
             application/json (an array of holidays), not {}",
            if content_type.is_empty() {
                "none".to_string()
            } else {
                format!("{content_type:?}")
            }
        ))),
    }
}

fn import_error(e: ImportError) -> ApiError {
    match e {
        ImportError::Malformed(_) => ApiError::bad_request(e.to_string()),
        ImportError::Unusable(_) => ApiError::unprocessable(e.to_string()),
        ImportError::Invalid(ref rows) => {
            let error = ApiError::unprocessable(e.to_string());
            match serde_json::to_value(rows) {
                Ok(details) => error.with_details(details),
                Err(_) => error,
            }
        }
        ImportError::Conflict(_) => ApiError::conflict(e.to_string()),
        ImportError::Database { context, source } => ApiError::internal(context, source),
    }
}

/// Replaces a holiday; answers once the calendar reloaded.
#[utoipa::path(
    put,
    path = "/api/v1/calendar/holidays/{id}",
    tag = "calendar",
    params(("id" = i32, Path, description = "the row id")),
    request_body = HolidayInput,
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
    body: Body<HolidayInput>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    existing::<MarketHolidays>(&state, id).await?;
    let holiday = body.validate()?;
    let mut model = holiday.active_model();
    model.id = Set(id);
    let row = model.update(&state.db).await.map_err(write_error(
        "saving the holiday",
        holiday_conflict(&holiday),
    ))?;
    written(&state, false, row).await
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
    delete_row::<MarketHolidays>(&state, id.into_inner()).await
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
    body: Body<SpecialBody>,
) -> Result<HttpResponse, ApiError> {
    let row = body
        .into_inner()
        .validate()?
        .insert(&state.db)
        .await
        .map_err(read_error("saving the special session"))?;
    written(&state, true, row).await
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
    body: Body<SpecialBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    existing::<SpecialTradingSessions>(&state, id).await?;
    let mut model = body.into_inner().validate()?;
    model.id = Set(id);
    let row = model
        .update(&state.db)
        .await
        .map_err(read_error("saving the special session"))?;
    written(&state, false, row).await
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
    delete_row::<SpecialTradingSessions>(&state, id.into_inner()).await
}
