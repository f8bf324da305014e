//! `exit_requests`: the idempotency record of one exit order, written before the order is
//! sent so that a restart can tell whether an exit may already be at the broker.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

string_enum! {
    /// What is known about the exit order (`outcome`).
    ExitOutcome {
        /// Recorded; the placement is on its way or its answer never came.
        Pending = "pending",
        /// Accepted by the broker (`broker_order_id`), not terminal yet; `filled_quantity`
        /// says how much of it filled so far.
        Sent = "sent",
        /// Filled at the broker (`filled_quantity` of it).
        Filled = "filled",
        /// Refused at placement or rejected by the broker after it accepted it (after
        /// `filled_quantity` units, usually none); see `error`.
        Rejected = "rejected",
        /// Cancelled, keeping `filled_quantity`.
        Cancelled = "cancelled",
        /// Never placed (the broker rate-limited it); see `error`.
        Error = "error",
        /// The placement answer was lost (timeout, transport error, 5xx): the order may be at
        /// the broker; its order book must say before anything else is sent.
        Unknown = "unknown",
        /// In doubt, then not found in the broker's order book after the settle window.
        NotFound = "not_found",
        /// Written before exits tracked their orders' fills: the broker showed the position
        /// closed without this order's fill being read.
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
    /// Units of this order that filled, as last read from the broker.
    pub filled_quantity: Option<i64>,
    /// Average price of what filled.
    pub average_price: Option<f64>,
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
