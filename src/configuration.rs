//! Typed settings: `settings/base.toml` (embedded in the binary, the single source of defaults)
//! ← `settings/{APP_ENVIRONMENT}.toml` (default `local`) ← `DATABASE_URL` ←
//! `SUPERVISOR__SECTION__KEY` environment variables. Unknown keys and invalid values are rejected
//! with the key named.

use std::collections::HashMap;
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

    /// Checks value ranges that the types alone do not express.
    pub fn validate(&self) -> Result<(), SettingsError> {
        fn check(ok: bool, key: &str, message: &str) -> Result<(), SettingsError> {
            if ok {
                Ok(())
            } else {
                Err(SettingsError::new(key, message))
            }
        }
        check(
            self.server.body_limit_bytes >= 1024,
            "server.body_limit_bytes",
            "must be at least 1024",
        )?;
        check(
            self.server.max_admin_sockets >= 1,
            "server.max_admin_sockets",
            "must be at least 1",
        )?;
        check(
            self.server.max_pending_sockets >= 1,
            "server.max_pending_sockets",
            "must be at least 1",
        )?;
        check(
            self.security.admin_token.expose_secret().is_empty()
                || self.security.admin_token.expose_secret().len() >= 16,
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
            self.metrics.token.expose_secret().is_empty()
                || self.metrics.token.expose_secret().len() >= 16,
            "metrics.token",
            "must be empty (the admin token only) or at least 16 characters",
        )?;
        check(
            tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_level).is_ok(),
            "telemetry.log_level",
            "is not a valid tracing filter",
        )?;
        let url = &self.database.url;
        check(
            url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"),
            "database.url",
            "must start with sqlite:, postgres:// or postgresql://",
        )?;
        check(
            self.database.max_connections >= 1,
            "database.max_connections",
            "must be at least 1",
        )?;
        let c = &self.connection;
        check(
            c.backoff_initial_ms >= 1,
            "connection.backoff_initial_ms",
            "must be at least 1",
        )?;
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
        check(
            c.backoff_jitter.is_finite() && (0.0..=1.0).contains(&c.backoff_jitter),
            "connection.backoff_jitter",
            "must be between 0 and 1",
        )?;
        check(
            c.idle_timeout_s >= 1,
            "connection.idle_timeout_s",
            "must be at least 1",
        )?;
        check(
            c.ping_interval_s >= 1,
            "connection.ping_interval_s",
            "must be at least 1",
        )?;
        check(
            c.connect_timeout_s >= 1,
            "connection.connect_timeout_s",
            "must be at least 1",
        )?;
        check(
            c.max_frame_bytes >= 65536,
            "connection.max_frame_bytes",
            "must be at least 65536",
        )?;
        check(
            (1..=1000).contains(&c.subscribe_batch_size),
            "connection.subscribe_batch_size",
            "must be between 1 and 1000",
        )?;
        check(
            c.max_symbols >= 1,
            "connection.max_symbols",
            "must be at least 1",
        )?;
        check(
            c.position_reserve_share.is_finite() && (0.0..=1.0).contains(&c.position_reserve_share),
            "connection.position_reserve_share",
            "must be between 0 and 1",
        )?;
        check(
            c.rest_timeout_ms >= 1,
            "connection.rest_timeout_ms",
            "must be at least 1",
        )?;
        check(
            self.accounts.ping_interval_s >= 1,
            "accounts.ping_interval_s",
            "must be at least 1",
        )?;
        check(
            self.accounts.failover_after_failures >= 1,
            "accounts.failover_after_failures",
            "must be at least 1",
        )?;
        check(
            self.position_monitor.stale_after_s >= 1,
            "position_monitor.stale_after_s",
            "must be at least 1",
        )?;
        check(
            self.position_monitor.quote_fallback_per_s >= 1,
            "position_monitor.quote_fallback_per_s",
            "must be at least 1",
        )?;
        check(
            self.risk.max_exit_attempts >= 1,
            "risk.max_exit_attempts",
            "must be at least 1",
        )?;
        check(
            self.risk.exit_retry_initial_ms >= 1,
            "risk.exit_retry_initial_ms",
            "must be at least 1",
        )?;
        check(
            self.risk.exit_retry_max_ms >= self.risk.exit_retry_initial_ms,
            "risk.exit_retry_max_ms",
            "must be at least risk.exit_retry_initial_ms",
        )?;
        check(
            self.risk.exit_settle_ms >= 1,
            "risk.exit_settle_ms",
            "must be at least 1",
        )?;
        check(
            self.risk.exit_poll_initial_ms >= 1,
            "risk.exit_poll_initial_ms",
            "must be at least 1",
        )?;
        check(
            self.risk.exit_poll_max_ms >= self.risk.exit_poll_initial_ms,
            "risk.exit_poll_max_ms",
            "must be at least risk.exit_poll_initial_ms",
        )?;
        check(
            self.risk.exit_working_timeout_ms >= 1,
            "risk.exit_working_timeout_ms",
            "must be at least 1",
        )?;
        check(
            self.risk.positions_max_age_ms >= 100,
            "risk.positions_max_age_ms",
            "must be at least 100",
        )?;
        check(
            self.risk.order_rate_per_s >= 1,
            "risk.order_rate_per_s",
            "must be at least 1",
        )?;
        check(
            self.position_monitor.feed_down_after_s >= 1,
            "position_monitor.feed_down_after_s",
            "must be at least 1",
        )?;
        check(
            self.risk.max_leg_quantity >= 1,
            "risk.max_leg_quantity",
            "must be at least 1",
        )?;
        check(
            self.risk.max_price.is_finite() && self.risk.max_price > 0.0,
            "risk.max_price",
            "must be a number above 0",
        )?;
        check(
            self.risk.max_leg_notional.is_finite() && self.risk.max_leg_notional > 0.0,
            "risk.max_leg_notional",
            "must be a number above 0",
        )?;
        check(
            self.risk.max_exit_orders_per_leg >= 1,
            "risk.max_exit_orders_per_leg",
            "must be at least 1",
        )?;
        let o = &self.option_chain;
        check(
            (1..=50).contains(&o.default_strikes),
            "option_chain.default_strikes",
            "must be between 1 and 50",
        )?;
        check(
            o.default_expiries >= 1,
            "option_chain.default_expiries",
            "must be at least 1",
        )?;
        check(
            o.session_timeout_s >= 1,
            "option_chain.session_timeout_s",
            "must be at least 1",
        )?;
        check(
            o.max_sessions >= 1,
            "option_chain.max_sessions",
            "must be at least 1",
        )?;
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
        check(
            self.supervision.crash_loop_max_restarts >= 1,
            "supervision.crash_loop_max_restarts",
            "must be at least 1",
        )?;
        check(
            self.supervision.crash_loop_window_s >= 1,
            "supervision.crash_loop_window_s",
            "must be at least 1",
        )?;
        Ok(())
    }
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
