//! `trading_accounts`: one OpenAlgo gateway login (broker account) the service talks to.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

string_enum! {
    /// Result of the last health check of an account's gateway (`connection_status`).
    ConnectionStatus {
        /// Not checked yet.
        Unknown = "unknown",
        /// The last `ping` succeeded.
        Connected = "connected",
        /// The last `ping` failed; see `last_error`.
        Failed = "failed",
    }
}

/// Columns left unset on insert take the schema defaults: `is_primary` false, `is_active`
/// true, `connection_status` unknown.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "trading_accounts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub name: String,
    /// Broker name as OpenAlgo knows it (e.g. `angelone`).
    pub broker: String,
    /// Base URL of the gateway's REST API.
    pub rest_url: String,
    /// URL of the gateway's market-data WebSocket.
    pub ws_url: String,
    /// Base64 of nonce‖ciphertext of the API key; encryption is done by the service.
    #[sea_orm(column_type = "Text")]
    pub api_key_ciphertext: String,
    /// Masked prefix of the API key for display (first 4 chars + "…").
    pub api_key_hint: String,
    /// At most one account is primary (enforced by a partial unique index).
    pub is_primary: bool,
    pub is_active: bool,
    pub connection_status: ConnectionStatus,
    pub last_ping_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::strategy_executions::Entity")]
    StrategyExecutions,
}

impl Related<super::strategy_executions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::StrategyExecutions.def()
    }
}

crate::timestamped_active_model!();
