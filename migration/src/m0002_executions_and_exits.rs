//! `strategy_executions`, `exit_requests` and `risk_events`.

use sea_orm_migration::{prelude::*, schema::*};

use crate::index;
use crate::m0001_accounts_and_strategies::{ENUM_LEN, Strategies, TradingAccounts};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StrategyExecutions {
    Table,
    Id,
    StrategyId,
    AccountId,
    RunId,
    Symbol,
    Exchange,
    Product,
    Action,
    Quantity,
    EntryPrice,
    Status,
    EntryOrderId,
    EnteredAt,
    FreezeQty,
    ExitOrderId,
    ExitAttempts,
    ExitPendingSince,
    ExitReason,
    ExitPrice,
    RealizedPnl,
    ExitedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ExitRequests {
    Table,
    Id,
    ExecutionId,
    Attempt,
    ClientRef,
    Quantity,
    BrokerOrderId,
    Outcome,
    Error,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum RiskEvents {
    Table,
    Id,
    StrategyId,
    RunId,
    EventType,
    Threshold,
    Pnl,
    Peak,
    Stop,
    Action,
    Message,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StrategyExecutions::Table)
                    .col(pk_auto(StrategyExecutions::Id))
                    .col(integer(StrategyExecutions::StrategyId))
                    .col(integer(StrategyExecutions::AccountId))
                    .col(integer(StrategyExecutions::RunId))
                    .col(string(StrategyExecutions::Symbol))
                    .col(string(StrategyExecutions::Exchange))
                    .col(string_len(StrategyExecutions::Product, ENUM_LEN))
                    .col(string_len(StrategyExecutions::Action, ENUM_LEN))
                    .col(big_integer(StrategyExecutions::Quantity))
                    .col(double(StrategyExecutions::EntryPrice))
                    .col(string_len(StrategyExecutions::Status, ENUM_LEN))
                    .col(string_null(StrategyExecutions::EntryOrderId))
                    .col(timestamp_with_time_zone(StrategyExecutions::EnteredAt))
                    .col(big_integer_null(StrategyExecutions::FreezeQty))
                    .col(string_null(StrategyExecutions::ExitOrderId))
                    .col(integer(StrategyExecutions::ExitAttempts).default(0))
                    .col(timestamp_with_time_zone_null(
                        StrategyExecutions::ExitPendingSince,
                    ))
                    .col(string_len_null(StrategyExecutions::ExitReason, ENUM_LEN))
                    .col(double_null(StrategyExecutions::ExitPrice))
                    .col(double_null(StrategyExecutions::RealizedPnl))
                    .col(timestamp_with_time_zone_null(StrategyExecutions::ExitedAt))
                    .col(timestamp_with_time_zone(StrategyExecutions::CreatedAt))
                    .col(timestamp_with_time_zone(StrategyExecutions::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_strategy_executions_strategy")
                            .from(StrategyExecutions::Table, StrategyExecutions::StrategyId)
                            .to(Strategies::Table, Strategies::Id)
                            .on_delete(ForeignKeyAction::Restrict)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_strategy_executions_account")
                            .from(StrategyExecutions::Table, StrategyExecutions::AccountId)
                            .to(TradingAccounts::Table, TradingAccounts::Id)
                            .on_delete(ForeignKeyAction::Restrict)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for index in [
            index(
                "idx_strategy_executions_status",
                StrategyExecutions::Table,
                [StrategyExecutions::Status],
            ),
            index(
                "idx_strategy_executions_strategy_run",
                StrategyExecutions::Table,
                [StrategyExecutions::StrategyId, StrategyExecutions::RunId],
            ),
            index(
                "idx_strategy_executions_account_status",
                StrategyExecutions::Table,
                [StrategyExecutions::AccountId, StrategyExecutions::Status],
            ),
            index(
                "idx_strategy_executions_exchange_symbol",
                StrategyExecutions::Table,
                [StrategyExecutions::Exchange, StrategyExecutions::Symbol],
            ),
        ] {
            manager.create_index(index).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(ExitRequests::Table)
                    .col(pk_auto(ExitRequests::Id))
                    .col(integer(ExitRequests::ExecutionId))
                    .col(integer(ExitRequests::Attempt))
                    .col(string_uniq(ExitRequests::ClientRef))
                    .col(big_integer(ExitRequests::Quantity))
                    .col(string_null(ExitRequests::BrokerOrderId))
                    .col(string_len(ExitRequests::Outcome, ENUM_LEN))
                    .col(text_null(ExitRequests::Error))
                    .col(timestamp_with_time_zone(ExitRequests::CreatedAt))
                    .col(timestamp_with_time_zone(ExitRequests::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_exit_requests_execution")
                            .from(ExitRequests::Table, ExitRequests::ExecutionId)
                            .to(StrategyExecutions::Table, StrategyExecutions::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_exit_requests_execution",
                ExitRequests::Table,
                [ExitRequests::ExecutionId],
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RiskEvents::Table)
                    .col(pk_auto(RiskEvents::Id))
                    .col(integer(RiskEvents::StrategyId))
                    .col(integer(RiskEvents::RunId))
                    .col(string_len(RiskEvents::EventType, ENUM_LEN))
                    .col(double_null(RiskEvents::Threshold))
                    .col(double(RiskEvents::Pnl))
                    .col(double_null(RiskEvents::Peak))
                    .col(double_null(RiskEvents::Stop))
                    .col(text(RiskEvents::Action))
                    .col(text_null(RiskEvents::Message))
                    .col(timestamp_with_time_zone(RiskEvents::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_risk_events_strategy")
                            .from(RiskEvents::Table, RiskEvents::StrategyId)
                            .to(Strategies::Table, Strategies::Id)
                            .on_delete(ForeignKeyAction::Cascade)
                            .on_update(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_risk_events_strategy_created",
                RiskEvents::Table,
                [RiskEvents::StrategyId, RiskEvents::CreatedAt],
            ))
            .await?;
        manager
            .create_index(index(
                "idx_risk_events_created",
                RiskEvents::Table,
                [RiskEvents::CreatedAt],
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RiskEvents::Table.into_iden(),
            ExitRequests::Table.into_iden(),
            StrategyExecutions::Table.into_iden(),
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
