//! `GET /api/v1/state` (every actor's status, built only from their `Status` answers) and
//! `POST /api/v1/service/{start|stop}`. The admin socket and `/metrics` use [`collect`] too;
//! `/health` uses [`gather`], which never fails: an actor that does not answer is a reason.

use std::future::Future;
use std::time::Duration;

use actix::MailboxError;
use actix_web::{HttpResponse, web};
use actors::accounts::{AccountsStatus, GetAccountsStatus};
use actors::calendar::{CalendarStatus, GetCalendarStatus};
use actors::chain::{ChainDirectoryStatus, GetChainDirectoryStatus};
use actors::feed::{
    ConnectionStatus, GetConnectionStatus, GetRegistryStatus, GetStreams, RegistryStatus,
    StreamsStatus,
};
use actors::order_events::{GetOrderEvents, OrderEventsStatus};
use actors::orders::{GatewayStatus, GetGatewayStatus};
use actors::positions::{
    GetMonitorStatus, GetPositions, GetRiskStatuses, MonitorStatus, PositionView,
};
use actors::risk::RiskStatus;
use actors::supervisor::{GetSupervisorStatus, ServiceControl, SupervisorStatus};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::health::{HealthView, assess};

/// How long `GET /api/v1/state` waits for each actor.
const COLLECT_WITHIN: Duration = Duration::from_secs(10);

/// Every actor's status, as each actor answered its `Get*Status` message. Each part carries
/// `state` (or `lifecycle`: Starting, Running, Degraded, BackingOff, Stopped, Faulted) and
/// `restarts`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceState {
    /// SupervisorActor: whether the market-hours subtree runs and why, the feed account, the
    /// calendar phase it follows, recent start/stop transitions.
    pub supervisor: SupervisorStatus,
    /// CalendarActor: `phase`, `since`, `next_change_at`, `next_phase`,
    /// `seconds_to_next_change`, templates, today's holiday and special sessions.
    pub calendar: CalendarStatus,
    /// AccountMonitorActor: the feed account, reachability and every account's ping health.
    pub accounts: AccountsStatus,
    /// ConnectionActor: `state` (Idle, Connecting, Authenticating, Live, BackingOff, Stopped,
    /// Faulted), attempt, next retry, last error, messages/s, last tick age, reconnects and
    /// recent connection events.
    pub connection: ConnectionStatus,
    /// Every account's socket (one per API key): the same figures as `connection` for each,
    /// `feed` for the one carrying the market data, and its `orders` stream (subscribed, events,
    /// events in the last minute, the last one's time).
    pub streams: StreamsStatus,
    /// OrderEventRouter: per account, whether order updates flow, how many arrived, how many
    /// were of exits in progress (`matched`) or of orders the supervisor did not place
    /// (`unmatched`, recorded), routing failures, and the latest events.
    pub order_events: OrderEventsStatus,
    /// SubscriptionRegistryActor: subscriptions with mode and holders, consumers with delivered
    /// and dropped ticks, tick counters.
    pub registry: RegistryStatus,
    /// ChainDirectoryActor: every option-chain session with its window, viewers and lease.
    pub chains: ChainDirectoryStatus,
    /// PositionMonitorActor: open legs, subscribed symbols, ticks, REST quote fallbacks,
    /// reconciliation figures and a P&L summary per strategy.
    pub monitor: MonitorStatus,
    /// Every open leg with its price, P&L, price age and source (as `GET /api/v1/positions`,
    /// without the account names).
    pub positions: Vec<PositionView>,
    /// One RiskActor per strategy with a run: risk `state` (monitoring, triggered, exiting,
    /// exited, exit_failed, paused), `lifecycle`, P&L, peak, stop, limits, latches, the last
    /// trigger and the tick→decision latency.
    pub strategies: Vec<RiskStatus>,
    /// OrderGatewayActor: per-account lanes, exits in flight, orders sent and failed.
    pub orders: GatewayStatus,
    /// What `GET /health` answers: `status` (`ok` or `degraded`) and the `reasons`, the same
    /// the admin page's banner shows.
    pub health: HealthView,
}

/// Every actor's answer (or why there was none) and whether the database answers.
pub struct Answers {
    pub database: Result<(), String>,
    pub supervisor: Result<SupervisorStatus, String>,
    pub calendar: Result<CalendarStatus, String>,
    pub accounts: Result<AccountsStatus, String>,
    pub connection: Result<ConnectionStatus, String>,
    pub streams: Result<StreamsStatus, String>,
    pub order_events: Result<OrderEventsStatus, String>,
    pub registry: Result<RegistryStatus, String>,
    pub chains: Result<ChainDirectoryStatus, String>,
    pub monitor: Result<MonitorStatus, String>,
    pub positions: Result<Vec<PositionView>, String>,
    pub strategies: Result<Vec<RiskStatus>, String>,
    pub orders: Result<GatewayStatus, String>,
}

/// One actor's answer within `within`.
async fn ask<T>(
    request: impl Future<Output = Result<T, MailboxError>>,
    within: Duration,
) -> Result<T, String> {
    match actix_rt::time::timeout(within, request).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(format!("did not answer ({e})")),
        Err(_) => Err(format!("did not answer within {} ms", within.as_millis())),
    }
}

/// Asks every actor for its status and pings the database, concurrently, each within
/// `within`. Never fails: what does not answer says so.
pub async fn gather(state: &AppState, within: Duration) -> Answers {
    let database = async {
        match actix_rt::time::timeout(within, state.db.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "database ping failed");
                Err("database did not answer".to_string())
            }
            Err(_) => Err("database did not answer".to_string()),
        }
    };
    let (
        database,
        supervisor,
        calendar,
        accounts,
        (connection, streams, order_events),
        registry,
        chains,
        monitor,
        positions,
        strategies,
        orders,
    ) = futures_util::join!(
        database,
        ask(state.supervisor.send(GetSupervisorStatus), within),
        ask(state.calendar.send(GetCalendarStatus), within),
        ask(state.accounts.send(GetAccountsStatus), within),
        async {
            futures_util::join!(
                ask(state.feed.streams.send(GetConnectionStatus), within),
                ask(state.feed.streams.send(GetStreams), within),
                ask(state.order_events.send(GetOrderEvents), within),
            )
        },
        ask(state.feed.registry.send(GetRegistryStatus), within),
        ask(state.chains.send(GetChainDirectoryStatus), within),
        ask(state.monitor.send(GetMonitorStatus), within),
        ask(state.monitor.send(GetPositions), within),
        ask(state.monitor.send(GetRiskStatuses), within),
        ask(state.gateway.send(GetGatewayStatus), within),
    );
    Answers {
        database,
        supervisor,
        calendar,
        accounts,
        connection,
        streams,
        order_events,
        registry,
        chains,
        monitor,
        positions,
        strategies,
        orders,
    }
}

fn answered<T>(answer: Result<T, String>, actor: &str) -> Result<T, ApiError> {
    answer.map_err(|e| ApiError::internal(&format!("the {actor} did not answer"), e))
}

/// Asks every actor for its status, concurrently; 500 when one does not answer.
pub async fn collect(state: &AppState) -> Result<ServiceState, ApiError> {
    let answers = gather(state, COLLECT_WITHIN).await;
    let health = assess(&answers);
    let a = answers;
    Ok(ServiceState {
        supervisor: answered(a.supervisor, "supervisor")?,
        calendar: answered(a.calendar, "calendar actor")?,
        accounts: answered(a.accounts, "account monitor")?,
        connection: answered(a.connection, "connection actor")?,
        streams: answered(a.streams, "streams actor")?,
        order_events: answered(a.order_events, "order event router")?,
        registry: answered(a.registry, "subscription registry")?,
        chains: answered(a.chains, "chain directory")?,
        monitor: answered(a.monitor, "position monitor")?,
        positions: answered(a.positions, "position monitor")?,
        strategies: answered(a.strategies, "position monitor")?,
        orders: answered(a.orders, "order gateway")?,
        health,
    })
}

fn no_answer(actor: &'static str) -> impl Fn(actix::MailboxError) -> ApiError {
    move |e| ApiError::internal(&format!("the {actor} did not answer"), e)
}

/// Every actor's status.
#[utoipa::path(
    get,
    path = "/api/v1/state",
    operation_id = "state",
    tag = "state",
    responses(
        (status = 200, description = "every actor's status", body = ServiceState),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 500, description = "an actor did not answer", body = ErrorBody),
    )
)]
pub async fn state(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(collect(&state).await?))
}

/// The service controls.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum ServiceAction {
    Start,
    Stop,
}

/// Starts or stops the market-hours subtree. A stop holds it down until a start, whatever the
/// calendar says; exits already handed to the order gateway are not interrupted.
#[utoipa::path(
    post,
    path = "/api/v1/service/{action}",
    operation_id = "service_control",
    tag = "state",
    params(("action" = inline(ServiceAction), Path, description = "`start` or `stop`")),
    responses(
        (status = 200, description = "the supervisor's status after the change",
            body = SupervisorStatus),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "an action other than start or stop", body = ErrorBody),
    )
)]
pub async fn service_control(
    state: web::Data<AppState>,
    action: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let control = match action.as_str() {
        "start" => ServiceControl::Start,
        "stop" => ServiceControl::Stop,
        other => {
            return Err(ApiError::not_found(format!(
                "unknown service action '{other}': use start or stop"
            )));
        }
    };
    let status = state
        .supervisor
        .send(control)
        .await
        .map_err(no_answer("supervisor"))?;
    Ok(HttpResponse::Ok().json(status))
}
