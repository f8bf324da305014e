//! `exit_requests`: the idempotency record of one exit order, written before the order is
//! sent so that a restart can tell whether an exit may already be at the broker.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

string_enum! {
    /// What is known about the exit order (`outcome`).
    ExitOutcome {
        /// Recorded, not sent yet.
        Pending = "pending",
        /// Sent; the broker accepted the request.
        Sent = "sent",
        /// Filled at the broker.
        Filled = "filled",
        /// Rejected by the broker.
        Rejected = "rejected",
        /// The request failed; see `error`.
        Error = "error",
        /// Whether the broker received the order is not known (timeout, restart); the
        /// broker's books must be checked before any retry.
        Unknown = "unknown",
        /// The broker shows the position closed without this order filling.
        Closed = "closed",
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "exit_requests")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub execution_id: i32,
    /// 1-based attempt number of the leg's exit.
    pub attempt: i32,
    /// Unique reference of this request (e.g. a UUID).
    #[sea_orm(unique)]
    pub client_ref: String,
    /// Quantity in units of this order (a split exit has one row per child order).
    pub quantity: i64,
    pub broker_order_id: Option<String>,
    pub outcome: ExitOutcome,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::strategy_executions::Entity",
        from = "Column::ExecutionId",
        to = "super::strategy_executions::Column::Id",
        on_delete = "Cascade"
    )]
    Execution,
}

impl Related<super::strategy_executions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Execution.def()
    }
}

crate::timestamped_active_model!();
