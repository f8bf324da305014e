//! `GET /api/v1/state` (every actor's status, built only from their `Status` answers) and
//! `POST /api/v1/service/{start|stop}`.

use actix_web::{HttpResponse, web};
use actors::accounts::GetAccountsStatus;
use actors::calendar::GetCalendarStatus;
use actors::chain::GetChainDirectoryStatus;
use actors::feed::{GetConnectionStatus, GetRegistryStatus};
use actors::orders::GetGatewayStatus;
use actors::positions::{GetMonitorStatus, GetRiskStatuses};
use actors::supervisor::{GetSupervisorStatus, ServiceControl};
use serde_json::json;

use super::AppState;
use super::error::ApiError;

fn no_answer(actor: &'static str) -> impl Fn(actix::MailboxError) -> ApiError {
    move |e| ApiError::internal(&format!("the {actor} did not answer"), e)
}

pub async fn state(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (supervisor, calendar, accounts, connection, registry, chains, positions, risk, orders) = futures_util::join!(
        state.supervisor.send(GetSupervisorStatus),
        state.calendar.send(GetCalendarStatus),
        state.accounts.send(GetAccountsStatus),
        state.feed.connection.send(GetConnectionStatus),
        state.feed.registry.send(GetRegistryStatus),
        state.chains.send(GetChainDirectoryStatus),
        state.monitor.send(GetMonitorStatus),
        state.monitor.send(GetRiskStatuses),
        state.gateway.send(GetGatewayStatus),
    );
    Ok(HttpResponse::Ok().json(json!({
        "supervisor": supervisor.map_err(no_answer("supervisor"))?,
        "calendar": calendar.map_err(no_answer("calendar actor"))?,
        "accounts": accounts.map_err(no_answer("account monitor"))?,
        "connection": connection.map_err(no_answer("connection actor"))?,
        "registry": registry.map_err(no_answer("subscription registry"))?,
        "chains": chains.map_err(no_answer("chain directory"))?,
        "positions": positions.map_err(no_answer("position monitor"))?,
        "strategies": risk.map_err(no_answer("position monitor"))?,
        "orders": orders.map_err(no_answer("order gateway"))?,
    })))
}

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
