//! Migrations and entities against real databases: SQLite (a temporary file) always, and
//! PostgreSQL (a fresh database created for the test) when `DATABASE_URL` is set.

use std::future::Future;
use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use entity::prelude::*;
use entity::{
    exit_requests, market_holidays, risk_events, special_trading_sessions, strategies,
    strategy_executions, trading_accounts, trading_hours_templates, trading_sessions,
    websocket_sessions,
};
use migration::sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, Database, DatabaseConnection, DbErr, EntityTrait, ModelTrait,
    PaginatorTrait, QueryFilter, QueryOrder,
    sea_query::{Alias, Expr, ExprTrait, Query},
};
use migration::{Migrator, MigratorTrait, SchemaManager};

const TABLES: [&str; 10] = [
    "trading_accounts",
    "strategies",
    "strategy_executions",
    "exit_requests",
    "risk_events",
    "trading_hours_templates",
    "trading_sessions",
    "market_holidays",
    "special_trading_sessions",
    "websocket_sessions",
];

/// The NSE holidays of 2026, as listed in the reference document.
const NSE_HOLIDAYS_2026: [(&str, &str); 15] = [
    ("2026-01-26", "Republic Day"),
    ("2026-03-03", "Holi"),
    ("2026-03-26", "Shri Ram Navami"),
    ("2026-03-31", "Shri Mahavir Jayanti"),
    ("2026-04-03", "Good Friday"),
    ("2026-04-14", "Dr. Baba Saheb Ambedkar Jayanti"),
    ("2026-05-01", "Maharashtra Day"),
    ("2026-05-28", "Bakri Eid"),
    ("2026-06-26", "Moharram"),
    ("2026-09-14", "Ganesh Chaturthi"),
    ("2026-10-02", "Mahatma Gandhi Jayanti"),
    ("2026-10-20", "Dussehra"),
    ("2026-11-10", "Diwali - Balipratipada"),
    ("2026-11-24", "Prakash Gurpurb Sri Guru Nanak Dev"),
    ("2026-12-25", "Christmas"),
];

fn hm(hour: u32, minute: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(hour, minute, 0).unwrap()
}

fn ymd(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// A whole-second UTC instant, so it survives every backend's precision unchanged.
fn at(s: &str) -> DateTime<Utc> {
    Utc.from_utc_datetime(&chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap())
}

// ---------------------------------------------------------------------------------------
// Databases
// ---------------------------------------------------------------------------------------

/// A SQLite database in a temporary file, removed (with its journal files) on drop.
struct SqliteFile(PathBuf);

impl SqliteFile {
    fn new() -> Self {
        let name = format!("supervisor-migration-{}.db", uuid::Uuid::new_v4().simple());
        SqliteFile(std::env::temp_dir().join(name))
    }

    fn url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.0.display())
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn with_sqlite<F, Fut>(check: F)
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: Future<Output = Result<(), DbErr>>,
{
    let file = SqliteFile::new();
    let db = Database::connect(file.url()).await.unwrap();
    check(db).await.unwrap();
}

/// `url` with its database name replaced by `name` (query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    format!("{root}/{name}{query}")
}

/// Runs `check` against a fresh PostgreSQL database that is dropped afterwards; skipped
/// (with a note) only when `DATABASE_URL` is unset.
async fn with_postgres<F, Fut>(check: F)
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: Future<Output = Result<(), DbErr>>,
{
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("DATABASE_URL is not set: skipping the PostgreSQL test");
        return;
    };
    let name = format!("supervisor_migration_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(&url).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap();

    let result = match Database::connect(with_database(&url, &name)).await {
        Ok(db) => {
            let result = check(db.clone()).await;
            db.close().await.unwrap();
            result
        }
        Err(e) => Err(e),
    };

    admin
        .execute_unprepared(&format!("DROP DATABASE \"{name}\""))
        .await
        .unwrap();
    admin.close().await.unwrap();
    result.unwrap();
}

#[test]
fn database_url_is_rewritten_to_the_test_database() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}

// ---------------------------------------------------------------------------------------
// Migrations: up, down to zero, up again
// ---------------------------------------------------------------------------------------

async fn assert_tables(db: &DatabaseConnection, present: bool) -> Result<(), DbErr> {
    let manager = SchemaManager::new(db);
    for table in TABLES {
        assert_eq!(
            manager.has_table(table).await?,
            present,
            "table {table} present should be {present}"
        );
    }
    Ok(())
}

/// The seeded calendar is exactly the reference one.
async fn assert_seed(db: &DatabaseConnection) -> Result<(), DbErr> {
    let templates = TradingHoursTemplates::find().all(db).await?;
    assert_eq!(templates.len(), 1);
    let template = &templates[0];
    assert_eq!(template.name, "NSE Default");
    assert_eq!(template.exchange, "NSE");
    assert_eq!(template.timezone, "Asia/Kolkata");
    assert!(template.is_active);

    let sessions = template
        .find_related(TradingSessions)
        .order_by_asc(trading_sessions::Column::Weekday)
        .order_by_asc(trading_sessions::Column::StartTime)
        .all(db)
        .await?;
    assert_eq!(TradingSessions::find().count(db).await?, 10);
    let got: Vec<_> = sessions
        .iter()
        .map(|s| {
            (
                s.weekday,
                s.session_type,
                s.start_time,
                s.end_time,
                s.is_active,
            )
        })
        .collect();
    let want: Vec<_> = (0..5)
        .flat_map(|weekday| {
            [
                (weekday, SessionType::PreOpen, hm(9, 0), hm(9, 15), true),
                (weekday, SessionType::Normal, hm(9, 15), hm(15, 30), true),
            ]
        })
        .collect();
    assert_eq!(got, want);

    let holidays = MarketHolidays::find()
        .order_by_asc(market_holidays::Column::Date)
        .all(db)
        .await?;
    let got: Vec<_> = holidays
        .iter()
        .map(|h| (h.date, h.name.as_str(), h.exchange.as_str(), h.is_active))
        .collect();
    let want: Vec<_> = NSE_HOLIDAYS_2026
        .iter()
        .map(|&(date, name)| (ymd(date), name, "NSE", true))
        .collect();
    assert_eq!(got, want);
    Ok(())
}

async fn up_down_up(db: DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(&db, None).await?;
    assert_tables(&db, true).await?;
    assert_seed(&db).await?;
    assert_eq!(Migrator::get_pending_migrations(&db).await?.len(), 0);

    // Applying again is a no-op: the seed is not duplicated.
    Migrator::up(&db, None).await?;
    assert_seed(&db).await?;

    Migrator::down(&db, None).await?;
    assert_tables(&db, false).await?;
    assert_eq!(Migrator::get_applied_migrations(&db).await?.len(), 0);

    Migrator::up(&db, None).await?;
    assert_tables(&db, true).await?;
    assert_seed(&db).await
}

#[tokio::test]
async fn sqlite_migrations_up_down_up() {
    with_sqlite(up_down_up).await;
}

#[tokio::test]
async fn postgres_migrations_up_down_up() {
    with_postgres(up_down_up).await;
}

/// The seed leaves rows that already exist alone instead of failing or duplicating them.
async fn seed_keeps_existing_rows(db: DatabaseConnection) -> Result<(), DbErr> {
    // Everything but the seed.
    Migrator::up(&db, Some(4)).await?;
    let template = trading_hours_templates::ActiveModel {
        name: Set("NSE Default".into()),
        exchange: Set("NSE".into()),
        timezone: Set("Asia/Kolkata".into()),
        is_active: Set(false),
        ..Default::default()
    }
    .insert(&db)
    .await?;
    market_holidays::ActiveModel {
        date: Set(ymd("2026-01-26")),
        name: Set("Republic Day (edited)".into()),
        exchange: Set("NSE".into()),
        is_active: Set(true),
        ..Default::default()
    }
    .insert(&db)
    .await?;

    Migrator::up(&db, None).await?;
    let templates = TradingHoursTemplates::find().all(&db).await?;
    assert_eq!(templates, vec![template]);
    assert_eq!(TradingSessions::find().count(&db).await?, 0);
    assert_eq!(MarketHolidays::find().count(&db).await?, 15);
    let republic_day = MarketHolidays::find()
        .filter(market_holidays::Column::Date.eq(ymd("2026-01-26")))
        .one(&db)
        .await?
        .unwrap();
    assert_eq!(republic_day.name, "Republic Day (edited)");

    // Rolling back to before the seed removes the seeded dates and the template.
    let after_seed = u32::try_from(Migrator::migrations().len() - 4).unwrap_or(1);
    Migrator::down(&db, Some(after_seed)).await?;
    assert_eq!(TradingHoursTemplates::find().count(&db).await?, 0);
    assert_eq!(MarketHolidays::find().count(&db).await?, 0);
    Ok(())
}

#[tokio::test]
async fn sqlite_seed_keeps_existing_rows() {
    with_sqlite(seed_keeps_existing_rows).await;
}

#[tokio::test]
async fn postgres_seed_keeps_existing_rows() {
    with_postgres(seed_keeps_existing_rows).await;
}

// ---------------------------------------------------------------------------------------
// Entities: one row in every table through sea-orm
// ---------------------------------------------------------------------------------------

/// The string actually stored in `table.column` of the row with `id`.
async fn stored_string(
    db: &DatabaseConnection,
    table: &str,
    column: &str,
    id: i32,
) -> Result<String, DbErr> {
    let row = db
        .query_one(
            Query::select()
                .column(Alias::new(column))
                .from(Alias::new(table))
                .and_where(Expr::col(Alias::new("id")).eq(id)),
        )
        .await?
        .unwrap();
    row.try_get_by_index(0)
}

async fn entities_round_trip(db: DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(&db, None).await?;
    let db = &db;

    // trading_accounts
    let account = trading_accounts::ActiveModel {
        name: Set("primary".into()),
        broker: Set("angelone".into()),
        rest_url: Set("http://127.0.0.1:5000".into()),
        ws_url: Set("ws://127.0.0.1:8765".into()),
        api_key_ciphertext: Set("bm9uY2U=Y2lwaGVy".into()),
        api_key_hint: Set("abcd…".into()),
        is_primary: Set(true),
        is_active: Set(true),
        connection_status: Set(ConnectionStatus::Connected),
        last_ping_at: Set(Some(at("2026-01-05 03:45:00"))),
        last_error: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(
        TradingAccounts::find_by_id(account.id).one(db).await?,
        Some(account.clone())
    );
    assert_eq!(account.connection_status, ConnectionStatus::Connected);
    assert_eq!(
        stored_string(db, "trading_accounts", "connection_status", account.id).await?,
        "connected"
    );
    assert!(account.created_at <= account.updated_at);

    // At most one primary account; any number of others.
    let second = |name: &str, primary: bool| trading_accounts::ActiveModel {
        name: Set(name.into()),
        broker: Set("zerodha".into()),
        rest_url: Set("http://10.0.0.2:5000".into()),
        ws_url: Set("ws://10.0.0.2:8765".into()),
        api_key_ciphertext: Set("eA==".into()),
        api_key_hint: Set("wxyz…".into()),
        is_primary: Set(primary),
        is_active: Set(true),
        connection_status: Set(ConnectionStatus::Unknown),
        ..Default::default()
    };
    assert!(second("second-primary", true).insert(db).await.is_err());
    let backup = second("backup", false).insert(db).await?;
    second("another", false).insert(db).await?;
    assert!(!backup.is_primary);
    // Names are unique.
    assert!(second("backup", false).insert(db).await.is_err());

    // strategies: columns left unset take the schema's defaults.
    let strategy = strategies::ActiveModel {
        name: Set("nifty-straddle".into()),
        description: Set(Some("short straddle".into())),
        is_active: Set(true),
        max_loss: Set(Some(5000.0)),
        max_profit: Set(None),
        trailing_sl_type: Set(Some(TrailingSlType::Percentage)),
        trailing_sl_value: Set(Some(12.5)),
        trailing_activation: Set(Some(1000.0)),
        exit_confirm_ms: Set(Some(1500)),
        risk_state: Set(RiskState::Monitoring),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(
        Strategies::find_by_id(strategy.id).one(db).await?,
        Some(strategy.clone())
    );
    assert_eq!(strategy.run_id, 0);
    assert_eq!(strategy.peak_pnl, 0.0);
    assert_eq!(strategy.stop_level, None);
    assert!(!strategy.max_loss_latched && !strategy.max_profit_latched);
    assert!(!strategy.trailing_latched);
    assert_eq!(
        stored_string(db, "strategies", "trailing_sl_type", strategy.id).await?,
        "percentage"
    );

    // Explicit timestamps are kept; an update refreshes updated_at only.
    let past = at("2026-01-01 00:00:00");
    let mut stamped = strategies::ActiveModel::from(strategy.clone());
    stamped.created_at = Set(past);
    stamped.updated_at = Set(past);
    let stamped = stamped.update(db).await?;
    assert_eq!((stamped.created_at, stamped.updated_at), (past, past));
    let mut running = strategies::ActiveModel::from(stamped);
    running.run_id = Set(1);
    running.run_started_at = Set(Some(at("2026-01-05 03:50:00")));
    running.risk_state = Set(RiskState::ExitFailed);
    running.peak_pnl = Set(2500.5);
    running.stop_level = Set(Some(2200.25));
    running.trailing_latched = Set(true);
    let running = running.update(db).await?;
    assert_eq!(running.created_at, past);
    assert!(running.updated_at > past);
    assert_eq!(
        Strategies::find_by_id(strategy.id).one(db).await?,
        Some(running.clone())
    );
    assert_eq!(
        stored_string(db, "strategies", "risk_state", strategy.id).await?,
        "exit_failed"
    );

    // strategy_executions
    let execution = strategy_executions::ActiveModel {
        strategy_id: Set(strategy.id),
        account_id: Set(account.id),
        run_id: Set(1),
        symbol: Set("NIFTY28APR2625000CE".into()),
        exchange: Set("NFO".into()),
        product: Set(Product::Nrml),
        action: Set(TradeAction::Sell),
        quantity: Set(3_900_000_000),
        entry_price: Set(182.35),
        status: Set(ExecutionStatus::ExitPending),
        entry_order_id: Set(Some("250105000000001".into())),
        entered_at: Set(at("2026-01-05 03:50:00")),
        freeze_qty: Set(Some(1800)),
        exit_pending_since: Set(Some(at("2026-01-05 05:00:00"))),
        exit_reason: Set(Some(ExitReason::TrailingStop)),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(
        StrategyExecutions::find_by_id(execution.id).one(db).await?,
        Some(execution.clone())
    );
    assert_eq!(execution.exit_attempts, 0);
    assert_eq!(execution.quantity, 3_900_000_000);
    for (column, value) in [
        ("product", "NRML"),
        ("action", "SELL"),
        ("status", "exit_pending"),
        ("exit_reason", "trailing_stop"),
    ] {
        assert_eq!(
            stored_string(db, "strategy_executions", column, execution.id).await?,
            value
        );
    }
    let found = StrategyExecutions::find()
        .filter(strategy_executions::Column::Status.eq(ExecutionStatus::ExitPending))
        .filter(strategy_executions::Column::AccountId.eq(account.id))
        .all(db)
        .await?;
    assert_eq!(found, vec![execution.clone()]);
    assert_eq!(
        execution
            .find_related(Strategies)
            .one(db)
            .await?
            .map(|s| s.id),
        Some(strategy.id)
    );
    assert_eq!(
        execution
            .find_related(TradingAccounts)
            .one(db)
            .await?
            .map(|a| a.id),
        Some(account.id)
    );
    // An execution must point at an existing strategy and account.
    let mut orphan = strategy_executions::ActiveModel::from(execution.clone());
    orphan.id = NotSet;
    orphan.strategy_id = Set(strategy.id + 1000);
    assert!(orphan.clone().insert(db).await.is_err());
    orphan.strategy_id = Set(strategy.id);
    orphan.account_id = Set(account.id + 1000);
    assert!(orphan.insert(db).await.is_err());

    // exit_requests
    let request = exit_requests::ActiveModel {
        execution_id: Set(execution.id),
        attempt: Set(1),
        client_ref: Set("7f0c9a4e-3d1b-4c55-9f57-2f1b8c7d9e10".into()),
        quantity: Set(1800),
        broker_order_id: Set(None),
        outcome: Set(ExitOutcome::Unknown),
        error: Set(Some("timed out after 5 s".into())),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(
        ExitRequests::find_by_id(request.id).one(db).await?,
        Some(request.clone())
    );
    assert_eq!(
        stored_string(db, "exit_requests", "outcome", request.id).await?,
        "unknown"
    );
    let mut retry = exit_requests::ActiveModel::from(request.clone());
    retry.id = NotSet;
    retry.attempt = Set(2);
    assert!(
        retry.clone().insert(db).await.is_err(),
        "client_ref is unique"
    );
    retry.client_ref = Set("0d5e2b8a-9c61-4f0e-8a3b-6e4f1c2d7b90".into());
    retry.insert(db).await?;
    assert_eq!(execution.find_related(ExitRequests).count(db).await?, 2);

    // risk_events
    let event = risk_events::ActiveModel {
        strategy_id: Set(strategy.id),
        run_id: Set(1),
        event_type: Set(RiskEventType::TrailingStop),
        threshold: Set(Some(300.0)),
        pnl: Set(2199.75),
        peak: Set(Some(2500.5)),
        stop: Set(Some(2200.25)),
        action: Set("exit all legs of run 1".into()),
        message: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(
        RiskEvents::find_by_id(event.id).one(db).await?,
        Some(event.clone())
    );
    assert_eq!(
        stored_string(db, "risk_events", "event_type", event.id).await?,
        "trailing_stop"
    );
    assert_eq!(
        strategy.find_related(RiskEvents).all(db).await?,
        vec![event.clone()]
    );

    // Deleting a strategy or an account that still has executions is refused.
    assert!(
        Strategies::delete_by_id(strategy.id)
            .exec(db)
            .await
            .is_err()
    );
    assert!(
        TradingAccounts::delete_by_id(account.id)
            .exec(db)
            .await
            .is_err()
    );
    // Deleting an execution deletes its exit requests; then the strategy can go, and its
    // risk events with it.
    StrategyExecutions::delete_by_id(execution.id)
        .exec(db)
        .await?;
    assert_eq!(ExitRequests::find().count(db).await?, 0);
    Strategies::delete_by_id(strategy.id).exec(db).await?;
    assert_eq!(RiskEvents::find().count(db).await?, 0);
    TradingAccounts::delete_by_id(account.id).exec(db).await?;

    // trading_hours_templates and trading_sessions (NaiveTime round trip)
    let template = trading_hours_templates::ActiveModel {
        name: Set("MCX Evening".into()),
        exchange: Set("MCX".into()),
        timezone: Set("Asia/Kolkata".into()),
        is_active: Set(true),
        description: Set(Some("commodities".into())),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(
        TradingHoursTemplates::find_by_id(template.id)
            .one(db)
            .await?,
        Some(template.clone())
    );
    let session = trading_sessions::ActiveModel {
        template_id: Set(template.id),
        weekday: Set(6),
        start_time: Set(NaiveTime::from_hms_opt(9, 0, 30).unwrap()),
        end_time: Set(hm(23, 55)),
        session_type: Set(SessionType::Normal),
        is_active: Set(true),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let loaded = TradingSessions::find_by_id(session.id)
        .one(db)
        .await?
        .unwrap();
    assert_eq!(loaded, session);
    assert_eq!(
        loaded.start_time,
        NaiveTime::from_hms_opt(9, 0, 30).unwrap()
    );
    assert_eq!(loaded.end_time, hm(23, 55));
    assert_eq!(
        stored_string(db, "trading_sessions", "session_type", session.id).await?,
        "normal"
    );
    // Weekdays are 0..=6.
    let mut other_day = trading_sessions::ActiveModel::from(session.clone());
    other_day.id = NotSet;
    other_day.weekday = Set(7);
    assert!(other_day.clone().insert(db).await.is_err());
    other_day.weekday = Set(0);
    other_day.insert(db).await?;
    assert_eq!(template.find_related(TradingSessions).count(db).await?, 2);
    // Deleting a template deletes its sessions.
    TradingHoursTemplates::delete_by_id(template.id)
        .exec(db)
        .await?;
    assert_eq!(
        TradingSessions::find()
            .filter(trading_sessions::Column::TemplateId.eq(template.id))
            .count(db)
            .await?,
        0
    );

    // market_holidays (NaiveDate round trip, unique per date and exchange)
    let holiday = market_holidays::ActiveModel {
        date: Set(ymd("2026-01-26")),
        name: Set("Republic Day".into()),
        exchange: Set("BSE".into()),
        is_active: Set(true),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let loaded = MarketHolidays::find_by_id(holiday.id)
        .one(db)
        .await?
        .unwrap();
    assert_eq!(loaded, holiday);
    assert_eq!(loaded.date, ymd("2026-01-26"));
    let same_day_nse = market_holidays::ActiveModel {
        date: Set(ymd("2026-01-26")),
        name: Set("Republic Day".into()),
        exchange: Set("NSE".into()),
        is_active: Set(true),
        ..Default::default()
    };
    assert!(
        same_day_nse.insert(db).await.is_err(),
        "seeded NSE row exists"
    );

    // special_trading_sessions
    let muhurat = special_trading_sessions::ActiveModel {
        date: Set(ymd("2026-11-08")),
        name: Set("Muhurat Trading".into()),
        start_time: Set(hm(18, 0)),
        end_time: Set(hm(19, 15)),
        exchange: Set("NSE".into()),
        is_active: Set(true),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(
        SpecialTradingSessions::find()
            .filter(special_trading_sessions::Column::Date.eq(ymd("2026-11-08")))
            .all(db)
            .await?,
        vec![muhurat]
    );

    // websocket_sessions (string primary key)
    let id = uuid::Uuid::new_v4().to_string();
    let viewer = websocket_sessions::ActiveModel {
        id: Set(id.clone()),
        kind: Set(SessionKind::Chain),
        underlying: Set("NIFTY".into()),
        exchange: Set("NSE_INDEX".into()),
        expiry: Set(Some("28-APR-26".into())),
        strikes: Set(10),
        mode: Set(2),
        last_heartbeat_at: Set(at("2026-01-05 04:00:00")),
        closed_at: Set(None),
        close_reason: Set(None),
        ..Default::default()
    }
    .insert(db)
    .await?;
    assert_eq!(viewer.id, id);
    assert_eq!(
        WebsocketSessions::find_by_id(id.clone()).one(db).await?,
        Some(viewer.clone())
    );
    let mut closed = websocket_sessions::ActiveModel::from(viewer.clone());
    closed.closed_at = Set(Some(at("2026-01-05 04:05:00")));
    closed.close_reason = Set(Some(CloseReason::Timeout));
    let closed = closed.update(db).await?;
    assert_eq!(closed.created_at, viewer.created_at);
    let open = WebsocketSessions::find()
        .filter(websocket_sessions::Column::ClosedAt.is_null())
        .count(db)
        .await?;
    assert_eq!(open, 0);
    let mut reused = websocket_sessions::ActiveModel::from(viewer);
    reused.id = Set(id);
    assert!(reused.insert(db).await.is_err(), "ids are unique");
    Ok(())
}

#[tokio::test]
async fn sqlite_entities_match_the_schema() {
    with_sqlite(entities_round_trip).await;
}

#[tokio::test]
async fn postgres_entities_match_the_schema() {
    with_postgres(entities_round_trip).await;
}
