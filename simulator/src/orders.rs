//! Order handling on the simulated accounts: broker-side checks, fills at the current
//! price, square-off, cancel-all, and the received-orders log behind `/sim/orders`.

use actix_web::http::StatusCode;

use super::books::{NewOrder, PriceType, Product, Side};
use super::calendar;
use super::market::Kind;
use super::schema::{Failure, failure};
use super::state::{Core, OrderRecord, Outcome, now_us};

/// An order as requested, before any broker-side check.
#[derive(Clone, Debug)]
pub(crate) struct OrderRequest {
    pub symbol: String,
    pub exchange: String,
    pub side: Side,
    pub quantity: u64,
    pub pricetype: PriceType,
    pub product: Product,
    pub price: f64,
    pub trigger_price: f64,
    pub strategy: String,
}

/// Whether a `reject_orders` fault may answer this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Faultable {
    Yes,
    No,
}

impl Core {
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
                action: order.side.as_str().to_string(),
                quantity: order.quantity,
                product: order.product.as_str().to_string(),
                pricetype: order.pricetype.as_str().to_string(),
                reason: reason.to_string(),
            },
        });
    }

    /// Places an order for `account`: runs the broker's checks, books it, fills it if it
    /// is marketable, pushes the order update. Returns the order id.
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
        if faultable == Faultable::Yes && self.take_rejection(account) {
            let reason =
                "Order rejected by broker: simulated rejection (reject_orders fault)".to_string();
            return reject(self, StatusCode::INTERNAL_SERVER_ERROR, reason);
        }
        if let Some(reason) = self.broker_check(instrument, &order) {
            return reject(
                self,
                StatusCode::BAD_REQUEST,
                format!("Order rejected by broker: {reason}"),
            );
        }
        let now = self.now();
        let ltp = self.market.ltp(instrument, now);
        let id = self.next_order_id();
        let meta = &self.market.instruments[instrument];
        let new = NewOrder {
            instrument,
            symbol: meta.symbol.clone(),
            exchange: meta.exchange,
            side: order.side,
            quantity: order.quantity,
            pricetype: order.pricetype,
            product: order.product,
            price: order.price,
            trigger_price: order.trigger_price,
            strategy: order.strategy,
        };
        let book = &mut self.accounts[account].book;
        let at = book.place(id.clone(), new, ltp, now.timestamp_millis());
        if book.orders[at].status.is_working() {
            self.note_working(instrument);
        }
        self.orders_log.push(OrderRecord {
            account,
            received_us,
            outcome: Outcome::Booked(at),
        });
        self.notify_orders(account, &[at]);
        Ok(id)
    }

    /// The reason a broker would refuse this order, if any.
    fn broker_check(&self, instrument: usize, order: &OrderRequest) -> Option<String> {
        let meta = &self.market.instruments[instrument];
        if meta.is_index() {
            return Some(format!(
                "{} on {} is an index and cannot be traded",
                meta.symbol, meta.exchange
            ));
        }
        if matches!(meta.kind, Kind::Option(_)) {
            if order.product == Product::Cnc {
                return Some("CNC is not allowed for F&O instruments; use NRML or MIS".to_string());
            }
            if !order.quantity.is_multiple_of(meta.lot) {
                return Some(format!(
                    "quantity {} is not a multiple of the lot size {} for {}",
                    order.quantity, meta.lot, meta.symbol
                ));
            }
        }
        if let Some(freeze) = meta.freeze
            && order.quantity > freeze
        {
            return Some(format!(
                "quantity {} exceeds the freeze quantity {} for {}; split the order",
                order.quantity, freeze, meta.symbol
            ));
        }
        if matches!(order.pricetype, PriceType::Limit | PriceType::StopLoss) && order.price <= 0.0 {
            return Some(format!(
                "price is required for {} orders",
                order.pricetype.as_str()
            ));
        }
        if matches!(
            order.pricetype,
            PriceType::StopLoss | PriceType::StopLossMarket
        ) && order.trigger_price <= 0.0
        {
            return Some(format!(
                "trigger_price is required for {} orders",
                order.pricetype.as_str()
            ));
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
                    side,
                    quantity: size,
                    pricetype: PriceType::Market,
                    product,
                    price: 0.0,
                    trigger_price: 0.0,
                    strategy: strategy.to_string(),
                };
                ids.push(self.place_order(account, order, Faultable::No)?);
                left -= size;
            }
        }
        Ok(ids)
    }

    /// Cancels every working order of `account`; returns their ids.
    pub(crate) fn cancel_all_orders(&mut self, account: usize) -> Vec<String> {
        let now_ms = self.now().timestamp_millis();
        let cancelled = self.accounts[account].book.cancel_working(now_ms);
        self.notify_orders(account, &cancelled);
        let book = &self.accounts[account].book;
        let ids = cancelled
            .iter()
            .map(|at| book.orders[*at].id.clone())
            .collect();
        let still_working: Vec<usize> = self
            .working
            .iter()
            .copied()
            .filter(|i| self.accounts.iter().any(|a| a.book.has_working(*i)))
            .collect();
        self.working = still_working;
        ids
    }
}
