//! `strategy_executions.lot_size`: the instrument's lot size, so that an exit split at the
//! freeze quantity stays in whole lots (brokers reject F&O quantities that are not).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StrategyExecutions {
    Table,
    LotSize,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(StrategyExecutions::Table)
                    .add_column(big_integer_null(StrategyExecutions::LotSize))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(StrategyExecutions::Table)
                    .drop_column(StrategyExecutions::LotSize)
                    .to_owned(),
            )
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
