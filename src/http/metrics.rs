//! `GET /metrics`: the actors' figures in the Prometheus text format (version 0.0.4), built from
//! the same status answers as `GET /api/v1/state`: a registry is filled from them at each
//! collection and encoded with `prometheus-client`.

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
use prometheus_client::encoding::prometheus_text::{CONTENT_TYPE, encode};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::AppState;
use super::error::{ApiError, ErrorBody};

use super::state::{ServiceState, collect};

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
        let mut m = render(&snapshot);
        m.counter(
            "supervisor_metrics_collections",
            "times /metrics asked every actor for its status (at most once a second)",
            collections,
        );
        let text: Arc<str> = m.encode()?.into();
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

/// The labels of one sample.
type Labels = Vec<(&'static str, String)>;

/// The metric families of one collection. Counters are named without their `_total`, which
/// the encoder appends (to the `# TYPE` line too).
#[derive(Default)]
struct Exposition {
    registry: Registry,
}

impl Exposition {
    /// A family with one unlabelled counter.
    fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        let counter: Counter = Counter::default();
        counter.inc_by(value);
        self.registry.register(name, help, counter);
        self
    }

    /// A family with one unlabelled gauge.
    fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        let gauge: Gauge<f64, AtomicU64> = Gauge::default();
        gauge.set(value);
        self.registry.register(name, help, gauge);
        self
    }

    /// A family of counters, one per label set.
    fn counters(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) -> &mut Self {
        let family: Family<Labels, Counter> = Family::default();
        for (labels, value) in samples {
            family.get_or_create(&labels).inc_by(value);
        }
        self.registry.register(name, help, family);
        self
    }

    /// A family of gauges, one per label set.
    fn gauges(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) -> &mut Self {
        let family: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
        for (labels, value) in samples {
            family.get_or_create(&labels).set(value);
        }
        self.registry.register(name, help, family);
        self
    }

    /// The text exposition.
    fn encode(&self) -> Result<String, ApiError> {
        let mut text = String::new();
        encode(&mut text, &self.registry)
            .map_err(|e| ApiError::internal("encoding the metrics", e))?;
        Ok(text)
    }
}

/// A latency distribution as a Prometheus histogram of seconds over [`LATENCY_BUCKETS_S`].
#[derive(Debug)]
struct Histogram {
    /// (upper bound in seconds, values above the previous bound and at or below this one).
    buckets: Vec<(f64, u64)>,
    sum_s: f64,
    count: u64,
}

impl Histogram {
    fn of(latency: &LatencySnapshot) -> Self {
        let mut below = 0;
        let buckets = LATENCY_BUCKETS_S
            .iter()
            .map(|&bound| {
                let at_or_below = latency.count_at_or_below((bound * 1e6).round() as u64);
                let n = at_or_below - below;
                below = at_or_below;
                (bound, n)
            })
            .collect();
        Histogram {
            buckets,
            sum_s: latency.sum_us() as f64 / 1e6,
            count: latency.count(),
        }
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum_s, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

fn name_of(value: impl std::fmt::Debug) -> String {
    format!("{value:?}")
}

/// One label set with one label.
fn label(key: &'static str, value: impl Into<String>) -> Labels {
    vec![(key, value.into())]
}

fn render(s: &ServiceState) -> Exposition {
    let mut m = Exposition::default();
    let (conn, reg) = (&s.connection, &s.registry);

    m.counter(
        "supervisor_ticks_in",
        "market_data frames the registry received from the feed connection",
        reg.ticks_in,
    )
    .counter(
        "supervisor_ticks_fanned_out",
        "ticks delivered to subscribers (one per subscriber and tick)",
        reg.ticks_delivered,
    )
    .counter(
        "supervisor_ticks_dropped",
        "ticks a slow subscriber never saw: replaced by a newer tick of the same key",
        reg.ticks_dropped,
    )
    .counter(
        "supervisor_ticks_unrouted",
        "ticks for keys nobody holds",
        reg.ticks_unrouted,
    )
    .counter(
        "supervisor_feed_malformed",
        "feed frames that could not be parsed",
        reg.malformed + conn.malformed,
    )
    .counter(
        "supervisor_feed_messages",
        "market_data frames received on the feed connection",
        conn.messages_received,
    )
    .gauge(
        "supervisor_feed_messages_per_second",
        "market_data frames per second over the last second",
        conn.messages_per_s,
    )
    .counter(
        "supervisor_feed_frames_sent",
        "subscribe and unsubscribe frames sent upstream",
        reg.frames_sent,
    )
    .gauges(
        "supervisor_feed_connection_state",
        "the feed connection's state: 1 for the current state, 0 for the others",
        CONNECTION_STATES
            .into_iter()
            .map(|st| (label("state", name_of(st)), flag(conn.state == st))),
    )
    .counter(
        "supervisor_feed_reconnects",
        "times the feed went live again after having been live",
        conn.reconnects,
    )
    .gauge(
        "supervisor_feed_connect_attempt",
        "the current connection attempt number of the backoff (0 when live)",
        f64::from(conn.attempt),
    );
    if let Some(age) = conn.last_tick_age_ms {
        m.gauge(
            "supervisor_feed_last_tick_age_seconds",
            "seconds since the last market_data frame",
            age as f64 / 1000.0,
        );
    }

    m.gauge(
        "supervisor_subscriptions",
        "keys (exchange, symbol) subscribed upstream",
        reg.symbols as f64,
    )
    .gauge(
        "supervisor_subscriptions_max",
        "the symbol cap of the feed connection",
        reg.max_symbols as f64,
    )
    .gauge(
        "supervisor_subscriptions_rejected",
        "subscribed keys the gateway refused",
        reg.rejected as f64,
    )
    .gauge(
        "supervisor_subscribers",
        "consumers holding at least one key",
        reg.consumers.len() as f64,
    );

    let chains = &s.chains;
    m.gauge(
        "supervisor_chain_sessions",
        "option-chain sessions running",
        chains.sessions.len() as f64,
    )
    .counter(
        "supervisor_chain_sessions_opened",
        "option-chain sessions opened",
        chains.opened_total,
    )
    .counter(
        "supervisor_chain_sessions_ended",
        "option-chain sessions ended",
        chains.ended_total,
    );

    m.gauge(
        "supervisor_market_hours_running",
        "1 while the market-hours subtree (feed, position monitor) runs",
        flag(s.supervisor.running),
    )
    .gauge(
        "supervisor_feed_degraded",
        "1 while the feed is down during market hours and open legs are priced over REST quotes",
        flag(s.supervisor.feed_degraded),
    )
    .gauge(
        "supervisor_health_reasons",
        "reasons GET /health gives for being degraded (0 when ok)",
        s.health.reasons.len() as f64,
    )
    .gauges(
        "supervisor_calendar_phase",
        "the calendar phase: 1 for the current phase, 0 for the others",
        [Phase::PreOpen, Phase::Open, Phase::Closed]
            .into_iter()
            .map(|phase| {
                (
                    label("phase", name_of(phase)),
                    flag(s.calendar.phase == phase),
                )
            }),
    );
    if let Some(secs) = s.calendar.seconds_to_next_change {
        m.gauge(
            "supervisor_calendar_seconds_to_next_change",
            "seconds until the calendar phase changes",
            secs as f64,
        );
    }
    m.gauge(
        "supervisor_calendar_warnings",
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
    m.gauges(
        "supervisor_actor_state",
        "each long-lived actor's lifecycle state: 1 for the current state, 0 for the others",
        actors.iter().flat_map(|(actor, lifecycle, _)| {
            LIFECYCLES.into_iter().map(move |st| {
                (
                    vec![("actor", actor.to_string()), ("state", name_of(st))],
                    flag(*lifecycle == st),
                )
            })
        }),
    )
    .counters(
        "supervisor_actor_restarts",
        "supervised restarts of each long-lived actor",
        actors
            .iter()
            .map(|(actor, _, restarts)| (label("actor", *actor), *restarts)),
    )
    .gauges(
        "supervisor_risk_actors",
        "risk actors (one per strategy with a run) by lifecycle state",
        LIFECYCLES.into_iter().map(|st| {
            let n = s.strategies.iter().filter(|r| r.lifecycle == st).count();
            (label("state", name_of(st)), n as f64)
        }),
    )
    .counter(
        "supervisor_risk_actor_restarts",
        "supervised restarts of the risk actors, all strategies",
        s.strategies.iter().map(|r| r.restarts).sum(),
    );
    m
}

/// Each account's order updates (its socket) and how exits were confirmed.
fn render_order_updates(m: &mut Exposition, s: &ServiceState) {
    let accounts = &s.order_events.accounts;
    let by_account = |value: fn(&AccountOrderEvents) -> u64| {
        accounts
            .iter()
            .map(move |a| (label("account_id", a.account_id.to_string()), value(a)))
    };
    m.gauges(
        "supervisor_order_updates_live",
        "1 while the account's order updates flow (its socket is live and subscribed)",
        accounts
            .iter()
            .map(|a| (label("account_id", a.account_id.to_string()), flag(a.live))),
    )
    .counters(
        "supervisor_order_updates",
        "order updates received",
        by_account(|a| a.events),
    )
    .counters(
        "supervisor_order_updates_unmatched",
        "order updates of orders no exit placed (recorded)",
        by_account(|a| a.unmatched),
    )
    .counters(
        "supervisor_order_update_routing_failures",
        "order updates that could not be given to the order gateway",
        by_account(|a| a.routing_failures),
    )
    .counters(
        "supervisor_exits_confirmed",
        "exits whose last fill came as an order update (`event`) or was read from the books (`read`)",
        [
            (label("by", "event"), s.orders.exits_confirmed_by_event),
            (label("by", "read"), s.orders.exits_confirmed_by_read),
        ],
    );
}

/// Strategies, positions, exits and the tick→risk decision latency.
fn render_risk(m: &mut Exposition, s: &ServiceState) {
    m.gauges(
        "supervisor_strategies",
        "strategies with a risk actor, by risk state",
        RiskState::ALL.iter().map(|st| {
            let n = s.strategies.iter().filter(|r| r.state == *st).count();
            (label("state", st.as_str()), n as f64)
        }),
    )
    .gauges(
        "supervisor_strategy_pnl_rupees",
        "each strategy's run P&L (realized + unrealized), while every open leg has a price",
        s.strategies
            .iter()
            .filter_map(|r| Some((label("strategy", r.strategy.as_str()), r.pnl?))),
    );
    let mon = &s.monitor;
    m.gauge(
        "supervisor_open_legs",
        "open legs the position monitor prices",
        mon.open_legs as f64,
    )
    .gauge(
        "supervisor_stale_legs",
        "open legs whose feed price is older than position_monitor.stale_after_s",
        s.positions.iter().filter(|p| p.stale).count() as f64,
    )
    .counter(
        "supervisor_monitor_ticks",
        "ticks the position monitor received",
        mon.ticks,
    )
    .counter(
        "supervisor_quote_fallbacks",
        "REST quotes fetched for legs with stale feed prices",
        mon.quotes_fetched,
    )
    .counter(
        "supervisor_quote_errors",
        "REST quote requests that failed",
        mon.quote_errors,
    );

    let orders = &s.orders;
    m.counter(
        "supervisor_exit_orders_sent",
        "exit orders sent to the brokers",
        orders.orders_sent,
    )
    .counter(
        "supervisor_exit_orders_failed",
        "exit orders the broker refused or that failed",
        orders.orders_failed,
    )
    .counter(
        "supervisor_exit_legs_exited",
        "legs closed by an exit",
        orders.legs_exited,
    )
    .counter(
        "supervisor_exit_legs_failed",
        "legs whose exit ran out of attempts (ExitFailed: needs a human)",
        orders.legs_failed,
    )
    .counter(
        "supervisor_exit_duplicates_refused",
        "exit requests refused because the leg was already being exited",
        orders.duplicates_refused,
    )
    .gauge(
        "supervisor_exits_in_flight",
        "legs being exited now",
        orders.exits.len() as f64,
    )
    .counter(
        "supervisor_exit_orders_in_doubt",
        "exit orders whose placement answer was lost (timeout, transport error, 5xx)",
        orders.orders_in_doubt,
    )
    .counter(
        "supervisor_exit_rate_limited",
        "429 answers to the order gateway's placements and reads",
        orders.rate_limited,
    )
    .counter(
        "supervisor_exit_mismatches",
        "legs of which the broker held less than tracked (only what it held was exited)",
        orders.mismatches,
    )
    .gauges(
        "supervisor_exits",
        "exits in flight by state (sending, in_doubt, working, partially_filled, rejected)",
        [
            "sending",
            "in_doubt",
            "working",
            "partially_filled",
            "rejected",
        ]
        .into_iter()
        .map(|state| {
            let n = orders.exits.iter().filter(|x| x.state == state).count();
            (label("state", state), n as f64)
        }),
    );

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
    m.registry
        .register(format!("{prefix}_seconds"), help, Histogram::of(latency));
    m.gauges(
        &format!("{prefix}_quantile_seconds"),
        &format!("quantiles of: {help}"),
        [("0.5", 0.5), ("0.99", 0.99), ("0.999", 0.999)].map(|(name, q)| {
            let value = latency
                .quantile_us(q)
                .map_or(f64::NAN, |us| us as f64 / 1e6);
            (label("quantile", name), value)
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_text_format() {
        let mut m = Exposition::default();
        m.counter("x", "help text", 2)
            .gauges("g", "labelled", [(label("k", "a\"b\\c\nd"), 1.5)]);
        let text = m.encode().unwrap();
        assert_eq!(
            text,
            "# HELP x_total help text.\n# TYPE x_total counter\nx_total 2\n\
             # HELP g labelled.\n# TYPE g gauge\ng{k=\"a\\\"b\\\\c\\nd\"} 1.5\n"
        );
    }

    #[test]
    fn latency_buckets_are_cumulative_and_end_at_the_count() {
        let mut h = actors::domain::latency::LatencyHistogram::new();
        for us in [10, 30, 60, 400, 3_000_000, 3_600_000_000] {
            h.record(Duration::from_micros(us));
        }
        let mut m = Exposition::default();
        latency_family(&mut m, "lat", "help", &h.snapshot());
        let text = m.encode().unwrap();
        for line in [
            "# TYPE lat_seconds histogram",
            "lat_seconds_bucket{le=\"2.5e-05\"} 1",
            "lat_seconds_bucket{le=\"5e-05\"} 2",
            "lat_seconds_bucket{le=\"0.0001\"} 3",
            "lat_seconds_bucket{le=\"0.0005\"} 4",
            "lat_seconds_bucket{le=\"2.5\"} 4",
            "lat_seconds_bucket{le=\"+Inf\"} 6",
            "lat_seconds_count 6",
            "lat_quantile_seconds{quantile=\"0.5\"} 0.00006",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        let empty = {
            let mut m = Exposition::default();
            latency_family(&mut m, "lat", "help", &LatencySnapshot::default());
            m.encode().unwrap()
        };
        assert!(
            empty.contains("lat_quantile_seconds{quantile=\"0.999\"} NaN"),
            "{empty}"
        );
    }
}
