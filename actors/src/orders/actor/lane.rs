//! The lane of an account: one REST operation at a time, orders within the rate limit, running
//! what each leg's exit machine asks (write the write-ahead row, place, read, search, cancel)
//! and feeding back what the broker answered.

use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;

use super::{LegExit, OrderGatewayActor};
use crate::domain::exit_machine::{Action, Event, Permit, PlaceFailure};
use crate::orders::broker;
use crate::orders::store::{self, Recording};

impl OrderGatewayActor {
    pub(super) fn wake_at(&mut self, account_id: i32, at: Instant, ctx: &mut Context<Self>) {
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return;
        };
        if let Some((when, handle)) = lane.wake {
            if when <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(delay, move |act, ctx| {
            if let Some(lane) = act.lanes.get_mut(&account_id) {
                lane.wake = None;
            }
            act.pump(account_id, ctx);
        });
        lane.wake = Some((at, handle));
    }

    pub(super) fn free(&mut self, account_id: i32, ctx: &mut Context<Self>) {
        if let Some(lane) = self.lanes.get_mut(&account_id) {
            lane.busy = false;
        }
        self.pump(account_id, ctx);
    }

    /// Records the orders changed by order updates, one lane operation for all of them.
    fn save_dirty(&mut self, account_id: i32, ctx: &mut Context<Self>) -> bool {
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return false;
        };
        if lane.dirty.is_empty() {
            return false;
        }
        let dirty = std::mem::take(&mut lane.dirty);
        let mut rows: Vec<store::OrderRow> = dirty
            .iter()
            .filter_map(|(id, at)| self.legs.get(id)?.machine.order(*at))
            .filter_map(store::row_of)
            .collect();
        rows.dedup_by_key(|r| r.request_id);
        if let Some(lane) = self.lanes.get_mut(&account_id) {
            lane.busy = true;
        }
        let db = self.db.clone();
        ctx.spawn(
            async move {
                for row in rows {
                    store::save_order(&db, row).await?;
                }
                Ok::<(), sea_orm::DbErr>(())
            }
            .into_actor(self)
            .map(move |saved, act, ctx| {
                if let Err(e) = saved {
                    tracing::error!(error = %e, "could not record an exit order's state from an order update; a restart reads it from the broker again");
                    act.last_error = Some(format!("recording an exit order's state: {e}"));
                }
                act.free(account_id, ctx);
            }),
        );
        true
    }

    /// Runs the next operation of an account's lane unless one is in flight: new orders of
    /// any leg first (a breach's exposure is what matters), then reads of orders out.
    pub(super) fn pump(&mut self, account_id: i32, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let queue = match self.lanes.get(&account_id) {
            Some(lane) if !lane.busy => lane.queue.clone(),
            _ => return,
        };
        if self.save_dirty(account_id, ctx) {
            return;
        }
        let mut earliest: Option<Instant> = None;
        for sends in [true, false] {
            for &id in &queue {
                let Some(exit) = self.legs.get(&id) else {
                    continue;
                };
                let wants = exit.machine.wants_to_send(now, &self.config);
                if sends != (wants || exit.machine.has_unplaced()) {
                    continue;
                }
                let permit = if wants {
                    self.permit(account_id, id, now, ctx)
                } else {
                    Permit::Hold
                };
                let Some(exit) = self.legs.get_mut(&id) else {
                    continue;
                };
                let action = exit.machine.next_action(now, &self.config, permit);
                self.sync_holding(id);
                match action {
                    Action::Wait { until } => {
                        if let Some(at) = until {
                            earliest = Some(earliest.map_or(at, |e| e.min(at)));
                        }
                    }
                    action => {
                        self.run(account_id, id, action, ctx);
                        return;
                    }
                }
            }
        }
        if let Some(at) = earliest {
            self.wake_at(account_id, at, ctx);
        }
    }

    fn run(&mut self, account_id: i32, id: i32, action: Action, ctx: &mut Context<Self>) {
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return;
        };
        lane.busy = true;
        let client = lane.client.clone();
        let Some(exit) = self.legs.get_mut(&id) else {
            self.free(account_id, ctx);
            return;
        };
        if !matches!(action, Action::Finished(_)) {
            exit.waiting = None;
        }
        let strategy = exit.leg.strategy_name.clone();
        let order_of = |exit: &LegExit, at: usize| {
            exit.machine
                .order(at)
                .map(|o| (o.order_id.clone().unwrap_or_default(), o.quantity))
        };
        match action {
            // The order's rate slot is taken before its write-ahead row is written, so that
            // the row's time is when the order leaves (the settle window counts from it).
            Action::Send { quantity } => self.when_rate_allows(account_id, ctx, move |act, ctx| {
                act.record(account_id, id, quantity, ctx)
            }),
            Action::Place { order } => self.place(account_id, id, order, ctx),
            Action::Query { order } => {
                let Some((order_id, quantity)) = order_of(exit, order) else {
                    return self.free(account_id, ctx);
                };
                let job = broker::query(client, order, order_id, strategy, quantity);
                self.spawn_event(account_id, id, job, ctx);
            }
            Action::Search { order } => {
                let Some((_, quantity)) = order_of(exit, order) else {
                    return self.free(account_id, ctx);
                };
                let recorded = exit.recorded_wall.get(order).copied().unwrap_or(exit.since);
                let job = broker::search(
                    self.db.clone(),
                    client,
                    exit.leg.clone(),
                    order,
                    quantity,
                    recorded,
                );
                self.spawn_event(account_id, id, job, ctx);
            }
            Action::Cancel { order } => {
                let Some((order_id, _)) = order_of(exit, order) else {
                    return self.free(account_id, ctx);
                };
                tracing::warn!(execution_id = id, order_id = %order_id, "exit order working too long; cancelling it");
                self.when_rate_allows(account_id, ctx, move |act, ctx| {
                    let job = broker::cancel(client, order, order_id, strategy);
                    act.spawn_event(account_id, id, job, ctx);
                });
            }
            Action::Finished(outcome) => self.finish(account_id, id, outcome, ctx),
            Action::Wait { .. } => self.free(account_id, ctx),
        }
    }

    /// Runs `then` once the account's order rate allows one more order (the lane stays busy).
    fn when_rate_allows(
        &mut self,
        account_id: i32,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return;
        };
        match lane.limiter.try_acquire(Instant::now()) {
            Ok(()) => then(self, ctx),
            Err(wait) => {
                ctx.run_later(wait, move |act, ctx| {
                    act.when_rate_allows(account_id, ctx, then)
                });
            }
        }
    }

    fn spawn_event(
        &mut self,
        account_id: i32,
        id: i32,
        job: impl Future<Output = Event> + 'static,
        ctx: &mut Context<Self>,
    ) {
        ctx.spawn(
            job.into_actor(self)
                .map(move |event, act, ctx| act.on_event(account_id, id, event, ctx)),
        );
    }

    /// Writes the write-ahead row of a new order, then places it.
    fn record(&mut self, account_id: i32, id: i32, quantity: i64, ctx: &mut Context<Self>) {
        let Some(exit) = self.legs.get_mut(&id) else {
            return self.free(account_id, ctx);
        };
        let order = exit.machine.begin_order(quantity, Instant::now());
        exit.recorded_wall.resize(order, exit.since);
        exit.recorded_wall.push(Utc::now());
        exit.request_no = exit.request_no.saturating_add(1);
        let first = exit.pending_since.is_none();
        let since = *exit.pending_since.get_or_insert_with(Utc::now);
        let job = Recording {
            leg_id: id,
            reason: exit.reason,
            attempt: exit.request_no,
            quantity,
            pending_since: first.then_some(since),
        };
        let db = self.db.clone();
        let started = Instant::now();
        ctx.spawn(
            async move { store::record_request(&db, &job).await }
                .into_actor(self)
                .map(move |recorded, act, ctx| {
                    act.write_ahead.record(started.elapsed());
                    act.on_recorded(account_id, id, order, recorded, ctx)
                }),
        );
    }

    fn on_recorded(
        &mut self,
        account_id: i32,
        id: i32,
        order: usize,
        recorded: Result<Option<i32>, String>,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        let Some(exit) = self.legs.get_mut(&id) else {
            return self.free(account_id, ctx);
        };
        match recorded {
            Ok(Some(request)) => {
                exit.machine
                    .handle(Event::Recorded { order, request }, now, &self.config);
                if let Some(wall) = exit.recorded_wall.get_mut(order) {
                    *wall = Utc::now();
                }
                // Straight on to the broker: nothing else may come between a breach and its
                // order.
                match exit.machine.next_action(now, &self.config, Permit::Hold) {
                    Action::Place { order } => self.place(account_id, id, order, ctx),
                    _ => self.free(account_id, ctx),
                }
            }
            Ok(None) => {
                tracing::warn!(
                    execution_id = id,
                    "the leg was closed elsewhere before its exit order; nothing was sent"
                );
                self.remove(account_id, id);
                self.free(account_id, ctx);
            }
            Err(error) => {
                let error = format!("recording the exit request of leg {id}: {error}");
                tracing::error!(execution_id = id, error = %error, "nothing was sent");
                exit.machine.handle(
                    Event::RecordFailed {
                        order,
                        error: error.clone(),
                    },
                    now,
                    &self.config,
                );
                self.last_error = Some(error);
                self.free(account_id, ctx);
            }
        }
    }

    /// Places a recorded order (its rate slot was taken before its row was written).
    fn place(&mut self, account_id: i32, id: i32, order: usize, ctx: &mut Context<Self>) {
        let Some(lane) = self.lanes.get(&account_id) else {
            return;
        };
        let client = lane.client.clone();
        let Some((leg, quantity)) = self
            .legs
            .get(&id)
            .and_then(|e| e.machine.order(order).map(|o| (e.leg.clone(), o.quantity)))
        else {
            return self.free(account_id, ctx);
        };
        let job = async move {
            match broker::place(client, leg, quantity).await {
                Ok(order_id) => Event::Placed { order, order_id },
                Err(failure) => Event::PlaceFailed { order, failure },
            }
        };
        self.spawn_event(account_id, id, job, ctx);
    }

    /// Feeds what the broker answered to the leg's machine, records the order's new state, and
    /// frees the lane.
    fn on_event(&mut self, account_id: i32, id: i32, event: Event, ctx: &mut Context<Self>) {
        self.count(id, &event);
        let now = Instant::now();
        let Some(exit) = self.legs.get_mut(&id) else {
            return self.free(account_id, ctx);
        };
        let placed = match &event {
            Event::Placed { order, .. } => Some(*order),
            _ => None,
        };
        let changed = exit.machine.handle(event, now, &self.config);
        if let Some(order) = placed
            && self.order_streams.contains(&account_id)
        {
            // Its update is pushed: a read only if none comes.
            exit.machine
                .defer_read(order, now + self.settings.event_wait);
        }
        if changed.is_some() && placed.is_none() {
            exit.by_event = false;
        }
        let row = changed
            .and_then(|at| exit.machine.order(at))
            .and_then(store::row_of);
        self.sync_holding(id);
        if let Some(order) = placed {
            // Updates of it pushed before the answer came.
            self.apply_held(account_id, id, order);
        }
        let Some(row) = row else {
            return self.free(account_id, ctx);
        };
        let db = self.db.clone();
        ctx.spawn(
            async move { store::save_order(&db, row).await }
                .into_actor(self)
                .map(move |saved, act, ctx| {
                    if let Err(e) = saved {
                        tracing::error!(execution_id = id, error = %e, "could not record an exit order's state; a restart reads it from the broker again");
                        act.last_error = Some(format!("recording an exit order's state: {e}"));
                    }
                    act.free(account_id, ctx);
                }),
        );
    }

    /// Counts and logs what the broker answered.
    fn count(&mut self, id: i32, event: &Event) {
        match event {
            Event::Placed { order_id, .. } => {
                self.orders_sent += 1;
                tracing::info!(execution_id = id, order_id = %order_id, "exit order placed");
            }
            Event::PlaceFailed { failure, .. } => match failure {
                PlaceFailure::Uncertain(message) => {
                    self.orders_failed += 1;
                    self.orders_in_doubt += 1;
                    tracing::warn!(execution_id = id, error = %message, "exit order in doubt: its answer was lost; the order book decides, nothing is sent meanwhile");
                    self.last_error = Some(message.clone());
                }
                PlaceFailure::Refused(message) => {
                    self.orders_failed += 1;
                    tracing::warn!(execution_id = id, error = %message, "exit order refused");
                    self.last_error = Some(message.clone());
                }
                PlaceFailure::RateLimited { message, .. } => {
                    self.rate_limited += 1;
                    tracing::warn!(execution_id = id, error = %message, "exit order rate-limited; sent again after the broker's wait");
                }
            },
            Event::ReadFailed {
                failure: crate::domain::exit_machine::ReadFailure::RateLimited { .. },
                ..
            } => self.rate_limited += 1,
            Event::Found { order_id, .. } => {
                tracing::info!(execution_id = id, order_id = %order_id, "the exit order in doubt is at the broker");
            }
            Event::Report { report, .. } if report.state.is_terminal() => {
                tracing::info!(execution_id = id, state = ?report.state, filled = report.filled, "exit order ended");
            }
            _ => {}
        }
    }
}
