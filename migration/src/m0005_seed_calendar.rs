//! Seeds the default calendar: the "NSE Default" template (Asia/Kolkata, Monday–Friday
//! pre-open 09:00–09:15 and normal 09:15–15:30) and the NSE equity holidays of 2026.
//!
//! The seed never duplicates rows: the template and its sessions are inserted only if no
//! template of that name exists, and holidays already present for a date are left alone.
//! Rolling back deletes the template (with its sessions) and the seeded holiday dates.

use chrono::{NaiveDate, NaiveTime, Utc};
use sea_orm_migration::prelude::*;

use crate::m0003_calendar::{MarketHolidays, TradingHoursTemplates, TradingSessions};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Name of the seeded template.
const TEMPLATE_NAME: &str = "NSE Default";
/// Exchange of the seeded template and holidays.
const EXCHANGE: &str = "NSE";
const TIMEZONE: &str = "Asia/Kolkata";
const DESCRIPTION: &str =
    "NSE equity and derivatives: pre-open 09:00-09:15, normal 09:15-15:30, Monday to Friday (IST)";

/// Sessions of each trading weekday: (type, start, end), in IST.
const SESSIONS: [(&str, NaiveTime, NaiveTime); 2] = [
    ("pre_open", time(9, 0), time(9, 15)),
    ("normal", time(9, 15), time(15, 30)),
];
/// Monday (0) to Friday (4).
const WEEKDAYS: std::ops::RangeInclusive<i32> = 0..=4;

/// NSE trading holidays of 2026.
const HOLIDAYS_2026: [(NaiveDate, &str); 15] = [
    (date(2026, 1, 26), "Republic Day"),
    (date(2026, 3, 3), "Holi"),
    (date(2026, 3, 26), "Shri Ram Navami"),
    (date(2026, 3, 31), "Shri Mahavir Jayanti"),
    (date(2026, 4, 3), "Good Friday"),
    (date(2026, 4, 14), "Dr. Baba Saheb Ambedkar Jayanti"),
    (date(2026, 5, 1), "Maharashtra Day"),
    (date(2026, 5, 28), "Bakri Eid"),
    (date(2026, 6, 26), "Moharram"),
    (date(2026, 9, 14), "Ganesh Chaturthi"),
    (date(2026, 10, 2), "Mahatma Gandhi Jayanti"),
    (date(2026, 10, 20), "Dussehra"),
    (date(2026, 11, 10), "Diwali - Balipratipada"),
    (date(2026, 11, 24), "Prakash Gurpurb Sri Guru Nanak Dev"),
    (date(2026, 12, 25), "Christmas"),
];

/// A date for a constant above; an invalid one fails the build (constant evaluation).
const fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(year, month, day) {
        Some(date) => date,
        None => panic!("invalid seed date"),
    }
}

/// A time for a constant above; an invalid one fails the build (constant evaluation).
const fn time(hour: u32, minute: u32) -> NaiveTime {
    match NaiveTime::from_hms_opt(hour, minute, 0) {
        Some(time) => time,
        None => panic!("invalid seed time"),
    }
}

/// Id of the template named [`TEMPLATE_NAME`], if it exists.
async fn template_id(manager: &SchemaManager<'_>) -> Result<Option<i32>, DbErr> {
    let row = manager
        .get_connection()
        .query_one(
            Query::select()
                .column(TradingHoursTemplates::Id)
                .from(TradingHoursTemplates::Table)
                .and_where(Expr::col(TradingHoursTemplates::Name).eq(TEMPLATE_NAME)),
        )
        .await?;
    row.map(|row| row.try_get_by_index::<i32>(0)).transpose()
}

async fn seed_template(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    if template_id(manager).await?.is_some() {
        return Ok(());
    }
    let now = Utc::now();
    let mut insert = Query::insert();
    insert
        .into_table(TradingHoursTemplates::Table)
        .columns([
            TradingHoursTemplates::Name,
            TradingHoursTemplates::Exchange,
            TradingHoursTemplates::Timezone,
            TradingHoursTemplates::IsActive,
            TradingHoursTemplates::Description,
            TradingHoursTemplates::CreatedAt,
            TradingHoursTemplates::UpdatedAt,
        ])
        .values([
            TEMPLATE_NAME.into(),
            EXCHANGE.into(),
            TIMEZONE.into(),
            true.into(),
            DESCRIPTION.into(),
            now.into(),
            now.into(),
        ])
        .map_err(|e| DbErr::Migration(format!("building template seed: {e}")))?;
    manager.exec_stmt(insert).await?;
    let template = template_id(manager).await?.ok_or_else(|| {
        DbErr::Migration(format!("template {TEMPLATE_NAME:?} missing after insert"))
    })?;

    let mut insert = Query::insert();
    insert.into_table(TradingSessions::Table).columns([
        TradingSessions::TemplateId,
        TradingSessions::Weekday,
        TradingSessions::StartTime,
        TradingSessions::EndTime,
        TradingSessions::SessionType,
        TradingSessions::IsActive,
    ]);
    for weekday in WEEKDAYS {
        for (session_type, start, end) in SESSIONS {
            insert
                .values([
                    template.into(),
                    weekday.into(),
                    start.into(),
                    end.into(),
                    session_type.into(),
                    true.into(),
                ])
                .map_err(|e| DbErr::Migration(format!("building session seed: {e}")))?;
        }
    }
    manager.exec_stmt(insert).await
}

async fn seed_holidays(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let mut insert = Query::insert();
    insert
        .into_table(MarketHolidays::Table)
        .columns([
            MarketHolidays::Date,
            MarketHolidays::Name,
            MarketHolidays::Exchange,
            MarketHolidays::IsActive,
        ])
        .on_conflict(
            OnConflict::columns([MarketHolidays::Date, MarketHolidays::Exchange])
                .do_nothing()
                .to_owned(),
        );
    for (date, name) in HOLIDAYS_2026 {
        insert
            .values([date.into(), name.into(), EXCHANGE.into(), true.into()])
            .map_err(|e| DbErr::Migration(format!("building holiday seed: {e}")))?;
    }
    manager.exec_stmt(insert).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        seed_template(manager).await?;
        seed_holidays(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if let Some(template) = template_id(manager).await? {
            manager
                .exec_stmt(
                    Query::delete()
                        .from_table(TradingSessions::Table)
                        .and_where(Expr::col(TradingSessions::TemplateId).eq(template))
                        .to_owned(),
                )
                .await?;
            manager
                .exec_stmt(
                    Query::delete()
                        .from_table(TradingHoursTemplates::Table)
                        .and_where(Expr::col(TradingHoursTemplates::Id).eq(template))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .exec_stmt(
                Query::delete()
                    .from_table(MarketHolidays::Table)
                    .and_where(Expr::col(MarketHolidays::Exchange).eq(EXCHANGE))
                    .and_where(
                        Expr::col(MarketHolidays::Date).is_in(HOLIDAYS_2026.map(|(date, _)| date)),
                    )
                    .to_owned(),
            )
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
