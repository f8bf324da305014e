//! Trading accounts (docs/ARCHITECTURE.md §4.3): loading them with their API keys decrypted,
//! pinging their gateways, and the [`AccountMonitorActor`] that decides which account carries the
//! market-data feed.
//!
//! The feed account is the primary while it is healthy (fewer than `failover_after_failures`
//! consecutive failed pings); otherwise the first healthy active non-primary account (lowest
//! id); back to the primary as soon as it answers again. An account is *reachable* by the same
//! rule: one slow or failed ping is not an outage, `failover_after_failures` in a row are. The
//! decision is sent as [`FeedAccountChanged`] once after the first round of pings and then
//! whenever the chosen account or its reachability changes; every account's reachability goes
//! to the followers of [`FollowReach`] (the position monitor routes REST quotes with it).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use entity::prelude::*;
use entity::trading_accounts;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use serde::Serialize;
use serde_json::json;

use crate::domain::mask::{clip, mask_secret};
use crate::feed::FeedTarget;
use crate::openalgo::rest::RestClient;
use crate::orders::{AccountEndpoint, SetAccounts};
use crate::secrets::{ApiKey, DecryptError, KeyCipher};
use crate::status::Lifecycle;
use crate::supervised::{RestartTracker, Supervision};

/// An account with its API key decrypted. `Debug` masks the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub id: i32,
    pub name: String,
    pub broker: String,
    pub rest_url: String,
    pub ws_url: String,
    pub api_key: ApiKey,
    pub is_primary: bool,
    pub is_active: bool,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("broker", &self.broker)
            .field("rest_url", &self.rest_url)
            .field("ws_url", &self.ws_url)
            .field("api_key", &self.api_key)
            .field("is_primary", &self.is_primary)
            .field("is_active", &self.is_active)
            .finish()
    }
}

impl Account {
    /// Decrypts the API key of a stored account.
    pub fn decrypt(
        model: trading_accounts::Model,
        cipher: &KeyCipher,
    ) -> Result<Account, LoadError> {
        let api_key = cipher
            .decrypt(model.id, &model.api_key_ciphertext)
            .map_err(|source| match source {
                DecryptError::Unbound => LoadError::Unbound {
                    name: model.name.clone(),
                },
                source => LoadError::WrongKey {
                    name: model.name.clone(),
                    source,
                },
            })?;
        Ok(Account {
            id: model.id,
            name: model.name,
            broker: model.broker,
            rest_url: model.rest_url,
            ws_url: model.ws_url,
            api_key,
            is_primary: model.is_primary,
            is_active: model.is_active,
        })
    }

    /// What the feed connection needs to carry the market data on this account's gateway.
    pub fn feed_target(&self) -> FeedTarget {
        FeedTarget {
            account_id: self.id,
            account_name: self.name.clone(),
            ws_url: self.ws_url.clone(),
            rest_url: self.rest_url.clone(),
            api_key: self.api_key.clone(),
        }
    }

    /// Where exits and quotes for this account's legs go.
    pub fn endpoint(&self) -> AccountEndpoint {
        AccountEndpoint {
            id: self.id,
            name: self.name.clone(),
            rest_url: self.rest_url.clone(),
            ws_url: self.ws_url.clone(),
            api_key: self.api_key.clone(),
        }
    }

    /// A REST client bound to this account's gateway and key.
    pub fn rest_client(&self, timeout: Duration) -> RestClient {
        RestClient::new(&self.rest_url, &self.api_key, timeout)
    }
}

/// Why the accounts could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading trading accounts: {0}")]
    Database(#[from] DbErr),
    #[error(
        "{count} trading account(s) have encrypted API keys but security.encryption_key \
         (SUPERVISOR__SECURITY__ENCRYPTION_KEY) is not set"
    )]
    MissingKey { count: usize },
    #[error(
        "the configured encryption key cannot decrypt the API key of account '{name}': wrong key?"
    )]
    WrongKey {
        name: String,
        #[source]
        source: DecryptError,
    },
    #[error(
        "the API key of account '{name}' is stored without its account binding; restart the \
         service to re-encrypt it"
    )]
    Unbound { name: String },
    #[error("the API key of account '{name}' could not be re-encrypted")]
    Encrypt { name: String },
}

/// Re-encrypts every API key stored before ciphertexts were bound to their account (associated
/// data = the account id), in one transaction; returns how many rows changed. A row is only
/// rewritten while it still holds the value that was read (an edit in between wins). Runs at
/// start, after the schema migrations: those never see the encryption key.
pub async fn bind_stored_keys(
    db: &DatabaseConnection,
    cipher: &KeyCipher,
) -> Result<usize, LoadError> {
    let txn = db.begin().await?;
    let rows = TradingAccounts::find()
        .order_by_asc(trading_accounts::Column::Id)
        .all(&txn)
        .await?;
    let mut bound = 0;
    for row in rows {
        if !KeyCipher::is_unbound(&row.api_key_ciphertext) {
            continue;
        }
        let key = cipher
            .decrypt_unbound(&row.api_key_ciphertext)
            .map_err(|source| LoadError::WrongKey {
                name: row.name.clone(),
                source,
            })?;
        let sealed = cipher
            .encrypt(row.id, &key)
            .map_err(|_| LoadError::Encrypt {
                name: row.name.clone(),
            })?;
        let updated = TradingAccounts::update_many()
            .col_expr(
                trading_accounts::Column::ApiKeyCiphertext,
                Expr::value(sealed),
            )
            .filter(trading_accounts::Column::Id.eq(row.id))
            .filter(trading_accounts::Column::ApiKeyCiphertext.eq(row.api_key_ciphertext))
            .exec(&txn)
            .await?;
        bound += updated.rows_affected as usize;
    }
    txn.commit().await?;
    Ok(bound)
}

/// Every account (active or not), ordered by id, with its API key decrypted.
pub async fn load_accounts(
    db: &DatabaseConnection,
    cipher: &KeyCipher,
) -> Result<Vec<Account>, LoadError> {
    load_all(db, Some(cipher)).await
}

/// Like [`load_accounts`]; without a key it succeeds only when no account exists.
pub async fn load_all(
    db: &DatabaseConnection,
    cipher: Option<&KeyCipher>,
) -> Result<Vec<Account>, LoadError> {
    let rows = TradingAccounts::find()
        .order_by_asc(trading_accounts::Column::Id)
        .all(db)
        .await?;
    match cipher {
        Some(cipher) => rows
            .into_iter()
            .map(|model| Account::decrypt(model, cipher))
            .collect(),
        None if rows.is_empty() => Ok(Vec::new()),
        None => Err(LoadError::MissingKey { count: rows.len() }),
    }
}

/// The answer to one `ping` of a gateway.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PingOutcome {
    pub ok: bool,
    pub latency_ms: u64,
    /// The broker the gateway reports (`data.broker`).
    pub broker: Option<String>,
    /// Why the ping failed; never contains the API key.
    pub error: Option<String>,
    #[serde(skip)]
    #[schema(ignore)]
    pub at: DateTime<Utc>,
}

/// Calls the gateway's `/api/v1/ping` with `api_key`, waiting at most `timeout`.
pub async fn ping_gateway(rest_url: &str, api_key: &ApiKey, timeout: Duration) -> PingOutcome {
    let client = RestClient::new(rest_url, api_key, timeout);
    let at = Utc::now();
    let started = Instant::now();
    let result = match actix_rt::time::timeout(timeout, client.call("ping", json!({}))).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("ping: no answer within {} ms", timeout.as_millis())),
    };
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(body) => PingOutcome {
            ok: true,
            latency_ms,
            broker: body["data"]["broker"].as_str().map(clip),
            error: None,
            at,
        },
        Err(message) => PingOutcome {
            ok: false,
            latency_ms,
            broker: None,
            error: Some(clip(&scrub(&message, api_key.expose()))),
            at,
        },
    }
}

/// Replaces any occurrence of the key in a message (a gateway could echo it) by its mask.
fn scrub(message: &str, api_key: &str) -> String {
    if api_key.is_empty() {
        message.to_owned()
    } else {
        message.replace(api_key, &mask_secret(api_key))
    }
}

/// Stores a ping's result in the account row (`connection_status`, `last_ping_at`,
/// `last_error`).
pub async fn record_ping(
    db: &DatabaseConnection,
    account_id: i32,
    outcome: &PingOutcome,
) -> Result<(), DbErr> {
    let status = if outcome.ok {
        ConnectionStatus::Connected
    } else {
        ConnectionStatus::Failed
    };
    TradingAccounts::update_many()
        .set(trading_accounts::ActiveModel {
            connection_status: Set(status),
            last_ping_at: Set(Some(outcome.at)),
            last_error: Set(outcome.error.as_deref().map(clip)),
            ..Default::default()
        })
        .filter(trading_accounts::Column::Id.eq(account_id))
        .exec(db)
        .await
        .map(|_| ())
}

#[derive(Debug, Clone)]
pub struct AccountMonitorSettings {
    pub ping_interval: Duration,
    /// Timeout of one ping (the gateway REST timeout).
    pub rest_timeout: Duration,
    pub failover_after_failures: u32,
    pub supervision: Supervision,
}

/// The account that should carry the market-data feed now.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct FeedAccountChanged {
    /// None when no account is active.
    pub target: Option<FeedTarget>,
    /// The chosen account has failed fewer than `failover_after_failures` consecutive pings.
    pub reachable: bool,
    pub reason: String,
}

/// One account's gateway health, as the pings show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Reach {
    pub account_id: i32,
    /// Fewer than `failover_after_failures` consecutive failed pings.
    pub reachable: bool,
    /// The last ping was answered (true before the first one).
    pub answered_last_ping: bool,
}

/// Every active account's reachability, sent to the followers whenever it changes.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct AccountsReach(pub Vec<Reach>);

/// Keeps a follower told every active account's reachability (the current view at once).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FollowReach(pub Recipient<AccountsReach>);

/// Keeps a follower (the order gateway, the position monitor) given every account's endpoint
/// after each load; the current view is sent at once when there is one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FollowAccounts(pub Recipient<SetAccounts>);

/// Re-read the accounts table (after an edit); answers once the new view is in place.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct ReloadAccounts;

#[derive(Debug, Message)]
#[rtype(result = "AccountsStatus")]
pub struct GetAccountsStatus;

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct AccountsStatus {
    pub lifecycle: Lifecycle,
    pub restarts: u64,
    pub feed_account: Option<FeedAccount>,
    /// The feed account answered its last ping.
    pub reachable: bool,
    pub reason: String,
    /// Why the accounts could not be (re)loaded, if the last attempt failed.
    pub last_error: Option<String>,
    pub accounts: Vec<AccountHealth>,
}

#[derive(utoipa::ToSchema, Debug, Clone, PartialEq, Serialize)]
pub struct FeedAccount {
    pub id: i32,
    pub name: String,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct AccountHealth {
    pub id: i32,
    pub name: String,
    pub is_primary: bool,
    pub is_active: bool,
    pub consecutive_failures: u32,
    /// Fewer than `failover_after_failures` consecutive failed pings.
    pub reachable: bool,
    pub ping_in_flight: bool,
    pub last_ping_at: Option<DateTime<Utc>>,
    pub last_latency_ms: Option<u64>,
    pub last_error: Option<String>,
    /// Masked API key prefix.
    pub api_key_hint: String,
}

/// One account and what the monitor knows about its gateway.
#[derive(Debug)]
struct Monitored {
    account: Account,
    /// Changes when the URL, key or activity changes; results of older pings are discarded.
    epoch: u64,
    in_flight: bool,
    consecutive_failures: u32,
    /// Result of the last ping of the current configuration; None before the first one.
    last_ok: Option<bool>,
    last_ping_at: Option<DateTime<Utc>>,
    last_latency_ms: Option<u64>,
    last_error: Option<String>,
}

impl Monitored {
    fn new(account: Account, epoch: u64) -> Self {
        Self {
            account,
            epoch,
            in_flight: false,
            consecutive_failures: 0,
            last_ok: None,
            last_ping_at: None,
            last_latency_ms: None,
            last_error: None,
        }
    }

    fn healthy(&self, threshold: u32) -> bool {
        self.consecutive_failures < threshold
    }
}

/// The feed account among the active accounts (ordered by id), and why.
fn choose_feed(active: &[&Monitored], threshold: u32) -> (Option<i32>, String) {
    let Some(first) = active.first() else {
        return (None, "no active trading account".into());
    };
    let primary = active.iter().find(|m| m.account.is_primary);
    if let Some(p) = primary.filter(|p| p.healthy(threshold)) {
        let reason = match p.consecutive_failures {
            0 => format!("primary account '{}' is healthy", p.account.name),
            n => format!(
                "primary account '{}' is healthy ({n} of {threshold} tolerated consecutive \
                 pings failed)",
                p.account.name
            ),
        };
        return (Some(p.account.id), reason);
    }
    let why = match primary {
        Some(p) => format!(
            "primary account '{}' failed {} consecutive pings",
            p.account.name, p.consecutive_failures
        ),
        None => "no active primary account".into(),
    };
    let backup = active
        .iter()
        .find(|m| !m.account.is_primary && m.healthy(threshold));
    match (backup, primary) {
        (Some(b), _) => (
            Some(b.account.id),
            format!("{why}; feed on account '{}'", b.account.name),
        ),
        (None, Some(p)) => (
            Some(p.account.id),
            format!("{why} and no other active account is healthy; staying on the primary"),
        ),
        (None, None) => (
            Some(first.account.id),
            format!(
                "{why} and no active account is healthy; using account '{}'",
                first.account.name
            ),
        ),
    }
}

/// Pings every account's gateway, records the results and decides the feed account.
pub struct AccountMonitorActor {
    db: DatabaseConnection,
    cipher: Option<KeyCipher>,
    settings: AccountMonitorSettings,
    recipient: Recipient<FeedAccountChanged>,
    followers: Vec<Recipient<SetAccounts>>,
    reach_followers: Vec<Recipient<AccountsReach>>,
    /// What the reach followers were last told.
    reach: Option<Vec<Reach>>,
    /// Every account's endpoint as last loaded (None before the first load).
    endpoints: Option<Vec<AccountEndpoint>>,
    accounts: BTreeMap<i32, Monitored>,
    next_epoch: u64,
    /// Loads run concurrently; only a load newer than the last applied one is applied.
    load_seq: u64,
    applied_seq: u64,
    load_error: Option<String>,
    feed: Option<i32>,
    reason: String,
    /// What the recipient was last told: (target, reachable). None before the first decision.
    announced: Option<(Option<FeedTarget>, bool)>,
    restarts: RestartTracker,
}

impl AccountMonitorActor {
    pub fn new(
        db: DatabaseConnection,
        cipher: Option<KeyCipher>,
        settings: AccountMonitorSettings,
        recipient: Recipient<FeedAccountChanged>,
    ) -> Self {
        Self {
            db,
            cipher,
            restarts: RestartTracker::new(settings.supervision),
            settings,
            recipient,
            followers: Vec::new(),
            reach_followers: Vec::new(),
            reach: None,
            endpoints: None,
            accounts: BTreeMap::new(),
            next_epoch: 0,
            load_seq: 0,
            applied_seq: 0,
            load_error: None,
            feed: None,
            reason: "waiting for the first round of pings".into(),
            announced: None,
        }
    }

    /// Reads the table; `on_loaded` applies the result.
    ///
    /// Database work runs as a runtime task rather than inside the actor's own futures: those
    /// are dropped outside the runtime at shutdown, where a pooled connection cannot be returned.
    /// The same holds for recording ping results.
    fn load(
        &mut self,
    ) -> impl std::future::Future<Output = (u64, Result<Vec<Account>, String>)> + 'static {
        self.load_seq += 1;
        let seq = self.load_seq;
        let db = self.db.clone();
        let cipher = self.cipher.clone();
        async move {
            let loading = tokio::spawn(async move {
                load_all(&db, cipher.as_ref())
                    .await
                    .map_err(|e| e.to_string())
            });
            let result = loading
                .await
                .unwrap_or_else(|e| Err(format!("loading trading accounts was interrupted: {e}")));
            (seq, result)
        }
    }

    /// Periodic round: reload (picks up any edit) and ping every active account that has no
    /// ping in flight.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        ctx.spawn(self.load().into_actor(self).map(|(seq, result), act, ctx| {
            // A failed reload keeps the last good view; the error shows in the status.
            let _ = act.on_loaded(seq, result, ctx);
            let ids: Vec<i32> = act.accounts.keys().copied().collect();
            for id in ids {
                act.ping(id, ctx);
            }
        }));
    }

    fn on_loaded(
        &mut self,
        seq: u64,
        result: Result<Vec<Account>, String>,
        ctx: &mut Context<Self>,
    ) -> Result<(), String> {
        if seq <= self.applied_seq {
            // A newer view is already in place.
            return Ok(());
        }
        match result {
            Err(message) => {
                if self.load_error.as_deref() != Some(message.as_str()) {
                    tracing::error!(error = %message, "loading trading accounts failed");
                }
                self.load_error = Some(message.clone());
                Err(message)
            }
            Ok(loaded) => {
                self.applied_seq = seq;
                self.load_error = None;
                let endpoints: Vec<AccountEndpoint> =
                    loaded.iter().map(Account::endpoint).collect();
                if self.endpoints.as_ref() != Some(&endpoints) {
                    for f in &self.followers {
                        f.do_send(SetAccounts(endpoints.clone()));
                    }
                    self.endpoints = Some(endpoints);
                }
                self.apply(loaded, ctx);
                Ok(())
            }
        }
    }

    /// Replaces the view of the accounts, keeping the health of those whose gateway and key did
    /// not change, pings those not pinged yet, and re-decides.
    fn apply(&mut self, loaded: Vec<Account>, ctx: &mut Context<Self>) {
        let mut previous = std::mem::take(&mut self.accounts);
        for account in loaded {
            let id = account.id;
            let monitored = match previous.remove(&id) {
                Some(mut old) => {
                    let changed = old.account.rest_url != account.rest_url
                        || old.account.api_key != account.api_key
                        || old.account.is_active != account.is_active;
                    if changed {
                        self.next_epoch += 1;
                        let in_flight = old.in_flight;
                        old = Monitored::new(account, self.next_epoch);
                        // An old ping may still be out; its answer is discarded, and the new
                        // configuration is pinged once it is back (never two at once).
                        old.in_flight = in_flight;
                    } else {
                        old.account = account;
                    }
                    old
                }
                None => {
                    self.next_epoch += 1;
                    Monitored::new(account, self.next_epoch)
                }
            };
            self.accounts.insert(id, monitored);
        }
        let pending: Vec<i32> = self
            .accounts
            .values()
            .filter(|m| m.last_ok.is_none())
            .map(|m| m.account.id)
            .collect();
        for id in pending {
            self.ping(id, ctx);
        }
        self.decide();
    }

    /// Pings one active account unless a ping of it is already in flight.
    fn ping(&mut self, id: i32, ctx: &mut Context<Self>) {
        let timeout = self.settings.rest_timeout;
        let Some(m) = self.accounts.get_mut(&id) else {
            return;
        };
        if m.in_flight || !m.account.is_active {
            return;
        }
        m.in_flight = true;
        let epoch = m.epoch;
        let url = m.account.rest_url.clone();
        let key = m.account.api_key.clone();
        let ping = async move { ping_gateway(&url, &key, timeout).await };
        ctx.spawn(
            ping.into_actor(self)
                .map(move |outcome, act, ctx| act.on_ping(id, epoch, outcome, ctx)),
        );
    }

    fn on_ping(&mut self, id: i32, epoch: u64, outcome: PingOutcome, ctx: &mut Context<Self>) {
        let threshold = self.settings.failover_after_failures;
        let Some(m) = self.accounts.get_mut(&id) else {
            return;
        };
        m.in_flight = false;
        if m.epoch != epoch {
            // The account changed while this ping was out: ping the new configuration.
            self.ping(id, ctx);
            return;
        }
        m.last_ping_at = Some(outcome.at);
        m.last_latency_ms = Some(outcome.latency_ms);
        if outcome.ok {
            if m.consecutive_failures > 0 {
                tracing::info!(
                    account = %m.account.name,
                    after_failures = m.consecutive_failures,
                    "account gateway answers again"
                );
            }
            m.consecutive_failures = 0;
            m.last_error = None;
            m.last_ok = Some(true);
        } else {
            m.consecutive_failures = m.consecutive_failures.saturating_add(1);
            m.last_error = outcome.error.clone();
            m.last_ok = Some(false);
            if m.consecutive_failures <= threshold {
                tracing::warn!(
                    account = %m.account.name,
                    key = %m.account.api_key.hint(),
                    failures = m.consecutive_failures,
                    error = outcome.error.as_deref().unwrap_or(""),
                    "account ping failed"
                );
            }
        }
        let db = self.db.clone();
        let name = m.account.name.clone();
        tokio::spawn(async move {
            if let Err(e) = record_ping(&db, id, &outcome).await {
                tracing::warn!(account = %name, error = %e, "recording a ping result failed");
            }
        });
        self.decide();
    }

    /// Chooses the feed account once every active account has an answer for its current
    /// configuration, and tells the recipient when the choice or its reachability changed.
    fn decide(&mut self) {
        let active: Vec<&Monitored> = self
            .accounts
            .values()
            .filter(|m| m.account.is_active)
            .collect();
        if active.iter().any(|m| m.last_ok.is_none()) {
            return;
        }
        let threshold = self.settings.failover_after_failures;
        let reach: Vec<Reach> = active
            .iter()
            .map(|m| Reach {
                account_id: m.account.id,
                reachable: m.healthy(threshold),
                answered_last_ping: m.last_ok != Some(false),
            })
            .collect();
        if self.reach.as_ref() != Some(&reach) {
            for f in &self.reach_followers {
                f.do_send(AccountsReach(reach.clone()));
            }
            self.reach = Some(reach);
        }
        let (feed, reason) = choose_feed(&active, threshold);
        let chosen = feed.and_then(|id| self.accounts.get(&id));
        let target = chosen.map(|m| m.account.feed_target());
        // One failed ping is not an outage: unreachable takes `threshold` in a row.
        let reachable = chosen.is_some_and(|m| m.healthy(threshold));
        self.feed = feed;
        self.reason = reason;
        let decision = (target, reachable);
        if self.announced.as_ref() == Some(&decision) {
            return;
        }
        tracing::info!(
            account = decision.0.as_ref().map(|t| t.account_name.as_str()).unwrap_or("none"),
            reachable = decision.1,
            reason = %self.reason,
            "feed account decided"
        );
        self.recipient.do_send(FeedAccountChanged {
            target: decision.0.clone(),
            reachable: decision.1,
            reason: self.reason.clone(),
        });
        self.announced = Some(decision);
    }

    fn status(&self) -> AccountsStatus {
        let reachable = self.announced.as_ref().is_some_and(|(_, r)| *r);
        let feed = self.feed.and_then(|id| self.accounts.get(&id));
        let on_primary = feed.is_some_and(|m| m.account.is_primary);
        let lifecycle = if self.restarts.faulted() {
            Lifecycle::Faulted
        } else if self.announced.is_none() {
            Lifecycle::Starting
        } else if self.load_error.is_some() || !reachable || !on_primary {
            Lifecycle::Degraded
        } else {
            Lifecycle::Running
        };
        AccountsStatus {
            lifecycle,
            restarts: self.restarts.restarts(),
            feed_account: feed.map(|m| FeedAccount {
                id: m.account.id,
                name: m.account.name.clone(),
            }),
            reachable,
            reason: self.reason.clone(),
            last_error: self.load_error.clone(),
            accounts: self
                .accounts
                .values()
                .map(|m| AccountHealth {
                    id: m.account.id,
                    name: m.account.name.clone(),
                    is_primary: m.account.is_primary,
                    is_active: m.account.is_active,
                    consecutive_failures: m.consecutive_failures,
                    reachable: m.healthy(self.settings.failover_after_failures),
                    ping_in_flight: m.in_flight,
                    last_ping_at: m.last_ping_at,
                    last_latency_ms: m.last_latency_ms,
                    last_error: m.last_error.clone(),
                    api_key_hint: m.account.api_key.hint(),
                })
                .collect(),
        }
    }
}

impl Actor for AccountMonitorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.restarts.faulted() {
            return;
        }
        self.tick(ctx);
        ctx.run_interval(self.settings.ping_interval, |act, ctx| act.tick(ctx));
    }
}

impl actix::Supervised for AccountMonitorActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Pings in flight died with the old context.
        for m in self.accounts.values_mut() {
            m.in_flight = false;
        }
        // A handler cut short may have left a follower untold: tell them all again at the
        // next decision (the accounts themselves are reloaded from the database at start).
        self.announced = None;
        self.reach = None;
        self.endpoints = None;
        self.restarts.on_restart("AccountMonitorActor");
    }
}

impl Handler<FollowAccounts> for AccountMonitorActor {
    type Result = ();

    fn handle(&mut self, msg: FollowAccounts, _ctx: &mut Context<Self>) {
        if let Some(endpoints) = &self.endpoints {
            msg.0.do_send(SetAccounts(endpoints.clone()));
        }
        self.followers.push(msg.0);
    }
}

impl Handler<FollowReach> for AccountMonitorActor {
    type Result = ();

    fn handle(&mut self, msg: FollowReach, _ctx: &mut Context<Self>) {
        if let Some(reach) = &self.reach {
            msg.0.do_send(AccountsReach(reach.clone()));
        }
        self.reach_followers.push(msg.0);
    }
}

impl Handler<ReloadAccounts> for AccountMonitorActor {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, _: ReloadAccounts, _ctx: &mut Context<Self>) -> Self::Result {
        Box::pin(
            self.load()
                .into_actor(self)
                .map(|(seq, result), act, ctx| act.on_loaded(seq, result, ctx)),
        )
    }
}

impl Handler<GetAccountsStatus> for AccountMonitorActor {
    type Result = MessageResult<GetAccountsStatus>;

    fn handle(&mut self, _: GetAccountsStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitored(id: i32, primary: bool, failures: u32) -> Monitored {
        let mut m = Monitored::new(
            Account {
                id,
                name: format!("acc{id}"),
                broker: "sim".into(),
                rest_url: "http://127.0.0.1:1".into(),
                ws_url: "ws://127.0.0.1:1".into(),
                api_key: format!("key-{id}-0123456789").into(),
                is_primary: primary,
                is_active: true,
            },
            1,
        );
        m.consecutive_failures = failures;
        m.last_ok = Some(failures == 0);
        m
    }

    fn choose(accounts: &[Monitored]) -> (Option<i32>, String) {
        let refs: Vec<&Monitored> = accounts.iter().collect();
        choose_feed(&refs, 3)
    }

    #[test]
    fn the_healthy_primary_feeds() {
        let (feed, reason) = choose(&[monitored(1, false, 0), monitored(2, true, 2)]);
        assert_eq!(feed, Some(2), "two failures are below the threshold of 3");
        assert!(
            reason.contains("primary account 'acc2' is healthy (2 of 3 tolerated"),
            "{reason}"
        );
        let (_, reason) = choose(&[monitored(2, true, 0)]);
        assert_eq!(reason, "primary account 'acc2' is healthy");
    }

    #[test]
    fn a_failed_primary_fails_over_to_the_lowest_healthy_id() {
        let (feed, reason) = choose(&[
            monitored(1, false, 3),
            monitored(2, true, 3),
            monitored(3, false, 1),
            monitored(4, false, 0),
        ]);
        assert_eq!(feed, Some(3));
        assert!(reason.contains("failed 3 consecutive pings"), "{reason}");
        assert!(reason.contains("'acc3'"), "{reason}");
    }

    #[test]
    fn nothing_healthy_stays_on_the_primary() {
        let (feed, reason) = choose(&[monitored(1, false, 5), monitored(2, true, 4)]);
        assert_eq!(feed, Some(2));
        assert!(reason.contains("staying on the primary"), "{reason}");
    }

    #[test]
    fn without_a_primary_the_first_healthy_account_feeds() {
        assert_eq!(
            choose(&[monitored(1, false, 3), monitored(2, false, 0)]).0,
            Some(2)
        );
        let (feed, reason) = choose(&[monitored(1, false, 3), monitored(2, false, 3)]);
        assert_eq!(feed, Some(1));
        assert!(reason.contains("no active primary"), "{reason}");
        assert_eq!(choose(&[]).0, None);
    }

    #[test]
    fn account_debug_masks_the_key() {
        let account = monitored(1, true, 0).account;
        let shown = format!("{account:?}");
        assert!(!shown.contains("key-1-0123456789"), "{shown}");
        assert!(shown.contains("key-…"), "{shown}");
    }

    #[test]
    fn scrub_removes_the_key_from_messages() {
        let key = "sk-live-0123456789";
        assert_eq!(
            scrub(&format!("ping: HTTP 403: bad key {key}"), key),
            "ping: HTTP 403: bad key sk-l…"
        );
        assert_eq!(scrub("unreachable", ""), "unreachable");
    }
}
