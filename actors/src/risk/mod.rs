//! Risk of a strategy run: one [`RiskActor`] per strategy with open legs (docs/ARCHITECTURE.md
//! §4.8). It receives the run's P&L from the position monitor on every tick, applies the
//! strategy's rules ([`crate::domain::risk`]) and, on a trigger, records the decision and asks
//! for the run's legs to be exited, exactly once.
//!
//! Phases (`Monitoring → Triggered → Exiting → Exited`, `ExitFailed`, `Paused`) follow
//! [`crate::domain::risk_phase`]. The actor owns its strategy's risk columns (state, peak,
//! stop, latches) and writes `risk_events` (`store.rs`). Every database write goes through one
//! serial lane, so the stored state always follows the order of decisions: transitions are
//! committed before anything acts on them, the trail's peak and stop are persisted on change
//! at most once per second. Writes are scoped to the run, so a finished run's actor can never
//! touch a new run's state.
//!
//! A P&L that is not a finite number (absurd quantities or prices) cannot be compared with any
//! limit: the run goes `exit_failed` with a `pnl_invalid` event instead of staying silent. After
//! a restart (a panic included) the state is read back from the strategy's row.

mod actor;
mod store;

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use entity::risk_events::RiskEventType;
use entity::strategies::{self, RiskState, TrailingSlType};
use serde::Serialize;

use crate::domain::book::RunFigures;

pub use actor::RiskActor;

use crate::domain::latency::{LatencyHistogram, LatencySnapshot};
use crate::domain::risk::{RiskLimits, Trailing, TrailingKind};
use crate::orders::ExitTicket;
use crate::status::Lifecycle;
use crate::supervised::Supervision;

#[derive(Debug, Clone)]
pub struct RiskSettings {
    /// Rules are evaluated at all (manual exits and the kill switch work regardless).
    pub enabled: bool,
    /// When false, a max-loss breach is recorded as an alert and nothing is exited.
    pub auto_exit_on_max_loss: bool,
    /// When false, a max-profit breach is recorded as an alert and nothing is exited.
    pub auto_exit_on_max_profit: bool,
    /// Confirmation window for strategies without their own `exit_confirm_ms`.
    pub default_confirm: Duration,
    pub supervision: Supervision,
}

/// A strategy's rules and the persisted risk state of its current run.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyRisk {
    pub strategy_id: i32,
    pub name: String,
    pub run_id: i32,
    pub limits: RiskLimits,
    pub state: RiskState,
    pub peak: Option<f64>,
    pub stop: Option<f64>,
    pub max_loss_latched: bool,
    pub max_profit_latched: bool,
}

/// The limits stored on a strategy row (`exit_confirm_ms` falls back to `default_confirm`).
pub fn limits_of(s: &strategies::Model, default_confirm: Duration) -> RiskLimits {
    let trailing = match (s.trailing_sl_type, s.trailing_sl_value) {
        (Some(kind), Some(value)) => Some(Trailing {
            kind: match kind {
                TrailingSlType::Amount => TrailingKind::Amount,
                TrailingSlType::Points => TrailingKind::Points,
                TrailingSlType::Percentage => TrailingKind::Percentage,
            },
            value,
            activation: s.trailing_activation.unwrap_or(0.0),
        }),
        _ => None,
    };
    RiskLimits {
        max_loss: s.max_loss,
        max_profit: s.max_profit,
        trailing,
        confirm: s
            .exit_confirm_ms
            .and_then(|ms| u64::try_from(ms).ok())
            .map_or(default_confirm, Duration::from_millis),
    }
}

impl StrategyRisk {
    pub fn from_model(s: &strategies::Model, default_confirm: Duration) -> StrategyRisk {
        StrategyRisk {
            strategy_id: s.id,
            name: s.name.clone(),
            run_id: s.run_id,
            limits: limits_of(s, default_confirm),
            state: s.risk_state,
            peak: s.trailing_latched.then_some(s.peak_pnl),
            stop: s.stop_level,
            max_loss_latched: s.max_loss_latched,
            max_profit_latched: s.max_profit_latched,
        }
    }
}

/// The run's figures after a price change (from the position monitor, on every tick) or a
/// closed leg; no open leg left means the run is over.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PnlUpdate {
    pub figures: RunFigures,
    /// When the tick arrived (None for REST quotes and timers).
    pub received_at: Option<Instant>,
    /// Epoch microseconds when the gateway sent the tick, if it says.
    pub sent_us: Option<u64>,
}

/// Rules are evaluated only while the position monitor is monitoring (market hours).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SetEvaluating(pub bool);

/// New limits for the strategy (after `PUT /api/v1/strategies/{id}/risk`).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct SetLimits {
    pub limits: RiskLimits,
    pub name: String,
}

/// Exit every open leg of the run now (`POST /api/v1/strategies/{id}/exit`).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ExitTicket, String>")]
pub struct ManualExit;

/// Stop evaluating (kill switch): answered once the paused state is committed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), String>")]
pub struct Pause {
    pub kill_switch: bool,
}

/// Evaluate again after a pause or a failed exit: answered once committed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), String>")]
pub struct Resume;

#[derive(Message)]
#[rtype(result = "RiskStatus")]
pub struct GetRiskStatus;

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct TrailingView {
    pub kind: TrailingKind,
    pub value: f64,
    pub activation: f64,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct LimitsView {
    pub max_loss: Option<f64>,
    pub max_profit: Option<f64>,
    pub trailing: Option<TrailingView>,
    pub exit_confirm_ms: u64,
}

impl From<&RiskLimits> for LimitsView {
    fn from(l: &RiskLimits) -> Self {
        LimitsView {
            max_loss: l.max_loss,
            max_profit: l.max_profit,
            trailing: l.trailing.map(|t| TrailingView {
                kind: t.kind,
                value: t.value,
                activation: t.activation,
            }),
            exit_confirm_ms: l.confirm.as_millis() as u64,
        }
    }
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct TriggerView {
    pub event: RiskEventType,
    pub threshold: Option<f64>,
    pub pnl: f64,
    pub at: DateTime<Utc>,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct RiskStatus {
    pub strategy_id: i32,
    pub strategy: String,
    pub run_id: i32,
    pub state: RiskState,
    pub lifecycle: Lifecycle,
    /// Why the lifecycle is Degraded (e.g. "stale prices") or Faulted.
    pub degraded: Option<String>,
    pub restarts: u64,
    pub evaluating: bool,
    /// The feed is down: this run's legs are priced over REST quotes.
    pub feed_degraded: bool,
    pub pnl: Option<f64>,
    pub realized: f64,
    pub peak: Option<f64>,
    pub stop: Option<f64>,
    /// The trailing distance at the latest update.
    pub trailing_distance: Option<f64>,
    pub limits: LimitsView,
    pub max_loss_latched: bool,
    pub max_profit_latched: bool,
    pub breaching_since_ms: Option<u64>,
    pub open_legs: usize,
    pub stale_legs: usize,
    pub updates: u64,
    pub evaluations: u64,
    pub skipped_stale: u64,
    /// Tick arrival → rule decision, for the latest evaluated tick.
    pub decision_latency_us: Option<u64>,
    /// Tick arrival → rule decision over every evaluated tick (serialised as count, sum, max
    /// and p50/p99/p999; `/metrics` merges the strategies' distributions).
    pub decision_latency: LatencySnapshot,
    /// Gateway send time → rule decision over every evaluated tick that carried the gateway's
    /// send time (the simulator's `sim_sent_us`; the benchmark reads it).
    pub feed_latency: LatencySnapshot,
    pub last_trigger: Option<TriggerView>,
    pub last_error: Option<String>,
}

impl RiskStatus {
    /// The status shown for a risk actor that did not answer its status request.
    pub fn silent(strategy_id: i32, strategy: String, run_id: i32, why: String) -> RiskStatus {
        RiskStatus {
            strategy_id,
            strategy,
            run_id,
            state: RiskState::Monitoring,
            lifecycle: Lifecycle::Faulted,
            degraded: Some(why),
            restarts: 0,
            evaluating: false,
            feed_degraded: false,
            pnl: None,
            realized: 0.0,
            peak: None,
            stop: None,
            trailing_distance: None,
            limits: LimitsView::from(&RiskLimits::default()),
            max_loss_latched: false,
            max_profit_latched: false,
            breaching_since_ms: None,
            open_legs: 0,
            stale_legs: 0,
            updates: 0,
            evaluations: 0,
            skipped_stale: 0,
            decision_latency_us: None,
            decision_latency: LatencyHistogram::new().snapshot(),
            feed_latency: LatencyHistogram::new().snapshot(),
            last_trigger: None,
            last_error: None,
        }
    }
}
