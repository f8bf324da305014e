//! The gateway's status: its lanes, the exits in flight with their orders, the latest exits
//! that ended and the counters.

use std::time::Instant;

use super::OrderGatewayActor;
use crate::domain::exit_machine::{End, ExitOrder, Phase};
use crate::orders::{ActiveExitView, ExitOrderView, GatewayStatus, LaneView};
use crate::status::Lifecycle;

impl OrderGatewayActor {
    pub(super) fn status(&self) -> GatewayStatus {
        let now = Instant::now();
        let mut accounts: Vec<LaneView> = self
            .lanes
            .values()
            .map(|l| LaneView {
                account_id: l.endpoint.id,
                account: l.endpoint.name.clone(),
                api_key: l.endpoint.api_key.hint(),
                queued: l.queue.len(),
                busy: l.busy,
                positions_age_ms: l.positions.as_ref().map(|s| {
                    u64::try_from(now.saturating_duration_since(s.started).as_millis())
                        .unwrap_or(u64::MAX)
                }),
                positions_error: l.read_error.clone(),
            })
            .collect();
        accounts.sort_by_key(|a| a.account_id);
        let mut exits: Vec<ActiveExitView> = self
            .legs
            .values()
            .map(|e| ActiveExitView {
                execution_id: e.leg.id,
                strategy_id: e.leg.strategy_id,
                account_id: e.leg.account_id,
                exchange: e.leg.exchange.clone(),
                symbol: e.leg.symbol.clone(),
                action: e.leg.side.opposite(),
                quantity: e.leg.quantity,
                filled: e.machine.filled(),
                unheld: e.machine.unheld(),
                state: e.machine.state(now, &self.config).as_str(),
                attempt: e.machine.failures(),
                reason: e.reason,
                last_error: e.machine.last_error().map(str::to_string),
                waiting_for: e.waiting.map(str::to_string),
                orders: e.machine.orders().iter().map(order_view).collect(),
                since: e.since,
            })
            .collect();
        exits.sort_by_key(|e| e.execution_id);
        let state = if self.restarts.faulted() {
            Lifecycle::Faulted
        } else if !self.accounts_set {
            Lifecycle::Starting
        } else {
            Lifecycle::Running
        };
        GatewayStatus {
            state,
            restarts: self.restarts.restarts(),
            accounts,
            exits,
            recent: self.recent.iter().cloned().collect(),
            orders_sent: self.orders_sent,
            orders_failed: self.orders_failed,
            orders_in_doubt: self.orders_in_doubt,
            rate_limited: self.rate_limited,
            legs_exited: self.legs_exited,
            legs_failed: self.legs_failed,
            legs_recovered: self.legs_recovered,
            mismatches: self.mismatches,
            duplicates_refused: self.duplicates_refused,
            order_updates_applied: self.event_reports,
            exits_confirmed_by_event: self.exits_confirmed_by_event,
            exits_confirmed_by_read: self.exits_confirmed_by_read,
            order_update_accounts: {
                let mut ids: Vec<i32> = self.order_streams.iter().copied().collect();
                ids.sort_unstable();
                ids
            },
            reports_waiting: self.kept.len(),
            last_error: self.last_error.clone(),
            write_ahead_latency: self.write_ahead.snapshot(),
            fill_confirm_latency: self.fill_confirm.snapshot(),
        }
    }
}

fn order_view(o: &ExitOrder) -> ExitOrderView {
    ExitOrderView {
        request_id: o.request,
        order_id: o.order_id.clone(),
        quantity: o.quantity,
        filled: o.filled,
        state: match &o.phase {
            Phase::Recording => "recording",
            Phase::Placing { .. } => "placing",
            Phase::InDoubt => "in_doubt",
            Phase::Working => "working",
            Phase::Done(End::Complete) => "complete",
            Phase::Done(End::Rejected(_)) => "rejected",
            Phase::Done(End::Cancelled) => "cancelled",
            Phase::Done(End::NotThere) => "not_found",
            Phase::Done(End::Refused(_)) => "refused",
            Phase::Done(End::NotPlaced(_)) => "not_placed",
        },
    }
}
