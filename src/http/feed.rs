//! Feed routes: `POST /api/v1/connection/reconnect`.

use actix_web::{HttpResponse, web};
use actors::feed::Reconnect;

use super::AppState;
use super::error::{ApiError, ErrorBody};

/// Drops the feed socket and reconnects after the initial backoff delay.
#[utoipa::path(
    post,
    path = "/api/v1/connection/reconnect",
    operation_id = "reconnect_feed",
    tag = "feed",
    responses(
        (status = 202, description = "the socket was closed; it reconnects shortly", body = Reconnecting,
            example = json!({"status": "reconnecting", "message": "the feed socket was closed \
                and reconnects after the initial backoff delay"})),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 409, description = "there is no feed account, or the feed is stopped, Faulted, or backing off after an \
            authentication or connection-limit error (reconnecting then gets keys banned)",
            body = ErrorBody),
    )
)]
pub async fn reconnect(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .feed
        .streams
        .send(Reconnect)
        .await
        .map_err(|e| ApiError::internal("the connection actor did not answer", e))?
        .map_err(ApiError::conflict)?;
    Ok(HttpResponse::Accepted().json(Reconnecting {
        status: "reconnecting",
        message: "the feed socket was closed and reconnects after the initial backoff delay",
    }))
}

/// The answer of `POST /api/v1/connection/reconnect`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Reconnecting {
    /// Always `reconnecting`.
    status: &'static str,
    message: &'static str,
}
