//! Whole numbers in request bodies. JSON has one number type, and `75.0` is the integer 75
//! (JSON Schema says so too), so integer fields accept a number without a fraction however it
//! is written; a fraction or a value out of the field's range is refused.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

struct Whole;

impl Visitor<'_> for Whole {
    type Value = i64;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a whole number")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        // i64::MAX as f64 rounds up to 2^63, which is out of range: compare with < 2^63.
        if v.fract() == 0.0 && v >= -(2f64.powi(63)) && v < 2f64.powi(63) {
            Ok(v as i64)
        } else {
            Err(E::custom(format!("{v} is not a whole number in range")))
        }
    }
}

fn narrow<T: TryFrom<i64>, E: de::Error>(v: i64) -> Result<T, E> {
    T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
}

/// A required whole number.
pub fn whole<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<T, D::Error> {
    narrow(d.deserialize_any(Whole)?)
}

/// An optional whole number (`null` or absent is None; use with `#[serde(default)]`).
pub fn whole_opt<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => whole::<_, T>(v).map(Some).map_err(de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct Body {
        #[serde(deserialize_with = "whole")]
        id: i32,
        #[serde(default, deserialize_with = "whole_opt")]
        lots: Option<i64>,
    }

    fn parse(text: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn whole_numbers_however_written() {
        let b = parse(r#"{"id": 7.0, "lots": 75.0}"#).unwrap();
        assert_eq!((b.id, b.lots), (7, Some(75)));
        let b = parse(r#"{"id": -3}"#).unwrap();
        assert_eq!((b.id, b.lots), (-3, None));
        assert_eq!(parse(r#"{"id": 1, "lots": null}"#).unwrap().lots, None);
        assert!(parse(r#"{"id": 7.5}"#).is_err());
        assert!(parse(r#"{"id": 3000000000}"#).is_err());
        assert!(parse(r#"{"id": "7"}"#).is_err());
        assert!(parse(r#"{"id": 1, "lots": 1e300}"#).is_err());
    }
}
