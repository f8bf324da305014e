//! `market_holidays`: a full-day trading holiday of one exchange (unique per date and exchange).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = MarketHoliday)]
#[sea_orm(table_name = "market_holidays")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    /// Date in the exchange's timezone.
    #[schema(value_type = String, format = Date)]
    pub date: ChronoDate,
    pub name: String,
    pub exchange: String,
    pub is_active: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
