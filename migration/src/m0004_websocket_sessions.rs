//! `websocket_sessions`: option-chain viewer sessions, keyed by a UUID string.

use sea_orm_migration::{prelude::*, schema::*};

use crate::index;
use crate::m0001_accounts_and_strategies::ENUM_LEN;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum WebsocketSessions {
    Table,
    Id,
    Kind,
    Underlying,
    Exchange,
    Expiry,
    Strikes,
    Mode,
    CreatedAt,
    LastHeartbeatAt,
    ClosedAt,
    CloseReason,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebsocketSessions::Table)
                    .col(string(WebsocketSessions::Id).primary_key())
                    .col(string_len(WebsocketSessions::Kind, ENUM_LEN))
                    .col(string(WebsocketSessions::Underlying))
                    .col(string(WebsocketSessions::Exchange))
                    .col(string_null(WebsocketSessions::Expiry))
                    .col(integer(WebsocketSessions::Strikes))
                    .col(integer(WebsocketSessions::Mode))
                    .col(timestamp_with_time_zone(WebsocketSessions::CreatedAt))
                    .col(timestamp_with_time_zone(WebsocketSessions::LastHeartbeatAt))
                    .col(timestamp_with_time_zone_null(WebsocketSessions::ClosedAt))
                    .col(string_len_null(WebsocketSessions::CloseReason, ENUM_LEN))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "idx_websocket_sessions_closed_at",
                WebsocketSessions::Table,
                [WebsocketSessions::ClosedAt],
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebsocketSessions::Table).to_owned())
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
