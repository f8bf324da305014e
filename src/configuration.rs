//! Typed settings: `settings/base.toml` (embedded in the binary, the single source of defaults)
//! ← `settings/{APP_ENVIRONMENT}.toml` (default `local`) ← `DATABASE_URL` ←
//! `SUPERVISOR__SECTION__KEY` environment variables. Unknown keys and invalid values are rejected
//! with the key named.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::Path;

use actors::secrets::{ExposeSecret, KeyCipher, SecretString};
use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

const BASE: &str = include_str!("../settings/base.toml");
const ENV_PREFIX: &str = "SUPERVISOR";

/// A setting that could not be loaded: `key` is the dotted path (e.g. `connection.idle_timeout_s`).
#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{key}`: {message}")]
pub struct SettingsError {
    pub key: String,
    pub message: String,
}

impl SettingsError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub security: SecuritySettings,
    pub metrics: MetricsSettings,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    pub connection: ConnectionSettings,
    pub accounts: AccountsSettings,
    pub position_monitor: PositionMonitorSettings,
    pub risk: RiskSettings,
    pub option_chain: OptionChainSettings,
    pub calendar: CalendarSettings,
    pub supervision: SupervisionSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub body_limit_bytes: usize,
    pub max_admin_sockets: usize,
    pub max_pending_sockets: usize,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    pub admin_token: SecretString,
    pub encryption_key: SecretString,
    pub allow_insecure_gateways: bool,
}

impl std::fmt::Debug for SecuritySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecuritySettings")
            .field("admin_token", &set_or_unset(&self.admin_token))
            .field("encryption_key", &set_or_unset(&self.encryption_key))
            .field("allow_insecure_gateways", &self.allow_insecure_gateways)
            .finish()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    pub token: SecretString,
    pub public: bool,
}

impl std::fmt::Debug for MetricsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSettings")
            .field("token", &set_or_unset(&self.token))
            .field("public", &self.public)
            .finish()
    }
}

fn set_or_unset(s: &SecretString) -> &'static str {
    if s.expose_secret().is_empty() {
        "<unset>"
    } else {
        "<set>"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_level: String,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSettings {
    pub backoff_initial_ms: u64,
    pub backoff_factor: f64,
    pub backoff_max_ms: u64,
    pub backoff_jitter: f64,
    pub backoff_reset_after_s: u64,
    pub limit_backoff_min_s: u64,
    pub idle_timeout_s: u64,
    pub ping_interval_s: u64,
    pub connect_timeout_s: u64,
    pub max_frame_bytes: usize,
    pub subscribe_batch_size: usize,
    pub max_symbols: usize,
    pub position_reserve_share: f64,
    pub rest_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsSettings {
    pub ping_interval_s: u64,
    pub failover_after_failures: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionMonitorSettings {
    pub enabled: bool,
    pub stale_after_s: u64,
    pub reconcile_interval_s: u64,
    pub quote_fallback_per_s: u32,
    pub feed_down_after_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskSettings {
    pub enabled: bool,
    pub auto_exit_on_max_loss: bool,
    pub auto_exit_on_max_profit: bool,
    pub exit_confirm_ms: u64,
    pub max_exit_attempts: u32,
    pub exit_retry_initial_ms: u64,
    pub exit_retry_max_ms: u64,
    pub exit_settle_ms: u64,
    pub exit_poll_initial_ms: u64,
    pub exit_poll_max_ms: u64,
    pub exit_working_timeout_ms: u64,
    pub exit_event_wait_ms: u64,
    pub positions_max_age_ms: u64,
    pub order_rate_per_s: u32,
    pub max_leg_quantity: i64,
    pub max_price: f64,
    pub max_leg_notional: f64,
    pub max_exit_orders_per_leg: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionChainSettings {
    pub on_demand: bool,
    pub default_strikes: u32,
    pub default_expiries: u32,
    pub session_timeout_s: u64,
    pub max_push_hz: f64,
    pub max_sessions: usize,
    pub max_sessions_per_client: usize,
    pub closed_session_retention_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSettings {
    pub timezone: String,
    pub pre_open_buffer_s: u64,
    pub always_open: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionSettings {
    pub crash_loop_max_restarts: u32,
    pub crash_loop_window_s: u64,
}

impl Settings {
    /// Loads settings from `./settings`, `APP_ENVIRONMENT` and the process environment.
    pub fn load() -> Result<Settings, SettingsError> {
        let environment = std::env::var("APP_ENVIRONMENT").unwrap_or_else(|_| "local".into());
        Self::load_for(&environment)
    }

    /// Loads settings for a given environment from `./settings` and the process environment.
    pub fn load_for(environment: &str) -> Result<Settings, SettingsError> {
        Self::load_from(Path::new("settings"), environment, std::env::vars())
    }

    /// Loads settings from `dir/{environment}.toml` over the embedded defaults, then the given
    /// environment variables (`DATABASE_URL`, `SUPERVISOR__SECTION__KEY`), and validates them.
    pub fn load_from(
        dir: &Path,
        environment: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        if !environment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || environment.is_empty()
        {
            return Err(SettingsError::new(
                "APP_ENVIRONMENT",
                format!("`{environment}` is not a valid environment name"),
            ));
        }
        let env_file = dir.join(format!("{environment}.toml"));
        if environment != "local" && !env_file.exists() {
            return Err(SettingsError::new(
                "APP_ENVIRONMENT",
                format!("no settings file {}", env_file.display()),
            ));
        }
        let mut prefixed = HashMap::new();
        let mut database_url = None;
        for (k, v) in vars {
            if k == "DATABASE_URL" {
                database_url = Some(v);
            } else if k.starts_with(&format!("{ENV_PREFIX}__")) {
                prefixed.insert(k, v);
            }
        }
        let mut builder = Config::builder()
            .add_source(File::from_str(BASE, FileFormat::Toml))
            .add_source(File::from(env_file).required(false));
        if let Some(url) = database_url {
            let layer = Config::builder()
                .set_override("database.url", url)
                .and_then(|b| b.build())
                .map_err(|e| SettingsError::new("DATABASE_URL", e.to_string()))?;
            builder = builder.add_source(layer);
        }
        let config = builder
            .add_source(
                Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(prefixed)),
            )
            .build()
            .map_err(|e| SettingsError::new(config_error_key(&e), e.to_string()))?;
        // Go through a JSON value so that the path of a bad or unknown key can be named.
        let value: serde_json::Value = config
            .try_deserialize()
            .map_err(|e| SettingsError::new(config_error_key(&e), e.to_string()))?;
        let settings: Settings = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            let message = e.inner().to_string();
            match unknown_field(&message) {
                Some(field) if key == "." => SettingsError::new(field, "unknown key"),
                Some(_) => SettingsError::new(key, "unknown key"),
                None => SettingsError::new(key, message),
            }
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks value ranges that the types alone do not express; the first bad key is named.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let secret_len = |s: &SecretString| s.expose_secret().len();
        let (c, r, o) = (&self.connection, &self.risk, &self.option_chain);
        let (srv, p) = (&self.server, &self.position_monitor);
        at_least(srv.body_limit_bytes, 1024, "server.body_limit_bytes")?;
        at_least(srv.max_admin_sockets, 1, "server.max_admin_sockets")?;
        at_least(srv.max_pending_sockets, 1, "server.max_pending_sockets")?;
        check(
            matches!(secret_len(&self.security.admin_token), 0 | 16..),
            "security.admin_token",
            "must be empty (generate one) or at least 16 characters",
        )?;
        check(
            self.security.encryption_key.expose_secret().is_empty()
                || KeyCipher::from_base64(self.security.encryption_key.expose_secret()).is_ok(),
            "security.encryption_key",
            "must be empty or base64 of 32 random bytes (e.g. `openssl rand -base64 32`)",
        )?;
        check(
            matches!(secret_len(&self.metrics.token), 0 | 16..),
            "metrics.token",
            "must be empty (the admin token only) or at least 16 characters",
        )?;
        check(
            tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_level).is_ok(),
            "telemetry.log_level",
            "is not a valid tracing filter",
        )?;
        check(
            ["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|scheme| self.database.url.starts_with(scheme)),
            "database.url",
            "must start with sqlite:, postgres:// or postgresql://",
        )?;
        at_least(self.database.max_connections, 1, "database.max_connections")?;
        at_least(c.backoff_initial_ms, 1, "connection.backoff_initial_ms")?;
        check(
            c.backoff_factor.is_finite() && c.backoff_factor >= 1.0,
            "connection.backoff_factor",
            "must be at least 1.0",
        )?;
        check(
            c.backoff_max_ms >= c.backoff_initial_ms,
            "connection.backoff_max_ms",
            "must be at least backoff_initial_ms",
        )?;
        between(c.backoff_jitter, 0.0, 1.0, "connection.backoff_jitter")?;
        at_least(c.idle_timeout_s, 1, "connection.idle_timeout_s")?;
        at_least(c.ping_interval_s, 1, "connection.ping_interval_s")?;
        at_least(c.connect_timeout_s, 1, "connection.connect_timeout_s")?;
        at_least(c.max_frame_bytes, 65536, "connection.max_frame_bytes")?;
        between(
            c.subscribe_batch_size,
            1,
            1000,
            "connection.subscribe_batch_size",
        )?;
        at_least(c.max_symbols, 1, "connection.max_symbols")?;
        between(
            c.position_reserve_share,
            0.0,
            1.0,
            "connection.position_reserve_share",
        )?;
        at_least(c.rest_timeout_ms, 1, "connection.rest_timeout_ms")?;
        at_least(self.accounts.ping_interval_s, 1, "accounts.ping_interval_s")?;
        at_least(
            self.accounts.failover_after_failures,
            1,
            "accounts.failover_after_failures",
        )?;
        at_least(p.stale_after_s, 1, "position_monitor.stale_after_s")?;
        at_least(
            p.quote_fallback_per_s,
            1,
            "position_monitor.quote_fallback_per_s",
        )?;
        at_least(r.max_exit_attempts, 1, "risk.max_exit_attempts")?;
        delays(
            r.exit_retry_initial_ms,
            r.exit_retry_max_ms,
            "risk.exit_retry",
        )?;
        at_least(r.exit_settle_ms, 1, "risk.exit_settle_ms")?;
        delays(r.exit_poll_initial_ms, r.exit_poll_max_ms, "risk.exit_poll")?;
        at_least(r.exit_working_timeout_ms, 1, "risk.exit_working_timeout_ms")?;
        at_least(r.positions_max_age_ms, 100, "risk.positions_max_age_ms")?;
        at_least(r.order_rate_per_s, 1, "risk.order_rate_per_s")?;
        at_least(p.feed_down_after_s, 1, "position_monitor.feed_down_after_s")?;
        at_least(r.max_leg_quantity, 1, "risk.max_leg_quantity")?;
        above_zero(r.max_price, "risk.max_price")?;
        above_zero(r.max_leg_notional, "risk.max_leg_notional")?;
        at_least(r.max_exit_orders_per_leg, 1, "risk.max_exit_orders_per_leg")?;
        between(o.default_strikes, 1, 50, "option_chain.default_strikes")?;
        at_least(o.default_expiries, 1, "option_chain.default_expiries")?;
        at_least(o.session_timeout_s, 1, "option_chain.session_timeout_s")?;
        at_least(o.max_sessions, 1, "option_chain.max_sessions")?;
        check(
            (1..=o.max_sessions).contains(&o.max_sessions_per_client),
            "option_chain.max_sessions_per_client",
            "must be between 1 and option_chain.max_sessions",
        )?;
        check(
            o.max_push_hz.is_finite() && o.max_push_hz > 0.0 && o.max_push_hz <= 100.0,
            "option_chain.max_push_hz",
            "must be above 0 and at most 100",
        )?;
        check(
            self.calendar.timezone.parse::<chrono_tz::Tz>().is_ok(),
            "calendar.timezone",
            "is not a known IANA timezone",
        )?;
        let s = &self.supervision;
        at_least(
            s.crash_loop_max_restarts,
            1,
            "supervision.crash_loop_max_restarts",
        )?;
        at_least(s.crash_loop_window_s, 1, "supervision.crash_loop_window_s")?;
        Ok(())
    }
}

fn check(ok: bool, key: &str, message: &str) -> Result<(), SettingsError> {
    if ok {
        Ok(())
    } else {
        Err(SettingsError::new(key, message))
    }
}

fn at_least<T: PartialOrd + Display>(value: T, min: T, key: &str) -> Result<(), SettingsError> {
    check(value >= min, key, &format!("must be at least {min}"))
}

/// `{name}_initial_ms` at least 1 and `{name}_max_ms` at least `{name}_initial_ms`.
fn delays(initial_ms: u64, max_ms: u64, name: &str) -> Result<(), SettingsError> {
    at_least(initial_ms, 1, &format!("{name}_initial_ms"))?;
    check(
        max_ms >= initial_ms,
        &format!("{name}_max_ms"),
        &format!("must be at least {name}_initial_ms"),
    )
}

/// `value` within `min..=max` (a NaN is not).
fn between<T: PartialOrd + Display>(
    value: T,
    min: T,
    max: T,
    key: &str,
) -> Result<(), SettingsError> {
    check(
        value >= min && value <= max,
        key,
        &format!("must be between {min} and {max}"),
    )
}

fn above_zero(value: f64, key: &str) -> Result<(), SettingsError> {
    check(
        value.is_finite() && value > 0.0,
        key,
        "must be a number above 0",
    )
}

fn config_error_key(e: &config::ConfigError) -> String {
    match e {
        config::ConfigError::Type { key: Some(k), .. } => k.clone(),
        config::ConfigError::At { key: Some(k), .. } => k.clone(),
        _ => "settings".into(),
    }
}

/// Extracts `x` from serde's "unknown field `x`, expected …" message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error loading the defaults with one environment variable set.
    fn rejected(var: &str, value: &str) -> SettingsError {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("settings");
        Settings::load_from(&dir, "local", [(var.to_string(), value.to_string())])
            .expect_err("the value is out of range")
    }

    #[test]
    fn an_out_of_range_value_names_its_key_and_bound() {
        let cases = [
            (
                "SUPERVISOR__SERVER__BODY_LIMIT_BYTES",
                "10",
                "server.body_limit_bytes",
                "must be at least 1024",
            ),
            (
                "SUPERVISOR__SECURITY__ADMIN_TOKEN",
                "short",
                "security.admin_token",
                "must be empty (generate one) or at least 16 characters",
            ),
            (
                "SUPERVISOR__CONNECTION__BACKOFF_JITTER",
                "1.5",
                "connection.backoff_jitter",
                "must be between 0 and 1",
            ),
            (
                "SUPERVISOR__CONNECTION__SUBSCRIBE_BATCH_SIZE",
                "0",
                "connection.subscribe_batch_size",
                "must be between 1 and 1000",
            ),
            (
                "SUPERVISOR__RISK__MAX_LEG_QUANTITY",
                "0",
                "risk.max_leg_quantity",
                "must be at least 1",
            ),
            (
                "SUPERVISOR__RISK__MAX_PRICE",
                "-1.5",
                "risk.max_price",
                "must be a number above 0",
            ),
            (
                "SUPERVISOR__RISK__EXIT_RETRY_MAX_MS",
                "1",
                "risk.exit_retry_max_ms",
                "must be at least risk.exit_retry_initial_ms",
            ),
            (
                "SUPERVISOR__RISK__EXIT_POLL_INITIAL_MS",
                "0",
                "risk.exit_poll_initial_ms",
                "must be at least 1",
            ),
            (
                "SUPERVISOR__SUPERVISION__CRASH_LOOP_WINDOW_S",
                "0",
                "supervision.crash_loop_window_s",
                "must be at least 1",
            ),
        ];
        for (var, value, key, message) in cases {
            let err = rejected(var, value);
            assert_eq!(
                (err.key.as_str(), err.message.as_str()),
                (key, message),
                "{var}={value}"
            );
        }
    }
}
