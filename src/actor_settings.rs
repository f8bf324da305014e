//! Every actor's settings, read from the operator's [`Settings`]: the one place where the
//! settings file's keys (seconds, milliseconds, sections) become the actors' typed values.

use std::time::Duration;

use actors::accounts::AccountMonitorSettings;
use actors::calendar::CalendarSettings;
use actors::chain::ChainSettings;
use actors::domain::backoff::BackoffPolicy;
use actors::domain::fills::FillLimits;
use actors::feed::ConnectionSettings;
use actors::orders::GatewaySettings;
use actors::positions::MonitorSettings;
use actors::risk::RiskSettings;
use actors::supervised::Supervision;
use actors::supervisor::SupervisorSettings;

use crate::configuration::Settings;

/// The crash-loop limit of every supervised actor (`supervision` section).
pub fn supervision(s: &Settings) -> Supervision {
    Supervision {
        max_restarts: s.supervision.crash_loop_max_restarts,
        window: Duration::from_secs(s.supervision.crash_loop_window_s),
    }
}

/// Timeout of one REST call to a gateway (`connection.rest_timeout_ms`).
pub fn rest_timeout(s: &Settings) -> Duration {
    Duration::from_millis(s.connection.rest_timeout_ms)
}

/// The market calendar's settings (`calendar` section).
pub fn calendar(s: &Settings) -> CalendarSettings {
    CalendarSettings {
        pre_open_buffer: Duration::from_secs(s.calendar.pre_open_buffer_s),
        always_open: s.calendar.always_open,
        supervision: supervision(s),
    }
}

/// The account monitor's settings (`accounts` section).
pub fn accounts(s: &Settings) -> AccountMonitorSettings {
    AccountMonitorSettings {
        ping_interval: Duration::from_secs(s.accounts.ping_interval_s),
        rest_timeout: rest_timeout(s),
        failover_after_failures: s.accounts.failover_after_failures,
        supervision: supervision(s),
    }
}

/// The upstream sockets' settings (`connection` section, docs/ARCHITECTURE.md §4.4, §4.5).
pub fn feed(s: &Settings) -> ConnectionSettings {
    let c = &s.connection;
    ConnectionSettings {
        backoff: BackoffPolicy {
            initial: Duration::from_millis(c.backoff_initial_ms),
            factor: c.backoff_factor,
            max: Duration::from_millis(c.backoff_max_ms),
            jitter: c.backoff_jitter,
            reset_after: Duration::from_secs(c.backoff_reset_after_s),
            limit_min: Duration::from_secs(c.limit_backoff_min_s),
        },
        idle_timeout: Duration::from_secs(c.idle_timeout_s),
        ping_interval: Duration::from_secs(c.ping_interval_s),
        connect_timeout: Duration::from_secs(c.connect_timeout_s),
        max_frame_bytes: c.max_frame_bytes,
        subscribe_batch_size: c.subscribe_batch_size,
        max_symbols: c.max_symbols,
        position_reserve_share: c.position_reserve_share,
        supervision: supervision(s),
    }
}

/// The order gateway's settings (`risk` section).
pub fn gateway(s: &Settings) -> GatewaySettings {
    let r = &s.risk;
    GatewaySettings {
        max_exit_attempts: r.max_exit_attempts,
        retry_initial: Duration::from_millis(r.exit_retry_initial_ms),
        retry_max: Duration::from_millis(r.exit_retry_max_ms),
        order_rate_per_s: r.order_rate_per_s,
        rest_timeout: rest_timeout(s),
        settle: Duration::from_millis(r.exit_settle_ms),
        poll_initial: Duration::from_millis(r.exit_poll_initial_ms),
        poll_max: Duration::from_millis(r.exit_poll_max_ms),
        working_timeout: Duration::from_millis(r.exit_working_timeout_ms),
        event_wait: Duration::from_millis(r.exit_event_wait_ms),
        positions_max_age: Duration::from_millis(r.positions_max_age_ms),
        supervision: supervision(s),
    }
}

/// Bounds of a registered fill (`risk` section).
pub fn fill_limits(s: &Settings) -> FillLimits {
    FillLimits {
        max_leg_quantity: s.risk.max_leg_quantity,
        max_price: s.risk.max_price,
        max_leg_notional: s.risk.max_leg_notional,
        max_exit_orders_per_leg: s.risk.max_exit_orders_per_leg,
    }
}

/// The position monitor's settings (`position_monitor` section).
pub fn monitor(s: &Settings) -> MonitorSettings {
    let p = &s.position_monitor;
    MonitorSettings {
        enabled: p.enabled,
        stale_after: Duration::from_secs(p.stale_after_s),
        reconcile_interval: (p.reconcile_interval_s > 0)
            .then(|| Duration::from_secs(p.reconcile_interval_s)),
        quote_fallback_per_s: p.quote_fallback_per_s,
        rest_timeout: rest_timeout(s),
        supervision: supervision(s),
        fill_limits: fill_limits(s),
    }
}

/// The risk actors' settings (`risk` section).
pub fn risk(s: &Settings) -> RiskSettings {
    RiskSettings {
        enabled: s.risk.enabled,
        auto_exit_on_max_loss: s.risk.auto_exit_on_max_loss,
        auto_exit_on_max_profit: s.risk.auto_exit_on_max_profit,
        default_confirm: Duration::from_millis(s.risk.exit_confirm_ms),
        supervision: supervision(s),
    }
}

/// The supervisor's settings (`position_monitor.feed_down_after_s`).
pub fn supervisor(s: &Settings) -> SupervisorSettings {
    SupervisorSettings {
        feed_down_after: Duration::from_secs(s.position_monitor.feed_down_after_s),
    }
}

/// The option-chain directory's settings (`option_chain` section, "today" in
/// `calendar.timezone`).
pub fn chain(s: &Settings) -> anyhow::Result<ChainSettings> {
    let o = &s.option_chain;
    Ok(ChainSettings {
        enabled: o.on_demand,
        default_strikes: o.default_strikes,
        default_expiries: o.default_expiries,
        session_timeout: Duration::from_secs(o.session_timeout_s),
        max_push_hz: o.max_push_hz,
        max_sessions: o.max_sessions,
        max_sessions_per_client: o.max_sessions_per_client,
        closed_retention: Duration::from_secs(o.closed_session_retention_s),
        rest_timeout: rest_timeout(s),
        timezone: s
            .calendar
            .timezone
            .parse()
            .map_err(|e| anyhow::anyhow!("calendar.timezone: {e}"))?,
        supervision: supervision(s),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn every_actor_gets_the_supervision_section() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("settings");
        let vars = [
            ("SUPERVISOR__SUPERVISION__CRASH_LOOP_MAX_RESTARTS", "7"),
            ("SUPERVISOR__SUPERVISION__CRASH_LOOP_WINDOW_S", "90"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let s = Settings::load_from(&dir, "local", vars).expect("the settings load");
        let expected = Supervision {
            max_restarts: 7,
            window: Duration::from_secs(90),
        };
        let chain = chain(&s).expect("the default timezone is known");
        for (actor, got) in [
            ("calendar", calendar(&s).supervision),
            ("accounts", accounts(&s).supervision),
            ("feed", feed(&s).supervision),
            ("gateway", gateway(&s).supervision),
            ("monitor", monitor(&s).supervision),
            ("risk", risk(&s).supervision),
            ("chain", chain.supervision),
        ] {
            assert_eq!(got, expected, "{actor}");
        }
    }
}
