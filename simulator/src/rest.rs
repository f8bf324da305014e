//! The REST API subset (docs/openalgo.md §3): `POST /api/v1/<endpoint>`, apikey in the body.
//!
//! Faults act here before and after the endpoint's work: `rate_limit_s` answers 429 for the
//! key, `latency_ms` and (placeorder) `place_answer_delay_ms` hold the answer,
//! `lose_answers` replaces a placeorder answer with a 502 or holds it until any client gave
//! up; `books_unavailable_s` and `book_lag_ms` act in the four book endpoints.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use super::books::{Order, PriceType, Product, Side, Snapshot, Status, Terms};
use super::calendar;
use super::faults::{LOST_ANSWER_HOLD, LostAnswer};
use super::market::{ChainRow, Market, TICK_SIZE, Underlying, round2, years_to};
use super::orders::{Faultable, OrderRequest, schedule};
use super::payload::{ist, order_row};
use super::pricing;
use super::ratelimit::LimitClass;
use super::schema::{ErrorStyle, FNO_EXCHANGES, Failure, Fields, VALID_EXCHANGES, failure};
use super::state::{BROKER, Core, INITIAL_CASH, Shared, now_us};

type Answer = Result<(StatusCode, Value), Failure>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Ping,
    PlaceOrder,
    PlaceSmartOrder,
    ModifyOrder,
    CancelOrder,
    ClosePosition,
    CancelAllOrder,
    OrderStatus,
    PositionBook,
    OrderBook,
    TradeBook,
    OpenPosition,
    Quotes,
    Funds,
    Expiry,
    OptionSymbol,
    OptionChain,
}

impl Endpoint {
    const ALL: [Endpoint; 17] = [
        Endpoint::Ping,
        Endpoint::PlaceOrder,
        Endpoint::PlaceSmartOrder,
        Endpoint::ModifyOrder,
        Endpoint::CancelOrder,
        Endpoint::ClosePosition,
        Endpoint::CancelAllOrder,
        Endpoint::OrderStatus,
        Endpoint::PositionBook,
        Endpoint::OrderBook,
        Endpoint::TradeBook,
        Endpoint::OpenPosition,
        Endpoint::Quotes,
        Endpoint::Funds,
        Endpoint::Expiry,
        Endpoint::OptionSymbol,
        Endpoint::OptionChain,
    ];

    fn parse(name: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Endpoint::Ping => "ping",
            Endpoint::PlaceOrder => "placeorder",
            Endpoint::PlaceSmartOrder => "placesmartorder",
            Endpoint::ModifyOrder => "modifyorder",
            Endpoint::CancelOrder => "cancelorder",
            Endpoint::ClosePosition => "closeposition",
            Endpoint::CancelAllOrder => "cancelallorder",
            Endpoint::OrderStatus => "orderstatus",
            Endpoint::PositionBook => "positionbook",
            Endpoint::OrderBook => "orderbook",
            Endpoint::TradeBook => "tradebook",
            Endpoint::OpenPosition => "openposition",
            Endpoint::Quotes => "quotes",
            Endpoint::Funds => "funds",
            Endpoint::Expiry => "expiry",
            Endpoint::OptionSymbol => "optionsymbol",
            Endpoint::OptionChain => "optionchain",
        }
    }

    /// OpenAlgo counts placeorder, modifyorder and cancelorder against `ORDER_RATE_LIMIT`.
    fn limit_class(self) -> LimitClass {
        match self {
            Endpoint::PlaceOrder | Endpoint::ModifyOrder | Endpoint::CancelOrder => {
                LimitClass::Order
            }
            Endpoint::PlaceSmartOrder => LimitClass::SmartOrder,
            _ => LimitClass::Api,
        }
    }
}

fn respond(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

/// The gateway's 429.
fn rate_limited(retry_after_s: u64) -> (StatusCode, Value) {
    (
        StatusCode::TOO_MANY_REQUESTS,
        json!({
            "status": "error",
            "message": "Rate limit exceeded. Please slow down your requests.",
            "retry_after": retry_after_s,
        }),
    )
}

/// An answer and what the faults do to its delivery.
struct Reply {
    status: StatusCode,
    body: Value,
    /// `place_answer_delay_ms`, on top of `latency_ms`.
    extra_hold: Duration,
    lost: Option<LostAnswer>,
}

impl Reply {
    fn plain((status, body): (StatusCode, Value)) -> Reply {
        Reply {
            status,
            body,
            extra_hold: Duration::ZERO,
            lost: None,
        }
    }
}

/// `POST /api/v1/{endpoint}` (with or without a trailing slash).
pub(crate) async fn api_endpoint(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let Some(endpoint) = Endpoint::parse(&path) else {
        return respond(
            StatusCode::NOT_FOUND,
            &json!({"status": "error", "message": "Not found"}),
        );
    };
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(&body).ok();
    let key = parsed
        .as_ref()
        .and_then(|b| b.get("apikey"))
        .and_then(Value::as_str);
    let now = Instant::now();
    let (latency, key_limited) = {
        let core = shared.core();
        let account = key.and_then(|k| core.account_of(k));
        (
            core.longest(account, |f| f.latency_ms),
            core.remaining(account, |f| f.rate_limit_until, now),
        )
    };
    let ip_allowed = || match req.peer_addr() {
        Some(peer) => {
            shared
                .limiter()
                .allow(peer.ip(), endpoint.name(), endpoint.limit_class(), now)
        }
        None => true,
    };
    let reply = if let Some(left) = key_limited {
        Reply::plain(rate_limited(left.as_secs_f64().ceil().max(1.0) as u64))
    } else if !ip_allowed() {
        Reply::plain(rate_limited(60))
    } else {
        match &parsed {
            Some(body) => {
                let (reply, timers) = {
                    let mut core = shared.core();
                    let reply = answer(&mut core, endpoint, body, key);
                    (reply, core.take_timers())
                };
                schedule(&shared.clone().into_inner(), timers);
                reply
            }
            None => Reply::plain((
                StatusCode::BAD_REQUEST,
                json!({"status": "error", "message": "Request body must be a JSON object"}),
            )),
        }
    };
    let hold = latency.saturating_add(reply.extra_hold);
    if !hold.is_zero() {
        actix_rt::time::sleep(hold).await;
    }
    match reply.lost {
        None => respond(reply.status, &reply.body),
        Some(LostAnswer::BadGateway) => respond(
            StatusCode::BAD_GATEWAY,
            &json!({"status": "error", "message": "Bad Gateway"}),
        ),
        Some(LostAnswer::Timeout) => {
            actix_rt::time::sleep(LOST_ANSWER_HOLD).await;
            respond(
                StatusCode::GATEWAY_TIMEOUT,
                &json!({"status": "error", "message": "Gateway Timeout"}),
            )
        }
    }
}

/// Runs the endpoint, then applies the placeorder answer faults: the delay to every answer,
/// a lost answer only to one that booked an order.
fn answer(
    core: &mut Core,
    endpoint: Endpoint,
    body: &Map<String, Value>,
    key: Option<&str>,
) -> Reply {
    let mut reply = Reply::plain(match handle(core, endpoint, body) {
        Ok(answer) | Err(answer) => answer,
    });
    if endpoint == Endpoint::PlaceOrder
        && let Some(account) = key.and_then(|k| core.account_of(k))
    {
        reply.extra_hold = core.longest(Some(account), |f| f.place_answer_delay_ms);
        if reply.status == StatusCode::OK {
            reply.lost = core.take(account, |f| &mut f.lose_answers, |_| true);
        }
    }
    reply
}

fn handle(core: &mut Core, endpoint: Endpoint, body: &Map<String, Value>) -> Answer {
    match endpoint {
        Endpoint::Ping => ping(core, body),
        Endpoint::PlaceOrder => place_order(core, body),
        Endpoint::PlaceSmartOrder => place_smart_order(core, body),
        Endpoint::ModifyOrder => modify_order(core, body),
        Endpoint::CancelOrder => cancel_order(core, body),
        Endpoint::ClosePosition => close_position(core, body),
        Endpoint::CancelAllOrder => cancel_all_order(core, body),
        Endpoint::OrderStatus => order_status(core, body),
        Endpoint::PositionBook => position_book(core, body),
        Endpoint::OrderBook => order_book(core, body),
        Endpoint::TradeBook => trade_book(core, body),
        Endpoint::OpenPosition => open_position(core, body),
        Endpoint::Quotes => quotes(core, body),
        Endpoint::Funds => funds(core, body),
        Endpoint::Expiry => expiry(core, body),
        Endpoint::OptionSymbol => option_symbol(core, body),
        Endpoint::OptionChain => option_chain(core, body),
    }
}

fn ok(value: Value) -> Answer {
    Ok((StatusCode::OK, value))
}

/// The account behind an apikey, or the gateway's 403.
fn account(core: &Core, key: &str) -> Result<usize, Failure> {
    core.account_of(key)
        .filter(|a| !core.auth_refused(Some(*a), Instant::now()))
        .ok_or_else(|| failure(StatusCode::FORBIDDEN, "Invalid openalgo apikey"))
}

/// Validates a body that only carries `apikey`; returns the account.
fn key_only(core: &Core, body: &Map<String, Value>) -> Result<usize, Failure> {
    let mut f = Fields::new(body);
    let key = f.apikey();
    f.finish(ErrorStyle::Raw)?;
    account(core, &key.unwrap_or_default())
}

/// The moment `account`'s books are shown as of (epoch µs; `None`: now, no `book_lag_ms`),
/// or the 500 of `books_unavailable_s`.
fn books_view(core: &Core, account: usize) -> Result<Option<i64>, Failure> {
    if core.books_unavailable(account, Instant::now()) {
        return Err(failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Broker API temporarily unavailable (simulated)",
        ));
    }
    let lag = core.longest(Some(account), |f| f.book_lag_ms);
    let lag_us = i64::try_from(lag.as_micros()).unwrap_or(i64::MAX);
    Ok((!lag.is_zero()).then(|| now_us().saturating_sub(lag_us)))
}

/// A book request (`apikey` only): the account and the moment its books are shown as of.
fn books_request(core: &Core, body: &Map<String, Value>) -> Result<(usize, Option<i64>), Failure> {
    let account = key_only(core, body)?;
    Ok((account, books_view(core, account)?))
}

fn ping(core: &mut Core, body: &Map<String, Value>) -> Answer {
    key_only(core, body)?;
    ok(json!({"status": "success", "data": {"message": "pong", "broker": BROKER}}))
}

/// Which order body is read: the fields each endpoint declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OrderForm {
    Place,
    /// `position_size` required, a quantity of 0 allowed.
    Smart,
    /// `orderid` and every order field required.
    Modify,
}

/// The fields of placeorder, placesmartorder and modifyorder.
struct OrderFields {
    key: String,
    order: OrderRequest,
    position_size: Option<f64>,
    orderid: String,
}

fn order_fields(body: &Map<String, Value>, form: OrderForm) -> Result<OrderFields, Failure> {
    let all = form == OrderForm::Modify;
    let mut f = Fields::new(body);
    let key = f.apikey();
    let strategy = f.string("strategy", true);
    let exchange = f.one_of("exchange", true, &VALID_EXCHANGES);
    let symbol = f.string("symbol", true);
    let orderid = if all {
        f.string("orderid", true)
    } else {
        Some(String::new())
    };
    let action = f.one_of("action", true, &["BUY", "SELL", "buy", "sell"]);
    let mut quantity = f.number("quantity", true, false);
    match quantity {
        Some(q) if form == OrderForm::Smart && q < 0.0 => {
            f.errors
                .add("quantity", "Quantity must be a non-negative number.");
            quantity = None;
        }
        Some(q) if form != OrderForm::Smart && q <= 0.0 => {
            f.errors
                .add("quantity", "Quantity must be a positive number.");
            quantity = None;
        }
        _ => {}
    }
    let position_size = match form {
        OrderForm::Smart => f.number("position_size", true, false),
        OrderForm::Place => {
            f.number("underlying_ltp", false, true);
            None
        }
        OrderForm::Modify => None,
    };
    let pricetype = f.one_of("pricetype", all, &["MARKET", "LIMIT", "SL", "SL-M"]);
    let product = f.one_of("product", all, &["MIS", "NRML", "CNC"]);
    let non_negative = |f: &mut Fields, field: &'static str, message: &str| {
        let value = f.number(field, all, false);
        if value.is_some_and(|v| v < 0.0) {
            f.errors.add(field, message);
        }
        value.unwrap_or(0.0).max(0.0)
    };
    let price = non_negative(&mut f, "price", "Price must be a non-negative number.");
    let trigger_price = non_negative(
        &mut f,
        "trigger_price",
        "Trigger price must be a non-negative number.",
    );
    if f.integer("disclosed_quantity", all, false)
        .is_some_and(|d| d < 0)
    {
        f.errors.add(
            "disclosed_quantity",
            "Disclosed quantity must be a non-negative integer.",
        );
    }
    f.finish(ErrorStyle::Stringified)?;
    let (
        Some(key),
        Some(strategy),
        Some(exchange),
        Some(symbol),
        Some(orderid),
        Some(action),
        Some(quantity),
    ) = (key, strategy, exchange, symbol, orderid, action, quantity)
    else {
        return Err(failure(StatusCode::BAD_REQUEST, "Invalid order"));
    };
    if exchange != "CRYPTO" && quantity.fract() != 0.0 {
        let mut errors = super::schema::Errors::default();
        errors.add(
            "quantity",
            format!("Fractional quantity ({quantity}) is not allowed for non-crypto exchanges."),
        );
        return Err(errors.into_failure(ErrorStyle::Stringified));
    }
    let order = OrderRequest {
        symbol,
        exchange,
        terms: Terms {
            side: Side::parse(&action).unwrap_or(Side::Buy),
            quantity: quantity as u64,
            pricetype: pricetype
                .as_deref()
                .and_then(PriceType::parse)
                .unwrap_or(PriceType::Market),
            product: product
                .as_deref()
                .and_then(Product::parse)
                .unwrap_or(Product::Mis),
            price,
            trigger_price,
            strategy,
        },
    };
    Ok(OrderFields {
        key,
        order,
        position_size,
        orderid,
    })
}

fn place_order(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let fields = order_fields(body, OrderForm::Place)?;
    let account = account(core, &fields.key)?;
    let id = core.place_order(account, fields.order, Faultable::Yes)?;
    ok(json!({"status": "success", "orderid": id}))
}

fn place_smart_order(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let fields = order_fields(body, OrderForm::Smart)?;
    let account = account(core, &fields.key)?;
    let mut order = fields.order;
    let target = fields.position_size.unwrap_or(0.0).round() as i64;
    let current = core.net_position(account, &order.exchange, &order.symbol, order.terms.product);
    if !(target == 0 && current == 0 && order.terms.quantity > 0) {
        if target == current {
            return ok(json!({
                "status": "success",
                "message": "Positions Already Matched. No Action needed.",
            }));
        }
        let delta = target - current;
        order.terms.side = if delta > 0 { Side::Buy } else { Side::Sell };
        order.terms.quantity = delta.unsigned_abs();
    }
    let id = core.place_order(account, order, Faultable::Yes)?;
    ok(json!({"status": "success", "orderid": id}))
}

fn modify_order(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let fields = order_fields(body, OrderForm::Modify)?;
    let account = account(core, &fields.key)?;
    core.modify_order(account, &fields.orderid, &fields.order)?;
    ok(json!({"status": "success", "orderid": fields.orderid}))
}

/// A body of `apikey`, `strategy` and (when `with_orderid`) `orderid`, all required:
/// the account, the strategy and the order id (empty without one).
fn strategy_body(
    core: &Core,
    body: &Map<String, Value>,
    with_orderid: bool,
) -> Result<(usize, String, String), Failure> {
    let mut f = Fields::new(body);
    let key = f.apikey();
    let strategy = f.string("strategy", true);
    let orderid = if with_orderid {
        f.string("orderid", true)
    } else {
        None
    };
    f.finish(ErrorStyle::Stringified)?;
    let account = account(core, &key.unwrap_or_default())?;
    Ok((
        account,
        strategy.unwrap_or_default(),
        orderid.unwrap_or_default(),
    ))
}

fn cancel_order(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let (account, _, orderid) = strategy_body(core, body, true)?;
    core.cancel_order(account, &orderid)?;
    ok(json!({"status": "success", "orderid": orderid}))
}

fn close_position(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let (account, strategy, _) = strategy_body(core, body, false)?;
    core.close_all_positions(account, &strategy)?;
    ok(json!({"status": "success", "message": "All Open Positions Squared Off"}))
}

fn cancel_all_order(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let (account, _, _) = strategy_body(core, body, false)?;
    let cancelled = core.cancel_all_orders(account);
    ok(json!({
        "status": "success",
        "message": format!("Canceled {} orders. Failed to cancel 0 orders.", cancelled.len()),
        "canceled_orders": cancelled,
        "failed_cancellations": [],
    }))
}

fn order_status(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let (account, _, orderid) = strategy_body(core, body, true)?;
    let cutoff = books_view(core, account)?;
    let book = &core.accounts[account].book;
    let row = book
        .find(&orderid)
        .and_then(|at| {
            let order = &book.orders[at];
            order
                .view(cutoff)
                .map(|snapshot| order_row(order, snapshot))
        })
        .ok_or_else(|| failure(StatusCode::NOT_FOUND, format!("Order {orderid} not found")))?;
    ok(json!({"status": "success", "data": row}))
}

fn position_book(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let (account, cutoff) = books_request(core, body)?;
    let now = core.now();
    let Core {
        market, accounts, ..
    } = core;
    let data: Vec<Value> = accounts[account]
        .book
        .positions_at(cutoff)
        .iter()
        .map(|p| {
            let ltp = market.ltp(p.instrument, now);
            json!({
                "symbol": p.symbol,
                "exchange": p.exchange,
                "product": p.product.as_str(),
                "quantity": p.quantity,
                "average_price": format!("{:.2}", p.average_price),
                "ltp": ltp,
                "pnl": round2(p.realized + p.unrealized(ltp)),
            })
        })
        .collect();
    ok(json!({"status": "success", "data": data}))
}

fn order_book(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let (account, cutoff) = books_request(core, body)?;
    let rows: Vec<(&Order, &Snapshot)> = core.accounts[account].book.orders_at(cutoff).collect();
    let orders: Vec<Value> = rows
        .iter()
        .map(|(o, s)| Value::Object(order_row(o, s)))
        .collect();
    let count =
        |pred: &dyn Fn(&Order, &Snapshot) -> bool| rows.iter().filter(|(o, s)| pred(o, s)).count();
    ok(json!({
        "status": "success",
        "data": {
            "orders": orders,
            "statistics": {
                "total_buy_orders": count(&|o, _| o.req.terms.side == Side::Buy),
                "total_sell_orders": count(&|o, _| o.req.terms.side == Side::Sell),
                "total_completed_orders": count(&|_, s| s.status == Status::Complete),
                "total_open_orders": count(&|_, s| s.status.is_working()),
                "total_rejected_orders": count(&|_, s| s.status == Status::Rejected),
            },
        },
    }))
}

fn trade_book(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let (account, cutoff) = books_request(core, body)?;
    let data: Vec<Value> = core.accounts[account]
        .book
        .trades_at(cutoff)
        .map(|t| {
            json!({
                "action": t.side.as_str(),
                "symbol": t.symbol,
                "exchange": t.exchange,
                "orderid": t.orderid,
                "product": t.product.as_str(),
                "quantity": t.quantity,
                "average_price": t.price,
                "timestamp": ist(t.at.ms),
                "trade_value": round2(t.price * t.quantity as f64),
            })
        })
        .collect();
    ok(json!({"status": "success", "data": data}))
}

fn open_position(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let mut f = Fields::new(body);
    let key = f.apikey();
    f.string("strategy", true);
    let symbol = f.string("symbol", true);
    let exchange = f.one_of("exchange", true, &VALID_EXCHANGES);
    let product = f.one_of("product", true, &["MIS", "NRML", "CNC"]);
    f.finish(ErrorStyle::Stringified)?;
    let account = account(core, &key.unwrap_or_default())?;
    let product = product
        .as_deref()
        .and_then(Product::parse)
        .unwrap_or(Product::Mis);
    let quantity = core.net_position(
        account,
        &exchange.unwrap_or_default(),
        &symbol.unwrap_or_default(),
        product,
    );
    ok(json!({"status": "success", "quantity": quantity.to_string()}))
}

fn quotes(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let mut f = Fields::new(body);
    let key = f.apikey();
    let symbol = f.string("symbol", true);
    let exchange = f.one_of("exchange", true, &VALID_EXCHANGES);
    f.finish(ErrorStyle::Raw)?;
    account(core, &key.unwrap_or_default())?;
    let (symbol, exchange) = (symbol.unwrap_or_default(), exchange.unwrap_or_default());
    let Some(instrument) = core.market.id(&exchange, &symbol) else {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            format!("Symbol {symbol} not found for exchange {exchange}"),
        ));
    };
    let q = {
        let now = core.now();
        core.market.quote(instrument, now)
    };
    ok(json!({
        "status": "success",
        "data": {
            "open": q.open,
            "high": q.high,
            "low": q.low,
            "ltp": q.ltp,
            "ask": q.ask,
            "bid": q.bid,
            "prev_close": q.prev_close,
            "volume": q.volume,
            "oi": q.oi,
        },
    }))
}

fn funds(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let account = key_only(core, body)?;
    let now = core.now();
    let Core {
        market, accounts, ..
    } = core;
    let funds = accounts[account]
        .book
        .funds(INITIAL_CASH, |instrument| market.ltp(instrument, now));
    ok(json!({
        "status": "success",
        "data": {
            "availablecash": format!("{:.2}", funds.available_cash),
            "collateral": "0.00",
            "m2mrealized": format!("{:.2}", funds.realized),
            "m2munrealized": format!("{:.2}", funds.unrealized),
            "utiliseddebits": format!("{:.2}", funds.utilised),
        },
    }))
}

fn expiry(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let mut f = Fields::new(body);
    let key = f.apikey();
    let symbol = f.string("symbol", true);
    let exchange = f.one_of("exchange", true, &FNO_EXCHANGES);
    let kind = f.one_of("instrumenttype", true, &["futures", "options"]);
    f.finish(ErrorStyle::Raw)?;
    account(core, &key.unwrap_or_default())?;
    let (symbol, exchange, kind) = (
        symbol.unwrap_or_default().to_ascii_uppercase(),
        exchange.unwrap_or_default(),
        kind.unwrap_or_default(),
    );
    let now = core.now();
    let dates: Vec<String> = core
        .market
        .underlying(&symbol)
        .filter(|u| u.spec.option_exchange == exchange && kind == "options")
        .map(|u| {
            u.expiries
                .iter()
                .filter(|e| calendar::is_live(**e, now))
                .map(|e| calendar::dd_mmm_yy(*e))
                .collect()
        })
        .unwrap_or_default();
    if dates.is_empty() {
        return Err(failure(
            StatusCode::NOT_FOUND,
            format!("No expiry dates found for {symbol} {kind} in {exchange}"),
        ));
    }
    ok(json!({
        "status": "success",
        "message": format!("Found {} expiry dates for {symbol} {kind} in {exchange}", dates.len()),
        "data": dates,
    }))
}

/// The option exchange for an underlying's exchange (NSE/NSE_INDEX → NFO,
/// BSE/BSE_INDEX → BFO; option exchanges map to themselves).
fn option_exchange(exchange: &str) -> &str {
    match exchange {
        "NSE" | "NSE_INDEX" => "NFO",
        "BSE" | "BSE_INDEX" => "BFO",
        other => other,
    }
}

/// Splits `NIFTY28OCT25FUT` into ("NIFTY", Some(expiry)); other names pass through.
fn split_underlying(underlying: &str) -> (String, Option<String>) {
    let upper = underlying.to_ascii_uppercase();
    if let Some(stem) = upper.strip_suffix("FUT")
        && stem.len() > 7
        && stem.is_char_boundary(stem.len() - 7)
    {
        let (base, date) = stem.split_at(stem.len() - 7);
        if calendar::parse_ddmmmyy(date).is_some() {
            return (base.to_string(), Some(date.to_string()));
        }
    }
    (upper, None)
}

/// `ATM` → 0, `ITMn` → -n, `OTMn` → +n (in strikes away from ATM, call-side convention
/// applied by the caller).
fn parse_offset(offset: &str) -> Option<i64> {
    let upper = offset.to_ascii_uppercase();
    if upper == "ATM" {
        return Some(0);
    }
    let (sign, digits) = if let Some(d) = upper.strip_prefix("ITM") {
        (-1, d)
    } else if let Some(d) = upper.strip_prefix("OTM") {
        (1, d)
    } else {
        return None;
    };
    if digits.starts_with('0') {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    (1..=50).contains(&n).then_some(sign * n)
}

fn option_symbol(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let mut f = Fields::new(body);
    let key = f.apikey();
    f.string_nullable("strategy", false, true);
    let underlying = f.string("underlying", true);
    let exchange = f.one_of("exchange", true, &VALID_EXCHANGES);
    let expiry_date = f.string("expiry_date", false);
    let strike_int = f.integer("strike_int", false, true);
    if strike_int.is_some_and(|s| s < 1) {
        f.errors
            .add("strike_int", "Must be greater than or equal to 1.");
    }
    let offset = f.string("offset", true);
    let steps = offset.as_deref().and_then(parse_offset);
    if offset.is_some() && steps.is_none() {
        f.errors
            .add("offset", "Offset must be ATM, ITM1-ITM50, or OTM1-OTM50");
    }
    let option_type = f.one_of("option_type", true, &["CE", "PE", "ce", "pe"]);
    f.finish(ErrorStyle::Detailed)?;
    account(core, &key.unwrap_or_default())?;
    let (base, embedded) = split_underlying(&underlying.unwrap_or_default());
    let Some(expiry_text) = embedded.or(expiry_date) else {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            "expiry_date is required when the underlying does not include an expiry",
        ));
    };
    let Some(expiry) = calendar::parse_ddmmmyy(&expiry_text) else {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            format!("Invalid expiry_date {expiry_text}: use DDMMMYY, e.g. 28OCT25"),
        ));
    };
    let exchange = exchange.unwrap_or_default();
    let options_exchange = option_exchange(&exchange);
    let is_call = option_type.unwrap_or_default().eq_ignore_ascii_case("CE");
    // ITM for a call is below the ATM strike, for a put above it.
    let moves = steps.unwrap_or(0) * if is_call { 1 } else { -1 };
    let now = core.now();
    let (u, chain) = live_chain(&core.market, &base, options_exchange, expiry, now)?;
    let spec = u.spec;
    let index_id = u.index_id;
    let spot = core.market.instruments[index_id].ltp;
    let strike = match strike_int {
        Some(step) => {
            let step = step as f64;
            (spot / step).round() * step + moves as f64 * step
        }
        None => {
            let atm = nearest_strike(chain.iter().map(|r| r.strike), spot);
            let at = atm as i64 + moves;
            match usize::try_from(at).ok().and_then(|at| chain.get(at)) {
                Some(row) => row.strike,
                None => f64::NAN,
            }
        }
    };
    let row = chain.iter().find(|r| r.strike == strike);
    let symbol = format!(
        "{}{}{}{}",
        spec.name,
        calendar::ddmmmyy(expiry),
        super::market::format_strike(strike),
        if is_call { "CE" } else { "PE" }
    );
    let Some(row) = row else {
        return Err(failure(
            StatusCode::NOT_FOUND,
            format!("Option symbol {symbol} not found in {options_exchange}"),
        ));
    };
    let id = if is_call { row.call } else { row.put };
    let symbol = core.market.instruments[id].symbol.clone();
    let underlying_ltp = core.market.ltp(index_id, now);
    ok(json!({
        "status": "success",
        "symbol": symbol,
        "exchange": spec.option_exchange,
        "lotsize": spec.lot,
        "tick_size": TICK_SIZE,
        "freeze_qty": spec.freeze,
        "underlying_ltp": underlying_ltp,
    }))
}

/// `base`'s chain on `options_exchange` for `expiry`, with its underlying: 404 when `base` has no
/// options there or the expiry no longer trades at `now`.
fn live_chain<'m>(
    market: &'m Market,
    base: &str,
    options_exchange: &str,
    expiry: NaiveDate,
    now: DateTime<Utc>,
) -> Result<(&'m Underlying, &'m [ChainRow]), Failure> {
    let Some(u) = market
        .underlying(base)
        .filter(|u| u.spec.option_exchange == options_exchange)
    else {
        return Err(failure(
            StatusCode::NOT_FOUND,
            format!("Underlying {base} has no options on {options_exchange}"),
        ));
    };
    let Some(chain) = u.chain(expiry, now) else {
        return Err(failure(
            StatusCode::NOT_FOUND,
            format!(
                "No options found for {base} expiring {}",
                calendar::ddmmmyy(expiry)
            ),
        ));
    };
    Ok((u, chain))
}

/// Position of the strike nearest to `spot`.
fn nearest_strike(strikes: impl Iterator<Item = f64>, spot: f64) -> usize {
    strikes
        .enumerate()
        .min_by(|a, b| (a.1 - spot).abs().total_cmp(&(b.1 - spot).abs()))
        .map_or(0, |(at, _)| at)
}

fn option_chain(core: &mut Core, body: &Map<String, Value>) -> Answer {
    let mut f = Fields::new(body);
    let key = f.apikey();
    let underlying = f.string("underlying", true);
    let exchange = f.one_of("exchange", true, &VALID_EXCHANGES);
    let expiry_date = f.string("expiry_date", true);
    let strike_count = f.integer("strike_count", false, true);
    if strike_count.is_some_and(|n| !(1..=100).contains(&n)) {
        f.errors.add(
            "strike_count",
            "Must be greater than or equal to 1 and less than or equal to 100.",
        );
    }
    let with_greeks = f.boolean("with_greeks").unwrap_or(false);
    let interest_rate = f.number("interest_rate", false, true);
    if interest_rate.is_some_and(|r| !(0.0..=100.0).contains(&r)) {
        f.errors.add(
            "interest_rate",
            "Must be greater than or equal to 0 and less than or equal to 100.",
        );
    }
    f.finish(ErrorStyle::Detailed)?;
    account(core, &key.unwrap_or_default())?;
    let expiry_text = expiry_date.unwrap_or_default();
    let Some(expiry) = calendar::parse_ddmmmyy(&expiry_text) else {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            format!("Invalid expiry_date {expiry_text}: use DDMMMYY, e.g. 28NOV25"),
        ));
    };
    let (base, _) = split_underlying(&underlying.unwrap_or_default());
    let options_exchange = option_exchange(&exchange.unwrap_or_default()).to_string();
    let now = core.now();
    let (u, chain) = live_chain(&core.market, &base, &options_exchange, expiry, now)?;
    let spec = u.spec;
    let index_id = u.index_id;
    let rows: Vec<(f64, usize, usize)> = chain.iter().map(|r| (r.strike, r.call, r.put)).collect();
    let spot = core.market.ltp(index_id, now);
    let atm = nearest_strike(rows.iter().map(|r| r.0), spot);
    let prev_close = core.market.instruments[index_id].prev_close;
    let years = years_to(expiry, now);
    let rate = interest_rate.unwrap_or(0.0) / 100.0;
    let selected = rows
        .iter()
        .enumerate()
        .filter(|(at, _)| strike_count.is_none_or(|n| (*at as i64 - atm as i64).abs() <= n));
    let mut data = Vec::new();
    for (at, (strike, call, put)) in selected {
        let distance = at as i64 - atm as i64;
        let mut leg = |id: usize, right: pricing::Right| {
            // Strikes below ATM are in the money for calls, above ATM for puts.
            let moneyness = match right {
                pricing::Right::Call => -distance,
                pricing::Right::Put => distance,
            };
            let label = match moneyness {
                0 => "ATM".to_string(),
                n if n > 0 => format!("ITM{n}"),
                n => format!("OTM{}", -n),
            };
            let q = core.market.quote(id, now);
            let mut value = json!({
                "symbol": core.market.instruments[id].symbol,
                "label": label,
                "ltp": q.ltp,
                "bid": q.bid,
                "ask": q.ask,
                "bid_qty": q.bid_qty,
                "ask_qty": q.ask_qty,
                "open": q.open,
                "high": q.high,
                "low": q.low,
                "prev_close": q.prev_close,
                "volume": q.volume,
                "oi": q.oi,
                "lotsize": spec.lot,
                "tick_size": TICK_SIZE,
            });
            // An expired chain is never served (see `Underlying::chain`), so `years` is positive.
            if with_greeks {
                let g = pricing::greeks(spot, *strike, years, spec.iv, rate, right);
                value["implied_volatility"] = json!(round2(spec.iv * 100.0));
                value["delta"] = json!((g.delta * 10_000.0).round() / 10_000.0);
                value["gamma"] = json!((g.gamma * 1_000_000.0).round() / 1_000_000.0);
                value["theta"] = json!(round2(g.theta));
                value["vega"] = json!(round2(g.vega));
            }
            value
        };
        let ce = leg(*call, pricing::Right::Call);
        let pe = leg(*put, pricing::Right::Put);
        data.push(json!({"strike": strike, "ce": ce, "pe": pe}));
    }
    let expiry_close = calendar::expiry_close(expiry);
    ok(json!({
        "status": "success",
        "underlying": spec.name,
        "underlying_symbol": spec.name,
        "underlying_exchange": spec.index_exchange,
        "underlying_ltp": spot,
        "underlying_prev_close": prev_close,
        "expiry_date": calendar::ddmmmyy(expiry),
        "expiry_ts": expiry_close.timestamp(),
        "server_ts": now.timestamp(),
        "atm_strike": rows.get(atm).map_or(0.0, |r| r.0),
        "quotes_included": true,
        "greeks_included": with_greeks,
        "forward_price": round2(spot * (rate * years.max(0.0)).exp()),
        "chain": data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_within_fifty_strikes() {
        assert_eq!(parse_offset("ATM"), Some(0));
        assert_eq!(parse_offset("itm3"), Some(-3));
        assert_eq!(parse_offset("OTM50"), Some(50));
        assert_eq!(parse_offset("OTM51"), None);
        assert_eq!(parse_offset("OTM0"), None);
        assert_eq!(parse_offset("OTM05"), None);
        assert_eq!(parse_offset("NEAR"), None);
    }

    #[test]
    fn underlying_with_embedded_expiry_splits() {
        assert_eq!(
            split_underlying("NIFTY28OCT25FUT"),
            ("NIFTY".to_string(), Some("28OCT25".to_string()))
        );
        assert_eq!(
            split_underlying("banknifty"),
            ("BANKNIFTY".to_string(), None)
        );
        assert_eq!(split_underlying("FUT"), ("FUT".to_string(), None));
    }

    #[test]
    fn option_exchanges_follow_the_gateway_mapping() {
        assert_eq!(option_exchange("NSE_INDEX"), "NFO");
        assert_eq!(option_exchange("NSE"), "NFO");
        assert_eq!(option_exchange("BSE_INDEX"), "BFO");
        assert_eq!(option_exchange("NFO"), "NFO");
        assert_eq!(option_exchange("MCX"), "MCX");
    }
}
