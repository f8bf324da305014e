//! The `RiskActor`: the run's figures as the position monitor last sent them, the trail, the
//! rules' decisions, and the handlers. It asks the order gateway to exit the run and hears
//! each leg's outcome from it. Writes are in `writes.rs`, exits and failures in
//! `exit.rs`.

mod exit;
mod handlers;
mod writes;

use std::collections::VecDeque;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use chrono::Utc;
use entity::risk_events::RiskEventType;
use entity::strategies::RiskState;
use entity::strategy_executions::ExitReason;
use sea_orm::DatabaseConnection;

use self::writes::{NewEvent, Write};
use super::store::Snapshot;
use super::{LimitsView, RiskSettings, RiskStatus, StrategyRisk, TriggerView};
use crate::domain::latency::LatencyHistogram;
use crate::domain::risk::{Decision, RiskLimits, RiskState as Trail, Rule, trailing_distance};
use crate::domain::risk_phase::{self, After, Input, Step};
use crate::orders::{AttachRun, OrderGatewayActor};
use crate::status::Lifecycle;
use crate::supervised::{InjectPanic, RestartTracker};

/// Mailbox size: large enough that the feed never finds it full (ticks are not dropped).
const MAILBOX: usize = 1 << 20;

pub struct RiskActor {
    db: DatabaseConnection,
    settings: RiskSettings,
    strategy_id: i32,
    name: String,
    run_id: i32,
    limits: RiskLimits,
    /// Exits the run's legs and reports every outcome of them here.
    gateway: Addr<OrderGatewayActor>,
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
/// The phase a stored state resumes as, and whether an exit is to be asked again.
fn restore(stored: RiskState) -> (RiskState, After) {
    match risk_phase::step(stored, Input::Restored(stored)) {
        Step::Go { to, then, .. } => (to, then),
        _ => (stored, After::Nothing),
    }
}

impl RiskActor {
    pub fn new(
        db: DatabaseConnection,
        settings: RiskSettings,
        strategy: StrategyRisk,
        gateway: Addr<OrderGatewayActor>,
    ) -> Self {
        let (phase, _) = restore(strategy.state);
        Self {
            restarts: RestartTracker::new(settings.supervision),
            db,
            settings,
            strategy_id: strategy.strategy_id,
            name: strategy.name,
            run_id: strategy.run_id,
            limits: strategy.limits,
            gateway,
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
        let action = if auto_exit {
            tracing::warn!(strategy_id = self.strategy_id, run_id = self.run_id, rule = %rule, pnl, threshold, peak = self.trail.peak, stop = self.trail.stop, "risk rule triggered: exiting every open leg of the run");
            "exit every open leg of the run"
        } else {
            tracing::warn!(strategy_id = self.strategy_id, rule = %rule, pnl, threshold, "risk rule breached; automatic exit is disabled for it, nothing is sent");
            "alert only: automatic exit is disabled for this rule"
        };
        let event = NewEvent {
            threshold: Some(threshold),
            ..NewEvent::new(event_of(rule), action)
        };
        let exit = Some((reason_of(rule), None));
        // Only a monitoring run evaluates, and a breach is never refused.
        let _ = self.advance(Input::Breach { auto_exit }, Some(event), exit, None, ctx);
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
        self.gateway.do_send(AttachRun {
            strategy_id: self.strategy_id,
            run_id: self.run_id,
            listener: ctx.address().recipient(),
        });
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
