//! `trading_hours_templates`: a named weekly schedule for one exchange in one timezone.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = TradingHoursTemplate)]
#[sea_orm(table_name = "trading_hours_templates")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    #[sea_orm(unique)]
    pub name: String,
    pub exchange: String,
    /// IANA timezone name the sessions' times are in, e.g. `Asia/Kolkata`.
    pub timezone: String,
    pub is_active: bool,
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTimeUtc,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::trading_sessions::Entity")]
    TradingSessions,
}

impl Related<super::trading_sessions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TradingSessions.def()
    }
}

crate::timestamped_active_model!();
