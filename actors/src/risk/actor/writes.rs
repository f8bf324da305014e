//! The risk actor's serial write lane: every state transition, risk event and trail update is
//! written in the order it was decided, and what follows a transition runs once it is
//! committed. [`RiskActor::advance`] turns a phase step ([`crate::domain::risk_phase`]) into
//! such a write.

use std::time::{Duration, Instant};

use actix::prelude::*;
use entity::risk_events::{self, RiskEventType};
use entity::strategies::RiskState;
use entity::strategy_executions::ExitReason;
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use tokio::sync::oneshot;

use super::RiskActor;
use crate::domain::risk_phase::{self, After, Input, Step};
use crate::orders::ExitTicket;
use crate::risk::store::{self, Snapshot};

/// Peak and stop are persisted at most this often (and always on state transitions).
const PERSIST_EVERY: Duration = Duration::from_secs(1);
/// Wait before retrying a state transition the database refused.
pub(super) const WRITE_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(super) struct NewEvent {
    pub kind: RiskEventType,
    pub threshold: Option<f64>,
    pub action: String,
    pub message: Option<String>,
}

impl NewEvent {
    pub fn new(kind: RiskEventType, action: impl Into<String>) -> Self {
        NewEvent {
            kind,
            threshold: None,
            action: action.into(),
            message: None,
        }
    }
}

/// Who waits for an exit request's ticket.
pub(super) type TicketReply = oneshot::Sender<Result<ExitTicket, String>>;
/// Who waits for a transition's commit.
pub(super) type DoneReply = oneshot::Sender<Result<(), String>>;

/// What follows a committed transition.
pub(super) enum Then {
    Nothing,
    Exit {
        reason: ExitReason,
        reply: Option<TicketReply>,
    },
    ResumeExit,
    Reply(DoneReply),
    Stop,
}

pub(super) enum Write {
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

impl RiskActor {
    /// Makes the step `input` asks for from the current phase: the phase changes at once, the
    /// committed state is written with `event`, then `exit` follows when the step exits and
    /// `done` (answered with Ok) otherwise. A refusal is returned and changes nothing.
    pub(super) fn advance(
        &mut self,
        input: Input,
        event: Option<NewEvent>,
        exit: Option<(ExitReason, Option<TicketReply>)>,
        done: Option<DoneReply>,
        ctx: &mut Context<Self>,
    ) -> Result<bool, String> {
        let (to, commit, after) = match risk_phase::step(self.phase, input) {
            Step::Stay => {
                if let Some(tx) = done {
                    let _ = tx.send(Ok(()));
                }
                return Ok(false);
            }
            Step::Refuse(why) => return Err(why),
            Step::Go { to, commit, then } => (to, commit, then),
        };
        self.phase = to;
        let then = match (after, exit) {
            (After::Exit, Some((reason, reply))) => Then::Exit { reason, reply },
            (After::Exit, None) => Then::Exit {
                reason: self.exiting_for.unwrap_or(ExitReason::Manual),
                reply: None,
            },
            (After::ResumeExit, _) => Then::ResumeExit,
            (After::Stop, _) => Then::Stop,
            (After::Nothing, _) => done.map_or(Then::Nothing, Then::Reply),
        };
        match commit {
            Some(state) => self.submit(Write::Transition { state, event, then }, ctx),
            None => self.after_commit(then, ctx),
        }
        Ok(true)
    }

    /// Persists peak and stop now, or when a second has passed since the last time.
    pub(super) fn schedule_persist(&mut self, ctx: &mut Context<Self>) {
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

    /// Queues a write (one trail update at most).
    pub(super) fn submit(&mut self, write: Write, ctx: &mut Context<Self>) {
        if matches!(write, Write::Persist)
            && self.writes.iter().any(|w| matches!(w, Write::Persist))
        {
            return;
        }
        self.writes.push_back(write);
        self.drain(ctx);
    }

    /// Runs the next queued write unless one is in flight.
    pub(super) fn drain(&mut self, ctx: &mut Context<Self>) {
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
                    async move { store::persist_trail(&db, strategy_id, run_id, snap).await }
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
                    async move { store::write_transition(&db, strategy_id, run_id, state, snap, row).await }
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

    /// What follows a committed transition.
    pub(super) fn after_commit(&mut self, then: Then, ctx: &mut Context<Self>) {
        match then {
            Then::Nothing => {}
            Then::Reply(tx) => {
                let _ = tx.send(Ok(()));
            }
            Then::Stop => ctx.stop(),
            Then::Exit { reason, reply } => {
                if let Step::Go { to, .. } = risk_phase::step(self.phase, Input::ExitCommitted) {
                    self.phase = to;
                }
                self.request_exit(reason, reply, ctx);
            }
            Then::ResumeExit => self.resume_exit(ctx),
        }
    }
}
