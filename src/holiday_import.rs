//! Loading a list of holidays in one step, for `supervisor calendar import FILE` and
//! `POST /api/v1/calendar/holidays/import`.
//!
//! The list is a CSV file with the header `date,name,exchange` (columns in any order, an
//! optional `is_active` column, lines starting with `#` ignored) or a JSON array of holiday
//! objects as `POST /api/v1/calendar/holidays` takes them. Every row is checked with the same
//! rules as that endpoint before anything is stored: one invalid row and nothing is imported,
//! and the error names every invalid row (CSV: its line, the header being line 1; JSON: its
//! array index, from 0). A row whose date and exchange are already stored, or repeat an earlier
//! row, is skipped and reported, so running the same import again inserts nothing. The rows are
//! inserted in one transaction.

use actors::db::begin_write;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::NaiveDate;
use entity::market_holidays;
use entity::prelude::MarketHolidays;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, SqlErr};
use serde::Serialize;

use crate::calendar_input::{HolidayInput, NewHoliday};

/// Inserted per statement (SQLite allows 32 766 bound parameters; four per row).
const INSERT_CHUNK: usize = 500;

/// The columns a CSV file may have.
const COLUMNS: [&str; 4] = ["date", "name", "exchange", "is_active"];

/// How the list is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    /// JSON when the first character that is not white space opens an array, CSV otherwise
    /// (for files without a telling extension).
    pub fn sniff(bytes: &[u8]) -> Format {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => Format::Json,
            _ => Format::Csv,
        }
    }
}

/// Where a row is in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// A CSV line, the header being line 1.
    Line(u64),
    /// A JSON array index, from 0.
    Item(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Item(n) => write!(f, "item {n}"),
        }
    }
}

/// A valid row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub at: Position,
    pub holiday: NewHoliday,
}

/// An invalid row and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    #[serde(flatten)]
    pub at: Position,
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.reason)
    }
}

/// A row that was not inserted because its date and exchange are already taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    #[serde(flatten)]
    pub at: Position,
    pub date: NaiveDate,
    pub exchange: String,
    /// "already present" (stored before), or "repeats line N" / "repeats item N".
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub inserted: u64,
    pub skipped: Vec<Skipped>,
}

impl fmt::Display for ImportReport {
    /// "inserted 14, skipped 1 duplicate", then one line per skipped row.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.skipped.len();
        write!(
            f,
            "inserted {}, skipped {n} duplicate{}",
            self.inserted,
            if n == 1 { "" } else { "s" }
        )?;
        for s in &self.skipped {
            write!(f, "\n  {}: {} {} {}", s.at, s.exchange, s.date, s.reason)?;
        }
        Ok(())
    }
}

/// Why nothing was imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is not JSON at all.
    #[error("invalid JSON: {0}")]
    Malformed(String),
    /// The input has no usable shape: no header or a wrong one, not an array, no rows.
    #[error("{0}")]
    Unusable(String),
    /// Some rows are invalid; every one is listed.
    #[error("{}", invalid_message(.0))]
    Invalid(Vec<RowError>),
    /// Another writer stored one of the rows while this import ran.
    #[error("{0} was stored by someone else during the import; nothing was imported, run it again")]
    Conflict(String),
    #[error("{context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: DbErr,
    },
}

fn invalid_message(rows: &[RowError]) -> String {
    let list: Vec<String> = rows.iter().map(RowError::to_string).collect();
    format!(
        "{} invalid row{}, nothing was imported: {}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        list.join("; ")
    )
}

fn database(context: &'static str) -> impl FnOnce(DbErr) -> ImportError {
    move |source| ImportError::Database { context, source }
}

/// Reads and validates every row; any invalid row fails the whole list.
pub fn parse(format: Format, bytes: &[u8]) -> Result<Vec<Row>, ImportError> {
    let inputs = match format {
        Format::Csv => read_csv(bytes)?,
        Format::Json => read_json(bytes)?,
    };
    if inputs.is_empty() {
        return Err(ImportError::Unusable(
            "the list has no holidays in it".into(),
        ));
    }
    let mut rows = Vec::with_capacity(inputs.len());
    let mut invalid = Vec::new();
    for (at, input) in inputs {
        match input.and_then(|i| i.validate().map_err(|e| e.to_string())) {
            Ok(holiday) => rows.push(Row { at, holiday }),
            Err(reason) => invalid.push(RowError { at, reason }),
        }
    }
    if invalid.is_empty() {
        Ok(rows)
    } else {
        Err(ImportError::Invalid(invalid))
    }
}

type Inputs = Vec<(Position, Result<HolidayInput, String>)>;

fn read_csv(bytes: &[u8]) -> Result<Inputs, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let expected = "expected the header date,name,exchange (and optionally is_active)";
    let header = match records.next() {
        None => {
            return Err(ImportError::Unusable(format!(
                "the file is empty: {expected}"
            )));
        }
        Some(Err(e)) => return Err(ImportError::Unusable(format!("unreadable CSV: {e}"))),
        Some(Ok(header)) => header,
    };
    let header_line = header.position().map_or(1, |p| p.line());
    // Column index of each known column.
    let mut columns: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, raw) in header.iter().enumerate() {
        let raw = if i == 0 {
            raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
        } else {
            raw
        };
        let title = String::from_utf8_lossy(raw).trim().to_ascii_lowercase();
        let Some(known) = COLUMNS.iter().find(|c| **c == title) else {
            return Err(ImportError::Unusable(format!(
                "line {header_line}: unknown column {title:?}; {expected}"
            )));
        };
        if columns.insert(known, i).is_some() {
            return Err(ImportError::Unusable(format!(
                "line {header_line}: column {title:?} appears twice"
            )));
        }
    }
    let missing: Vec<&str> = COLUMNS[..3]
        .iter()
        .filter(|c| !columns.contains_key(**c))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(ImportError::Unusable(format!(
            "line {header_line}: no {} column; {expected}",
            missing.join(", ")
        )));
    }
    let width = header.len();
    let mut inputs = Vec::new();
    for record in records {
        let record = record.map_err(|e| ImportError::Unusable(format!("unreadable CSV: {e}")))?;
        // A line of empty fields (such as ",,," from a spreadsheet) is no holiday.
        if record.iter().all(<[u8]>::is_empty) {
            continue;
        }
        let at = Position::Line(record.position().map_or(0, |p| first_line(bytes, p)));
        inputs.push((at, csv_row(&record, &columns, width)));
    }
    Ok(inputs)
}

/// The line a record starts on. The reader's position is where it began looking for the
/// record, before the blank and comment lines it skipped; those are skipped here too.
fn first_line(bytes: &[u8], position: &csv::Position) -> u64 {
    let mut line = position.line();
    let mut rest = usize::try_from(position.byte())
        .ok()
        .and_then(|at| bytes.get(at..))
        .unwrap_or_default();
    loop {
        let skipped = match rest.first() {
            Some(b'\n') => 1,
            Some(b'\r') if rest.get(1) == Some(&b'\n') => 2,
            Some(b'\r') => 1,
            Some(b'#') => rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |n| n + 1),
            _ => return line,
        };
        rest = &rest[skipped..];
        line += 1;
    }
}

/// One CSV record as a holiday, or why it cannot be one.
fn csv_row(
    record: &csv::ByteRecord,
    columns: &BTreeMap<&str, usize>,
    width: usize,
) -> Result<HolidayInput, String> {
    if record.len() != width {
        return Err(format!(
            "expected {width} fields as in the header, found {}",
            record.len()
        ));
    }
    let field = |name: &str| -> Result<String, String> {
        let Some(raw) = columns.get(name).and_then(|&i| record.get(i)) else {
            return Ok(String::new());
        };
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{name}: not UTF-8 text"))
    };
    let is_active = match field("is_active")?.to_ascii_lowercase().as_str() {
        "" | "true" => true,
        "false" => false,
        other => return Err(format!("is_active: {other:?} is not true or false")),
    };
    Ok(HolidayInput {
        date: field("date")?,
        name: field("name")?,
        exchange: field("exchange")?,
        is_active,
    })
}

fn read_json(bytes: &[u8]) -> Result<Inputs, ImportError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ImportError::Malformed(e.to_string()))?;
    let serde_json::Value::Array(items) = value else {
        return Err(ImportError::Unusable(
            "expected a JSON array of holidays: [{\"date\", \"name\", \"exchange\"}, …]".into(),
        ));
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let input = serde_json::from_value::<HolidayInput>(item).map_err(|e| e.to_string());
            (Position::Item(i), input)
        })
        .collect())
}

/// Stores every row whose date and exchange are free, in one transaction; the others are
/// reported as skipped.
pub async fn import(db: &DatabaseConnection, rows: Vec<Row>) -> Result<ImportReport, ImportError> {
    let mut skipped = Vec::new();
    // The first row of each (date, exchange); later ones repeat it.
    let mut first: BTreeMap<(NaiveDate, String), Position> = BTreeMap::new();
    let mut fresh = Vec::new();
    for row in rows {
        let key = (row.holiday.date, row.holiday.exchange.clone());
        if let Some(earlier) = first.get(&key) {
            skipped.push(skip(&row, format!("repeats {earlier}")));
        } else {
            first.insert(key, row.at);
            fresh.push(row);
        }
    }

    let txn = begin_write(db)
        .await
        .map_err(database("starting the import"))?;
    let stored = stored_keys(&txn, &fresh).await?;
    let (present, to_insert): (Vec<Row>, Vec<Row>) = fresh
        .into_iter()
        .partition(|r| stored.contains(&(r.holiday.date, r.holiday.exchange.clone())));
    skipped.extend(present.iter().map(|r| skip(r, "already present".into())));
    let mut inserted = 0;
    for chunk in to_insert.chunks(INSERT_CHUNK) {
        inserted += MarketHolidays::insert_many(chunk.iter().map(|r| r.holiday.active_model()))
            .exec_without_returning(&txn)
            .await
            .map_err(|e| match e.sql_err() {
                Some(SqlErr::UniqueConstraintViolation(_)) => {
                    ImportError::Conflict("a holiday of the same date and exchange".into())
                }
                _ => database("storing the holidays")(e),
            })?;
    }
    txn.commit()
        .await
        .map_err(database("committing the import"))?;
    skipped.sort_by_key(|s| s.at);
    Ok(ImportReport { inserted, skipped })
}

fn skip(row: &Row, reason: String) -> Skipped {
    Skipped {
        at: row.at,
        date: row.holiday.date,
        exchange: row.holiday.exchange.clone(),
        reason,
    }
}

/// The (date, exchange) pairs of `rows` already stored, active or not.
async fn stored_keys(
    txn: &impl sea_orm::ConnectionTrait,
    rows: &[Row],
) -> Result<BTreeSet<(NaiveDate, String)>, ImportError> {
    let (Some(min), Some(max)) = (
        rows.iter().map(|r| r.holiday.date).min(),
        rows.iter().map(|r| r.holiday.date).max(),
    ) else {
        return Ok(BTreeSet::new());
    };
    let exchanges: BTreeSet<&str> = rows.iter().map(|r| r.holiday.exchange.as_str()).collect();
    let stored = MarketHolidays::find()
        .filter(market_holidays::Column::Date.between(min, max))
        .filter(market_holidays::Column::Exchange.is_in(exchanges))
        .all(txn)
        .await
        .map_err(database("reading the stored holidays"))?;
    Ok(stored.into_iter().map(|h| (h.date, h.exchange)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn invalid(result: Result<Vec<Row>, ImportError>) -> Vec<String> {
        match result {
            Err(ImportError::Invalid(rows)) => rows.iter().map(RowError::to_string).collect(),
            other => panic!("expected invalid rows, got {other:?}"),
        }
    }

    fn unusable(result: Result<Vec<Row>, ImportError>) -> String {
        match result {
            Err(ImportError::Unusable(m)) => m,
            other => panic!("expected an unusable list, got {other:?}"),
        }
    }

    #[test]
    fn csv_rows_are_read_with_their_line_numbers() {
        let csv = "date,name,exchange\n\
                   2027-01-26,Republic Day,nse\n\
                   # a comment line\n\
                   \n\
                   2027-03-22,\"Holi, the festival of colours\",NSE\n\
                   2027-12-25,\"Christmas\"\"s day\",BSE\n\
                   ,,\n\
                   \"2027-12-31\",\"New Year's\n\
                   Eve\",NSE\n\
                   # the last line\n\
                   2027-12-30,Last,NSE";
        let rows = parse(Format::Csv, csv.as_bytes()).unwrap();
        let got: Vec<(Position, NaiveDate, &str, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r.at,
                    r.holiday.date,
                    r.holiday.name.as_str(),
                    r.holiday.exchange.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (Position::Line(2), date(2027, 1, 26), "Republic Day", "NSE"),
                (
                    Position::Line(5),
                    date(2027, 3, 22),
                    "Holi, the festival of colours",
                    "NSE"
                ),
                (
                    Position::Line(6),
                    date(2027, 12, 25),
                    "Christmas\"s day",
                    "BSE"
                ),
                (
                    Position::Line(8),
                    date(2027, 12, 31),
                    "New Year's\nEve",
                    "NSE"
                ),
                (Position::Line(11), date(2027, 12, 30), "Last", "NSE"),
            ]
        );
        assert!(rows.iter().all(|r| r.holiday.is_active));
    }

    #[test]
    fn csv_columns_may_come_in_any_order_with_is_active() {
        let csv = "\u{feff}Exchange, Name ,DATE,is_active\r\n\
                   NSE,Republic Day,2027-01-26,false\r\n\
                   \r\n\
                   #\r\n\
                   NSE,Holi,2027-03-22,\r\n";
        let rows = parse(Format::Csv, csv.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].at, rows[1].at),
            (Position::Line(2), Position::Line(5))
        );
        assert_eq!(rows[0].holiday.date, date(2027, 1, 26));
        assert_eq!(rows[0].holiday.name, "Republic Day");
        assert!(!rows[0].holiday.is_active);
        assert!(rows[1].holiday.is_active);
    }

    #[test]
    fn every_invalid_csv_row_is_named_with_its_line() {
        let csv = "date,name,exchange\n\
                   2027-01-26,Republic Day,NSE\n\
                   2027-02-30,Nothing,NSE\n\
                   2027-03-22,,NSE\n\
                   2027-04-14,Ambedkar Jayanti,\n\
                   2027-05-01,Maharashtra Day\n\
                   26/01/2027,  ,N S E\n";
        assert_eq!(
            invalid(parse(Format::Csv, csv.as_bytes())),
            [
                "line 3: date: \"2027-02-30\" is not a date YYYY-MM-DD",
                "line 4: name: must not be empty",
                "line 5: exchange: must not be empty",
                "line 6: expected 3 fields as in the header, found 2",
                "line 7: date: \"26/01/2027\" is not a date YYYY-MM-DD; name: must not be empty; \
                 exchange: must contain only letters, digits, '_' and '-'",
            ]
        );
        let bad_flag = "date,name,exchange,is_active\n2027-01-26,Republic Day,NSE,maybe\n";
        assert_eq!(
            invalid(parse(Format::Csv, bad_flag.as_bytes())),
            ["line 2: is_active: \"maybe\" is not true or false"]
        );
    }

    #[test]
    fn a_csv_without_a_usable_header_or_rows_is_refused() {
        assert!(unusable(parse(Format::Csv, b"")).starts_with("the file is empty"));
        assert!(
            unusable(parse(
                Format::Csv,
                b"date,holiday,exchange\n2027-01-26,x,NSE\n"
            ))
            .contains("unknown column \"holiday\"")
        );
        assert!(
            unusable(parse(Format::Csv, b"date,name\n2027-01-26,x\n"))
                .contains("no exchange column")
        );
        assert!(
            unusable(parse(Format::Csv, b"date,name,exchange,date\n")).contains("appears twice")
        );
        // Without a header the first holiday is taken for one, and named.
        assert!(
            unusable(parse(Format::Csv, b"2027-01-26,Republic Day,NSE\n"))
                .starts_with("line 1: unknown column \"2027-01-26\"")
        );
        assert_eq!(
            unusable(parse(Format::Csv, b"date,name,exchange\n")),
            "the list has no holidays in it"
        );
    }

    #[test]
    fn json_items_are_read_and_named_by_index() {
        let json = r#"[
            {"date": "2027-01-26", "name": "Republic Day", "exchange": "nse"},
            {"date": "2027-03-22", "name": "Holi", "exchange": "NSE", "is_active": false}
        ]"#;
        let rows = parse(Format::Json, json.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].at, Position::Item(0));
        assert_eq!(rows[0].holiday.exchange, "NSE");
        assert_eq!(rows[1].at, Position::Item(1));
        assert!(!rows[1].holiday.is_active);

        let json = r#"[
            {"date": "2027-01-26", "name": "Republic Day", "exchange": "NSE"},
            {"date": "2027-01-32", "name": "Nothing", "exchange": "NSE"},
            {"date": "2027-03-22", "exchange": "NSE"},
            {"date": "2027-04-14", "name": "x", "exchange": "NSE", "colour": "red"},
            "2027-05-01"
        ]"#;
        let errors = invalid(parse(Format::Json, json.as_bytes()));
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert_eq!(
            errors[0],
            "item 1: date: \"2027-01-32\" is not a date YYYY-MM-DD"
        );
        assert!(
            errors[1].starts_with("item 2: missing field `name`"),
            "{errors:?}"
        );
        assert!(
            errors[2].starts_with("item 3: unknown field `colour`"),
            "{errors:?}"
        );
        assert!(errors[3].starts_with("item 4: invalid type"), "{errors:?}");
    }

    #[test]
    fn json_that_is_not_an_array_of_holidays_is_refused() {
        assert!(matches!(
            parse(Format::Json, b"[{"),
            Err(ImportError::Malformed(_))
        ));
        assert!(
            unusable(parse(Format::Json, br#"{"date": "2027-01-26"}"#))
                .starts_with("expected a JSON array")
        );
        assert_eq!(
            unusable(parse(Format::Json, b"[]")),
            "the list has no holidays in it"
        );
    }

    #[test]
    fn formats_are_sniffed_and_reports_read_well() {
        assert_eq!(Format::sniff(b"  \n[{}]"), Format::Json);
        assert_eq!(Format::sniff(b"date,name,exchange"), Format::Csv);
        assert_eq!(Format::sniff(b""), Format::Csv);
        let report = ImportReport {
            inserted: 2,
            skipped: vec![Skipped {
                at: Position::Line(4),
                date: date(2027, 1, 26),
                exchange: "NSE".into(),
                reason: "repeats line 2".into(),
            }],
        };
        assert_eq!(
            report.to_string(),
            "inserted 2, skipped 1 duplicate\n  line 4: NSE 2027-01-26 repeats line 2"
        );
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({"inserted": 2, "skipped": [{"line": 4, "date": "2027-01-26",
                "exchange": "NSE", "reason": "repeats line 2"}]})
        );
    }
}
