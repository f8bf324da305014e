//! The position monitor's lifecycle and message handlers.

use std::time::{Duration, Instant};

use actix::prelude::*;
use entity::strategy_executions::{self, ExitReason};

use super::{MAILBOX, PositionMonitorActor};
use crate::feed::{FeedEvent, ReleaseAll};
use crate::orders::{AttachBook, ExitReport, ExitScope, ExitTicket, RequestExit};
use crate::positions::quotes::QuoteAccounts;
use crate::positions::reconcile::{GetLastPrices, Reconciled, Reconciling};
use crate::positions::store::resume_idle;
use crate::positions::{
    GetMonitorStatus, GetPositions, GetRiskStatuses, InjectRiskPanic, KillSwitch, KillSwitchReport,
    ManualExitStrategy, MonitorError, MonitorStatus, RegisterExecution, ResumeStrategy,
    StartMonitoring, StopMonitoring, StrategyChanged, register_execution,
};
use crate::risk::{
    GetRiskStatus, ManualExit, Pause, Resume, RiskActor, RiskStatus, SetEvaluating, SetLimits,
};
use crate::supervised::InjectPanic;
use crate::supervisor::{FeedHealth, MarketHours};

/// How long one risk actor may take to answer a status request.
const RISK_STATUS_WITHIN: Duration = Duration::from_secs(2);

impl Actor for PositionMonitorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Ticks of open positions must never be dropped or coalesced away.
        ctx.set_mailbox_capacity(MAILBOX);
        if self.restarts.faulted() {
            return;
        }
        self.gateway.do_send(AttachBook(ctx.address().recipient()));
        if !self.loaded {
            self.load(ctx);
        }
        if self.monitoring {
            self.arm_timers(ctx);
        }
    }
}

impl actix::Supervised for PositionMonitorActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts.on_restart("PositionMonitorActor");
        self.stale_timer = None;
        self.quotes_in_flight.clear();
        // A handler cut short may have left the book half updated: the open legs and runs
        // are read again from the database at start. The risk actors keep running and are
        // taken back by run; the keys held are subscribed again once the legs are loaded (the
        // registry then resends their last prices).
        let risk = std::mem::take(&mut self.risk);
        self.adoptable = risk
            .into_iter()
            .filter_map(|(id, addr)| Some((id, (self.book.run(id)?.run_id, addr))))
            .collect();
        self.book.clear();
        self.watched.clear();
        self.orphaned.extend(self.subscribed.drain());
        self.loaded = false;
        if self.monitoring {
            // Legs are fresh again from the restart (their prices come back with the load).
            self.book.set_monitoring(Some(Instant::now()));
        }
    }
}

impl Handler<InjectPanic> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!("fault injected into the position monitor");
    }
}

impl Handler<InjectRiskPanic> for PositionMonitorActor {
    type Result = bool;

    fn handle(&mut self, msg: InjectRiskPanic, _ctx: &mut Context<Self>) -> bool {
        match self.risk.get(&msg.0) {
            Some(risk) => {
                risk.do_send(InjectPanic);
                true
            }
            None => false,
        }
    }
}

impl Handler<FeedHealth> for PositionMonitorActor {
    type Result = ();

    /// The feed went down (every open leg is priced over REST at once) or came back.
    fn handle(&mut self, msg: FeedHealth, ctx: &mut Context<Self>) {
        if msg.degraded {
            tracing::warn!(legs = self.book.len(), reason = %msg.reason, "feed down: open legs priced over REST quotes");
        } else if self.feed_degraded {
            tracing::info!("feed live again: open legs priced by the feed");
        }
        self.feed_degraded = msg.degraded;
        self.feed_reason = msg.reason;
        self.book.set_feed_down(self.feed_degraded);
        for risk in self.risk.values() {
            risk.do_send(self.feed_health());
        }
        if self.monitoring && self.loaded {
            self.check_stale(ctx);
        }
    }
}

impl Handler<StartMonitoring> for PositionMonitorActor {
    type Result = Result<(), MonitorError>;

    fn handle(&mut self, _: StartMonitoring, ctx: &mut Context<Self>) -> Self::Result {
        if !self.settings.enabled {
            return Err(MonitorError::Conflict(
                "position monitoring is disabled (position_monitor.enabled = false)".into(),
            ));
        }
        if self.monitoring {
            return Ok(());
        }
        tracing::info!(legs = self.book.len(), "position monitoring started");
        self.monitoring = true;
        self.book.set_monitoring(Some(Instant::now()));
        for risk in self.risk.values() {
            risk.do_send(SetEvaluating(true));
        }
        self.arm_timers(ctx);
        if self.loaded {
            self.sync_subscriptions(ctx);
            let ids: Vec<i32> = self.risk.keys().copied().collect();
            for id in ids {
                self.push_pnl(id, None, None);
            }
        }
        Ok(())
    }
}

/// The supervisor's market-hours signal: start or stop monitoring.
impl Handler<MarketHours> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, msg: MarketHours, ctx: &mut Context<Self>) {
        if msg.0 {
            if let Err(e) = <Self as Handler<StartMonitoring>>::handle(self, StartMonitoring, ctx) {
                tracing::warn!(error = %e, "position monitoring not started");
            }
        } else {
            <Self as Handler<StopMonitoring>>::handle(self, StopMonitoring, ctx);
        }
    }
}

impl Handler<StopMonitoring> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, _: StopMonitoring, ctx: &mut Context<Self>) {
        if !self.monitoring {
            return;
        }
        tracing::info!("position monitoring stopped; exits in flight go on");
        self.monitoring = false;
        self.book.set_monitoring(None);
        if let Some(h) = self.stale_timer.take() {
            ctx.cancel_future(h);
        }
        self.reconciler.do_send(Reconciling(false));
        for risk in self.risk.values() {
            risk.do_send(SetEvaluating(false));
        }
        self.subscribed.clear();
        self.registry.do_send(ReleaseAll {
            subscriber: self.subscriber,
        });
    }
}

impl Handler<FeedEvent> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, msg: FeedEvent, _ctx: &mut Context<Self>) {
        match msg {
            FeedEvent::Tick(tick) => self.on_tick(tick),
            FeedEvent::Rejected { key, message } => {
                tracing::error!(key = %key, reason = %message, "the gateway refused an open leg's symbol; it is priced over REST");
                self.last_error = Some(format!("{key} refused by the feed: {message}"));
            }
        }
    }
}

impl Handler<RegisterExecution> for PositionMonitorActor {
    type Result = ResponseActFuture<Self, Result<strategy_executions::Model, MonitorError>>;

    fn handle(&mut self, msg: RegisterExecution, _ctx: &mut Context<Self>) -> Self::Result {
        let db = self.db.clone();
        let limits = self.settings.fill_limits;
        Box::pin(
            async move { register_execution(&db, msg.0, &limits).await }
                .into_actor(self)
                .map(|result, act, ctx| {
                    let (leg, strategy) = result?;
                    tracing::info!(execution_id = leg.id, strategy_id = leg.strategy_id, run_id = leg.run_id, symbol = %leg.symbol, "execution registered");
                    act.open_run(&strategy, &[]);
                    act.track(leg.clone(), ctx);
                    Ok(leg)
                }),
        )
    }
}

impl Handler<Reconciled> for PositionMonitorActor {
    type Result = ();

    /// What reconciliation with an account's position book changed.
    fn handle(&mut self, msg: Reconciled, ctx: &mut Context<Self>) {
        self.reconciliations += 1;
        match msg.outcome {
            Ok(done) => {
                self.mismatches += done.mismatches;
                for (strategy, leg) in done.adopted {
                    self.adopted += 1;
                    self.open_run(&strategy, &[]);
                    self.track(leg, ctx);
                }
                for (id, price) in done.closed {
                    self.closed_externally += 1;
                    self.leg_closed(id, price, None, ctx);
                }
            }
            Err(e) => {
                self.last_error = Some(format!("reconciling account {}: {e}", msg.account_id));
            }
        }
    }
}

impl Handler<GetLastPrices> for PositionMonitorActor {
    type Result = MessageResult<GetLastPrices>;

    fn handle(&mut self, _: GetLastPrices, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.book.last_prices(None))
    }
}

impl Handler<ExitReport> for PositionMonitorActor {
    type Result = ();

    /// A leg's exit filled: it leaves the book. Failures go to the run's risk actor only.
    fn handle(&mut self, msg: ExitReport, ctx: &mut Context<Self>) {
        if let ExitReport::LegExited {
            execution_id,
            exit_price,
            filled,
            mismatch,
            ..
        } = msg
        {
            let closed = mismatch.is_some().then_some(filled as f64);
            self.leg_closed(execution_id, exit_price, closed, ctx);
        }
    }
}

impl Handler<ManualExitStrategy> for PositionMonitorActor {
    type Result = ResponseFuture<Result<ExitTicket, MonitorError>>;

    fn handle(&mut self, msg: ManualExitStrategy, _ctx: &mut Context<Self>) -> Self::Result {
        let Some(risk) = self.risk.get(&msg.0).cloned() else {
            return Box::pin(async move {
                Err(MonitorError::Conflict(format!(
                    "strategy {} has no open legs to exit",
                    msg.0
                )))
            });
        };
        Box::pin(async move {
            match risk.send(ManualExit).await {
                Ok(Ok(ticket)) => Ok(ticket),
                Ok(Err(e)) => Err(MonitorError::Conflict(e)),
                Err(e) => Err(MonitorError::Internal(format!(
                    "the risk actor did not answer: {e}"
                ))),
            }
        })
    }
}

impl Handler<KillSwitch> for PositionMonitorActor {
    type Result = ResponseFuture<Result<KillSwitchReport, MonitorError>>;

    fn handle(&mut self, _: KillSwitch, _ctx: &mut Context<Self>) -> Self::Result {
        tracing::warn!(
            strategies = self.risk.len(),
            legs = self.book.len(),
            "KILL SWITCH: pausing every risk actor and exiting every open leg"
        );
        let actors: Vec<(i32, Addr<RiskActor>)> =
            self.risk.iter().map(|(id, a)| (*id, a.clone())).collect();
        let gateway = self.gateway.clone();
        Box::pin(async move {
            let mut report = KillSwitchReport {
                strategies_paused: Vec::new(),
                exits: ExitTicket::default(),
                errors: Vec::new(),
            };
            let pauses = actors
                .iter()
                .map(|(_, a)| a.send(Pause { kill_switch: true }));
            for ((id, _), answer) in actors
                .iter()
                .zip(futures_util::future::join_all(pauses).await)
            {
                match answer {
                    Ok(Ok(())) => report.strategies_paused.push(*id),
                    Ok(Err(e)) => report.errors.push(format!("strategy {id}: {e}")),
                    Err(e) => report
                        .errors
                        .push(format!("strategy {id}: the risk actor did not answer: {e}")),
                }
            }
            report.strategies_paused.sort_unstable();
            // Exits go out even if a pause could not be recorded: flattening comes first.
            let request = RequestExit {
                scope: ExitScope::All,
                reason: ExitReason::KillSwitch,
            };
            match gateway.send(request).await {
                Ok(Ok(ticket)) => report.exits = ticket,
                Ok(Err(e)) => return Err(MonitorError::Internal(e.to_string())),
                Err(e) => {
                    return Err(MonitorError::Internal(format!(
                        "the order gateway did not answer: {e}"
                    )));
                }
            }
            Ok(report)
        })
    }
}

impl Handler<ResumeStrategy> for PositionMonitorActor {
    type Result = ResponseFuture<Result<(), MonitorError>>;

    fn handle(&mut self, msg: ResumeStrategy, _ctx: &mut Context<Self>) -> Self::Result {
        let strategy_id = msg.0;
        match self.risk.get(&strategy_id).cloned() {
            Some(risk) => Box::pin(async move {
                match risk.send(Resume).await {
                    Ok(r) => r.map_err(MonitorError::Internal),
                    Err(e) => Err(MonitorError::Internal(format!(
                        "the risk actor did not answer: {e}"
                    ))),
                }
            }),
            // No run in progress: the next run starts monitored.
            None => {
                let db = self.db.clone();
                Box::pin(async move { resume_idle(&db, strategy_id).await })
            }
        }
    }
}

impl Handler<StrategyChanged> for PositionMonitorActor {
    type Result = ();

    fn handle(&mut self, msg: StrategyChanged, _ctx: &mut Context<Self>) {
        let s = msg.0;
        self.book.rename(s.id, &s.name);
        if let Some(risk) = self.risk.get(&s.id) {
            risk.do_send(SetLimits {
                limits: crate::risk::limits_of(&s, self.risk_settings.default_confirm),
                name: s.name,
            });
        }
    }
}

impl Handler<GetPositions> for PositionMonitorActor {
    type Result = MessageResult<GetPositions>;

    fn handle(&mut self, _: GetPositions, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.positions())
    }
}

impl Handler<GetMonitorStatus> for PositionMonitorActor {
    type Result = ResponseActFuture<Self, MonitorStatus>;

    /// The monitor's status, with the accounts the quote fallback can ask.
    fn handle(&mut self, _: GetMonitorStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let quotes = self.quotes.clone();
        Box::pin(
            async move { quotes.send(QuoteAccounts).await.unwrap_or(0) }
                .into_actor(self)
                .map(|accounts, act, _ctx| act.status(accounts)),
        )
    }
}

impl Handler<GetRiskStatuses> for PositionMonitorActor {
    type Result = ResponseFuture<Vec<RiskStatus>>;

    /// Every risk actor's status; one that does not answer within a short time is listed as
    /// Faulted with the reason, never left out.
    fn handle(&mut self, _: GetRiskStatuses, _ctx: &mut Context<Self>) -> Self::Result {
        let actors: Vec<(i32, String, i32, Addr<RiskActor>)> = self
            .risk
            .iter()
            .filter_map(|(id, a)| {
                let run = self.book.run(*id)?;
                Some((*id, run.name.clone(), run.run_id, a.clone()))
            })
            .collect();
        Box::pin(async move {
            let asks = actors
                .iter()
                .map(|(_, _, _, a)| a.send(GetRiskStatus).timeout(RISK_STATUS_WITHIN));
            let answers = futures_util::future::join_all(asks).await;
            let mut out: Vec<RiskStatus> = actors
                .into_iter()
                .zip(answers)
                .map(|((id, name, run_id, _), answer)| {
                    answer.unwrap_or_else(|e| {
                        RiskStatus::silent(
                            id,
                            name,
                            run_id,
                            format!("the risk actor did not answer: {e}"),
                        )
                    })
                })
                .collect();
            out.sort_by_key(|s| s.strategy_id);
            out
        })
    }
}
