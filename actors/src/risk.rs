//! `RiskActor` (ARCHITECTURE §6.3): one per strategy with open legs. It receives the run's
//! P&L from the position monitor on every tick, applies the strategy's rules
//! ([`crate::domain::risk`]) and, on a trigger, records the decision and asks for the run's
//! legs to be exited, exactly once.
//!
//! State machine: `Monitoring → Triggered → Exiting → Exited`, or `ExitFailed` (a human must
//! look), or `Paused` (kill switch; resumed by an operator). The actor owns its strategy's
//! risk columns (state, peak, stop, latches) and writes `risk_events`. Every database write
//! goes through one serial lane, so the stored state always follows the order of decisions:
//! transitions are committed before anything acts on them, the trail's peak and stop are
//! persisted on change at most once per second. Writes are scoped to the run, so a finished
//! run's actor can never touch a new run's state.
//!
//! A P&L that is not a finite number (absurd quantities or prices) cannot be compared with any
//! limit: the run goes `exit_failed` with a `pnl_invalid` event instead of staying silent. After
//! a restart (a panic included) the state is read back from the strategy's row.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use entity::risk_events::{self, RiskEventType};
use entity::strategies::{self, RiskState, TrailingSlType};
use entity::strategy_executions::ExitReason;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder,
};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::domain::latency::{LatencyHistogram, LatencySnapshot};
use crate::domain::risk::{
    Decision, RiskLimits, RiskState as Trail, Rule, Trailing, TrailingKind, trailing_distance,
};
use crate::orders::ExitTicket;
use crate::status::Lifecycle;
use crate::supervised::{InjectPanic, RestartTracker};
use crate::supervisor::FeedHealth;

/// Mailbox size: large enough that the feed never finds it full (ticks are not dropped).
const MAILBOX: usize = 1 << 20;
/// Peak and stop are persisted at most this often (and always on state transitions).
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Wait before retrying a state transition the database refused.
const WRITE_RETRY: Duration = Duration::from_secs(1);

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
    pub crash_loop_max_restarts: u32,
    pub crash_loop_window: Duration,
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

/// Asks the position monitor to exit every open leg of a run (it adds the latest prices).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ExitTicket, String>")]
pub struct ExitRun {
    pub strategy_id: i32,
    pub run_id: i32,
    pub reason: ExitReason,
}

/// The run's P&L after a price change (from the position monitor, on every tick).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct PnlUpdate {
    /// Realized + unrealized; None while an open leg has no price yet.
    pub pnl: Option<f64>,
    pub realized: f64,
    pub open_legs: usize,
    pub open_qty: f64,
    pub net_premium: f64,
    /// Every open leg's price (feed or REST) is younger than `stale_after`.
    pub fresh: bool,
    /// Open legs whose feed price is stale (the strategy shows Degraded).
    pub stale_legs: usize,
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

/// A leg of the run closed; `open_legs_left` legs remain. `mismatch` says what the broker did
/// not hold of it, when it held less than the leg.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct LegClosed {
    pub execution_id: i32,
    pub open_legs_left: usize,
    pub mismatch: Option<String>,
}

/// The gateway gave up on a leg's exit.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct LegExitFailed {
    pub execution_id: i32,
    pub message: String,
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

#[derive(Debug, Clone, Serialize)]
pub struct TrailingView {
    pub kind: TrailingKind,
    pub value: f64,
    pub activation: f64,
}

#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct TriggerView {
    pub event: RiskEventType,
    pub threshold: Option<f64>,
    pub pnl: f64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
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

#[derive(Clone)]
struct NewEvent {
    kind: RiskEventType,
    threshold: Option<f64>,
    action: String,
    message: Option<String>,
}

enum Then {
    Nothing,
    Exit {
        reason: ExitReason,
        reply: Option<oneshot::Sender<Result<ExitTicket, String>>>,
    },
    Reply(oneshot::Sender<Result<(), String>>),
    Stop,
}

enum Write {
    /// Peak, stop and latches as they are when the write runs.
    Persist,
    /// A risk event that changes no state (the feed went down or came back).
    Event(NewEvent),
    Transition {
        state: RiskState,
        event: Option<NewEvent>,
        then: Then,
    },
}

/// Columns written with every write, snapshotted when it runs.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    peak: Option<f64>,
    stop: Option<f64>,
    max_loss_latched: bool,
    max_profit_latched: bool,
    pnl: f64,
}

pub struct RiskActor {
    db: DatabaseConnection,
    settings: RiskSettings,
    strategy_id: i32,
    name: String,
    run_id: i32,
    limits: RiskLimits,
    exits: Recipient<ExitRun>,
    phase: RiskState,
    trail: Trail,
    max_loss_latched: bool,
    max_profit_latched: bool,
    evaluating: bool,
    pnl: Option<f64>,
    realized: f64,
    open_legs: usize,
    open_qty: f64,
    net_premium: f64,
    stale_legs: usize,
    fresh: bool,
    distance: Option<f64>,
    /// Why the run is being exited (set when the exit is requested).
    exiting_for: Option<ExitReason>,
    writes: VecDeque<Write>,
    writing: bool,
    persisted: (Option<f64>, Option<f64>),
    last_persist: Option<Instant>,
    persist_timer: Option<SpawnHandle>,
    confirm_timer: Option<SpawnHandle>,
    updates: u64,
    evaluations: u64,
    skipped_stale: u64,
    decision_latency_us: Option<u64>,
    decision_latency: LatencyHistogram,
    feed_latency: LatencyHistogram,
    last_trigger: Option<TriggerView>,
    last_error: Option<String>,
    restarts: RestartTracker,
    feed_degraded: bool,
    /// Restarted: the state must be read back from the strategy's row before evaluating.
    reload: bool,
}

fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn reason_of(rule: Rule) -> ExitReason {
    match rule {
        Rule::MaxLoss => ExitReason::MaxLoss,
        Rule::MaxProfit => ExitReason::MaxProfit,
        Rule::TrailingStop => ExitReason::TrailingStop,
    }
}

fn event_of(rule: Rule) -> RiskEventType {
    match rule {
        Rule::MaxLoss => RiskEventType::MaxLoss,
        Rule::MaxProfit => RiskEventType::MaxProfit,
        Rule::TrailingStop => RiskEventType::TrailingStop,
    }
}

impl RiskActor {
    pub fn new(
        db: DatabaseConnection,
        settings: RiskSettings,
        strategy: StrategyRisk,
        exits: Recipient<ExitRun>,
    ) -> Self {
        let phase = match strategy.state {
            // A transition that was not committed as Exiting is resumed as one.
            RiskState::Triggered => RiskState::Exiting,
            s => s,
        };
        Self {
            restarts: RestartTracker::new(
                settings.crash_loop_max_restarts,
                settings.crash_loop_window,
            ),
            db,
            settings,
            strategy_id: strategy.strategy_id,
            name: strategy.name,
            run_id: strategy.run_id,
            limits: strategy.limits,
            exits,
            phase,
            trail: Trail {
                peak: strategy.peak,
                stop: strategy.stop,
                breach_since: None,
            },
            max_loss_latched: strategy.max_loss_latched,
            max_profit_latched: strategy.max_profit_latched,
            evaluating: false,
            pnl: None,
            realized: 0.0,
            open_legs: 0,
            open_qty: 0.0,
            net_premium: 0.0,
            stale_legs: 0,
            fresh: false,
            distance: None,
            exiting_for: None,
            writes: VecDeque::new(),
            writing: false,
            persisted: (strategy.peak, strategy.stop),
            last_persist: None,
            persist_timer: None,
            confirm_timer: None,
            updates: 0,
            evaluations: 0,
            skipped_stale: 0,
            decision_latency_us: None,
            decision_latency: LatencyHistogram::new(),
            feed_latency: LatencyHistogram::new(),
            last_trigger: None,
            last_error: None,
            feed_degraded: false,
            reload: false,
        }
    }

    /// The rules in force: a rule whose breach was recorded as an alert (auto exit disabled)
    /// is not checked again in this run, so it cannot shadow the others.
    fn effective_limits(&self) -> RiskLimits {
        let mut limits = self.limits;
        if self.max_loss_latched && !self.settings.auto_exit_on_max_loss {
            limits.max_loss = None;
        }
        if self.max_profit_latched && !self.settings.auto_exit_on_max_profit {
            limits.max_profit = None;
        }
        limits
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            peak: self.trail.peak,
            stop: self.trail.stop,
            max_loss_latched: self.max_loss_latched,
            max_profit_latched: self.max_profit_latched,
            pnl: self.pnl.unwrap_or(self.realized),
        }
    }

    fn evaluate(&mut self, pnl: f64, now: Instant, ctx: &mut Context<Self>) -> Decision {
        let limits = self.effective_limits();
        let distance = limits.trailing.map_or(0.0, |t| {
            trailing_distance(t.kind, t.value, self.open_qty, self.net_premium)
        });
        self.distance = limits.trailing.map(|_| distance);
        let decision = self.trail.evaluate(&limits, pnl, distance, now);
        self.evaluations += 1;
        if (self.trail.peak, self.trail.stop) != self.persisted {
            self.schedule_persist(ctx);
        }
        decision
    }

    fn act_on(&mut self, decision: Decision, pnl: f64, ctx: &mut Context<Self>) {
        match decision {
            Decision::Hold => self.cancel_confirm(ctx),
            Decision::Breaching { .. } => self.arm_confirm(ctx),
            Decision::Trigger { rule, threshold } => {
                self.cancel_confirm(ctx);
                self.trigger(rule, threshold, pnl, ctx);
            }
        }
    }

    fn cancel_confirm(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.confirm_timer.take() {
            ctx.cancel_future(h);
        }
    }

    /// A breach is pending confirmation: re-check when the window ends even if no tick comes.
    fn arm_confirm(&mut self, ctx: &mut Context<Self>) {
        if self.confirm_timer.is_some() {
            return;
        }
        let Some(since) = self.trail.breach_since else {
            return;
        };
        let due = (since + self.limits.confirm).saturating_duration_since(Instant::now());
        self.confirm_timer = Some(ctx.run_later(due, |act, ctx| {
            act.confirm_timer = None;
            if act.phase != RiskState::Monitoring || !act.evaluating || !act.fresh {
                return;
            }
            if let Some(pnl) = act.pnl {
                let decision = act.evaluate(pnl, Instant::now(), ctx);
                act.act_on(decision, pnl, ctx);
            }
        }));
    }

    fn trigger(&mut self, rule: Rule, threshold: f64, pnl: f64, ctx: &mut Context<Self>) {
        let auto_exit = match rule {
            Rule::MaxLoss => self.settings.auto_exit_on_max_loss,
            Rule::MaxProfit => self.settings.auto_exit_on_max_profit,
            Rule::TrailingStop => true,
        };
        match rule {
            Rule::MaxLoss => self.max_loss_latched = true,
            Rule::MaxProfit => self.max_profit_latched = true,
            Rule::TrailingStop => {}
        }
        self.last_trigger = Some(TriggerView {
            event: event_of(rule),
            threshold: Some(threshold),
            pnl,
            at: Utc::now(),
        });
        if !auto_exit {
            tracing::warn!(strategy_id = self.strategy_id, rule = %rule, pnl, threshold, "risk rule breached; automatic exit is disabled for it, nothing is sent");
            self.submit(
                Write::Transition {
                    state: RiskState::Monitoring,
                    event: Some(NewEvent {
                        kind: event_of(rule),
                        threshold: Some(threshold),
                        action: "alert only: automatic exit is disabled for this rule".into(),
                        message: None,
                    }),
                    then: Then::Nothing,
                },
                ctx,
            );
            return;
        }
        tracing::warn!(strategy_id = self.strategy_id, run_id = self.run_id, rule = %rule, pnl, threshold, peak = self.trail.peak, stop = self.trail.stop, "risk rule triggered: exiting every open leg of the run");
        self.phase = RiskState::Triggered;
        self.submit(
            Write::Transition {
                state: RiskState::Exiting,
                event: Some(NewEvent {
                    kind: event_of(rule),
                    threshold: Some(threshold),
                    action: "exit every open leg of the run".into(),
                    message: None,
                }),
                then: Then::Exit {
                    reason: reason_of(rule),
                    reply: None,
                },
            },
            ctx,
        );
    }

    fn schedule_persist(&mut self, ctx: &mut Context<Self>) {
        if self.persist_timer.is_some() {
            return;
        }
        let wait = self.last_persist.map_or(Duration::ZERO, |at| {
            PERSIST_EVERY.saturating_sub(at.elapsed())
        });
        if wait.is_zero() {
            self.submit(Write::Persist, ctx);
        } else {
            self.persist_timer = Some(ctx.run_later(wait, |act, ctx| {
                act.persist_timer = None;
                if (act.trail.peak, act.trail.stop) != act.persisted {
                    act.submit(Write::Persist, ctx);
                }
            }));
        }
    }

    fn submit(&mut self, write: Write, ctx: &mut Context<Self>) {
        if matches!(write, Write::Persist)
            && self.writes.iter().any(|w| matches!(w, Write::Persist))
        {
            return;
        }
        self.writes.push_back(write);
        self.drain(ctx);
    }

    /// Runs the next queued write unless one is in flight.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        let Some(write) = self.writes.pop_front() else {
            return;
        };
        self.writing = true;
        let snap = self.snapshot();
        let db = self.db.clone();
        let (strategy_id, run_id) = (self.strategy_id, self.run_id);
        match write {
            Write::Persist => {
                self.last_persist = Some(Instant::now());
                self.persisted = (snap.peak, snap.stop);
                ctx.spawn(
                    async move { persist_trail(&db, strategy_id, run_id, snap).await }
                        .into_actor(self)
                        .map(|result, act, ctx| {
                            act.writing = false;
                            if let Err(e) = result {
                                tracing::warn!(strategy_id = act.strategy_id, error = %e, "could not persist the trailing stop; retrying on the next change");
                                act.persisted = (None, None);
                                act.last_error = Some(format!("persisting peak/stop: {e}"));
                            }
                            act.drain(ctx);
                        }),
                );
            }
            Write::Event(event) => {
                let row = self.event_row(event, snap);
                ctx.spawn(
                    async move { row.insert(&db).await.map(|_| ()) }
                        .into_actor(self)
                        .map(|result, act, ctx| {
                            act.writing = false;
                            if let Err(e) = result {
                                tracing::warn!(strategy_id = act.strategy_id, error = %e, "could not record a risk event");
                                act.last_error = Some(format!("recording a risk event: {e}"));
                            }
                            act.drain(ctx);
                        }),
                );
            }
            Write::Transition { state, event, then } => {
                let retry_event = event.clone();
                let row = event.map(|e| self.event_row(e, snap));
                self.persisted = (snap.peak, snap.stop);
                ctx.spawn(
                    async move { write_transition(&db, strategy_id, run_id, state, snap, row).await }
                        .into_actor(self)
                        .map(move |result, act, ctx| {
                            act.writing = false;
                            match result {
                                Ok(()) => act.after_commit(then, ctx),
                                Err(e) => {
                                    tracing::error!(strategy_id = act.strategy_id, state = %state, error = %e, "could not record a risk state transition; retrying");
                                    act.last_error = Some(format!("recording {state}: {e}"));
                                    act.writes.push_front(Write::Transition {
                                        state,
                                        event: retry_event,
                                        then,
                                    });
                                    ctx.run_later(WRITE_RETRY, |act, ctx| act.drain(ctx));
                                    return;
                                }
                            }
                            act.drain(ctx);
                        }),
                );
            }
        }
    }

    fn event_row(&self, e: NewEvent, snap: Snapshot) -> risk_events::ActiveModel {
        risk_events::ActiveModel {
            strategy_id: Set(self.strategy_id),
            run_id: Set(self.run_id),
            event_type: Set(e.kind),
            threshold: Set(e.threshold),
            // A P&L that is not a finite number is stored as 0 (the message says what it was).
            pnl: Set(if snap.pnl.is_finite() { snap.pnl } else { 0.0 }),
            peak: Set(snap.peak),
            stop: Set(snap.stop),
            action: Set(e.action),
            message: Set(e.message),
            ..Default::default()
        }
    }

    /// The P&L (or a figure derived from the legs) is not a finite number: no rule can be
    /// evaluated. The run needs a human, loudly, like a failed exit.
    fn pnl_invalid(&mut self, what: String, ctx: &mut Context<Self>) {
        tracing::error!(
            strategy_id = self.strategy_id,
            run_id = self.run_id,
            "RISK RULES CANNOT BE EVALUATED, a human must check the strategy's positions: {what}"
        );
        self.cancel_confirm(ctx);
        self.needs_a_human(
            RiskEventType::PnlInvalid,
            0.0,
            "risk rules cannot be evaluated: check the positions by hand",
            what,
            ctx,
        );
    }

    /// Puts the run in ExitFailed with a risk event of `kind`: nothing more is decided or sent
    /// for it until an operator resumes it.
    fn needs_a_human(
        &mut self,
        kind: RiskEventType,
        pnl: f64,
        action: &str,
        message: String,
        ctx: &mut Context<Self>,
    ) {
        self.phase = RiskState::ExitFailed;
        self.last_error = Some(message.clone());
        self.last_trigger = Some(TriggerView {
            event: kind,
            threshold: None,
            pnl,
            at: Utc::now(),
        });
        self.submit(
            Write::Transition {
                state: RiskState::ExitFailed,
                event: Some(NewEvent {
                    kind,
                    threshold: None,
                    action: action.into(),
                    message: Some(message),
                }),
                then: Then::Nothing,
            },
            ctx,
        );
    }

    /// Reads the run's state back from the strategy's row (after a restart), then resumes an
    /// exit that was under way or evaluates the latest P&L.
    fn reload(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let strategy_id = self.strategy_id;
        ctx.wait(
            async move { strategies::Entity::find_by_id(strategy_id).one(&db).await }
                .into_actor(self)
                .map(|row, act, ctx| {
                    let row = match row {
                        Ok(Some(row)) => row,
                        Ok(None) => {
                            tracing::warn!(strategy_id = act.strategy_id, "the strategy is gone; its risk actor stays idle");
                            act.phase = RiskState::Exited;
                            act.reload = false;
                            return;
                        }
                        Err(e) => {
                            tracing::error!(strategy_id = act.strategy_id, error = %e, "reading the risk state back failed; retrying");
                            act.last_error = Some(format!("reading the risk state back: {e}"));
                            ctx.run_later(WRITE_RETRY, |act, ctx| act.reload(ctx));
                            return;
                        }
                    };
                    act.reload = false;
                    if row.run_id != act.run_id {
                        // A new run has its own actor; this one has nothing left to watch.
                        act.phase = RiskState::Exited;
                        return;
                    }
                    let risk = StrategyRisk::from_model(&row, act.settings.default_confirm);
                    act.phase = match risk.state {
                        RiskState::Triggered => RiskState::Exiting,
                        s => s,
                    };
                    act.limits = risk.limits;
                    act.trail.peak = risk.peak;
                    act.trail.stop = risk.stop;
                    act.trail.breach_since = None;
                    act.persisted = (risk.peak, risk.stop);
                    act.max_loss_latched = risk.max_loss_latched;
                    act.max_profit_latched = risk.max_profit_latched;
                    tracing::info!(strategy_id = act.strategy_id, state = %act.phase, "risk state read back after a restart");
                    if act.phase == RiskState::Exiting {
                        act.resume_exit(ctx);
                    } else if act.phase == RiskState::Monitoring
                        && act.evaluating
                        && act.settings.enabled
                        && act.fresh
                        && let Some(pnl) = act.pnl.filter(|p| p.is_finite())
                    {
                        let decision = act.evaluate(pnl, Instant::now(), ctx);
                        act.act_on(decision, pnl, ctx);
                    }
                }),
        );
    }

    fn after_commit(&mut self, then: Then, ctx: &mut Context<Self>) {
        match then {
            Then::Nothing => {}
            Then::Reply(tx) => {
                let _ = tx.send(Ok(()));
            }
            Then::Stop => ctx.stop(),
            Then::Exit { reason, reply } => {
                if self.phase == RiskState::Triggered {
                    self.phase = RiskState::Exiting;
                }
                self.request_exit(reason, reply, ctx);
            }
        }
    }

    fn request_exit(
        &mut self,
        reason: ExitReason,
        reply: Option<oneshot::Sender<Result<ExitTicket, String>>>,
        ctx: &mut Context<Self>,
    ) {
        self.exiting_for = Some(reason);
        let request = ExitRun {
            strategy_id: self.strategy_id,
            run_id: self.run_id,
            reason,
        };
        let exits = self.exits.clone();
        ctx.spawn(
            async move { exits.send(request).await }
                .into_actor(self)
                .map(move |answer, act, ctx| {
                    let result = match answer {
                        Ok(Ok(ticket)) => {
                            tracing::info!(
                                strategy_id = act.strategy_id,
                                queued = ticket.queued.len(),
                                already_exiting = ticket.already_exiting.len(),
                                "exit requested"
                            );
                            Ok(ticket)
                        }
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(format!("the position monitor did not answer: {e}")),
                    };
                    if let Err(e) = &result {
                        act.exit_failed(format!("the exit could not be requested: {e}"), ctx);
                    }
                    if let Some(tx) = reply {
                        let _ = tx.send(result);
                    }
                }),
        );
    }

    fn exit_failed(&mut self, message: String, ctx: &mut Context<Self>) {
        tracing::error!(
            strategy_id = self.strategy_id,
            run_id = self.run_id,
            "EXIT FAILED, a human must check the strategy's positions: {message}"
        );
        let pnl = self.pnl.unwrap_or(self.realized);
        self.needs_a_human(
            RiskEventType::ExitFailed,
            pnl,
            "exit failed: the position must be checked by hand",
            message,
            ctx,
        );
    }

    /// An exit begun before a restart (state Exiting) is requested again: legs already
    /// pending are checked at the broker by the gateway, legs never sent are sent.
    fn resume_exit(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let (strategy_id, run_id) = (self.strategy_id, self.run_id);
        ctx.spawn(
            async move { last_exit_reason(&db, strategy_id, run_id).await }
                .into_actor(self)
                .map(|reason, act, ctx| {
                    let reason = reason.unwrap_or_else(|e| {
                        tracing::warn!(strategy_id = act.strategy_id, error = %e, "could not read why the exit began; resuming it as manual");
                        ExitReason::Manual
                    });
                    tracing::info!(strategy_id = act.strategy_id, reason = %reason, "resuming the exit begun before the restart");
                    act.request_exit(reason, None, ctx);
                }),
        );
    }

    fn lifecycle(&self) -> (Lifecycle, Option<String>) {
        if self.restarts.faulted() {
            return (
                Lifecycle::Faulted,
                Some("crash loop: restarted too often, rules are not evaluated".into()),
            );
        }
        match self.phase {
            RiskState::ExitFailed => (
                Lifecycle::Degraded,
                Some(match &self.last_trigger {
                    Some(t) if t.event == RiskEventType::PnlInvalid => {
                        "P&L is not a finite number".into()
                    }
                    _ => "exit failed".into(),
                }),
            ),
            RiskState::Paused | RiskState::Exited => (Lifecycle::Stopped, None),
            _ if self.feed_degraded && self.evaluating => (
                Lifecycle::Degraded,
                Some("feed down: prices from REST quotes".into()),
            ),
            _ if self.stale_legs > 0 => (Lifecycle::Degraded, Some("stale prices".into())),
            _ => (Lifecycle::Running, None),
        }
    }

    fn status(&self) -> RiskStatus {
        let (lifecycle, degraded) = self.lifecycle();
        RiskStatus {
            strategy_id: self.strategy_id,
            strategy: self.name.clone(),
            run_id: self.run_id,
            state: self.phase,
            lifecycle,
            degraded,
            restarts: self.restarts.restarts(),
            evaluating: self.evaluating && self.settings.enabled,
            feed_degraded: self.feed_degraded,
            pnl: self.pnl,
            realized: self.realized,
            peak: self.trail.peak,
            stop: self.trail.stop,
            trailing_distance: self.distance,
            limits: LimitsView::from(&self.limits),
            max_loss_latched: self.max_loss_latched,
            max_profit_latched: self.max_profit_latched,
            breaching_since_ms: self.trail.breach_since.map(crate::status::age_ms),
            open_legs: self.open_legs,
            stale_legs: self.stale_legs,
            updates: self.updates,
            evaluations: self.evaluations,
            skipped_stale: self.skipped_stale,
            decision_latency_us: self.decision_latency_us,
            decision_latency: self.decision_latency.snapshot(),
            feed_latency: self.feed_latency.snapshot(),
            last_trigger: self.last_trigger.clone(),
            last_error: self.last_error.clone(),
        }
    }
}

impl Actor for RiskActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // P&L updates must never be dropped (the trail needs every peak).
        ctx.set_mailbox_capacity(MAILBOX);
        if self.restarts.faulted() {
            return;
        }
        if self.reload {
            self.reload(ctx);
        } else if self.phase == RiskState::Exiting {
            self.resume_exit(ctx);
        }
    }
}

impl actix::Supervised for RiskActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts.on_restart("RiskActor");
        self.writing = false;
        self.persist_timer = None;
        self.confirm_timer = None;
        self.trail.breach_since = None;
        // Queued and in-flight writes may or may not have run, and a handler cut short may
        // have left the state half changed: the strategy's row is the truth again. The latest
        // P&L figures are the monitor's and stay.
        self.writes.clear();
        self.reload = true;
    }
}

impl Handler<InjectPanic> for RiskActor {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!(
            "fault injected into the risk actor of strategy {}",
            self.strategy_id
        );
    }
}

impl Handler<FeedHealth> for RiskActor {
    type Result = ();

    /// Records when the run's legs lose their feed prices (REST quotes stand in) and when
    /// they get them back; evaluation goes on either way.
    fn handle(&mut self, msg: FeedHealth, ctx: &mut Context<Self>) {
        if msg.degraded == self.feed_degraded {
            return;
        }
        self.feed_degraded = msg.degraded;
        if matches!(self.phase, RiskState::Exited) || self.open_legs == 0 && self.updates > 0 {
            return;
        }
        let event = if msg.degraded {
            NewEvent {
                kind: RiskEventType::FeedDegraded,
                threshold: None,
                action: "feed down: open legs priced over REST quotes; rules still evaluated"
                    .into(),
                message: Some(msg.reason),
            }
        } else {
            NewEvent {
                kind: RiskEventType::FeedRestored,
                threshold: None,
                action: "feed no longer degraded".into(),
                message: Some(msg.reason),
            }
        };
        self.submit(Write::Event(event), ctx);
    }
}

impl Handler<PnlUpdate> for RiskActor {
    type Result = ();

    fn handle(&mut self, u: PnlUpdate, ctx: &mut Context<Self>) {
        let joined = self.updates > 0 && u.open_legs > self.open_legs;
        self.updates += 1;
        self.pnl = u.pnl;
        self.realized = u.realized;
        self.open_legs = u.open_legs;
        self.open_qty = u.open_qty;
        self.net_premium = u.net_premium;
        self.stale_legs = u.stale_legs;
        self.fresh = u.fresh;
        // A leg registered into a run that is being exited is exited with it.
        if joined
            && self.phase == RiskState::Exiting
            && let Some(reason) = self.exiting_for
        {
            tracing::warn!(
                strategy_id = self.strategy_id,
                "a leg joined a run being exited; exiting it too"
            );
            self.request_exit(reason, None, ctx);
        }
        if !(self.evaluating && self.settings.enabled && self.phase == RiskState::Monitoring)
            || self.reload
        {
            return;
        }
        let Some(pnl) = u.pnl else {
            return;
        };
        if let Some(what) = invalid_figures(&u) {
            self.pnl_invalid(what, ctx);
            return;
        }
        if !u.fresh {
            // A price older than stale_after never decides anything (REST quotes refresh it).
            self.skipped_stale += 1;
            return;
        }
        let decision = self.evaluate(pnl, Instant::now(), ctx);
        if let Some(at) = u.received_at {
            let latency = at.elapsed();
            self.decision_latency_us = Some(latency.as_micros() as u64);
            self.decision_latency.record(latency);
        }
        if let Some(sent) = u.sent_us {
            self.feed_latency
                .record(Duration::from_micros(epoch_us().saturating_sub(sent)));
        }
        self.act_on(decision, pnl, ctx);
    }
}

impl Handler<SetEvaluating> for RiskActor {
    type Result = ();

    fn handle(&mut self, msg: SetEvaluating, ctx: &mut Context<Self>) {
        self.evaluating = msg.0;
        if !msg.0 {
            self.trail.breach_since = None;
            self.cancel_confirm(ctx);
        }
    }
}

impl Handler<SetLimits> for RiskActor {
    type Result = ();

    fn handle(&mut self, msg: SetLimits, ctx: &mut Context<Self>) {
        self.name = msg.name;
        if msg.limits.trailing != self.limits.trailing {
            // A new distance applies from the current peak; the old stop does not carry over.
            self.trail.stop = None;
            if msg.limits.trailing.is_none() {
                self.trail.peak = None;
            }
            self.schedule_persist(ctx);
        }
        self.limits = msg.limits;
        self.trail.breach_since = None;
        self.cancel_confirm(ctx);
    }
}

impl Handler<LegClosed> for RiskActor {
    type Result = ();

    fn handle(&mut self, msg: LegClosed, ctx: &mut Context<Self>) {
        tracing::debug!(
            strategy_id = self.strategy_id,
            execution_id = msg.execution_id,
            open_legs_left = msg.open_legs_left,
            "leg closed"
        );
        self.open_legs = msg.open_legs_left;
        if let Some(message) = msg.mismatch {
            self.submit(
                Write::Event(NewEvent {
                    kind: RiskEventType::Mismatch,
                    threshold: None,
                    action: format!(
                        "leg {}: only what the broker held was exited",
                        msg.execution_id
                    ),
                    message: Some(message),
                }),
                ctx,
            );
        }
        if msg.open_legs_left > 0 {
            return;
        }
        let state = if self.phase == RiskState::Paused {
            RiskState::Paused
        } else {
            RiskState::Exited
        };
        tracing::info!(
            strategy_id = self.strategy_id,
            run_id = self.run_id,
            realized = self.realized,
            "every leg of the run is closed"
        );
        self.phase = state;
        self.cancel_confirm(ctx);
        self.submit(
            Write::Transition {
                state,
                event: Some(NewEvent {
                    kind: RiskEventType::ExitCompleted,
                    threshold: None,
                    action: "every leg of the run is closed".into(),
                    message: None,
                }),
                then: Then::Stop,
            },
            ctx,
        );
    }
}

impl Handler<LegExitFailed> for RiskActor {
    type Result = ();

    fn handle(&mut self, msg: LegExitFailed, ctx: &mut Context<Self>) {
        self.exit_failed(format!("leg {}: {}", msg.execution_id, msg.message), ctx);
    }
}

impl Handler<ManualExit> for RiskActor {
    type Result = ResponseFuture<Result<ExitTicket, String>>;

    fn handle(&mut self, _: ManualExit, ctx: &mut Context<Self>) -> Self::Result {
        if matches!(self.phase, RiskState::Triggered | RiskState::Exiting) {
            let state = self.phase;
            return Box::pin(async move {
                Err(format!(
                    "the strategy is already {state}; nothing new was sent"
                ))
            });
        }
        tracing::warn!(
            strategy_id = self.strategy_id,
            run_id = self.run_id,
            "manual exit of every open leg of the run"
        );
        self.phase = RiskState::Triggered;
        self.cancel_confirm(ctx);
        self.last_trigger = Some(TriggerView {
            event: RiskEventType::ManualExit,
            threshold: None,
            pnl: self.pnl.unwrap_or(self.realized),
            at: Utc::now(),
        });
        let (tx, rx) = oneshot::channel();
        self.submit(
            Write::Transition {
                state: RiskState::Exiting,
                event: Some(NewEvent {
                    kind: RiskEventType::ManualExit,
                    threshold: None,
                    action: "exit every open leg of the run".into(),
                    message: None,
                }),
                then: Then::Exit {
                    reason: ExitReason::Manual,
                    reply: Some(tx),
                },
            },
            ctx,
        );
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err("the risk actor stopped before the exit was requested".into())
            })
        })
    }
}

impl Handler<Pause> for RiskActor {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: Pause, ctx: &mut Context<Self>) -> Self::Result {
        self.phase = RiskState::Paused;
        self.trail.breach_since = None;
        self.cancel_confirm(ctx);
        let event = msg.kill_switch.then(|| NewEvent {
            kind: RiskEventType::KillSwitch,
            threshold: None,
            action: "kill switch: risk paused and every open leg exited".into(),
            message: None,
        });
        if msg.kill_switch {
            self.last_trigger = Some(TriggerView {
                event: RiskEventType::KillSwitch,
                threshold: None,
                pnl: self.pnl.unwrap_or(self.realized),
                at: Utc::now(),
            });
        }
        let (tx, rx) = oneshot::channel();
        self.submit(
            Write::Transition {
                state: RiskState::Paused,
                event,
                then: Then::Reply(tx),
            },
            ctx,
        );
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err("the risk actor stopped before the pause was recorded".into())
            })
        })
    }
}

impl Handler<Resume> for RiskActor {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, _: Resume, ctx: &mut Context<Self>) -> Self::Result {
        if !matches!(self.phase, RiskState::Paused | RiskState::ExitFailed) {
            return Box::pin(async { Ok(()) });
        }
        tracing::info!(strategy_id = self.strategy_id, "risk monitoring resumed");
        self.phase = RiskState::Monitoring;
        self.trail.breach_since = None;
        let (tx, rx) = oneshot::channel();
        self.submit(
            Write::Transition {
                state: RiskState::Monitoring,
                event: Some(NewEvent {
                    kind: RiskEventType::Resumed,
                    threshold: None,
                    action: "risk monitoring resumed by an operator".into(),
                    message: None,
                }),
                then: Then::Reply(tx),
            },
            ctx,
        );
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err("the risk actor stopped before resuming was recorded".into())
            })
        })
    }
}

impl Handler<GetRiskStatus> for RiskActor {
    type Result = MessageResult<GetRiskStatus>;

    fn handle(&mut self, _: GetRiskStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

/// Says which of the run's figures is not a finite number, if any.
fn invalid_figures(u: &PnlUpdate) -> Option<String> {
    let figures = [
        ("P&L", u.pnl.unwrap_or(0.0)),
        ("realized P&L", u.realized),
        ("open quantity", u.open_qty),
        ("net premium", u.net_premium),
    ];
    let bad: Vec<String> = figures
        .iter()
        .filter(|(_, v)| !v.is_finite())
        .map(|(name, v)| format!("{name} is {v}"))
        .collect();
    (!bad.is_empty()).then(|| {
        format!(
            "{} (a quantity or price out of any real range: check the legs)",
            bad.join(", ")
        )
    })
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

// ---- database ----------------------------------------------------------------------------

async fn persist_trail(
    db: &DatabaseConnection,
    strategy_id: i32,
    run_id: i32,
    snap: Snapshot,
) -> Result<(), DbErr> {
    use strategies::Column as C;
    strategies::Entity::update_many()
        .col_expr(C::PeakPnl, Expr::value(snap.peak.unwrap_or(0.0)))
        .col_expr(C::StopLevel, Expr::value(snap.stop))
        .col_expr(C::TrailingLatched, Expr::value(snap.peak.is_some()))
        .col_expr(C::RiskUpdatedAt, Expr::value(Utc::now()))
        .filter(C::Id.eq(strategy_id))
        .filter(C::RunId.eq(run_id))
        .exec(db)
        .await
        .map(|_| ())
}

async fn write_transition(
    db: &DatabaseConnection,
    strategy_id: i32,
    run_id: i32,
    state: RiskState,
    snap: Snapshot,
    event: Option<risk_events::ActiveModel>,
) -> Result<(), DbErr> {
    use strategies::Column as C;
    let now = Utc::now();
    let txn = crate::db::begin_write(db).await?;
    let updated = strategies::Entity::update_many()
        .col_expr(C::RiskState, Expr::value(state))
        .col_expr(C::PeakPnl, Expr::value(snap.peak.unwrap_or(0.0)))
        .col_expr(C::StopLevel, Expr::value(snap.stop))
        .col_expr(C::TrailingLatched, Expr::value(snap.peak.is_some()))
        .col_expr(C::MaxLossLatched, Expr::value(snap.max_loss_latched))
        .col_expr(C::MaxProfitLatched, Expr::value(snap.max_profit_latched))
        .col_expr(C::RiskUpdatedAt, Expr::value(now))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .filter(C::Id.eq(strategy_id))
        .filter(C::RunId.eq(run_id))
        .exec(&txn)
        .await?;
    // A new run has begun: this run's actor records nothing more.
    if updated.rows_affected == 1
        && let Some(event) = event
    {
        event.insert(&txn).await?;
    }
    txn.commit().await
}

/// Why the run's exit began: its latest trigger event.
async fn last_exit_reason(
    db: &DatabaseConnection,
    strategy_id: i32,
    run_id: i32,
) -> Result<ExitReason, DbErr> {
    use risk_events::Column as C;
    let event = risk_events::Entity::find()
        .filter(C::StrategyId.eq(strategy_id))
        .filter(C::RunId.eq(run_id))
        .filter(C::EventType.is_in([
            RiskEventType::MaxLoss,
            RiskEventType::MaxProfit,
            RiskEventType::TrailingStop,
            RiskEventType::ManualExit,
            RiskEventType::KillSwitch,
        ]))
        .order_by_desc(C::Id)
        .one(db)
        .await?;
    Ok(match event.map(|e| e.event_type) {
        Some(RiskEventType::MaxLoss) => ExitReason::MaxLoss,
        Some(RiskEventType::MaxProfit) => ExitReason::MaxProfit,
        Some(RiskEventType::TrailingStop) => ExitReason::TrailingStop,
        Some(RiskEventType::KillSwitch) => ExitReason::KillSwitch,
        _ => ExitReason::Manual,
    })
}
