//! The order gateway's side of pushed order updates (docs/order-updates.md): an update of an
//! order of an exit in progress is that exit's report at once; a read of the books stays the
//! fallback, after `event_wait` when the account's updates flow, at once when they do not or
//! after they stopped for a while.

use std::time::Instant;

use actix::prelude::*;

use super::OrderGatewayActor;
use crate::domain::exit_machine::Event;
use crate::order_events::{OrderStreamChanged, RouteOrderUpdate};
use crate::orders::broker::known_report;

impl OrderGatewayActor {
    /// Reads the books for every exit order of the account now.
    fn read_account_now(&mut self, account_id: i32, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for exit in self
            .legs
            .values_mut()
            .filter(|e| e.leg.account_id == account_id)
        {
            exit.machine.read_now(now);
        }
        self.pump(account_id, ctx);
    }
}

impl Handler<RouteOrderUpdate> for OrderGatewayActor {
    type Result = bool;

    fn handle(&mut self, msg: RouteOrderUpdate, ctx: &mut Context<Self>) -> bool {
        let account_id = msg.account_id;
        let found = self.legs.iter().find_map(|(id, e)| {
            (e.leg.account_id == account_id)
                .then(|| e.machine.order_with_id(&msg.update.orderid))
                .flatten()
                .map(|at| (*id, at))
        });
        let Some((id, order)) = found else {
            // Not an order of an exit in progress. An exit of this account whose order is in
            // doubt searches the order book now: this may be it.
            if self
                .legs
                .values()
                .any(|e| e.leg.account_id == account_id && e.machine.has_in_doubt())
            {
                self.read_account_now(account_id, ctx);
            }
            return false;
        };
        let Some(exit) = self.legs.get_mut(&id) else {
            return false;
        };
        let quantity = exit.machine.order(order).map_or(0, |o| o.quantity);
        let u = &msg.update;
        match known_report(
            &u.order_status,
            u.filled_quantity,
            u.quantity,
            quantity,
            u.average_price,
            u.rejection_reason.as_deref(),
        ) {
            Ok(Some(report)) => {
                let terminal = report.state.is_terminal();
                let changed = exit.machine.handle(
                    Event::Report { order, report },
                    Instant::now(),
                    &self.config,
                );
                if changed.is_some() {
                    self.event_reports += 1;
                    if terminal {
                        exit.by_event = true;
                    }
                    if let Some(lane) = self.lanes.get_mut(&account_id) {
                        lane.dirty.push((id, order));
                    }
                }
                self.sync_holding(id);
                self.pump(account_id, ctx);
            }
            // Ended without saying how much filled, or in words the gateway does not know:
            // the books say.
            Ok(None) | Err(_) => self.read_account_now(account_id, ctx),
        }
        true
    }
}

impl Handler<OrderStreamChanged> for OrderGatewayActor {
    type Result = ();

    fn handle(&mut self, msg: OrderStreamChanged, ctx: &mut Context<Self>) {
        if msg.live {
            self.order_streams.insert(msg.account_id);
            // Updates missed while the socket was down are recovered from the books.
            self.read_account_now(msg.account_id, ctx);
        } else {
            self.order_streams.remove(&msg.account_id);
        }
    }
}
