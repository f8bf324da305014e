//! `Body<T>`: the one way a handler reads a JSON request body.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::error::ApiError;

/// A JSON request body read as `T`.
///
/// The body is first read as JSON under the app's `web::JsonConfig`, so the Content-Type, the
/// size limit and the syntax are answered as `error::json_error_handler` says (415, 413, 400).
/// JSON that does not fit `T` is a 422 naming the field as `<field>: <reason>` (a nested one
/// as `legs[0].price: …`), or `invalid body: <reason>` when the body as a whole is wrong (a
/// missing field, not an object) or has an unknown field (the reason names it). Nothing is written before the body is read.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T> Body<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Body<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let raw = web::Json::<Box<RawValue>>::from_request(req, payload);
        Box::pin(async move {
            let raw = raw.await?;
            Ok(Body(parse(raw.get())?))
        })
    }
}

/// Reads well-formed JSON text into `T`; the error names the field that does not fit.
fn parse<T: DeserializeOwned>(json: &str) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.inner().to_string();
        // An unknown field's reason names it already (and the path ends in it).
        if path == "." || reason.starts_with("unknown field") {
            ApiError::unprocessable(format!("invalid body: {reason}"))
        } else {
            ApiError::unprocessable(format!("{path}: {reason}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Leg {
        #[allow(dead_code)]
        price: f64,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Order {
        #[allow(dead_code)]
        legs: Vec<Leg>,
    }

    fn message(json: &str) -> String {
        match parse::<Order>(json) {
            Ok(order) => panic!("{json} was read as {order:?}"),
            Err(e) => {
                assert_eq!(e.code, "unprocessable");
                e.message
            }
        }
    }

    #[test]
    fn a_misfit_names_its_field() {
        let m = message(r#"{"legs": [{"price": "high"}]}"#);
        assert!(m.starts_with("legs[0].price: invalid type"), "{m}");
    }

    #[test]
    fn an_unknown_or_missing_field_is_the_body_as_a_whole() {
        assert!(message(r#"{"legs": [], "colour": 1}"#).starts_with("invalid body: unknown field"));
        assert!(message("{}").starts_with("invalid body: missing field `legs`"));
    }

    #[test]
    fn a_repeated_field_is_refused() {
        let m = message(r#"{"legs": [], "legs": []}"#);
        assert!(m.contains("duplicate field `legs`"), "{m}");
    }
}
