//! What each exit order filled, and what a leg's exit filled in all.
//!
//! `exit_requests.filled_quantity` / `average_price`: an exit order may fill in parts, or be
//! rejected or cancelled after a partial fill; what is left to close after a restart is the
//! leg's quantity less what its orders filled. `strategy_executions.exit_filled_quantity`: the
//! units the exit orders closed, less than the leg's quantity when the broker did not hold the
//! rest (a mismatch, recorded as a risk event).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ExitRequests {
    Table,
    FilledQuantity,
    AveragePrice,
}

#[derive(DeriveIden)]
enum StrategyExecutions {
    Table,
    ExitFilledQuantity,
}

fn add(table: impl IntoIden, column: ColumnDef) -> TableAlterStatement {
    Table::alter().table(table).add_column(column).to_owned()
}

fn drop(table: impl IntoIden, column: impl IntoIden) -> TableAlterStatement {
    Table::alter().table(table).drop_column(column).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for statement in [
            add(
                ExitRequests::Table,
                big_integer_null(ExitRequests::FilledQuantity),
            ),
            add(ExitRequests::Table, double_null(ExitRequests::AveragePrice)),
            add(
                StrategyExecutions::Table,
                big_integer_null(StrategyExecutions::ExitFilledQuantity),
            ),
        ] {
            manager.alter_table(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for statement in [
            drop(
                StrategyExecutions::Table,
                StrategyExecutions::ExitFilledQuantity,
            ),
            drop(ExitRequests::Table, ExitRequests::AveragePrice),
            drop(ExitRequests::Table, ExitRequests::FilledQuantity),
        ] {
            manager.alter_table(statement).await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
