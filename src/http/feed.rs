//! Feed routes: `POST /api/v1/connection/reconnect`.

use actix_web::{HttpResponse, web};
use actors::feed::Reconnect;
use serde_json::json;

use super::AppState;
use super::error::ApiError;

pub async fn reconnect(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .feed
        .connection
        .send(Reconnect)
        .await
        .map_err(|e| ApiError::internal("the connection actor did not answer", e))?
        .map_err(ApiError::conflict)?;
    Ok(HttpResponse::Accepted().json(json!({
        "status": "reconnecting",
        "message": "the feed socket was closed and reconnects after the initial backoff delay"
    })))
}
