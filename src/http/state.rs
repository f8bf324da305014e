//! `GET /api/v1/state` (every actor's status, built only from their `Status` answers) and
//! `POST /api/v1/service/{start|stop}`. The admin socket and `/metrics` use [`collect`] too.

use actix_web::{HttpResponse, web};
use actors::accounts::{AccountsStatus, GetAccountsStatus};
use actors::calendar::{CalendarStatus, GetCalendarStatus};
use actors::chain::{ChainDirectoryStatus, GetChainDirectoryStatus};
use actors::feed::{ConnectionStatus, GetConnectionStatus, GetRegistryStatus, RegistryStatus};
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

/// Every actor's status, as each actor answered its `Get*Status` message. Each part carries
/// `state` (or `lifecycle`: Starting, Running, Degraded, BackingOff, Stopped, Faulted) and
/// `restarts`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceState {
    /// SupervisorActor: whether the market-hours subtree runs and why, the feed account, the
    /// calendar phase it follows, recent start/stop transitions.
    #[schema(value_type = Object)]
    pub supervisor: SupervisorStatus,
    /// CalendarActor: `phase`, `since`, `next_change_at`, `next_phase`,
    /// `seconds_to_next_change`, templates, today's holiday and special sessions.
    #[schema(value_type = Object)]
    pub calendar: CalendarStatus,
    /// AccountMonitorActor: the feed account, reachability and every account's ping health.
    #[schema(value_type = Object)]
    pub accounts: AccountsStatus,
    /// ConnectionActor: `state` (Idle, Connecting, Authenticating, Live, BackingOff, Stopped,
    /// Faulted), attempt, next retry, last error, messages/s, last tick age, reconnects and
    /// recent connection events.
    #[schema(value_type = Object)]
    pub connection: ConnectionStatus,
    /// SubscriptionRegistryActor: subscriptions with mode and holders, consumers with delivered
    /// and dropped ticks, tick counters.
    #[schema(value_type = Object)]
    pub registry: RegistryStatus,
    /// ChainDirectoryActor: every option-chain session with its window, viewers and lease.
    #[schema(value_type = Object)]
    pub chains: ChainDirectoryStatus,
    /// PositionMonitorActor: open legs, subscribed symbols, ticks, REST quote fallbacks,
    /// reconciliation figures and a P&L summary per strategy.
    #[schema(value_type = Object)]
    pub monitor: MonitorStatus,
    /// Every open leg with its price, P&L, price age and source (as `GET /api/v1/positions`,
    /// without the account names).
    #[schema(value_type = Vec<Object>)]
    pub positions: Vec<PositionView>,
    /// One RiskActor per strategy with a run: risk `state` (monitoring, triggered, exiting,
    /// exited, exit_failed, paused), `lifecycle`, P&L, peak, stop, limits, latches, the last
    /// trigger and the tick→decision latency.
    #[schema(value_type = Vec<Object>)]
    pub strategies: Vec<RiskStatus>,
    /// OrderGatewayActor: per-account lanes, exits in flight, orders sent and failed.
    #[schema(value_type = Object)]
    pub orders: GatewayStatus,
}

fn no_answer(actor: &'static str) -> impl Fn(actix::MailboxError) -> ApiError {
    move |e| ApiError::internal(&format!("the {actor} did not answer"), e)
}

/// Asks every actor for its status, concurrently.
pub async fn collect(state: &AppState) -> Result<ServiceState, ApiError> {
    let (
        supervisor,
        calendar,
        accounts,
        connection,
        registry,
        chains,
        monitor,
        positions,
        strategies,
        orders,
    ) = futures_util::join!(
        state.supervisor.send(GetSupervisorStatus),
        state.calendar.send(GetCalendarStatus),
        state.accounts.send(GetAccountsStatus),
        state.feed.connection.send(GetConnectionStatus),
        state.feed.registry.send(GetRegistryStatus),
        state.chains.send(GetChainDirectoryStatus),
        state.monitor.send(GetMonitorStatus),
        state.monitor.send(GetPositions),
        state.monitor.send(GetRiskStatuses),
        state.gateway.send(GetGatewayStatus),
    );
    Ok(ServiceState {
        supervisor: supervisor.map_err(no_answer("supervisor"))?,
        calendar: calendar.map_err(no_answer("calendar actor"))?,
        accounts: accounts.map_err(no_answer("account monitor"))?,
        connection: connection.map_err(no_answer("connection actor"))?,
        registry: registry.map_err(no_answer("subscription registry"))?,
        chains: chains.map_err(no_answer("chain directory"))?,
        monitor: monitor.map_err(no_answer("position monitor"))?,
        positions: positions.map_err(no_answer("position monitor"))?,
        strategies: strategies.map_err(no_answer("position monitor"))?,
        orders: orders.map_err(no_answer("order gateway"))?,
    })
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
            body = Object),
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
