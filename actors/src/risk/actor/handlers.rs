//! The risk actor's message handlers: P&L updates, limits, the gateway's leg reports, manual
//! exits, pauses and resumes.

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use entity::risk_events::RiskEventType;
use entity::strategies::RiskState;
use entity::strategy_executions::ExitReason;
use tokio::sync::oneshot;

use super::writes::{NewEvent, Write};
use super::{RiskActor, epoch_us};
use crate::domain::book::RunFigures;
use crate::domain::risk_phase::{self, Input};
use crate::orders::{ExitReport, ExitTicket};
use crate::risk::{
    GetRiskStatus, ManualExit, Pause, PnlUpdate, Resume, SetEvaluating, SetLimits, TriggerView,
};
use crate::supervisor::FeedHealth;

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
        let joined = self.updates > 0 && u.figures.open_legs > self.open_legs;
        self.updates += 1;
        self.pnl = u.figures.pnl;
        self.realized = u.figures.realized;
        self.open_legs = u.figures.open_legs;
        self.open_qty = u.figures.open_qty;
        self.net_premium = u.figures.net_premium;
        self.stale_legs = u.figures.stale_legs;
        self.fresh = u.figures.fresh;
        if u.figures.open_legs == 0 {
            self.run_closed(ctx);
            return;
        }
        // A leg registered into a run that is being exited is exited with it.
        if joined && self.phase == RiskState::Exiting && self.exiting_for.is_some() {
            tracing::warn!(
                strategy_id = self.strategy_id,
                "a leg joined a run being exited; exiting it too"
            );
            let _ = self.advance(Input::LegJoined, None, None, None, ctx);
        }
        if !(self.evaluating && self.settings.enabled && risk_phase::evaluates(self.phase))
            || self.reload
        {
            return;
        }
        let Some(pnl) = u.figures.pnl else {
            return;
        };
        if let Some(what) = invalid_figures(&u.figures) {
            self.pnl_invalid(what, ctx);
            return;
        }
        if !u.figures.fresh {
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

impl Handler<ExitReport> for RiskActor {
    type Result = ();

    /// A leg's exit ended. A closed leg leaves the run through the leg book (its next
    /// [`PnlUpdate`] counts one leg fewer); here only what the broker did not hold is recorded.
    fn handle(&mut self, msg: ExitReport, ctx: &mut Context<Self>) {
        match msg {
            ExitReport::LegExited { run_id, .. } | ExitReport::LegFailed { run_id, .. }
                if run_id != self.run_id => {}
            ExitReport::LegExited {
                execution_id,
                mismatch,
                ..
            } => {
                tracing::debug!(strategy_id = self.strategy_id, execution_id, "leg exited");
                if let Some(message) = mismatch {
                    let action =
                        format!("leg {execution_id}: only what the broker held was exited");
                    self.submit(
                        Write::Event(NewEvent {
                            message: Some(message),
                            ..NewEvent::new(RiskEventType::Mismatch, action)
                        }),
                        ctx,
                    );
                }
            }
            ExitReport::LegFailed {
                execution_id,
                message,
                ..
            } => self.exit_failed(format!("leg {execution_id}: {message}"), ctx),
        }
    }
}

impl Handler<ManualExit> for RiskActor {
    type Result = ResponseFuture<Result<ExitTicket, String>>;

    fn handle(&mut self, _: ManualExit, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let event = NewEvent::new(RiskEventType::ManualExit, "exit every open leg of the run");
        let exit = Some((ExitReason::Manual, Some(tx)));
        if let Err(why) = self.advance(Input::ManualExit, Some(event), exit, None, ctx) {
            return Box::pin(async move { Err(why) });
        }
        tracing::warn!(
            strategy_id = self.strategy_id,
            run_id = self.run_id,
            "manual exit of every open leg of the run"
        );
        self.cancel_confirm(ctx);
        self.last_trigger = Some(TriggerView {
            event: RiskEventType::ManualExit,
            threshold: None,
            pnl: self.pnl.unwrap_or(self.realized),
            at: Utc::now(),
        });
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
        self.trail.breach_since = None;
        self.cancel_confirm(ctx);
        let event = msg.kill_switch.then(|| {
            NewEvent::new(
                RiskEventType::KillSwitch,
                "kill switch: risk paused and every open leg exited",
            )
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
        // A pause is never refused.
        let _ = self.advance(Input::Pause, event, None, Some(tx), ctx);
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
        let (tx, rx) = oneshot::channel();
        let event = NewEvent::new(
            RiskEventType::Resumed,
            "risk monitoring resumed by an operator",
        );
        if let Ok(true) = self.advance(Input::Resume, Some(event), None, Some(tx), ctx) {
            tracing::info!(strategy_id = self.strategy_id, "risk monitoring resumed");
            self.trail.breach_since = None;
        }
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

impl RiskActor {
    /// The leg book has no open leg of the run left: the run is over.
    fn run_closed(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(
            strategy_id = self.strategy_id,
            run_id = self.run_id,
            realized = self.realized,
            "every leg of the run is closed"
        );
        self.cancel_confirm(ctx);
        let event = NewEvent::new(
            RiskEventType::ExitCompleted,
            "every leg of the run is closed",
        );
        let _ = self.advance(Input::RunClosed, Some(event), None, None, ctx);
    }
}

/// Says which of the run's figures is not a finite number, if any.
fn invalid_figures(f: &RunFigures) -> Option<String> {
    let figures = [
        ("P&L", f.pnl.unwrap_or(0.0)),
        ("realized P&L", f.realized),
        ("open quantity", f.open_qty),
        ("net premium", f.net_premium),
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
