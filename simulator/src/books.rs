//! One account's orders, trades and positions. Pure bookkeeping: prices come in from
//! the caller, and so do the times things happen at ([`Stamp`]); nothing here knows about
//! clocks or transport. Every change of an order is kept in its history, from which the
//! lagged views (`*_at`) are computed.

use std::borrow::Cow;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Buy,
    Sell,
}

impl Side {
    pub(crate) fn parse(text: &str) -> Option<Side> {
        match text {
            "BUY" | "buy" => Some(Side::Buy),
            "SELL" | "sell" => Some(Side::Sell),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }

    fn sign(self) -> i64 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PriceType {
    Market,
    Limit,
    StopLoss,
    StopLossMarket,
}

impl PriceType {
    pub(crate) fn parse(text: &str) -> Option<PriceType> {
        match text {
            "MARKET" => Some(PriceType::Market),
            "LIMIT" => Some(PriceType::Limit),
            "SL" => Some(PriceType::StopLoss),
            "SL-M" => Some(PriceType::StopLossMarket),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PriceType::Market => "MARKET",
            PriceType::Limit => "LIMIT",
            PriceType::StopLoss => "SL",
            PriceType::StopLossMarket => "SL-M",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Product {
    Mis,
    Nrml,
    Cnc,
}

impl Product {
    pub(crate) fn parse(text: &str) -> Option<Product> {
        match text {
            "MIS" => Some(Product::Mis),
            "NRML" => Some(Product::Nrml),
            "CNC" => Some(Product::Cnc),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Product::Mis => "MIS",
            Product::Nrml => "NRML",
            Product::Cnc => "CNC",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Open,
    TriggerPending,
    Complete,
    Cancelled,
    Rejected,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::TriggerPending => "trigger pending",
            Status::Complete => "complete",
            Status::Cancelled => "cancelled",
            Status::Rejected => "rejected",
        }
    }

    pub(crate) fn is_working(self) -> bool {
        matches!(self, Status::Open | Status::TriggerPending)
    }

    /// The status a working order of this price type rests in before any trigger.
    fn resting(pricetype: PriceType) -> Status {
        match pricetype {
            PriceType::Market | PriceType::Limit => Status::Open,
            PriceType::StopLoss | PriceType::StopLossMarket => Status::TriggerPending,
        }
    }
}

/// When something happened: on the simulator's clock (the `timestamp` fields, epoch ms) and
/// on the machine's wall clock (`at_us`, epoch µs, which the lagged views compare).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub ms: i64,
    pub us: i64,
}

/// What an order asks for: the same on the request as a client sent it and on the order as
/// booked (where modifyorder may change its quantity and prices).
#[derive(Clone, Debug)]
pub(crate) struct Terms {
    pub side: Side,
    pub quantity: u64,
    pub pricetype: PriceType,
    pub product: Product,
    pub price: f64,
    pub trigger_price: f64,
    pub strategy: String,
}

/// An order to book: its instrument, named as the market lists it, and its terms.
#[derive(Clone, Debug)]
pub(crate) struct NewOrder {
    pub instrument: usize,
    pub symbol: String,
    pub exchange: &'static str,
    pub terms: Terms,
}

/// An order as it was after one change, and so as the books showed it from `at` on.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub at: Stamp,
    pub status: Status,
    pub quantity: u64,
    pub pricetype: PriceType,
    pub price: f64,
    pub trigger_price: f64,
    pub filled: u64,
    /// Volume-weighted over the fills so far (0 before the first).
    pub average_price: f64,
    /// What changed ("placed", "filled 4 at 1500", ...); for a rejection, its reason.
    pub reason: String,
}

impl Snapshot {
    /// What is still to fill: nothing once the order is no longer working.
    pub(crate) fn pending(&self) -> u64 {
        if self.status.is_working() {
            self.quantity.saturating_sub(self.filled)
        } else {
            0
        }
    }

    /// The broker's reason for a rejected order, empty otherwise.
    pub(crate) fn rejection_reason(&self) -> &str {
        if self.status == Status::Rejected {
            &self.reason
        } else {
            ""
        }
    }
}

/// How a new order is booked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Evaluated against the price at once, as a broker does.
    Normal,
    /// Booked working and left alone (not matched against prices) until released, rejected
    /// or cancelled.
    Held,
    /// This many fill at once; the rest is held.
    Partial(u64),
}

#[derive(Clone, Debug)]
pub(crate) struct Order {
    pub id: String,
    /// The order as it stands: modifyorder changes its quantity, price type and prices.
    pub req: NewOrder,
    pub status: Status,
    pub filled: u64,
    pub average_price: f64,
    /// A stop-loss limit order whose trigger has been hit (it now rests as a limit).
    triggered: bool,
    /// Held by a fault: not matched against prices until released.
    held: bool,
    /// Every state the order has been in, oldest first, its placement included.
    pub history: Vec<Snapshot>,
}

impl Order {
    /// The order as the books showed it at `cutoff_us` (now when `None`); `None` if it had
    /// not been placed yet.
    pub(crate) fn view(&self, cutoff_us: Option<i64>) -> Option<&Snapshot> {
        match cutoff_us {
            None => self.history.last(),
            Some(cutoff) => self.history.iter().rev().find(|s| s.at.us <= cutoff),
        }
    }
}

/// A change modifyorder asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Modify {
    pub quantity: u64,
    pub pricetype: PriceType,
    pub price: f64,
    pub trigger_price: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ModifyError {
    /// Only a working order can change; this is its status.
    NotWorking(Status),
    /// The new quantity is below what already filled.
    BelowFilled(u64),
}

#[derive(Clone, Debug)]
pub(crate) struct Trade {
    pub orderid: String,
    pub instrument: usize,
    pub symbol: String,
    pub exchange: &'static str,
    pub side: Side,
    pub product: Product,
    pub quantity: u64,
    pub price: f64,
    pub at: Stamp,
}

/// A position's net quantity after one fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NetPoint {
    pub at_us: i64,
    pub net: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Position {
    pub instrument: usize,
    pub symbol: String,
    pub exchange: &'static str,
    pub product: Product,
    /// Signed net quantity.
    pub quantity: i64,
    /// Average price of the open quantity (0 when flat).
    pub average_price: f64,
    pub realized: f64,
    /// The net quantity after each fill, in order.
    pub history: Vec<NetPoint>,
}

impl Position {
    fn apply(&mut self, quantity: i64, price: f64, at_us: i64) {
        let held = self.quantity;
        self.history.push(NetPoint {
            at_us,
            net: held + quantity,
        });
        if held == 0 || held.signum() == quantity.signum() {
            let total = held.abs() + quantity.abs();
            self.average_price = (self.average_price * held.abs() as f64
                + price * quantity.abs() as f64)
                / total as f64;
            self.quantity = held + quantity;
            return;
        }
        let closing = quantity.abs().min(held.abs());
        self.realized += closing as f64 * (price - self.average_price) * held.signum() as f64;
        self.quantity = held + quantity;
        if self.quantity == 0 {
            self.average_price = 0.0;
        } else if self.quantity.signum() != held.signum() {
            self.average_price = price;
        }
    }

    pub(crate) fn unrealized(&self, ltp: f64) -> f64 {
        self.quantity as f64 * (ltp - self.average_price)
    }
}

/// Books one trade into the positions (a new position on the first trade of an
/// instrument and product).
fn apply_trade(positions: &mut Vec<Position>, trade: &Trade) {
    let signed = trade.side.sign() * trade.quantity as i64;
    let at = match positions
        .iter()
        .position(|p| p.instrument == trade.instrument && p.product == trade.product)
    {
        Some(at) => at,
        None => {
            positions.push(Position {
                instrument: trade.instrument,
                symbol: trade.symbol.clone(),
                exchange: trade.exchange,
                product: trade.product,
                quantity: 0,
                average_price: 0.0,
                realized: 0.0,
                history: Vec::new(),
            });
            positions.len() - 1
        }
    };
    positions[at].apply(signed, trade.price, trade.at.us);
}

#[derive(Debug)]
pub(crate) struct Funds {
    pub available_cash: f64,
    pub realized: f64,
    pub unrealized: f64,
    pub utilised: f64,
}

#[derive(Debug, Default)]
pub(crate) struct Book {
    pub orders: Vec<Order>,
    pub trades: Vec<Trade>,
    pub positions: Vec<Position>,
    /// (order, history entry) of every change not yet published.
    changes: Vec<(usize, usize)>,
}

impl Book {
    /// Books a new order, then evaluates it at `ltp`, holds it or fills part of it as
    /// `entry` says. Returns its index.
    pub(crate) fn place(
        &mut self,
        id: String,
        req: NewOrder,
        ltp: f64,
        at: Stamp,
        entry: Entry,
    ) -> usize {
        self.orders.push(Order {
            id,
            status: Status::resting(req.terms.pricetype),
            req,
            filled: 0,
            average_price: 0.0,
            triggered: false,
            held: entry != Entry::Normal,
            history: Vec::new(),
        });
        let order = self.orders.len() - 1;
        self.record(order, at, "placed");
        match entry {
            Entry::Normal => {
                self.evaluate(order, ltp, at);
            }
            Entry::Held => {}
            Entry::Partial(quantity) => self.fill(order, quantity, ltp, at),
        }
        order
    }

    /// Appends the order's current state to its history.
    fn record(&mut self, at: usize, stamp: Stamp, reason: impl Into<String>) {
        let order = &mut self.orders[at];
        order.history.push(Snapshot {
            at: stamp,
            status: order.status,
            quantity: order.req.terms.quantity,
            pricetype: order.req.terms.pricetype,
            price: order.req.terms.price,
            trigger_price: order.req.terms.trigger_price,
            filled: order.filled,
            average_price: order.average_price,
            reason: reason.into(),
        });
        self.changes.push((at, order.history.len() - 1));
    }

    /// The (order, history entry) of every change since the last call, oldest first.
    pub(crate) fn take_changes(&mut self) -> Vec<(usize, usize)> {
        std::mem::take(&mut self.changes)
    }

    pub(crate) fn find(&self, orderid: &str) -> Option<usize> {
        self.orders.iter().position(|o| o.id == orderid)
    }

    pub(crate) fn has_working(&self, instrument: usize) -> bool {
        self.orders
            .iter()
            .any(|o| o.req.instrument == instrument && o.status.is_working())
    }

    /// Re-checks every working order on `instrument` that no fault holds against `ltp`;
    /// returns the orders whose state changed.
    pub(crate) fn match_working(&mut self, instrument: usize, ltp: f64, at: Stamp) -> Vec<usize> {
        let candidates: Vec<usize> = self
            .orders
            .iter()
            .enumerate()
            .filter(|(_, o)| o.req.instrument == instrument && o.status.is_working() && !o.held)
            .map(|(order, _)| order)
            .collect();
        candidates
            .into_iter()
            .filter(|order| self.evaluate(*order, ltp, at))
            .collect()
    }

    /// Returns true when the order's state changed.
    fn evaluate(&mut self, at: usize, ltp: f64, stamp: Stamp) -> bool {
        let order = &mut self.orders[at];
        let side = order.req.terms.side;
        let crossed = |limit: f64| match side {
            Side::Buy => ltp <= limit,
            Side::Sell => ltp >= limit,
        };
        let triggered = |trigger: f64| match side {
            Side::Buy => ltp >= trigger,
            Side::Sell => ltp <= trigger,
        };
        let fill = match order.req.terms.pricetype {
            PriceType::Market => true,
            PriceType::Limit => crossed(order.req.terms.price),
            PriceType::StopLossMarket => triggered(order.req.terms.trigger_price),
            PriceType::StopLoss => {
                if !order.triggered && triggered(order.req.terms.trigger_price) {
                    order.triggered = true;
                    order.status = Status::Open;
                    let rests = !crossed(order.req.terms.price);
                    self.record(at, stamp, "triggered");
                    if rests {
                        return true;
                    }
                }
                self.orders[at].triggered && crossed(self.orders[at].req.terms.price)
            }
        };
        if fill {
            let order = &self.orders[at];
            let rest = order.req.terms.quantity.saturating_sub(order.filled);
            self.fill(at, rest, ltp, stamp);
        }
        fill
    }

    /// Fills `quantity` of an order at `price`: one trade, the position, the order's
    /// average price and status.
    fn fill(&mut self, at: usize, quantity: u64, price: f64, stamp: Stamp) {
        let order = &mut self.orders[at];
        let before = order.filled;
        order.filled += quantity;
        order.average_price = (order.average_price * before as f64 + price * quantity as f64)
            / order.filled.max(1) as f64;
        if order.filled >= order.req.terms.quantity {
            order.status = Status::Complete;
            order.held = false;
        }
        let req = &order.req;
        let trade = Trade {
            orderid: order.id.clone(),
            instrument: req.instrument,
            symbol: req.symbol.clone(),
            exchange: req.exchange,
            side: req.terms.side,
            product: req.terms.product,
            quantity,
            price,
            at: stamp,
        };
        apply_trade(&mut self.positions, &trade);
        self.trades.push(trade);
        self.record(at, stamp, format!("filled {quantity} at {price}"));
    }

    /// Lets an order a fault held be matched again, evaluating it at `ltp` now; false if it
    /// is no longer working.
    pub(crate) fn release(&mut self, at: usize, ltp: f64, stamp: Stamp) -> bool {
        if !self.orders[at].status.is_working() {
            return false;
        }
        self.orders[at].held = false;
        self.evaluate(at, ltp, stamp);
        true
    }

    /// Ends a working order as `status` (cancelled, keeping what filled, or rejected) for
    /// `reason`. Fails with the order's status when it is no longer working.
    pub(crate) fn finish(
        &mut self,
        at: usize,
        status: Status,
        reason: &str,
        stamp: Stamp,
    ) -> Result<(), Status> {
        let order = &mut self.orders[at];
        if !order.status.is_working() {
            return Err(order.status);
        }
        order.status = status;
        order.held = false;
        self.record(at, stamp, reason);
        Ok(())
    }

    /// Cancels every working order, partly filled ones included; returns their indices.
    pub(crate) fn cancel_working(&mut self, stamp: Stamp) -> Vec<usize> {
        (0..self.orders.len())
            .filter(|at| {
                self.finish(*at, Status::Cancelled, "cancelled (cancelallorder)", stamp)
                    .is_ok()
            })
            .collect()
    }

    /// Changes a working order and evaluates it at `ltp` (unless a fault holds it). An order
    /// modified down to what already filled is complete.
    pub(crate) fn modify(
        &mut self,
        at: usize,
        change: Modify,
        ltp: f64,
        stamp: Stamp,
    ) -> Result<(), ModifyError> {
        let order = &mut self.orders[at];
        if !order.status.is_working() {
            return Err(ModifyError::NotWorking(order.status));
        }
        if change.quantity < order.filled {
            return Err(ModifyError::BelowFilled(order.filled));
        }
        order.req.terms.quantity = change.quantity;
        order.req.terms.pricetype = change.pricetype;
        order.req.terms.price = change.price;
        order.req.terms.trigger_price = change.trigger_price;
        order.triggered = false;
        order.status = if order.filled == change.quantity {
            Status::Complete
        } else {
            Status::resting(change.pricetype)
        };
        let evaluate = order.status.is_working() && !order.held;
        self.record(at, stamp, "modified");
        if evaluate {
            self.evaluate(at, ltp, stamp);
        }
        Ok(())
    }

    /// The orders as the books showed them at `cutoff_us` (now when `None`), each in the
    /// state it was in then; orders placed later are left out.
    pub(crate) fn orders_at(
        &self,
        cutoff_us: Option<i64>,
    ) -> impl Iterator<Item = (&Order, &Snapshot)> {
        self.orders
            .iter()
            .filter_map(move |o| o.view(cutoff_us).map(|s| (o, s)))
    }

    /// The trades made by `cutoff_us` (all when `None`).
    pub(crate) fn trades_at(&self, cutoff_us: Option<i64>) -> impl Iterator<Item = &Trade> {
        self.trades
            .iter()
            .filter(move |t| cutoff_us.is_none_or(|cutoff| t.at.us <= cutoff))
    }

    /// The positions as the trades made by `cutoff_us` left them (now when `None`).
    pub(crate) fn positions_at(&self, cutoff_us: Option<i64>) -> Cow<'_, [Position]> {
        if cutoff_us.is_none() {
            return Cow::Borrowed(&self.positions);
        }
        let mut positions = Vec::new();
        for trade in self.trades_at(cutoff_us) {
            apply_trade(&mut positions, trade);
        }
        Cow::Owned(positions)
    }

    pub(crate) fn net_quantity(&self, instrument: usize, product: Product) -> i64 {
        self.positions
            .iter()
            .find(|p| p.instrument == instrument && p.product == product)
            .map_or(0, |p| p.quantity)
    }

    /// `ltp_of` gives the current price of an instrument.
    pub(crate) fn funds(&self, initial_cash: f64, mut ltp_of: impl FnMut(usize) -> f64) -> Funds {
        let mut funds = Funds {
            available_cash: 0.0,
            realized: 0.0,
            unrealized: 0.0,
            utilised: 0.0,
        };
        for p in &self.positions {
            funds.realized += p.realized;
            if p.quantity != 0 {
                funds.unrealized += p.unrealized(ltp_of(p.instrument));
                funds.utilised += p.quantity.unsigned_abs() as f64 * p.average_price;
            }
        }
        funds.available_cash = initial_cash + funds.realized - funds.utilised;
        funds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: i64) -> Stamp {
        Stamp { ms: n, us: n }
    }

    fn market(side: Side, quantity: u64) -> NewOrder {
        order(side, quantity, PriceType::Market, 0.0, 0.0)
    }

    fn limit(side: Side, quantity: u64, price: f64) -> NewOrder {
        order(side, quantity, PriceType::Limit, price, 0.0)
    }

    fn stop_loss(side: Side, price: f64, trigger: f64) -> NewOrder {
        order(side, 1, PriceType::StopLoss, price, trigger)
    }

    fn stop_loss_market(side: Side, trigger: f64) -> NewOrder {
        order(side, 1, PriceType::StopLossMarket, 0.0, trigger)
    }

    /// Places `req` at `ltp` at time `t`, numbering the orders 1, 2, …
    fn put(book: &mut Book, req: NewOrder, ltp: f64, t: i64, entry: Entry) -> usize {
        let id = (book.orders.len() + 1).to_string();
        book.place(id, req, ltp, at(t), entry)
    }

    /// [`put`] without a fault: the order is evaluated at once.
    fn put_normal(book: &mut Book, req: NewOrder, ltp: f64, t: i64) -> usize {
        put(book, req, ltp, t, Entry::Normal)
    }

    fn order(
        side: Side,
        quantity: u64,
        pricetype: PriceType,
        price: f64,
        trigger: f64,
    ) -> NewOrder {
        NewOrder {
            instrument: 3,
            symbol: "RELIANCE".into(),
            exchange: "NSE",
            terms: Terms {
                side,
                quantity,
                pricetype,
                product: Product::Mis,
                price,
                trigger_price: trigger,
                strategy: "t".into(),
            },
        }
    }

    #[test]
    fn market_orders_fill_and_positions_track_average_and_realized_pnl() {
        let mut book = Book::default();
        put_normal(&mut book, market(Side::Buy, 10), 100.0, 1);
        put_normal(&mut book, market(Side::Buy, 10), 110.0, 2);
        let p = &book.positions[0];
        assert_eq!(p.quantity, 20);
        assert!((p.average_price - 105.0).abs() < 1e-9);
        put_normal(&mut book, market(Side::Sell, 5), 120.0, 3);
        let p = &book.positions[0];
        assert_eq!(p.quantity, 15);
        assert!((p.average_price - 105.0).abs() < 1e-9);
        assert!((p.realized - 75.0).abs() < 1e-9);
        // Flip to short: the remaining 15 close at 90, 5 open short at 90.
        put_normal(&mut book, market(Side::Sell, 20), 90.0, 4);
        let p = &book.positions[0];
        assert_eq!(p.quantity, -5);
        assert!((p.average_price - 90.0).abs() < 1e-9);
        assert!((p.realized - (75.0 - 225.0)).abs() < 1e-9);
        assert!((p.unrealized(80.0) - 50.0).abs() < 1e-9);
        put_normal(&mut book, market(Side::Buy, 5), 80.0, 5);
        let p = &book.positions[0];
        assert_eq!(p.quantity, 0);
        assert_eq!(p.average_price, 0.0);
        assert!((p.realized - (-150.0 + 50.0)).abs() < 1e-9);
        assert_eq!(book.trades.len(), 5);
        assert!(book.orders.iter().all(|o| o.status == Status::Complete));
    }

    #[test]
    fn limit_orders_rest_until_marketable_and_can_be_cancelled() {
        let mut book = Book::default();
        let buy = put_normal(&mut book, limit(Side::Buy, 1, 95.0), 100.0, 1);
        let sell = put_normal(&mut book, limit(Side::Sell, 1, 99.0), 100.0, 1);
        assert_eq!(book.orders[buy].status, Status::Open);
        assert_eq!(book.orders[sell].status, Status::Complete);
        assert_eq!(book.orders[sell].average_price, 100.0);
        assert!(book.has_working(3));
        assert!(book.match_working(3, 96.0, at(2)).is_empty());
        assert_eq!(book.match_working(3, 94.5, at(3)), vec![buy]);
        assert_eq!(book.orders[buy].status, Status::Complete);
        assert_eq!(book.orders[buy].average_price, 94.5);
        put_normal(&mut book, limit(Side::Buy, 1, 50.0), 94.5, 4);
        assert_eq!(book.cancel_working(at(5)), vec![2]);
        assert_eq!(book.orders[2].status, Status::Cancelled);
        assert!(!book.has_working(3));
    }

    #[test]
    fn stop_orders_wait_for_their_trigger() {
        let mut book = Book::default();
        let slm = put_normal(&mut book, stop_loss_market(Side::Sell, 95.0), 100.0, 1);
        let sl = put_normal(&mut book, stop_loss(Side::Sell, 93.0, 95.0), 100.0, 1);
        assert_eq!(book.orders[slm].status, Status::TriggerPending);
        assert_eq!(book.orders[sl].status, Status::TriggerPending);
        // 94: both triggered; SL-M fills, SL rests as a limit at 93 (94 >= 93 is marketable for a sell).
        let changed = book.match_working(3, 94.0, at(2));
        assert_eq!(changed, vec![slm, sl]);
        assert_eq!(book.orders[slm].status, Status::Complete);
        assert_eq!(book.orders[sl].status, Status::Complete);
        assert_eq!(book.net_quantity(3, Product::Mis), -2);
        let funds = book.funds(1000.0, |_| 90.0);
        assert!((funds.unrealized - 8.0).abs() < 1e-9);
        assert!((funds.utilised - 188.0).abs() < 1e-9);
        assert!((funds.available_cash - 812.0).abs() < 1e-9);
    }

    fn statuses(order: &Order) -> Vec<(Status, u64)> {
        order.history.iter().map(|s| (s.status, s.filled)).collect()
    }

    #[test]
    fn a_partial_fill_books_what_filled_and_the_rest_fills_when_released() {
        let mut book = Book::default();
        let o = put(
            &mut book,
            market(Side::Buy, 10),
            100.0,
            1,
            Entry::Partial(4),
        );
        assert_eq!(book.orders[o].status, Status::Open);
        assert_eq!(book.net_quantity(3, Product::Mis), 4);
        // A held order is not matched against prices.
        assert!(book.match_working(3, 101.0, at(2)).is_empty());
        assert!(book.release(o, 102.0, at(3)));
        let order_now = &book.orders[o];
        assert_eq!(order_now.status, Status::Complete);
        assert!((order_now.average_price - 101.2).abs() < 1e-9);
        assert_eq!(
            statuses(order_now),
            [(Status::Open, 0), (Status::Open, 4), (Status::Complete, 10)]
        );
        let fills: Vec<(u64, f64)> = book.trades.iter().map(|t| (t.quantity, t.price)).collect();
        assert_eq!(fills, [(4, 100.0), (6, 102.0)]);
        let nets: Vec<i64> = book.positions[0].history.iter().map(|p| p.net).collect();
        assert_eq!(nets, [4, 10]);
        assert!(
            !book.release(o, 103.0, at(4)),
            "a complete order stays complete"
        );
    }

    #[test]
    fn finished_and_modified_orders_keep_what_filled() {
        let mut book = Book::default();
        let held = put(&mut book, market(Side::Sell, 5), 100.0, 1, Entry::Held);
        assert_eq!(
            book.finish(held, Status::Rejected, "RMS: no margin", at(2)),
            Ok(())
        );
        let last = book.orders[held].view(None).unwrap();
        assert_eq!(last.rejection_reason(), "RMS: no margin");
        assert_eq!(last.pending(), 0);
        assert_eq!(
            book.finish(held, Status::Cancelled, "late", at(3)),
            Err(Status::Rejected)
        );

        let part = put(
            &mut book,
            market(Side::Buy, 10),
            100.0,
            4,
            Entry::Partial(6),
        );
        let change = |quantity| Modify {
            quantity,
            pricetype: PriceType::Market,
            price: 0.0,
            trigger_price: 0.0,
        };
        assert_eq!(
            book.modify(part, change(5), 100.0, at(5)),
            Err(ModifyError::BelowFilled(6))
        );
        assert_eq!(book.modify(part, change(6), 100.0, at(6)), Ok(()));
        assert_eq!(book.orders[part].status, Status::Complete);
        assert_eq!(
            book.modify(part, change(8), 100.0, at(7)),
            Err(ModifyError::NotWorking(Status::Complete))
        );

        // A resting limit moved to a marketable price fills at once.
        let limit = put_normal(&mut book, limit(Side::Buy, 2, 90.0), 100.0, 8);
        let marketable = Modify {
            quantity: 3,
            pricetype: PriceType::Limit,
            price: 101.0,
            trigger_price: 0.0,
        };
        assert_eq!(book.modify(limit, marketable, 100.0, at(9)), Ok(()));
        assert_eq!(book.orders[limit].status, Status::Complete);
        assert_eq!(book.orders[limit].filled, 3);
        assert_eq!(book.net_quantity(3, Product::Mis), 9);
        // Cancelling everything leaves the finished orders alone.
        assert!(book.cancel_working(at(10)).is_empty());
    }

    #[test]
    fn lagged_views_show_the_books_as_they_were() {
        let mut book = Book::default();
        put_normal(&mut book, market(Side::Buy, 4), 100.0, 10);
        put_normal(&mut book, limit(Side::Sell, 4, 110.0), 100.0, 20);
        book.match_working(3, 110.0, at(30));
        let seen = |cutoff: i64| -> Vec<(String, Status)> {
            book.orders_at(Some(cutoff))
                .map(|(o, s)| (o.id.clone(), s.status))
                .collect()
        };
        assert!(seen(5).is_empty());
        assert_eq!(seen(15), [("1".to_string(), Status::Complete)]);
        assert_eq!(
            seen(25),
            [
                ("1".to_string(), Status::Complete),
                ("2".to_string(), Status::Open)
            ]
        );
        assert_eq!(seen(30)[1].1, Status::Complete);
        assert_eq!(book.trades_at(Some(25)).count(), 1);
        assert_eq!(book.trades_at(None).count(), 2);
        assert_eq!(book.positions_at(Some(25))[0].quantity, 4);
        assert!(book.positions_at(Some(5)).is_empty());
        // Replaying every trade gives the live positions.
        let replayed = book.positions_at(Some(i64::MAX));
        let live = book.positions_at(None);
        assert_eq!(replayed.len(), live.len());
        for (r, l) in replayed.iter().zip(live.iter()) {
            assert_eq!(
                (r.quantity, r.average_price, r.realized, &r.history),
                (l.quantity, l.average_price, l.realized, &l.history)
            );
        }
        assert!((live[0].realized - 40.0).abs() < 1e-9);
    }

    #[test]
    fn stop_limit_orders_record_their_trigger() {
        let mut book = Book::default();
        let sl = put_normal(&mut book, stop_loss(Side::Buy, 106.0, 105.0), 100.0, 1);
        // Triggered at 107 but above the limit: it rests open.
        assert_eq!(book.match_working(3, 107.0, at(2)), vec![sl]);
        assert_eq!(
            statuses(&book.orders[sl]),
            [(Status::TriggerPending, 0), (Status::Open, 0)]
        );
        assert_eq!(book.orders[sl].history[1].reason, "triggered");
        book.match_working(3, 106.0, at(3));
        assert_eq!(book.orders[sl].status, Status::Complete);
        let changes: Vec<usize> = book.take_changes().iter().map(|c| c.1).collect();
        assert_eq!(changes, [0, 1, 2]);
        assert!(book.take_changes().is_empty());
    }
}
