//! Test and demo control under `/sim/*` on the REST port (no API key).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use super::rest::orders_log;
use super::state::{Core, Shared, now_us};

fn reply(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

fn bad_request(message: impl Into<String>) -> HttpResponse {
    reply(
        StatusCode::BAD_REQUEST,
        json!({"status": "error", "message": message.into()}),
    )
}

fn object(body: &[u8]) -> Option<Map<String, Value>> {
    serde_json::from_slice(body).ok()
}

const NOT_AN_OBJECT: &str = "body must be a JSON object";

/// `GET /sim/stats`
pub(crate) async fn stats(shared: web::Data<Shared>) -> HttpResponse {
    let core = shared.core();
    reply(StatusCode::OK, stats_json(&core))
}

fn stats_json(core: &Core) -> Value {
    let mut connections: BTreeMap<&str, usize> = BTreeMap::new();
    let mut orders_by_key: BTreeMap<&str, usize> = BTreeMap::new();
    for account in &core.accounts {
        *connections.entry(&account.masked).or_default() += account.connections;
        orders_by_key.entry(&account.masked).or_default();
    }
    for record in &core.orders_log {
        *orders_by_key
            .entry(&core.accounts[record.account].masked)
            .or_default() += 1;
    }
    let subscriptions: Vec<Value> = core
        .subscription_rows()
        .into_iter()
        .map(|(instrument, mode, clients)| {
            let i = &core.market.instruments[instrument];
            json!({"exchange": i.exchange, "symbol": i.symbol, "mode": mode, "clients": clients})
        })
        .collect();
    json!({
        "feed": {
            "connections": connections,
            "total_connections": core.clients.len(),
            "refused_connections": core.stats.refused_connections,
            "auth_attempts": core.stats.auth_attempts,
            "malformed_in": core.stats.malformed_in,
        },
        "subscriptions": subscriptions,
        "orders": {"total": core.orders_log.len(), "by_key": orders_by_key},
        "ticks_sent": core.stats.ticks_sent,
        "ticks_dropped": core.stats.ticks_dropped,
        "ticks_per_s": core.ticks_per_s,
    })
}

/// `GET /sim/orders`
pub(crate) async fn orders(shared: web::Data<Shared>) -> HttpResponse {
    let core = shared.core();
    reply(StatusCode::OK, orders_log(&core))
}

/// `POST /sim/price {"exchange","symbol","ltp"}`
pub(crate) async fn price(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let Some(body) = object(&body) else {
        return bad_request(NOT_AN_OBJECT);
    };
    if let Some(unknown) = body
        .keys()
        .find(|k| !["exchange", "symbol", "ltp"].contains(&k.as_str()))
    {
        return bad_request(format!("unknown field: {unknown}"));
    }
    let (Some(exchange), Some(symbol)) = (
        body.get("exchange").and_then(Value::as_str),
        body.get("symbol").and_then(Value::as_str),
    ) else {
        return bad_request("exchange and symbol are required strings");
    };
    let Some(ltp) = body
        .get("ltp")
        .and_then(Value::as_f64)
        .filter(|p| p.is_finite() && *p > 0.0)
    else {
        return bad_request("ltp must be a positive number");
    };
    let mut core = shared.core();
    let Some(instrument) = core.market.id(exchange, symbol) else {
        return reply(
            StatusCode::NOT_FOUND,
            json!({"status": "error", "message": format!("unknown instrument {exchange}:{symbol}")}),
        );
    };
    core.set_price(instrument, ltp);
    reply(
        StatusCode::OK,
        json!({"status": "ok", "exchange": exchange, "symbol": symbol, "ltp": ltp,
               "sent_at_us": now_us()}),
    )
}

/// `GET /sim/instruments`: every instrument with its exchange, symbol and lot size.
pub(crate) async fn instruments(shared: web::Data<Shared>) -> HttpResponse {
    let core = shared.core();
    let rows: Vec<Value> = core
        .market
        .instruments
        .iter()
        .map(|i| json!({"exchange": i.exchange, "symbol": i.symbol, "lot_size": i.lot}))
        .collect();
    reply(StatusCode::OK, Value::Array(rows))
}

/// A validated `/sim/fault` request.
#[derive(Debug, Default, PartialEq)]
struct FaultRequest {
    api_key: Option<String>,
    drop_connections: bool,
    refuse_auth_s: Option<f64>,
    pause_ticks_s: Option<f64>,
    latency_ms: Option<u64>,
    malformed_frames: Option<u64>,
    reject_orders: Option<u64>,
}

fn parse_fault(body: &Map<String, Value>) -> Result<FaultRequest, String> {
    let seconds = |field: &str, value: &Value| {
        value
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| format!("{field} must be a non-negative number of seconds"))
    };
    let count = |field: &str, value: &Value| {
        value
            .as_u64()
            .ok_or_else(|| format!("{field} must be a non-negative integer"))
    };
    let mut request = FaultRequest::default();
    for (field, value) in body {
        match field.as_str() {
            "api_key" => {
                request.api_key = Some(
                    value
                        .as_str()
                        .ok_or("api_key must be a string")?
                        .to_string(),
                )
            }
            "drop_connections" => {
                request.drop_connections = value
                    .as_bool()
                    .ok_or("drop_connections must be a boolean")?
            }
            "refuse_auth_s" => request.refuse_auth_s = Some(seconds(field, value)?),
            "pause_ticks_s" => request.pause_ticks_s = Some(seconds(field, value)?),
            "latency_ms" => request.latency_ms = Some(count(field, value)?),
            "malformed_frames" => request.malformed_frames = Some(count(field, value)?),
            "reject_orders" => request.reject_orders = Some(count(field, value)?),
            other => return Err(format!("unknown field: {other}")),
        }
    }
    Ok(request)
}

/// `POST /sim/fault`
pub(crate) async fn fault(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let Some(body) = object(&body) else {
        return bad_request(NOT_AN_OBJECT);
    };
    let request = match parse_fault(&body) {
        Ok(request) => request,
        Err(message) => return bad_request(message),
    };
    let mut core = shared.core();
    let account = match &request.api_key {
        Some(key) => match core.account_of(key) {
            Some(account) => Some(account),
            None => return bad_request("api_key is not one of the simulator's keys"),
        },
        None => None,
    };
    let now = Instant::now();
    let until = |s: f64| (s > 0.0).then(|| now + Duration::from_secs_f64(s));
    let faults = match account {
        Some(a) => &mut core.accounts[a].faults,
        None => &mut core.faults,
    };
    if let Some(s) = request.refuse_auth_s {
        faults.refuse_auth_until = until(s);
    }
    if let Some(s) = request.pause_ticks_s {
        faults.pause_ticks_until = until(s);
    }
    if let Some(ms) = request.latency_ms {
        faults.latency_ms = ms;
    }
    if let Some(n) = request.reject_orders {
        faults.reject_orders = n;
    }
    if let Some(n) = request.malformed_frames {
        core.send_malformed(account, n);
    }
    if request.drop_connections {
        core.drop_connections(account);
    }
    reply(StatusCode::OK, json!({"status": "ok"}))
}

/// `POST /sim/rate {"ticks_per_s": N}`
pub(crate) async fn rate(body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let Some(body) = object(&body) else {
        return bad_request(NOT_AN_OBJECT);
    };
    if let Some(unknown) = body.keys().find(|k| k.as_str() != "ticks_per_s") {
        return bad_request(format!("unknown field: {unknown}"));
    }
    let Some(rate) = body
        .get("ticks_per_s")
        .and_then(Value::as_f64)
        .filter(|r| r.is_finite() && *r >= 0.0)
    else {
        return bad_request("ticks_per_s must be a non-negative number");
    };
    shared.core().ticks_per_s = rate;
    reply(StatusCode::OK, json!({"status": "ok", "ticks_per_s": rate}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<FaultRequest, String> {
        parse_fault(v.as_object().unwrap())
    }

    #[test]
    fn fault_requests_validate_every_field() {
        assert_eq!(
            parse(json!({"refuse_auth_s": 2, "latency_ms": 50, "api_key": "k"})),
            Ok(FaultRequest {
                api_key: Some("k".into()),
                refuse_auth_s: Some(2.0),
                latency_ms: Some(50),
                ..FaultRequest::default()
            })
        );
        assert!(
            parse(json!({"drop_connections": true}))
                .unwrap()
                .drop_connections
        );
        assert!(
            parse(json!({"explode": true}))
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(parse(json!({"latency_ms": -1})).is_err());
        assert!(parse(json!({"malformed_frames": 1.5})).is_err());
        assert!(parse(json!({"pause_ticks_s": "5"})).is_err());
        assert!(parse(json!({"drop_connections": 1})).is_err());
    }
}
