//! Tracing setup: an env filter (`RUST_LOG` overrides `telemetry.log_level`), pretty or JSON output.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::configuration::{LogFormat, TelemetrySettings};

/// Installs the global subscriber. Safe to call more than once (later calls are ignored), which
/// lets tests build several applications in one process.
pub fn init(settings: &TelemetrySettings) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(&settings.log_level));
    // Logs go to stderr; stdout carries what a command prints for its user (URLs, the token).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match settings.log_format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
