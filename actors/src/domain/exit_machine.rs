//! The exit of one leg as a state machine: the order gateway feeds it what the broker answered
//! ([`Event`]) and asks it what to do next ([`ExitMachine::next_action`]). The rules, in
//! docs/exits.md:
//!
//! - An order whose placement answer is a timeout, a transport error or a 5xx is **in doubt**:
//!   nothing more is sent for the leg until the order book says where it is. Found, it is
//!   followed like any other order; not found by a read that started a settle window after its
//!   write-ahead row, it is definitely not there and the attempt failed.
//! - An order the broker accepted is polled until it is terminal. The leg is exited only when
//!   its orders are terminal and what they filled (plus what the broker was found not to hold)
//!   equals the leg's quantity. A rejection after acceptance is a failed attempt (the first
//!   retry goes at once, later ones back off); a partial fill
//!   sends the remainder only once the partial order is terminal; an order working too long is
//!   cancelled first.
//! - A 429 is "later": the wait the broker asks for, never a failed attempt.
//! - Sends are bounded by a [`Permit`] from the broker's holdings (see
//!   [`crate::domain::holdings`]): no order may take the broker's net position past zero.

use std::time::{Duration, Instant};

use crate::domain::exits::retry_delay;

/// The broker's state of an order (OpenAlgo's lowercase `order_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    /// Accepted, not (completely) filled.
    Open,
    /// A stop order waiting for its trigger.
    TriggerPending,
    /// Completely filled.
    Complete,
    /// Refused by the broker (its risk checks), possibly after a partial fill.
    Rejected,
    /// Cancelled, keeping what had filled.
    Cancelled,
}

impl OrderState {
    /// Reads an `order_status` as brokers spell it (case and a few synonyms aside).
    pub fn parse(text: &str) -> Option<OrderState> {
        let text = text.trim().to_ascii_lowercase();
        Some(match text.as_str() {
            "open" | "pending" | "validation pending" | "put order req received" => {
                OrderState::Open
            }
            "trigger pending" | "trigger_pending" => OrderState::TriggerPending,
            "complete" | "completed" | "filled" | "traded" | "executed" => OrderState::Complete,
            "rejected" => OrderState::Rejected,
            "cancelled" | "canceled" => OrderState::Cancelled,
            _ => return None,
        })
    }

    /// Nothing more will fill.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderState::Complete | OrderState::Rejected | OrderState::Cancelled
        )
    }
}

/// What the broker's books say of one order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderReport {
    /// Its state.
    pub state: OrderState,
    /// Units filled so far.
    pub filled: i64,
    /// Average price of what filled, when known.
    pub average_price: Option<f64>,
    /// The broker's reason for a rejection or cancellation.
    pub reason: Option<String>,
}

/// Why a placement did not give an order id.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaceFailure {
    /// A definite refusal (a 4xx answer): nothing was placed.
    Refused(String),
    /// No definite answer (timeout, transport error, 5xx, unreadable body): the order may be
    /// at the broker.
    Uncertain(String),
    /// Rate-limited (429): nothing was placed; try again after the wait.
    RateLimited {
        /// The wait the broker asked for.
        retry_after: Option<Duration>,
        /// The broker's message.
        message: String,
    },
}

/// Why a read of the broker's books gave no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadFailure {
    /// The books could not be read (unreachable, 5xx, unreadable).
    Failed(String),
    /// Rate-limited (429).
    RateLimited {
        /// The wait the broker asked for.
        retry_after: Option<Duration>,
        /// The broker's message.
        message: String,
    },
}

/// The timings and bounds of exits.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitConfig {
    /// Failed attempts (refused, rejected, not there) in a row before the exit fails.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubles with each further one.
    pub retry_initial: Duration,
    /// Longest wait between attempts, and longest wait a 429 is honoured for.
    pub retry_max: Duration,
    /// An in-doubt order counts as not at the broker only when a read that started this long
    /// after its write-ahead row does not find it.
    pub settle: Duration,
    /// First wait between two reads of an order; doubles with each read.
    pub poll_initial: Duration,
    /// Longest wait between two reads of an order.
    pub poll_max: Duration,
    /// An order still working this long after it was sent is cancelled (and the remainder sent
    /// again once the cancellation is confirmed).
    pub working_timeout: Duration,
}

impl ExitConfig {
    fn poll_delay(&self, reads: u32) -> Duration {
        retry_delay(self.poll_initial, reads.saturating_add(1), self.poll_max)
    }

    fn wait_for(&self, retry_after: Option<Duration>, failures: u32) -> Duration {
        match retry_after {
            Some(wait) => wait.clamp(self.retry_initial, self.retry_max),
            None => retry_delay(self.retry_initial, failures.max(1), self.retry_max),
        }
    }
}

/// How an order ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// Filled completely (or as far as the broker says it filled).
    Complete,
    /// Rejected by the broker after it accepted it.
    Rejected(String),
    /// Cancelled (by the broker, or by the gateway after the working timeout).
    Cancelled,
    /// The in-doubt order is not at the broker.
    NotThere,
    /// Refused at placement.
    Refused(String),
    /// Never placed: the write-ahead row could not be written, or the broker rate-limited it.
    NotPlaced(String),
}

/// Where one order of the exit is.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Its write-ahead row is being written.
    Recording,
    /// Recorded; the placement is to be sent (`sent` once it is on its way).
    Placing {
        /// The request left.
        sent: bool,
    },
    /// The placement answer was lost: it may or may not be at the broker.
    InDoubt,
    /// Accepted by the broker, not terminal.
    Working,
    /// Terminal.
    Done(End),
}

/// One order of the exit.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitOrder {
    /// The write-ahead row (`exit_requests.id`), once written.
    pub request: Option<i32>,
    /// Units ordered.
    pub quantity: i64,
    /// The broker's order id, once known.
    pub order_id: Option<String>,
    /// When its write-ahead row was written (or, after a restart, when it was written as far
    /// as the monotonic clock can tell).
    pub recorded_at: Instant,
    /// Where it is.
    pub phase: Phase,
    /// Units filled.
    pub filled: i64,
    /// Average price of what filled.
    pub average_price: Option<f64>,
    /// When to read its state next (in doubt or working).
    pub next_read: Option<Instant>,
    /// Reads made since it was placed (they space out).
    pub reads: u32,
    /// When a working order is cancelled if it is still working (unset: the working timeout
    /// after its row was written).
    pub cancel_at: Option<Instant>,
}

impl ExitOrder {
    fn new(quantity: i64, now: Instant) -> ExitOrder {
        ExitOrder {
            request: None,
            quantity,
            order_id: None,
            recorded_at: now,
            phase: Phase::Recording,
            filled: 0,
            average_price: None,
            next_read: None,
            reads: 0,
            cancel_at: None,
        }
    }

    /// Nothing more will fill.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done(_))
    }

    /// When the order is cancelled if it is still working.
    fn cancel_due(&self, config: &ExitConfig) -> Instant {
        self.cancel_at
            .unwrap_or(self.recorded_at + config.working_timeout)
    }

    /// Units this order accounts for: what filled once it is done, all of it before.
    fn committed(&self) -> i64 {
        if self.is_done() {
            self.filled
        } else {
            self.quantity
        }
    }
}

/// How many units the broker's holdings let the leg send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Do not send now, and conclude nothing: the holdings are not known yet, or another leg
    /// must go first.
    Hold,
    /// At most `units` now. With `settled`, no order in flight can give any back: what is
    /// missing is not held by the broker.
    Units {
        /// Units allowed.
        units: i64,
        /// No order on the instrument is in flight.
        settled: bool,
    },
}

/// What the gateway should do next for the leg.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write the write-ahead row of a new order of `quantity` units
    /// ([`ExitMachine::begin_order`]), then place it.
    Send {
        /// Units of the new order.
        quantity: i64,
    },
    /// Place the recorded order.
    Place {
        /// Its index.
        order: usize,
    },
    /// Read the working order's state (by its id).
    Query {
        /// Its index.
        order: usize,
    },
    /// Look for the in-doubt order in the order book (its id is not known).
    Search {
        /// Its index.
        order: usize,
    },
    /// Cancel the order that has been working too long.
    Cancel {
        /// Its index.
        order: usize,
    },
    /// Nothing to do before `until` (or before an answer arrives when `None`).
    Wait {
        /// When to ask again.
        until: Option<Instant>,
    },
    /// The exit is over.
    Finished(Outcome),
}

/// How the exit ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every unit is closed: `filled` by orders, `unheld` found not held by the broker.
    Exited {
        /// Units filled by the exit orders.
        filled: i64,
        /// Average price of the fills.
        average_price: Option<f64>,
        /// Units the broker did not hold (a mismatch).
        unheld: i64,
    },
    /// Attempts ran out; `filled` units did close.
    Failed {
        /// Units filled by the exit orders.
        filled: i64,
        /// Why, in words.
        message: String,
    },
}

/// Something that happened to an order of the exit.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Its write-ahead row is written.
    Recorded {
        /// The order.
        order: usize,
        /// The row's id.
        request: i32,
    },
    /// Its write-ahead row could not be written: nothing was sent.
    RecordFailed {
        /// The order.
        order: usize,
        /// Why.
        error: String,
    },
    /// The broker accepted it.
    Placed {
        /// The order.
        order: usize,
        /// The broker's order id.
        order_id: String,
    },
    /// The placement gave no order id.
    PlaceFailed {
        /// The order.
        order: usize,
        /// Why.
        failure: PlaceFailure,
    },
    /// The broker's books report its state (orderstatus, the order book, an order update).
    Report {
        /// The order.
        order: usize,
        /// What they say.
        report: OrderReport,
    },
    /// The in-doubt order was found in the order book.
    Found {
        /// The order.
        order: usize,
        /// Its id at the broker.
        order_id: String,
        /// Its state there.
        report: OrderReport,
    },
    /// A read that started at `asked_at` did not find the order.
    NotFound {
        /// The order.
        order: usize,
        /// When the read started.
        asked_at: Instant,
    },
    /// A read of the order gave no answer.
    ReadFailed {
        /// The order.
        order: usize,
        /// Why.
        failure: ReadFailure,
    },
    /// The cancellation was answered (`Err` with the broker's message).
    CancelAnswered {
        /// The order.
        order: usize,
        /// The answer.
        result: Result<(), String>,
    },
}

/// The state shown for an exit in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitState {
    /// Recording or placing an order, or about to.
    Sending,
    /// An order's placement answer was lost; the order book is being searched.
    InDoubt,
    /// Orders accepted, nothing filled yet.
    Working,
    /// Some units filled, more to come.
    PartiallyFilled,
    /// Every unit closed.
    Filled,
    /// The last attempt was rejected; the next one waits for its backoff.
    Rejected,
    /// Attempts ran out: a human must look.
    Failed,
}

impl ExitState {
    /// The name shown on the page and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitState::Sending => "sending",
            ExitState::InDoubt => "in_doubt",
            ExitState::Working => "working",
            ExitState::PartiallyFilled => "partially_filled",
            ExitState::Filled => "filled",
            ExitState::Rejected => "rejected",
            ExitState::Failed => "failed",
        }
    }
}

/// An order of the exit as it was persisted (restart recovery, an exit requested again).
#[derive(Debug, Clone, PartialEq)]
pub struct Persisted {
    /// The write-ahead row.
    pub request: i32,
    /// Units ordered.
    pub quantity: i64,
    /// The broker's order id, if it was known.
    pub order_id: Option<String>,
    /// Where it was.
    pub state: PersistedState,
    /// Units filled as last known.
    pub filled: i64,
    /// Average price of what filled.
    pub average_price: Option<f64>,
    /// How long ago its row was written.
    pub age: Duration,
}

/// Where a persisted order was.
#[derive(Debug, Clone, PartialEq)]
pub enum PersistedState {
    /// Recorded, placement unanswered or lost.
    InDoubt,
    /// Accepted, not terminal.
    Working,
    /// Terminal.
    Done(End),
}

/// The exit of one leg.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitMachine {
    quantity: i64,
    max_chunk: Option<i64>,
    orders: Vec<ExitOrder>,
    /// Failed attempts in a row (reset by any fill).
    failures: u32,
    /// No new order before then (backoff after a failure, a 429's wait).
    retry_at: Option<Instant>,
    unheld: i64,
    last_error: Option<String>,
    rate_limited: u64,
}

impl ExitMachine {
    /// A new exit of `quantity` units, in orders of at most `max_chunk`.
    pub fn new(quantity: i64, max_chunk: Option<i64>) -> ExitMachine {
        ExitMachine {
            quantity: quantity.max(0),
            max_chunk: max_chunk.filter(|c| *c > 0),
            orders: Vec::new(),
            failures: 0,
            retry_at: None,
            unheld: 0,
            last_error: None,
            rate_limited: 0,
        }
    }

    /// An exit that already has orders (after a restart, or requested again after it failed):
    /// orders in doubt are searched for and working ones read before anything new is sent.
    pub fn resume(
        quantity: i64,
        max_chunk: Option<i64>,
        persisted: Vec<Persisted>,
        now: Instant,
    ) -> ExitMachine {
        let mut machine = ExitMachine::new(quantity, max_chunk);
        for p in persisted {
            let recorded_at = now.checked_sub(p.age).unwrap_or(now);
            let (phase, next_read) = match p.state {
                PersistedState::InDoubt => (Phase::InDoubt, Some(now)),
                PersistedState::Working => (Phase::Working, Some(now)),
                PersistedState::Done(end) => (Phase::Done(end), None),
            };
            machine.orders.push(ExitOrder {
                request: Some(p.request),
                quantity: p.quantity,
                order_id: p.order_id,
                recorded_at,
                phase,
                filled: p.filled.clamp(0, p.quantity),
                average_price: p.average_price,
                next_read,
                reads: 0,
                cancel_at: None,
            });
        }
        machine
    }

    /// The leg's quantity.
    pub fn quantity(&self) -> i64 {
        self.quantity
    }

    /// Its orders, in the order they were begun.
    pub fn orders(&self) -> &[ExitOrder] {
        &self.orders
    }

    /// One order.
    pub fn order(&self, index: usize) -> Option<&ExitOrder> {
        self.orders.get(index)
    }

    /// Failed attempts in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The last thing that went wrong.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Times the broker answered 429.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited
    }

    /// Units filled by the exit's orders.
    pub fn filled(&self) -> i64 {
        self.orders.iter().map(|o| o.filled).sum()
    }

    /// Units found not held by the broker.
    pub fn unheld(&self) -> i64 {
        self.unheld
    }

    /// Units of orders that are not terminal (in doubt, working, being placed).
    pub fn in_flight(&self) -> i64 {
        self.orders
            .iter()
            .filter(|o| !o.is_done())
            .map(|o| o.quantity - o.filled)
            .sum()
    }

    /// Units neither closed, nor unheld, nor in an order that is not terminal.
    pub fn unsent(&self) -> i64 {
        let committed: i64 = self.orders.iter().map(ExitOrder::committed).sum();
        (self.quantity - committed - self.unheld).max(0)
    }

    /// Volume-weighted price of what filled.
    pub fn average_price(&self) -> Option<f64> {
        let (value, units) =
            self.orders
                .iter()
                .filter(|o| o.filled > 0)
                .try_fold((0.0, 0i64), |(v, u), o| {
                    o.average_price
                        .map(|p| (v + p * o.filled as f64, u + o.filled))
                })?;
        (units > 0).then(|| value / units as f64)
    }

    /// An order is recorded and waits to be placed.
    pub fn has_unplaced(&self) -> bool {
        self.orders
            .iter()
            .any(|o| o.phase == Phase::Placing { sent: false })
    }

    /// Units of the next new order, before any permit bounds it.
    pub fn next_quantity(&self) -> i64 {
        let unsent = self.unsent();
        self.max_chunk.map_or(unsent, |c| unsent.min(c))
    }

    /// Whether the next thing to do would be a new order (so its holdings must be known).
    pub fn wants_to_send(&self, now: Instant, config: &ExitConfig) -> bool {
        self.unsent() > 0
            && self.failures < config.max_attempts
            && !self.blocks_sending()
            && self.retry_at.is_none_or(|at| at <= now)
    }

    /// An order in doubt or on its way: nothing new may be sent.
    fn blocks_sending(&self) -> bool {
        self.orders.iter().any(|o| {
            matches!(
                o.phase,
                Phase::Recording | Phase::Placing { .. } | Phase::InDoubt
            )
        })
    }

    /// The state to show.
    pub fn state(&self, now: Instant, config: &ExitConfig) -> ExitState {
        match self.peek(now, config) {
            Some(Outcome::Exited { .. }) => return ExitState::Filled,
            Some(Outcome::Failed { .. }) => return ExitState::Failed,
            None => {}
        }
        if self.orders.iter().any(|o| o.phase == Phase::InDoubt) {
            return ExitState::InDoubt;
        }
        let working = self.orders.iter().any(|o| o.phase == Phase::Working);
        if !working
            && let Some(last) = self.orders.last()
            && matches!(
                last.phase,
                Phase::Done(End::Rejected(_) | End::Refused(_) | End::NotThere)
            )
            && self.unsent() > 0
        {
            return ExitState::Rejected;
        }
        if self.filled() > 0 {
            ExitState::PartiallyFilled
        } else if working {
            ExitState::Working
        } else {
            ExitState::Sending
        }
    }

    /// The outcome, if the exit is over (without a permit: a mismatch is not concluded here).
    fn peek(&self, _now: Instant, config: &ExitConfig) -> Option<Outcome> {
        if !self.orders.iter().all(ExitOrder::is_done) {
            return None;
        }
        if self.unsent() == 0 {
            return Some(Outcome::Exited {
                filled: self.filled(),
                average_price: self.average_price(),
                unheld: self.unheld,
            });
        }
        (self.failures >= config.max_attempts).then(|| Outcome::Failed {
            filled: self.filled(),
            message: format!(
                "{} exit attempts in a row failed; {} units are still open at the broker: {}",
                self.failures,
                self.unsent(),
                self.last_error.as_deref().unwrap_or("no answer")
            ),
        })
    }

    /// What to do next. `permit` bounds a new order; it matters only when
    /// [`wants_to_send`](Self::wants_to_send) is true.
    pub fn next_action(&mut self, now: Instant, config: &ExitConfig, permit: Permit) -> Action {
        if let Some(at) = self
            .orders
            .iter()
            .position(|o| o.phase == Phase::Placing { sent: false })
        {
            if let Some(order) = self.orders.get_mut(at) {
                order.phase = Phase::Placing { sent: true };
            }
            return Action::Place { order: at };
        }
        if self.wants_to_send(now, config) {
            let unsent = self.unsent();
            let chunk = self.next_quantity();
            match permit {
                Permit::Units { units, .. } if units > 0 => {
                    return Action::Send {
                        quantity: chunk.min(units),
                    };
                }
                Permit::Units { settled: true, .. }
                    if self.orders.iter().all(ExitOrder::is_done) =>
                {
                    // The broker holds none of what is left, and nothing in flight can change
                    // that: it is not held, a mismatch.
                    self.unheld += unsent;
                }
                _ => {}
            }
        }
        for (at, order) in self.orders.iter().enumerate() {
            let due = order.next_read.is_some_and(|t| t <= now);
            match order.phase {
                Phase::InDoubt if due => return Action::Search { order: at },
                Phase::Working if order.cancel_due(config) <= now => {
                    return Action::Cancel { order: at };
                }
                Phase::Working if due => return Action::Query { order: at },
                _ => {}
            }
        }
        if let Some(outcome) = self.peek(now, config) {
            return Action::Finished(outcome);
        }
        let busy = self
            .orders
            .iter()
            .any(|o| matches!(o.phase, Phase::Recording | Phase::Placing { .. }));
        let mut until = self
            .orders
            .iter()
            .filter(|o| matches!(o.phase, Phase::InDoubt | Phase::Working))
            .flat_map(|o| {
                let cancel = (o.phase == Phase::Working).then(|| o.cancel_due(config));
                [o.next_read, cancel]
            })
            .flatten()
            .min();
        if self.unsent() > 0
            && !busy
            && let Some(at) = self.retry_at.filter(|at| *at > now)
        {
            until = Some(until.map_or(at, |u| u.min(at)));
        }
        Action::Wait {
            until: if busy { None } else { until },
        }
    }

    /// Reads the order no sooner than `at` (its updates are pushed: a read is the fallback).
    pub fn defer_read(&mut self, order: usize, at: Instant) {
        if let Some(o) = self.orders.get_mut(order)
            && o.phase == Phase::Working
        {
            o.next_read = Some(o.next_read.map_or(at, |t| t.max(at)));
        }
    }

    /// Reads every order out now (pushed updates may have been missed).
    pub fn read_now(&mut self, now: Instant) {
        for o in &mut self.orders {
            if matches!(o.phase, Phase::Working | Phase::InDoubt) {
                o.next_read = Some(now);
            }
        }
    }

    /// The index of the order with this broker id.
    pub fn order_with_id(&self, order_id: &str) -> Option<usize> {
        self.orders
            .iter()
            .position(|o| o.order_id.as_deref() == Some(order_id))
    }

    /// An order's placement was sent and its answer (the order id) has not come yet.
    pub fn awaits_placement(&self) -> bool {
        self.orders
            .iter()
            .any(|o| o.phase == Phase::Placing { sent: true })
    }

    /// An order is in doubt (its id unknown).
    pub fn has_in_doubt(&self) -> bool {
        self.orders.iter().any(|o| o.phase == Phase::InDoubt)
    }

    /// Begins a new order of `quantity` units (after [`Action::Send`]): its write-ahead row is
    /// to be written now. Returns its index.
    pub fn begin_order(&mut self, quantity: i64, now: Instant) -> usize {
        self.orders.push(ExitOrder::new(quantity.max(1), now));
        self.orders.len() - 1
    }

    /// Takes in what happened. Returns the index of the order whose persisted state changed.
    pub fn handle(&mut self, event: Event, now: Instant, config: &ExitConfig) -> Option<usize> {
        let at = match &event {
            Event::Recorded { order, .. }
            | Event::RecordFailed { order, .. }
            | Event::Placed { order, .. }
            | Event::PlaceFailed { order, .. }
            | Event::Report { order, .. }
            | Event::Found { order, .. }
            | Event::NotFound { order, .. }
            | Event::ReadFailed { order, .. }
            | Event::CancelAnswered { order, .. } => *order,
        };
        let order = self.orders.get_mut(at)?;
        if order.is_done() {
            return None;
        }
        match event {
            Event::Recorded { request, .. } => {
                order.request = Some(request);
                order.recorded_at = now;
                order.phase = Phase::Placing { sent: false };
                None
            }
            Event::RecordFailed { error, .. } => {
                order.phase = Phase::Done(End::NotPlaced(error.clone()));
                self.failed_attempt(error, None, now, config);
                None
            }
            Event::Placed { order_id, .. } => {
                order.order_id = Some(order_id);
                order.phase = Phase::Working;
                order.next_read = Some(now);
                order.cancel_at = Some(now + config.working_timeout);
                Some(at)
            }
            Event::PlaceFailed { failure, .. } => match failure {
                PlaceFailure::Refused(message) => {
                    order.phase = Phase::Done(End::Refused(message.clone()));
                    self.failed_attempt(message, None, now, config);
                    Some(at)
                }
                PlaceFailure::Uncertain(message) => {
                    order.phase = Phase::InDoubt;
                    order.next_read = Some(now + config.poll_initial);
                    self.last_error = Some(message);
                    Some(at)
                }
                PlaceFailure::RateLimited {
                    retry_after,
                    message,
                } => {
                    order.phase = Phase::Done(End::NotPlaced(message.clone()));
                    self.rate_limited += 1;
                    self.retry_at = Some(now + config.wait_for(retry_after, 1));
                    self.last_error = Some(message);
                    Some(at)
                }
            },
            Event::Found {
                order_id, report, ..
            } => {
                order.order_id = Some(order_id);
                order.cancel_at = Some(order.recorded_at + config.working_timeout);
                order.reads = 0;
                self.apply_report(at, report, now, config);
                Some(at)
            }
            Event::Report { report, .. } => {
                let before = (order.phase.clone(), order.filled);
                self.apply_report(at, report, now, config);
                let order = self.orders.get(at)?;
                (before != (order.phase.clone(), order.filled)).then_some(at)
            }
            Event::NotFound { asked_at, .. } => {
                let settled = asked_at >= order.recorded_at + config.settle;
                if settled {
                    order.phase = Phase::Done(End::NotThere);
                    order.next_read = None;
                    let message = match &order.order_id {
                        Some(id) => format!("order {id} is not in the broker's books"),
                        None => "the order whose answer was lost is not in the broker's order book"
                            .to_string(),
                    };
                    self.failed_attempt(message, None, now, config);
                    Some(at)
                } else {
                    order.reads += 1;
                    let next = (now + config.poll_delay(order.reads))
                        .min(order.recorded_at + config.settle);
                    order.next_read = Some(next.max(now));
                    None
                }
            }
            Event::ReadFailed { failure, .. } => {
                order.reads += 1;
                let (wait, message) = match failure {
                    ReadFailure::Failed(m) => (config.poll_delay(order.reads), m),
                    ReadFailure::RateLimited {
                        retry_after,
                        message,
                    } => {
                        self.rate_limited += 1;
                        (config.wait_for(retry_after, order.reads), message)
                    }
                };
                order.next_read = Some(now + wait);
                self.last_error = Some(message);
                None
            }
            Event::CancelAnswered { result, .. } => {
                order.cancel_at = Some(now + config.working_timeout);
                order.next_read = Some(now);
                if let Err(message) = result {
                    self.last_error = Some(format!("cancelling a working exit order: {message}"));
                }
                None
            }
        }
    }

    fn apply_report(&mut self, at: usize, report: OrderReport, now: Instant, config: &ExitConfig) {
        let Some(order) = self.orders.get_mut(at) else {
            return;
        };
        let before = order.filled;
        // A lagging book may show less than was already seen: fills never go back.
        order.filled = report.filled.clamp(before, order.quantity);
        if report.average_price.is_some_and(|p| p > 0.0) {
            order.average_price = report.average_price;
        }
        let progressed = order.filled > before;
        match report.state {
            OrderState::Complete => {
                order.phase = Phase::Done(End::Complete);
                order.next_read = None;
            }
            OrderState::Rejected | OrderState::Cancelled => {
                let reason = report.reason.clone().filter(|r| !r.is_empty());
                order.phase = Phase::Done(match report.state {
                    OrderState::Rejected => End::Rejected(
                        reason
                            .clone()
                            .unwrap_or_else(|| "rejected by the broker".into()),
                    ),
                    _ => End::Cancelled,
                });
                order.next_read = None;
                if order.filled == 0 {
                    let what = if report.state == OrderState::Rejected {
                        "rejected"
                    } else {
                        "cancelled"
                    };
                    let id = order.order_id.clone().unwrap_or_default();
                    let message = match reason {
                        Some(r) => format!("the broker {what} order {id}: {r}"),
                        None => format!("the broker {what} order {id}"),
                    };
                    self.failed_attempt(message, None, now, config);
                }
            }
            OrderState::Open | OrderState::TriggerPending => {
                order.phase = Phase::Working;
                order.reads += 1;
                order.next_read = Some(now + config.poll_delay(order.reads));
            }
        }
        if progressed {
            self.failures = 0;
            self.retry_at = None;
        }
    }

    fn failed_attempt(
        &mut self,
        message: String,
        retry_after: Option<Duration>,
        now: Instant,
        config: &ExitConfig,
    ) {
        self.failures = self.failures.saturating_add(1);
        // The first retry at once, then spaced out.
        let wait = match retry_after {
            Some(_) => config.wait_for(retry_after, self.failures),
            None => retry_delay(config.retry_initial, self.failures - 1, config.retry_max),
        };
        self.retry_at = Some(now + wait);
        self.last_error = Some(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ExitConfig {
        ExitConfig {
            max_attempts: 3,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            settle: Duration::from_secs(5),
            poll_initial: Duration::from_millis(50),
            poll_max: Duration::from_secs(1),
            working_timeout: Duration::from_secs(30),
        }
    }

    const PLENTY: Permit = Permit::Units {
        units: i64::MAX,
        settled: false,
    };

    fn report(state: OrderState, filled: i64, price: f64) -> OrderReport {
        OrderReport {
            state,
            filled,
            average_price: (price > 0.0).then_some(price),
            reason: None,
        }
    }

    /// Drives the machine to a placed order of `quantity` and returns its index.
    fn send(m: &mut ExitMachine, now: Instant, cfg: &ExitConfig, quantity: i64) -> usize {
        assert_eq!(m.next_action(now, cfg, PLENTY), Action::Send { quantity });
        let at = m.begin_order(quantity, now);
        m.handle(
            Event::Recorded {
                order: at,
                request: at as i32 + 1,
            },
            now,
            cfg,
        );
        assert_eq!(m.next_action(now, cfg, PLENTY), Action::Place { order: at });
        at
    }

    fn placed(m: &mut ExitMachine, at: usize, now: Instant, cfg: &ExitConfig) {
        m.handle(
            Event::Placed {
                order: at,
                order_id: format!("OID{at}"),
            },
            now,
            cfg,
        );
    }

    #[test]
    fn the_common_path_sends_reads_and_finishes() {
        let cfg = config();
        let t = Instant::now();
        let mut m = ExitMachine::new(10, None);
        assert_eq!(m.state(t, &cfg), ExitState::Sending);
        let at = send(&mut m, t, &cfg, 10);
        assert_eq!(m.next_action(t, &cfg, PLENTY), Action::Wait { until: None });
        placed(&mut m, at, t, &cfg);
        assert_eq!(m.state(t, &cfg), ExitState::Working);
        // Read at once after the answer.
        assert_eq!(m.next_action(t, &cfg, PLENTY), Action::Query { order: at });
        let changed = m.handle(
            Event::Report {
                order: at,
                report: report(OrderState::Complete, 10, 101.5),
            },
            t,
            &cfg,
        );
        assert_eq!(changed, Some(at));
        assert_eq!(
            m.next_action(t, &cfg, PLENTY),
            Action::Finished(Outcome::Exited {
                filled: 10,
                average_price: Some(101.5),
                unheld: 0
            })
        );
        assert_eq!(m.state(t, &cfg), ExitState::Filled);
    }

    #[test]
    fn an_accepted_order_is_not_exited_until_the_broker_says_complete() {
        let cfg = config();
        let t = Instant::now();
        let mut m = ExitMachine::new(10, None);
        let at = send(&mut m, t, &cfg, 10);
        placed(&mut m, at, t, &cfg);
        m.next_action(t, &cfg, PLENTY);
        m.handle(
            Event::Report {
                order: at,
                report: report(OrderState::Open, 0, 0.0),
            },
            t,
            &cfg,
        );
        // Polled again later, spacing out; nothing else is sent.
        let Action::Wait { until: Some(next) } = m.next_action(t, &cfg, PLENTY) else {
            panic!("waits for the next read");
        };
        assert!(next > t);
        assert_eq!(
            m.next_action(next, &cfg, PLENTY),
            Action::Query { order: at }
        );
        assert_eq!(m.state(next, &cfg), ExitState::Working);
    }

    #[test]
    fn a_rejection_after_acceptance_is_a_failed_attempt_that_retries_then_fails() {
        let cfg = config();
        let mut t = Instant::now();
        let mut m = ExitMachine::new(10, None);
        for attempt in 1..=3u32 {
            let at = send(&mut m, t, &cfg, 10);
            placed(&mut m, at, t, &cfg);
            m.next_action(t, &cfg, PLENTY);
            m.handle(
                Event::Report {
                    order: at,
                    report: OrderReport {
                        reason: Some("RMS: margin".into()),
                        ..report(OrderState::Rejected, 0, 0.0)
                    },
                },
                t,
                &cfg,
            );
            assert_eq!(m.failures(), attempt);
            if attempt == 2 {
                // The first retry went at once; the next ones back off.
                assert_eq!(m.state(t, &cfg), ExitState::Rejected);
                let Action::Wait { until: Some(at) } = m.next_action(t, &cfg, PLENTY) else {
                    panic!("backs off");
                };
                assert_eq!(at, t + cfg.retry_initial);
                t = at;
            }
        }
        match m.next_action(t, &cfg, PLENTY) {
            Action::Finished(Outcome::Failed { filled, message }) => {
                assert_eq!(filled, 0);
                assert!(message.contains("RMS: margin"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.state(t, &cfg), ExitState::Failed);
    }

    #[test]
    fn an_in_doubt_order_blocks_everything_until_the_book_settles_it() {
        let cfg = config();
        let t = Instant::now();
        let mut m = ExitMachine::new(10, None);
        let at = send(&mut m, t, &cfg, 10);
        m.handle(
            Event::PlaceFailed {
                order: at,
                failure: PlaceFailure::Uncertain("placeorder: HTTP 502".into()),
            },
            t,
            &cfg,
        );
        assert_eq!(m.state(t, &cfg), ExitState::InDoubt);
        assert!(!m.wants_to_send(t, &cfg));
        let Action::Wait { until: Some(first) } = m.next_action(t, &cfg, PLENTY) else {
            panic!("waits a little before searching");
        };
        assert_eq!(
            m.next_action(first, &cfg, PLENTY),
            Action::Search { order: at }
        );
        // Not found before the settle window: inconclusive, searched again, at the latest when
        // the window closes.
        let mut now = first;
        while now < t + cfg.settle {
            m.handle(
                Event::NotFound {
                    order: at,
                    asked_at: now,
                },
                now,
                &cfg,
            );
            assert_eq!(m.failures(), 0);
            let Action::Wait { until: Some(next) } = m.next_action(now, &cfg, PLENTY) else {
                panic!("searches again");
            };
            assert!(next <= t + cfg.settle && next > now);
            now = next;
            assert_eq!(
                m.next_action(now, &cfg, PLENTY),
                Action::Search { order: at }
            );
        }
        // A read started after the window that does not find it: definitely not there.
        m.handle(
            Event::NotFound {
                order: at,
                asked_at: now,
            },
            now,
            &cfg,
        );
        assert_eq!(m.failures(), 1);
        assert_eq!(m.state(now, &cfg), ExitState::Rejected);
        // Definitely not placed: the next attempt goes at once.
        assert_eq!(
            m.next_action(now, &cfg, PLENTY),
            Action::Send { quantity: 10 }
        );
    }

    #[test]
    fn an_in_doubt_order_found_in_the_book_is_followed_not_resent() {
        let cfg = config();
        let t = Instant::now();
        let mut m = ExitMachine::new(10, None);
        let at = send(&mut m, t, &cfg, 10);
        m.handle(
            Event::PlaceFailed {
                order: at,
                failure: PlaceFailure::Uncertain("placeorder: no answer within 500 ms".into()),
            },
            t,
            &cfg,
        );
        let later = t + Duration::from_secs(8);
        assert_eq!(
            m.next_action(later, &cfg, PLENTY),
            Action::Search { order: at }
        );
        m.handle(
            Event::Found {
                order: at,
                order_id: "B1".into(),
                report: report(OrderState::Open, 0, 0.0),
            },
            later,
            &cfg,
        );
        assert_eq!(m.order(at).unwrap().order_id.as_deref(), Some("B1"));
        assert_eq!(m.state(later, &cfg), ExitState::Working);
        assert!(!m.wants_to_send(later, &cfg), "nothing more to send");
        m.handle(
            Event::Report {
                order: at,
                report: report(OrderState::Complete, 10, 99.0),
            },
            later,
            &cfg,
        );
        assert!(matches!(
            m.next_action(later, &cfg, PLENTY),
            Action::Finished(Outcome::Exited { filled: 10, .. })
        ));
        assert_eq!(m.orders().len(), 1, "one order, never two");
    }

    #[test]
    fn a_partial_fill_sends_the_remainder_only_once_the_order_is_terminal() {
        let cfg = config();
        let t = Instant::now();
        let mut m = ExitMachine::new(10, None);
        let at = send(&mut m, t, &cfg, 10);
        placed(&mut m, at, t, &cfg);
        m.next_action(t, &cfg, PLENTY);
        m.handle(
            Event::Report {
                order: at,
                report: report(OrderState::Open, 4, 100.0),
            },
            t,
            &cfg,
        );
        assert_eq!(m.state(t, &cfg), ExitState::PartiallyFilled);
        assert_eq!(m.unsent(), 0, "the open order still covers the rest");
        // The broker cancels the rest.
        m.handle(
            Event::Report {
                order: at,
                report: report(OrderState::Cancelled, 4, 100.0),
            },
            t,
            &cfg,
        );
        assert_eq!(m.failures(), 0, "a partial fill is progress");
        assert_eq!(m.unsent(), 6);
        assert_eq!(m.next_action(t, &cfg, PLENTY), Action::Send { quantity: 6 });
        let b = m.begin_order(6, t);
        m.handle(
            Event::Recorded {
                order: b,
                request: 2,
            },
            t,
            &cfg,
        );
        m.next_action(t, &cfg, PLENTY);
        placed(&mut m, b, t, &cfg);
        m.handle(
            Event::Report {
                order: b,
                report: report(OrderState::Complete, 6, 110.0),
            },
            t,
            &cfg,
        );
        match m.next_action(t, &cfg, PLENTY) {
            Action::Finished(Outcome::Exited {
                filled,
                average_price,
                unheld,
            }) => {
                assert_eq!((filled, unheld), (10, 0));
                assert!((average_price.unwrap() - 106.0).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_order_working_too_long_is_cancelled_then_the_remainder_resent() {
        let cfg = config();
        let t = Instant::now();
        let mut m = ExitMachine::new(10, None);
        let at = send(&mut m, t, &cfg, 10);
        placed(&mut m, at, t, &cfg);
        let late = t + cfg.working_timeout;
        assert_eq!(
            m.next_action(late, &cfg, PLENTY),
            Action::Cancel { order: at }
        );
        m.handle(
            Event::CancelAnswered {
                order: at,
                result: Ok(()),
            },
            late,
            &cfg,
        );
        assert_eq!(
            m.next_action(late, &cfg, PLENTY),
            Action::Query { order: at }
        );
        m.handle(
            Event::Report {
                order: at,
                report: report(OrderState::Cancelled, 3, 50.0),
            },
            late,
            &cfg,
        );
        assert_eq!(
            m.next_action(late, &cfg, PLENTY),
            Action::Send { quantity: 7 }
        );
    }

    #[test]
    fn a_429_waits_for_the_broker_and_is_not_a_failed_attempt() {
        let cfg = config();
        let t = Instant::now();
        let mut m = ExitMachine::new(10, None);
        for _ in 0..5 {
            let now = m.retry_at.unwrap_or(t);
            let at = send(&mut m, now, &cfg, 10);
            m.handle(
                Event::PlaceFailed {
                    order: at,
                    failure: PlaceFailure::RateLimited {
                        retry_after: Some(Duration::from_secs(2)),
                        message: "Rate limit exceeded".into(),
                    },
                },
                now,
                &cfg,
            );
            assert_eq!(m.failures(), 0);
            assert_eq!(
                m.next_action(now, &cfg, PLENTY),
                Action::Wait {
                    until: Some(now + Duration::from_secs(2))
                }
            );
        }
        assert_eq!(m.rate_limited(), 5);
        // A window longer than retry_max is honoured up to retry_max.
        let now = m.retry_at.unwrap();
        let at = send(&mut m, now, &cfg, 10);
        m.handle(
            Event::PlaceFailed {
                order: at,
                failure: PlaceFailure::RateLimited {
                    retry_after: Some(Duration::from_secs(60)),
                    message: "Rate limit exceeded".into(),
                },
            },
            now,
            &cfg,
        );
        assert_eq!(m.retry_at, Some(now + cfg.retry_max));
    }

    #[test]
    fn freeze_splits_go_out_as_separate_orders_and_all_must_fill() {
        let cfg = config();
        let t = Instant::now();
        let mut m = ExitMachine::new(3900, Some(1755));
        let a = send(&mut m, t, &cfg, 1755);
        placed(&mut m, a, t, &cfg);
        // The next chunk goes out before the first one's state is read.
        let b = send(&mut m, t, &cfg, 1755);
        placed(&mut m, b, t, &cfg);
        let c = send(&mut m, t, &cfg, 390);
        placed(&mut m, c, t, &cfg);
        assert!(!m.wants_to_send(t, &cfg));
        assert_eq!(m.next_action(t, &cfg, PLENTY), Action::Query { order: a });
        assert!(matches!(
            m.next_action(t, &cfg, PLENTY),
            Action::Query { .. }
        ));
        for at in [a, b, c] {
            let q = m.order(at).unwrap().quantity;
            m.handle(
                Event::Report {
                    order: at,
                    report: report(OrderState::Complete, q, 10.0),
                },
                t,
                &cfg,
            );
        }
        assert!(matches!(
            m.next_action(t, &cfg, PLENTY),
            Action::Finished(Outcome::Exited { filled: 3900, .. })
        ));
    }

    #[test]
    fn the_permit_bounds_orders_and_what_the_broker_does_not_hold_is_unheld() {
        let cfg = config();
        let t = Instant::now();
        let mut m = ExitMachine::new(10, None);
        // Holdings not known yet: nothing is sent and nothing concluded.
        assert_eq!(
            m.next_action(t, &cfg, Permit::Hold),
            Action::Wait { until: None }
        );
        assert_eq!(m.unheld(), 0);
        // The broker holds 6: an order of 6.
        assert_eq!(
            m.next_action(
                t,
                &cfg,
                Permit::Units {
                    units: 6,
                    settled: true
                }
            ),
            Action::Send { quantity: 6 }
        );
        let at = m.begin_order(6, t);
        m.handle(
            Event::Recorded {
                order: at,
                request: 1,
            },
            t,
            &cfg,
        );
        m.next_action(t, &cfg, Permit::Hold);
        placed(&mut m, at, t, &cfg);
        // None left, but an order is in flight: wait, conclude nothing.
        let none_left = Permit::Units {
            units: 0,
            settled: false,
        };
        assert_eq!(
            m.next_action(t, &cfg, none_left),
            Action::Query { order: at }
        );
        m.handle(
            Event::Report {
                order: at,
                report: report(OrderState::Complete, 6, 100.0),
            },
            t,
            &cfg,
        );
        assert_eq!(m.unheld(), 0);
        assert!(matches!(
            m.next_action(t, &cfg, none_left),
            Action::Wait { .. }
        ));
        // Settled with none left: the other 4 are not held by the broker.
        assert_eq!(
            m.next_action(
                t,
                &cfg,
                Permit::Units {
                    units: 0,
                    settled: true
                }
            ),
            Action::Finished(Outcome::Exited {
                filled: 6,
                average_price: Some(100.0),
                unheld: 4
            })
        );
    }

    #[test]
    fn recovery_searches_in_doubt_orders_and_reads_working_ones_before_sending() {
        let cfg = config();
        let t = Instant::now() + Duration::from_secs(60);
        let persisted = vec![
            Persisted {
                request: 1,
                quantity: 1755,
                order_id: Some("A".into()),
                state: PersistedState::Done(End::Complete),
                filled: 1755,
                average_price: Some(10.0),
                age: Duration::from_secs(20),
            },
            Persisted {
                request: 2,
                quantity: 1755,
                order_id: Some("B".into()),
                state: PersistedState::Working,
                filled: 0,
                average_price: None,
                age: Duration::from_secs(10),
            },
            Persisted {
                request: 3,
                quantity: 390,
                order_id: None,
                state: PersistedState::InDoubt,
                filled: 0,
                average_price: None,
                age: Duration::from_secs(1),
            },
        ];
        let mut m = ExitMachine::resume(3900, Some(1755), persisted, t);
        assert_eq!(m.unsent(), 0);
        assert_eq!(m.next_action(t, &cfg, PLENTY), Action::Query { order: 1 });
        m.handle(
            Event::Report {
                order: 1,
                report: report(OrderState::Complete, 1755, 10.0),
            },
            t,
            &cfg,
        );
        assert_eq!(m.next_action(t, &cfg, PLENTY), Action::Search { order: 2 });
        // Written a second ago: a miss now is not conclusive; the settle window counts from
        // the row's time.
        m.handle(
            Event::NotFound {
                order: 2,
                asked_at: t,
            },
            t,
            &cfg,
        );
        assert_eq!(m.failures(), 0);
        let settled = t + cfg.settle;
        m.handle(
            Event::NotFound {
                order: 2,
                asked_at: settled,
            },
            settled,
            &cfg,
        );
        assert_eq!(m.unsent(), 390);
    }

    #[test]
    fn a_recovered_working_order_is_cancelled_once_the_timeout_from_its_row_passed() {
        let cfg = config();
        let t = Instant::now() + Duration::from_secs(120);
        let working = Persisted {
            request: 7,
            quantity: 10,
            order_id: Some("W".into()),
            state: PersistedState::Working,
            filled: 6,
            average_price: Some(100.0),
            age: cfg.working_timeout + Duration::from_secs(1),
        };
        let mut m = ExitMachine::resume(10, None, vec![working], t);
        assert_eq!(m.next_action(t, &cfg, PLENTY), Action::Cancel { order: 0 });
        let young = Persisted {
            request: 8,
            quantity: 10,
            order_id: Some("Y".into()),
            state: PersistedState::Working,
            filled: 0,
            average_price: None,
            age: Duration::from_secs(1),
        };
        let mut m = ExitMachine::resume(10, None, vec![young], t);
        assert_eq!(m.next_action(t, &cfg, PLENTY), Action::Query { order: 0 });
        m.handle(
            Event::Report {
                order: 0,
                report: report(OrderState::Open, 0, 0.0),
            },
            t,
            &cfg,
        );
        let due = t - Duration::from_secs(1) + cfg.working_timeout;
        assert_eq!(
            m.next_action(due, &cfg, PLENTY),
            Action::Cancel { order: 0 }
        );
    }

    #[test]
    fn lagging_reports_never_take_fills_back_and_done_orders_stay_done() {
        let cfg = config();
        let t = Instant::now();
        let mut m = ExitMachine::new(10, None);
        let at = send(&mut m, t, &cfg, 10);
        placed(&mut m, at, t, &cfg);
        m.handle(
            Event::Report {
                order: at,
                report: report(OrderState::Open, 5, 100.0),
            },
            t,
            &cfg,
        );
        m.handle(
            Event::Report {
                order: at,
                report: report(OrderState::Open, 2, 100.0),
            },
            t,
            &cfg,
        );
        assert_eq!(m.filled(), 5);
        m.handle(
            Event::Report {
                order: at,
                report: report(OrderState::Complete, 10, 100.0),
            },
            t,
            &cfg,
        );
        let changed = m.handle(
            Event::Report {
                order: at,
                report: report(OrderState::Rejected, 0, 0.0),
            },
            t,
            &cfg,
        );
        assert_eq!(changed, None);
        assert_eq!(m.order(at).unwrap().phase, Phase::Done(End::Complete));
    }

    #[test]
    fn order_states_parse_as_brokers_write_them() {
        assert_eq!(OrderState::parse("complete"), Some(OrderState::Complete));
        assert_eq!(OrderState::parse("COMPLETE"), Some(OrderState::Complete));
        assert_eq!(
            OrderState::parse("trigger pending"),
            Some(OrderState::TriggerPending)
        );
        assert_eq!(OrderState::parse("canceled"), Some(OrderState::Cancelled));
        assert_eq!(OrderState::parse("open"), Some(OrderState::Open));
        assert_eq!(OrderState::parse("?"), None);
        assert!(OrderState::Rejected.is_terminal() && !OrderState::Open.is_terminal());
    }
}
