//! `trading_accounts` and `strategies`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
pub(crate) enum TradingAccounts {
    Table,
    Id,
    Name,
    Broker,
    RestUrl,
    WsUrl,
    ApiKeyCiphertext,
    ApiKeyHint,
    IsPrimary,
    IsActive,
    ConnectionStatus,
    LastPingAt,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
pub(crate) enum Strategies {
    Table,
    Id,
    Name,
    Description,
    IsActive,
    MaxLoss,
    MaxProfit,
    TrailingSlType,
    TrailingSlValue,
    TrailingActivation,
    ExitConfirmMs,
    RunId,
    RunStartedAt,
    RiskState,
    PeakPnl,
    StopLevel,
    MaxLossLatched,
    MaxProfitLatched,
    TrailingLatched,
    RiskUpdatedAt,
    CreatedAt,
    UpdatedAt,
}

/// Width of the short-string columns holding enumerated values.
pub(crate) const ENUM_LEN: u32 = 32;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TradingAccounts::Table)
                    .col(pk_auto(TradingAccounts::Id))
                    .col(string_uniq(TradingAccounts::Name))
                    .col(string(TradingAccounts::Broker))
                    .col(string(TradingAccounts::RestUrl))
                    .col(string(TradingAccounts::WsUrl))
                    .col(text(TradingAccounts::ApiKeyCiphertext))
                    .col(string(TradingAccounts::ApiKeyHint))
                    .col(boolean(TradingAccounts::IsPrimary).default(false))
                    .col(boolean(TradingAccounts::IsActive).default(true))
                    .col(string_len(TradingAccounts::ConnectionStatus, ENUM_LEN).default("unknown"))
                    .col(timestamp_with_time_zone_null(TradingAccounts::LastPingAt))
                    .col(text_null(TradingAccounts::LastError))
                    .col(timestamp_with_time_zone(TradingAccounts::CreatedAt))
                    .col(timestamp_with_time_zone(TradingAccounts::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // At most one primary account.
        manager
            .create_index(
                Index::create()
                    .name("uq_trading_accounts_single_primary")
                    .table(TradingAccounts::Table)
                    .col(TradingAccounts::IsPrimary)
                    .unique()
                    .and_where(Expr::col(TradingAccounts::IsPrimary).eq(true))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Strategies::Table)
                    .col(pk_auto(Strategies::Id))
                    .col(string_uniq(Strategies::Name))
                    .col(text_null(Strategies::Description))
                    .col(boolean(Strategies::IsActive).default(true))
                    .col(double_null(Strategies::MaxLoss))
                    .col(double_null(Strategies::MaxProfit))
                    .col(string_len_null(Strategies::TrailingSlType, ENUM_LEN))
                    .col(double_null(Strategies::TrailingSlValue))
                    .col(double_null(Strategies::TrailingActivation))
                    .col(big_integer_null(Strategies::ExitConfirmMs))
                    .col(integer(Strategies::RunId).default(0))
                    .col(timestamp_with_time_zone_null(Strategies::RunStartedAt))
                    .col(string_len(Strategies::RiskState, ENUM_LEN).default("monitoring"))
                    .col(double(Strategies::PeakPnl).default(0.0))
                    .col(double_null(Strategies::StopLevel))
                    .col(boolean(Strategies::MaxLossLatched).default(false))
                    .col(boolean(Strategies::MaxProfitLatched).default(false))
                    .col(boolean(Strategies::TrailingLatched).default(false))
                    .col(timestamp_with_time_zone_null(Strategies::RiskUpdatedAt))
                    .col(timestamp_with_time_zone(Strategies::CreatedAt))
                    .col(timestamp_with_time_zone(Strategies::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Strategies::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(TradingAccounts::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
