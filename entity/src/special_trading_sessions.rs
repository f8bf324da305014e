//! `special_trading_sessions`: a one-off session on a given date (e.g. Muhurat trading), which
//! opens the market even on a holiday or weekend.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = SpecialSession)]
#[sea_orm(table_name = "special_trading_sessions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Date in the exchange's timezone.
    #[schema(value_type = String, format = Date)]
    pub date: ChronoDate,
    /// E.g. "Muhurat Trading".
    pub name: String,
    /// Local time in the exchange's timezone.
    #[schema(value_type = String, example = "09:15:00")]
    pub start_time: ChronoTime,
    /// Local time in the exchange's timezone.
    #[schema(value_type = String, example = "09:15:00")]
    pub end_time: ChronoTime,
    pub exchange: String,
    pub is_active: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
