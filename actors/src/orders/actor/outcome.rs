//! A leg's exit ends: exited (recorded, reported, its holding released) or failed (reported
//! for a human), and remembered for the status.

use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;

use super::{LegExit, OrderGatewayActor, RECENT};
use crate::domain::exit_machine::Outcome;
use crate::domain::pnl::leg_pnl;
use crate::orders::store::{self, Exited};
use crate::orders::{ExitReport, FinishedExitView};

impl OrderGatewayActor {
    /// The leg's exit is over: record it, report it, free the lane.
    pub(super) fn finish(
        &mut self,
        account_id: i32,
        id: i32,
        outcome: Outcome,
        ctx: &mut Context<Self>,
    ) {
        let (filled, average_price) = match outcome {
            Outcome::Failed { message, .. } => {
                self.fail(account_id, id, message);
                return self.free(account_id, ctx);
            }
            Outcome::Exited {
                filled,
                average_price,
                ..
            } => (filled, average_price),
        };
        let Some(exit) = self.legs.get(&id) else {
            return self.free(account_id, ctx);
        };
        let leg = &exit.leg;
        // No average fill price from the broker: its own mark at the latest read.
        let exit_price = average_price.or_else(|| self.mark(&exit.key()));
        let realized_pnl = if filled == 0 {
            Some(0.0)
        } else {
            exit_price.map(|p| leg_pnl(leg.side, filled as f64, leg.entry_price, p))
        };
        let job = Exited {
            leg_id: id,
            reason: exit.reason,
            order_ids: exit
                .machine
                .orders()
                .iter()
                .filter(|o| o.filled > 0)
                .filter_map(|o| o.order_id.clone())
                .collect(),
            exit_price,
            realized_pnl,
            filled,
        };
        let db = self.db.clone();
        ctx.spawn(
            async move { store::record_exited(&db, &job).await }
                .into_actor(self)
                .map(move |recorded, act, ctx| {
                    if let Err(e) = recorded {
                        tracing::error!(execution_id = id, error = %e, "the leg is closed but could not be recorded as exited; a restart checks it again");
                        act.last_error = Some(format!("recording an exited leg: {e}"));
                    }
                    act.exited(account_id, id, exit_price, realized_pnl, ctx);
                    act.free(account_id, ctx);
                }),
        );
    }

    fn exited(
        &mut self,
        account_id: i32,
        id: i32,
        exit_price: Option<f64>,
        realized_pnl: Option<f64>,
        ctx: &mut Context<Self>,
    ) {
        let Some(exit) = self.remove(account_id, id) else {
            return;
        };
        let (filled, unheld) = (exit.machine.filled(), exit.machine.unheld());
        self.legs_exited += 1;
        if filled > 0 {
            self.fill_confirm.record(exit.requested_at.elapsed());
            if exit.by_event {
                self.exits_confirmed_by_event += 1;
            } else {
                self.exits_confirmed_by_read += 1;
            }
        }
        let mismatch = (unheld > 0).then(|| {
            self.mismatches += 1;
            let account = self
                .lanes
                .get(&account_id)
                .map_or_else(|| account_id.to_string(), |l| l.endpoint.name.clone());
            format!(
                "the broker held {filled} of the leg's {} units of {}:{} on account {account}; the {unheld} it did not hold were not sent",
                exit.leg.quantity, exit.leg.exchange, exit.leg.symbol
            )
        });
        if let Some(m) = &mismatch {
            tracing::error!(execution_id = id, "MISMATCH: {m}");
        }
        tracing::info!(
            execution_id = id,
            strategy_id = exit.leg.strategy_id,
            filled,
            unheld,
            exit_price,
            realized_pnl,
            "leg exited"
        );
        self.remember(&exit, "filled", mismatch.clone());
        self.report(ExitReport::LegExited {
            execution_id: id,
            strategy_id: exit.leg.strategy_id,
            run_id: exit.leg.run_id,
            exit_price,
            realized_pnl,
            filled,
            unheld,
            mismatch,
        });
        self.release_holding(&exit.key(), ctx);
    }

    fn remember(&mut self, exit: &LegExit, state: &'static str, message: Option<String>) {
        self.recent.push_front(FinishedExitView {
            execution_id: exit.leg.id,
            strategy_id: exit.leg.strategy_id,
            symbol: exit.leg.symbol.clone(),
            state,
            filled: exit.machine.filled(),
            unheld: exit.machine.unheld(),
            orders: exit.machine.orders().len(),
            message,
            finished_at_us: Utc::now().timestamp_micros(),
        });
        self.recent.truncate(RECENT);
    }

    pub(super) fn remove(&mut self, account_id: i32, id: i32) -> Option<LegExit> {
        if let Some(lane) = self.lanes.get_mut(&account_id) {
            lane.queue.retain(|x| *x != id);
        }
        self.legs.remove(&id)
    }

    /// Gives up on a leg: it stays as it is in the database (open or `exit_pending`, with what
    /// its orders filled) and the run's risk actor hears of it (its strategy goes ExitFailed).
    pub(super) fn fail(&mut self, account_id: i32, id: i32, message: String) {
        let Some(exit) = self.remove(account_id, id) else {
            return;
        };
        self.legs_failed += 1;
        tracing::error!(
            execution_id = id,
            strategy_id = exit.leg.strategy_id,
            account_id,
            symbol = %exit.leg.symbol,
            exchange = %exit.leg.exchange,
            filled = exit.machine.filled(),
            "EXIT FAILED, a human must check this position: {message}"
        );
        self.last_error = Some(message.clone());
        self.remember(&exit, "failed", Some(message.clone()));
        self.report(ExitReport::LegFailed {
            execution_id: id,
            strategy_id: exit.leg.strategy_id,
            run_id: exit.leg.run_id,
            message,
        });
        let key = exit.key();
        if let Some(entry) = self.holdings.get_mut(&key)
            && !self.legs.values().any(|e| e.key() == key)
        {
            entry.idle_since.get_or_insert_with(Instant::now);
        }
    }
}
