//! Turns a chain request into a plan from the gateway's answers: the expiry from its `expiry`
//! list, the strike step, ATM and underlying from its `optionchain` answer
//! (docs/openalgo.md §3.2).

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::Value;

use super::ChainError;
use crate::domain::chain::{ChainWindow, LegQuote, strike_step};
use crate::domain::options::{
    atm_strike, format_expiry_compact, format_expiry_dashed, live_expiries, option_exchange,
    parse_expiry,
};
use crate::feed::Key;
use crate::openalgo::lenient::{f64_optional, f64_required};
use crate::openalgo::rest::{RestClient, RestError};

/// What identifies a plan: requests with the same key share one resolution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PlanKey {
    /// Upper-case, trimmed.
    pub underlying: String,
    /// Upper-case, trimmed.
    pub exchange: String,
    /// As requested (trimmed, upper-case); None = the nearest.
    pub expiry: Option<String>,
    pub strikes: u32,
}

/// Everything a session needs to start, as the gateway described the chain.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ChainPlan {
    /// The underlying's name as the gateway spells it (the base of option symbols).
    pub underlying: String,
    /// The exchange the viewer asked for.
    pub exchange: String,
    /// The underlying's own feed key (e.g. NSE_INDEX:NIFTY).
    pub underlying_key: Key,
    /// Where the options trade (e.g. NFO).
    pub option_exchange: String,
    pub expiry: NaiveDate,
    /// Upcoming expiries, ascending.
    pub expiries: Vec<NaiveDate>,
    pub step: f64,
    /// The gateway's ATM strike: the first centre of the window.
    pub centre: f64,
    pub underlying_ltp: Option<f64>,
    pub strikes: u32,
    /// Quotes from the gateway's answer for the window's legs.
    pub seeds: Vec<(String, LegQuote)>,
}

#[derive(Debug, Deserialize)]
struct ChainAnswer {
    #[serde(default)]
    underlying: Option<String>,
    #[serde(default)]
    underlying_symbol: Option<String>,
    #[serde(default)]
    underlying_exchange: Option<String>,
    #[serde(default, deserialize_with = "f64_optional")]
    underlying_ltp: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    atm_strike: Option<f64>,
    #[serde(default)]
    chain: Vec<AnswerRow>,
}

#[derive(Debug, Deserialize)]
struct AnswerRow {
    #[serde(deserialize_with = "f64_required")]
    strike: f64,
    #[serde(default)]
    ce: Option<AnswerLeg>,
    #[serde(default)]
    pe: Option<AnswerLeg>,
}

#[derive(Debug, Deserialize)]
struct AnswerLeg {
    symbol: String,
    #[serde(default, deserialize_with = "f64_optional")]
    ltp: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    bid: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    ask: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    volume: Option<f64>,
    #[serde(default, deserialize_with = "f64_optional")]
    oi: Option<f64>,
}

impl AnswerLeg {
    fn quote(&self) -> LegQuote {
        LegQuote {
            ltp: self.ltp,
            bid: self.bid,
            ask: self.ask,
            volume: self.volume,
            oi: self.oi,
        }
    }
}

/// Maps a gateway error about an underlying: "not found" is the viewer's mistake (404), a
/// validation error names a bad field (422), anything else is the gateway's failure.
fn lookup_error(e: RestError, key: &PlanKey) -> ChainError {
    match e {
        RestError::Rejected {
            status: 404,
            message,
            ..
        } => ChainError::UnknownUnderlying {
            underlying: key.underlying.clone(),
            exchange: key.exchange.clone(),
            detail: message,
        },
        RestError::Rejected {
            status: 400,
            message,
            ..
        } => ChainError::Invalid(format!(
            "the gateway rejected {} on {}: {message}",
            key.underlying, key.exchange
        )),
        other => ChainError::Gateway(other.to_string()),
    }
}

/// Asks the gateway for the expiries and the chain of `key`; only expiries still trading at
/// `now` (in the exchange timezone `tz`) are offered.
pub(super) async fn resolve(
    client: &RestClient,
    key: &PlanKey,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<ChainPlan, ChainError> {
    let options_on = option_exchange(&key.exchange).to_owned();
    let listed = client
        .expiries(&key.underlying, &options_on)
        .await
        .map_err(|e| lookup_error(e, key))?;
    if listed.is_empty() {
        return Err(ChainError::UnknownUnderlying {
            underlying: key.underlying.clone(),
            exchange: key.exchange.clone(),
            detail: format!("no option expiries listed on {options_on}"),
        });
    }
    let expiries = upcoming(&listed, &options_on, now, tz);
    let expiry = choose_expiry(key, &expiries)?;
    let body = client
        .option_chain(
            &key.underlying,
            &key.exchange,
            &format_expiry_compact(expiry),
            key.strikes,
        )
        .await
        .map_err(|e| lookup_error(e, key))?;
    plan_from_answer(key, expiry, expiries, body)
}

/// The listed expiries still trading at `now`, parsed, ascending, without repeats.
fn upcoming(
    listed: &[String],
    option_exchange: &str,
    now: DateTime<Utc>,
    tz: Tz,
) -> Vec<NaiveDate> {
    let parsed = listed.iter().filter_map(|s| {
        let parsed = parse_expiry(s);
        if parsed.is_none() {
            tracing::warn!(expiry = %s, "gateway listed an expiry that is not DD-MMM-YY; ignored");
        }
        parsed
    });
    live_expiries(option_exchange, parsed, now, tz)
}

/// The requested expiry if it is among `expiries` (still trading, ascending), else the nearest.
fn choose_expiry(key: &PlanKey, expiries: &[NaiveDate]) -> Result<NaiveDate, ChainError> {
    let available = || expiries.iter().map(|d| format_expiry_dashed(*d)).collect();
    match &key.expiry {
        None => expiries.first().copied().ok_or_else(|| {
            ChainError::Invalid(format!(
                "{} on {} has no upcoming option expiry",
                key.underlying, key.exchange
            ))
        }),
        Some(text) => parse_expiry(text)
            .filter(|d| expiries.contains(d))
            .ok_or_else(|| ChainError::UnknownExpiry {
                underlying: key.underlying.clone(),
                requested: text.clone(),
                available: available(),
            }),
    }
}

fn plan_from_answer(
    key: &PlanKey,
    expiry: NaiveDate,
    expiries: Vec<NaiveDate>,
    body: Value,
) -> Result<ChainPlan, ChainError> {
    let answer: ChainAnswer = serde_json::from_value(body)
        .map_err(|e| ChainError::Gateway(format!("optionchain: unexpected answer: {e}")))?;
    let expiry_text = format_expiry_dashed(expiry);
    let strikes: Vec<f64> = answer.chain.iter().map(|r| r.strike).collect();
    let step = strike_step(&strikes).ok_or_else(|| {
        ChainError::Gateway(format!(
            "optionchain listed {} strike(s) for {} expiring {expiry_text}; the strike step needs two",
            strikes.len(),
            key.underlying
        ))
    })?;
    let underlying_ltp = answer.underlying_ltp.filter(|p| *p > 0.0);
    let centre = answer
        .atm_strike
        .filter(|s| *s > 0.0)
        .or_else(|| underlying_ltp.and_then(|ltp| atm_strike(ltp, step)))
        .ok_or_else(|| {
            ChainError::Gateway(format!(
                "optionchain gave neither an ATM strike nor an underlying price for {}",
                key.underlying
            ))
        })?;
    let underlying = answer
        .underlying
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| key.underlying.clone());
    let underlying_key = Key::new(
        answer
            .underlying_exchange
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| key.exchange.clone()),
        answer
            .underlying_symbol
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| underlying.clone()),
    );
    let window = ChainWindow::new(&underlying, expiry, step, key.strikes, centre);
    let legs: Vec<&AnswerLeg> = answer
        .chain
        .iter()
        .flat_map(|r| [r.ce.as_ref(), r.pe.as_ref()])
        .flatten()
        .collect();
    let seeds: Vec<(String, LegQuote)> = legs
        .iter()
        .filter(|leg| window.contains(&leg.symbol))
        .map(|leg| (leg.symbol.clone(), leg.quote()))
        .collect();
    // The window's symbols are built as [base][DDMMMYY][strike][CE|PE]; a gateway that names
    // them otherwise would leave every leg of the chain silently without prices.
    if let (true, Some(example)) = (seeds.is_empty(), legs.first()) {
        let expected = window.symbols().into_iter().next().unwrap_or_default();
        return Err(ChainError::Gateway(format!(
            "optionchain symbols such as {} do not follow the expected form (e.g. {expected})",
            example.symbol
        )));
    }
    Ok(ChainPlan {
        underlying,
        exchange: key.exchange.clone(),
        underlying_key,
        option_exchange: option_exchange(&key.exchange).to_owned(),
        expiry,
        expiries,
        step,
        centre,
        underlying_ltp,
        strikes: key.strikes,
        seeds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn key(expiry: Option<&str>) -> PlanKey {
        PlanKey {
            underlying: "NIFTY".into(),
            exchange: "NSE_INDEX".into(),
            expiry: expiry.map(str::to_owned),
            strikes: 1,
        }
    }

    fn leg(symbol: &str, ltp: Value) -> Value {
        json!({"symbol": symbol, "label": "ATM", "ltp": ltp, "bid": 10.0, "ask": "10.5",
               "volume": 1200, "oi": null, "lotsize": 65})
    }

    fn answer() -> Value {
        json!({
            "status": "success", "underlying": "NIFTY", "underlying_symbol": "NIFTY",
            "underlying_exchange": "NSE_INDEX", "underlying_ltp": "25912.4", "atm_strike": 25900.0,
            "chain": [
                {"strike": 25850.0, "ce": leg("NIFTY24NOV2625850CE", json!(90.0)),
                 "pe": leg("NIFTY24NOV2625850PE", json!(40.0))},
                {"strike": "25900", "ce": leg("NIFTY24NOV2625900CE", json!("60.5")),
                 "pe": leg("NIFTY24NOV2625900PE", json!(55.0))},
                {"strike": 25950.0, "ce": leg("NIFTY24NOV2625950CE", json!(38.0)), "pe": null},
            ]
        })
    }

    #[test]
    fn upcoming_expiries_are_parsed_sorted_and_past_ones_dropped() {
        let listed: Vec<String> = ["01-DEC-26", "17-NOV-26", "24-NOV-26", "bogus", "24-NOV-26"]
            .map(String::from)
            .to_vec();
        let tz = chrono_tz::Asia::Kolkata;
        let at = |h, m| {
            tz.with_ymd_and_hms(2026, 11, 24, h, m, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(
            upcoming(&listed, "NFO", at(9, 0), tz),
            [d(2026, 11, 24), d(2026, 12, 1)]
        );
        // After the expiry's close the same list starts a week later.
        assert_eq!(upcoming(&listed, "NFO", at(15, 30), tz), [d(2026, 12, 1)]);
    }

    #[test]
    fn expiry_is_the_nearest_or_a_listed_one() {
        let list = [d(2026, 11, 24), d(2026, 12, 1)];
        assert_eq!(choose_expiry(&key(None), &list), Ok(d(2026, 11, 24)));
        assert_eq!(
            choose_expiry(&key(Some("01DEC26")), &list),
            Ok(d(2026, 12, 1))
        );
        assert_eq!(
            choose_expiry(&key(Some("01-DEC-26")), &list),
            Ok(d(2026, 12, 1))
        );
        let err = choose_expiry(&key(Some("08-DEC-26")), &list).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expiry 08-DEC-26 is not listed for NIFTY; available: 24-NOV-26, 01-DEC-26"
        );
        assert!(matches!(
            choose_expiry(&key(Some("tomorrow")), &list),
            Err(ChainError::UnknownExpiry { .. })
        ));
        assert!(matches!(
            choose_expiry(&key(None), &[]),
            Err(ChainError::Invalid(_))
        ));
    }

    #[test]
    fn plan_takes_step_atm_underlying_and_seeds_from_the_answer() {
        let plan = plan_from_answer(&key(None), d(2026, 11, 24), vec![], answer()).unwrap();
        assert_eq!(plan.step, 50.0);
        assert_eq!(plan.centre, 25900.0);
        assert_eq!(plan.underlying_ltp, Some(25912.4));
        assert_eq!(plan.underlying_key, Key::new("NSE_INDEX", "NIFTY"));
        assert_eq!(plan.option_exchange, "NFO");
        assert_eq!(plan.seeds.len(), 5);
        let (symbol, quote) = &plan.seeds[2];
        assert_eq!(symbol, "NIFTY24NOV2625900CE");
        assert_eq!(
            *quote,
            LegQuote {
                ltp: Some(60.5),
                bid: Some(10.0),
                ask: Some(10.5),
                volume: Some(1200.0),
                oi: None
            }
        );
    }

    #[test]
    fn plan_computes_atm_from_the_underlying_when_the_answer_has_none() {
        let mut body = answer();
        body["atm_strike"] = Value::Null;
        body["underlying_ltp"] = json!(25930.0);
        let plan = plan_from_answer(&key(None), d(2026, 11, 24), vec![], body).unwrap();
        assert_eq!(plan.centre, 25950.0);
        body = answer();
        body["atm_strike"] = Value::Null;
        body["underlying_ltp"] = json!(0);
        assert!(matches!(
            plan_from_answer(&key(None), d(2026, 11, 24), vec![], body),
            Err(ChainError::Gateway(_))
        ));
    }

    #[test]
    fn plan_refuses_answers_it_cannot_use() {
        let mut one_strike = answer();
        one_strike["chain"] = json!([{"strike": 25900.0, "ce": null, "pe": null}]);
        let err = plan_from_answer(&key(None), d(2026, 11, 24), vec![], one_strike).unwrap_err();
        assert!(err.to_string().contains("strike step"), "{err}");

        let mut odd_symbols = answer();
        odd_symbols["chain"] = json!([
            {"strike": 25900.0, "ce": leg("NIFTY-25900-C", json!(1)), "pe": null},
            {"strike": 25950.0, "ce": leg("NIFTY-25950-C", json!(1)), "pe": null},
        ]);
        let err = plan_from_answer(&key(None), d(2026, 11, 24), vec![], odd_symbols).unwrap_err();
        assert!(err.to_string().contains("NIFTY-25900-C"), "{err}");
        assert!(err.to_string().contains("NIFTY24NOV2625850CE"), "{err}");

        let err =
            plan_from_answer(&key(None), d(2026, 11, 24), vec![], json!({"chain": 5})).unwrap_err();
        assert!(matches!(err, ChainError::Gateway(_)));
    }

    #[test]
    fn gateway_errors_map_to_the_viewer_visible_kind() {
        let rejected = |status| RestError::Rejected {
            endpoint: "expiry".into(),
            status,
            message: "No expiry dates found for FOO options in NFO".into(),
        };
        assert_eq!(
            lookup_error(rejected(404), &key(None)).to_string(),
            "unknown underlying NIFTY on NSE_INDEX (gateway: No expiry dates found for FOO options in NFO)"
        );
        assert!(matches!(
            lookup_error(rejected(400), &key(None)),
            ChainError::Invalid(_)
        ));
        assert!(matches!(
            lookup_error(rejected(500), &key(None)),
            ChainError::Gateway(_)
        ));
        assert!(matches!(
            lookup_error(
                RestError::Timeout {
                    endpoint: "expiry".into(),
                    timeout_ms: 5
                },
                &key(None)
            ),
            ChainError::Gateway(_)
        ));
    }
}
