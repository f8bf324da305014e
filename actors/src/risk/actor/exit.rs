//! The risk actor's exits and failures: requesting the run's exit, resuming one begun before a
//! restart, and putting the run in `exit_failed` when it needs a human.

use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;
use entity::risk_events::RiskEventType;
use entity::strategies::RiskState;
use entity::strategy_executions::ExitReason;

use super::writes::{NewEvent, TicketReply, WRITE_RETRY};
use super::{RiskActor, restore};
use crate::domain::risk_phase::{self, After, Input};
use crate::orders::{ExitScope, RequestExit};
use crate::risk::{StrategyRisk, TriggerView, store};

impl RiskActor {
    /// The P&L (or a figure derived from the legs) is not a finite number: no rule can be
    /// evaluated. The run needs a human, loudly, like a failed exit.
    pub(super) fn pnl_invalid(&mut self, what: String, ctx: &mut Context<Self>) {
        tracing::error!(
            strategy_id = self.strategy_id,
            run_id = self.run_id,
            "RISK RULES CANNOT BE EVALUATED, a human must check the strategy's positions: {what}"
        );
        self.cancel_confirm(ctx);
        self.needs_a_human(
            Input::PnlInvalid,
            RiskEventType::PnlInvalid,
            0.0,
            "risk rules cannot be evaluated: check the positions by hand",
            what,
            ctx,
        );
    }

    pub(super) fn exit_failed(&mut self, message: String, ctx: &mut Context<Self>) {
        tracing::error!(
            strategy_id = self.strategy_id,
            run_id = self.run_id,
            "EXIT FAILED, a human must check the strategy's positions: {message}"
        );
        let pnl = self.pnl.unwrap_or(self.realized);
        self.needs_a_human(
            Input::ExitFailed,
            RiskEventType::ExitFailed,
            pnl,
            "exit failed: the position must be checked by hand",
            message,
            ctx,
        );
    }

    /// Puts the run in ExitFailed with a risk event of `kind`: nothing more is decided or sent
    /// for it until an operator resumes it.
    fn needs_a_human(
        &mut self,
        input: Input,
        kind: RiskEventType,
        pnl: f64,
        action: &str,
        message: String,
        ctx: &mut Context<Self>,
    ) {
        self.last_error = Some(message.clone());
        self.last_trigger = Some(TriggerView {
            event: kind,
            threshold: None,
            pnl,
            at: Utc::now(),
        });
        let event = NewEvent {
            message: Some(message),
            ..NewEvent::new(kind, action)
        };
        // A failure is never refused (see the phase rules).
        let _ = self.advance(input, Some(event), None, None, ctx);
    }

    /// Asks for the run's open legs to be exited; `reply` gets the ticket (or why not).
    pub(super) fn request_exit(
        &mut self,
        reason: ExitReason,
        reply: Option<TicketReply>,
        ctx: &mut Context<Self>,
    ) {
        self.exiting_for = Some(reason);
        let request = RequestExit {
            scope: ExitScope::Run {
                strategy_id: self.strategy_id,
                run_id: self.run_id,
            },
            reason,
        };
        let gateway = self.gateway.clone();
        ctx.spawn(
            async move { gateway.send(request).await }
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
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(format!("the order gateway did not answer: {e}")),
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

    /// An exit begun before a restart (state Exiting) is requested again: legs already
    /// pending are checked at the broker by the gateway, legs never sent are sent.
    pub(super) fn resume_exit(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let (strategy_id, run_id) = (self.strategy_id, self.run_id);
        ctx.spawn(
            async move { store::last_exit_reason(&db, strategy_id, run_id).await }
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

    /// Reads the run's state back from the strategy's row (after a restart), then resumes an
    /// exit that was under way or evaluates the latest P&L.
    pub(super) fn reload(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let strategy_id = self.strategy_id;
        ctx.wait(
            async move { store::strategy(&db, strategy_id).await }
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
                    let (phase, after) = restore(risk.state);
                    act.phase = phase;
                    act.limits = risk.limits;
                    act.trail.peak = risk.peak;
                    act.trail.stop = risk.stop;
                    act.trail.breach_since = None;
                    act.persisted = (risk.peak, risk.stop);
                    act.max_loss_latched = risk.max_loss_latched;
                    act.max_profit_latched = risk.max_profit_latched;
                    tracing::info!(strategy_id = act.strategy_id, state = %act.phase, "risk state read back after a restart");
                    if after == After::ResumeExit {
                        act.resume_exit(ctx);
                    } else if risk_phase::evaluates(act.phase)
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
}
