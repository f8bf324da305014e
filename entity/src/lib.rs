//! sea-orm entities of the supervisor's data model, one module per table.
//!
//! Conventions shared by every table:
//! - timestamps are `DateTime<Utc>` and stored in UTC;
//! - money and prices are `f64`;
//! - enumerated columns are short strings; each has a Rust enum (stored through
//!   `DeriveActiveEnum`) with `as_str()`, `FromStr`, `Display` and `ALL`, and serialises to
//!   the same string it is stored as;
//! - `ActiveModel::insert`/`update`/`save` fill `created_at` on insert and refresh
//!   `updated_at` on every save unless the caller set them explicitly (bulk
//!   `Entity::insert`/`update_many` do not run these hooks).

use std::fmt;

/// Defines a string-valued column enum: the variants with their stored strings, the sea-orm
/// `ActiveEnum` mapping, serde renames matching the stored strings, `ALL`, `as_str()`,
/// `Display` and `FromStr`.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            Hash,
            sea_orm::EnumIter,
            sea_orm::DeriveActiveEnum,
            serde::Serialize,
            serde::Deserialize,
        )]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[sea_orm(string_value = $value)]
                #[serde(rename = $value)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The string stored in the database (and used on the wire).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }
        }

        /// A string with one of the stored values.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($value),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($value => Ok($name::$variant),)+
                    _ => Err($crate::UnknownValue {
                        kind: stringify!($name),
                        value: s.to_owned(),
                    }),
                }
            }
        }
    };
}

pub mod exit_requests;
pub mod market_holidays;
pub mod risk_events;
pub mod special_trading_sessions;
pub mod strategies;
pub mod strategy_executions;
pub mod trading_accounts;
pub mod trading_hours_templates;
pub mod trading_sessions;
pub mod websocket_sessions;

/// A string that is not one of an enumerated column's allowed values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownValue {
    /// The enum the value was parsed as, e.g. `RiskState`.
    pub kind: &'static str,
    /// The rejected input.
    pub value: String,
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} value {:?}", self.kind, self.value)
    }
}

impl std::error::Error for UnknownValue {}

/// Implements `ActiveModelBehavior` for a table with `created_at` and `updated_at`: both are
/// filled on insert and `updated_at` on every save, unless the caller set them explicitly.
#[macro_export]
macro_rules! timestamped_active_model {
    () => {
        #[async_trait::async_trait]
        impl ActiveModelBehavior for ActiveModel {
            async fn before_save<C>(mut self, _db: &C, insert: bool) -> Result<Self, DbErr>
            where
                C: ConnectionTrait,
            {
                let now = chrono::Utc::now();
                if insert {
                    $crate::stamp(&mut self.created_at, now);
                }
                $crate::stamp(&mut self.updated_at, now);
                Ok(self)
            }
        }
    };
}

/// Sets a timestamp column to `now` unless the caller set it explicitly.
#[doc(hidden)]
pub fn stamp(
    column: &mut sea_orm::ActiveValue<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) {
    if !column.is_set() {
        *column = sea_orm::ActiveValue::Set(now);
    }
}

/// Entities and column enums under short names, for `use entity::prelude::*`.
pub mod prelude {
    pub use crate::UnknownValue;
    pub use crate::exit_requests::{Entity as ExitRequests, ExitOutcome};
    pub use crate::market_holidays::Entity as MarketHolidays;
    pub use crate::risk_events::{Entity as RiskEvents, RiskEventType};
    pub use crate::special_trading_sessions::Entity as SpecialTradingSessions;
    pub use crate::strategies::{Entity as Strategies, RiskState, TrailingSlType};
    pub use crate::strategy_executions::{
        Entity as StrategyExecutions, ExecutionStatus, ExitReason, Product, TradeAction,
    };
    pub use crate::trading_accounts::{ConnectionStatus, Entity as TradingAccounts};
    pub use crate::trading_hours_templates::Entity as TradingHoursTemplates;
    pub use crate::trading_sessions::{Entity as TradingSessions, SessionType};
    pub use crate::websocket_sessions::{CloseReason, Entity as WebsocketSessions, SessionKind};
}

#[cfg(test)]
mod tests {
    use super::prelude::*;
    use sea_orm::ActiveEnum;
    use std::fmt::Debug;
    use std::str::FromStr;

    /// The stored string, the parsed value, the JSON form and the sea-orm value all agree.
    fn check<T>(all: &[T], strings: &[&str], as_str: fn(T) -> &'static str)
    where
        T: Copy
            + Debug
            + PartialEq
            + FromStr<Err = UnknownValue>
            + ActiveEnum<Value = String>
            + serde::Serialize
            + serde::de::DeserializeOwned,
    {
        let stored: Vec<&str> = all.iter().map(|v| as_str(*v)).collect();
        assert_eq!(stored, strings);
        for &value in all {
            let s = as_str(value);
            assert_eq!(T::from_str(s).unwrap(), value);
            assert_eq!(value.to_value(), s);
            assert_eq!(serde_json::to_string(&value).unwrap(), format!("\"{s}\""));
            assert_eq!(
                serde_json::from_str::<T>(&format!("\"{s}\"")).unwrap(),
                value
            );
        }
        let err = T::from_str("no_such_value").unwrap_err();
        assert_eq!(err.value, "no_such_value");
        assert!(serde_json::from_str::<T>("\"no_such_value\"").is_err());
    }

    #[test]
    fn enum_strings_match_the_documented_values() {
        check(
            ConnectionStatus::ALL,
            &["unknown", "connected", "failed"],
            ConnectionStatus::as_str,
        );
        check(
            TrailingSlType::ALL,
            &["amount", "points", "percentage"],
            TrailingSlType::as_str,
        );
        check(
            RiskState::ALL,
            &[
                "monitoring",
                "triggered",
                "exiting",
                "exited",
                "exit_failed",
                "paused",
            ],
            RiskState::as_str,
        );
        check(Product::ALL, &["MIS", "NRML", "CNC"], Product::as_str);
        check(TradeAction::ALL, &["BUY", "SELL"], TradeAction::as_str);
        check(
            ExecutionStatus::ALL,
            &["pending", "entered", "exit_pending", "exited", "failed"],
            ExecutionStatus::as_str,
        );
        check(
            ExitReason::ALL,
            &[
                "max_loss",
                "max_profit",
                "trailing_stop",
                "manual",
                "kill_switch",
                "closed_externally",
            ],
            ExitReason::as_str,
        );
        check(
            ExitOutcome::ALL,
            &[
                "pending",
                "sent",
                "filled",
                "rejected",
                "cancelled",
                "error",
                "unknown",
                "not_found",
                "closed",
            ],
            ExitOutcome::as_str,
        );
        check(
            RiskEventType::ALL,
            &[
                "max_loss",
                "max_profit",
                "trailing_stop",
                "manual_exit",
                "kill_switch",
                "exit_failed",
                "exit_completed",
                "resumed",
                "feed_degraded",
                "feed_restored",
                "pnl_invalid",
                "mismatch",
            ],
            RiskEventType::as_str,
        );
        check(
            SessionType::ALL,
            &["pre_open", "normal"],
            SessionType::as_str,
        );
        check(SessionKind::ALL, &["chain"], SessionKind::as_str);
        check(
            CloseReason::ALL,
            &["deleted", "timeout", "shutdown"],
            CloseReason::as_str,
        );
    }

    #[test]
    fn parsing_is_case_sensitive() {
        assert!(Product::from_str("mis").is_err());
        assert!(RiskState::from_str("Monitoring").is_err());
    }

    #[test]
    fn opposite_action_closes_the_position() {
        assert_eq!(TradeAction::Buy.opposite(), TradeAction::Sell);
        assert_eq!(TradeAction::Sell.opposite(), TradeAction::Buy);
    }

    #[test]
    fn unknown_value_error_names_the_enum_and_the_input() {
        let err = ExitReason::from_str("panic").unwrap_err();
        assert_eq!(err.to_string(), "unknown ExitReason value \"panic\"");
    }
}
