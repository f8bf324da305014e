//! `OrderEventRouter` (docs/order-updates.md): every account socket's `order_update` pushes,
//! delivered to the order gateway, which hands each to the exit in progress that placed the
//! order (matched by order id). Updates of orders the supervisor did not place are recorded
//! here, per account, never dropped silently; a failure to deliver one is counted and shown.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::feed::OrderStreamEvent;
use crate::openalgo::feed::OrderUpdate;
use crate::status::Lifecycle;
use crate::supervised::RestartTracker;

/// Latest order events kept per account.
const RECENT: usize = 20;

/// An account's order update, for the order gateway: answers whose order it is.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Routed")]
pub struct RouteOrderUpdate {
    pub account_id: i32,
    pub update: OrderUpdate,
    pub received_at: Instant,
}

/// What became of an order update at the order gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub enum Routed {
    /// An order of an exit in progress.
    Matched,
    /// Kept a few seconds: an exit of the account waits for a placement answer, and the
    /// update may be of that order (pushed before the answer came).
    Held,
    /// Not an order of an exit in progress.
    NotOurs,
}

/// An account's order updates started or stopped flowing (its socket went live and subscribed,
/// or down): while they do not, exits of that account are confirmed by reading the books.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct OrderStreamChanged {
    pub account_id: i32,
    pub live: bool,
}

#[derive(Message)]
#[rtype(result = "OrderEventsStatus")]
pub struct GetOrderEvents;

/// One order update as the page shows it.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct OrderEventView {
    pub at: DateTime<Utc>,
    pub order_id: String,
    pub symbol: String,
    pub action: String,
    pub status: String,
    pub filled: Option<f64>,
    pub quantity: Option<f64>,
    /// An exit in progress placed it.
    pub matched: bool,
}

#[derive(utoipa::ToSchema, Debug, Clone, Default, Serialize)]
pub struct AccountOrderEvents {
    pub account_id: i32,
    /// Updates flow (the socket is live and subscribed).
    pub live: bool,
    pub events: u64,
    /// Updates of orders of exits in progress.
    pub matched: u64,
    /// Updates kept for an order whose placement answer had not come yet.
    pub held: u64,
    /// Updates of orders the supervisor did not place (kept below for reconciliation).
    pub unmatched: u64,
    /// Updates the order gateway could not be given.
    pub routing_failures: u64,
    pub last_event_at: Option<DateTime<Utc>>,
    /// The latest, newest first.
    pub recent: Vec<OrderEventView>,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct OrderEventsStatus {
    pub state: Lifecycle,
    pub restarts: u64,
    pub accounts: Vec<AccountOrderEvents>,
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Account {
    totals: AccountOrderEvents,
    recent: VecDeque<OrderEventView>,
}

pub struct OrderEventRouter {
    gateway: Recipient<RouteOrderUpdate>,
    liveness: Recipient<OrderStreamChanged>,
    accounts: BTreeMap<i32, Account>,
    restarts: RestartTracker,
    last_error: Option<String>,
}

impl OrderEventRouter {
    /// Delivers updates to `gateway` and tells `liveness` when an account's updates start or
    /// stop flowing (both the order gateway in the service).
    pub fn new(
        gateway: Recipient<RouteOrderUpdate>,
        liveness: Recipient<OrderStreamChanged>,
        restarts: RestartTracker,
    ) -> Self {
        Self {
            gateway,
            liveness,
            accounts: BTreeMap::new(),
            restarts,
            last_error: None,
        }
    }

    fn account(&mut self, id: i32) -> &mut Account {
        self.accounts.entry(id).or_insert_with(|| Account {
            totals: AccountOrderEvents {
                account_id: id,
                ..Default::default()
            },
            recent: VecDeque::new(),
        })
    }

    fn routed(&mut self, account_id: i32, order_id: &str, answer: Result<Routed, MailboxError>) {
        let account = self.account(account_id);
        match answer {
            Ok(routed) => {
                match routed {
                    Routed::Matched => account.totals.matched += 1,
                    Routed::Held => account.totals.held += 1,
                    Routed::NotOurs => {
                        account.totals.unmatched += 1;
                        tracing::info!(
                            account_id,
                            order_id,
                            "order update of an order no exit placed; recorded"
                        );
                    }
                }
                if let Some(view) = account.recent.iter_mut().find(|v| v.order_id == order_id) {
                    view.matched = routed != Routed::NotOurs;
                }
            }
            Err(e) => {
                account.totals.routing_failures += 1;
                let message =
                    format!("an order update could not be given to the order gateway: {e}");
                tracing::error!(account_id, order_id, "{message}");
                self.last_error = Some(message);
            }
        }
    }
}

impl Actor for OrderEventRouter {
    type Context = Context<Self>;
}

impl actix::Supervised for OrderEventRouter {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts.on_restart("OrderEventRouter");
    }
}

impl Handler<OrderStreamEvent> for OrderEventRouter {
    type Result = ();

    fn handle(&mut self, msg: OrderStreamEvent, ctx: &mut Context<Self>) {
        match msg {
            OrderStreamEvent::Live { account_id, live } => {
                self.account(account_id).totals.live = live;
                self.liveness
                    .do_send(OrderStreamChanged { account_id, live });
            }
            OrderStreamEvent::Update {
                account_id,
                update,
                received_at,
            } => {
                let account = self.account(account_id);
                account.totals.events += 1;
                let now = Utc::now();
                account.totals.last_event_at = Some(now);
                account.recent.push_front(OrderEventView {
                    at: now,
                    order_id: update.orderid.clone(),
                    symbol: update.symbol.clone(),
                    action: update.action.clone(),
                    status: update.order_status.clone(),
                    filled: update.filled_quantity,
                    quantity: update.quantity,
                    matched: false,
                });
                account.recent.truncate(RECENT);
                let order_id = update.orderid.clone();
                let request = self.gateway.send(RouteOrderUpdate {
                    account_id,
                    update: *update,
                    received_at,
                });
                ctx.spawn(
                    request
                        .into_actor(self)
                        .map(move |answer, act, _ctx| act.routed(account_id, &order_id, answer)),
                );
            }
        }
    }
}

impl Handler<GetOrderEvents> for OrderEventRouter {
    type Result = MessageResult<GetOrderEvents>;

    fn handle(&mut self, _: GetOrderEvents, _ctx: &mut Context<Self>) -> Self::Result {
        let accounts = self
            .accounts
            .values()
            .map(|a| AccountOrderEvents {
                recent: a.recent.iter().cloned().collect(),
                ..a.totals.clone()
            })
            .collect();
        MessageResult(OrderEventsStatus {
            state: if self.restarts.faulted() {
                Lifecycle::Faulted
            } else {
                Lifecycle::Running
            },
            restarts: self.restarts.restarts(),
            accounts,
            last_error: self.last_error.clone(),
        })
    }
}
