//! `trading_sessions`: one weekly session of a trading-hours template.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

string_enum! {
    /// Kind of session (`session_type`).
    SessionType {
        /// Pre-open call auction.
        PreOpen = "pre_open",
        /// Continuous trading.
        Normal = "normal",
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = TradingSession)]
#[sea_orm(table_name = "trading_sessions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub template_id: i32,
    /// Day of the week, 0 = Monday … 6 = Sunday.
    pub weekday: i32,
    /// Local time in the template's timezone.
    #[schema(value_type = String, example = "09:15:00")]
    pub start_time: ChronoTime,
    /// Local time in the template's timezone.
    #[schema(value_type = String, example = "09:15:00")]
    pub end_time: ChronoTime,
    pub session_type: SessionType,
    pub is_active: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::trading_hours_templates::Entity",
        from = "Column::TemplateId",
        to = "super::trading_hours_templates::Column::Id",
        on_delete = "Cascade"
    )]
    Template,
}

impl Related<super::trading_hours_templates::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Template.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
