//! Exchange dates for the simulator: the NSE holiday list, expiry cycles and the two date
//! formats OpenAlgo uses (`DDMMMYY` in symbols and requests, `DD-MMM-YY` in `/expiry`).

use chrono::{DateTime, Datelike, Days, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Asia::Kolkata;

/// NSE equity-segment trading holidays for 2026, as NSE published them (the list the migrations
/// seed, `migration/src/m0005_seed_calendar.rs`).
const NSE_HOLIDAYS_2026: [(u32, u32); 15] = [
    (1, 26),
    (3, 3),
    (3, 26),
    (3, 31),
    (4, 3),
    (4, 14),
    (5, 1),
    (5, 28),
    (6, 26),
    (9, 14),
    (10, 2),
    (10, 20),
    (11, 10),
    (11, 24),
    (12, 25),
];

pub(crate) fn is_holiday(date: NaiveDate) -> bool {
    date.year() == 2026 && NSE_HOLIDAYS_2026.contains(&(date.month(), date.day()))
}

pub(crate) fn is_trading_day(date: NaiveDate) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !is_holiday(date)
}

/// An expiry that falls on a holiday (or weekend) moves to the previous trading day.
pub(crate) fn adjust_expiry(mut date: NaiveDate) -> NaiveDate {
    while !is_trading_day(date) {
        match date.pred_opt() {
            Some(previous) => date = previous,
            None => break,
        }
    }
    date
}

/// Today's date in Asia/Kolkata.
pub(crate) fn today_ist(now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&Kolkata).date_naive()
}

/// True while an expiry still trades at `now`: until its session closes, 15:30 Asia/Kolkata on
/// the expiry date. From then on the contract is gone: not listed, no chain, no greeks.
pub(crate) fn is_live(expiry: NaiveDate, now: DateTime<Utc>) -> bool {
    now < expiry_close(expiry)
}

/// The next `count` weekly expiries on `weekday`, holiday-adjusted, none already closed at
/// `now`.
pub(crate) fn weekly_expiries(
    now: DateTime<Utc>,
    weekday: Weekday,
    count: usize,
) -> Vec<NaiveDate> {
    let today = today_ist(now);
    let ahead = (7 + weekday.num_days_from_monday() - today.weekday().num_days_from_monday()) % 7;
    let mut nominal = today + Days::new(u64::from(ahead));
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let expiry = adjust_expiry(nominal);
        if is_live(expiry, now) {
            out.push(expiry);
        }
        nominal = nominal + Days::new(7);
    }
    out
}

/// The next `count` monthly expiries (last `weekday` of the month), holiday-adjusted, none
/// already closed at `now`.
pub(crate) fn monthly_expiries(
    now: DateTime<Utc>,
    weekday: Weekday,
    count: usize,
) -> Vec<NaiveDate> {
    let today = today_ist(now);
    let mut out = Vec::with_capacity(count);
    let (mut year, mut month) = (today.year(), today.month());
    while out.len() < count {
        if let Some(last) = last_weekday_of_month(year, month, weekday) {
            let expiry = adjust_expiry(last);
            if is_live(expiry, now) {
                out.push(expiry);
            }
        }
        if month == 12 {
            year += 1;
            month = 1;
        } else {
            month += 1;
        }
    }
    out
}

fn last_weekday_of_month(year: i32, month: u32, weekday: Weekday) -> Option<NaiveDate> {
    let first_of_next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    let mut day = first_of_next.pred_opt()?;
    while day.weekday() != weekday {
        day = day.pred_opt()?;
    }
    Some(day)
}

/// `07APR26`
pub(crate) fn ddmmmyy(date: NaiveDate) -> String {
    date.format("%d%b%y").to_string().to_uppercase()
}

/// `07-APR-26`
pub(crate) fn dd_mmm_yy(date: NaiveDate) -> String {
    date.format("%d-%b-%y").to_string().to_uppercase()
}

/// Parses `DDMMMYY` (month case-insensitive), e.g. `28NOV25`.
pub(crate) fn parse_ddmmmyy(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 7
        || !bytes[..2].iter().all(u8::is_ascii_digit)
        || !bytes[2..5].iter().all(u8::is_ascii_alphabetic)
        || !bytes[5..].iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let month = match text[2..5].to_ascii_uppercase().as_str() {
        "JAN" => 1,
        "FEB" => 2,
        "MAR" => 3,
        "APR" => 4,
        "MAY" => 5,
        "JUN" => 6,
        "JUL" => 7,
        "AUG" => 8,
        "SEP" => 9,
        "OCT" => 10,
        "NOV" => 11,
        "DEC" => 12,
        _ => return None,
    };
    let day: u32 = text[..2].parse().ok()?;
    let year: i32 = text[5..].parse().ok()?;
    NaiveDate::from_ymd_opt(2000 + year, month, day)
}

/// The moment an expiry ends: 15:30 Asia/Kolkata on the expiry date.
pub(crate) fn expiry_close(date: NaiveDate) -> DateTime<Utc> {
    let local = date.and_hms_opt(15, 30, 0).unwrap_or_default();
    Kolkata
        .from_local_datetime(&local)
        .single()
        .map(|dt| dt.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&local))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    /// An instant given in Asia/Kolkata.
    fn ist(y: i32, m: u32, day: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        Kolkata
            .with_ymd_and_hms(y, m, day, h, min, s)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Morning of a date, when nothing has closed yet.
    fn morning(y: i32, m: u32, day: u32) -> DateTime<Utc> {
        ist(y, m, day, 9, 0, 0)
    }

    #[test]
    fn weekly_expiry_on_a_holiday_moves_to_the_previous_trading_day() {
        // 2026-03-03 (Tuesday) is Holi: that week's NIFTY expiry is Monday 2026-03-02.
        let got = weekly_expiries(morning(2026, 2, 25), Weekday::Tue, 4);
        assert_eq!(
            got,
            vec![
                d(2026, 3, 2),
                d(2026, 3, 10),
                d(2026, 3, 17),
                d(2026, 3, 24)
            ]
        );
    }

    #[test]
    fn weekly_expiry_includes_today_and_skips_an_adjusted_date_in_the_past() {
        assert_eq!(
            weekly_expiries(morning(2026, 3, 10), Weekday::Tue, 1),
            vec![d(2026, 3, 10)]
        );
        // On Holi itself the adjusted expiry (2 March) is already past.
        assert_eq!(
            weekly_expiries(morning(2026, 3, 3), Weekday::Tue, 1),
            vec![d(2026, 3, 10)]
        );
    }

    #[test]
    fn an_expiry_is_gone_once_its_session_closes_at_half_past_three() {
        // Tuesday 2026-12-01 is a NIFTY expiry.
        let expiry = d(2026, 12, 1);
        let before = ist(2026, 12, 1, 15, 29, 59);
        let at_close = ist(2026, 12, 1, 15, 30, 0);
        let evening = ist(2026, 12, 1, 22, 30, 0);
        assert!(is_live(expiry, before));
        assert!(!is_live(expiry, at_close));
        assert!(!is_live(expiry, evening));
        assert_eq!(
            weekly_expiries(before, Weekday::Tue, 2),
            vec![d(2026, 12, 1), d(2026, 12, 8)]
        );
        for after in [at_close, evening] {
            assert_eq!(
                weekly_expiries(after, Weekday::Tue, 2),
                vec![d(2026, 12, 8), d(2026, 12, 15)]
            );
        }
        // The monthly cycle too: BANKNIFTY's November expiry was Monday 2026-11-23 (the 24th is
        // a holiday).
        assert_eq!(
            monthly_expiries(ist(2026, 11, 23, 15, 29, 0), Weekday::Tue, 1),
            vec![d(2026, 11, 23)]
        );
        assert_eq!(
            monthly_expiries(ist(2026, 11, 23, 15, 31, 0), Weekday::Tue, 1),
            vec![d(2026, 12, 29)]
        );
    }

    #[test]
    fn holiday_chain_skips_weekends_and_consecutive_holidays() {
        // Thursday 2026-11-26 is a normal day; Tuesday 2026-11-24 is Guru Nanak Jayanti.
        assert_eq!(adjust_expiry(d(2026, 11, 24)), d(2026, 11, 23));
        // Good Friday 2026-04-03 → Thursday 2026-04-02.
        assert_eq!(adjust_expiry(d(2026, 4, 3)), d(2026, 4, 2));
        // A Saturday moves to Friday.
        assert_eq!(adjust_expiry(d(2026, 4, 4)), d(2026, 4, 2));
    }

    #[test]
    fn monthly_expiry_is_the_last_tuesday_adjusted_for_holidays() {
        // March 2026: last Tuesday is the 31st (Mahavir Jayanti) → Monday the 30th.
        let got = monthly_expiries(morning(2026, 3, 5), Weekday::Tue, 3);
        assert_eq!(got, vec![d(2026, 3, 30), d(2026, 4, 28), d(2026, 5, 26)]);
        // After the month's expiry the next month starts the list; December rolls over.
        let got = monthly_expiries(morning(2026, 12, 30), Weekday::Tue, 2);
        assert_eq!(got, vec![d(2027, 1, 26), d(2027, 2, 23)]);
    }

    #[test]
    fn date_formats_round_trip() {
        let date = d(2026, 4, 7);
        assert_eq!(ddmmmyy(date), "07APR26");
        assert_eq!(dd_mmm_yy(date), "07-APR-26");
        assert_eq!(parse_ddmmmyy("07APR26"), Some(date));
        assert_eq!(parse_ddmmmyy("07apr26"), Some(date));
        assert_eq!(parse_ddmmmyy("7APR26"), None);
        assert_eq!(parse_ddmmmyy("07-APR-26"), None);
        assert_eq!(parse_ddmmmyy("31FEB26"), None);
    }

    #[test]
    fn expiry_closes_at_half_past_three_ist() {
        let close = expiry_close(d(2026, 4, 7));
        assert_eq!(close.to_rfc3339(), "2026-04-07T10:00:00+00:00");
    }
}
