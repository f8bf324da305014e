//! Wire frames the feed pushes: `market_data` (docs/openalgo.md §2.5, Angel's payload fields),
//! `order_update` (docs/openalgo.md §2.6) and the deliberately malformed frames of `/sim/fault`;
//! and the order row the REST books share with `order_update`.

use actix_web::web::Bytes;
use chrono::{DateTime, Utc};
use chrono_tz::Asia::Kolkata;
use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::books::{Order, Snapshot};
use super::market::{Instrument, Kind, Quote, TICK_SIZE, round_tick};
use super::state::{BROKER, Frame, now_us};

#[derive(Serialize)]
struct Level {
    price: f64,
    quantity: u64,
    orders: u32,
}

#[derive(Serialize)]
struct Depth {
    buy: [Level; 5],
    sell: [Level; 5],
}

/// The adapter payload. LTP mode carries the first six fields; Quote adds the trade and
/// book summary; Depth adds circuits, OI, last quantity and five levels a side.
/// `sim_sent_us` (epoch microseconds when the frame was built) is a simulator extension
/// used to measure latency.
#[derive(Serialize)]
struct Data<'a> {
    ltp: f64,
    ltt: i64,
    symbol: &'a str,
    exchange: &'a str,
    mode: u8,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    volume: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    open: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    high: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    close: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_trade_quantity: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    average_price: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_buy_quantity: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_sell_quantity: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bid: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ask: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oi: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_quantity: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upper_circuit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lower_circuit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    depth: Option<Depth>,
    sim_sent_us: i64,
}

fn depth(instrument: &Instrument, quote: &Quote, rng: &mut StdRng) -> Depth {
    let zero = || Level {
        price: 0.0,
        quantity: 0,
        orders: 0,
    };
    if matches!(instrument.kind, Kind::Index) {
        return Depth {
            buy: std::array::from_fn(|_| zero()),
            sell: std::array::from_fn(|_| zero()),
        };
    }
    let lot = instrument.lot;
    let mut level = |price: f64, first_qty: u64| Level {
        price: round_tick(price.max(0.0)),
        quantity: if first_qty > 0 {
            first_qty
        } else {
            lot * rng.random_range(1..=40)
        },
        orders: rng.random_range(1..=25),
    };
    let buy = std::array::from_fn(|i| {
        level(
            quote.bid - i as f64 * TICK_SIZE,
            if i == 0 { quote.bid_qty } else { 0 },
        )
    });
    let sell = std::array::from_fn(|i| {
        level(
            quote.ask + i as f64 * TICK_SIZE,
            if i == 0 { quote.ask_qty } else { 0 },
        )
    });
    Depth { buy, sell }
}

/// Writes the `data` object of a tick at `mode` into `out` (cleared first).
pub(crate) fn market_data(
    out: &mut Vec<u8>,
    instrument: &Instrument,
    quote: &Quote,
    mode: u8,
    now_ms: i64,
    rng: &mut StdRng,
) {
    let quote_mode = mode >= 2;
    let depth_mode = mode >= 3;
    let is_option = matches!(instrument.kind, Kind::Option(_));
    let data = Data {
        ltp: quote.ltp,
        ltt: quote.ltt_ms,
        symbol: &instrument.symbol,
        exchange: instrument.exchange,
        mode,
        timestamp: now_ms,
        volume: quote_mode.then_some(quote.volume),
        open: quote_mode.then_some(quote.open),
        high: quote_mode.then_some(quote.high),
        low: quote_mode.then_some(quote.low),
        close: quote_mode.then_some(quote.prev_close),
        last_trade_quantity: quote_mode.then_some(quote.last_qty),
        average_price: quote_mode.then_some(quote.average_price),
        total_buy_quantity: quote_mode.then_some(quote.total_buy_qty),
        total_sell_quantity: quote_mode.then_some(quote.total_sell_qty),
        bid: quote_mode.then_some(quote.bid),
        ask: quote_mode.then_some(quote.ask),
        oi: (depth_mode || (quote_mode && is_option)).then_some(quote.oi),
        last_quantity: depth_mode.then_some(quote.last_qty),
        upper_circuit: depth_mode.then_some(quote.upper_circuit),
        lower_circuit: depth_mode.then_some(quote.lower_circuit),
        depth: depth_mode.then(|| depth(instrument, quote, rng)),
        sim_sent_us: now_us(),
    };
    out.clear();
    // Serializing plain numbers and strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &data);
}

/// The `market_data` envelope around an already serialized `data` object, tagged with
/// the receiving client's mode.
pub(crate) fn envelope(instrument: &Instrument, mode: u8, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + instrument.symbol.len() + 96);
    out.extend_from_slice(b"{\"type\":\"market_data\",\"symbol\":");
    let _ = serde_json::to_writer(&mut out, &instrument.symbol);
    out.extend_from_slice(b",\"exchange\":\"");
    out.extend_from_slice(instrument.exchange.as_bytes());
    out.extend_from_slice(b"\",\"mode\":");
    out.push(b'0' + mode);
    out.extend_from_slice(b",\"broker\":\"");
    out.extend_from_slice(BROKER.as_bytes());
    out.extend_from_slice(b"\",\"data\":");
    out.extend_from_slice(data);
    out.push(b'}');
    Bytes::from(out)
}

/// A time on the simulator's clock (epoch ms) as the gateway prints it, in IST.
pub(crate) fn ist(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&Kolkata)
        .format("%d-%b-%Y %H:%M:%S")
        .to_string()
}

/// An order as one row of the order book, in the state `snapshot` recorded: the fields of
/// orderbook, orderstatus, `/sim/orders` and the `order_update` push.
pub(crate) fn order_row(order: &Order, snapshot: &Snapshot) -> Map<String, Value> {
    let row = json!({
        "action": order.req.terms.side.as_str(),
        "symbol": order.req.symbol,
        "exchange": order.req.exchange,
        "orderid": order.id,
        "product": order.req.terms.product.as_str(),
        "quantity": snapshot.quantity,
        "price": snapshot.price,
        "pricetype": snapshot.pricetype.as_str(),
        "order_status": snapshot.status.as_str(),
        "trigger_price": snapshot.trigger_price,
        "timestamp": ist(snapshot.at.ms),
        "average_price": snapshot.average_price,
        "filled_quantity": snapshot.filled,
        "pending_quantity": snapshot.pending(),
        "rejection_reason": snapshot.rejection_reason(),
        "strategy": order.req.terms.strategy,
    });
    match row {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The `order_update` push for one change of an order.
pub(crate) fn order_update(user_id: &str, order: &Order, snapshot: &Snapshot) -> Bytes {
    let mut frame = Map::new();
    frame.insert("type".into(), json!("order_update"));
    frame.insert("user_id".into(), json!(user_id));
    frame.insert("mode".into(), json!("live"));
    frame.insert("broker".into(), json!(BROKER));
    frame.extend(order_row(order, snapshot));
    Bytes::from(Value::Object(frame).to_string())
}

/// The `n`-th malformed frame: invalid JSON, market_data without `ltp`, `ltp` "abc",
/// then a binary frame, repeating.
pub(crate) fn malformed(n: u64, instrument: &Instrument) -> Frame {
    let head = serde_json::json!({
        "type": "market_data",
        "symbol": instrument.symbol,
        "exchange": instrument.exchange,
        "mode": 1,
        "broker": BROKER,
    });
    match n % 4 {
        0 => Frame::Text(Bytes::from_static(b"{\"type\":\"market_data\",\"symbol\":")),
        1 => {
            let mut frame = head;
            frame["data"] = serde_json::json!({"symbol": instrument.symbol, "exchange": instrument.exchange, "mode": 1});
            Frame::Text(Bytes::from(frame.to_string()))
        }
        2 => {
            let mut frame = head;
            frame["data"] = serde_json::json!({"ltp": "abc", "symbol": instrument.symbol, "exchange": instrument.exchange, "mode": 1});
            Frame::Text(Bytes::from(frame.to_string()))
        }
        _ => Frame::Binary(Bytes::from_static(&[0x00, 0x9f, 0x92, 0x96, 0xff, 0x01])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use rand::SeedableRng;

    use crate::market::Market;

    /// A fixed instant (Monday 2026-11-30, 10:30 IST): the listed expiries never depend on
    /// when the test runs.
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, 5, 0, 0).unwrap()
    }

    fn tick(symbol_exchange: (&str, &str), mode: u8, tag: u8) -> serde_json::Value {
        let now = now();
        let mut rng = StdRng::seed_from_u64(1);
        let mut market = Market::build(now, &mut rng);
        let id = market.id(symbol_exchange.1, symbol_exchange.0).unwrap();
        let quote = market.quote(id, now);
        let mut data = Vec::new();
        market_data(
            &mut data,
            &market.instruments[id],
            &quote,
            mode,
            5,
            &mut rng,
        );
        let bytes = envelope(&market.instruments[id], tag, &data);
        serde_json::from_slice(&bytes).unwrap()
    }

    fn keys(v: &serde_json::Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort();
        k
    }

    #[test]
    fn ltp_payload_has_exactly_the_reference_fields() {
        let v = tick(("RELIANCE", "NSE"), 1, 1);
        assert_eq!(v["type"], "market_data");
        assert_eq!(v["symbol"], "RELIANCE");
        assert_eq!(v["exchange"], "NSE");
        assert_eq!(v["mode"], 1);
        assert_eq!(v["broker"], BROKER);
        assert_eq!(
            keys(&v["data"]),
            vec![
                "exchange",
                "ltp",
                "ltt",
                "mode",
                "sim_sent_us",
                "symbol",
                "timestamp"
            ]
        );
        assert_eq!(v["data"]["ltp"], 1420.0);
    }

    #[test]
    fn quote_payload_adds_book_summary_and_oi_only_for_options() {
        let equity = tick(("RELIANCE", "NSE"), 2, 2);
        for field in [
            "volume",
            "open",
            "high",
            "low",
            "close",
            "last_trade_quantity",
            "average_price",
            "total_buy_quantity",
            "total_sell_quantity",
            "bid",
            "ask",
        ] {
            assert!(equity["data"].get(field).is_some(), "{field}");
        }
        assert!(equity["data"].get("oi").is_none());
        assert!(equity["data"].get("depth").is_none());
        let now = now();
        let mut rng = StdRng::seed_from_u64(1);
        let market = Market::build(now, &mut rng);
        let call = &market.underlying("NIFTY").unwrap().chains[0][50];
        let symbol = market.instruments[call.call].symbol.clone();
        let option = tick((&symbol, "NFO"), 2, 2);
        assert!(option["data"]["oi"].as_u64().unwrap() > 0);
    }

    #[test]
    fn depth_payload_has_five_levels_and_index_levels_are_zero() {
        let v = tick(("INFY", "NSE"), 3, 1);
        // Tagged with the client's mode (1) while the payload is a Depth payload.
        assert_eq!(v["mode"], 1);
        assert_eq!(v["data"]["mode"], 3);
        for field in ["last_quantity", "oi", "upper_circuit", "lower_circuit"] {
            assert!(v["data"].get(field).is_some(), "{field}");
        }
        let buy = v["data"]["depth"]["buy"].as_array().unwrap();
        let sell = v["data"]["depth"]["sell"].as_array().unwrap();
        assert_eq!((buy.len(), sell.len()), (5, 5));
        assert!(buy[0]["price"].as_f64().unwrap() < sell[0]["price"].as_f64().unwrap());
        assert!(buy[1]["price"].as_f64().unwrap() < buy[0]["price"].as_f64().unwrap());
        let index = tick(("NIFTY", "NSE_INDEX"), 3, 3);
        let levels = index["data"]["depth"]["buy"].as_array().unwrap();
        assert_eq!(levels.len(), 5);
        assert!(
            levels
                .iter()
                .all(|l| l["price"] == 0.0 && l["quantity"] == 0)
        );
    }
}
