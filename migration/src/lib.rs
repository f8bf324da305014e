//! Schema migrations of the supervisor's database, including the seeded default calendar.
//!
//! Every migration runs in a transaction on every backend (SQLite included), so a failed
//! migration leaves neither half-created tables nor half-seeded data behind, and is not
//! recorded as applied. The same migrations run on SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m0001_accounts_and_strategies;
mod m0002_executions_and_exits;
mod m0003_calendar;
mod m0004_websocket_sessions;
mod m0005_seed_calendar;
mod m0006_execution_lot_size;
mod m0007_exit_fills;

/// Applies and rolls back the migrations, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_accounts_and_strategies::Migration),
            Box::new(m0002_executions_and_exits::Migration),
            Box::new(m0003_calendar::Migration),
            Box::new(m0004_websocket_sessions::Migration),
            Box::new(m0005_seed_calendar::Migration),
            Box::new(m0006_execution_lot_size::Migration),
            Box::new(m0007_exit_fills::Migration),
        ]
    }
}

/// A named, non-unique index on `columns` of `table`.
fn index<T, C, I>(name: &str, table: T, columns: I) -> IndexCreateStatement
where
    T: IntoIden,
    C: IntoIden,
    I: IntoIterator<Item = C>,
{
    let mut index = Index::create();
    index.name(name).table(table);
    for column in columns {
        index.col(column);
    }
    index
}
