//! Calendar tables: `trading_hours_templates`, `trading_sessions`, `market_holidays` and
//! `special_trading_sessions`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::index;
use crate::m0001_accounts_and_strategies::ENUM_LEN;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub(crate) enum TradingHoursTemplates {
    Table,
    Id,
    Name,
    Exchange,
    Timezone,
    IsActive,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
pub(crate) enum TradingSessions {
    Table,
    Id,
    TemplateId,
    Weekday,
    StartTime,
    EndTime,
    SessionType,
    IsActive,
}

#[derive(DeriveIden)]
pub(crate) enum MarketHolidays {
    Table,
    Id,
    Date,
    Name,
    Exchange,
    IsActive,
}

#[derive(DeriveIden)]
enum SpecialTradingSessions {
    Table,
    Id,
    Date,
    Name,
    StartTime,
    EndTime,
    Exchange,
    IsActive,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TradingHoursTemplates::Table)
                    .col(pk_auto(TradingHoursTemplates::Id))
                    .col(string_uniq(TradingHoursTemplates::Name))
                    .col(string(TradingHoursTemplates::Exchange))
                    .col(string(TradingHoursTemplates::Timezone))
                    .col(boolean(TradingHoursTemplates::IsActive).default(true))
                    .col(text_null(TradingHoursTemplates::Description))
                    .col(timestamp_with_time_zone(TradingHoursTemplates::CreatedAt))
                    .col(timestamp_with_time_zone(TradingHoursTemplates::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TradingSessions::Table)
                    .col(pk_auto(TradingSessions::Id))
                    .col(integer(TradingSessions::TemplateId))
                    .col(integer(TradingSessions::Weekday))
                    .col(time(TradingSessions::StartTime))
                    .col(time(TradingSessions::EndTime))
                    .col(string_len(TradingSessions::SessionType, ENUM_LEN))
                    .col(boolean(TradingSessions::IsActive).default(true))
                    .check(
                        Expr::col(TradingSessions::Weekday)
                            .gte(0)
                            .and(Expr::col(TradingSessions::Weekday).lte(6)),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_trading_sessions_template")
                            .from(TradingSessions::Table, TradingSessions::TemplateId)
                            .to(TradingHoursTemplates::Table, TradingHoursTemplates::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_trading_sessions_template",
                TradingSessions::Table,
                [TradingSessions::TemplateId],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(MarketHolidays::Table)
                    .col(pk_auto(MarketHolidays::Id))
                    .col(date(MarketHolidays::Date))
                    .col(string(MarketHolidays::Name))
                    .col(string(MarketHolidays::Exchange))
                    .col(boolean(MarketHolidays::IsActive).default(true))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                index(
                    "uq_market_holidays_date_exchange",
                    MarketHolidays::Table,
                    [MarketHolidays::Date, MarketHolidays::Exchange],
                )
                .unique()
                .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SpecialTradingSessions::Table)
                    .col(pk_auto(SpecialTradingSessions::Id))
                    .col(date(SpecialTradingSessions::Date))
                    .col(string(SpecialTradingSessions::Name))
                    .col(time(SpecialTradingSessions::StartTime))
                    .col(time(SpecialTradingSessions::EndTime))
                    .col(string(SpecialTradingSessions::Exchange))
                    .col(boolean(SpecialTradingSessions::IsActive).default(true))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_special_trading_sessions_date",
                SpecialTradingSessions::Table,
                [SpecialTradingSessions::Date],
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SpecialTradingSessions::Table.into_iden(),
            MarketHolidays::Table.into_iden(),
            TradingSessions::Table.into_iden(),
            TradingHoursTemplates::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
