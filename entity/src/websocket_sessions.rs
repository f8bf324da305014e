//! `websocket_sessions`: one row per option-chain viewer session.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

string_enum! {
    /// What the session streams (`kind`).
    SessionKind {
        /// An option chain.
        Chain = "chain",
    }
}

string_enum! {
    /// Why a session ended (`close_reason`).
    CloseReason {
        /// The viewer deleted it.
        Deleted = "deleted",
        /// No heartbeat within the session timeout.
        Timeout = "timeout",
        /// The service stopped.
        Shutdown = "shutdown",
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "websocket_sessions")]
pub struct Model {
    /// Session id (a UUID string), chosen by the service.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub kind: SessionKind,
    pub underlying: String,
    pub exchange: String,
    /// Expiry in the gateway's `DD-MMM-YY` form; `None` while none is chosen or resolved.
    pub expiry: Option<String>,
    /// Strikes on each side of ATM.
    pub strikes: i32,
    /// Market-data subscription mode: 1 = LTP, 2 = Quote, 3 = Depth.
    pub mode: i32,
    pub created_at: DateTimeUtc,
    pub last_heartbeat_at: DateTimeUtc,
    /// `None` while the session is open.
    pub closed_at: Option<DateTimeUtc>,
    pub close_reason: Option<CloseReason>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

#[async_trait::async_trait]
impl ActiveModelBehavior for ActiveModel {
    async fn before_save<C>(mut self, _db: &C, insert: bool) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        if insert {
            crate::stamp(&mut self.created_at, chrono::Utc::now());
        }
        Ok(self)
    }
}
