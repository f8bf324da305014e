//! `GET /metrics`: the actors' figures in the Prometheus text format (version 0.0.4), built from
//! the same status answers as `GET /api/v1/state`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use actors::domain::calendar::Phase;
use actors::domain::latency::LatencySnapshot;
use actors::feed::ConnectionState;
use actors::order_events::AccountOrderEvents;
use actors::status::Lifecycle;
use entity::strategies::RiskState;
use futures_util::lock::Mutex;

use super::AppState;
use super::error::{ApiError, ErrorBody};

use super::state::{ServiceState, collect};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const LIFECYCLES: [Lifecycle; 6] = [
    Lifecycle::Starting,
    Lifecycle::Running,
    Lifecycle::Degraded,
    Lifecycle::BackingOff,
    Lifecycle::Stopped,
    Lifecycle::Faulted,
];

/// Upper bounds (seconds) of the tick→risk decision histogram's buckets.
const LATENCY_BUCKETS_S: [f64; 16] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5,
];

const CONNECTION_STATES: [ConnectionState; 7] = [
    ConnectionState::Idle,
    ConnectionState::Connecting,
    ConnectionState::Authenticating,
    ConnectionState::Live,
    ConnectionState::BackingOff,
    ConnectionState::Stopped,
    ConnectionState::Faulted,
];

/// How long one collection of the actors' statuses serves scrapes.
const SNAPSHOT_TTL: Duration = Duration::from_secs(1);

/// The last exposition. Scrapes within [`SNAPSHOT_TTL`] of a collection share it, and the lock
/// is held across a collection, so that concurrent scrapes wait for one collection instead of
/// each asking every actor: however often `/metrics` is called, the actors are asked at most
/// once a second.
#[derive(Default)]
pub struct MetricsCache {
    last: Mutex<Option<(Instant, Arc<str>)>>,
    collections: AtomicU64,
}

impl MetricsCache {
    async fn exposition(&self, state: &AppState) -> Result<Arc<str>, ApiError> {
        let mut last = self.last.lock().await;
        if let Some((at, text)) = last.as_ref()
            && at.elapsed() < SNAPSHOT_TTL
        {
            return Ok(text.clone());
        }
        let snapshot = collect(state).await?;
        let collections = self.collections.fetch_add(1, Ordering::Relaxed) + 1;
        let mut text = render(&snapshot);
        Exposition::default()
            .single(
                "supervisor_metrics_collections_total",
                "counter",
                "times /metrics asked every actor for its status (at most once a second)",
                collections as f64,
            )
            .append_to(&mut text);
        let text: Arc<str> = text.into();
        *last = Some((Instant::now(), text.clone()));
        Ok(text)
    }
}

/// Every metric, in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "metrics",
    security(("admin_token" = []), ("metrics_token" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4: ticks in, fanned out and \
            dropped, feed connection state and reconnects, subscriptions, strategies by risk \
            state and their P&L, open legs, exit orders sent and failed, the tick→risk decision \
            latency histogram with p50/p99/p999, chain sessions, calendar phase and warnings, the \
            feed degraded, the health reasons, every actor's lifecycle state and restarts. A \
            snapshot at most one second old.",
            content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "missing or wrong token: the admin token or \
            `metrics.token` (unless `metrics.public = true`)", body = ErrorBody),
        (status = 500, description = "an actor did not answer", body = ErrorBody),
    )
)]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.exposition(&state).await?;
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(text.to_string()))
}

/// Writes metric families: `# HELP`, `# TYPE` and their samples.
#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
        self
    }

    fn append_to(&self, out: &mut String) {
        out.push_str(&self.out);
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

fn name_of(value: impl std::fmt::Debug) -> String {
    format!("{value:?}")
}

fn render(s: &ServiceState) -> String {
    let mut m = Exposition::default();
    let (conn, reg) = (&s.connection, &s.registry);

    m.single(
        "supervisor_ticks_in_total",
        "counter",
        "market_data frames the registry received from the feed connection",
        reg.ticks_in as f64,
    )
    .single(
        "supervisor_ticks_fanned_out_total",
        "counter",
        "ticks delivered to subscribers (one per subscriber and tick)",
        reg.ticks_delivered as f64,
    )
    .single(
        "supervisor_ticks_dropped_total",
        "counter",
        "ticks a slow subscriber never saw: replaced by a newer tick of the same key",
        reg.ticks_dropped as f64,
    )
    .single(
        "supervisor_ticks_unrouted_total",
        "counter",
        "ticks for keys nobody holds",
        reg.ticks_unrouted as f64,
    )
    .single(
        "supervisor_feed_malformed_total",
        "counter",
        "feed frames that could not be parsed",
        (reg.malformed + conn.malformed) as f64,
    )
    .single(
        "supervisor_feed_messages_total",
        "counter",
        "market_data frames received on the feed connection",
        conn.messages_received as f64,
    )
    .single(
        "supervisor_feed_messages_per_second",
        "gauge",
        "market_data frames per second over the last second",
        conn.messages_per_s,
    )
    .single(
        "supervisor_feed_frames_sent_total",
        "counter",
        "subscribe and unsubscribe frames sent upstream",
        reg.frames_sent as f64,
    );

    m.family(
        "supervisor_feed_connection_state",
        "gauge",
        "the feed connection's state: 1 for the current state, 0 for the others",
    );
    for st in CONNECTION_STATES {
        m.sample(
            "supervisor_feed_connection_state",
            &[("state", &name_of(st))],
            flag(conn.state == st),
        );
    }
    m.single(
        "supervisor_feed_reconnects_total",
        "counter",
        "times the feed went live again after having been live",
        conn.reconnects as f64,
    )
    .single(
        "supervisor_feed_connect_attempt",
        "gauge",
        "the current connection attempt number of the backoff (0 when live)",
        f64::from(conn.attempt),
    );
    if let Some(age) = conn.last_tick_age_ms {
        m.single(
            "supervisor_feed_last_tick_age_seconds",
            "gauge",
            "seconds since the last market_data frame",
            age as f64 / 1000.0,
        );
    }

    m.single(
        "supervisor_subscriptions",
        "gauge",
        "keys (exchange, symbol) subscribed upstream",
        reg.symbols as f64,
    )
    .single(
        "supervisor_subscriptions_max",
        "gauge",
        "the symbol cap of the feed connection",
        reg.max_symbols as f64,
    )
    .single(
        "supervisor_subscriptions_rejected",
        "gauge",
        "subscribed keys the gateway refused",
        reg.rejected as f64,
    )
    .single(
        "supervisor_subscribers",
        "gauge",
        "consumers holding at least one key",
        reg.consumers.len() as f64,
    );

    let chains = &s.chains;
    m.single(
        "supervisor_chain_sessions",
        "gauge",
        "option-chain sessions running",
        chains.sessions.len() as f64,
    )
    .single(
        "supervisor_chain_sessions_opened_total",
        "counter",
        "option-chain sessions opened",
        chains.opened_total as f64,
    )
    .single(
        "supervisor_chain_sessions_ended_total",
        "counter",
        "option-chain sessions ended",
        chains.ended_total as f64,
    );

    m.single(
        "supervisor_market_hours_running",
        "gauge",
        "1 while the market-hours subtree (feed, position monitor) runs",
        flag(s.supervisor.running),
    )
    .single(
        "supervisor_feed_degraded",
        "gauge",
        "1 while the feed is down during market hours and open legs are priced over REST quotes",
        flag(s.supervisor.feed_degraded),
    )
    .single(
        "supervisor_health_reasons",
        "gauge",
        "reasons GET /health gives for being degraded (0 when ok)",
        s.health.reasons.len() as f64,
    );
    m.family(
        "supervisor_calendar_phase",
        "gauge",
        "the calendar phase: 1 for the current phase, 0 for the others",
    );
    for phase in [Phase::PreOpen, Phase::Open, Phase::Closed] {
        m.sample(
            "supervisor_calendar_phase",
            &[("phase", &name_of(phase))],
            flag(s.calendar.phase == phase),
        );
    }
    if let Some(secs) = s.calendar.seconds_to_next_change {
        m.single(
            "supervisor_calendar_seconds_to_next_change",
            "gauge",
            "seconds until the calendar phase changes",
            secs as f64,
        );
    }
    m.single(
        "supervisor_calendar_warnings",
        "gauge",
        "calendar warnings: years the next 30 days reach without holidays loaded for an active \
         template's exchange",
        s.calendar.warnings.len() as f64,
    );

    render_risk(&mut m, s);
    render_order_updates(&mut m, s);

    let actors: [(&str, Lifecycle, u64); 9] = [
        ("supervisor", s.supervisor.state, s.supervisor.restarts),
        ("calendar", s.calendar.state, s.calendar.restarts),
        ("accounts", s.accounts.lifecycle, s.accounts.restarts),
        ("connection", conn.lifecycle, conn.restarts),
        (
            "order_events",
            s.order_events.state,
            s.order_events.restarts,
        ),
        ("registry", reg.state, reg.restarts),
        ("chain_directory", chains.state, chains.restarts),
        ("position_monitor", s.monitor.state, s.monitor.restarts),
        ("order_gateway", s.orders.state, s.orders.restarts),
    ];
    m.family(
        "supervisor_actor_state",
        "gauge",
        "each long-lived actor's lifecycle state: 1 for the current state, 0 for the others",
    );
    for (actor, lifecycle, _) in &actors {
        for st in LIFECYCLES {
            m.sample(
                "supervisor_actor_state",
                &[("actor", actor), ("state", &name_of(st))],
                flag(*lifecycle == st),
            );
        }
    }
    m.family(
        "supervisor_actor_restarts_total",
        "counter",
        "supervised restarts of each long-lived actor",
    );
    for (actor, _, restarts) in &actors {
        m.sample(
            "supervisor_actor_restarts_total",
            &[("actor", actor)],
            *restarts as f64,
        );
    }
    m.family(
        "supervisor_risk_actors",
        "gauge",
        "risk actors (one per strategy with a run) by lifecycle state",
    );
    for st in LIFECYCLES {
        let n = s.strategies.iter().filter(|r| r.lifecycle == st).count();
        m.sample(
            "supervisor_risk_actors",
            &[("state", &name_of(st))],
            n as f64,
        );
    }
    m.single(
        "supervisor_risk_actor_restarts_total",
        "counter",
        "supervised restarts of the risk actors, all strategies",
        s.strategies.iter().map(|r| r.restarts).sum::<u64>() as f64,
    );
    m.out
}

/// Each account's order updates (its socket) and how exits were confirmed.
fn render_order_updates(m: &mut Exposition, s: &ServiceState) {
    m.family(
        "supervisor_order_updates_live",
        "gauge",
        "1 while the account's order updates flow (its socket is live and subscribed)",
    );
    for a in &s.order_events.accounts {
        let id = a.account_id.to_string();
        m.sample(
            "supervisor_order_updates_live",
            &[("account_id", &id)],
            f64::from(u8::from(a.live)),
        );
    }
    for (name, help, value) in [
        (
            "supervisor_order_updates_total",
            "order updates received",
            (|a: &AccountOrderEvents| a.events) as fn(&AccountOrderEvents) -> u64,
        ),
        (
            "supervisor_order_updates_unmatched_total",
            "order updates of orders no exit placed (recorded)",
            |a: &AccountOrderEvents| a.unmatched,
        ),
        (
            "supervisor_order_update_routing_failures_total",
            "order updates that could not be given to the order gateway",
            |a: &AccountOrderEvents| a.routing_failures,
        ),
    ] {
        m.family(name, "counter", help);
        for a in &s.order_events.accounts {
            let id = a.account_id.to_string();
            m.sample(name, &[("account_id", &id)], value(a) as f64);
        }
    }
    m.family(
        "supervisor_exits_confirmed_total",
        "counter",
        "exits whose last fill came as an order update (`event`) or was read from the books (`read`)",
    );
    m.sample(
        "supervisor_exits_confirmed_total",
        &[("by", "event")],
        s.orders.exits_confirmed_by_event as f64,
    );
    m.sample(
        "supervisor_exits_confirmed_total",
        &[("by", "read")],
        s.orders.exits_confirmed_by_read as f64,
    );
}

/// Strategies, positions, exits and the tick→risk decision latency.
fn render_risk(m: &mut Exposition, s: &ServiceState) {
    m.family(
        "supervisor_strategies",
        "gauge",
        "strategies with a risk actor, by risk state",
    );
    for st in RiskState::ALL {
        let n = s.strategies.iter().filter(|r| r.state == *st).count();
        m.sample("supervisor_strategies", &[("state", st.as_str())], n as f64);
    }
    m.family(
        "supervisor_strategy_pnl_rupees",
        "gauge",
        "each strategy's run P&L (realized + unrealized), while every open leg has a price",
    );
    for r in &s.strategies {
        if let Some(pnl) = r.pnl {
            m.sample(
                "supervisor_strategy_pnl_rupees",
                &[("strategy", &r.strategy)],
                pnl,
            );
        }
    }
    let mon = &s.monitor;
    m.single(
        "supervisor_open_legs",
        "gauge",
        "open legs the position monitor prices",
        mon.open_legs as f64,
    )
    .single(
        "supervisor_stale_legs",
        "gauge",
        "open legs whose feed price is older than position_monitor.stale_after_s",
        s.positions.iter().filter(|p| p.stale).count() as f64,
    )
    .single(
        "supervisor_monitor_ticks_total",
        "counter",
        "ticks the position monitor received",
        mon.ticks as f64,
    )
    .single(
        "supervisor_quote_fallbacks_total",
        "counter",
        "REST quotes fetched for legs with stale feed prices",
        mon.quotes_fetched as f64,
    )
    .single(
        "supervisor_quote_errors_total",
        "counter",
        "REST quote requests that failed",
        mon.quote_errors as f64,
    );

    let orders = &s.orders;
    m.single(
        "supervisor_exit_orders_sent_total",
        "counter",
        "exit orders sent to the brokers",
        orders.orders_sent as f64,
    )
    .single(
        "supervisor_exit_orders_failed_total",
        "counter",
        "exit orders the broker refused or that failed",
        orders.orders_failed as f64,
    )
    .single(
        "supervisor_exit_legs_exited_total",
        "counter",
        "legs closed by an exit",
        orders.legs_exited as f64,
    )
    .single(
        "supervisor_exit_legs_failed_total",
        "counter",
        "legs whose exit ran out of attempts (ExitFailed: needs a human)",
        orders.legs_failed as f64,
    )
    .single(
        "supervisor_exit_duplicates_refused_total",
        "counter",
        "exit requests refused because the leg was already being exited",
        orders.duplicates_refused as f64,
    )
    .single(
        "supervisor_exits_in_flight",
        "gauge",
        "legs being exited now",
        orders.exits.len() as f64,
    )
    .single(
        "supervisor_exit_orders_in_doubt_total",
        "counter",
        "exit orders whose placement answer was lost (timeout, transport error, 5xx)",
        orders.orders_in_doubt as f64,
    )
    .single(
        "supervisor_exit_rate_limited_total",
        "counter",
        "429 answers to the order gateway's placements and reads",
        orders.rate_limited as f64,
    )
    .single(
        "supervisor_exit_mismatches_total",
        "counter",
        "legs of which the broker held less than tracked (only what it held was exited)",
        orders.mismatches as f64,
    );
    m.family(
        "supervisor_exits",
        "gauge",
        "exits in flight by state (sending, in_doubt, working, partially_filled, rejected)",
    );
    for state in [
        "sending",
        "in_doubt",
        "working",
        "partially_filled",
        "rejected",
    ] {
        let n = orders.exits.iter().filter(|x| x.state == state).count();
        m.sample("supervisor_exits", &[("state", state)], n as f64);
    }

    let decision = LatencySnapshot::merged(s.strategies.iter().map(|r| &r.decision_latency));
    latency_family(
        m,
        "supervisor_tick_to_risk_decision",
        "tick arrival at the supervisor → risk rule decision, every evaluated tick, all strategies",
        &decision,
    );
    let feed = LatencySnapshot::merged(s.strategies.iter().map(|r| &r.feed_latency));
    latency_family(
        m,
        "supervisor_feed_to_risk_decision",
        "gateway send → risk rule decision, for ticks that carry the gateway's send time \
         (the simulator's)",
        &feed,
    );
}

/// A latency distribution as `{prefix}_seconds` (histogram) and `{prefix}_quantile_seconds`
/// (p50/p99/p999 gauges, NaN before the first value).
fn latency_family(m: &mut Exposition, prefix: &str, help: &str, latency: &LatencySnapshot) {
    let name = format!("{prefix}_seconds");
    m.family(&name, "histogram", help);
    for bound in LATENCY_BUCKETS_S {
        let count = latency.count_at_or_below((bound * 1e6).round() as u64);
        m.sample(
            &format!("{name}_bucket"),
            &[("le", &bound.to_string())],
            count as f64,
        );
    }
    m.sample(
        &format!("{name}_bucket"),
        &[("le", "+Inf")],
        latency.count() as f64,
    )
    .sample(&format!("{name}_sum"), &[], latency.sum_us() as f64 / 1e6)
    .sample(&format!("{name}_count"), &[], latency.count() as f64);
    let quantiles = format!("{prefix}_quantile_seconds");
    m.family(&quantiles, "gauge", &format!("quantiles of: {help}"));
    for (label, q) in [("0.5", 0.5), ("0.99", 0.99), ("0.999", 0.999)] {
        let value = latency
            .quantile_us(q)
            .map_or(f64::NAN, |us| us as f64 / 1e6);
        m.sample(&quantiles, &[("quantile", label)], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_labels_follow_the_text_format() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(escape_label("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
        let mut m = Exposition::default();
        m.family("x_total", "counter", "help text")
            .sample("x_total", &[("k", "v"), ("q", "\"")], 2.0)
            .sample("x_total", &[], 1.5);
        assert_eq!(
            m.out,
            "# HELP x_total help text\n# TYPE x_total counter\nx_total{k=\"v\",q=\"\\\"\"} 2\nx_total 1.5\n"
        );
    }
}
