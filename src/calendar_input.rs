//! Rules for calendar input, shared by the HTTP API and the command line: each field's
//! validation, and a holiday as the API and the holiday import accept it.
//!
//! Every rule answers with a [`FieldError`] that names the field (`"<field>: <reason>"`); the
//! HTTP layer turns it into a 422. Names are trimmed, exchange codes are stored in upper case and
//! timezones under their canonical IANA name.

use std::fmt;

use chrono::{NaiveDate, NaiveTime};
use chrono_tz::Tz;
use entity::market_holidays;
use sea_orm::Set;
use serde::Deserialize;

/// Longest accepted name or description line.
pub const MAX_NAME_LEN: usize = 200;

/// An invalid field: `"<field>: <reason>"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &'static str, reason: impl fmt::Display) -> Self {
        Self {
            field,
            reason: reason.to_string(),
        }
    }
}

/// Every invalid field of one input, in field order: `"<field>: <reason>; …"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldErrors(pub Vec<FieldError>);

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A trimmed, non-empty name of at most [`MAX_NAME_LEN`] characters.
pub fn name(field: &'static str, value: &str) -> Result<String, FieldError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if v.chars().count() > MAX_NAME_LEN {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(v.to_string())
}

/// An exchange code (letters, digits, `_`, `-`), returned in upper case.
pub fn exchange(value: &str) -> Result<String, FieldError> {
    let v = name("exchange", value)?;
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(FieldError::new(
            "exchange",
            "must contain only letters, digits, '_' and '-'",
        ));
    }
    Ok(v.to_ascii_uppercase())
}

/// A known IANA timezone, returned under its canonical name.
pub fn timezone(value: &str) -> Result<String, FieldError> {
    value
        .trim()
        .parse::<Tz>()
        .map(|tz| tz.name().to_string())
        .map_err(|_| {
            FieldError::new(
                "timezone",
                format!("{value:?} is not a known IANA timezone (e.g. Asia/Kolkata)"),
            )
        })
}

/// "HH:MM" or "HH:MM:SS".
pub fn time(field: &'static str, value: &str) -> Result<NaiveTime, FieldError> {
    let v = value.trim();
    NaiveTime::parse_from_str(v, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(v, "%H:%M"))
        .map_err(|_| FieldError::new(field, format!("{value:?} is not a time HH:MM or HH:MM:SS")))
}

/// "YYYY-MM-DD".
pub fn date(field: &'static str, value: &str) -> Result<NaiveDate, FieldError> {
    NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| FieldError::new(field, format!("{value:?} is not a date YYYY-MM-DD")))
}

/// Start and end of a session on one day: the end must come after the start.
pub fn span(start: &str, end: &str) -> Result<(NaiveTime, NaiveTime), FieldError> {
    let (start, end) = (time("start_time", start)?, time("end_time", end)?);
    if end <= start {
        return Err(FieldError::new("end_time", "must be after start_time"));
    }
    Ok((start, end))
}

/// A market holiday as the API and the holiday import accept it; one per date and exchange.
/// Unknown fields are refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"date": "2026-11-24", "name": "Guru Nanak Jayanti", "exchange": "NSE"}))]
pub struct HolidayInput {
    /// `YYYY-MM-DD`.
    #[schema(format = Date)]
    pub date: String,
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    /// Stored in upper case.
    #[schema(
        max_length = 200,
        pattern = "^[ \\t\\r\\n]*[A-Za-z0-9_-]+[ \\t\\r\\n]*$"
    )]
    pub exchange: String,
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub is_active: bool,
}

fn yes() -> bool {
    true
}

/// A validated holiday, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHoliday {
    pub date: NaiveDate,
    pub name: String,
    /// Upper case.
    pub exchange: String,
    pub is_active: bool,
}

impl HolidayInput {
    /// Checks every field; the error names each invalid one.
    pub fn validate(&self) -> Result<NewHoliday, FieldErrors> {
        let (date, name, exchange) = (
            date("date", &self.date),
            name("name", &self.name),
            exchange(&self.exchange),
        );
        match (date, name, exchange) {
            (Ok(date), Ok(name), Ok(exchange)) => Ok(NewHoliday {
                date,
                name,
                exchange,
                is_active: self.is_active,
            }),
            (date, name, exchange) => Err(FieldErrors(
                [date.err(), name.err(), exchange.err()]
                    .into_iter()
                    .flatten()
                    .collect(),
            )),
        }
    }
}

impl NewHoliday {
    /// The row to insert (or, with its id set, to update).
    pub fn active_model(&self) -> market_holidays::ActiveModel {
        market_holidays::ActiveModel {
            date: Set(self.date),
            name: Set(self.name.clone()),
            exchange: Set(self.exchange.clone()),
            is_active: Set(self.is_active),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<T: fmt::Debug>(r: Result<T, FieldError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn times_accept_minutes_or_seconds_only() {
        assert_eq!(
            time("start_time", "09:15").unwrap(),
            NaiveTime::from_hms_opt(9, 15, 0).unwrap()
        );
        assert_eq!(
            time("start_time", "15:30:05").unwrap(),
            NaiveTime::from_hms_opt(15, 30, 5).unwrap()
        );
        for bad in ["25:00", "9.15", "", "15:30:00.5x", "noon"] {
            let m = message(time("end_time", bad));
            assert!(m.starts_with("end_time: "), "{bad}: {m}");
        }
    }

    #[test]
    fn sessions_must_end_after_they_start() {
        assert!(span("09:15", "15:30").is_ok());
        assert_eq!(
            message(span("15:30", "09:15")),
            "end_time: must be after start_time"
        );
        assert!(span("09:15", "09:15:00").is_err());
    }

    #[test]
    fn dates_names_exchanges_and_timezones() {
        assert_eq!(
            date("date", "2026-11-24").unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
        );
        assert!(message(date("date", "24-11-2026")).starts_with("date: "));
        assert!(message(date("date", "2026-02-30")).starts_with("date: "));
        assert_eq!(name("name", "  Diwali ").unwrap(), "Diwali");
        assert_eq!(message(name("name", "   ")), "name: must not be empty");
        assert!(name("name", &"x".repeat(MAX_NAME_LEN + 1)).is_err());
        assert_eq!(exchange(" nse ").unwrap(), "NSE");
        assert!(message(exchange("N S E")).starts_with("exchange: "));
        assert_eq!(timezone("Asia/Kolkata").unwrap(), "Asia/Kolkata");
        assert!(message(timezone("Mars/Olympus")).starts_with("timezone: "));
    }

    #[test]
    fn a_holiday_names_every_invalid_field() {
        let input = |date: &str, name: &str, exchange: &str| HolidayInput {
            date: date.into(),
            name: name.into(),
            exchange: exchange.into(),
            is_active: true,
        };
        assert_eq!(
            input("2027-01-26", " Republic Day ", "nse").validate(),
            Ok(NewHoliday {
                date: NaiveDate::from_ymd_opt(2027, 1, 26).unwrap(),
                name: "Republic Day".into(),
                exchange: "NSE".into(),
                is_active: true,
            })
        );
        let errors = input("2027-02-30", "", "N S E").validate().unwrap_err();
        let fields: Vec<&str> = errors.0.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["date", "name", "exchange"]);
        assert_eq!(
            errors.to_string(),
            "date: \"2027-02-30\" is not a date YYYY-MM-DD; name: must not be empty; exchange: \
             must contain only letters, digits, '_' and '-'"
        );
    }
}
