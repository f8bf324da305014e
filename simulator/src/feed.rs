//! Client → server messages of the feed (docs/openalgo.md §2.1–§2.4, §2.6, §2.7, §2.9) and
//! their replies.

use std::time::Instant;

use actix_web_actors::ws::{CloseCode, CloseReason};
use serde_json::{Map, Value, json};

use super::state::{BROKER, Core};

/// What a session sends back for one client frame.
#[derive(Debug)]
pub(crate) struct Reply {
    pub text: String,
    /// Close the connection after sending `text`.
    pub close: Option<CloseReason>,
}

impl Reply {
    fn send(value: Value) -> Reply {
        Reply {
            text: value.to_string(),
            close: None,
        }
    }
}

fn error(code: &str, message: impl Into<String>) -> Value {
    json!({"status": "error", "code": code, "message": message.into()})
}

/// Python truthiness of an optional JSON value (how the gateway reads optional fields).
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// How the gateway prints a value in its messages (Python `str()`).
fn python_str(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "None".to_string(),
        Some(Value::Bool(true)) => "True".to_string(),
        Some(Value::Bool(false)) => "False".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

pub(crate) fn mode_label(mode: u8) -> &'static str {
    match mode {
        1 => "LTP",
        2 => "Quote",
        _ => "Depth",
    }
}

/// Accepts an int 1–3 or a case-insensitive "LTP"/"Quote"/"Depth" (surrounding
/// whitespace ignored). The error text is the gateway's.
pub(crate) fn parse_mode(value: &Value) -> Result<u8, String> {
    match value {
        Value::Bool(b) => Err(format!(
            "Mode must be int or str, got bool ({})",
            if *b { "True" } else { "False" }
        )),
        Value::Number(n) => match n.as_i64() {
            Some(m @ 1..=3) => Ok(m as u8),
            Some(m) => Err(format!(
                "Invalid mode {m}; expected 1 (LTP), 2 (Quote), or 3 (Depth)"
            )),
            None if n.is_u64() => Err(format!(
                "Invalid mode {n}; expected 1 (LTP), 2 (Quote), or 3 (Depth)"
            )),
            None => Err("Mode must be int or str, got float".to_string()),
        },
        Value::String(s) => match s.trim().to_ascii_uppercase().as_str() {
            "LTP" => Ok(1),
            "QUOTE" => Ok(2),
            "DEPTH" => Ok(3),
            _ => Err(format!(
                "Invalid mode '{s}'; expected 'LTP', 'Quote', or 'Depth' (case-insensitive)"
            )),
        },
        other => Err(format!(
            "Mode must be int or str, got {}",
            python_type(other)
        )),
    }
}

fn not_authenticated() -> Reply {
    Reply::send(error("NOT_AUTHENTICATED", "You must authenticate first"))
}

fn with_request_id(mut reply: Value, message: &Map<String, Value>) -> Value {
    if let Some(id) = message.get("request_id").filter(|v| !v.is_null()) {
        reply["request_id"] = id.clone();
    }
    reply
}

impl Core {
    /// Handles one client frame (`None` for a frame that is not UTF-8 text).
    pub(crate) fn client_frame(&mut self, id: u64, text: Option<&str>) -> Reply {
        let parsed = text.and_then(|t| serde_json::from_str::<Value>(t).ok());
        let Some(Value::Object(message)) = parsed else {
            self.stats.malformed_in += 1;
            return Reply::send(error("INVALID_JSON", "Invalid JSON message"));
        };
        let action = if truthy(message.get("action")) {
            message.get("action")
        } else {
            message.get("type")
        };
        match action.and_then(Value::as_str) {
            Some("authenticate" | "auth") => self.authenticate_message(id, &message),
            Some("subscribe") => self.subscribe_message(id, &message),
            Some(all @ ("unsubscribe" | "unsubscribe_all")) => {
                self.unsubscribe_message(id, &message, all == "unsubscribe_all")
            }
            Some("subscribe_orders") => self.order_updates_message(id, &message, true),
            Some("unsubscribe_orders") => self.order_updates_message(id, &message, false),
            Some("get_broker_info") => match self.client_account(id) {
                Some(account) => Reply::send(json!({
                    "type": "broker_info",
                    "status": "success",
                    "broker": BROKER,
                    "adapter_status": "connected",
                    "user_id": self.accounts[account].user_id,
                })),
                None => not_authenticated(),
            },
            Some("get_supported_brokers") => Reply::send(json!({
                "type": "supported_brokers",
                "status": "success",
                "brokers": [BROKER],
                "count": 1,
            })),
            Some("ping") => {
                let mut pong = json!({
                    "type": "pong",
                    "status": "success",
                    "server_timestamp": self.now().timestamp_millis(),
                });
                if let Some(ts) = message.get("timestamp").filter(|v| !v.is_null()) {
                    pong["client_timestamp"] = ts.clone();
                }
                if let Some(ping_id) = message.get("_pingId").filter(|v| !v.is_null()) {
                    pong["_pingId"] = ping_id.clone();
                }
                Reply::send(pong)
            }
            _ => {
                self.stats.malformed_in += 1;
                Reply::send(error(
                    "INVALID_ACTION",
                    format!("Invalid action: {}", python_str(action)),
                ))
            }
        }
    }

    fn authenticate_message(&mut self, id: u64, message: &Map<String, Value>) -> Reply {
        self.stats.auth_attempts += 1;
        let key = if truthy(message.get("api_key")) {
            message.get("api_key")
        } else {
            message.get("apikey")
        };
        if !truthy(key) {
            return Reply::send(error("AUTHENTICATION_ERROR", "API key is required"));
        }
        let account = key.and_then(Value::as_str).and_then(|k| self.account_of(k));
        let Some(account) = account.filter(|a| !self.auth_refused(Some(*a), Instant::now())) else {
            return Reply::send(error("AUTHENTICATION_ERROR", "Invalid API key"));
        };
        if !self.authenticate(id, account) {
            return Reply {
                text: error("BROKER_CONNECTION_ERROR", "Connection Limit Exceeded (429)")
                    .to_string(),
                close: Some(CloseReason {
                    code: CloseCode::Policy,
                    description: Some("Connection Limit Exceeded".to_string()),
                }),
            };
        }
        Reply::send(json!({
            "type": "auth",
            "status": "success",
            "message": "Authentication successful",
            "broker": BROKER,
            "user_id": self.accounts[account].user_id,
            "supported_features": {"ltp": true, "quote": true, "depth": true},
        }))
    }

    fn subscribe_message(&mut self, id: u64, message: &Map<String, Value>) -> Reply {
        if !self.is_authenticated(id) {
            return not_authenticated();
        }
        let mode = match message.get("mode").map_or(Ok(2), parse_mode) {
            Ok(mode) => mode,
            Err(text) => return Reply::send(error("INVALID_MODE", text)),
        };
        let entries: Vec<Value> = if truthy(message.get("symbols")) {
            match message.get("symbols") {
                Some(Value::Array(list)) => list.clone(),
                _ => {
                    return Reply::send(error(
                        "INVALID_PARAMETERS",
                        "At least one symbol must be specified",
                    ));
                }
            }
        } else if truthy(message.get("symbol")) && truthy(message.get("exchange")) {
            vec![json!({"symbol": message.get("symbol"), "exchange": message.get("exchange")})]
        } else {
            Vec::new()
        };
        if entries.is_empty() {
            return Reply::send(error(
                "INVALID_PARAMETERS",
                "At least one symbol must be specified",
            ));
        }
        let mut all_ok = true;
        let mut results = Vec::with_capacity(entries.len());
        for entry in &entries {
            let (symbol, exchange) = (entry.get("symbol"), entry.get("exchange"));
            if !truthy(symbol) || !truthy(exchange) {
                continue;
            }
            let instrument = match (
                symbol.and_then(Value::as_str),
                exchange.and_then(Value::as_str),
            ) {
                (Some(s), Some(e)) => self.market.id(e, s),
                _ => None,
            };
            match instrument {
                Some(instrument) => {
                    self.hold(id, instrument, mode);
                    results.push(json!({
                        "symbol": symbol,
                        "exchange": exchange,
                        "status": "success",
                        "mode": mode_label(mode),
                        "depth": 5,
                        "broker": BROKER,
                    }));
                }
                None => {
                    all_ok = false;
                    results.push(json!({
                        "symbol": symbol,
                        "exchange": exchange,
                        "status": "error",
                        "message": format!(
                            "Symbol {} not found for exchange {}",
                            python_str(symbol),
                            python_str(exchange)
                        ),
                        "broker": BROKER,
                    }));
                }
            }
        }
        let reply = json!({
            "type": "subscribe",
            "status": if all_ok { "success" } else { "partial" },
            "subscriptions": results,
            "message": "Subscription processing complete",
            "broker": BROKER,
        });
        Reply::send(with_request_id(reply, message))
    }

    fn unsubscribe_message(&mut self, id: u64, message: &Map<String, Value>, all: bool) -> Reply {
        if !self.is_authenticated(id) {
            return not_authenticated();
        }
        let mut entries: Vec<Value> = match message.get("symbols") {
            Some(Value::Array(list)) => list.clone(),
            _ => Vec::new(),
        };
        if entries.is_empty()
            && !all
            && truthy(message.get("symbol"))
            && truthy(message.get("exchange"))
        {
            let mode = match parse_mode(message.get("mode").unwrap_or(&json!(2))) {
                Ok(mode) => mode,
                Err(text) => return Reply::send(error("INVALID_MODE", text)),
            };
            entries.push(json!({
                "symbol": message.get("symbol"),
                "exchange": message.get("exchange"),
                "mode": mode,
            }));
        }
        if entries.is_empty() && !all {
            return Reply::send(error(
                "INVALID_PARAMETERS",
                "Either symbols or unsubscribe_all is required",
            ));
        }
        let mut successful = Vec::new();
        let mut failed = Vec::new();
        if all {
            for (instrument, _mode) in self.release_all(id) {
                let i = &self.market.instruments[instrument];
                successful.push(json!({
                    "symbol": i.symbol,
                    "exchange": i.exchange,
                    "status": "success",
                    "broker": BROKER,
                }));
            }
        } else {
            for entry in &entries {
                let (symbol, exchange) = (entry.get("symbol"), entry.get("exchange"));
                let mode = match parse_mode(entry.get("mode").unwrap_or(&json!(2))) {
                    Ok(mode) => mode,
                    Err(text) => {
                        failed.push(json!({
                            "symbol": symbol,
                            "exchange": exchange,
                            "status": "error",
                            "message": text,
                            "broker": BROKER,
                        }));
                        continue;
                    }
                };
                if !truthy(symbol) || !truthy(exchange) {
                    continue;
                }
                if let (Some(s), Some(e)) = (
                    symbol.and_then(Value::as_str),
                    exchange.and_then(Value::as_str),
                ) && let Some(instrument) = self.market.id(e, s)
                {
                    self.release(id, instrument, mode);
                }
                successful.push(json!({
                    "symbol": symbol,
                    "exchange": exchange,
                    "status": "success",
                    "broker": BROKER,
                }));
            }
        }
        let status = match (successful.is_empty(), failed.is_empty()) {
            (_, true) => "success",
            (false, false) => "partial",
            (true, false) => "error",
        };
        let reply = json!({
            "type": "unsubscribe",
            "status": status,
            "message": "Unsubscription processing complete",
            "successful": successful,
            "failed": failed,
            "broker": BROKER,
        });
        Reply::send(with_request_id(reply, message))
    }

    fn order_updates_message(&mut self, id: u64, message: &Map<String, Value>, on: bool) -> Reply {
        if !self.is_authenticated(id) {
            return not_authenticated();
        }
        if on
            && let Some(account) = self.client_account(id)
            && self.order_updates_refused(account, std::time::Instant::now())
        {
            let reply = json!({"status": "error", "code": "BROKER_ERROR",
                "message": "Order updates are not available for this broker (simulated)"});
            return Reply::send(with_request_id(reply, message));
        }
        self.set_order_updates(id, on);
        let reply = if on {
            json!({"type": "subscribe_orders", "status": "success", "message": "Subscribed to order updates"})
        } else {
            json!({"type": "unsubscribe_orders", "status": "success", "message": "Unsubscribed from order updates"})
        };
        Reply::send(with_request_id(reply, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_accept_ints_and_case_insensitive_names_only() {
        assert_eq!(parse_mode(&json!(1)), Ok(1));
        assert_eq!(parse_mode(&json!(3)), Ok(3));
        assert_eq!(parse_mode(&json!("ltp")), Ok(1));
        assert_eq!(parse_mode(&json!("QUOTE")), Ok(2));
        assert_eq!(parse_mode(&json!(" DePtH ")), Ok(3));
        assert!(
            parse_mode(&json!(0))
                .unwrap_err()
                .contains("Invalid mode 0")
        );
        assert!(parse_mode(&json!(4)).is_err());
        assert!(parse_mode(&json!("full")).unwrap_err().contains("'full'"));
        assert!(parse_mode(&json!(true)).unwrap_err().contains("bool"));
        assert!(parse_mode(&json!(2.0)).unwrap_err().contains("float"));
        assert!(parse_mode(&json!(null)).unwrap_err().contains("NoneType"));
        assert_eq!(mode_label(2), "Quote");
    }

    #[test]
    fn truthiness_follows_python() {
        assert!(!truthy(None));
        assert!(!truthy(Some(&json!(""))));
        assert!(!truthy(Some(&json!(0))));
        assert!(!truthy(Some(&json!([]))));
        assert!(truthy(Some(&json!("x"))));
        assert!(truthy(Some(&json!([1]))));
        assert_eq!(python_str(None), "None");
        assert_eq!(python_str(Some(&json!("foo"))), "foo");
        assert_eq!(python_str(Some(&json!(5))), "5");
    }
}
