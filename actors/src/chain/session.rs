//! `ChainSessionActor`: one viewer's option chain. Not supervised: it lives while its lease
//! is renewed and releases its registry keys when it stops, however it stops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use entity::websocket_sessions::{self, CloseReason, SessionKind};
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde::Serialize;

use super::directory::{ChainDirectoryActor, SessionEnded};
use super::resolve::ChainPlan;
use super::{ChainCreated, ChainError, ChainPush, ChainSnapshot};
use crate::domain::chain::{ChainWindow, LegQuote};
use crate::domain::options::{atm_strike, format_expiry_dashed};
use crate::feed::{
    FeedEvent, Holder, Key, Mode, ReleaseAll, Subscribe, SubscriberId, SubscriptionRegistryActor,
    Tick, Unsubscribe, next_subscriber_id,
};
use crate::status::Lifecycle;

/// Ticks the session may hold unprocessed: enough for the registry's replay of the last price
/// of every key of the largest window (2 × 101 legs + the underlying) on subscribe.
const MAILBOX: usize = 1024;
/// Upper bound on how often a heartbeat is written to `websocket_sessions`.
const HEARTBEAT_WRITE_MAX_EVERY: Duration = Duration::from_secs(30);

/// Returns the current snapshot.
#[derive(Message)]
#[rtype(result = "Result<ChainSnapshot, ChainError>")]
pub struct GetChainSnapshot;

/// Extends the lease by the session timeout.
#[derive(Message)]
#[rtype(result = "Result<(), ChainError>")]
pub struct ChainHeartbeat;

/// Ends the session: releases its keys, closes its viewers and its row, then stops. Answers
/// once the row is written.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseChainSession {
    pub reason: CloseReason,
}

/// Adds a viewer: it gets the current snapshot at once, then every change, at most
/// `max_push_hz` a second. Counts as a heartbeat.
#[derive(Message)]
#[rtype(result = "Result<(), ChainError>")]
pub struct WatchChain {
    pub viewer: Recipient<ChainPush>,
}

#[derive(Message)]
#[rtype(result = "ChainSessionStatus")]
pub struct GetChainSessionStatus;

/// Subscribes the window and records the session; the session stops itself when this fails.
#[derive(Message)]
#[rtype(result = "Result<ChainCreated, ChainError>")]
pub(super) struct OpenSession;

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct ChainSessionStatus {
    pub id: String,
    pub state: Lifecycle,
    /// Always 0: sessions are not supervised.
    pub restarts: u64,
    pub underlying: String,
    pub exchange: String,
    pub expiry: String,
    pub strikes: u32,
    pub mode: Mode,
    pub atm_strike: f64,
    pub window_centre: f64,
    pub underlying_ltp: Option<f64>,
    /// Keys held in the registry (options and the underlying).
    pub symbols: usize,
    pub viewers: usize,
    pub ticks: u64,
    pub pushes: u64,
    /// Snapshots a viewer's full mailbox refused (it gets a later one instead).
    pub pushes_skipped: u64,
    pub recentres: u64,
    pub lease_expires_in_ms: u64,
    pub created_at: DateTime<Utc>,
    pub last_heartbeat_at: DateTime<Utc>,
    /// Symbols the gateway refused, with its reason.
    pub rejected: Vec<String>,
    pub last_error: Option<String>,
}

/// Timing of one session.
#[derive(Debug, Clone, Copy)]
pub(super) struct SessionTiming {
    pub timeout: Duration,
    pub push_interval: Duration,
}

struct Viewer {
    recipient: Recipient<ChainPush>,
    /// Version of the last snapshot it accepted.
    sent: u64,
    /// Earliest time of its next push.
    next_at: Instant,
}

pub struct ChainSessionActor {
    id: String,
    subscriber: SubscriberId,
    plan: Arc<ChainPlan>,
    mode: Mode,
    window: ChainWindow,
    atm: f64,
    underlying_ltp: Option<f64>,
    timing: SessionTiming,
    registry: Addr<SubscriptionRegistryActor>,
    directory: Addr<ChainDirectoryActor>,
    db: DatabaseConnection,
    created_at: DateTime<Utc>,
    opened: bool,
    closing: Option<CloseReason>,
    lease_until: Instant,
    last_heartbeat_at: DateTime<Utc>,
    heartbeat_written_at: Instant,
    version: u64,
    updated_at: DateTime<Utc>,
    rendered: Option<(u64, Arc<str>)>,
    viewers: Vec<Viewer>,
    flush_scheduled: bool,
    /// A centre whose subscription failed; not retried until the target changes.
    failed_centre: Option<f64>,
    ticks: u64,
    pushes: u64,
    pushes_skipped: u64,
    recentres: u64,
    /// Keys of the window the gateway refused, with its reason.
    rejected: BTreeMap<Key, String>,
    last_error: Option<String>,
}

impl ChainSessionActor {
    pub(super) fn new(
        id: String,
        plan: Arc<ChainPlan>,
        mode: Mode,
        timing: SessionTiming,
        registry: Addr<SubscriptionRegistryActor>,
        directory: Addr<ChainDirectoryActor>,
        db: DatabaseConnection,
    ) -> Self {
        let mut window = ChainWindow::new(
            &plan.underlying,
            plan.expiry,
            plan.step,
            plan.strikes,
            plan.centre,
        );
        for (symbol, quote) in &plan.seeds {
            window.apply(symbol, *quote);
        }
        let now = Utc::now();
        Self {
            id,
            subscriber: next_subscriber_id(),
            mode,
            atm: plan.centre,
            underlying_ltp: plan.underlying_ltp,
            window,
            plan,
            timing,
            registry,
            directory,
            db,
            created_at: now,
            opened: false,
            closing: None,
            lease_until: Instant::now() + timing.timeout,
            last_heartbeat_at: now,
            heartbeat_written_at: Instant::now(),
            version: 1,
            updated_at: now,
            rendered: None,
            viewers: Vec::new(),
            flush_scheduled: false,
            failed_centre: None,
            ticks: 0,
            pushes: 0,
            pushes_skipped: 0,
            recentres: 0,
            rejected: BTreeMap::new(),
            last_error: None,
        }
    }

    fn label(&self) -> String {
        let short: String = self.id.chars().take(8).collect();
        format!(
            "chain:{short} {} {}",
            self.plan.underlying,
            format_expiry_dashed(self.plan.expiry)
        )
    }

    fn option_keys(&self, symbols: &[String]) -> Vec<Key> {
        symbols
            .iter()
            .map(|s| Key::new(self.plan.option_exchange.clone(), s.clone()))
            .collect()
    }

    fn subscribe(&self, keys: Vec<Key>, ctx: &Context<Self>) -> Subscribe {
        Subscribe {
            subscriber: self.subscriber,
            label: self.label(),
            recipient: ctx.address().recipient(),
            keys: keys.into_iter().map(|k| (k, self.mode)).collect(),
            holder: Holder::Viewer,
        }
    }

    fn snapshot(&self) -> ChainSnapshot {
        ChainSnapshot {
            id: self.id.clone(),
            underlying: self.plan.underlying.clone(),
            exchange: self.plan.exchange.clone(),
            expiry: format_expiry_dashed(self.plan.expiry),
            atm_strike: self.atm,
            underlying_ltp: self.underlying_ltp,
            strike_step: self.window.step(),
            updated_at: self.updated_at,
            rows: self.window.rows().to_vec(),
        }
    }

    fn created(&self) -> ChainCreated {
        ChainCreated {
            id: self.id.clone(),
            underlying: self.plan.underlying.clone(),
            exchange: self.plan.exchange.clone(),
            underlying_exchange: self.plan.underlying_key.exchange.clone(),
            underlying_symbol: self.plan.underlying_key.symbol.clone(),
            expiry: format_expiry_dashed(self.plan.expiry),
            expiries: self
                .plan
                .expiries
                .iter()
                .map(|d| format_expiry_dashed(*d))
                .collect(),
            atm_strike: self.atm,
            strike_step: self.window.step(),
            strikes: self.plan.strikes,
            mode: self.mode,
            symbols: self.window.symbols(),
        }
    }

    fn new_row(&self) -> websocket_sessions::ActiveModel {
        websocket_sessions::ActiveModel {
            id: Set(self.id.clone()),
            kind: Set(SessionKind::Chain),
            underlying: Set(self.plan.underlying.clone()),
            exchange: Set(self.plan.exchange.clone()),
            expiry: Set(Some(format_expiry_dashed(self.plan.expiry))),
            strikes: Set(i32::try_from(self.plan.strikes).unwrap_or(i32::MAX)),
            mode: Set(i32::from(self.mode.as_u8())),
            created_at: Set(self.created_at),
            last_heartbeat_at: Set(self.last_heartbeat_at),
            closed_at: Set(None),
            close_reason: Set(None),
        }
    }

    fn status(&self) -> ChainSessionStatus {
        let state = if self.closing.is_some() {
            Lifecycle::Stopped
        } else if !self.opened {
            Lifecycle::Starting
        } else if self.last_error.is_some() || !self.rejected.is_empty() {
            Lifecycle::Degraded
        } else {
            Lifecycle::Running
        };
        ChainSessionStatus {
            id: self.id.clone(),
            state,
            restarts: 0,
            underlying: self.plan.underlying.clone(),
            exchange: self.plan.exchange.clone(),
            expiry: format_expiry_dashed(self.plan.expiry),
            strikes: self.plan.strikes,
            mode: self.mode,
            atm_strike: self.atm,
            window_centre: self.window.centre(),
            underlying_ltp: self.underlying_ltp,
            symbols: self.window.rows().len() * 2 + 1,
            viewers: self.viewers.len(),
            ticks: self.ticks,
            pushes: self.pushes,
            pushes_skipped: self.pushes_skipped,
            recentres: self.recentres,
            lease_expires_in_ms: self
                .lease_until
                .saturating_duration_since(Instant::now())
                .as_millis() as u64,
            created_at: self.created_at,
            last_heartbeat_at: self.last_heartbeat_at,
            rejected: self
                .rejected
                .iter()
                .map(|(key, message)| format!("{key}: {message}"))
                .collect(),
            last_error: self.last_error.clone(),
        }
    }

    /// Something a viewer sees changed: a new version, pushed at the viewers' pace.
    fn changed(&mut self, ctx: &mut Context<Self>) {
        self.version += 1;
        self.updated_at = Utc::now();
        self.schedule_flush(ctx);
    }

    /// The JSON of the current version, rendered at most once per version.
    fn rendered(&mut self) -> Option<Arc<str>> {
        if let Some((version, json)) = &self.rendered
            && *version == self.version
        {
            return Some(json.clone());
        }
        match serde_json::to_string(&self.snapshot()) {
            Ok(json) => {
                let json: Arc<str> = json.into();
                self.rendered = Some((self.version, json.clone()));
                Some(json)
            }
            Err(e) => {
                tracing::error!(session = %self.id, error = %e, "could not render a chain snapshot");
                None
            }
        }
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_scheduled {
            return;
        }
        let version = self.version;
        let Some(at) = self
            .viewers
            .iter()
            .filter(|v| v.sent < version)
            .map(|v| v.next_at)
            .min()
        else {
            return;
        };
        self.flush_scheduled = true;
        ctx.run_later(at.saturating_duration_since(Instant::now()), |act, ctx| {
            act.flush_scheduled = false;
            act.flush(ctx);
        });
    }

    /// Pushes the current version to every viewer that is due. A viewer whose mailbox is full
    /// (a slow browser) is skipped and gets the then-current version on its next turn.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        let now = Instant::now();
        let version = self.version;
        if !self
            .viewers
            .iter()
            .any(|v| v.sent < version && v.next_at <= now)
        {
            self.schedule_flush(ctx);
            return;
        }
        let Some(json) = self.rendered() else {
            return;
        };
        let interval = self.timing.push_interval;
        let (mut pushes, mut skipped) = (0, 0);
        self.viewers.retain_mut(|v| {
            if v.sent >= version || v.next_at > now {
                return true;
            }
            v.next_at = now + interval;
            match v.recipient.try_send(ChainPush::Snapshot(json.clone())) {
                Ok(()) => {
                    v.sent = version;
                    pushes += 1;
                    true
                }
                Err(SendError::Full(_)) => {
                    skipped += 1;
                    true
                }
                Err(SendError::Closed(_)) => false,
            }
        });
        self.pushes += pushes;
        self.pushes_skipped += skipped;
        self.schedule_flush(ctx);
    }

    fn extend_lease(&mut self, ctx: &mut Context<Self>) {
        self.lease_until = Instant::now() + self.timing.timeout;
        self.last_heartbeat_at = Utc::now();
        let write_every = HEARTBEAT_WRITE_MAX_EVERY.min(self.timing.timeout / 4);
        if self.opened && self.heartbeat_written_at.elapsed() >= write_every {
            self.heartbeat_written_at = Instant::now();
            let db = self.db.clone();
            let id = self.id.clone();
            let at = self.last_heartbeat_at;
            ctx.spawn(
                async move {
                    let result = websocket_sessions::Entity::update_many()
                        .col_expr(websocket_sessions::Column::LastHeartbeatAt, Expr::value(at))
                        .filter(websocket_sessions::Column::Id.eq(id.as_str()))
                        .filter(websocket_sessions::Column::ClosedAt.is_null())
                        .exec(&db)
                        .await;
                    if let Err(e) = result {
                        tracing::warn!(session = %id, error = %e, "could not record a chain heartbeat");
                    }
                }
                .into_actor(self),
            );
        }
    }

    /// Checks the lease when it was due to run out; re-arms while heartbeats moved it on.
    fn arm_lease(&self, ctx: &mut Context<Self>) {
        let wait = self.lease_until.saturating_duration_since(Instant::now());
        ctx.run_later(wait, |act, ctx| {
            if act.closing.is_some() {
                return;
            }
            if Instant::now() >= act.lease_until {
                tracing::info!(session = %act.id, "chain session lease ran out");
                if let Some(close) = act.begin_close(CloseReason::Timeout) {
                    ctx.wait(close.into_actor(act).map(|(), _, ctx| ctx.stop()));
                }
            } else {
                act.arm_lease(ctx);
            }
        });
    }

    /// Starts ending the session: releases its keys and closes its viewers now, and returns
    /// the write that closes its row (None when it is already ending).
    fn begin_close(&mut self, reason: CloseReason) -> Option<LocalBoxFuture<'static, ()>> {
        if self.closing.is_some() {
            return None;
        }
        self.closing = Some(reason);
        self.registry.do_send(ReleaseAll {
            subscriber: self.subscriber,
        });
        for viewer in self.viewers.drain(..) {
            viewer.recipient.do_send(ChainPush::Closed(reason));
        }
        if !self.opened {
            return Some(async {}.boxed_local());
        }
        tracing::info!(session = %self.id, reason = %reason, "chain session closed");
        Some(close_row(self.db.clone(), self.id.clone(), reason).boxed_local())
    }

    /// Moves the window to `centre`: the entering keys are subscribed first, and only when the
    /// registry accepted them does the window move and the leaving keys get released.
    fn recentre(&mut self, centre: f64, ctx: &mut Context<Self>) {
        if self.failed_centre == Some(centre) {
            return;
        }
        let (next, moved) = self.window.recentred(centre);
        let removed = self.option_keys(&moved.removed);
        let added = self.option_keys(&moved.added);
        let subscribe = (!added.is_empty()).then(|| self.registry.send(self.subscribe(added, ctx)));
        let commit = async move {
            match subscribe {
                None => Ok(()),
                Some(request) => match request.await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(e) => Err(format!("the subscription registry did not answer: {e}")),
                },
            }
        };
        ctx.wait(commit.into_actor(self).map(move |result, act, ctx| {
            if act.closing.is_some() {
                return;
            }
            match result {
                Ok(()) => {
                    tracing::debug!(session = %act.id, from = act.window.centre(), to = centre, "chain window re-centred");
                    act.window = next;
                    let (window, underlying) = (&act.window, &act.plan.underlying_key);
                    act.rejected
                        .retain(|key, _| key == underlying || window.contains(&key.symbol));
                    act.failed_centre = None;
                    act.last_error = None;
                    act.recentres += 1;
                    if !removed.is_empty() {
                        act.registry.do_send(Unsubscribe {
                            subscriber: act.subscriber,
                            keys: removed,
                        });
                    }
                    act.changed(ctx);
                }
                Err(e) => {
                    let message = format!("could not re-centre the window on {centre}: {e}");
                    tracing::warn!(session = %act.id, "{message}");
                    act.failed_centre = Some(centre);
                    act.last_error = Some(message);
                }
            }
        }));
    }

    fn on_tick(&mut self, tick: &Tick, ctx: &mut Context<Self>) {
        self.ticks += 1;
        if *tick.key == self.plan.underlying_key {
            if !(tick.ltp.is_finite() && tick.ltp > 0.0) {
                return;
            }
            let atm = atm_strike(tick.ltp, self.window.step()).unwrap_or(self.atm);
            if self.underlying_ltp != Some(tick.ltp) || self.atm != atm {
                self.underlying_ltp = Some(tick.ltp);
                self.atm = atm;
                self.changed(ctx);
            }
            if let Some(centre) = self.window.recentre_target(tick.ltp) {
                self.recentre(centre, ctx);
            }
        } else if tick.key.exchange == self.plan.option_exchange {
            let quote = LegQuote {
                ltp: Some(tick.ltp),
                bid: tick.bid,
                ask: tick.ask,
                volume: tick.volume,
                oi: tick.oi,
            };
            if self.window.apply(&tick.key.symbol, quote) {
                self.changed(ctx);
            }
        }
    }
}

/// Marks the session's row closed (never overwriting an earlier close).
async fn close_row(db: DatabaseConnection, id: String, reason: CloseReason) {
    let result = websocket_sessions::Entity::update_many()
        .col_expr(
            websocket_sessions::Column::ClosedAt,
            Expr::value(Some(Utc::now())),
        )
        .col_expr(
            websocket_sessions::Column::CloseReason,
            Expr::value(Some(reason.as_str())),
        )
        .filter(websocket_sessions::Column::Id.eq(id.as_str()))
        .filter(websocket_sessions::Column::ClosedAt.is_null())
        .exec(&db)
        .await;
    if let Err(e) = result {
        tracing::error!(session = %id, reason = %reason, error = %e, "could not record the end of a chain session");
    }
}

impl Actor for ChainSessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.arm_lease(ctx);
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) -> Running {
        // Stopped without a close (the system is shutting down): release and record anyway.
        if let Some(close) = self.begin_close(CloseReason::Shutdown) {
            actix::spawn(close);
        }
        Running::Stop
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.directory.do_send(SessionEnded {
            id: self.id.clone(),
        });
    }
}

impl Handler<OpenSession> for ChainSessionActor {
    type Result = ResponseActFuture<Self, Result<ChainCreated, ChainError>>;

    fn handle(&mut self, _: OpenSession, ctx: &mut Context<Self>) -> Self::Result {
        let mut keys = vec![self.plan.underlying_key.clone()];
        keys.extend(self.option_keys(&self.window.symbols()));
        let subscribe = self.registry.send(self.subscribe(keys, ctx));
        let row = self.new_row();
        let db = self.db.clone();
        let id = self.id.clone();
        let open = async move {
            subscribe
                .await
                .map_err(|e| {
                    ChainError::Internal(format!("the subscription registry did not answer: {e}"))
                })?
                .map_err(|e| ChainError::Subscription(e.to_string()))?;
            row.insert(&db).await.map_err(|e| {
                ChainError::Internal(format!("could not record chain session {id}: {e}"))
            })?;
            Ok(())
        };
        Box::pin(open.into_actor(self).map(|result, act, ctx| match result {
            Ok(()) => {
                act.opened = true;
                tracing::info!(session = %act.id, underlying = %act.plan.underlying,
                    expiry = %format_expiry_dashed(act.plan.expiry), "chain session opened");
                Ok(act.created())
            }
            Err(e) => {
                // Nothing was recorded: release whatever was subscribed and go.
                act.begin_close(CloseReason::Shutdown);
                ctx.stop();
                Err(e)
            }
        }))
    }
}

impl Handler<FeedEvent> for ChainSessionActor {
    type Result = ();

    fn handle(&mut self, msg: FeedEvent, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        match msg {
            FeedEvent::Tick(tick) => self.on_tick(&tick, ctx),
            FeedEvent::Rejected { key, message } => {
                tracing::warn!(session = %self.id, key = %key, reason = %message, "gateway refused a chain symbol");
                self.rejected.insert(key, message);
            }
        }
    }
}

impl Handler<GetChainSnapshot> for ChainSessionActor {
    type Result = Result<ChainSnapshot, ChainError>;

    fn handle(&mut self, _: GetChainSnapshot, _ctx: &mut Context<Self>) -> Self::Result {
        match self.closing {
            Some(_) => Err(ChainError::NotFound(self.id.clone())),
            None => Ok(self.snapshot()),
        }
    }
}

impl Handler<ChainHeartbeat> for ChainSessionActor {
    type Result = Result<(), ChainError>;

    fn handle(&mut self, _: ChainHeartbeat, ctx: &mut Context<Self>) -> Self::Result {
        if self.closing.is_some() {
            return Err(ChainError::NotFound(self.id.clone()));
        }
        self.extend_lease(ctx);
        Ok(())
    }
}

impl Handler<WatchChain> for ChainSessionActor {
    type Result = Result<(), ChainError>;

    fn handle(&mut self, msg: WatchChain, ctx: &mut Context<Self>) -> Self::Result {
        if self.closing.is_some() {
            return Err(ChainError::NotFound(self.id.clone()));
        }
        self.extend_lease(ctx);
        let mut viewer = Viewer {
            recipient: msg.viewer,
            sent: 0,
            next_at: Instant::now(),
        };
        if let Some(json) = self.rendered()
            && viewer.recipient.try_send(ChainPush::Snapshot(json)).is_ok()
        {
            viewer.sent = self.version;
            viewer.next_at = Instant::now() + self.timing.push_interval;
            self.pushes += 1;
        }
        self.viewers.push(viewer);
        self.schedule_flush(ctx);
        Ok(())
    }
}

impl Handler<CloseChainSession> for ChainSessionActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: CloseChainSession, _ctx: &mut Context<Self>) -> Self::Result {
        match self.begin_close(msg.reason) {
            Some(close) => Box::pin(close.into_actor(self).map(|(), _, ctx| ctx.stop())),
            None => Box::pin(actix::fut::ready(())),
        }
    }
}

impl Handler<GetChainSessionStatus> for ChainSessionActor {
    type Result = MessageResult<GetChainSessionStatus>;

    fn handle(&mut self, _: GetChainSessionStatus, _ctx: &mut Context<Self>) -> Self::Result {
        // Sockets that closed since the last push are not viewers any more.
        self.viewers.retain(|v| v.recipient.connected());
        MessageResult(self.status())
    }
}
