//! The order gateway's side of pushed order updates (docs/order-updates.md): an update of an
//! order of an exit in progress is that exit's report at once; a read of the books stays the
//! fallback, after `event_wait` when the account's updates flow, at once when they do not or
//! after they stopped for a while.

use std::time::Instant;

use actix::prelude::*;

use super::OrderGatewayActor;
use crate::domain::exit_machine::Event;
use crate::openalgo::feed::OrderUpdate;
use crate::order_events::{OrderStreamChanged, RouteOrderUpdate, Routed};

/// How long an update of an order not known yet is kept for a placement answer to come.
const HOLD: std::time::Duration = std::time::Duration::from_secs(5);
/// Updates kept per account at most.
const HELD_MAX: usize = 200;
use crate::orders::broker::known_report;

impl OrderGatewayActor {
    /// Applies an order update to the order `order` of leg `id`; false when it says too little
    /// (the books are read instead).
    fn apply_update(&mut self, id: i32, order: usize, u: &OrderUpdate) -> bool {
        let Some(exit) = self.legs.get_mut(&id) else {
            return false;
        };
        let account_id = exit.leg.account_id;
        let quantity = exit.machine.order(order).map_or(0, |o| o.quantity);
        let Ok(Some(report)) = known_report(
            &u.order_status,
            u.filled_quantity,
            u.quantity,
            quantity,
            u.average_price,
            u.rejection_reason.as_deref(),
        ) else {
            return false;
        };
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
        true
    }

    /// The order `order` of leg `id` got its id: updates of it that came before the answer are
    /// applied now.
    pub(super) fn apply_held(&mut self, account_id: i32, id: i32, order: usize) {
        let Some(order_id) = self
            .legs
            .get(&id)
            .and_then(|e| e.machine.order(order)?.order_id.clone())
        else {
            return;
        };
        let Some(held) = self.held_updates.get_mut(&account_id) else {
            return;
        };
        let mine: Vec<OrderUpdate> = held
            .iter()
            .filter(|(_, u)| u.orderid == order_id)
            .map(|(_, u)| u.clone())
            .collect();
        held.retain(|(_, u)| u.orderid != order_id);
        for update in mine {
            self.apply_update(id, order, &update);
        }
    }

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
    type Result = Routed;

    fn handle(&mut self, msg: RouteOrderUpdate, ctx: &mut Context<Self>) -> Routed {
        let account_id = msg.account_id;
        let found = self.legs.iter().find_map(|(id, e)| {
            (e.leg.account_id == account_id)
                .then(|| e.machine.order_with_id(&msg.update.orderid))
                .flatten()
                .map(|at| (*id, at))
        });
        if let Some((id, order)) = found {
            if self.apply_update(id, order, &msg.update) {
                self.pump(account_id, ctx);
            } else {
                // Ended without saying how much filled, or in words the gateway does not know:
                // the books say.
                self.read_account_now(account_id, ctx);
            }
            return Routed::Matched;
        }
        let (in_doubt, awaiting) = self
            .legs
            .values()
            .filter(|e| e.leg.account_id == account_id)
            .fold((false, false), |(d, a), e| {
                (
                    d || e.machine.has_in_doubt(),
                    a || e.machine.awaits_placement(),
                )
            });
        // An exit of this account whose order is in doubt searches the order book now: this
        // may be it.
        if in_doubt {
            self.read_account_now(account_id, ctx);
        }
        // Pushed before the placement answer came: kept until it does.
        if awaiting {
            let now = Instant::now();
            let held = self.held_updates.entry(account_id).or_default();
            held.retain(|(at, _)| now.duration_since(*at) < HOLD);
            if held.len() == HELD_MAX {
                held.pop_front();
            }
            held.push_back((now, msg.update));
            return Routed::Held;
        }
        Routed::NotOurs
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
