//! `ChainDirectoryActor`: creates chain sessions, knows them by id and reports on them. It
//! holds the gateway to read chains from (the feed account's) and the registry sessions
//! subscribe through.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use clock::SharedClock;
use entity::websocket_sessions::{self, CloseReason, SessionKind};
use futures_util::FutureExt;
use futures_util::future::{LocalBoxFuture, Shared, join_all};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::Serialize;

use super::resolve::{ChainPlan, PlanKey, resolve};
use super::session::{
    ChainSessionActor, ChainSessionStatus, CloseChainSession, GetChainSessionStatus, OpenSession,
    SessionTiming,
};
use super::{ChainCreated, ChainError, ChainRequest, ChainSettings, MAX_STRIKES};
use crate::domain::options::expiry_is_live;
use crate::feed::{Mode, SubscriptionRegistryActor};
use crate::openalgo::rest::RestClient;
use crate::secrets::ApiKey;
use crate::status::Lifecycle;
use crate::supervised::RestartTracker;

/// How long a gateway answer about a chain is reused for further viewers of the same chain
/// (their live prices come from the feed; this only spares the gateway's rate limit).
const PLAN_TTL: Duration = Duration::from_secs(5);
/// How often the rows of ended sessions past their retention are deleted (also at every new
/// session).
const PURGE_EVERY: Duration = Duration::from_secs(600);

type PlanFuture = Shared<LocalBoxFuture<'static, Result<Arc<ChainPlan>, ChainError>>>;

/// Read option chains from this gateway (the feed account's). `Debug` masks the key.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct SetChainGateway {
    pub rest_url: String,
    pub api_key: ApiKey,
}

impl std::fmt::Debug for SetChainGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetChainGateway")
            .field("rest_url", &self.rest_url)
            .field("api_key", &self.api_key)
            .finish()
    }
}

/// Creates a session for one viewer.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<ChainCreated, ChainError>")]
pub struct CreateChainSession(pub ChainRequest);

/// The session with this id, if it is running.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Option<Addr<ChainSessionActor>>")]
pub struct FindChainSession {
    pub id: String,
}

#[derive(Message)]
#[rtype(result = "ChainDirectoryStatus")]
pub struct GetChainDirectoryStatus;

/// Closes every session with reason `shutdown`; answers when their rows are written.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAllChainSessions;

/// A session stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SessionEnded {
    pub id: String,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct GatewayView {
    pub rest_url: String,
    /// Masked prefix.
    pub api_key: String,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct ChainDirectoryStatus {
    pub state: Lifecycle,
    pub restarts: u64,
    pub enabled: bool,
    pub gateway: Option<GatewayView>,
    pub sessions: Vec<ChainSessionStatus>,
    pub opened_total: u64,
    pub ended_total: u64,
}

struct Gateway {
    view: GatewayView,
    client: RestClient,
}

pub struct ChainDirectoryActor {
    settings: ChainSettings,
    clock: SharedClock,
    db: DatabaseConnection,
    registry: Addr<SubscriptionRegistryActor>,
    gateway: Option<Gateway>,
    plans: HashMap<PlanKey, (Instant, PlanFuture)>,
    sessions: HashMap<String, Addr<ChainSessionActor>>,
    /// The client of each session in `sessions`.
    owners: HashMap<String, String>,
    /// Sessions being created, per client: they count against the caps already.
    opening: HashMap<String, usize>,
    restarts: RestartTracker,
    /// Rows left open by an earlier run have been closed.
    swept: bool,
    opened_total: u64,
    ended_total: u64,
}

impl ChainDirectoryActor {
    pub fn new(
        settings: ChainSettings,
        clock: SharedClock,
        db: DatabaseConnection,
        registry: Addr<SubscriptionRegistryActor>,
    ) -> Self {
        Self {
            restarts: RestartTracker::new(settings.supervision),
            settings,
            clock,
            db,
            registry,
            gateway: None,
            plans: HashMap::new(),
            sessions: HashMap::new(),
            owners: HashMap::new(),
            opening: HashMap::new(),
            swept: false,
            opened_total: 0,
            ended_total: 0,
        }
    }

    /// Starts the directory supervised (restarted after a stop or a panic) on the current arbiter.
    pub fn start_supervised(
        settings: ChainSettings,
        clock: SharedClock,
        db: DatabaseConnection,
        registry: Addr<SubscriptionRegistryActor>,
    ) -> Addr<Self> {
        crate::supervised::start(move |_| ChainDirectoryActor::new(settings, clock, db, registry))
    }

    /// Checks a request and normalises it into the key of its plan.
    fn check(&self, request: &ChainRequest) -> Result<(PlanKey, Mode), ChainError> {
        if !self.settings.enabled {
            return Err(ChainError::Disabled);
        }
        let underlying = request.underlying.trim().to_ascii_uppercase();
        let exchange = request.exchange.trim().to_ascii_uppercase();
        if underlying.is_empty() || exchange.is_empty() {
            return Err(ChainError::Invalid(
                "underlying and exchange must not be empty".into(),
            ));
        }
        let strikes = match request.strikes {
            None => self.settings.default_strikes,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_STRIKES).contains(n))
                .ok_or_else(|| {
                    ChainError::Invalid(format!(
                        "strikes must be between 1 and {MAX_STRIKES} (strikes on each side of ATM), got {n}"
                    ))
                })?,
        };
        let expiry = request
            .expiry
            .as_deref()
            .map(|e| e.trim().to_ascii_uppercase());
        Ok((
            PlanKey {
                underlying,
                exchange,
                expiry,
                strikes,
            },
            request.mode.unwrap_or(Mode::Quote),
        ))
    }

    /// The plan for `key`: one gateway resolution shared by every request for the same chain
    /// while it is in flight and for [`PLAN_TTL`] after (failures are not kept).
    fn plan(&mut self, key: PlanKey) -> Result<PlanFuture, ChainError> {
        let client = match &self.gateway {
            Some(gateway) => gateway.client.clone(),
            None => return Err(ChainError::NoGateway),
        };
        let now = self.clock.now();
        let tz = self.settings.timezone;
        // A plan is reused for a short while, never once its expiry has closed.
        self.plans.retain(|_, (at, plan)| {
            at.elapsed() < PLAN_TTL
                && match plan.peek() {
                    Some(Err(_)) => false,
                    Some(Ok(p)) => expiry_is_live(&p.option_exchange, p.expiry, now, tz),
                    None => true,
                }
        });
        if let Some((_, plan)) = self.plans.get(&key) {
            return Ok(plan.clone());
        }
        let resolving = key.clone();
        let plan = async move { resolve(&client, &resolving, now, tz).await.map(Arc::new) }
            .boxed_local()
            .shared();
        self.plans.insert(key, (Instant::now(), plan.clone()));
        Ok(plan)
    }

    /// Refuses a session past `option_chain.max_sessions`, or past
    /// `option_chain.max_sessions_per_client` for `client`; otherwise counts it as opening.
    fn reserve(&mut self, client: &str) -> Result<(), ChainError> {
        let opening: usize = self.opening.values().sum();
        let open = self.sessions.len() + opening;
        if open >= self.settings.max_sessions {
            return Err(ChainError::TooMany(format!(
                "{open} option-chain sessions are open, the most option_chain.max_sessions \
                 allows; close one (DELETE /api/v1/chain-sessions/{{id}}) or let a lease run out"
            )));
        }
        let mine = self.owners.values().filter(|c| *c == client).count()
            + self.opening.get(client).copied().unwrap_or(0);
        if mine >= self.settings.max_sessions_per_client {
            return Err(ChainError::TooMany(format!(
                "this client has {mine} option-chain sessions open, the most \
                 option_chain.max_sessions_per_client allows; close one first"
            )));
        }
        *self.opening.entry(client.to_owned()).or_default() += 1;
        Ok(())
    }

    fn opened(&mut self, client: &str) {
        if let Some(n) = self.opening.get_mut(client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.opening.remove(client);
            }
        }
    }

    /// Deletes the rows of sessions that ended longer ago than `option_chain.closed_retention`.
    fn purge_closed(&self, ctx: &mut Context<Self>) {
        let Ok(retention) = chrono::Duration::from_std(self.settings.closed_retention) else {
            return;
        };
        let before = Utc::now() - retention;
        let db = self.db.clone();
        let purge = async move {
            websocket_sessions::Entity::delete_many()
                .filter(websocket_sessions::Column::ClosedAt.is_not_null())
                .filter(websocket_sessions::Column::ClosedAt.lt(before))
                .exec(&db)
                .await
        };
        ctx.spawn(purge.into_actor(self).map(|result, _, _| match result {
            Ok(r) if r.rows_affected > 0 => {
                tracing::debug!(rows = r.rows_affected, "purged ended chain sessions")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not purge ended chain sessions"),
        }));
    }

    fn timing(&self) -> SessionTiming {
        SessionTiming {
            timeout: self.settings.session_timeout,
            push_interval: Duration::from_secs_f64(1.0 / self.settings.max_push_hz),
        }
    }

    fn status(&self, sessions: Vec<ChainSessionStatus>) -> ChainDirectoryStatus {
        ChainDirectoryStatus {
            state: if self.restarts.faulted() {
                Lifecycle::Faulted
            } else {
                Lifecycle::Running
            },
            restarts: self.restarts.restarts(),
            enabled: self.settings.enabled,
            gateway: self.gateway.as_ref().map(|g| g.view.clone()),
            sessions,
            opened_total: self.opened_total,
            ended_total: self.ended_total,
        }
    }
}

impl Actor for ChainDirectoryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(PURGE_EVERY, |act, ctx| act.purge_closed(ctx));
        if self.swept {
            return;
        }
        self.swept = true;
        // Sessions do not outlive the process: close the rows an earlier run left open before
        // any new session is created.
        let db = self.db.clone();
        let started_at = Utc::now();
        let sweep = async move {
            websocket_sessions::Entity::update_many()
                .col_expr(
                    websocket_sessions::Column::ClosedAt,
                    Expr::value(Some(started_at)),
                )
                .col_expr(
                    websocket_sessions::Column::CloseReason,
                    Expr::value(Some(CloseReason::Shutdown.as_str())),
                )
                .filter(websocket_sessions::Column::Kind.eq(SessionKind::Chain))
                .filter(websocket_sessions::Column::ClosedAt.is_null())
                .filter(websocket_sessions::Column::CreatedAt.lt(started_at))
                .exec(&db)
                .await
        };
        ctx.wait(sweep.into_actor(self).map(|result, _, _| match result {
            Ok(r) if r.rows_affected > 0 => tracing::info!(
                rows = r.rows_affected,
                "closed chain sessions left open by an earlier run"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not close chain sessions left open by an earlier run")
            }
        }));
    }
}

impl actix::Supervised for ChainDirectoryActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts.on_restart("ChainDirectoryActor");
    }
}

impl Handler<SetChainGateway> for ChainDirectoryActor {
    type Result = ();

    fn handle(&mut self, msg: SetChainGateway, _ctx: &mut Context<Self>) {
        let view = GatewayView {
            rest_url: msg.rest_url.trim_end_matches('/').to_string(),
            api_key: msg.api_key.hint(),
        };
        tracing::info!(rest_url = %view.rest_url, api_key = %view.api_key, "option chains read from this gateway");
        self.gateway = Some(Gateway {
            client: RestClient::new(&msg.rest_url, &msg.api_key, self.settings.rest_timeout),
            view,
        });
        self.plans.clear();
    }
}

impl Handler<CreateChainSession> for ChainDirectoryActor {
    type Result = ResponseActFuture<Self, Result<ChainCreated, ChainError>>;

    fn handle(&mut self, msg: CreateChainSession, ctx: &mut Context<Self>) -> Self::Result {
        let client = msg.0.client.clone();
        let plan = self.check(&msg.0).and_then(|(key, mode)| {
            let plan = self.plan(key)?;
            self.reserve(&client)?;
            Ok((plan, mode))
        });
        let (plan, mode) = match plan {
            Ok(planned) => planned,
            Err(e) => return Box::pin(actix::fut::ready(Err(e))),
        };
        self.purge_closed(ctx);
        let opened = plan.into_actor(self).then(move |plan, act, ctx| {
            let started = plan.map(|plan| {
                let id = uuid::Uuid::new_v4().to_string();
                let session = ChainSessionActor::new(
                    id.clone(),
                    plan,
                    mode,
                    act.timing(),
                    act.registry.clone(),
                    ctx.address(),
                    act.db.clone(),
                )
                .start();
                (id, session)
            });
            async move {
                let (id, session) = started?;
                let created = session.send(OpenSession).await.map_err(|e| {
                    ChainError::Internal(format!("chain session {id} did not answer: {e}"))
                })??;
                Ok((session, created))
            }
            .into_actor(act)
        });
        Box::pin(opened.map(move |result, act, _| {
            act.opened(&client);
            let (session, mut created) = result?;
            // A session that already ended (a lease shorter than its creation) is not listed.
            if session.connected() {
                act.sessions.insert(created.id.clone(), session);
                act.owners.insert(created.id.clone(), client);
            }
            act.opened_total += 1;
            created
                .expiries
                .truncate(act.settings.default_expiries as usize);
            Ok(created)
        }))
    }
}

impl Handler<FindChainSession> for ChainDirectoryActor {
    type Result = Option<Addr<ChainSessionActor>>;

    fn handle(&mut self, msg: FindChainSession, _ctx: &mut Context<Self>) -> Self::Result {
        self.sessions
            .get(&msg.id)
            .filter(|s| s.connected())
            .cloned()
    }
}

impl Handler<SessionEnded> for ChainDirectoryActor {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, _ctx: &mut Context<Self>) {
        if self.sessions.remove(&msg.id).is_some() {
            self.ended_total += 1;
        }
        self.owners.remove(&msg.id);
    }
}

impl Handler<GetChainDirectoryStatus> for ChainDirectoryActor {
    type Result = ResponseActFuture<Self, ChainDirectoryStatus>;

    fn handle(&mut self, _: GetChainDirectoryStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let asks: Vec<_> = self
            .sessions
            .values()
            .map(|s| s.send(GetChainSessionStatus))
            .collect();
        Box::pin(join_all(asks).into_actor(self).map(|answers, act, _| {
            let mut sessions: Vec<ChainSessionStatus> =
                answers.into_iter().filter_map(Result::ok).collect();
            sessions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            act.status(sessions)
        }))
    }
}

impl Handler<CloseAllChainSessions> for ChainDirectoryActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: CloseAllChainSessions, _ctx: &mut Context<Self>) -> Self::Result {
        let closes: Vec<_> = self
            .sessions
            .values()
            .map(|s| {
                s.send(CloseChainSession {
                    reason: CloseReason::Shutdown,
                })
            })
            .collect();
        Box::pin(join_all(closes).map(|_| ()).into_actor(self))
    }
}
