//! Tolerant number parsing: brokers send numbers as JSON numbers or as strings
//! (docs/openalgo.md §4).

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

struct F64Visitor;

impl Visitor<'_> for F64Visitor {
    type Value = f64;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number or a numeric string")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| E::custom(format!("not a number: {v:?}")))
    }
}

/// A required number that may arrive as a string.
pub fn f64_required<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(F64Visitor)
}

/// An optional number: missing, null or unparseable values become None instead of failing the
/// whole message (only `ltp` is guaranteed by every broker).
pub fn f64_optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    })
}

/// An optional text that some brokers send as a number (timestamps): anything else is None.
pub fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct T {
        #[serde(deserialize_with = "super::f64_required")]
        a: f64,
        #[serde(default, deserialize_with = "super::f64_optional")]
        b: Option<f64>,
    }

    #[test]
    fn numbers_and_strings() {
        let t: T = serde_json::from_str(r#"{"a":"1.5","b":2}"#).unwrap();
        assert_eq!((t.a, t.b), (1.5, Some(2.0)));
        let t: T = serde_json::from_str(r#"{"a":3,"b":"x"}"#).unwrap();
        assert_eq!((t.a, t.b), (3.0, None));
        let t: T = serde_json::from_str(r#"{"a":-4.25}"#).unwrap();
        assert_eq!((t.a, t.b), (-4.25, None));
        assert!(serde_json::from_str::<T>(r#"{"a":"abc"}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"a":null}"#).is_err());
        assert!(serde_json::from_str::<T>(r#"{"b":1}"#).is_err());
    }
}
