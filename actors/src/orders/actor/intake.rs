//! Taking legs in: a request's (or a recovery's) legs become exits, each account's new legs
//! ordered shorts first, and their lanes start.

use std::collections::HashMap;
use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;
use entity::strategy_executions::ExitReason;

use super::{LegExit, OrderGatewayActor, Session};
use crate::domain::exit_machine::{ExitMachine, Phase};
use crate::domain::exits::{ExitLeg, max_chunk, plan_exits};
use crate::orders::store::{self, Leg, LoadedLeg};
use crate::orders::{ExitReport, ExitTicket, QueuedLeg};

impl OrderGatewayActor {
    /// Takes legs in: skips those already being exited, orders each account's new legs shorts
    /// first, and starts the lanes.
    pub(super) fn accept(
        &mut self,
        loaded: Vec<LoadedLeg>,
        reason: Option<ExitReason>,
        session: Session,
        ctx: &mut Context<Self>,
    ) -> ExitTicket {
        self.next_seq += 1;
        let seq = self.next_seq;
        let now = Instant::now();
        let mut ticket = ExitTicket::default();
        let mut by_account: HashMap<i32, Vec<LegExit>> = HashMap::new();
        for LoadedLeg { leg, requests } in loaded {
            if self.legs.contains_key(&leg.id) {
                if session == Session::Fresh {
                    self.duplicates_refused += 1;
                    ticket.already_exiting.push(leg.id);
                }
                continue;
            }
            // Before the first SetAccounts the legs wait for their endpoints (start-up).
            if self.accounts_set && !self.lanes.contains_key(&leg.account_id) {
                self.unroutable(&leg);
                ticket.failed.push(leg.id);
                continue;
            }
            let wall = Utc::now();
            let persisted: Vec<_> = requests.iter().map(|r| store::persisted(r, wall)).collect();
            let chunk = max_chunk(leg.freeze_qty, leg.lot_size);
            let machine = ExitMachine::resume(leg.quantity, chunk, persisted.clone(), now);
            let machine_filled = machine.filled();
            let exit = LegExit {
                reason: reason.or(leg.exit_reason).unwrap_or(ExitReason::Manual),
                seq,
                machine,
                applied: None,
                recorded_wall: requests.iter().map(|r| r.created_at).collect(),
                request_no: requests.iter().map(|r| r.attempt).max().unwrap_or(0),
                pending_since: leg.exit_pending_since,
                since: wall,
                requested_at: now,
                waiting: None,
                seen_filled: machine_filled,
                by_event: false,
                leg,
            };
            // Orders of the leg written by an earlier run or attempt may not show in the
            // broker's books yet: a holding of the instrument waits for a read sent a settle
            // window after the newest of them.
            if let Some(newest) = persisted.iter().map(|p| p.age).min() {
                let at = now + self.config.settle.saturating_sub(newest);
                let entry = self.trusted_after.entry(exit.key()).or_insert(at);
                *entry = (*entry).max(at);
            }
            by_account
                .entry(exit.leg.account_id)
                .or_default()
                .push(exit);
        }
        for (account_id, exits) in by_account {
            let plan: Vec<ExitLeg<i32>> = exits
                .iter()
                .map(|e| ExitLeg {
                    id: e.leg.id,
                    side: e.leg.side,
                    qty: e.machine.unsent(),
                    freeze_qty: e.leg.freeze_qty,
                    lot_size: e.leg.lot_size,
                })
                .collect();
            let planned = plan_exits(&plan);
            // Legs with orders already out come first (in doubt before all), then shorts.
            let mut order: Vec<i32> = exits
                .iter()
                .filter(|e| e.machine.unsent() == 0 || !e.machine.orders().is_empty())
                .map(|e| e.leg.id)
                .collect();
            for o in &planned {
                if !order.contains(&o.leg_id) {
                    order.push(o.leg_id);
                }
            }
            let mut exits: HashMap<i32, LegExit> =
                exits.into_iter().map(|e| (e.leg.id, e)).collect();
            order.sort_by_key(|id| {
                !exits
                    .get(id)
                    .is_some_and(|e| e.machine.orders().iter().any(|o| o.phase == Phase::InDoubt))
            });
            let has_lane = self.lanes.contains_key(&account_id);
            for id in order {
                let Some(exit) = exits.remove(&id) else {
                    continue;
                };
                ticket.queued.push(QueuedLeg {
                    execution_id: id,
                    strategy_id: exit.leg.strategy_id,
                    account_id,
                    exchange: exit.leg.exchange.clone(),
                    symbol: exit.leg.symbol.clone(),
                    action: exit.leg.side.opposite(),
                    quantity: exit.machine.unsent(),
                    orders: planned.iter().filter(|o| o.leg_id == id).count(),
                });
                if session == Session::Recovery {
                    self.legs_recovered += 1;
                }
                tracing::info!(
                    execution_id = id,
                    strategy_id = exit.leg.strategy_id,
                    account_id,
                    symbol = %exit.leg.symbol,
                    unsent = exit.machine.unsent(),
                    orders_out = exit.machine.orders().len(),
                    reason = %exit.reason,
                    "exit queued"
                );
                match self.lanes.get_mut(&account_id) {
                    Some(lane) => lane.queue.push(id),
                    None => self.parked.push(id),
                }
                self.legs.insert(id, exit);
            }
            if has_lane {
                self.pump(account_id, ctx);
            }
        }
        ticket
    }

    /// Reports a leg whose account has no endpoint: it cannot be exited.
    pub(super) fn unroutable(&mut self, leg: &Leg) {
        let message = format!(
            "no gateway endpoint is configured for account {}; the leg cannot be exited",
            leg.account_id
        );
        tracing::error!(
            execution_id = leg.id,
            strategy_id = leg.strategy_id,
            "{message}"
        );
        self.legs_failed += 1;
        self.last_error = Some(message.clone());
        self.report(ExitReport::LegFailed {
            execution_id: leg.id,
            strategy_id: leg.strategy_id,
            run_id: leg.run_id,
            message,
        });
    }
}
