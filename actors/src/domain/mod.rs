//! Pure domain logic: no actors, no I/O, no clock. Time and randomness are always passed in,
//! so every rule here is deterministic and unit-tested in its own file.

#![warn(missing_docs)]

pub mod backoff;
pub mod book;
pub mod calendar;
pub mod chain;
pub mod exit_machine;
pub mod exits;
pub mod fills;
pub mod holdings;
pub mod latency;
pub mod mask;
pub mod options;
pub mod pnl;
pub mod quotes;
pub mod rate_limit;
pub mod reconcile;
pub mod risk;
pub mod risk_phase;
pub mod subscriptions;
pub mod supervision;
