//! Settings: defaults load, overrides apply, unknown keys and bad values are rejected by name.

use std::path::Path;

use trading_supervisor::configuration::{LogFormat, Settings};

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn settings_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("settings")
}

#[test]
fn defaults_load_with_every_section() {
    let s = Settings::load_from(&settings_dir(), "local", vars(&[])).unwrap();
    assert_eq!(s.server.port, 8000);
    assert_eq!(s.database.url, "sqlite://data/supervisor.db?mode=rwc");
    assert_eq!(s.connection.backoff_initial_ms, 1000);
    assert_eq!(s.connection.backoff_max_ms, 60_000);
    assert_eq!(s.connection.limit_backoff_min_s, 30);
    assert_eq!(s.connection.idle_timeout_s, 30);
    assert_eq!(s.connection.subscribe_batch_size, 100);
    assert_eq!(s.connection.max_symbols, 1000);
    assert_eq!(s.position_monitor.stale_after_s, 60);
    assert_eq!(s.risk.max_exit_attempts, 5);
    assert_eq!(s.option_chain.default_strikes, 10);
    assert_eq!(s.option_chain.session_timeout_s, 300);
    assert_eq!(s.calendar.timezone, "Asia/Kolkata");
    assert!(!s.calendar.always_open);
    assert_eq!(s.supervision.crash_loop_max_restarts, 5);
    assert_eq!(s.telemetry.log_format, LogFormat::Pretty);
}

#[test]
fn environment_files_and_variables_override_in_order() {
    let s = Settings::load_from(
        &settings_dir(),
        "demo",
        vars(&[
            ("SUPERVISOR__SERVER__PORT", "9100"),
            ("SUPERVISOR__RISK__MAX_EXIT_ATTEMPTS", "3"),
            ("SUPERVISOR__TELEMETRY__LOG_FORMAT", "json"),
            ("UNRELATED", "ignored"),
        ]),
    )
    .unwrap();
    assert!(s.calendar.always_open, "demo.toml applies");
    assert_eq!(s.server.port, 9100);
    assert_eq!(s.risk.max_exit_attempts, 3);
    assert_eq!(s.telemetry.log_format, LogFormat::Json);
}

#[test]
fn database_url_env_overrides_the_file_and_the_prefixed_variable_wins() {
    let s = Settings::load_from(
        &settings_dir(),
        "local",
        vars(&[("DATABASE_URL", "postgres://u@h/db")]),
    )
    .unwrap();
    assert_eq!(s.database.url, "postgres://u@h/db");
    let s = Settings::load_from(
        &settings_dir(),
        "local",
        vars(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("SUPERVISOR__DATABASE__URL", "postgres://u@h/other"),
        ]),
    )
    .unwrap();
    assert_eq!(s.database.url, "postgres://u@h/other");
}

#[test]
fn an_unknown_key_is_rejected_by_name() {
    let err = Settings::load_from(
        &settings_dir(),
        "local",
        vars(&[("SUPERVISOR__CONNECTION__IDLE_TIMEOUT_SECONDS", "5")]),
    )
    .unwrap_err();
    assert_eq!(err.key, "connection.idle_timeout_seconds");
    assert!(err.to_string().contains("connection.idle_timeout_seconds"));
    assert!(err.to_string().contains("unknown key"));

    let err = Settings::load_from(
        &settings_dir(),
        "local",
        vars(&[("SUPERVISOR__NOSUCHSECTION__X", "1")]),
    )
    .unwrap_err();
    assert_eq!(err.key, "nosuchsection");
}

#[test]
fn an_unknown_key_in_a_file_is_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("staging.toml"),
        "[risk]\nmax_exit_attempt = 3\n",
    )
    .unwrap();
    let err = Settings::load_from(dir.path(), "staging", vars(&[])).unwrap_err();
    assert_eq!(err.key, "risk.max_exit_attempt");
}

#[test]
fn bad_values_are_rejected_by_name() {
    let cases = [
        ("SUPERVISOR__SERVER__PORT", "eighty", "server.port"),
        (
            "SUPERVISOR__CONNECTION__BACKOFF_FACTOR",
            "0.5",
            "connection.backoff_factor",
        ),
        (
            "SUPERVISOR__CONNECTION__BACKOFF_JITTER",
            "1.5",
            "connection.backoff_jitter",
        ),
        (
            "SUPERVISOR__CALENDAR__TIMEZONE",
            "Mars/Olympus",
            "calendar.timezone",
        ),
        (
            "SUPERVISOR__TELEMETRY__LOG_FORMAT",
            "xml",
            "telemetry.log_format",
        ),
        ("SUPERVISOR__DATABASE__URL", "mysql://h/db", "database.url"),
        (
            "SUPERVISOR__RISK__MAX_EXIT_ATTEMPTS",
            "-1",
            "risk.max_exit_attempts",
        ),
        (
            "SUPERVISOR__CALENDAR__ALWAYS_OPEN",
            "maybe",
            "calendar.always_open",
        ),
    ];
    for (var, value, key) in cases {
        let err = Settings::load_from(&settings_dir(), "local", vars(&[(var, value)]))
            .expect_err(&format!("{var}={value} must be rejected"));
        assert_eq!(err.key, key, "{var}={value}: {err}");
    }
}

#[test]
fn a_missing_environment_file_is_an_error() {
    let err = Settings::load_from(&settings_dir(), "no-such-env", vars(&[])).unwrap_err();
    assert_eq!(err.key, "APP_ENVIRONMENT");
}

#[test]
fn secrets_are_not_printed_by_debug() {
    let s = Settings::load_from(
        &settings_dir(),
        "local",
        vars(&[(
            "SUPERVISOR__SECURITY__ADMIN_TOKEN",
            "super-secret-token-value",
        )]),
    )
    .unwrap();
    assert!(!format!("{s:?}").contains("super-secret-token-value"));
}
