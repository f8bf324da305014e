//! `/api/v1/accounts`: trading accounts CRUD and gateway pings (docs/ARCHITECTURE.md §4.3, §4.11).
//!
//! API keys are encrypted before they are stored and never leave the service: responses show
//! `api_key_hint` (a masked prefix) only. Every write asks the AccountMonitorActor to reload.
//!
//! Deleting an account is refused (409) while any of its executions is open, and also while it
//! has closed executions: their history (P&L, exits) must be kept, so such an account is
//! deactivated (`is_active: false`) instead.

use actix_web::{HttpResponse, web};
use actors::accounts::{Account, PingOutcome, ReloadAccounts, ping_gateway, record_ping};
use actors::db::begin_write;
use actors::secrets::{ApiKey, KeyCipher};
use chrono::{DateTime, Utc};
use entity::prelude::*;
use entity::{strategy_executions, trading_accounts};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    SqlErr,
};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::body::Body;
use super::error::{ApiError, ErrorBody};

const NAME_MAX: usize = 100;
const BROKER_MAX: usize = 64;
const URL_MAX: usize = 2048;
const API_KEY_MAX: usize = 512;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/accounts")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/api/v1/accounts/{id}")
            .route(web::get().to(get))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    )
    .service(web::resource("/api/v1/accounts/{id}/ping").route(web::post().to(ping)));
}

/// An account as the API shows it: never the key, only its hint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct AccountView {
    id: i32,
    name: String,
    broker: String,
    rest_url: String,
    ws_url: String,
    /// The API key's first 4 characters and "…".
    api_key_hint: String,
    is_primary: bool,
    is_active: bool,
    /// `unknown`, `connected` or `failed`: the result of the last ping.
    #[schema(value_type = String, example = "connected")]
    connection_status: ConnectionStatus,
    last_ping_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<trading_accounts::Model> for AccountView {
    fn from(m: trading_accounts::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            broker: m.broker,
            rest_url: m.rest_url,
            ws_url: m.ws_url,
            api_key_hint: m.api_key_hint,
            is_primary: m.is_primary,
            is_active: m.is_active,
            connection_status: m.connection_status,
            last_ping_at: m.last_ping_at,
            last_error: m.last_error,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

fn yes() -> bool {
    true
}

/// A new trading account. Unknown fields are refused.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateAccount {
    /// Unique, at most 100 characters.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    name: String,
    /// At most 64 characters.
    #[schema(min_length = 1, max_length = 64, pattern = "\\S")]
    broker: String,
    /// The gateway's base URL: `https://`, or `http://` on a loopback host (any host with
    /// `security.allow_insecure_gateways`).
    #[schema(
        max_length = 2048,
        pattern = "^[ \\t\\r\\n]*[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\s]",
        example = "https://gateway.example"
    )]
    rest_url: String,
    /// The gateway's market-data WebSocket: `wss://`, or `ws://` as for `rest_url`.
    #[schema(
        max_length = 2048,
        pattern = "^[ \\t\\r\\n]*[Ww][Ss][Ss]?://[^/?#@\\s]",
        example = "wss://gateway.example/ws"
    )]
    ws_url: String,
    /// Encrypted at rest, never shown again. No whitespace.
    #[schema(value_type = String, min_length = 1, max_length = 512, pattern = "^\\S+$")]
    api_key: ApiKey,
    /// Making an account primary demotes the previous primary.
    #[serde(default)]
    is_primary: bool,
    #[serde(default = "yes")]
    #[schema(default = true)]
    is_active: bool,
}

/// Every field optional; `api_key` rotates the key, and is required when `rest_url` or
/// `ws_url` changes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateAccount {
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    name: Option<String>,
    #[schema(min_length = 1, max_length = 64, pattern = "\\S")]
    broker: Option<String>,
    #[schema(
        max_length = 2048,
        pattern = "^[ \\t\\r\\n]*[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\\s]"
    )]
    rest_url: Option<String>,
    #[schema(
        max_length = 2048,
        pattern = "^[ \\t\\r\\n]*[Ww][Ss][Ss]?://[^/?#@\\s]"
    )]
    ws_url: Option<String>,
    #[schema(value_type = Option<String>, min_length = 1, max_length = 512, pattern = "^\\S+$")]
    api_key: Option<ApiKey>,
    is_primary: Option<bool>,
    is_active: Option<bool>,
}

fn text(field: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::unprocessable(format!(
            "{field} must not be empty"
        )));
    }
    if value.chars().count() > max {
        return Err(ApiError::unprocessable(format!(
            "{field} must be at most {max} characters"
        )));
    }
    Ok(value.to_owned())
}

/// An absolute URL of one of `schemes` (`[secure, plain]`) with a host and no credentials.
/// The plain scheme is accepted for a loopback host always, for another host only when
/// `security.allow_insecure_gateways` is set: the API key travels to that host in clear.
fn url(
    field: &str,
    value: &str,
    schemes: [&str; 2],
    allow_insecure: bool,
) -> Result<String, ApiError> {
    let value = text(field, value, URL_MAX)?;
    let lower = value.to_ascii_lowercase();
    let invalid = || {
        ApiError::unprocessable(format!(
            "{field} must be an absolute {} or {} URL with a host",
            schemes[0], schemes[1]
        ))
    };
    let (scheme, rest) = schemes
        .iter()
        .find_map(|s| lower.strip_prefix(s).map(|rest| (*s, rest)))
        .ok_or_else(invalid)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || value.contains(char::is_whitespace) {
        return Err(invalid());
    }
    if authority.contains('@') {
        return Err(ApiError::unprocessable(format!(
            "{field} must not contain credentials (user@host): the API key authenticates"
        )));
    }
    if scheme == schemes[1] && !allow_insecure && !loopback(authority) {
        return Err(ApiError::unprocessable(format!(
            "{field}: {} sends the API key in clear to a remote host; use {} (or set \
             security.allow_insecure_gateways = true for a trusted network)",
            schemes[1], schemes[0]
        )));
    }
    Ok(value)
}

/// True when the host of `authority` (`host[:port]`, lower case) is this machine.
fn loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let host = host.trim_end_matches('.');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn rest_url(value: &str, allow_insecure: bool) -> Result<String, ApiError> {
    url("rest_url", value, ["https://", "http://"], allow_insecure)
}

fn ws_url(value: &str, allow_insecure: bool) -> Result<String, ApiError> {
    url("ws_url", value, ["wss://", "ws://"], allow_insecure)
}

/// Checks a key without copying it out of its secret.
fn check_api_key(key: &ApiKey) -> Result<(), ApiError> {
    let value = key.expose();
    if value.is_empty() {
        return Err(ApiError::unprocessable("api_key must not be empty"));
    }
    if value.chars().count() > API_KEY_MAX {
        return Err(ApiError::unprocessable(format!(
            "api_key must be at most {API_KEY_MAX} characters"
        )));
    }
    if value.contains(char::is_whitespace) {
        return Err(ApiError::unprocessable(
            "api_key must not contain whitespace",
        ));
    }
    Ok(())
}

/// The cipher, or 409 explaining how to configure one (a key is never generated silently:
/// keys encrypted with a key nobody kept are lost at the next restart).
fn cipher(state: &AppState) -> Result<&KeyCipher, ApiError> {
    state.cipher.as_ref().ok_or_else(|| {
        ApiError::conflict(
            "no encryption key is configured, so API keys cannot be stored: set \
             security.encryption_key (environment SUPERVISOR__SECURITY__ENCRYPTION_KEY) to base64 \
             of 32 random bytes (e.g. `openssl rand -base64 32`) and restart the service; keep \
             that key, stored API keys cannot be read without it",
        )
    })
}

/// The ciphertext of account `id`'s API key (bound to that id).
fn seal(cipher: &KeyCipher, id: i32, key: &ApiKey) -> Result<String, ApiError> {
    cipher
        .encrypt(id, key)
        .map_err(|e| ApiError::unprocessable(e.to_string()))
}

fn database(context: &'static str) -> impl Fn(DbErr) -> ApiError {
    move |e| ApiError::internal(context, e)
}

/// A write that violated a constraint: name taken, or a primary chosen concurrently.
async fn write_error(state: &AppState, name: &str, id: Option<i32>, e: DbErr) -> ApiError {
    if let Some(SqlErr::UniqueConstraintViolation(_)) = e.sql_err() {
        let taken = TradingAccounts::find()
            .filter(trading_accounts::Column::Name.eq(name))
            .one(&state.db)
            .await
            .ok()
            .flatten()
            .is_some_and(|m| Some(m.id) != id);
        return if taken {
            name_taken(name)
        } else {
            ApiError::conflict("another account was made primary at the same time; retry")
        };
    }
    ApiError::internal("saving the account failed", e)
}

fn name_taken(name: &str) -> ApiError {
    ApiError::conflict(format!("an account named '{name}' already exists"))
}

async fn find(state: &AppState, id: i32) -> Result<trading_accounts::Model, ApiError> {
    TradingAccounts::find_by_id(id)
        .one(&state.db)
        .await
        .map_err(database("reading the account failed"))?
        .ok_or_else(|| ApiError::not_found(format!("no account with id {id}")))
}

/// Clears `is_primary` on every account but `except`.
async fn demote_primary<C: sea_orm::ConnectionTrait>(
    db: &C,
    except: Option<i32>,
) -> Result<(), DbErr> {
    let mut query = TradingAccounts::update_many()
        .set(trading_accounts::ActiveModel {
            is_primary: Set(false),
            ..Default::default()
        })
        .filter(trading_accounts::Column::IsPrimary.eq(true));
    if let Some(id) = except {
        query = query.filter(trading_accounts::Column::Id.ne(id));
    }
    query.exec(db).await.map(|_| ())
}

/// Tells the account monitor to re-read the table. The write is already committed, so a
/// failure here is logged, not reported to the client (the monitor also reloads every round).
async fn reload(state: &AppState) {
    match state.accounts.send(ReloadAccounts).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "the account monitor could not reload accounts"),
        Err(e) => tracing::warn!(error = %e, "the account monitor is not running"),
    }
}

/// Every trading account, by id.
#[utoipa::path(
    get,
    path = "/api/v1/accounts",
    operation_id = "list_accounts",
    tag = "accounts",
    responses(
        (status = 200, description = "the accounts", body = [AccountView]),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
    )
)]
async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let accounts = TradingAccounts::find()
        .order_by_asc(trading_accounts::Column::Id)
        .all(&state.db)
        .await
        .map_err(database("listing accounts failed"))?;
    let views: Vec<AccountView> = accounts.into_iter().map(AccountView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// One account.
#[utoipa::path(
    get,
    path = "/api/v1/accounts/{id}",
    operation_id = "get_account",
    tag = "accounts",
    params(("id" = i32, Path, description = "the account id")),
    responses(
        (status = 200, description = "the account", body = AccountView),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
    )
)]
async fn get(state: web::Data<AppState>, id: web::Path<i32>) -> Result<HttpResponse, ApiError> {
    let model = find(&state, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(AccountView::from(model)))
}

/// Creates an account; its API key is encrypted before it is stored.
#[utoipa::path(
    post,
    path = "/api/v1/accounts",
    operation_id = "create_account",
    tag = "accounts",
    request_body = CreateAccount,
    responses(
        (status = 201, description = "created", body = AccountView),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 409, description = "the name is taken, or no encryption key is configured",
            body = ErrorBody),
        (status = 413, description = "body above `server.body_limit_bytes`", body = ErrorBody),
        (status = 422, description = "an invalid or unknown field", body = ErrorBody),
    )
)]
async fn create(
    state: web::Data<AppState>,
    body: Body<CreateAccount>,
) -> Result<HttpResponse, ApiError> {
    let input = body.into_inner();
    let name = text("name", &input.name, NAME_MAX)?;
    let broker = text("broker", &input.broker, BROKER_MAX)?;
    let insecure = state.allow_insecure_gateways;
    let rest_url = rest_url(&input.rest_url, insecure)?;
    let ws_url = ws_url(&input.ws_url, insecure)?;
    check_api_key(&input.api_key)?;
    let cipher = cipher(&state)?;

    let txn = begin_write(&state.db)
        .await
        .map_err(database("starting a transaction failed"))?;
    if input.is_primary {
        demote_primary(&txn, None)
            .await
            .map_err(database("demoting the previous primary failed"))?;
    }
    let inserted = trading_accounts::ActiveModel {
        name: Set(name.clone()),
        broker: Set(broker),
        rest_url: Set(rest_url),
        ws_url: Set(ws_url),
        // Sealed below, once the row has the id the ciphertext is bound to.
        api_key_ciphertext: Set(String::new()),
        api_key_hint: Set(input.api_key.hint()),
        is_primary: Set(input.is_primary),
        is_active: Set(input.is_active),
        connection_status: Set(ConnectionStatus::Unknown),
        ..Default::default()
    }
    .insert(&txn)
    .await;
    let model = match inserted {
        Ok(m) => m,
        Err(e) => {
            drop(txn);
            return Err(write_error(&state, &name, None, e).await);
        }
    };
    let ciphertext = seal(cipher, model.id, &input.api_key)?;
    let mut sealed: trading_accounts::ActiveModel = model.into();
    sealed.api_key_ciphertext = Set(ciphertext);
    let model = sealed
        .update(&txn)
        .await
        .map_err(database("storing the encrypted API key failed"))?;
    if let Err(e) = txn.commit().await {
        return Err(write_error(&state, &name, None, e).await);
    }
    tracing::info!(account = %model.name, id = model.id, primary = model.is_primary, "account created");
    reload(&state).await;
    Ok(HttpResponse::Created().json(AccountView::from(model)))
}

/// Partial update; `api_key` rotates the key.
#[utoipa::path(
    put,
    path = "/api/v1/accounts/{id}",
    operation_id = "update_account",
    tag = "accounts",
    params(("id" = i32, Path, description = "the account id")),
    request_body = UpdateAccount,
    responses(
        (status = 200, description = "updated", body = AccountView),
        (status = 400, description = "malformed JSON or id", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 409, description = "the name is taken, or no encryption key is configured",
            body = ErrorBody),
        (status = 422, description = "an invalid or unknown field", body = ErrorBody),
    )
)]
async fn update(
    state: web::Data<AppState>,
    id: web::Path<i32>,
    body: Body<UpdateAccount>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let input = body.into_inner();
    let current = find(&state, id).await?;
    let name = input
        .name
        .as_deref()
        .map(|v| text("name", v, NAME_MAX))
        .transpose()?;
    let broker = input
        .broker
        .as_deref()
        .map(|v| text("broker", v, BROKER_MAX))
        .transpose()?;
    let insecure = state.allow_insecure_gateways;
    let rest = input
        .rest_url
        .as_deref()
        .map(|v| rest_url(v, insecure))
        .transpose()?;
    let ws = input
        .ws_url
        .as_deref()
        .map(|v| ws_url(v, insecure))
        .transpose()?;
    // The key follows its host: pointing an account at another gateway needs its key in the same
    // request, else the stored key would be sent to a host chosen by whoever holds the token.
    let moved = rest.as_ref().is_some_and(|r| *r != current.rest_url)
        || ws.as_ref().is_some_and(|w| *w != current.ws_url);
    if moved && input.api_key.is_none() {
        return Err(ApiError::unprocessable(
            "api_key: required when rest_url or ws_url changes (the stored key is never sent to \
             a new gateway)",
        ));
    }
    let sealed = match &input.api_key {
        Some(key) => {
            check_api_key(key)?;
            Some((seal(cipher(&state)?, id, key)?, key.hint()))
        }
        None => None,
    };

    let key_rotated = sealed.is_some();
    let gateway_changed = key_rotated || moved;
    let final_name = name.clone().unwrap_or_else(|| current.name.clone());
    let mut active: trading_accounts::ActiveModel = current.into();
    if let Some(v) = name {
        active.name = Set(v);
    }
    if let Some(v) = broker {
        active.broker = Set(v);
    }
    if let Some(v) = rest {
        active.rest_url = Set(v);
    }
    if let Some(v) = ws {
        active.ws_url = Set(v);
    }
    if let Some((ciphertext, hint)) = sealed {
        active.api_key_ciphertext = Set(ciphertext);
        active.api_key_hint = Set(hint);
    }
    if gateway_changed {
        // The last ping describes the old gateway or key.
        active.connection_status = Set(ConnectionStatus::Unknown);
        active.last_ping_at = Set(None);
        active.last_error = Set(None);
    }
    if let Some(v) = input.is_primary {
        active.is_primary = Set(v);
    }
    if let Some(v) = input.is_active {
        active.is_active = Set(v);
    }

    let txn = begin_write(&state.db)
        .await
        .map_err(database("starting a transaction failed"))?;
    if input.is_primary == Some(true) {
        demote_primary(&txn, Some(id))
            .await
            .map_err(database("demoting the previous primary failed"))?;
    }
    let model = match active.update(&txn).await {
        Ok(m) => m,
        Err(DbErr::RecordNotUpdated) => {
            return Err(ApiError::not_found(format!("no account with id {id}")));
        }
        Err(e) => {
            drop(txn);
            return Err(write_error(&state, &final_name, Some(id), e).await);
        }
    };
    if let Err(e) = txn.commit().await {
        return Err(write_error(&state, &final_name, Some(id), e).await);
    }
    tracing::info!(account = %model.name, id, key_rotated, "account updated");
    reload(&state).await;
    Ok(HttpResponse::Ok().json(AccountView::from(model)))
}

/// Deletes an account that never had executions (otherwise deactivate it: history is kept).
#[utoipa::path(
    delete,
    path = "/api/v1/accounts/{id}",
    operation_id = "delete_account",
    tag = "accounts",
    params(("id" = i32, Path, description = "the account id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 409, description = "the account has open executions, or closed ones whose \
            history must be kept", body = ErrorBody),
    )
)]
async fn delete(state: web::Data<AppState>, id: web::Path<i32>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let account = find(&state, id).await?;
    let of_account =
        || StrategyExecutions::find().filter(strategy_executions::Column::AccountId.eq(id));
    let open = of_account()
        .filter(
            strategy_executions::Column::Status
                .is_not_in([ExecutionStatus::Exited, ExecutionStatus::Failed]),
        )
        .count(&state.db)
        .await
        .map_err(database("counting the account's executions failed"))?;
    if open > 0 {
        return Err(ApiError::conflict(format!(
            "account has open positions: {open} execution(s) of '{}' are not exited; exit them first",
            account.name
        )));
    }
    let closed = of_account()
        .count(&state.db)
        .await
        .map_err(database("counting the account's executions failed"))?;
    if closed > 0 {
        return Err(history_kept(&account.name, closed));
    }
    match TradingAccounts::delete_by_id(id).exec(&state.db).await {
        Ok(r) if r.rows_affected == 0 => {
            return Err(ApiError::not_found(format!("no account with id {id}")));
        }
        Ok(_) => {}
        Err(e) => {
            return Err(match e.sql_err() {
                // An execution was registered meanwhile: the foreign key keeps the account.
                Some(SqlErr::ForeignKeyConstraintViolation(_)) => history_kept(&account.name, 1),
                _ => ApiError::internal("deleting the account failed", e),
            });
        }
    }
    tracing::info!(account = %account.name, id, "account deleted");
    reload(&state).await;
    Ok(HttpResponse::NoContent().finish())
}

fn history_kept(name: &str, executions: u64) -> ApiError {
    ApiError::conflict(format!(
        "account '{name}' has {executions} execution(s) in its history, which must be kept; \
         deactivate it instead (PUT with {{\"is_active\": false}})"
    ))
}

/// Pings the account's gateway and records the result.
#[utoipa::path(
    post,
    path = "/api/v1/accounts/{id}/ping",
    operation_id = "ping_account",
    tag = "accounts",
    params(("id" = i32, Path, description = "the account id")),
    responses(
        (status = 200, description = "the ping's outcome (also when the gateway failed)",
            body = PingOutcome, example = json!({"ok": true, "latency_ms": 3, "broker": "sim",
                "error": null})),
        (status = 400, description = "the id is not a number", body = ErrorBody),
        (status = 401, description = "missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 409, description = "no encryption key, or the stored key cannot be decrypted",
            body = ErrorBody),
    )
)]
async fn ping(state: web::Data<AppState>, id: web::Path<i32>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let model = find(&state, id).await?;
    let account =
        Account::decrypt(model, cipher(&state)?).map_err(|e| ApiError::conflict(e.to_string()))?;
    let outcome = ping_gateway(&account.rest_url, &account.api_key, state.rest_timeout).await;
    record_ping(&state.db, id, &outcome)
        .await
        .map_err(database("recording the ping result failed"))?;
    Ok(HttpResponse::Ok().json(outcome))
}
