//! `GET /api/v1/state`: every actor's status, built only from their `Status` answers.

use actix_web::{HttpResponse, web};
use actors::feed::{GetConnectionStatus, GetRegistryStatus};
use serde_json::json;

use super::AppState;
use super::error::ApiError;

fn no_answer(actor: &'static str) -> impl Fn(actix::MailboxError) -> ApiError {
    move |e| ApiError::internal(&format!("the {actor} did not answer"), e)
}

pub async fn state(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let connection = state
        .feed
        .connection
        .send(GetConnectionStatus)
        .await
        .map_err(no_answer("connection actor"))?;
    let registry = state
        .feed
        .registry
        .send(GetRegistryStatus)
        .await
        .map_err(no_answer("subscription registry"))?;
    Ok(HttpResponse::Ok().json(json!({
        "connection": connection,
        "registry": registry,
    })))
}
