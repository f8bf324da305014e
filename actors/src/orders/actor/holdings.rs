//! What the broker holds: the position book reads of each account, and per instrument the
//! holding an exit order is bounded by (docs/exits.md, "Never past zero").

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};

use super::{HoldingEntry, InstrumentKey, OrderGatewayActor, Snapshot};
use crate::domain::exit_machine::Permit;
use crate::domain::exits::retry_delay;
use crate::domain::holdings::{Allowance, Holding, InFlight, Tracked};
use crate::domain::pnl::Side;
use crate::openalgo::rest::RestError;
use crate::orders::{broker, store};

impl OrderGatewayActor {
    /// How many units the leg may send now, from the instrument's holding (read, counted or
    /// confirmed first when needed).
    pub(super) fn permit(
        &mut self,
        account_id: i32,
        id: i32,
        now: Instant,
        ctx: &mut Context<Self>,
    ) -> Permit {
        let Some(exit) = self.legs.get(&id) else {
            return Permit::Hold;
        };
        let (side, seq) = (exit.leg.side, exit.seq);
        // Short legs of a request are closed before its long legs.
        let short_first = side == Side::Buy
            && self.lanes.get(&account_id).is_some_and(|lane| {
                lane.queue.iter().any(|other| {
                    *other != id
                        && self
                            .legs
                            .get(other)
                            .is_some_and(|o| o.seq == seq && o.leg.side == Side::Sell)
                })
            });
        if short_first {
            return self.hold(id, "the request's short legs are closed first");
        }
        let key = exit.key();
        let entered_at = exit.leg.entered_at;
        if !self.holdings.contains_key(&key) {
            // Orders out on the instrument (resumed after a restart) may or may not show in a
            // read: they end first, and their fills settle (`sync_holding`).
            let in_flight = self.in_flight(&key);
            if in_flight.long > 0 || in_flight.short > 0 {
                return self.hold(id, "the instrument's orders out end first");
            }
            if let Some(at) = self.trusted_after.get(&key).filter(|at| **at > now) {
                let at = *at;
                self.wake_at(account_id, at, ctx);
                return self.hold(id, "waiting for the broker's books to settle");
            }
            let trusted_after = self.trusted_after.get(&key).copied();
            // The read must also have been sent after every leg being exited on the
            // instrument was registered: an older one cannot show its entry.
            let newest = self.newest_entry(&key);
            let Some((net, wall, started)) = self.fresh_read(account_id, &key, now, |s| {
                trusted_after.is_none_or(|t| s.started >= t) && newest.is_none_or(|at| s.wall >= at)
            }) else {
                self.read_positions(account_id, ctx);
                return self.hold(id, "reading the broker's position book");
            };
            tracing::debug!(execution_id = id, ?key, net, "holding from a read");
            self.holdings.insert(
                key.clone(),
                HoldingEntry {
                    holding: Holding::from_read(net),
                    read_wall: wall,
                    read_started: started,
                    counting: false,
                    idle_since: None,
                    last_fill: None,
                },
            );
            self.join_all(&key);
        }
        let joined = self.legs.get(&id).is_some_and(|e| e.applied.is_some());
        if !joined {
            let read_wall = self.holdings.get(&key).map_or(entered_at, |e| e.read_wall);
            if entered_at <= read_wall {
                self.join(id);
            } else {
                // Registered after the holding's read: its entry is not in it.
                self.confirm(account_id, &key, now, ctx);
                if self.legs.get(&id).is_none_or(|e| e.applied.is_none()) {
                    return self.hold(id, "reading the broker's position book again");
                }
            }
        }
        let in_flight = self.in_flight(&key);
        let Some(exit) = self.legs.get(&id) else {
            return Permit::Hold;
        };
        let wanted = exit.machine.next_quantity();
        let confirmed = self.confirmed(&key);
        let Some(entry) = self.holdings.get_mut(&key) else {
            return Permit::Hold;
        };
        entry.idle_since = None;
        match entry.holding.allowance(side, wanted, in_flight) {
            Allowance::Units { units, settled } if units < wanted && settled && !confirmed => {
                // Less than the legs need, from a read that may not show their entries yet:
                // what it allows goes out, and the rest is decided by a read sent a settle
                // window after them.
                self.confirm(account_id, &key, now, ctx);
                self.hold(id, "confirming with the broker's books what it holds");
                Permit::Units {
                    units,
                    settled: false,
                }
            }
            Allowance::Units { units, settled } => Permit::Units { units, settled },
            Allowance::NeedTracked => {
                self.count_tracked(account_id, key, ctx);
                self.hold(id, "counting the tracked legs of the instrument")
            }
        }
    }

    /// The latest position book read of the account, if it is younger than the maximum age
    /// and passes `ok`: the instrument's net position in it, when the read was sent.
    fn fresh_read(
        &self,
        account_id: i32,
        key: &InstrumentKey,
        now: Instant,
        ok: impl Fn(&Snapshot) -> bool,
    ) -> Option<(i64, DateTime<Utc>, Instant)> {
        let snapshot = self.lanes.get(&account_id)?.positions.as_ref()?;
        let young =
            now.saturating_duration_since(snapshot.started) <= self.settings.positions_max_age;
        (young && ok(snapshot)).then(|| {
            (
                broker::net_of(&snapshot.rows, &key.1, &key.2, key.3.as_str()),
                snapshot.wall,
                snapshot.started,
            )
        })
    }

    /// The broker's last traded price of the instrument in the account's latest position book
    /// read, if it has one.
    pub(super) fn mark(&self, key: &InstrumentKey) -> Option<f64> {
        let snapshot = self.lanes.get(&key.0)?.positions.as_ref()?;
        broker::ltp_of(&snapshot.rows, &key.1, &key.2, key.3.as_str())
    }

    /// When the newest leg being exited on the instrument was registered.
    fn newest_entry(&self, key: &InstrumentKey) -> Option<DateTime<Utc>> {
        self.legs
            .values()
            .filter(|e| e.key() == *key)
            .map(|e| e.leg.entered_at)
            .max()
    }

    /// The holding's read was sent a settle window after every leg being exited on the
    /// instrument was registered: what it does not show, the broker does not hold.
    fn confirmed(&self, key: &InstrumentKey) -> bool {
        let Some(entry) = self.holdings.get(key) else {
            return false;
        };
        let settle = chrono::Duration::from_std(self.config.settle).unwrap_or_default();
        self.newest_entry(key)
            .is_none_or(|at| entry.read_wall >= at + settle)
    }

    /// Brings the holding up to date with legs registered after its read, or confirms a
    /// shortfall: once nothing is in flight on the instrument, a read that shows exactly the
    /// holding plus the new legs adds them; otherwise the holding starts again from a read sent
    /// a settle window after both the newest entry and the last fill of an exit order.
    fn confirm(
        &mut self,
        account_id: i32,
        key: &InstrumentKey,
        now: Instant,
        ctx: &mut Context<Self>,
    ) {
        let in_flight = self.in_flight(key);
        if in_flight.long > 0 || in_flight.short > 0 {
            // The fills will pump the lane again.
            return;
        }
        let Some(entry) = self.holdings.get(key) else {
            return;
        };
        let (read_wall, last_fill, ledger) =
            (entry.read_wall, entry.last_fill, entry.holding.net());
        let newest = self.newest_entry(key);
        let joiners: Vec<(i32, Side, i64)> = self
            .legs
            .values()
            .filter(|e| e.key() == *key && e.applied.is_none() && e.leg.entered_at > read_wall)
            .map(|e| {
                let open = e.leg.quantity - e.machine.filled() - e.machine.unheld();
                (e.leg.id, e.leg.side, open.max(0))
            })
            .collect();
        let expected = ledger
            + joiners
                .iter()
                .map(|(_, side, open)| if *side == Side::Buy { *open } else { -*open })
                .sum::<i64>();
        // A read after the new legs that shows exactly the holding plus them: they are held.
        if !joiners.is_empty()
            && let Some((net, ..)) = self.fresh_read(account_id, key, now, |s| {
                newest.is_none_or(|at| s.wall >= at)
            })
            && net == expected
        {
            if let Some(entry) = self.holdings.get_mut(key) {
                for (_, side, open) in &joiners {
                    entry.holding.entered_since(*side, *open);
                }
            }
            for (id, ..) in joiners {
                self.join(id);
            }
            return;
        }
        let settle = self.config.settle;
        // A settle window after the newest entry (on the monotonic clock) and after the
        // last fill; both may be past.
        let since_entry = newest.and_then(|at| {
            let ago = (Utc::now() - at).to_std().unwrap_or_default();
            (ago < settle).then(|| now + (settle - ago))
        });
        let ready_at = [since_entry, last_fill.map(|t| t + settle)]
            .into_iter()
            .flatten()
            .max();
        let ready_at = match ready_at {
            Some(at) if at > now => {
                self.wake_at(account_id, at, ctx);
                return;
            }
            Some(at) => at,
            None => entry_read_started(self, key).unwrap_or(now),
        };
        let settle_chrono = chrono::Duration::from_std(settle).unwrap_or_default();
        let Some((net, wall, started)) = self.fresh_read(account_id, key, now, |s| {
            s.started >= ready_at && newest.is_none_or(|at| s.wall >= at + settle_chrono)
        }) else {
            self.read_positions(account_id, ctx);
            return;
        };
        tracing::info!(
            ?key,
            ledger,
            net,
            "the instrument's holding starts again from a settled read"
        );
        if let Some(entry) = self.holdings.get_mut(key) {
            entry.holding = Holding::from_read(net);
            entry.read_wall = wall;
            entry.read_started = started;
        }
        for exit in self.legs.values_mut().filter(|e| e.key() == *key) {
            exit.applied = None;
        }
        self.join_all(key);
    }

    fn hold(&mut self, id: i32, why: &'static str) -> Permit {
        if let Some(exit) = self.legs.get_mut(&id) {
            exit.waiting = Some(why);
        }
        Permit::Hold
    }

    /// Every leg being exited on the instrument counts in its holding from now on.
    fn join_all(&mut self, key: &InstrumentKey) {
        let ids: Vec<i32> = self
            .legs
            .values()
            .filter(|e| e.key() == *key)
            .map(|e| e.leg.id)
            .collect();
        for id in ids {
            self.join(id);
        }
    }

    /// Makes the leg count in its instrument's holding from now on: its fills move it.
    fn join(&mut self, id: i32) {
        if let Some(exit) = self.legs.get_mut(&id)
            && exit.applied.is_none()
        {
            exit.applied = Some((exit.machine.filled(), exit.machine.unheld()));
        }
    }

    /// Applies the leg's new fills and unheld units to its instrument's holding. Without one
    /// (orders resumed after a restart), a fill makes any read sent before a settle window
    /// after it untrusted.
    pub(super) fn sync_holding(&mut self, id: i32) {
        let Some(exit) = self.legs.get_mut(&id) else {
            return;
        };
        let Some(entry) = self.holdings.get_mut(&exit.key()) else {
            let filled = exit.machine.filled();
            if filled > exit.seen_filled {
                exit.seen_filled = filled;
                let at = Instant::now() + self.config.settle;
                let trusted = self.trusted_after.entry(exit.key()).or_insert(at);
                *trusted = (*trusted).max(at);
            }
            return;
        };
        let Some((filled, unheld)) = exit.applied else {
            return;
        };
        let (now_filled, now_unheld) = (exit.machine.filled(), exit.machine.unheld());
        if now_filled > filled {
            entry.last_fill = Some(Instant::now());
        }
        entry.holding.filled(exit.leg.side, now_filled - filled);
        entry.holding.unheld(exit.leg.side, now_unheld - unheld);
        exit.applied = Some((now_filled, now_unheld));
    }

    fn in_flight(&self, key: &InstrumentKey) -> InFlight {
        let mut in_flight = InFlight::default();
        for exit in self.legs.values().filter(|e| e.key() == *key) {
            match exit.leg.side {
                Side::Buy => in_flight.long += exit.machine.in_flight(),
                Side::Sell => in_flight.short += exit.machine.in_flight(),
            }
        }
        in_flight
    }

    /// A leg of the instrument ended: once none is left, its holding is kept a settle window
    /// longer (books may lag behind the last fills), then dropped.
    pub(super) fn release_holding(&mut self, key: &InstrumentKey, ctx: &mut Context<Self>) {
        if self.legs.values().any(|e| e.key() == *key) {
            return;
        }
        if let Some(entry) = self.holdings.get_mut(key) {
            entry.idle_since = Some(Instant::now());
            let settle = self.config.settle;
            ctx.run_later(settle, |act, _| act.expire_holdings());
        }
    }

    fn expire_holdings(&mut self) {
        let now = Instant::now();
        let settle = self.config.settle;
        let expired: Vec<InstrumentKey> = self
            .holdings
            .iter()
            .filter(|(_, e)| e.idle_since.is_some_and(|t| now >= t + settle))
            .map(|(k, _)| k.clone())
            .filter(|k| !self.legs.values().any(|e| e.key() == *k))
            .collect();
        for key in expired {
            self.holdings.remove(&key);
            self.trusted_after.insert(key, now);
        }
        self.trusted_after
            .retain(|_, at| now.saturating_duration_since(*at) < Duration::from_secs(3600));
    }

    /// Counts the tracked legs of an instrument: legs being exited from their machines, the
    /// others from the database.
    fn count_tracked(&mut self, account_id: i32, key: InstrumentKey, ctx: &mut Context<Self>) {
        let Some(entry) = self.holdings.get_mut(&key) else {
            return;
        };
        if entry.counting {
            return;
        }
        entry.counting = true;
        let db = self.db.clone();
        let (exchange, symbol, product) = (key.1.clone(), key.2.clone(), key.3);
        ctx.spawn(
            async move { store::open_legs_on(&db, account_id, &exchange, &symbol, product).await }
                .into_actor(self)
                .map(move |legs, act, ctx| {
                    let counted = legs.map(|legs| {
                        let mut tracked = Tracked::default();
                        for (leg_id, side, open) in legs {
                            let open = act.legs.get(&leg_id).map_or(open, |e| {
                                e.leg.quantity - e.machine.filled() - e.machine.unheld()
                            });
                            match side {
                                Side::Buy => tracked.long += open.max(0),
                                Side::Sell => tracked.short += open.max(0),
                            }
                        }
                        tracked
                    });
                    let Some(entry) = act.holdings.get_mut(&key) else {
                        return;
                    };
                    entry.counting = false;
                    match counted {
                        Ok(tracked) => entry.holding.set_tracked(tracked),
                        Err(e) => {
                            tracing::error!(error = %e, "counting the tracked legs of an instrument failed; trying again");
                            act.last_error = Some(format!("counting the tracked legs: {e}"));
                            let wait = act.config.retry_initial;
                            ctx.run_later(wait, move |act, ctx| act.pump(account_id, ctx));
                            return;
                        }
                    }
                    act.pump(account_id, ctx);
                }),
        );
    }

    /// Reads the account's position book unless a read is in flight or the last one failed
    /// less than its backoff ago (a retry is then scheduled); legs waiting for it are pumped
    /// when it answers.
    pub(super) fn read_positions(&mut self, account_id: i32, ctx: &mut Context<Self>) {
        let Some(lane) = self.lanes.get_mut(&account_id) else {
            return;
        };
        let now = Instant::now();
        if lane.reading || lane.read_retry_at.is_some_and(|at| at > now) {
            return;
        }
        lane.reading = true;
        lane.read_retry_at = None;
        let client = lane.client.clone();
        let (started, wall) = (now, Utc::now());
        ctx.spawn(
            async move { client.position_book().await }
                .into_actor(self)
                .map(move |read, act, ctx| {
                    let config = act.config.clone();
                    let Some(lane) = act.lanes.get_mut(&account_id) else {
                        return;
                    };
                    lane.reading = false;
                    match read {
                        Ok(rows) => {
                            lane.positions = Some(Snapshot {
                                started,
                                wall,
                                rows,
                            });
                            lane.read_failures = 0;
                            lane.read_error = None;
                        }
                        Err(e) => {
                            lane.read_failures = lane.read_failures.saturating_add(1);
                            let wait = match &e {
                                RestError::RateLimited {
                                    retry_after: Some(wait),
                                    ..
                                } => (*wait).clamp(config.retry_initial, config.retry_max),
                                _ => retry_delay(
                                    config.poll_initial,
                                    lane.read_failures,
                                    config.poll_max,
                                ),
                            };
                            tracing::warn!(account_id, error = %e, retry_in_ms = wait.as_millis() as u64, "reading the position book failed");
                            lane.read_error = Some(e.to_string());
                            lane.read_retry_at = Some(Instant::now() + wait);
                            if !lane.queue.is_empty() {
                                ctx.run_later(wait, move |act, ctx| {
                                    act.read_positions(account_id, ctx)
                                });
                            }
                        }
                    }
                    act.pump(account_id, ctx);
                }),
        );
    }

    /// Keeps the position books of accounts with open legs fresh, drops settled holdings, and
    /// wakes every lane.
    pub(super) fn refresh(&mut self, ctx: &mut Context<Self>) {
        self.expire_holdings();
        let now = Instant::now();
        let half = self.settings.positions_max_age / 2;
        let due: Vec<i32> = self
            .lanes
            .iter()
            .filter(|(id, lane)| {
                (self.watched.contains(id) || !lane.queue.is_empty())
                    && lane
                        .positions
                        .as_ref()
                        .is_none_or(|s| now.saturating_duration_since(s.started) >= half)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.read_positions(id, ctx);
        }
        let ids: Vec<i32> = self.lanes.keys().copied().collect();
        for id in ids {
            self.pump(id, ctx);
        }
    }
}

/// When the read a holding started from was sent: a later read is newer.
fn entry_read_started(act: &OrderGatewayActor, key: &InstrumentKey) -> Option<Instant> {
    act.holdings.get(key).map(|e| e.read_started)
}
