//! `trading_hours_templates`: a named weekly schedule for one exchange in one timezone.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
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
    pub created_at: DateTimeUtc,
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

#[async_trait::async_trait]
impl ActiveModelBehavior for ActiveModel {
    async fn before_save<C>(mut self, _db: &C, insert: bool) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        let now = chrono::Utc::now();
        if insert {
            crate::stamp(&mut self.created_at, now);
        }
        crate::stamp(&mut self.updated_at, now);
        Ok(self)
    }
}
