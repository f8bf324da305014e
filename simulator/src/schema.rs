//! Request-body validation for the REST endpoints, reporting errors the way the gateway's
//! schemas do: one list of messages per field, unknown fields refused.

use actix_web::http::StatusCode;
use serde_json::{Map, Value, json};

pub(crate) const VALID_EXCHANGES: [&str; 14] = [
    "NSE",
    "NFO",
    "CDS",
    "BSE",
    "BFO",
    "BCD",
    "MCX",
    "NCDEX",
    "NCO",
    "NSE_INDEX",
    "BSE_INDEX",
    "MCX_INDEX",
    "GLOBAL_INDEX",
    "CRYPTO",
];

pub(crate) const FNO_EXCHANGES: [&str; 8] =
    ["NFO", "BFO", "MCX", "CDS", "NCO", "BCD", "NCDEX", "CRYPTO"];

const MISSING: &str = "Missing data for required field.";
const NULL: &str = "Field may not be null.";

/// How an endpoint reports validation errors (docs/openalgo.md §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorStyle {
    /// `message` is the error dict printed as a Python string.
    Stringified,
    /// `message` is the error dict itself.
    Raw,
    /// `{"message":"Validation error","errors":{...}}`.
    Detailed,
}

pub(crate) type Failure = (StatusCode, Value);

pub(crate) fn failure(status: StatusCode, message: impl Into<String>) -> Failure {
    (
        status,
        json!({"status": "error", "message": message.into()}),
    )
}

/// Errors collected for one request, in field order.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<(String, Vec<String>)>);

impl Errors {
    pub(crate) fn add(&mut self, field: &str, message: impl Into<String>) {
        match self.0.iter_mut().find(|(f, _)| f == field) {
            Some((_, messages)) => messages.push(message.into()),
            None => self.0.push((field.to_string(), vec![message.into()])),
        }
    }

    fn python(&self) -> String {
        let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|(field, messages)| {
                let list: Vec<String> = messages.iter().map(|m| quote(m)).collect();
                format!("{}: [{}]", quote(field), list.join(", "))
            })
            .collect();
        format!("{{{}}}", fields.join(", "))
    }

    fn object(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(field, messages)| (field.clone(), json!(messages)))
                .collect(),
        )
    }

    pub(crate) fn into_failure(self, style: ErrorStyle) -> Failure {
        let body = match style {
            ErrorStyle::Stringified => json!({"status": "error", "message": self.python()}),
            ErrorStyle::Raw => json!({"status": "error", "message": self.object()}),
            ErrorStyle::Detailed => {
                json!({"status": "error", "message": "Validation error", "errors": self.object()})
            }
        };
        (StatusCode::BAD_REQUEST, body)
    }
}

/// Reads declared fields out of a request body, collecting errors.
pub(crate) struct Fields<'a> {
    body: &'a Map<String, Value>,
    declared: Vec<&'static str>,
    pub errors: Errors,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(body: &'a Map<String, Value>) -> Fields<'a> {
        Fields {
            body,
            declared: Vec::new(),
            errors: Errors::default(),
        }
    }

    /// The field's value if present and not null; records missing/null errors.
    fn value(&mut self, field: &'static str, required: bool, nullable: bool) -> Option<&'a Value> {
        self.declared.push(field);
        match self.body.get(field) {
            None => {
                if required {
                    self.errors.add(field, MISSING);
                }
                None
            }
            Some(Value::Null) => {
                if !nullable {
                    self.errors.add(field, NULL);
                }
                None
            }
            Some(value) => Some(value),
        }
    }

    pub(crate) fn string(&mut self, field: &'static str, required: bool) -> Option<String> {
        self.string_nullable(field, required, false)
    }

    pub(crate) fn string_nullable(
        &mut self,
        field: &'static str,
        required: bool,
        nullable: bool,
    ) -> Option<String> {
        match self.value(field, required, nullable)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.errors.add(field, "Not a valid string.");
                None
            }
        }
    }

    pub(crate) fn apikey(&mut self) -> Option<String> {
        let key = self.string("apikey", true)?;
        if key.is_empty() || key.chars().count() > 256 {
            self.errors
                .add("apikey", "Length must be between 1 and 256.");
            return None;
        }
        Some(key)
    }

    pub(crate) fn one_of(
        &mut self,
        field: &'static str,
        required: bool,
        choices: &[&str],
    ) -> Option<String> {
        let value = self.string(field, required)?;
        if choices.contains(&value.as_str()) {
            Some(value)
        } else {
            self.errors
                .add(field, format!("Must be one of: {}.", choices.join(", ")));
            None
        }
    }

    pub(crate) fn number(
        &mut self,
        field: &'static str,
        required: bool,
        nullable: bool,
    ) -> Option<f64> {
        let parsed = match self.value(field, required, nullable)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed.filter(|f| f.is_finite()) {
            Some(f) => Some(f),
            None => {
                self.errors.add(field, "Not a valid number.");
                None
            }
        }
    }

    pub(crate) fn integer(
        &mut self,
        field: &'static str,
        required: bool,
        nullable: bool,
    ) -> Option<i64> {
        let parsed = match self.value(field, required, nullable)? {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            }),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.errors.add(field, "Not a valid integer.");
        }
        parsed
    }

    pub(crate) fn boolean(&mut self, field: &'static str) -> Option<bool> {
        let parsed = match self.value(field, false, false)? {
            Value::Bool(b) => Some(*b),
            Value::Number(n) if n.as_i64() == Some(1) => Some(true),
            Value::Number(n) if n.as_i64() == Some(0) => Some(false),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "on" | "1" => Some(true),
                "false" | "f" | "no" | "n" | "off" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.errors.add(field, "Not a valid boolean.");
        }
        parsed
    }

    /// Fails on any collected error or undeclared field.
    pub(crate) fn finish(mut self, style: ErrorStyle) -> Result<(), Failure> {
        for field in self.body.keys() {
            if !self.declared.contains(&field.as_str()) {
                self.errors.add(field, "Unknown field.");
            }
        }
        if self.errors.0.is_empty() {
            Ok(())
        } else {
            Err(self.errors.into_failure(style))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn collects_missing_wrong_type_choice_and_unknown_field_errors() {
        let b = body(
            json!({"apikey": "k", "action": "HOLD", "quantity": "x", "strategy": 5, "extra": 1}),
        );
        let mut f = Fields::new(&b);
        assert_eq!(f.apikey().as_deref(), Some("k"));
        assert!(f.string("strategy", true).is_none());
        assert!(f.string("symbol", true).is_none());
        assert!(f.one_of("action", true, &["BUY", "SELL"]).is_none());
        assert!(f.number("quantity", true, false).is_none());
        let (status, v) = f.finish(ErrorStyle::Raw).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            v["message"],
            json!({
                "strategy": ["Not a valid string."],
                "symbol": ["Missing data for required field."],
                "action": ["Must be one of: BUY, SELL."],
                "quantity": ["Not a valid number."],
                "extra": ["Unknown field."],
            })
        );
    }

    #[test]
    fn stringified_errors_print_like_a_python_dict() {
        let mut errors = Errors::default();
        errors.add("symbol", MISSING);
        errors.add("quantity", "Quantity must be a positive number.");
        let (_, v) = errors.into_failure(ErrorStyle::Stringified);
        assert_eq!(
            v["message"],
            "{'symbol': ['Missing data for required field.'], 'quantity': ['Quantity must be a positive number.']}"
        );
        let mut errors = Errors::default();
        errors.add("expiry_date", MISSING);
        let (_, v) = errors.into_failure(ErrorStyle::Detailed);
        assert_eq!(v["message"], "Validation error");
        assert_eq!(v["errors"]["expiry_date"][0], MISSING);
    }

    #[test]
    fn numbers_accept_numeric_strings_and_integers_refuse_fractions() {
        let b = body(json!({"a": "12.5", "b": 3, "c": 2.5, "d": "7", "e": true, "f": null}));
        let mut f = Fields::new(&b);
        assert_eq!(f.number("a", true, false), Some(12.5));
        assert_eq!(f.integer("b", true, false), Some(3));
        assert_eq!(f.integer("c", true, false), None);
        assert_eq!(f.integer("d", true, false), Some(7));
        assert_eq!(f.number("e", true, false), None);
        assert_eq!(f.number("f", false, true), None);
        let (_, v) = f.finish(ErrorStyle::Raw).unwrap_err();
        let message = v["message"].as_object().unwrap();
        assert_eq!(message.len(), 2, "{message:?}");
        assert!(message.contains_key("c") && message.contains_key("e"));
    }
}
