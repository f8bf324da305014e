//! The gateway's REST work for one exit order, turned into exit-machine events: placing it,
//! reading its state, finding it in the order book when its answer was lost, cancelling it.

use std::time::Instant;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

use super::store::{self, Leg};
use crate::domain::exit_machine::{Event, OrderReport, OrderState, PlaceFailure, ReadFailure};
use crate::domain::exits::{BookOrder, LostOrder, find_lost_order, parse_book_time};
use crate::openalgo::rest::{Order, OrderRequest, Position, RestClient, RestError};

/// Broker timestamps without an offset are Indian Standard Time.
const BROKER_TZ: chrono_tz::Tz = chrono_tz::Asia::Kolkata;

fn place_failure(e: RestError) -> PlaceFailure {
    match e {
        RestError::RateLimited { retry_after, .. } => PlaceFailure::RateLimited {
            retry_after,
            message: e.to_string(),
        },
        e if e.is_uncertain() => PlaceFailure::Uncertain(e.to_string()),
        e => PlaceFailure::Refused(e.to_string()),
    }
}

fn read_failure(e: RestError) -> ReadFailure {
    match e {
        RestError::RateLimited { retry_after, .. } => ReadFailure::RateLimited {
            retry_after,
            message: e.to_string(),
        },
        e => ReadFailure::Failed(e.to_string()),
    }
}

/// Places a MARKET exit order of `quantity` units for the leg.
pub(super) async fn place(
    client: RestClient,
    leg: Leg,
    quantity: i64,
) -> Result<String, PlaceFailure> {
    let order = OrderRequest {
        strategy: leg.strategy_name.clone(),
        exchange: leg.exchange.clone(),
        symbol: leg.symbol.clone(),
        action: leg.side.opposite().as_str().to_string(),
        quantity,
        product: leg.product.as_str().to_string(),
        pricetype: "MARKET".to_string(),
    };
    client.place_order(&order).await.map_err(place_failure)
}

/// What a broker's words say of an order of `quantity` units, when they say enough: a terminal
/// order that is not complete must say how much filled (`None` otherwise).
pub(super) fn known_report(
    status: &str,
    filled: Option<f64>,
    ordered: Option<f64>,
    quantity: i64,
    average_price: Option<f64>,
    reason: Option<&str>,
) -> Result<Option<OrderReport>, String> {
    let state =
        OrderState::parse(status).ok_or_else(|| format!("unknown order status {status:?}"))?;
    let filled = match (filled, state) {
        (Some(f), _) => f.round() as i64,
        (None, OrderState::Complete) => ordered.map_or(quantity, |q| q.round() as i64),
        (None, OrderState::Open | OrderState::TriggerPending) => 0,
        (None, OrderState::Rejected | OrderState::Cancelled) => return Ok(None),
    };
    Ok(Some(OrderReport {
        state,
        filled: filled.max(0),
        average_price: average_price.filter(|p| p.is_finite() && *p > 0.0),
        reason: reason.filter(|r| !r.is_empty()).map(str::to_string),
    }))
}

/// What an order book row says of an order of `quantity` units. A terminal order that does
/// not say how much filled is looked up in the trade book.
async fn report_of(client: &RestClient, o: &Order, quantity: i64) -> Result<OrderReport, String> {
    let known = known_report(
        &o.order_status,
        o.filled_quantity,
        o.quantity,
        quantity,
        o.average_price,
        o.rejection_reason.as_deref(),
    )?;
    if let Some(report) = known {
        return Ok(report);
    }
    let trades = client.trade_book().await.map_err(|e| e.to_string())?;
    let filled = trades
        .iter()
        .filter(|t| t.orderid == o.orderid)
        .filter_map(|t| t.quantity)
        .sum::<f64>();
    known_report(
        &o.order_status,
        Some(filled),
        o.quantity,
        quantity,
        o.average_price,
        o.rejection_reason.as_deref(),
    )?
    .ok_or_else(|| "no fill quantity".to_string())
}

/// Reads an accepted order's state (`orderstatus`; the order book when that does not find it).
pub(super) async fn query(
    client: RestClient,
    order: usize,
    order_id: String,
    strategy: String,
    quantity: i64,
) -> Event {
    let asked_at = Instant::now();
    match client.order_status(&order_id, &strategy).await {
        Ok(o) => match report_of(&client, &o, quantity).await {
            Ok(report) => Event::Report { order, report },
            Err(e) => Event::ReadFailed {
                order,
                failure: ReadFailure::Failed(format!("orderstatus {order_id}: {e}")),
            },
        },
        // Not found by orderstatus (or a gateway without it): the order book decides.
        Err(e) if e.status() == Some(404) => match client.order_book().await {
            Ok(book) => match book.iter().find(|o| o.orderid == order_id) {
                Some(o) => match report_of(&client, o, quantity).await {
                    Ok(report) => Event::Report { order, report },
                    Err(e) => Event::ReadFailed {
                        order,
                        failure: ReadFailure::Failed(format!("order {order_id}: {e}")),
                    },
                },
                None => Event::NotFound { order, asked_at },
            },
            Err(e) => Event::ReadFailed {
                order,
                failure: read_failure(e),
            },
        },
        Err(e) => Event::ReadFailed {
            order,
            failure: read_failure(e),
        },
    }
}

/// Looks for the order whose placement answer was lost in the account's order book.
pub(super) async fn search(
    db: DatabaseConnection,
    client: RestClient,
    leg: Leg,
    order: usize,
    quantity: i64,
    recorded_at: DateTime<Utc>,
) -> Event {
    let asked_at = Instant::now();
    let failed = |failure| Event::ReadFailed { order, failure };
    let book = match client.order_book().await {
        Ok(book) => book,
        Err(e) => return failed(read_failure(e)),
    };
    let known = match store::known_order_ids(&db, leg.account_id).await {
        Ok(known) => known,
        Err(e) => {
            return failed(ReadFailure::Failed(format!(
                "reading the recorded order ids: {e}"
            )));
        }
    };
    let entries: Vec<BookOrder<'_>> = book
        .iter()
        .map(|o| BookOrder {
            order_id: &o.orderid,
            symbol: &o.symbol,
            exchange: &o.exchange,
            action: &o.action,
            quantity: o.quantity.map(|q| q.round() as i64),
            product: &o.product,
            strategy: o.strategy.as_deref(),
            placed_at: o
                .timestamp
                .as_deref()
                .and_then(|t| parse_book_time(t, BROKER_TZ)),
        })
        .collect();
    let lost = LostOrder {
        symbol: &leg.symbol,
        exchange: &leg.exchange,
        action: leg.side.opposite(),
        quantity,
        product: leg.product.as_str(),
        strategy: &leg.strategy_name,
        recorded_at,
    };
    let Some(found) = find_lost_order(&entries, &lost, &known).and_then(|at| book.get(at)) else {
        return Event::NotFound { order, asked_at };
    };
    match report_of(&client, found, quantity).await {
        Ok(report) => Event::Found {
            order,
            order_id: found.orderid.clone(),
            report,
        },
        Err(e) => failed(ReadFailure::Failed(format!(
            "order {} in the order book: {e}",
            found.orderid
        ))),
    }
}

/// Cancels a working order.
pub(super) async fn cancel(
    client: RestClient,
    order: usize,
    order_id: String,
    strategy: String,
) -> Event {
    let result = client
        .cancel_order(&order_id, &strategy)
        .await
        .map_err(|e| e.to_string());
    Event::CancelAnswered { order, result }
}

/// The broker's signed net quantity of an instrument and product in a position book (rows
/// without a product count for every product).
pub(super) fn net_of(rows: &[Position], exchange: &str, symbol: &str, product: &str) -> i64 {
    rows.iter()
        .filter(|p| is_instrument(p, exchange, symbol, product))
        .map(|p| p.quantity)
        .sum::<f64>()
        .round() as i64
}

/// The broker's last traded price of an instrument and product in a position book, matched as
/// [`net_of`] matches rows: the first matching row that has one.
pub(super) fn ltp_of(
    rows: &[Position],
    exchange: &str,
    symbol: &str,
    product: &str,
) -> Option<f64> {
    rows.iter()
        .filter(|p| is_instrument(p, exchange, symbol, product))
        .find_map(|p| p.ltp.filter(|l| l.is_finite() && *l > 0.0))
}

/// A position book row of the instrument and product (a row without a product is of every
/// product).
fn is_instrument(p: &Position, exchange: &str, symbol: &str, product: &str) -> bool {
    p.exchange == exchange
        && p.symbol == symbol
        && (p.product.is_empty() || p.product.eq_ignore_ascii_case(product))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(exchange: &str, symbol: &str, product: &str, ltp: Option<f64>) -> Position {
        Position {
            symbol: symbol.to_string(),
            exchange: exchange.to_string(),
            product: product.to_string(),
            quantity: 0.0,
            average_price: None,
            ltp,
        }
    }

    #[test]
    fn the_mark_is_the_instruments_ltp_matched_like_its_net() {
        let rows = vec![
            row("NSE", "SBIN", "MIS", Some(801.5)),
            row("NSE", "SBIN", "CNC", Some(802.0)),
            row("BSE", "INFY", "", Some(1500.0)),
            row("NFO", "NIFTY", "NRML", None),
            row("NFO", "NIFTY", "NRML", Some(0.0)),
        ];
        assert_eq!(ltp_of(&rows, "NSE", "SBIN", "CNC"), Some(802.0));
        assert_eq!(ltp_of(&rows, "NSE", "SBIN", "mis"), Some(801.5));
        // A row without a product is of every product.
        assert_eq!(ltp_of(&rows, "BSE", "INFY", "MIS"), Some(1500.0));
        assert_eq!(ltp_of(&rows, "NSE", "SBIN", "NRML"), None);
        assert_eq!(ltp_of(&rows, "NFO", "NIFTY", "NRML"), None);
        assert_eq!(ltp_of(&[], "NSE", "SBIN", "MIS"), None);
    }
}
