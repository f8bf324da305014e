//! One account's orders, trades and positions. Pure bookkeeping: prices come in from
//! the caller, nothing here knows about time sources or transport.

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
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::TriggerPending => "trigger pending",
            Status::Complete => "complete",
            Status::Cancelled => "cancelled",
        }
    }

    pub(crate) fn is_working(self) -> bool {
        matches!(self, Status::Open | Status::TriggerPending)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct NewOrder {
    pub instrument: usize,
    pub symbol: String,
    pub exchange: &'static str,
    pub side: Side,
    pub quantity: u64,
    pub pricetype: PriceType,
    pub product: Product,
    pub price: f64,
    pub trigger_price: f64,
    pub strategy: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Order {
    pub id: String,
    pub req: NewOrder,
    pub status: Status,
    pub filled: u64,
    pub average_price: f64,
    /// A stop-loss limit order whose trigger has been hit (it now rests as a limit).
    triggered: bool,
    pub updated_ms: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Trade {
    pub orderid: String,
    pub symbol: String,
    pub exchange: &'static str,
    pub side: Side,
    pub product: Product,
    pub quantity: u64,
    pub price: f64,
    pub time_ms: i64,
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
}

impl Position {
    fn apply(&mut self, quantity: i64, price: f64) {
        let held = self.quantity;
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
}

impl Book {
    /// Books a new order and fills it at `ltp` if it is marketable now. Returns its index.
    pub(crate) fn place(&mut self, id: String, req: NewOrder, ltp: f64, now_ms: i64) -> usize {
        let status = match req.pricetype {
            PriceType::Market | PriceType::Limit => Status::Open,
            PriceType::StopLoss | PriceType::StopLossMarket => Status::TriggerPending,
        };
        self.orders.push(Order {
            id,
            req,
            status,
            filled: 0,
            average_price: 0.0,
            triggered: false,
            updated_ms: now_ms,
        });
        let at = self.orders.len() - 1;
        self.evaluate(at, ltp, now_ms);
        at
    }

    pub(crate) fn has_working(&self, instrument: usize) -> bool {
        self.orders
            .iter()
            .any(|o| o.req.instrument == instrument && o.status.is_working())
    }

    /// Re-checks every working order on `instrument` against `ltp`; returns the orders
    /// whose state changed.
    pub(crate) fn match_working(&mut self, instrument: usize, ltp: f64, now_ms: i64) -> Vec<usize> {
        let candidates: Vec<usize> = self
            .orders
            .iter()
            .enumerate()
            .filter(|(_, o)| o.req.instrument == instrument && o.status.is_working())
            .map(|(at, _)| at)
            .collect();
        candidates
            .into_iter()
            .filter(|at| self.evaluate(*at, ltp, now_ms))
            .collect()
    }

    /// Returns true when the order's state changed.
    fn evaluate(&mut self, at: usize, ltp: f64, now_ms: i64) -> bool {
        let order = &mut self.orders[at];
        let side = order.req.side;
        let crossed = |limit: f64| match side {
            Side::Buy => ltp <= limit,
            Side::Sell => ltp >= limit,
        };
        let triggered = |trigger: f64| match side {
            Side::Buy => ltp >= trigger,
            Side::Sell => ltp <= trigger,
        };
        let fill = match order.req.pricetype {
            PriceType::Market => true,
            PriceType::Limit => crossed(order.req.price),
            PriceType::StopLossMarket => triggered(order.req.trigger_price),
            PriceType::StopLoss => {
                if !order.triggered && triggered(order.req.trigger_price) {
                    order.triggered = true;
                    order.status = Status::Open;
                    order.updated_ms = now_ms;
                    if !crossed(order.req.price) {
                        return true;
                    }
                }
                order.triggered && crossed(order.req.price)
            }
        };
        if fill {
            self.fill(at, ltp, now_ms);
        }
        fill
    }

    fn fill(&mut self, at: usize, price: f64, now_ms: i64) {
        let order = &mut self.orders[at];
        order.status = Status::Complete;
        order.filled = order.req.quantity;
        order.average_price = price;
        order.updated_ms = now_ms;
        let req = order.req.clone();
        self.trades.push(Trade {
            orderid: order.id.clone(),
            symbol: req.symbol.clone(),
            exchange: req.exchange,
            side: req.side,
            product: req.product,
            quantity: req.quantity,
            price,
            time_ms: now_ms,
        });
        let signed = req.side.sign() * req.quantity as i64;
        match self
            .positions
            .iter_mut()
            .find(|p| p.instrument == req.instrument && p.product == req.product)
        {
            Some(position) => position.apply(signed, price),
            None => {
                let mut position = Position {
                    instrument: req.instrument,
                    symbol: req.symbol,
                    exchange: req.exchange,
                    product: req.product,
                    quantity: 0,
                    average_price: 0.0,
                    realized: 0.0,
                };
                position.apply(signed, price);
                self.positions.push(position);
            }
        }
    }

    /// Cancels every open or trigger-pending order; returns their indices.
    pub(crate) fn cancel_working(&mut self, now_ms: i64) -> Vec<usize> {
        let mut cancelled = Vec::new();
        for (at, order) in self.orders.iter_mut().enumerate() {
            if order.status.is_working() {
                order.status = Status::Cancelled;
                order.updated_ms = now_ms;
                cancelled.push(at);
            }
        }
        cancelled
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
            side,
            quantity,
            pricetype,
            product: Product::Mis,
            price,
            trigger_price: trigger,
            strategy: "t".into(),
        }
    }

    #[test]
    fn market_orders_fill_and_positions_track_average_and_realized_pnl() {
        let mut book = Book::default();
        book.place(
            "1".into(),
            order(Side::Buy, 10, PriceType::Market, 0.0, 0.0),
            100.0,
            1,
        );
        book.place(
            "2".into(),
            order(Side::Buy, 10, PriceType::Market, 0.0, 0.0),
            110.0,
            2,
        );
        let p = &book.positions[0];
        assert_eq!(p.quantity, 20);
        assert!((p.average_price - 105.0).abs() < 1e-9);
        book.place(
            "3".into(),
            order(Side::Sell, 5, PriceType::Market, 0.0, 0.0),
            120.0,
            3,
        );
        let p = &book.positions[0];
        assert_eq!(p.quantity, 15);
        assert!((p.average_price - 105.0).abs() < 1e-9);
        assert!((p.realized - 75.0).abs() < 1e-9);
        // Flip to short: the remaining 15 close at 90, 5 open short at 90.
        book.place(
            "4".into(),
            order(Side::Sell, 20, PriceType::Market, 0.0, 0.0),
            90.0,
            4,
        );
        let p = &book.positions[0];
        assert_eq!(p.quantity, -5);
        assert!((p.average_price - 90.0).abs() < 1e-9);
        assert!((p.realized - (75.0 - 225.0)).abs() < 1e-9);
        assert!((p.unrealized(80.0) - 50.0).abs() < 1e-9);
        book.place(
            "5".into(),
            order(Side::Buy, 5, PriceType::Market, 0.0, 0.0),
            80.0,
            5,
        );
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
        let buy = book.place(
            "1".into(),
            order(Side::Buy, 1, PriceType::Limit, 95.0, 0.0),
            100.0,
            1,
        );
        let sell = book.place(
            "2".into(),
            order(Side::Sell, 1, PriceType::Limit, 99.0, 0.0),
            100.0,
            1,
        );
        assert_eq!(book.orders[buy].status, Status::Open);
        assert_eq!(book.orders[sell].status, Status::Complete);
        assert_eq!(book.orders[sell].average_price, 100.0);
        assert!(book.has_working(3));
        assert!(book.match_working(3, 96.0, 2).is_empty());
        assert_eq!(book.match_working(3, 94.5, 3), vec![buy]);
        assert_eq!(book.orders[buy].status, Status::Complete);
        assert_eq!(book.orders[buy].average_price, 94.5);
        book.place(
            "3".into(),
            order(Side::Buy, 1, PriceType::Limit, 50.0, 0.0),
            94.5,
            4,
        );
        assert_eq!(book.cancel_working(5), vec![2]);
        assert_eq!(book.orders[2].status, Status::Cancelled);
        assert!(!book.has_working(3));
    }

    #[test]
    fn stop_orders_wait_for_their_trigger() {
        let mut book = Book::default();
        let slm = book.place(
            "1".into(),
            order(Side::Sell, 1, PriceType::StopLossMarket, 0.0, 95.0),
            100.0,
            1,
        );
        let sl = book.place(
            "2".into(),
            order(Side::Sell, 1, PriceType::StopLoss, 93.0, 95.0),
            100.0,
            1,
        );
        assert_eq!(book.orders[slm].status, Status::TriggerPending);
        assert_eq!(book.orders[sl].status, Status::TriggerPending);
        // 94: both triggered; SL-M fills, SL rests as a limit at 93 (94 >= 93 is marketable for a sell).
        let changed = book.match_working(3, 94.0, 2);
        assert_eq!(changed, vec![slm, sl]);
        assert_eq!(book.orders[slm].status, Status::Complete);
        assert_eq!(book.orders[sl].status, Status::Complete);
        assert_eq!(book.net_quantity(3, Product::Mis), -2);
        let funds = book.funds(1000.0, |_| 90.0);
        assert!((funds.unrealized - 8.0).abs() < 1e-9);
        assert!((funds.utilised - 188.0).abs() < 1e-9);
        assert!((funds.available_cash - 812.0).abs() < 1e-9);
    }
}
