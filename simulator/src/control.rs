//! Test and demo control under `/sim/*` on the REST port (no API key).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use super::faults::{
    AcceptThenReject, Counted, DEFAULT_REJECTION, Faults, LostAnswer, PartialFill, Rest,
};
use super::payload::order_row;
use super::state::{Core, Outcome, Shared, now_us};

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
    let mut order_subscribers: BTreeMap<&str, usize> = BTreeMap::new();
    for (at, account) in core.accounts.iter().enumerate() {
        *connections.entry(&account.masked).or_default() += account.connections;
        orders_by_key.entry(&account.masked).or_default();
        *order_subscribers.entry(&account.masked).or_default() += core.order_subscribers(at);
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
            "order_subscribers": order_subscribers,
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

/// Records of `/sim/orders`, oldest first: each booked order as an order-book row as it
/// stands now, with `key`, `status`, `received_at_us` and its `history`; each refused
/// request with its reason.
fn orders_log(core: &Core) -> Value {
    let rows: Vec<Value> = core
        .orders_log
        .iter()
        .map(|record| {
            let account = &core.accounts[record.account];
            match &record.outcome {
                Outcome::Booked(at) => {
                    let o = &account.book.orders[*at];
                    let mut row = o.view(None).map(|s| order_row(o, s)).unwrap_or_default();
                    let history: Vec<Value> = o
                        .history
                        .iter()
                        .map(|s| {
                            json!({
                                "at_us": s.at.us,
                                "status": s.status.as_str(),
                                "filled_quantity": s.filled,
                                "average_price": s.average_price,
                                "reason": s.reason,
                            })
                        })
                        .collect();
                    row.insert("key".into(), json!(account.masked));
                    row.insert("status".into(), json!(o.status.as_str()));
                    row.insert("received_at_us".into(), json!(record.received_us));
                    row.insert("history".into(), Value::Array(history));
                    Value::Object(row)
                }
                Outcome::Rejected {
                    symbol,
                    exchange,
                    action,
                    quantity,
                    product,
                    pricetype,
                    reason,
                } => json!({
                    "key": account.masked,
                    "symbol": symbol,
                    "exchange": exchange,
                    "action": action,
                    "quantity": quantity,
                    "product": product,
                    "pricetype": pricetype,
                    "status": "rejected",
                    "orderid": null,
                    "reason": reason,
                    "rejection_reason": reason,
                    "received_at_us": record.received_us,
                }),
            }
        })
        .collect();
    Value::Array(rows)
}

/// `GET /sim/positions`: every position each key ever held, with its net quantity after
/// each fill.
pub(crate) async fn positions(shared: web::Data<Shared>) -> HttpResponse {
    let core = shared.core();
    let rows: Vec<Value> = core
        .accounts
        .iter()
        .flat_map(|account| {
            account.book.positions.iter().map(|p| {
                let history: Vec<Value> = p
                    .history
                    .iter()
                    .map(|point| json!({"at_us": point.at_us, "net": point.net}))
                    .collect();
                json!({
                    "key": account.masked,
                    "exchange": p.exchange,
                    "symbol": p.symbol,
                    "product": p.product.as_str(),
                    "net": p.quantity,
                    "history": history,
                })
            })
        })
        .collect();
    reply(StatusCode::OK, Value::Array(rows))
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

/// A validated `/sim/fault` request. Every field is optional; `api_key` scopes the request
/// to that key's account, else it is service-wide. The README's "Simulator faults" section
/// describes each field for users.
#[derive(Debug, Default, PartialEq)]
struct FaultRequest {
    api_key: Option<String>,
    /// Resets the scope's faults to none before the other fields apply.
    clear: bool,
    /// Ends the scope's feed connections now.
    drop_connections: bool,
    /// Feed authentication and REST calls are refused (403) for this long; 0 ends it.
    refuse_auth_s: Option<f64>,
    /// No market data is sent for this long; 0 ends it.
    pause_ticks_s: Option<f64>,
    /// Every REST answer is held this long.
    latency_ms: Option<u64>,
    /// Sends this many malformed frames to each feed connection now.
    malformed_frames: Option<u64>,
    /// The next N orders are refused with HTTP 400.
    reject_orders: Option<u64>,
    /// Placeorder books at once and answers this much later.
    place_answer_delay_ms: Option<u64>,
    /// The next N placeorder answers of booked orders are lost (see `lost_answer`).
    lose_answers: Option<u64>,
    /// How an answer is lost: `"502"` (at once) or `"timeout"` (held 120 s, then 504).
    lost_answer: Option<LostAnswer>,
    /// MARKET orders are booked open and fill this much later.
    fill_delay_ms: Option<u64>,
    /// `{"count","after_ms","reason"?}`: the next N orders are booked open, then rejected.
    accept_then_reject: Option<Counted<AcceptThenReject>>,
    /// `{"count","fraction","rest_after_ms","rest"?}`: the next N MARKET orders fill in part.
    partial_fill: Option<Counted<PartialFill>>,
    /// The four book endpoints show the account as it was this long ago.
    book_lag_ms: Option<u64>,
    /// The four book endpoints answer HTTP 500 for this long; 0 ends it.
    books_unavailable_s: Option<f64>,
    /// Every REST endpoint answers 429 for this long; 0 ends it.
    rate_limit_s: Option<f64>,
    /// No `order_update` is pushed for this long; 0 ends it.
    mute_order_updates_s: Option<f64>,
    /// `subscribe_orders` is refused for this long; 0 ends it.
    refuse_order_updates_s: Option<f64>,
}

/// The longest fault duration accepted, in seconds.
const MAX_FAULT_S: f64 = 1e9;

fn seconds(field: &str, value: &Value) -> Result<f64, String> {
    value
        .as_f64()
        .filter(|s| s.is_finite() && (0.0..=MAX_FAULT_S).contains(s))
        .ok_or_else(|| {
            format!("{field} must be a non-negative number of seconds (at most {MAX_FAULT_S})")
        })
}

fn count(field: &str, value: &Value) -> Result<u64, String> {
    value
        .as_u64()
        .ok_or_else(|| format!("{field} must be a non-negative integer"))
}

fn millis(field: &str, value: &Value) -> Result<u64, String> {
    value
        .as_u64()
        .ok_or_else(|| format!("{field} must be a non-negative integer number of milliseconds"))
}

/// The members of the object fault `field`, refusing any not in `known`.
fn members<'a>(
    field: &str,
    value: &'a Value,
    known: &[&str],
) -> Result<&'a Map<String, Value>, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{field} must be an object"))?;
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(format!("{field}: unknown field: {unknown}")),
        None => Ok(map),
    }
}

fn required<'a>(map: &'a Map<String, Value>, field: &str, name: &str) -> Result<&'a Value, String> {
    map.get(name)
        .ok_or_else(|| format!("{field}.{name} is required"))
}

fn parse_accept_then_reject(value: &Value) -> Result<Counted<AcceptThenReject>, String> {
    const FIELD: &str = "accept_then_reject";
    let map = members(FIELD, value, &["count", "after_ms", "reason"])?;
    let left = count("accept_then_reject.count", required(map, FIELD, "count")?)?;
    let after_ms = millis(
        "accept_then_reject.after_ms",
        required(map, FIELD, "after_ms")?,
    )?;
    let reason = match map.get("reason") {
        None => DEFAULT_REJECTION.to_string(),
        Some(reason) => reason
            .as_str()
            .filter(|r| !r.trim().is_empty())
            .ok_or("accept_then_reject.reason must be a non-empty string")?
            .to_string(),
    };
    Ok(Counted {
        left,
        how: AcceptThenReject {
            after: Duration::from_millis(after_ms),
            reason,
        },
    })
}

fn parse_partial_fill(value: &Value) -> Result<Counted<PartialFill>, String> {
    const FIELD: &str = "partial_fill";
    let map = members(
        FIELD,
        value,
        &["count", "fraction", "rest_after_ms", "rest"],
    )?;
    let left = count("partial_fill.count", required(map, FIELD, "count")?)?;
    let fraction = required(map, FIELD, "fraction")?
        .as_f64()
        .filter(|f| *f > 0.0 && *f < 1.0)
        .ok_or("partial_fill.fraction must be a number between 0 and 1 (both excluded)")?;
    let rest = match map.get("rest").map(Value::as_str) {
        None | Some(Some("fill")) => Rest::Fill,
        Some(Some("cancel")) => Rest::Cancel,
        Some(Some("never")) => Rest::Never,
        Some(_) => return Err(r#"partial_fill.rest must be "fill", "cancel" or "never""#.into()),
    };
    let rest_after_ms = match (map.get("rest_after_ms"), rest) {
        (Some(ms), _) => millis("partial_fill.rest_after_ms", ms)?,
        (None, Rest::Never) => 0,
        (None, _) => {
            return Err(r#"partial_fill.rest_after_ms is required unless rest is "never""#.into());
        }
    };
    Ok(Counted {
        left,
        how: PartialFill {
            fraction,
            rest_after: Duration::from_millis(rest_after_ms),
            rest,
        },
    })
}

fn parse_fault(body: &Map<String, Value>) -> Result<FaultRequest, String> {
    let mut request = FaultRequest::default();
    for (field, value) in body {
        let name = field.as_str();
        match name {
            "api_key" => {
                request.api_key = Some(
                    value
                        .as_str()
                        .ok_or("api_key must be a string")?
                        .to_string(),
                )
            }
            "clear" => request.clear = value.as_bool().ok_or("clear must be a boolean")?,
            "drop_connections" => {
                request.drop_connections = value
                    .as_bool()
                    .ok_or("drop_connections must be a boolean")?
            }
            "refuse_auth_s" => request.refuse_auth_s = Some(seconds(name, value)?),
            "pause_ticks_s" => request.pause_ticks_s = Some(seconds(name, value)?),
            "latency_ms" => request.latency_ms = Some(millis(name, value)?),
            "malformed_frames" => request.malformed_frames = Some(count(name, value)?),
            "reject_orders" => request.reject_orders = Some(count(name, value)?),
            "place_answer_delay_ms" => request.place_answer_delay_ms = Some(millis(name, value)?),
            "lose_answers" => request.lose_answers = Some(count(name, value)?),
            "lost_answer" => {
                request.lost_answer = Some(match value.as_str() {
                    Some("502") => LostAnswer::BadGateway,
                    Some("timeout") => LostAnswer::Timeout,
                    _ => return Err(r#"lost_answer must be "502" or "timeout""#.into()),
                })
            }
            "fill_delay_ms" => request.fill_delay_ms = Some(millis(name, value)?),
            "accept_then_reject" => {
                request.accept_then_reject = Some(parse_accept_then_reject(value)?)
            }
            "partial_fill" => request.partial_fill = Some(parse_partial_fill(value)?),
            "book_lag_ms" => request.book_lag_ms = Some(millis(name, value)?),
            "books_unavailable_s" => request.books_unavailable_s = Some(seconds(name, value)?),
            "rate_limit_s" => request.rate_limit_s = Some(seconds(name, value)?),
            "mute_order_updates_s" => request.mute_order_updates_s = Some(seconds(name, value)?),
            "refuse_order_updates_s" => {
                request.refuse_order_updates_s = Some(seconds(name, value)?)
            }
            other => return Err(format!("unknown field: {other}")),
        }
    }
    Ok(request)
}

/// Sets one scope's faults from a request (after resetting them when it says `clear`).
fn apply(faults: &mut Faults, request: &FaultRequest, now: Instant) {
    if request.clear {
        *faults = Faults::default();
    }
    let until = |s: f64| {
        (s > 0.0)
            .then(|| Duration::try_from_secs_f64(s).ok())
            .flatten()
            .and_then(|d| now.checked_add(d))
    };
    let timed = [
        (request.refuse_auth_s, &mut faults.refuse_auth_until),
        (request.pause_ticks_s, &mut faults.pause_ticks_until),
        (
            request.books_unavailable_s,
            &mut faults.books_unavailable_until,
        ),
        (request.rate_limit_s, &mut faults.rate_limit_until),
        (
            request.mute_order_updates_s,
            &mut faults.mute_order_updates_until,
        ),
        (
            request.refuse_order_updates_s,
            &mut faults.refuse_order_updates_until,
        ),
    ];
    for (seconds, end) in timed {
        if let Some(s) = seconds {
            *end = until(s);
        }
    }
    let delays = [
        (request.latency_ms, &mut faults.latency_ms),
        (
            request.place_answer_delay_ms,
            &mut faults.place_answer_delay_ms,
        ),
        (request.fill_delay_ms, &mut faults.fill_delay_ms),
        (request.book_lag_ms, &mut faults.book_lag_ms),
        (request.reject_orders, &mut faults.reject_orders.left),
        (request.lose_answers, &mut faults.lose_answers.left),
    ];
    for (value, field) in delays {
        if let Some(value) = value {
            *field = value;
        }
    }
    if let Some(how) = request.lost_answer {
        faults.lose_answers.how = how;
    }
    if let Some(reject) = &request.accept_then_reject {
        faults.accept_then_reject = reject.clone();
    }
    if let Some(partial) = &request.partial_fill {
        faults.partial_fill = partial.clone();
    }
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
    let faults = match account {
        Some(a) => &mut core.accounts[a].faults,
        None => &mut core.faults,
    };
    apply(faults, &request, Instant::now());
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
        assert!(parse(json!({"pause_ticks_s": 1e12})).is_err());
        assert!(parse(json!({"drop_connections": 1})).is_err());
    }

    #[test]
    fn broker_fault_requests_parse_with_their_defaults() {
        let request = parse(json!({
            "clear": true,
            "place_answer_delay_ms": 10,
            "lose_answers": 2,
            "lost_answer": "timeout",
            "fill_delay_ms": 20,
            "accept_then_reject": {"count": 1, "after_ms": 30},
            "partial_fill": {"count": 3, "fraction": 0.25, "rest": "never"},
            "book_lag_ms": 40,
            "books_unavailable_s": 1.5,
            "rate_limit_s": 2,
        }))
        .unwrap();
        assert_eq!(
            request,
            FaultRequest {
                clear: true,
                place_answer_delay_ms: Some(10),
                lose_answers: Some(2),
                lost_answer: Some(LostAnswer::Timeout),
                fill_delay_ms: Some(20),
                accept_then_reject: Some(Counted {
                    left: 1,
                    how: AcceptThenReject {
                        after: Duration::from_millis(30),
                        reason: DEFAULT_REJECTION.into(),
                    },
                }),
                partial_fill: Some(Counted {
                    left: 3,
                    how: PartialFill {
                        fraction: 0.25,
                        rest_after: Duration::ZERO,
                        rest: Rest::Never,
                    },
                }),
                book_lag_ms: Some(40),
                books_unavailable_s: Some(1.5),
                rate_limit_s: Some(2.0),
                ..FaultRequest::default()
            }
        );
        let partial =
            parse(json!({"partial_fill": {"count": 1, "fraction": 0.5, "rest_after_ms": 5}}))
                .unwrap()
                .partial_fill
                .unwrap();
        assert_eq!(partial.how.rest, Rest::Fill);
        let reason =
            parse(json!({"accept_then_reject": {"count": 1, "after_ms": 0, "reason": "no"}}))
                .unwrap()
                .accept_then_reject
                .unwrap();
        assert_eq!(reason.how.reason, "no");
        assert_eq!(
            parse(json!({"lost_answer": "502"})).unwrap().lost_answer,
            Some(LostAnswer::BadGateway)
        );
    }

    #[test]
    fn broker_fault_requests_refuse_bad_values_with_a_message() {
        for (bad, says) in [
            (json!({"clear": "yes"}), "clear must be a boolean"),
            (
                json!({"place_answer_delay_ms": 1.5}),
                "place_answer_delay_ms must be",
            ),
            (json!({"lose_answers": -1}), "lose_answers must be"),
            (json!({"lost_answer": 502}), "lost_answer must be"),
            (json!({"fill_delay_ms": "1"}), "fill_delay_ms must be"),
            (json!({"book_lag_ms": null}), "book_lag_ms must be"),
            (
                json!({"books_unavailable_s": -2}),
                "books_unavailable_s must be",
            ),
            (json!({"rate_limit_s": true}), "rate_limit_s must be"),
            (
                json!({"accept_then_reject": 3}),
                "accept_then_reject must be an object",
            ),
            (
                json!({"accept_then_reject": {"after_ms": 1}}),
                "accept_then_reject.count is required",
            ),
            (
                json!({"accept_then_reject": {"count": 1}}),
                "accept_then_reject.after_ms is required",
            ),
            (
                json!({"accept_then_reject": {"count": 1, "after_ms": 1, "reason": ""}}),
                "reason must be a non-empty string",
            ),
            (
                json!({"accept_then_reject": {"count": 1, "after_ms": 1, "why": "x"}}),
                "accept_then_reject: unknown field: why",
            ),
            (
                json!({"partial_fill": {"count": 1, "rest_after_ms": 1}}),
                "partial_fill.fraction is required",
            ),
            (
                json!({"partial_fill": {"count": 1, "fraction": 1, "rest_after_ms": 1}}),
                "between 0 and 1",
            ),
            (
                json!({"partial_fill": {"count": 1, "fraction": 0, "rest_after_ms": 1}}),
                "between 0 and 1",
            ),
            (
                json!({"partial_fill": {"count": 1, "fraction": 0.5}}),
                "rest_after_ms is required",
            ),
            (
                json!({"partial_fill": {"count": 1, "fraction": 0.5, "rest_after_ms": 1, "rest": "later"}}),
                "partial_fill.rest must be",
            ),
            (
                json!({"partial_fill": {"count": 1.5, "fraction": 0.5, "rest_after_ms": 1}}),
                "partial_fill.count must be",
            ),
        ] {
            let message = parse(bad.clone()).unwrap_err();
            assert!(message.contains(says), "{bad} → {message}");
        }
    }

    #[test]
    fn clear_resets_the_scope_before_the_other_fields_apply() {
        let now = Instant::now();
        let mut faults = Faults::default();
        apply(
            &mut faults,
            &parse(json!({"rate_limit_s": 5, "latency_ms": 7, "reject_orders": 2})).unwrap(),
            now,
        );
        assert!(faults.rate_limit_until.is_some());
        assert_eq!((faults.latency_ms, faults.reject_orders.left), (7, 2));
        apply(
            &mut faults,
            &parse(json!({"clear": true, "book_lag_ms": 9})).unwrap(),
            now,
        );
        assert!(faults.rate_limit_until.is_none());
        assert_eq!((faults.latency_ms, faults.reject_orders.left), (0, 0));
        assert_eq!(faults.book_lag_ms, 9);
        // 0 seconds ends a timed fault.
        apply(
            &mut faults,
            &parse(json!({"books_unavailable_s": 3})).unwrap(),
            now,
        );
        assert!(faults.books_unavailable_until.is_some());
        apply(
            &mut faults,
            &parse(json!({"books_unavailable_s": 0})).unwrap(),
            now,
        );
        assert!(faults.books_unavailable_until.is_none());
    }
}
