//! `OrderGatewayActor`: exit orders, exactly once, against a broker that answers late, loses
//! answers, rejects after accepting and fills in parts (docs/exits.md).
//!
//! Each account has a serial lane: one REST operation at a time, orders rate-limited, short
//! legs of a request closed before its long legs. Each leg's exit is an
//! [`ExitMachine`](crate::domain::exit_machine::ExitMachine): the lane performs what it asks
//! (write the write-ahead row, place, read the order's state, search the order book for an
//! order whose answer was lost, cancel) and feeds back what the broker answered. Before a
//! leg's first order the broker's position book says what it holds of the instrument
//! ([`crate::domain::holdings`]); nothing is ever sent that would take the broker's net
//! position past zero. On start, every `exit_pending` leg of a configured account resumes from
//! its `exit_requests` rows before anything new is sent.
//!
//! The gateway owns the `strategy_executions` exit columns and `exit_requests`. The risk actor of
//! a strategy's run asks it to exit ([`RequestExit`]) and hears every outcome of that run's legs
//! from it ([`AttachRun`]); closed legs also go to the leg book ([`AttachBook`], the position
//! monitor), after the risk actor. A report whose run has no listener attached is kept until
//! one attaches ([`GatewayStatus::reports_waiting`]).

mod actor;
pub(crate) mod broker;
mod store;

use std::collections::HashSet;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use entity::strategy_executions::{ExitReason, TradeAction};
use serde::Serialize;

pub use actor::OrderGatewayActor;
pub(crate) use store::filled_units;

use crate::domain::latency::LatencySnapshot;
use crate::domain::pnl::Side;
use crate::secrets::ApiKey;
use crate::status::Lifecycle;
use crate::supervised::Supervision;

/// One account's gateway as the actors need it. `Debug` masks the API key.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountEndpoint {
    pub id: i32,
    pub name: String,
    pub rest_url: String,
    pub ws_url: String,
    pub api_key: ApiKey,
}

impl std::fmt::Debug for AccountEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountEndpoint")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("rest_url", &self.rest_url)
            .field("ws_url", &self.ws_url)
            .field("api_key", &self.api_key)
            .finish()
    }
}

/// The accounts (with decrypted keys) the actors may talk to. Replaces the previous list.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SetAccounts(pub Vec<AccountEndpoint>);

/// The accounts with open legs: their position books are kept fresh in the background, so
/// that a breach finds what the broker holds already known.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct WatchPositions(pub HashSet<i32>);

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub max_exit_attempts: u32,
    pub retry_initial: Duration,
    /// Longest wait between attempts, and longest 429 wait honoured.
    pub retry_max: Duration,
    pub order_rate_per_s: u32,
    pub rest_timeout: Duration,
    /// An in-doubt order is "not there" only when a read started this long after its
    /// write-ahead row does not find it.
    pub settle: Duration,
    pub poll_initial: Duration,
    pub poll_max: Duration,
    /// A working exit order older than this is cancelled and its remainder sent again.
    pub working_timeout: Duration,
    /// With the account's order updates flowing, an order's state is read only if no update
    /// came this long after its placement.
    pub event_wait: Duration,
    /// A position book read older than this is read again before a leg's first exit order.
    pub positions_max_age: Duration,
    pub supervision: Supervision,
}

/// Which open legs to exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitScope {
    /// Every open leg of one run of a strategy.
    Run { strategy_id: i32, run_id: i32 },
    /// Every open leg of every strategy on every account (kill switch).
    All,
}

/// Exit the open legs in `scope`. Legs already being exited are not queued twice.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ExitTicket, GatewayError>")]
pub struct RequestExit {
    pub scope: ExitScope,
    pub reason: ExitReason,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    #[error("reading the open legs failed: {0}")]
    Database(String),
}

/// A leg queued for exit.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct QueuedLeg {
    pub execution_id: i32,
    pub strategy_id: i32,
    pub account_id: i32,
    pub exchange: String,
    pub symbol: String,
    /// The exit order's action (opposite of the leg's).
    pub action: Side,
    /// Units still to close.
    pub quantity: i64,
    /// Orders planned (more than one when the quantity is above the freeze quantity).
    pub orders: usize,
}

/// What a [`RequestExit`] did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ExitTicket {
    /// Legs queued now, in sending order per account.
    pub queued: Vec<QueuedLeg>,
    /// Legs already being exited (nothing new was queued for them).
    pub already_exiting: Vec<i32>,
    /// Legs that cannot be exited (their account has no endpoint); reported as failed.
    pub failed: Vec<i32>,
}

/// Outcome of a leg's exit, sent to the risk actor of the leg's run ([`AttachRun`]) and, for
/// `LegExited`, to the leg book ([`AttachBook`]).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum ExitReport {
    /// The leg is closed: `filled` units by its exit orders, `unheld` units found not held by
    /// the broker (a mismatch).
    LegExited {
        execution_id: i32,
        strategy_id: i32,
        run_id: i32,
        exit_price: Option<f64>,
        realized_pnl: Option<f64>,
        filled: i64,
        unheld: i64,
        /// Why units were not held, in words, when `unheld` > 0.
        mismatch: Option<String>,
    },
    LegFailed {
        execution_id: i32,
        strategy_id: i32,
        run_id: i32,
        message: String,
    },
}

/// The risk actor of a strategy's run: every outcome of that run's legs is reported to it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachRun {
    pub strategy_id: i32,
    pub run_id: i32,
    pub listener: Recipient<ExitReport>,
}

/// Where closed legs go for the leg book (the position monitor attaches itself): it gets
/// `ExitReport::LegExited` only.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachBook(pub Recipient<ExitReport>);

#[derive(Message)]
#[rtype(result = "GatewayStatus")]
pub struct GetGatewayStatus;

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct LaneView {
    pub account_id: i32,
    pub account: String,
    /// Masked API key prefix.
    pub api_key: String,
    pub queued: usize,
    pub busy: bool,
    /// Age of the last position book read, in ms.
    pub positions_age_ms: Option<u64>,
    /// Why the last position book read failed, if it did.
    pub positions_error: Option<String>,
}

/// One order of an exit in flight.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct ExitOrderView {
    /// The write-ahead row.
    pub request_id: Option<i32>,
    pub order_id: Option<String>,
    pub quantity: i64,
    pub filled: i64,
    /// `recording`, `placing`, `in_doubt`, `working`, `complete`, `rejected`, `cancelled`,
    /// `not_found`, `refused`, `not_placed`.
    pub state: &'static str,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct ActiveExitView {
    pub execution_id: i32,
    pub strategy_id: i32,
    pub account_id: i32,
    pub exchange: String,
    pub symbol: String,
    pub action: Side,
    /// The leg's quantity.
    pub quantity: i64,
    pub filled: i64,
    /// Units found not held by the broker.
    pub unheld: i64,
    /// `sending`, `in_doubt`, `working`, `partially_filled`, `filled`, `rejected`, `failed`.
    pub state: &'static str,
    /// Failed attempts in a row.
    pub attempt: u32,
    pub reason: ExitReason,
    pub last_error: Option<String>,
    /// What the exit waits for besides its own orders (the position book, the short legs of
    /// the request, the broker's books to settle after a restart).
    pub waiting_for: Option<String>,
    pub orders: Vec<ExitOrderView>,
    pub since: DateTime<Utc>,
}

/// An exit that ended recently.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct FinishedExitView {
    pub execution_id: i32,
    pub strategy_id: i32,
    pub symbol: String,
    /// `filled` or `failed`.
    pub state: &'static str,
    pub filled: i64,
    pub unheld: i64,
    pub orders: usize,
    pub message: Option<String>,
    /// When the broker's books confirmed the last fill (or the exit gave up), epoch µs.
    pub finished_at_us: i64,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct GatewayStatus {
    pub state: Lifecycle,
    pub restarts: u64,
    pub accounts: Vec<LaneView>,
    pub exits: Vec<ActiveExitView>,
    /// The latest exits that ended, newest first.
    pub recent: Vec<FinishedExitView>,
    pub orders_sent: u64,
    pub orders_failed: u64,
    /// Placements whose answer was lost (timeout, transport error, 5xx): in doubt.
    pub orders_in_doubt: u64,
    /// 429 answers (placements and reads).
    pub rate_limited: u64,
    pub legs_exited: u64,
    pub legs_failed: u64,
    pub legs_recovered: u64,
    /// Legs of which the broker held less than tracked.
    pub mismatches: u64,
    pub duplicates_refused: u64,
    /// Pushed order updates that changed an exit's order.
    pub order_updates_applied: u64,
    /// Exits whose last order's end came as an order update, and those read from the books.
    pub exits_confirmed_by_event: u64,
    pub exits_confirmed_by_read: u64,
    /// Leg reports kept because no listener is attached for their strategy's run yet; each goes
    /// to the run's risk actor, oldest first, when it attaches (at most 100 per strategy).
    pub reports_waiting: usize,
    /// Accounts whose order updates flow now.
    pub order_update_accounts: Vec<i32>,
    pub last_error: Option<String>,
    /// Recording each exit request before its order is sent (the write-ahead row), waiting
    /// for the database included.
    pub write_ahead_latency: LatencySnapshot,
    /// From the exit request to the broker's books confirming the last fill.
    pub fill_confirm_latency: LatencySnapshot,
}

pub(crate) fn side_of(action: TradeAction) -> Side {
    match action {
        TradeAction::Buy => Side::Buy,
        TradeAction::Sell => Side::Sell,
    }
}
