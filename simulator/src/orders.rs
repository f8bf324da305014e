//! Order handling on the simulated accounts: broker-side checks, fills at the current
//! price, the order faults (held, partly filled, rejected later), cancel and modify,
//! square-off, cancel-all, and the received-orders log behind `/sim/orders`.
//!
//! An order action a fault delays is a [`Timer`]: the handler that booked the order starts
//! it with [`schedule`] once the state lock is released; it sleeps on its own task and then
//! takes the lock only to act.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;

use super::books::{
    Entry, Modify, ModifyError, NewOrder, PriceType, Product, Side, Stamp, Status, Terms,
};
use super::calendar;
use super::faults::{Rest, partial_quantity};
use super::market::Kind;
use super::schema::{Failure, failure};
use super::state::{Core, OrderRecord, Outcome, Shared, now_us};

/// An order as requested, before any broker-side check.
#[derive(Clone, Debug)]
pub(crate) struct OrderRequest {
    pub symbol: String,
    pub exchange: String,
    pub terms: Terms,
}

/// Whether the order faults (`reject_orders`, `accept_then_reject`, `partial_fill`,
/// `fill_delay_ms`) may apply to this order: not to closeposition's square-off orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Faultable {
    Yes,
    No,
}

/// What a timer does to its order once its delay is over.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Lets a held order be matched again and evaluates it at the price current then.
    Release,
    /// Rejects the order for this reason.
    Reject(String),
    /// Cancels what is left of a partly filled order.
    CancelRest,
}

/// A delayed action on one order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Timer {
    pub after: Duration,
    pub account: usize,
    pub order: usize,
    pub action: Action,
}

/// Why the broker cancels the rest of a partly filled order.
const BROKER_CANCEL: &str = "rest cancelled by the broker (partial_fill fault)";

/// Runs each timer on its own task after its delay, then the timers its action starts.
pub(crate) fn schedule(shared: &Arc<Shared>, timers: Vec<Timer>) {
    for timer in timers {
        let shared = shared.clone();
        actix_rt::spawn(async move {
            actix_rt::time::sleep(timer.after).await;
            let more = {
                let mut core = shared.core();
                core.fire(timer);
                core.take_timers()
            };
            schedule(&shared, more);
        });
    }
}

fn order_not_found(orderid: &str) -> Failure {
    failure(StatusCode::NOT_FOUND, format!("Order {orderid} not found"))
}

/// The 400 for an order that is no longer working.
fn not_working(orderid: &str, verb: &str, status: Status) -> Failure {
    failure(
        StatusCode::BAD_REQUEST,
        format!(
            "Order {orderid} cannot be {verb}: it is {}",
            status.as_str()
        ),
    )
}

impl Core {
    /// Now, on the simulator's clock and on the wall clock.
    pub(crate) fn stamp(&self) -> Stamp {
        Stamp {
            ms: self.now().timestamp_millis(),
            us: now_us(),
        }
    }

    pub(crate) fn take_timers(&mut self) -> Vec<Timer> {
        std::mem::take(&mut self.timers)
    }

    /// Pushes an order update for every change in the books since the last call, and notes
    /// the instruments of orders still working for price matching.
    pub(crate) fn publish(&mut self) {
        for account in 0..self.accounts.len() {
            let changes = self.accounts[account].book.take_changes();
            for &(order, _) in &changes {
                let order = &self.accounts[account].book.orders[order];
                if order.status.is_working() {
                    let instrument = order.req.instrument;
                    self.note_working(instrument);
                }
            }
            self.notify_orders(account, &changes);
        }
    }

    /// Runs a timer's action (nothing if its order is no longer working).
    pub(crate) fn fire(&mut self, timer: Timer) {
        let Some(instrument) = self.accounts[timer.account]
            .book
            .orders
            .get(timer.order)
            .map(|o| o.req.instrument)
        else {
            return;
        };
        let now = self.now();
        let ltp = self.market.ltp(instrument, now);
        let stamp = self.stamp();
        let book = &mut self.accounts[timer.account].book;
        match &timer.action {
            Action::Release => {
                book.release(timer.order, ltp, stamp);
            }
            Action::Reject(reason) => {
                let _ = book.finish(timer.order, Status::Rejected, reason, stamp);
            }
            Action::CancelRest => {
                let _ = book.finish(timer.order, Status::Cancelled, BROKER_CANCEL, stamp);
            }
        }
        self.publish();
    }

    /// How an order the faults may touch is booked, and the delayed action to start for it:
    /// `accept_then_reject` first, then (MARKET orders only) `partial_fill`, then
    /// `fill_delay_ms`.
    fn fault_entry(
        &mut self,
        account: usize,
        order: &OrderRequest,
        lot: u64,
    ) -> (Entry, Option<(Duration, Action)>) {
        if let Some(reject) = self.take(account, |f| &mut f.accept_then_reject, |_| true) {
            return (
                Entry::Held,
                Some((reject.after, Action::Reject(reject.reason))),
            );
        }
        if order.terms.pricetype != PriceType::Market {
            return (Entry::Normal, None);
        }
        let splits = |fraction: f64| partial_quantity(order.terms.quantity, lot, fraction);
        if let Some(partial) = self.take(
            account,
            |f| &mut f.partial_fill,
            |p| splits(p.fraction).is_some(),
        ) && let Some(part) = splits(partial.fraction)
        {
            let rest = match partial.rest {
                Rest::Fill => Some((partial.rest_after, Action::Release)),
                Rest::Cancel => Some((partial.rest_after, Action::CancelRest)),
                Rest::Never => None,
            };
            return (Entry::Partial(part), rest);
        }
        let delay = self.longest(Some(account), |f| f.fill_delay_ms);
        if delay.is_zero() {
            (Entry::Normal, None)
        } else {
            (Entry::Held, Some((delay, Action::Release)))
        }
    }

    /// The index of `account`'s order `orderid`, or the gateway's 404.
    fn order_index(&self, account: usize, orderid: &str) -> Result<usize, Failure> {
        self.accounts[account]
            .book
            .find(orderid)
            .ok_or_else(|| order_not_found(orderid))
    }

    /// Cancels a working order of `account` (what filled stays filled).
    pub(crate) fn cancel_order(&mut self, account: usize, orderid: &str) -> Result<(), Failure> {
        let at = self.order_index(account, orderid)?;
        let stamp = self.stamp();
        self.accounts[account]
            .book
            .finish(at, Status::Cancelled, "cancelled (cancelorder)", stamp)
            .map_err(|status| not_working(orderid, "cancelled", status))?;
        self.publish();
        Ok(())
    }

    /// Modifies a working order of `account`: its quantity (not below what filled), price
    /// type, price and trigger price; the instrument, side and product must stay. The
    /// broker's checks apply to the order as modified, which is then evaluated against the
    /// current price.
    pub(crate) fn modify_order(
        &mut self,
        account: usize,
        orderid: &str,
        change: &OrderRequest,
    ) -> Result<(), Failure> {
        let at = self.order_index(account, orderid)?;
        let order = &self.accounts[account].book.orders[at];
        if !order.status.is_working() {
            return Err(not_working(orderid, "modified", order.status));
        }
        let req = &order.req;
        if (
            req.exchange,
            req.symbol.as_str(),
            req.terms.side,
            req.terms.product,
        ) != (
            change.exchange.as_str(),
            change.symbol.as_str(),
            change.terms.side,
            change.terms.product,
        ) {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                format!(
                    "Order {orderid} is a {} {} order for {}:{}; only its quantity, price type, \
                     price and trigger price can be modified",
                    req.terms.side.as_str(),
                    req.terms.product.as_str(),
                    req.exchange,
                    req.symbol
                ),
            ));
        }
        let instrument = req.instrument;
        if let Some(reason) = self.broker_check(instrument, &change.terms) {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                format!("Modification rejected by broker: {reason}"),
            ));
        }
        let now = self.now();
        let ltp = self.market.ltp(instrument, now);
        let stamp = self.stamp();
        let modify = Modify {
            quantity: change.terms.quantity,
            pricetype: change.terms.pricetype,
            price: change.terms.price,
            trigger_price: change.terms.trigger_price,
        };
        self.accounts[account]
            .book
            .modify(at, modify, ltp, stamp)
            .map_err(|e| match e {
                ModifyError::NotWorking(status) => not_working(orderid, "modified", status),
                ModifyError::BelowFilled(filled) => failure(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Order {orderid} cannot be modified: quantity {} is below the {filled} \
                         already filled",
                        change.terms.quantity
                    ),
                ),
            })?;
        self.publish();
        Ok(())
    }

    fn next_order_id(&mut self) -> String {
        self.order_seq += 1;
        let today = calendar::today_ist(self.now());
        format!("{}{:09}", today.format("%y%m%d"), self.order_seq)
    }

    fn log_rejection(
        &mut self,
        account: usize,
        received_us: i64,
        order: &OrderRequest,
        reason: &str,
    ) {
        self.orders_log.push(OrderRecord {
            account,
            received_us,
            outcome: Outcome::Rejected {
                symbol: order.symbol.clone(),
                exchange: order.exchange.clone(),
                action: order.terms.side.as_str().to_string(),
                quantity: order.terms.quantity,
                product: order.terms.product.as_str().to_string(),
                pricetype: order.terms.pricetype.as_str().to_string(),
                reason: reason.to_string(),
            },
        });
    }

    /// Places an order for `account`: runs the broker's checks, books it, fills it if it
    /// is marketable (or as the order faults say, queueing their timers), pushes the order
    /// updates. Returns the order id.
    pub(crate) fn place_order(
        &mut self,
        account: usize,
        order: OrderRequest,
        faultable: Faultable,
    ) -> Result<String, Failure> {
        let received_us = now_us();
        let reject = |core: &mut Core, status: StatusCode, reason: String| {
            core.log_rejection(account, received_us, &order, &reason);
            Err(failure(status, reason))
        };
        let Some(instrument) = self.market.id(&order.exchange, &order.symbol) else {
            let reason = format!(
                "Symbol {} not found for exchange {}",
                order.symbol, order.exchange
            );
            return reject(self, StatusCode::BAD_REQUEST, reason);
        };
        if faultable == Faultable::Yes
            && self
                .take(account, |f| &mut f.reject_orders, |_| true)
                .is_some()
        {
            let reason =
                "Order rejected by broker: simulated rejection (reject_orders fault)".to_string();
            return reject(self, StatusCode::BAD_REQUEST, reason);
        }
        if let Some(reason) = self.broker_check(instrument, &order.terms) {
            return reject(
                self,
                StatusCode::BAD_REQUEST,
                format!("Order rejected by broker: {reason}"),
            );
        }
        let now = self.now();
        let ltp = self.market.ltp(instrument, now);
        let stamp = self.stamp();
        let id = self.next_order_id();
        let lot = self.market.instruments[instrument].lot;
        let (entry, delayed) = match faultable {
            Faultable::Yes => self.fault_entry(account, &order, lot),
            Faultable::No => (Entry::Normal, None),
        };
        let meta = &self.market.instruments[instrument];
        let new = NewOrder {
            instrument,
            symbol: meta.symbol.clone(),
            exchange: meta.exchange,
            terms: order.terms,
        };
        let at = self.accounts[account]
            .book
            .place(id.clone(), new, ltp, stamp, entry);
        if let Some((after, action)) = delayed {
            self.timers.push(Timer {
                after,
                account,
                order: at,
                action,
            });
        }
        self.orders_log.push(OrderRecord {
            account,
            received_us,
            outcome: Outcome::Booked(at),
        });
        self.publish();
        Ok(id)
    }

    /// The reason a broker would refuse this order, if any.
    fn broker_check(&self, instrument: usize, terms: &Terms) -> Option<String> {
        let meta = &self.market.instruments[instrument];
        if meta.is_index() {
            return Some(format!(
                "{} on {} is an index and cannot be traded",
                meta.symbol, meta.exchange
            ));
        }
        if matches!(meta.kind, Kind::Option(_)) {
            if terms.product == Product::Cnc {
                return Some("CNC is not allowed for F&O instruments; use NRML or MIS".to_string());
            }
            if !terms.quantity.is_multiple_of(meta.lot) {
                return Some(format!(
                    "quantity {} is not a multiple of the lot size {} for {}",
                    terms.quantity, meta.lot, meta.symbol
                ));
            }
        }
        if let Some(freeze) = meta.freeze
            && terms.quantity > freeze
        {
            return Some(format!(
                "quantity {} exceeds the freeze quantity {} for {}; split the order",
                terms.quantity, freeze, meta.symbol
            ));
        }
        let (needs_price, needs_trigger) = match terms.pricetype {
            PriceType::Market => (false, false),
            PriceType::Limit => (true, false),
            PriceType::StopLoss => (true, true),
            PriceType::StopLossMarket => (false, true),
        };
        for (field, needed, value) in [
            ("price", needs_price, terms.price),
            ("trigger_price", needs_trigger, terms.trigger_price),
        ] {
            if needed && value <= 0.0 {
                return Some(format!(
                    "{field} is required for {} orders",
                    terms.pricetype.as_str()
                ));
            }
        }
        None
    }

    /// The signed net position of `account` in `symbol` for `product` (0 if none).
    pub(crate) fn net_position(
        &self,
        account: usize,
        exchange: &str,
        symbol: &str,
        product: Product,
    ) -> i64 {
        self.market
            .id(exchange, symbol)
            .map_or(0, |i| self.accounts[account].book.net_quantity(i, product))
    }

    /// Squares off every open position of `account` with MARKET orders in the
    /// position's product, split at the freeze quantity. Returns the order ids.
    pub(crate) fn close_all_positions(
        &mut self,
        account: usize,
        strategy: &str,
    ) -> Result<Vec<String>, Failure> {
        let open: Vec<(usize, Product, i64)> = self.accounts[account]
            .book
            .positions
            .iter()
            .filter(|p| p.quantity != 0)
            .map(|p| (p.instrument, p.product, p.quantity))
            .collect();
        let mut ids = Vec::new();
        for (instrument, product, quantity) in open {
            let meta = &self.market.instruments[instrument];
            let chunk = meta
                .freeze
                .map_or(u64::MAX, |freeze| (freeze / meta.lot).max(1) * meta.lot);
            let side = if quantity > 0 { Side::Sell } else { Side::Buy };
            let (symbol, exchange) = (meta.symbol.clone(), meta.exchange.to_string());
            let mut left = quantity.unsigned_abs();
            while left > 0 {
                let size = left.min(chunk);
                let order = OrderRequest {
                    symbol: symbol.clone(),
                    exchange: exchange.clone(),
                    terms: Terms {
                        side,
                        quantity: size,
                        pricetype: PriceType::Market,
                        product,
                        price: 0.0,
                        trigger_price: 0.0,
                        strategy: strategy.to_string(),
                    },
                };
                ids.push(self.place_order(account, order, Faultable::No)?);
                left -= size;
            }
        }
        Ok(ids)
    }

    /// Cancels every working order of `account`, partly filled ones included; returns their
    /// ids.
    pub(crate) fn cancel_all_orders(&mut self, account: usize) -> Vec<String> {
        let stamp = self.stamp();
        let cancelled = self.accounts[account].book.cancel_working(stamp);
        self.publish();
        self.prune_working();
        let book = &self.accounts[account].book;
        cancelled
            .iter()
            .map(|at| book.orders[*at].id.clone())
            .collect()
    }
}
