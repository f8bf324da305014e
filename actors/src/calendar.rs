//! `CalendarActor` (docs/ARCHITECTURE.md §4.2): the market phase from the calendar tables.
//!
//! The actor loads every active trading-hours template with its active sessions, and the active
//! holidays and special sessions of the template's exchange. With several active templates the
//! phase is the most open of them (Open > PreOpen > Closed). It wakes exactly at the next phase
//! boundary, reloads from the database every minute (a safety re-check that also retries after a
//! database error) and on [`ReloadCalendar`], re-evaluates whenever a manual clock moves, and
//! broadcasts [`PhaseChanged`] to its subscribers.
//!
//! A failed load keeps the last good calendar and shows Degraded; so does a template whose stored
//! timezone is not a known IANA name (that template counts as closed).
//!
//! The status also warns when the next 30 days reach a year for which an active template's
//! exchange has no holiday loaded ([`missing_holiday_years`]). The warnings are computed from the
//! clock on every status request, so they appear and clear without waiting for a timer; changes
//! are also logged whenever the phase is evaluated. A warning leaves the actor Running: the actor
//! works, the data needs an operator (the service's health reports it as degraded).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;
use entity::prelude::*;
use entity::{
    market_holidays, special_trading_sessions, trading_hours_templates, trading_sessions,
};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder};
use serde::Serialize;

use crate::domain::calendar::{
    CalendarData, CalendarWarning, Phase, SEARCH_DAYS, Session, SessionKind, Special,
    missing_holiday_years, next_change, phase_at,
};
use crate::status::Lifecycle;
use crate::supervised::{RestartTracker, Supervision};
use clock::SharedClock;

/// How often the calendar is reloaded and re-evaluated even when nothing asked for it.
const RECHECK_EVERY: Duration = Duration::from_secs(60);

/// Upper bound on the per-template boundaries walked to find a change of the combined phase.
const MAX_COMBINED_STEPS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct CalendarSettings {
    /// How long before a normal or special session the phase is PreOpen.
    pub pre_open_buffer: Duration,
    /// Demo/testing: the market is always Open.
    pub always_open: bool,
    pub supervision: Supervision,
}

/// The phase changed (or, with `previous: None`, the current phase sent to a new subscriber).
#[derive(Debug, Clone, PartialEq, Serialize, Message)]
#[rtype(result = "()")]
pub struct PhaseChanged {
    pub phase: Phase,
    /// The phase before the change; None when this is the current phase for a new subscriber.
    pub previous: Option<Phase>,
    /// When the change was observed (for a new subscriber: when the current phase began).
    pub at: DateTime<Utc>,
    /// The next change and the phase it leads to, if one is due within the search horizon.
    pub next_change: Option<(DateTime<Utc>, Phase)>,
}

/// Register for [`PhaseChanged`]; the current phase is sent at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribePhase(pub Recipient<PhaseChanged>);

/// Reload the calendar from the database; answered once the new phase is in effect (and
/// broadcast). The error names what failed.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct ReloadCalendar;

#[derive(Message)]
#[rtype(result = "CalendarStatus")]
pub struct GetCalendarStatus;

/// An active template as the actor sees it.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct TemplateInfo {
    pub id: i32,
    pub name: String,
    pub exchange: String,
    pub timezone: String,
    /// Why the template is ignored (treated as closed), e.g. an unknown timezone.
    pub error: Option<String>,
}

/// A special session on today's date of one of the active templates.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct SpecialToday {
    pub name: String,
    pub exchange: String,
    pub date: NaiveDate,
    pub start_time: NaiveTime,
    pub end_time: NaiveTime,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct CalendarStatus {
    pub state: Lifecycle,
    pub restarts: u64,
    pub phase: Phase,
    /// When the actor observed the current phase begin.
    pub since: DateTime<Utc>,
    pub next_change_at: Option<DateTime<Utc>>,
    pub next_phase: Option<Phase>,
    pub seconds_to_next_change: Option<i64>,
    pub always_open: bool,
    pub templates: Vec<TemplateInfo>,
    /// Name of today's holiday of an active template's exchange, if any.
    pub holiday_today: Option<String>,
    pub special_today: Vec<SpecialToday>,
    pub loaded_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Years the next 30 days reach without holidays loaded for an active template's exchange
    /// (none while `always_open`, when the calendar is not consulted). They do not change
    /// `state`.
    pub warnings: Vec<CalendarWarning>,
}

/// One active template, ready to evaluate (`data` is None when it cannot be: closed).
#[derive(Debug, Clone)]
struct Template {
    info: TemplateInfo,
    data: Option<CalendarData>,
}

/// What one load from the database produced.
#[derive(Debug, Clone, Default)]
struct Loaded {
    templates: Vec<Template>,
    holidays: Vec<market_holidays::Model>,
    specials: Vec<special_trading_sessions::Model>,
}

/// Clock jumped (a manual clock was set or advanced).
#[derive(Message)]
#[rtype(result = "()")]
struct ClockMoved;

pub struct CalendarActor {
    db: DatabaseConnection,
    clock: SharedClock,
    settings: CalendarSettings,
    loaded: Loaded,
    loaded_at: Option<DateTime<Utc>>,
    load_error: Option<String>,
    /// Sequence number of the last load started, and of the last one applied successfully: a
    /// load that finishes after a newer one was applied is stale and ignored.
    load_started: u64,
    load_applied: u64,
    /// None until the first evaluation.
    phase: Option<Phase>,
    since: DateTime<Utc>,
    next: Option<(DateTime<Utc>, Phase)>,
    subscribers: Vec<Recipient<PhaseChanged>>,
    wake: Option<SpawnHandle>,
    restarts: RestartTracker,
    /// The warnings last logged, to log only their changes.
    logged_warnings: Vec<CalendarWarning>,
}

impl CalendarActor {
    pub fn new(db: DatabaseConnection, clock: SharedClock, settings: CalendarSettings) -> Self {
        let since = clock.now();
        Self {
            restarts: RestartTracker::new(settings.supervision),
            db,
            clock,
            settings,
            loaded: Loaded::default(),
            loaded_at: None,
            load_error: None,
            load_started: 0,
            load_applied: 0,
            phase: None,
            since,
            next: None,
            subscribers: Vec::new(),
            wake: None,
            logged_warnings: Vec::new(),
        }
    }

    /// Starts a load; the returned future applies it to the actor and re-evaluates the phase.
    fn reload(&mut self) -> impl ActorFuture<Self, Output = Result<(), String>> + use<> {
        self.load_started += 1;
        let seq = self.load_started;
        let db = self.db.clone();
        let buffer = self.settings.pre_open_buffer;
        async move { load(&db, buffer).await }
            .into_actor(self)
            .map(move |result, act, ctx| act.apply(seq, result, ctx))
    }

    fn apply(
        &mut self,
        seq: u64,
        result: Result<Loaded, DbErr>,
        ctx: &mut Context<Self>,
    ) -> Result<(), String> {
        if seq < self.load_applied {
            // A newer load (which saw everything this one would have) is already in effect.
            return Ok(());
        }
        let outcome = match result {
            Ok(loaded) => {
                for t in loaded.templates.iter().filter(|t| t.info.error.is_some()) {
                    tracing::warn!(
                        template = %t.info.name,
                        error = t.info.error.as_deref().unwrap_or(""),
                        "calendar template ignored (treated as closed)"
                    );
                }
                self.loaded = loaded;
                self.load_applied = seq;
                self.loaded_at = Some(self.clock.now());
                self.load_error = None;
                Ok(())
            }
            Err(e) => {
                let message = format!("loading the calendar from the database: {e}");
                tracing::error!(error = %e, "loading the calendar failed; keeping the last good calendar");
                self.load_error = Some(message.clone());
                Err(message)
            }
        };
        self.evaluate(ctx);
        outcome
    }

    /// Computes the phase now, broadcasts a change and arms the timer for the next boundary.
    fn evaluate(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        self.log_warnings(now);
        let (phase, next) = if self.settings.always_open {
            (Phase::Open, None)
        } else {
            let cals: Vec<&CalendarData> = self
                .loaded
                .templates
                .iter()
                .filter_map(|t| t.data.as_ref())
                .collect();
            (combined_phase(&cals, now), combined_next_change(&cals, now))
        };
        self.next = next;
        let previous = self.phase;
        if previous != Some(phase) {
            self.phase = Some(phase);
            self.since = now;
            tracing::info!(
                %phase,
                previous = previous.map(|p| p.to_string()).unwrap_or_default(),
                next_change = ?next,
                "market phase"
            );
            let msg = PhaseChanged {
                phase,
                previous,
                at: now,
                next_change: next,
            };
            self.subscribers.retain(|s| s.connected());
            for s in &self.subscribers {
                s.do_send(msg.clone());
            }
        }
        if let Some(handle) = self.wake.take() {
            ctx.cancel_future(handle);
        }
        if let Some((at, _)) = next {
            let delay = (at - now).to_std().unwrap_or(Duration::ZERO);
            self.wake = Some(ctx.run_later(delay, |act, ctx| {
                act.wake = None;
                act.evaluate(ctx);
            }));
        }
    }

    /// The holiday warnings at `now`, on the calendar in force.
    fn warnings(&self, now: DateTime<Utc>) -> Vec<CalendarWarning> {
        if self.settings.always_open {
            return Vec::new();
        }
        let loaded: BTreeSet<(&str, i32)> = self
            .loaded
            .holidays
            .iter()
            .map(|h| (h.exchange.as_str(), h.date.year()))
            .collect();
        let templates = self.loaded.templates.iter().filter_map(|t| {
            let data = t.data.as_ref()?;
            Some((t.info.exchange.as_str(), data.timezone))
        });
        missing_holiday_years(templates, &loaded, now)
    }

    /// Logs the warnings (by exchange and year) that appeared or cleared since the last call.
    fn log_warnings(&mut self, now: DateTime<Utc>) {
        let key = |w: &CalendarWarning| (w.exchange.clone(), w.year);
        let warnings = self.warnings(now);
        let before: BTreeSet<_> = self.logged_warnings.iter().map(key).collect();
        let after: BTreeSet<_> = warnings.iter().map(key).collect();
        for w in warnings.iter().filter(|w| !before.contains(&key(w))) {
            tracing::warn!(exchange = %w.exchange, year = w.year, "{}", w.message);
        }
        for w in self
            .logged_warnings
            .iter()
            .filter(|w| !after.contains(&key(w)))
        {
            tracing::info!(exchange = %w.exchange, year = w.year, "calendar warning cleared");
        }
        self.logged_warnings = warnings;
    }

    fn watch_clock(&mut self, ctx: &mut Context<Self>) {
        if let Some(rx) = self.clock.changes() {
            let moves = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.changed().await.ok().map(|()| (ClockMoved, rx))
            });
            ctx.add_stream(moves);
        }
    }

    fn status(&self) -> CalendarStatus {
        let now = self.clock.now();
        let problems: Vec<&str> = self
            .load_error
            .iter()
            .map(String::as_str)
            .chain(
                self.loaded
                    .templates
                    .iter()
                    .filter_map(|t| t.info.error.as_deref()),
            )
            .collect();
        let state = if self.restarts.faulted() {
            Lifecycle::Faulted
        } else if self.phase.is_none() {
            Lifecycle::Starting
        } else if !problems.is_empty() {
            Lifecycle::Degraded
        } else {
            Lifecycle::Running
        };
        let (holiday_today, special_today) = self.today(now);
        CalendarStatus {
            state,
            restarts: self.restarts.restarts(),
            phase: self.phase.unwrap_or(Phase::Closed),
            since: self.since,
            next_change_at: self.next.map(|(at, _)| at),
            next_phase: self.next.map(|(_, p)| p),
            seconds_to_next_change: self.next.map(|(at, _)| (at - now).num_seconds().max(0)),
            always_open: self.settings.always_open,
            templates: self
                .loaded
                .templates
                .iter()
                .map(|t| t.info.clone())
                .collect(),
            holiday_today,
            special_today,
            loaded_at: self.loaded_at,
            last_error: (!problems.is_empty()).then(|| problems.join("; ")),
            warnings: self.warnings(now),
        }
    }

    /// Today's holiday and special sessions, on each active template's local date.
    fn today(&self, now: DateTime<Utc>) -> (Option<String>, Vec<SpecialToday>) {
        let mut holiday = None;
        let mut specials = BTreeMap::new();
        for t in &self.loaded.templates {
            let Some(data) = &t.data else { continue };
            let date = now.with_timezone(&data.timezone).date_naive();
            let exchange = t.info.exchange.as_str();
            if holiday.is_none() {
                holiday = self
                    .loaded
                    .holidays
                    .iter()
                    .find(|h| h.date == date && h.exchange == exchange)
                    .map(|h| h.name.clone());
            }
            for s in self
                .loaded
                .specials
                .iter()
                .filter(|s| s.date == date && s.exchange == exchange)
            {
                specials.insert(
                    s.id,
                    SpecialToday {
                        name: s.name.clone(),
                        exchange: s.exchange.clone(),
                        date: s.date,
                        start_time: s.start_time,
                        end_time: s.end_time,
                    },
                );
            }
        }
        (holiday, specials.into_values().collect())
    }
}

/// Reads the active calendar: templates with their sessions, and the holidays and special
/// sessions of their exchanges.
async fn load(db: &DatabaseConnection, pre_open_buffer: Duration) -> Result<Loaded, DbErr> {
    let templates = TradingHoursTemplates::find()
        .filter(trading_hours_templates::Column::IsActive.eq(true))
        .order_by_asc(trading_hours_templates::Column::Id)
        .all(db)
        .await?;
    let exchanges: Vec<String> = templates.iter().map(|t| t.exchange.clone()).collect();
    let sessions = TradingSessions::find()
        .filter(trading_sessions::Column::IsActive.eq(true))
        .filter(trading_sessions::Column::TemplateId.is_in(templates.iter().map(|t| t.id)))
        .all(db)
        .await?;
    let holidays = MarketHolidays::find()
        .filter(market_holidays::Column::IsActive.eq(true))
        .filter(market_holidays::Column::Exchange.is_in(exchanges.clone()))
        .order_by_asc(market_holidays::Column::Date)
        .all(db)
        .await?;
    let specials = SpecialTradingSessions::find()
        .filter(special_trading_sessions::Column::IsActive.eq(true))
        .filter(special_trading_sessions::Column::Exchange.is_in(exchanges))
        .order_by_asc(special_trading_sessions::Column::Date)
        .order_by_asc(special_trading_sessions::Column::StartTime)
        .all(db)
        .await?;
    let templates = templates
        .into_iter()
        .map(|t| build_template(t, &sessions, &holidays, &specials, pre_open_buffer))
        .collect();
    Ok(Loaded {
        templates,
        holidays,
        specials,
    })
}

fn build_template(
    t: trading_hours_templates::Model,
    sessions: &[trading_sessions::Model],
    holidays: &[market_holidays::Model],
    specials: &[special_trading_sessions::Model],
    pre_open_buffer: Duration,
) -> Template {
    let mut info = TemplateInfo {
        id: t.id,
        name: t.name,
        exchange: t.exchange,
        timezone: t.timezone,
        error: None,
    };
    let timezone = match info.timezone.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            info.error = Some(format!(
                "template {:?}: unknown timezone {:?}; treated as closed",
                info.name, info.timezone
            ));
            None
        }
    };
    let data = timezone.map(|timezone| {
        let mut weekly = Vec::new();
        for s in sessions.iter().filter(|s| s.template_id == info.id) {
            match u8::try_from(s.weekday).ok().filter(|w| *w <= 6) {
                Some(weekday) => weekly.push(Session {
                    weekday,
                    start: s.start_time,
                    end: s.end_time,
                    kind: match s.session_type {
                        SessionType::Normal => SessionKind::Normal,
                        SessionType::PreOpen => SessionKind::PreOpen,
                    },
                }),
                None => {
                    info.error = Some(format!(
                        "template {:?}: session {} has weekday {} outside 0-6; session ignored",
                        info.name, s.id, s.weekday
                    ));
                }
            }
        }
        CalendarData {
            timezone,
            sessions: weekly,
            holidays: holidays
                .iter()
                .filter(|h| h.exchange == info.exchange)
                .map(|h| h.date)
                .collect(),
            specials: specials
                .iter()
                .filter(|s| s.exchange == info.exchange)
                .map(|s| Special {
                    date: s.date,
                    start: s.start_time,
                    end: s.end_time,
                })
                .collect(),
            pre_open_buffer,
        }
    });
    Template { info, data }
}

fn openness(phase: Phase) -> u8 {
    match phase {
        Phase::Closed => 0,
        Phase::PreOpen => 1,
        Phase::Open => 2,
    }
}

/// The most open phase of several calendars at `now`; Closed when there are none.
pub fn combined_phase(cals: &[&CalendarData], now: DateTime<Utc>) -> Phase {
    cals.iter()
        .map(|c| phase_at(c, now))
        .max_by_key(|p| openness(*p))
        .unwrap_or(Phase::Closed)
}

/// The first instant after `now` at which [`combined_phase`] differs from its value at `now`,
/// with the new phase; None when none is due within [`SEARCH_DAYS`] days.
pub fn combined_next_change(
    cals: &[&CalendarData],
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, Phase)> {
    let current = combined_phase(cals, now);
    let horizon = now + TimeDelta::days(SEARCH_DAYS);
    let mut t = now;
    for _ in 0..MAX_COMBINED_STEPS {
        // The combined phase is constant until the earliest change of any single calendar.
        let at = cals
            .iter()
            .filter_map(|c| next_change(c, t))
            .map(|(at, _)| at)
            .min()?;
        if at > horizon {
            return None;
        }
        let phase = combined_phase(cals, at);
        if phase != current {
            return Some((at, phase));
        }
        t = at;
    }
    None
}

impl Actor for CalendarActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.watch_clock(ctx);
        ctx.run_interval(RECHECK_EVERY, |act, ctx| {
            let reload = act.reload().map(|_, _, _| ());
            ctx.spawn(reload);
        });
        // No message is handled before the first load has been applied.
        let first = self.reload().map(|_, _, _| ());
        ctx.wait(first);
    }
}

impl actix::Supervised for CalendarActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The timer died with the old context.
        self.wake = None;
        self.restarts.on_restart("CalendarActor");
    }
}

impl StreamHandler<ClockMoved> for CalendarActor {
    fn handle(&mut self, _: ClockMoved, ctx: &mut Context<Self>) {
        self.evaluate(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The clock was dropped; keep running on timers.
    }
}

impl Handler<SubscribePhase> for CalendarActor {
    type Result = ();

    fn handle(&mut self, msg: SubscribePhase, _ctx: &mut Context<Self>) {
        if let Some(phase) = self.phase {
            msg.0.do_send(PhaseChanged {
                phase,
                previous: None,
                at: self.since,
                next_change: self.next,
            });
        }
        self.subscribers.push(msg.0);
    }
}

impl Handler<ReloadCalendar> for CalendarActor {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, _: ReloadCalendar, _ctx: &mut Context<Self>) -> Self::Result {
        Box::pin(self.reload())
    }
}

impl Handler<GetCalendarStatus> for CalendarActor {
    type Result = MessageResult<GetCalendarStatus>;

    fn handle(&mut self, _: GetCalendarStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn ist(d: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Kolkata
            .with_ymd_and_hms(2026, 11, d, h, m, s)
            .single()
            .unwrap()
            .with_timezone(&Utc)
    }

    fn weekdays(start: NaiveTime, end: NaiveTime) -> Vec<Session> {
        (0..5)
            .map(|weekday| Session {
                weekday,
                start,
                end,
                kind: SessionKind::Normal,
            })
            .collect()
    }

    /// Mon–Fri 09:15–15:30 IST with a 15 min buffer; 2026-11-24 is a holiday.
    fn equities() -> CalendarData {
        CalendarData {
            timezone: chrono_tz::Asia::Kolkata,
            sessions: weekdays(t(9, 15), t(15, 30)),
            holidays: vec![NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()],
            specials: vec![],
            pre_open_buffer: Duration::from_secs(15 * 60),
        }
    }

    /// Mon–Fri 09:00–23:30 IST (commodities), no holidays.
    fn commodities() -> CalendarData {
        CalendarData {
            sessions: weekdays(t(9, 0), t(23, 30)),
            holidays: vec![],
            ..equities()
        }
    }

    #[test]
    fn no_calendar_is_closed_for_good() {
        let now = ist(17, 10, 0, 0);
        assert_eq!(combined_phase(&[], now), Phase::Closed);
        assert_eq!(combined_next_change(&[], now), None);
    }

    #[test]
    fn the_most_open_calendar_wins() {
        let (eq, mcx) = (equities(), commodities());
        let both = [&eq, &mcx];
        // Tuesday 2026-11-17.
        let cases = [
            (ist(17, 8, 40, 0), Phase::Closed),
            // Commodities' buffer from 08:45, equities' from 09:00.
            (ist(17, 8, 50, 0), Phase::PreOpen),
            // Commodities open at 09:00 while equities are still in their buffer.
            (ist(17, 9, 5, 0), Phase::Open),
            (ist(17, 16, 0, 0), Phase::Open),
            (ist(17, 23, 30, 1), Phase::Closed),
            // Equity holiday: commodities still trade.
            (ist(24, 12, 0, 0), Phase::Open),
        ];
        for (now, want) in cases {
            assert_eq!(combined_phase(&both, now), want, "{now}");
        }
    }

    #[test]
    fn next_change_skips_boundaries_that_do_not_change_the_combined_phase() {
        let (eq, mcx) = (equities(), commodities());
        let both = [&eq, &mcx];
        // At 10:00 both are open; equities close at 15:30:01 but commodities keep it Open.
        assert_eq!(
            combined_next_change(&both, ist(17, 10, 0, 0)),
            Some((ist(17, 23, 30, 1), Phase::Closed))
        );
        // At 08:50 (commodities' buffer) the next change is commodities opening at 09:00; the
        // equity buffer starting at 09:00 changes nothing on its own.
        assert_eq!(
            combined_next_change(&both, ist(17, 8, 50, 0)),
            Some((ist(17, 9, 0, 0), Phase::Open))
        );
        // A single calendar behaves exactly like the domain rule.
        assert_eq!(
            combined_next_change(&[&eq], ist(17, 10, 0, 0)),
            next_change(&eq, ist(17, 10, 0, 0))
        );
    }

    #[test]
    fn walking_combined_changes_agrees_with_combined_phase() {
        let (eq, mcx) = (equities(), commodities());
        let both = [&eq, &mcx];
        let mut now = ist(16, 0, 0, 0);
        let end = ist(28, 0, 0, 0);
        let mut changes = 0;
        while now < end {
            let current = combined_phase(&both, now);
            let (at, phase) = combined_next_change(&both, now).unwrap();
            assert_ne!(phase, current);
            assert_eq!(combined_phase(&both, at), phase);
            let mut probe = now + TimeDelta::minutes(7);
            while probe < at {
                assert_eq!(combined_phase(&both, probe), current, "probe {probe}");
                probe += TimeDelta::minutes(7);
            }
            if at < end {
                changes += 1;
            }
            now = at;
        }
        // Ten trading days × (PreOpen, Open, Closed), the equity holiday included.
        assert_eq!(changes, 30);
    }
}
