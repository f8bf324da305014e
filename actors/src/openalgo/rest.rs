//! REST client for the OpenAlgo endpoints the actors use (docs/openalgo.md §3: conventions,
//! the endpoints called, how failures and 429s are classified).
//! Every call carries the account's API key in the body; errors never contain it.

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::lenient::{f64_optional, f64_required, string_or_number};
use crate::domain::mask::clip;
use crate::secrets::ApiKey;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RestError {
    #[error("{endpoint}: gateway unreachable: {detail}")]
    Transport { endpoint: String, detail: String },
    #[error("{endpoint}: no answer within {timeout_ms} ms")]
    Timeout { endpoint: String, timeout_ms: u64 },
    #[error("{endpoint}: HTTP {status}: {message}")]
    Rejected {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("{endpoint}: unexpected answer: {detail}")]
    Decode { endpoint: String, detail: String },
    #[error("{endpoint}: rate-limited (HTTP 429): {message}")]
    RateLimited {
        endpoint: String,
        /// The wait the gateway asked for (`retry_after` in the body, or `Retry-After`).
        retry_after: Option<Duration>,
        message: String,
    },
}

impl RestError {
    /// True when the request may or may not have reached the gateway (no definite answer).
    pub fn is_uncertain(&self) -> bool {
        match self {
            RestError::Timeout { .. } | RestError::Transport { .. } | RestError::Decode { .. } => {
                true
            }
            RestError::Rejected { status, .. } => *status >= 500,
            RestError::RateLimited { .. } => false,
        }
    }

    /// The HTTP status of a refusal, if it was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            RestError::Rejected { status, .. } => Some(*status),
            RestError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }
}

/// A client bound to one account (base URL + API key). Not `Send`: create it on the arbiter
/// that uses it.
#[derive(Clone)]
pub struct RestClient {
    base_url: String,
    api_key: ApiKey,
    timeout: Duration,
    http: awc::Client,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Position {
    pub symbol: String,
    pub exchange: String,
    #[serde(default)]
    pub product: String,
    #[serde(deserialize_with = "f64_required")]
    pub quantity: f64,
    #[serde(default, deserialize_with = "f64_optional")]
    pub average_price: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub ltp: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Order {
    #[serde(default)]
    pub orderid: String,
    #[serde(default)]
    pub symbol: String,
    #[serde(default)]
    pub exchange: String,
    #[serde(default)]
    pub action: String,
    #[serde(default, deserialize_with = "f64_optional")]
    pub quantity: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub price: Option<f64>,
    #[serde(default)]
    pub order_status: String,
    #[serde(default)]
    pub product: String,
    /// Average fill price, when the broker reports it (0 or missing until filled).
    #[serde(default, deserialize_with = "f64_optional")]
    pub average_price: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub filled_quantity: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub pending_quantity: Option<f64>,
    /// The strategy tag the order was placed with, when the gateway echoes it.
    #[serde(default)]
    pub strategy: Option<String>,
    /// When the broker took or last changed the order, as the broker writes it.
    #[serde(default, deserialize_with = "string_or_number")]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub rejection_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Trade {
    #[serde(default)]
    pub orderid: String,
    #[serde(default, deserialize_with = "f64_optional")]
    pub quantity: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub average_price: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Quote {
    #[serde(deserialize_with = "f64_required")]
    pub ltp: f64,
    #[serde(default, deserialize_with = "f64_optional")]
    pub bid: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub ask: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub volume: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub oi: Option<f64>,
}

/// A MARKET/LIMIT order as `placeorder` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderRequest {
    pub strategy: String,
    pub exchange: String,
    pub symbol: String,
    pub action: String,
    pub quantity: i64,
    pub product: String,
    pub pricetype: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OptionSymbol {
    pub symbol: String,
    pub exchange: String,
    #[serde(default, deserialize_with = "f64_optional")]
    pub lotsize: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub freeze_qty: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    pub underlying_ltp: Option<f64>,
}

/// The gateway's message, bounded: the gateway decides how long it is.
fn message_of(value: &Value) -> String {
    match &value["message"] {
        Value::String(s) => clip(s),
        Value::Null => "no message".into(),
        other => clip(&other.to_string()),
    }
}

impl RestClient {
    pub fn new(base_url: &str, api_key: &ApiKey, timeout: Duration) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: api_key.clone(),
            timeout,
            http: awc::Client::builder().timeout(timeout).finish(),
        }
    }

    /// POSTs `body` (plus the API key) to `/api/v1/<endpoint>` and returns the success body.
    pub async fn call(&self, endpoint: &str, mut body: Value) -> Result<Value, RestError> {
        if let Value::Object(map) = &mut body {
            map.insert(
                "apikey".into(),
                Value::String(self.api_key.expose().to_owned()),
            );
        }
        let url = format!("{}/api/v1/{endpoint}", self.base_url);
        let mut resp = self
            .http
            .post(url)
            .send_json(&body)
            .await
            .map_err(|e| match e {
                awc::error::SendRequestError::Timeout => RestError::Timeout {
                    endpoint: endpoint.into(),
                    timeout_ms: self.timeout.as_millis() as u64,
                },
                other => RestError::Transport {
                    endpoint: endpoint.into(),
                    detail: clip(&other.to_string()),
                },
            })?;
        let status = resp.status().as_u16();
        let retry_header = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let bytes =
            resp.body()
                .limit(32 * 1024 * 1024)
                .await
                .map_err(|e| RestError::Transport {
                    endpoint: endpoint.into(),
                    detail: format!("reading the body: {e}"),
                })?;
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        if status == 429 {
            let value = parsed.unwrap_or(Value::Null);
            let seconds = value["retry_after"]
                .as_f64()
                .or_else(|| value["retry_after"].as_str()?.parse().ok())
                .or(retry_header)
                .filter(|s| s.is_finite() && *s >= 0.0);
            return Err(RestError::RateLimited {
                endpoint: endpoint.into(),
                retry_after: seconds.map(Duration::from_secs_f64),
                message: message_of(&value),
            });
        }
        let value: Value = parsed.map_err(|e| RestError::Decode {
            endpoint: endpoint.into(),
            detail: clip(&format!("HTTP {status}, not JSON: {e}")),
        })?;
        if status >= 400 || value["status"] != "success" {
            let message = message_of(&value);
            return Err(RestError::Rejected {
                endpoint: endpoint.into(),
                status,
                message,
            });
        }
        Ok(value)
    }

    fn decode<T: DeserializeOwned>(endpoint: &str, v: Value) -> Result<T, RestError> {
        serde_json::from_value(v).map_err(|e| RestError::Decode {
            endpoint: endpoint.into(),
            detail: clip(&e.to_string()),
        })
    }

    pub async fn ping(&self) -> Result<(), RestError> {
        self.call("ping", json!({})).await.map(|_| ())
    }

    /// Places an order; returns the broker order id.
    pub async fn place_order(&self, order: &OrderRequest) -> Result<String, RestError> {
        let v = self
            .call(
                "placeorder",
                json!({
                    "strategy": order.strategy, "exchange": order.exchange,
                    "symbol": order.symbol, "action": order.action,
                    "quantity": order.quantity.to_string(), "pricetype": order.pricetype,
                    "product": order.product,
                }),
            )
            .await?;
        match &v["orderid"] {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(RestError::Decode {
                endpoint: "placeorder".into(),
                detail: "success without an orderid".into(),
            }),
        }
    }

    /// One order's state (`orderstatus`): an order book row.
    pub async fn order_status(&self, order_id: &str, strategy: &str) -> Result<Order, RestError> {
        let v = self
            .call(
                "orderstatus",
                json!({"orderid": order_id, "strategy": strategy}),
            )
            .await?;
        Self::decode("orderstatus", v["data"].clone())
    }

    /// Cancels a working order (`cancelorder`).
    pub async fn cancel_order(&self, order_id: &str, strategy: &str) -> Result<(), RestError> {
        self.call(
            "cancelorder",
            json!({"orderid": order_id, "strategy": strategy}),
        )
        .await
        .map(|_| ())
    }

    pub async fn trade_book(&self) -> Result<Vec<Trade>, RestError> {
        let v = self.call("tradebook", json!({})).await?;
        Self::decode("tradebook", v["data"].clone())
    }

    pub async fn position_book(&self) -> Result<Vec<Position>, RestError> {
        let v = self.call("positionbook", json!({})).await?;
        Self::decode("positionbook", v["data"].clone())
    }

    pub async fn order_book(&self) -> Result<Vec<Order>, RestError> {
        let v = self.call("orderbook", json!({})).await?;
        Self::decode("orderbook", v["data"]["orders"].clone())
    }

    pub async fn quotes(&self, exchange: &str, symbol: &str) -> Result<Quote, RestError> {
        let v = self
            .call("quotes", json!({"exchange": exchange, "symbol": symbol}))
            .await?;
        Self::decode("quotes", v["data"].clone())
    }

    /// Expiry dates (DD-MMM-YY strings, sorted) of an underlying's options.
    pub async fn expiries(&self, symbol: &str, exchange: &str) -> Result<Vec<String>, RestError> {
        let v = self
            .call(
                "expiry",
                json!({"symbol": symbol, "exchange": exchange, "instrumenttype": "options"}),
            )
            .await?;
        Self::decode("expiry", v["data"].clone())
    }

    /// The option chain of an underlying (raw body: `underlying_ltp`, `atm_strike`, `chain`).
    pub async fn option_chain(
        &self,
        underlying: &str,
        exchange: &str,
        expiry_compact: &str,
        strike_count: u32,
    ) -> Result<Value, RestError> {
        self.call(
            "optionchain",
            json!({"underlying": underlying, "exchange": exchange,
                   "expiry_date": expiry_compact, "strike_count": strike_count}),
        )
        .await
    }

    /// Resolves an option symbol (lot size, freeze quantity) for an offset from ATM.
    pub async fn option_symbol(
        &self,
        underlying: &str,
        exchange: &str,
        expiry_compact: &str,
        offset: &str,
        option_type: &str,
    ) -> Result<OptionSymbol, RestError> {
        let v = self
            .call(
                "optionsymbol",
                json!({"underlying": underlying, "exchange": exchange,
                       "expiry_date": expiry_compact, "offset": offset,
                       "option_type": option_type}),
            )
            .await?;
        Self::decode("optionsymbol", v)
    }
}
