//! Market-data feed messages (docs/openalgo.md §2): frames the client sends, and tolerant
//! parsing of what the server sends. Only `data.ltp` is guaranteed; numbers may be strings;
//! unknown fields are ignored (docs/openalgo.md §4).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::json;

use super::lenient::{f64_optional, f64_required};
use crate::domain::mask::clip;

/// `{"action":"authenticate","api_key":…}`.
pub fn authenticate_frame(api_key: &str) -> String {
    json!({"action": "authenticate", "api_key": api_key}).to_string()
}

/// `{"action":"subscribe_orders"}`: every order of the key then arrives as an `order_update`.
pub fn subscribe_orders_frame() -> String {
    json!({"action": "subscribe_orders"}).to_string()
}

/// `{"action":"unsubscribe_all"}`: the socket stops carrying market data.
pub fn unsubscribe_all_frame() -> String {
    json!({"action": "unsubscribe_all"}).to_string()
}

/// An `order_update` push: one order of the key changed. Only `orderid` and `order_status` are
/// required; numbers may be strings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OrderUpdate {
    pub orderid: String,
    pub order_status: String,
    #[serde(default)]
    pub symbol: String,
    #[serde(default)]
    pub exchange: String,
    #[serde(default)]
    pub action: String,
    #[serde(default, deserialize_with = "f64_optional")]
    pub quantity: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub filled_quantity: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub pending_quantity: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub average_price: Option<f64>,
    #[serde(default)]
    pub rejection_reason: Option<String>,
    #[serde(default)]
    pub strategy: Option<String>,
}

/// True when a text frame is a `market_data` push (a cheap check before full parsing).
pub fn is_market_data(text: &str) -> bool {
    text.contains("\"market_data\"")
}

/// One `market_data` push, borrowing from the frame where it can.
#[derive(Debug, Deserialize)]
pub struct MarketData<'a> {
    #[serde(borrow)]
    pub symbol: Cow<'a, str>,
    #[serde(borrow)]
    pub exchange: Cow<'a, str>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub mode: Option<f64>,
    pub data: TickData,
}

/// The adapter payload of a tick. Quote and Depth fields are optional; `bid`/`ask` fall back to
/// the best depth level when the broker sends depth only.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TickData {
    #[serde(deserialize_with = "f64_required")]
    pub ltp: f64,
    #[serde(default, deserialize_with = "f64_optional")]
    pub open: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub high: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub low: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub close: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub volume: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub oi: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub bid: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub ask: Option<f64>,
    /// Simulator extension: epoch microseconds when the gateway sent the tick (benchmark latency).
    #[serde(default, deserialize_with = "f64_optional")]
    pub sim_sent_us: Option<f64>,
    #[serde(default)]
    pub depth: Option<Depth>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Depth {
    #[serde(default)]
    pub buy: Vec<Level>,
    #[serde(default)]
    pub sell: Vec<Level>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Level {
    #[serde(default, deserialize_with = "f64_optional")]
    pub price: Option<f64>,
}

impl TickData {
    /// Best bid: the `bid` field, else the first depth level with a positive price.
    pub fn best_bid(&self) -> Option<f64> {
        self.bid
            .or_else(|| best(self.depth.as_ref().map(|d| &d.buy[..])))
    }
    pub fn best_ask(&self) -> Option<f64> {
        self.ask
            .or_else(|| best(self.depth.as_ref().map(|d| &d.sell[..])))
    }
}

fn best(levels: Option<&[Level]>) -> Option<f64> {
    levels?.first()?.price.filter(|p| *p > 0.0)
}

/// Parses a `market_data` frame.
pub fn parse_market_data(frame: &[u8]) -> Result<MarketData<'_>, serde_json::Error> {
    serde_json::from_slice(frame)
}

/// Every non-tick message the client acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    AuthOk {
        broker: Option<String>,
    },
    /// `{"status":"error","code":…,"message":…}` (error replies carry no `type`).
    Error {
        code: Option<String>,
        message: String,
    },
    /// Subscribe ack; `rejected` lists per-symbol errors of a `partial` ack.
    SubscribeAck {
        rejected: Vec<SymbolError>,
    },
    UnsubscribeAck,
    /// `subscribe_orders` succeeded: order updates of the key follow.
    OrdersSubscribed,
    /// An order of the key changed.
    OrderUpdate(Box<OrderUpdate>),
    Pong,
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SymbolError {
    pub exchange: String,
    pub symbol: String,
    pub message: String,
}

#[derive(Deserialize)]
struct RawControl {
    #[serde(rename = "type")]
    kind: Option<String>,
    status: Option<String>,
    code: Option<String>,
    message: Option<String>,
    broker: Option<String>,
    #[serde(default)]
    subscriptions: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    symbol: String,
    #[serde(default)]
    exchange: String,
    #[serde(default)]
    status: String,
    message: Option<String>,
}

/// Parses a control frame. Anything unrecognised is `Control::Other`.
pub fn parse_control(text: &str) -> Result<Control, serde_json::Error> {
    let raw: RawControl = serde_json::from_str(text)?;
    let status = raw.status.as_deref().unwrap_or("");
    Ok(match raw.kind.as_deref() {
        Some("order_update") => {
            let mut update: OrderUpdate = serde_json::from_str(text)?;
            update.orderid = clip(&update.orderid);
            update.rejection_reason = update.rejection_reason.map(|r| clip(&r));
            Control::OrderUpdate(Box::new(update))
        }
        Some("subscribe_orders") if status == "success" => Control::OrdersSubscribed,
        Some("auth") | Some("authenticate") if status == "success" => Control::AuthOk {
            broker: raw.broker.map(|b| clip(&b)),
        },
        Some("subscribe") => Control::SubscribeAck {
            rejected: raw
                .subscriptions
                .into_iter()
                .filter(|e| e.status != "success")
                .map(|e| SymbolError {
                    exchange: clip(&e.exchange),
                    symbol: clip(&e.symbol),
                    message: e
                        .message
                        .map_or_else(|| "rejected by the gateway".into(), |m| clip(&m)),
                })
                .collect(),
        },
        Some("unsubscribe") => Control::UnsubscribeAck,
        Some("pong") => Control::Pong,
        _ if status == "error" => Control::Error {
            code: raw.code.map(|c| clip(&c)),
            message: raw.message.map(|m| clip(&m)).unwrap_or_default(),
        },
        _ => Control::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reference_ltp_tick() {
        let f = r#"{"type":"market_data","symbol":"RELIANCE","exchange":"NSE","mode":1,"broker":"angel",
            "data":{"ltp":1424.0,"ltt":1746171226000,"symbol":"RELIANCE","exchange":"NSE","mode":1,"timestamp":1746171226123}}"#;
        assert!(is_market_data(f));
        let md = parse_market_data(f.as_bytes()).unwrap();
        assert_eq!(md.symbol, "RELIANCE");
        assert_eq!(md.exchange, "NSE");
        assert_eq!(md.mode, Some(1.0));
        assert_eq!(md.data.ltp, 1424.0);
        assert!(
            matches!(md.symbol, Cow::Borrowed(_)),
            "no allocation for plain symbols"
        );
    }

    #[test]
    fn tolerates_strings_unknown_fields_and_broker_variants() {
        let f = r#"{"type":"market_data","symbol":"NIFTY","exchange":"NSE_INDEX","mode":"2",
            "data":{"ltp":"24510.5","volume":"1200","open":null,"mode":"quote","price_change":1.2,
            "exchange_timestamp":"x","depth":{"buy":[{"price":24510.0,"quantity":5,"orders":1}],
            "sell":[{"price":"24511","quantity":1}]}}}"#;
        let md = parse_market_data(f.as_bytes()).unwrap();
        assert_eq!(md.data.ltp, 24510.5);
        assert_eq!(md.data.volume, Some(1200.0));
        assert_eq!(md.data.open, None);
        assert_eq!(md.data.best_bid(), Some(24510.0));
        assert_eq!(md.data.best_ask(), Some(24511.0));
    }

    #[test]
    fn rejects_ticks_without_a_usable_ltp() {
        for f in [
            r#"{"type":"market_data","symbol":"A","exchange":"NSE","data":{}}"#,
            r#"{"type":"market_data","symbol":"A","exchange":"NSE","data":{"ltp":"abc"}}"#,
            r#"{"type":"market_data","symbol":"A","exchange":"NSE"}"#,
            r#"{"type":"market_data","#,
        ] {
            assert!(parse_market_data(f.as_bytes()).is_err(), "{f}");
        }
    }

    #[test]
    fn parses_control_messages() {
        assert_eq!(
            parse_control(r#"{"type":"auth","status":"success","message":"Authentication successful","broker":"zerodha","user_id":"u"}"#).unwrap(),
            Control::AuthOk { broker: Some("zerodha".into()) }
        );
        assert_eq!(
            parse_control(r#"{"status":"error","code":"BROKER_CONNECTION_ERROR","message":"Connection Limit Exceeded (429)"}"#).unwrap(),
            Control::Error { code: Some("BROKER_CONNECTION_ERROR".into()), message: "Connection Limit Exceeded (429)".into() }
        );
        let ack = parse_control(r#"{"type":"subscribe","status":"partial","subscriptions":[
            {"symbol":"RELIANCE","exchange":"NSE","status":"success","mode":"Quote"},
            {"symbol":"BAD","exchange":"NSE","status":"error","message":"Symbol BAD not found for exchange NSE"}]}"#).unwrap();
        assert_eq!(
            ack,
            Control::SubscribeAck {
                rejected: vec![SymbolError {
                    exchange: "NSE".into(),
                    symbol: "BAD".into(),
                    message: "Symbol BAD not found for exchange NSE".into()
                }]
            }
        );
        assert_eq!(
            parse_control(r#"{"type":"pong","status":"success"}"#).unwrap(),
            Control::Pong
        );
        assert_eq!(
            parse_control(r#"{"type":"broker_info"}"#).unwrap(),
            Control::Other
        );
        assert!(parse_control("not json").is_err());
    }

    #[test]
    fn parses_order_updates_and_the_subscribe_orders_ack() {
        assert_eq!(
            parse_control(r#"{"type":"subscribe_orders","status":"success","message":"Subscribed to order updates"}"#).unwrap(),
            Control::OrdersSubscribed
        );
        let update = parse_control(r#"{"type":"order_update","user_id":"SIM001","mode":"live","broker":"angel",
            "orderid":"261128000000007","symbol":"INFY","exchange":"NSE","action":"SELL","quantity":"10",
            "price":0,"trigger_price":0,"pricetype":"MARKET","product":"MIS","order_status":"complete",
            "filled_quantity":10,"pending_quantity":"0","average_price":"1512.5","rejection_reason":""}"#)
        .unwrap();
        let Control::OrderUpdate(u) = update else {
            panic!("an order update: {update:?}");
        };
        assert_eq!(u.orderid, "261128000000007");
        assert_eq!(u.order_status, "complete");
        assert_eq!(u.quantity, Some(10.0));
        assert_eq!(u.filled_quantity, Some(10.0));
        assert_eq!(u.pending_quantity, Some(0.0));
        assert_eq!(u.average_price, Some(1512.5));
        // Without an order id it is not an update the supervisor can use.
        assert!(parse_control(r#"{"type":"order_update","order_status":"open"}"#).is_err());
        let v: serde_json::Value = serde_json::from_str(&subscribe_orders_frame()).unwrap();
        assert_eq!(v["action"], "subscribe_orders");
    }

    #[test]
    fn the_authenticate_frame_has_the_key() {
        let v: serde_json::Value = serde_json::from_str(&authenticate_frame("k1")).unwrap();
        assert_eq!(v["action"], "authenticate");
        assert_eq!(v["api_key"], "k1");
    }
}
