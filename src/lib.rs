//! trading-supervisor: one supervised market-data feed per API key, live P&L and exactly-once
//! risk exits next to an OpenAlgo gateway.

pub mod actor_settings;
pub mod calendar_input;
pub mod cli;
pub mod configuration;
pub mod database;
pub mod demo;
pub mod holiday_import;
pub mod http;
pub mod startup;
pub mod telemetry;
