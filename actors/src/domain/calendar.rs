//! Trading-calendar phase rule (docs/ARCHITECTURE.md §4.2), on plain data rather than database
//! rows.
//!
//! Every session is turned into instants in the template's timezone (so DST is handled by
//! chrono-tz): a normal session is Open from `start` through `end` inclusive to the second, and
//! PreOpen for `pre_open_buffer` before `start`; a pre-open session is PreOpen throughout. Special
//! sessions are normal sessions on their date, even on a holiday; a holiday removes that date's
//! regular sessions (and their buffers). Open outranks PreOpen where they overlap.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::offset::LocalResult;
use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// How far ahead [`next_change`] looks for a phase change.
pub const SEARCH_DAYS: i64 = 14;

/// How far ahead the holiday list must reach: a year that begins within this many days without
/// a holiday loaded is warned about (see [`missing_holiday_years`]).
pub const HOLIDAY_LOOKAHEAD_DAYS: i64 = 30;

/// Market phase.
#[derive(utoipa::ToSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Shortly before a session: warm up (connect, subscribe), no trading yet.
    PreOpen,
    /// A session is running.
    Open,
    /// No session.
    Closed,
}

impl Phase {
    fn rank(self) -> u8 {
        match self {
            Phase::Closed => 0,
            Phase::PreOpen => 1,
            Phase::Open => 2,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::PreOpen => "PreOpen",
            Phase::Open => "Open",
            Phase::Closed => "Closed",
        })
    }
}

/// Type of a weekly session row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// Regular trading.
    Normal,
    /// Pre-open call auction: PreOpen, not Open.
    PreOpen,
}

impl SessionKind {
    /// The stored name: "normal" or "pre_open".
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Normal => "normal",
            SessionKind::PreOpen => "pre_open",
        }
    }
}

/// A session type other than "normal" or "pre_open".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session type {0:?}: expected normal or pre_open")]
pub struct InvalidSessionKind(pub String);

impl FromStr for SessionKind {
    type Err = InvalidSessionKind;

    /// Parses "normal" or "pre_open" in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        [SessionKind::Normal, SessionKind::PreOpen]
            .into_iter()
            .find(|k| t.eq_ignore_ascii_case(k.as_str()))
            .ok_or_else(|| InvalidSessionKind(s.to_owned()))
    }
}

/// A weekly session in the template's timezone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Day of the week, 0 = Monday … 6 = Sunday.
    pub weekday: u8,
    /// First second of the session.
    pub start: NaiveTime,
    /// Last second of the session (inclusive); before `start` means it ends the next day.
    pub end: NaiveTime,
    /// Normal or pre-open.
    pub kind: SessionKind,
}

/// A one-off session on a date (e.g. Muhurat trading), open even on a holiday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Special {
    /// Local date of the session.
    pub date: NaiveDate,
    /// First second of the session.
    pub start: NaiveTime,
    /// Last second of the session (inclusive).
    pub end: NaiveTime,
}

/// The active calendar of one template.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarData {
    /// Timezone every time and date above is expressed in.
    pub timezone: Tz,
    /// Active weekly sessions.
    pub sessions: Vec<Session>,
    /// Active holidays (local dates without regular sessions).
    pub holidays: Vec<NaiveDate>,
    /// Active special sessions.
    pub specials: Vec<Special>,
    /// How long before a normal or special session starts the phase is PreOpen.
    pub pre_open_buffer: Duration,
}

/// Converts a local wall-clock time to UTC: the earlier instant when the clock repeats, and,
/// inside a DST gap, the time read with the offset in force before the gap.
fn to_utc(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, _) => Some(earlier.with_timezone(&Utc)),
        LocalResult::None => {
            let before = local.checked_sub_signed(TimeDelta::days(1))?;
            let offset = tz.offset_from_local_datetime(&before).earliest()?.fix();
            local
                .checked_sub_signed(TimeDelta::seconds(i64::from(offset.local_minus_utc())))
                .map(|utc| utc.and_utc())
        }
    }
}

/// Calls `f(from, until, phase)` for every phase interval `[from, until)` contributed by the
/// local date `date`.
fn for_each_interval(
    cal: &CalendarData,
    date: NaiveDate,
    f: &mut impl FnMut(DateTime<Utc>, DateTime<Utc>, Phase),
) {
    let buffer = TimeDelta::from_std(cal.pre_open_buffer).unwrap_or(TimeDelta::zero());
    let mut emit = |start: NaiveTime, end: NaiveTime, kind: SessionKind| {
        let from_local = date.and_time(start);
        let mut until_local = date.and_time(end) + TimeDelta::seconds(1);
        if end < start {
            until_local += TimeDelta::days(1);
        }
        let (Some(from), Some(until)) = (
            to_utc(cal.timezone, from_local),
            to_utc(cal.timezone, until_local),
        ) else {
            return;
        };
        match kind {
            SessionKind::Normal => {
                if buffer > TimeDelta::zero() {
                    f(from - buffer, from, Phase::PreOpen);
                }
                f(from, until, Phase::Open);
            }
            SessionKind::PreOpen => f(from, until, Phase::PreOpen),
        }
    };
    for special in cal.specials.iter().filter(|s| s.date == date) {
        emit(special.start, special.end, SessionKind::Normal);
    }
    if cal.holidays.contains(&date) {
        return;
    }
    let weekday = date.weekday().num_days_from_monday();
    for session in cal
        .sessions
        .iter()
        .filter(|s| u32::from(s.weekday) == weekday)
    {
        emit(session.start, session.end, session.kind);
    }
}

/// The phase at `now`.
pub fn phase_at(cal: &CalendarData, now: DateTime<Utc>) -> Phase {
    let today = now.with_timezone(&cal.timezone).date_naive();
    let mut phase = Phase::Closed;
    // Yesterday for sessions running past midnight, tomorrow for buffers starting before it.
    for date in [today.pred_opt(), Some(today), today.succ_opt()]
        .into_iter()
        .flatten()
    {
        for_each_interval(cal, date, &mut |from, until, p| {
            if from <= now && now < until && p.rank() > phase.rank() {
                phase = p;
            }
        });
    }
    phase
}

/// The next instant after `now` at which the phase differs from the phase at `now`, with the
/// new phase; None when nothing changes within [`SEARCH_DAYS`] days.
pub fn next_change(cal: &CalendarData, now: DateTime<Utc>) -> Option<(DateTime<Utc>, Phase)> {
    let current = phase_at(cal, now);
    let today = now.with_timezone(&cal.timezone).date_naive();
    let horizon = now + TimeDelta::days(SEARCH_DAYS);
    let mut boundaries = Vec::new();
    for offset in -1..=SEARCH_DAYS + 1 {
        let Some(date) = today.checked_add_signed(TimeDelta::days(offset)) else {
            continue;
        };
        for_each_interval(cal, date, &mut |from, until, _| {
            boundaries.extend(
                [from, until]
                    .into_iter()
                    .filter(|&b| b > now && b <= horizon),
            );
        });
    }
    boundaries.sort_unstable();
    boundaries.dedup();
    boundaries.into_iter().find_map(|at| {
        let phase = phase_at(cal, at);
        (phase != current).then_some((at, phase))
    })
}

/// A year the calendar reaches soon for which an exchange has no holiday loaded: its holidays
/// would count as trading days.
#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CalendarWarning {
    /// The exchange code, as the templates store it.
    pub exchange: String,
    /// The year without holidays.
    pub year: i32,
    /// The first local date of that year within the look-ahead (today, for the current year).
    pub from: NaiveDate,
    /// What is wrong and what to do, for a person.
    pub message: String,
}

/// The (exchange, year) pairs that the next [`HOLIDAY_LOOKAHEAD_DAYS`] days reach without a
/// holiday loaded, one warning each, ordered by exchange and year.
///
/// `templates` are the active templates' exchanges and timezones: the window runs from the local
/// date of `now` to the local date [`HOLIDAY_LOOKAHEAD_DAYS`] days later in each template's
/// timezone. `loaded` holds every (exchange, year) with at least one active holiday. An exchange
/// with several templates is warned about once per year, from its earliest local date.
pub fn missing_holiday_years<'a>(
    templates: impl IntoIterator<Item = (&'a str, Tz)>,
    loaded: &BTreeSet<(&str, i32)>,
    now: DateTime<Utc>,
) -> Vec<CalendarWarning> {
    let end = now + TimeDelta::days(HOLIDAY_LOOKAHEAD_DAYS);
    // (exchange, year) → (first local date reached, whether that year has already begun).
    let mut missing: BTreeMap<(&str, i32), (NaiveDate, bool)> = BTreeMap::new();
    for (exchange, tz) in templates {
        let today = now.with_timezone(&tz).date_naive();
        let last = end.with_timezone(&tz).date_naive();
        for year in today.year()..=last.year() {
            if loaded.contains(&(exchange, year)) {
                continue;
            }
            let current = year == today.year();
            let from = if current {
                today
            } else {
                NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or(today)
            };
            let entry = missing.entry((exchange, year)).or_insert((from, current));
            *entry = (entry.0.min(from), entry.1 || current);
        }
    }
    missing
        .into_iter()
        .map(|((exchange, year), (from, current))| {
            let when = if current {
                "the current year".to_string()
            } else {
                format!("the next {HOLIDAY_LOOKAHEAD_DAYS} days reach {from}")
            };
            CalendarWarning {
                exchange: exchange.to_string(),
                year,
                from,
                message: format!(
                    "no holidays loaded for {exchange} in {year} ({when}); until they are \
                     imported, that year's holidays count as trading days"
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32, s: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, s).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn at(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        tz.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ist(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        at(chrono_tz::Asia::Kolkata, y, mo, d, h, mi, s)
    }

    fn weekdays(start: NaiveTime, end: NaiveTime, kind: SessionKind) -> Vec<Session> {
        (0..5)
            .map(|weekday| Session {
                weekday,
                start,
                end,
                kind,
            })
            .collect()
    }

    /// NSE default: Mon–Fri 09:15–15:30, 15 min pre-open buffer, a few 2026 holidays, and
    /// Muhurat trading on Sunday 2026-11-08, itself entered as a holiday.
    fn nse() -> CalendarData {
        CalendarData {
            timezone: chrono_tz::Asia::Kolkata,
            sessions: weekdays(t(9, 15, 0), t(15, 30, 0), SessionKind::Normal),
            holidays: vec![
                date(2026, 1, 26),
                date(2026, 3, 3),
                date(2026, 11, 8),
                date(2026, 11, 10),
            ],
            specials: vec![Special {
                date: date(2026, 11, 8),
                start: t(18, 0, 0),
                end: t(19, 0, 0),
            }],
            pre_open_buffer: Duration::from_secs(15 * 60),
        }
    }

    fn new_york() -> CalendarData {
        CalendarData {
            timezone: chrono_tz::America::New_York,
            sessions: weekdays(t(9, 30, 0), t(16, 0, 0), SessionKind::Normal),
            holidays: vec![],
            specials: vec![],
            pre_open_buffer: Duration::from_secs(15 * 60),
        }
    }

    #[test]
    fn phase_table() {
        let cal = nse();
        let cases = [
            // Monday 2026-01-05.
            (ist(2026, 1, 5, 10, 0, 0), Phase::Open, "weekday session"),
            (
                ist(2026, 1, 5, 8, 59, 59),
                Phase::Closed,
                "before the buffer",
            ),
            (ist(2026, 1, 5, 9, 0, 0), Phase::PreOpen, "buffer starts"),
            (
                ist(2026, 1, 5, 9, 14, 59),
                Phase::PreOpen,
                "last second of buffer",
            ),
            (ist(2026, 1, 5, 9, 15, 0), Phase::Open, "session starts"),
            (ist(2026, 1, 5, 15, 30, 0), Phase::Open, "last second open"),
            (ist(2026, 1, 5, 15, 30, 1), Phase::Closed, "session over"),
            (ist(2026, 1, 5, 23, 0, 0), Phase::Closed, "night"),
            // Weekend.
            (ist(2026, 1, 10, 10, 0, 0), Phase::Closed, "saturday"),
            (
                ist(2026, 1, 11, 9, 5, 0),
                Phase::Closed,
                "sunday buffer time",
            ),
            // Holidays (Republic Day is a Monday, Holi a Tuesday).
            (ist(2026, 1, 26, 10, 0, 0), Phase::Closed, "republic day"),
            (
                ist(2026, 3, 3, 9, 5, 0),
                Phase::Closed,
                "holiday has no buffer",
            ),
            (
                ist(2026, 3, 4, 9, 5, 0),
                Phase::PreOpen,
                "day after holiday",
            ),
            // Muhurat: a special session on a Sunday that is also a holiday.
            (ist(2026, 11, 8, 12, 0, 0), Phase::Closed, "diwali noon"),
            (
                ist(2026, 11, 8, 17, 44, 59),
                Phase::Closed,
                "before muhurat buffer",
            ),
            (
                ist(2026, 11, 8, 17, 45, 0),
                Phase::PreOpen,
                "muhurat buffer",
            ),
            (ist(2026, 11, 8, 18, 0, 0), Phase::Open, "muhurat starts"),
            (
                ist(2026, 11, 8, 19, 0, 0),
                Phase::Open,
                "muhurat last second",
            ),
            (ist(2026, 11, 8, 19, 0, 1), Phase::Closed, "muhurat over"),
            (ist(2026, 11, 10, 10, 0, 0), Phase::Closed, "balipratipada"),
        ];
        for (now, want, what) in cases {
            assert_eq!(phase_at(&cal, now), want, "{what} ({now})");
        }
    }

    #[test]
    fn special_session_outside_a_holiday_adds_to_the_day() {
        let mut cal = nse();
        cal.specials.push(Special {
            date: date(2026, 1, 5),
            start: t(17, 0, 0),
            end: t(17, 30, 0),
        });
        assert_eq!(phase_at(&cal, ist(2026, 1, 5, 10, 0, 0)), Phase::Open);
        assert_eq!(phase_at(&cal, ist(2026, 1, 5, 16, 50, 0)), Phase::PreOpen);
        assert_eq!(phase_at(&cal, ist(2026, 1, 5, 17, 10, 0)), Phase::Open);
        assert_eq!(phase_at(&cal, ist(2026, 1, 6, 17, 10, 0)), Phase::Closed);
    }

    #[test]
    fn pre_open_sessions_and_zero_buffer() {
        let mut sessions = weekdays(t(9, 0, 0), t(9, 8, 0), SessionKind::PreOpen);
        sessions.extend(weekdays(t(9, 15, 0), t(15, 30, 0), SessionKind::Normal));
        let cal = CalendarData {
            sessions,
            pre_open_buffer: Duration::ZERO,
            ..nse()
        };
        let cases = [
            (ist(2026, 1, 5, 8, 59, 59), Phase::Closed),
            (ist(2026, 1, 5, 9, 0, 0), Phase::PreOpen),
            (ist(2026, 1, 5, 9, 8, 0), Phase::PreOpen),
            (ist(2026, 1, 5, 9, 8, 1), Phase::Closed),
            (ist(2026, 1, 5, 9, 14, 59), Phase::Closed),
            (ist(2026, 1, 5, 9, 15, 0), Phase::Open),
        ];
        for (now, want) in cases {
            assert_eq!(phase_at(&cal, now), want, "{now}");
        }
    }

    #[test]
    fn overnight_session_and_buffer_across_midnight() {
        let cal = CalendarData {
            timezone: chrono_tz::Asia::Kolkata,
            // Monday 23:00 to Tuesday 01:00, and Tuesday 00:10–00:40 with its buffer on Monday.
            sessions: vec![
                Session {
                    weekday: 0,
                    start: t(23, 0, 0),
                    end: t(1, 0, 0),
                    kind: SessionKind::Normal,
                },
                Session {
                    weekday: 2,
                    start: t(0, 10, 0),
                    end: t(0, 40, 0),
                    kind: SessionKind::Normal,
                },
            ],
            holidays: vec![],
            specials: vec![],
            pre_open_buffer: Duration::from_secs(20 * 60),
        };
        assert_eq!(phase_at(&cal, ist(2026, 1, 5, 23, 30, 0)), Phase::Open);
        assert_eq!(phase_at(&cal, ist(2026, 1, 6, 1, 0, 0)), Phase::Open);
        assert_eq!(phase_at(&cal, ist(2026, 1, 6, 1, 0, 1)), Phase::Closed);
        // Wednesday 00:10 session: buffer from Tuesday 23:50.
        assert_eq!(phase_at(&cal, ist(2026, 1, 6, 23, 50, 0)), Phase::PreOpen);
        assert_eq!(phase_at(&cal, ist(2026, 1, 7, 0, 10, 0)), Phase::Open);
    }

    #[test]
    fn dst_template_follows_local_time() {
        let cal = new_york();
        let utc = |d: u32, h: u32, m: u32, s: u32| {
            Utc.with_ymd_and_hms(2026, 3, d, h, m, s).single().unwrap()
        };
        let cases = [
            // Friday 2026-03-06, EST (UTC−5): 09:30 local = 14:30 UTC.
            (utc(6, 14, 14, 59), Phase::Closed),
            (utc(6, 14, 15, 0), Phase::PreOpen),
            (utc(6, 14, 30, 0), Phase::Open),
            (utc(6, 21, 0, 0), Phase::Open),
            (utc(6, 21, 0, 1), Phase::Closed),
            // Monday 2026-03-09, EDT (UTC−4) after the change on Sunday 03-08: 09:30 = 13:30 UTC.
            (utc(9, 13, 15, 0), Phase::PreOpen),
            (utc(9, 13, 29, 59), Phase::PreOpen),
            (utc(9, 13, 30, 0), Phase::Open),
            (utc(9, 20, 0, 0), Phase::Open),
            (utc(9, 20, 0, 1), Phase::Closed),
            (utc(9, 20, 30, 0), Phase::Closed),
        ];
        for (now, want) in cases {
            assert_eq!(phase_at(&cal, now), want, "{now}");
        }
        // Across the weekend of the change, the next boundary is 13:15 UTC, not 14:15.
        assert_eq!(
            next_change(&cal, utc(6, 21, 0, 1)),
            Some((utc(9, 13, 15, 0), Phase::PreOpen))
        );
    }

    #[test]
    fn local_times_in_a_dst_gap_and_overlap() {
        let tz = chrono_tz::America::New_York;
        let gap = date(2026, 3, 8).and_time(t(2, 30, 0));
        // Read with the offset before the gap (EST): 07:30 UTC.
        assert_eq!(
            to_utc(tz, gap),
            Some(Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).unwrap())
        );
        let repeated = date(2026, 11, 1).and_time(t(1, 30, 0));
        // The first 01:30 (EDT): 05:30 UTC.
        assert_eq!(
            to_utc(tz, repeated),
            Some(Utc.with_ymd_and_hms(2026, 11, 1, 5, 30, 0).unwrap())
        );
    }

    #[test]
    fn next_change_table() {
        let cal = nse();
        let cases = [
            (
                ist(2026, 1, 5, 10, 0, 0),
                Some((ist(2026, 1, 5, 15, 30, 1), Phase::Closed)),
            ),
            (
                ist(2026, 1, 5, 9, 5, 0),
                Some((ist(2026, 1, 5, 9, 15, 0), Phase::Open)),
            ),
            (
                ist(2026, 1, 5, 15, 30, 1),
                Some((ist(2026, 1, 6, 9, 0, 0), Phase::PreOpen)),
            ),
            // Friday evening → Monday's buffer.
            (
                ist(2026, 1, 9, 16, 0, 0),
                Some((ist(2026, 1, 12, 9, 0, 0), Phase::PreOpen)),
            ),
            // Monday before Holi (Tuesday) → Wednesday.
            (
                ist(2026, 3, 2, 16, 0, 0),
                Some((ist(2026, 3, 4, 9, 0, 0), Phase::PreOpen)),
            ),
            // Saturday before Muhurat → Sunday's special session buffer.
            (
                ist(2026, 11, 7, 12, 0, 0),
                Some((ist(2026, 11, 8, 17, 45, 0), Phase::PreOpen)),
            ),
            (
                ist(2026, 11, 8, 18, 30, 0),
                Some((ist(2026, 11, 8, 19, 0, 1), Phase::Closed)),
            ),
            // Muhurat over; Monday 11-09 trades; Tuesday 11-10 is a holiday.
            (
                ist(2026, 11, 9, 15, 31, 0),
                Some((ist(2026, 11, 11, 9, 0, 0), Phase::PreOpen)),
            ),
        ];
        for (now, want) in cases {
            assert_eq!(next_change(&cal, now), want, "from {now}");
        }
    }

    #[test]
    fn next_change_none_without_sessions() {
        let cal = CalendarData {
            sessions: vec![],
            specials: vec![],
            ..nse()
        };
        assert_eq!(next_change(&cal, ist(2026, 1, 5, 10, 0, 0)), None);
        assert_eq!(phase_at(&cal, ist(2026, 1, 5, 10, 0, 0)), Phase::Closed);
    }

    #[test]
    fn walking_next_change_agrees_with_phase_at() {
        for cal in [nse(), new_york()] {
            let mut now = Utc.with_ymd_and_hms(2026, 2, 25, 0, 0, 0).unwrap();
            let end = Utc.with_ymd_and_hms(2026, 3, 20, 0, 0, 0).unwrap();
            let mut changes = 0;
            while now < end {
                let current = phase_at(&cal, now);
                let (at, phase) = next_change(&cal, now).expect("a change within 14 days");
                assert!(at > now);
                assert_ne!(phase, current);
                assert_eq!(phase_at(&cal, at), phase);
                assert_eq!(phase_at(&cal, at - TimeDelta::seconds(1)), current);
                // No change hides between now and the reported boundary.
                let mut probe = now + TimeDelta::minutes(7);
                while probe < at {
                    assert_eq!(phase_at(&cal, probe), current, "probe {probe}");
                    probe += TimeDelta::minutes(7);
                }
                now = at;
                changes += 1;
            }
            // About 16 trading days × 3 changes (PreOpen, Open, Closed).
            assert!(changes >= 45, "{changes} changes");
        }
    }

    fn loaded<'a>(pairs: &[(&'a str, i32)]) -> BTreeSet<(&'a str, i32)> {
        pairs.iter().copied().collect()
    }

    const KOLKATA: Tz = chrono_tz::Asia::Kolkata;

    #[test]
    fn a_year_within_30_days_without_holidays_is_warned_about() {
        let nse_2026 = loaded(&[("NSE", 2026)]);
        let warnings =
            missing_holiday_years([("NSE", KOLKATA)], &nse_2026, ist(2026, 12, 10, 10, 0, 0));
        assert_eq!(
            warnings,
            vec![CalendarWarning {
                exchange: "NSE".into(),
                year: 2027,
                from: date(2027, 1, 1),
                message: "no holidays loaded for NSE in 2027 (the next 30 days reach \
                          2027-01-01); until they are imported, that year's holidays count as \
                          trading days"
                    .into(),
            }]
        );
        // Loading any holiday of 2027 clears it.
        let both = loaded(&[("NSE", 2026), ("NSE", 2027)]);
        assert_eq!(
            missing_holiday_years([("NSE", KOLKATA)], &both, ist(2026, 12, 10, 10, 0, 0)),
            vec![]
        );
        // Another exchange's holidays do not count.
        let bse = loaded(&[("NSE", 2026), ("BSE", 2027)]);
        let warnings = missing_holiday_years([("NSE", KOLKATA)], &bse, ist(2026, 12, 10, 10, 0, 0));
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            (warnings[0].exchange.as_str(), warnings[0].year),
            ("NSE", 2027)
        );
    }

    #[test]
    fn the_window_ends_30_days_ahead_on_the_local_date() {
        let nse_2026 = loaded(&[("NSE", 2026)]);
        let at = |now| missing_holiday_years([("NSE", KOLKATA)], &nse_2026, now);
        assert_eq!(at(ist(2026, 11, 1, 10, 0, 0)), vec![]);
        // 30 days after 2026-12-01 23:59:59 is 2026-12-31 23:59:59: still 2026.
        assert_eq!(at(ist(2026, 12, 1, 23, 59, 59)), vec![]);
        // A second later the window reaches 2027-01-01.
        let warnings = at(ist(2026, 12, 2, 0, 0, 0));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].year, 2027);
        assert_eq!(warnings[0].from, date(2027, 1, 1));
    }

    #[test]
    fn each_template_uses_its_own_timezone() {
        // 2026-12-01 20:00 UTC: already 2026-12-02 in Kolkata, still 2026-12-01 in New York.
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 20, 0, 0).unwrap();
        let both_2026 = loaded(&[("NSE", 2026), ("NYSE", 2026)]);
        let warnings = missing_holiday_years(
            [("NSE", KOLKATA), ("NYSE", chrono_tz::America::New_York)],
            &both_2026,
            now,
        );
        let years: Vec<(&str, i32)> = warnings
            .iter()
            .map(|w| (w.exchange.as_str(), w.year))
            .collect();
        assert_eq!(years, vec![("NSE", 2027)]);
        // Two templates of one exchange give one warning, from the earlier local date.
        let warnings = missing_holiday_years(
            [("NSE", chrono_tz::America::New_York), ("NSE", KOLKATA)],
            &BTreeSet::new(),
            now,
        );
        let found: Vec<(i32, NaiveDate)> = warnings.iter().map(|w| (w.year, w.from)).collect();
        assert_eq!(
            found,
            vec![(2026, date(2026, 12, 1)), (2027, date(2027, 1, 1))]
        );
    }

    #[test]
    fn the_current_year_without_holidays_is_warned_about_too() {
        let warnings = missing_holiday_years(
            [("MCX", KOLKATA)],
            &loaded(&[("NSE", 2026)]),
            ist(2026, 6, 1, 10, 0, 0),
        );
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].year, 2026);
        assert_eq!(warnings[0].from, date(2026, 6, 1));
        assert!(
            warnings[0]
                .message
                .starts_with("no holidays loaded for MCX in 2026 (the current year)"),
            "{}",
            warnings[0].message
        );
        assert_eq!(
            missing_holiday_years([], &BTreeSet::new(), ist(2026, 6, 1, 10, 0, 0)),
            vec![]
        );
    }

    #[test]
    fn session_kind_names() {
        assert_eq!("pre_open".parse::<SessionKind>(), Ok(SessionKind::PreOpen));
        assert_eq!("NORMAL".parse::<SessionKind>(), Ok(SessionKind::Normal));
        assert!("auction".parse::<SessionKind>().is_err());
        assert_eq!(
            serde_json::to_string(&Phase::PreOpen).unwrap(),
            "\"PreOpen\""
        );
    }
}
