//! `SupervisorActor` (docs/ARCHITECTURE.md §4.1): the root that starts the market-hours subtree —
//! the members that follow market hours (the position monitor and its risk actors) and the feed
//! connection — while the calendar is open and nobody stopped the service, and stops it
//! otherwise. Exits already handed to the order gateway are never interrupted: the gateway is
//! not part of the subtree.
//!
//! The feed account's health never pauses risk evaluation: it decides which gateway carries the
//! feed (failover), not whether positions are monitored. The feed runs on the chosen account
//! whenever the subtree runs; while it is not live for longer than `feed_down_after` (or there
//! is no feed account), the feed is *degraded*: the followers are told ([`FeedHealth`]) and
//! price open legs over REST instead (docs/liveness.md).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::accounts::FeedAccountChanged;
use crate::calendar::PhaseChanged;
use crate::chain::SetChainGateway;
use crate::domain::calendar::Phase;
use crate::feed::{
    ConnectionState, Feed, FeedTarget, GetConnectionStatus, SetTarget, StartFeed, StopFeed,
};
use crate::status::Lifecycle;

const TRANSITIONS_KEPT: usize = 20;
/// How often the feed connection's state is checked while the subtree runs.
const FEED_CHECK_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct SupervisorSettings {
    /// The feed not live for this long while the subtree runs makes it degraded.
    pub feed_down_after: Duration,
}

/// Whether the feed carries prices while the subtree runs; sent to the feed followers on every
/// change and once when they join.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct FeedHealth {
    /// The subtree runs and the feed has not been live for `feed_down_after` (or there is no
    /// feed account): open legs must be priced over REST.
    pub degraded: bool,
    /// Why it is (or is no longer) degraded, in words.
    pub reason: String,
}

/// Adds a follower of the feed's health (it is told the current health at once).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FollowFeedHealth(pub Recipient<FeedHealth>);

/// Sent to every subtree member when market-hours machinery starts (`true`) or stops (`false`).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct MarketHours(pub bool);

/// Adds a member that follows the subtree (it is told the current state at once).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddMember(pub Recipient<MarketHours>);

/// Keeps a follower told which gateway carries the feed (the option-chain directory reads
/// chains from it). The current one is sent at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FollowGateway(pub Recipient<SetChainGateway>);

/// `POST /api/v1/service/{start|stop}`: a manual stop holds the subtree down until a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "SupervisorStatus")]
pub enum ServiceControl {
    Start,
    Stop,
}

#[derive(Message)]
#[rtype(result = "SupervisorStatus")]
pub struct GetSupervisorStatus;

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub running: bool,
    pub reason: String,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct SupervisorStatus {
    pub state: Lifecycle,
    pub restarts: u64,
    /// The market-hours subtree is running.
    pub running: bool,
    /// Why it runs or why not, in words.
    pub reason: String,
    pub since: DateTime<Utc>,
    pub phase: Option<Phase>,
    pub next_change: Option<(DateTime<Utc>, Phase)>,
    pub feed_account: Option<FeedAccountView>,
    /// The feed account has failed fewer than `failover_after_failures` consecutive pings.
    pub feed_account_reachable: bool,
    pub feed_account_reason: String,
    /// The feed connection is live.
    pub feed_live: bool,
    /// The subtree runs and the feed has not been live for `feed_down_after` (or there is no
    /// feed account): open legs are priced over REST quotes. Risk evaluation goes on.
    pub feed_degraded: bool,
    pub feed_degraded_since: Option<DateTime<Utc>>,
    /// Why the feed is degraded (empty when it is not).
    pub feed_degraded_reason: String,
    pub manually_stopped: bool,
    pub transitions: Vec<Transition>,
}

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct FeedAccountView {
    pub id: i32,
    pub name: String,
}

pub struct SupervisorActor {
    feed: Feed,
    settings: SupervisorSettings,
    members: Vec<Recipient<MarketHours>>,
    gateway_followers: Vec<Recipient<SetChainGateway>>,
    feed_followers: Vec<Recipient<FeedHealth>>,
    phase: Option<Phase>,
    next_change: Option<(DateTime<Utc>, Phase)>,
    target: Option<FeedTarget>,
    reachable: bool,
    account_reason: String,
    manually_stopped: bool,
    running: bool,
    reason: String,
    since: DateTime<Utc>,
    /// The accounts' sockets are wanted (the subtree runs).
    feed_wanted: bool,
    /// The connection's state at the last check.
    feed_state: Option<ConnectionState>,
    /// Since when the wanted feed has not been live.
    not_live_since: Option<Instant>,
    /// A connection status request is in flight.
    checking: bool,
    feed_health: FeedHealth,
    feed_degraded_since: Option<DateTime<Utc>>,
    transitions: VecDeque<Transition>,
    restarts: u64,
}

impl SupervisorActor {
    pub fn new(feed: Feed, settings: SupervisorSettings) -> Self {
        Self {
            feed,
            settings,
            members: Vec::new(),
            gateway_followers: Vec::new(),
            feed_followers: Vec::new(),
            phase: None,
            next_change: None,
            target: None,
            reachable: false,
            account_reason: "waiting for the first round of account pings".into(),
            manually_stopped: false,
            running: false,
            reason: "starting".into(),
            since: Utc::now(),
            feed_wanted: false,
            feed_state: None,
            not_live_since: None,
            checking: false,
            feed_health: FeedHealth {
                degraded: false,
                reason: String::new(),
            },
            feed_degraded_since: None,
            transitions: VecDeque::new(),
            restarts: 0,
        }
    }

    /// Whether the subtree should run, and why (not). The feed account's health does not
    /// decide it: positions are monitored during market hours whatever the feed does.
    fn decide(&self) -> (bool, String) {
        if self.manually_stopped {
            return (false, "stopped through the API".into());
        }
        let phase = match self.phase {
            None => return (false, "waiting for the calendar".into()),
            Some(Phase::Closed) => return (false, "market closed".into()),
            Some(Phase::PreOpen) => "pre-open",
            Some(Phase::Open) => "market open",
        };
        let feed = match &self.target {
            None => format!(
                "no feed account ({}); prices from REST quotes",
                self.account_reason
            ),
            Some(t) if !self.reachable => format!(
                "feed account '{}' unreachable ({}); the feed keeps retrying it",
                t.account_name, self.account_reason
            ),
            Some(t) => format!("feed on '{}' ({})", t.account_name, self.account_reason),
        };
        (true, format!("{phase}; {feed}"))
    }

    fn evaluate(&mut self) {
        let (run, reason) = self.decide();
        self.reason = reason.clone();
        if run != self.running {
            self.running = run;
            self.since = Utc::now();
            tracing::info!(running = run, %reason, "market-hours subtree {}", if run { "starting" } else { "stopping" });
            if self.transitions.len() == TRANSITIONS_KEPT {
                self.transitions.pop_front();
            }
            self.transitions.push_back(Transition {
                at: self.since,
                running: run,
                reason,
            });
            for m in &self.members {
                m.do_send(MarketHours(run));
            }
        }
        // The accounts' sockets (order updates, and the feed account's market data) run with
        // the subtree.
        let wanted = self.running;
        if wanted != self.feed_wanted {
            self.feed_wanted = wanted;
            if wanted {
                self.feed.streams.do_send(StartFeed);
            } else {
                self.feed.streams.do_send(StopFeed);
            }
        }
        self.judge_feed();
    }

    /// Re-decides whether the feed is degraded and tells the followers when that changed.
    fn judge_feed(&mut self) {
        let live = self.feed_state == Some(ConnectionState::Live);
        if live || !self.running {
            self.not_live_since = None;
        } else if self.not_live_since.is_none() {
            self.not_live_since = Some(Instant::now());
        }
        let down_for = self
            .not_live_since
            .map_or(Duration::ZERO, |at| at.elapsed());
        let health = if !self.running {
            FeedHealth {
                degraded: false,
                reason: "the market-hours subtree stopped".into(),
            }
        } else if live {
            FeedHealth {
                degraded: false,
                reason: "the feed is live".into(),
            }
        } else {
            // Not live (or no feed account) for `feed_down_after`: a connect or a failover in
            // progress is not an outage yet.
            let why = match &self.target {
                Some(t) => format!(
                    "the feed on '{}' is not live ({} for {} s)",
                    t.account_name,
                    self.feed_state
                        .map_or_else(|| "unknown".to_string(), |s| format!("{s:?}")),
                    down_for.as_secs()
                ),
                None => format!("no feed account ({})", self.account_reason),
            };
            FeedHealth {
                degraded: down_for >= self.settings.feed_down_after,
                reason: format!("{why}; open legs are priced over REST"),
            }
        };
        if health.degraded == self.feed_health.degraded {
            if health.degraded {
                // Keep the reason current for the status; followers already know.
                self.feed_health.reason = health.reason;
            }
            return;
        }
        if health.degraded {
            tracing::warn!(reason = %health.reason, "feed degraded");
            self.feed_degraded_since = Some(Utc::now());
        } else {
            tracing::info!("feed no longer degraded");
            self.feed_degraded_since = None;
        }
        self.feed_health = health;
        for f in &self.feed_followers {
            f.do_send(self.feed_health.clone());
        }
    }

    /// Asks the connection for its state (one request at a time).
    fn check_feed(&mut self, ctx: &mut Context<Self>) {
        if self.checking {
            return;
        }
        if !self.feed_wanted {
            self.feed_state = None;
            self.judge_feed();
            return;
        }
        self.checking = true;
        let connection = self.feed.streams.clone();
        ctx.spawn(
            async move { connection.send(GetConnectionStatus).await }
                .into_actor(self)
                .map(|answer, act, _ctx| {
                    act.checking = false;
                    act.feed_state = match answer {
                        Ok(status) => Some(status.state),
                        Err(e) => {
                            tracing::warn!(error = %e, "the feed connection did not answer");
                            None
                        }
                    };
                    act.judge_feed();
                }),
        );
    }

    /// Tells the feed and every follower the current decision again (after a restart).
    fn reassert(&self) {
        if self.feed_wanted {
            self.feed.streams.do_send(StartFeed);
        } else {
            self.feed.streams.do_send(StopFeed);
        }
        for m in &self.members {
            m.do_send(MarketHours(self.running));
        }
        for f in &self.feed_followers {
            f.do_send(self.feed_health.clone());
        }
        for f in &self.gateway_followers {
            self.tell_gateway(f);
        }
    }

    fn tell_gateway(&self, follower: &Recipient<SetChainGateway>) {
        if let Some(t) = &self.target {
            follower.do_send(SetChainGateway {
                rest_url: t.rest_url.clone(),
                api_key: t.api_key.clone(),
            });
        }
    }

    fn status(&self) -> SupervisorStatus {
        SupervisorStatus {
            state: if !self.running {
                Lifecycle::Stopped
            } else if self.feed_health.degraded || !self.reachable {
                Lifecycle::Degraded
            } else {
                Lifecycle::Running
            },
            restarts: self.restarts,
            running: self.running,
            reason: self.reason.clone(),
            since: self.since,
            phase: self.phase,
            next_change: self.next_change,
            feed_account: self.target.as_ref().map(|t| FeedAccountView {
                id: t.account_id,
                name: t.account_name.clone(),
            }),
            feed_account_reachable: self.reachable,
            feed_account_reason: self.account_reason.clone(),
            feed_live: self.feed_state == Some(ConnectionState::Live),
            feed_degraded: self.feed_health.degraded,
            feed_degraded_since: self.feed_degraded_since,
            feed_degraded_reason: if self.feed_health.degraded {
                self.feed_health.reason.clone()
            } else {
                String::new()
            },
            manually_stopped: self.manually_stopped,
            transitions: self.transitions.iter().cloned().collect(),
        }
    }
}

impl Actor for SupervisorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(FEED_CHECK_EVERY, |act, ctx| act.check_feed(ctx));
    }
}

impl actix::Supervised for SupervisorActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts += 1;
        tracing::warn!(restarts = self.restarts, "SupervisorActor restarted");
        // Its state is what it was told (phase, feed account, controls); a handler cut short
        // may have left the feed or a follower behind: tell everyone the decision again.
        self.checking = false;
        self.evaluate();
        self.reassert();
    }
}

impl Handler<PhaseChanged> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: PhaseChanged, _ctx: &mut Context<Self>) {
        self.phase = Some(msg.phase);
        self.next_change = msg.next_change;
        self.evaluate();
    }
}

impl Handler<FeedAccountChanged> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: FeedAccountChanged, _ctx: &mut Context<Self>) {
        if msg.target != self.target {
            // Failover (or the first decision): the feed moves to the account's socket.
            self.feed.streams.do_send(SetTarget(msg.target.clone()));
            self.target = msg.target;
            for f in &self.gateway_followers {
                self.tell_gateway(f);
            }
        }
        self.reachable = msg.reachable;
        self.account_reason = msg.reason;
        self.evaluate();
    }
}

impl Handler<AddMember> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: AddMember, _ctx: &mut Context<Self>) {
        msg.0.do_send(MarketHours(self.running));
        self.members.push(msg.0);
    }
}

impl Handler<FollowFeedHealth> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: FollowFeedHealth, _ctx: &mut Context<Self>) {
        msg.0.do_send(self.feed_health.clone());
        self.feed_followers.push(msg.0);
    }
}

impl Handler<FollowGateway> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: FollowGateway, _ctx: &mut Context<Self>) {
        self.tell_gateway(&msg.0);
        self.gateway_followers.push(msg.0);
    }
}

impl Handler<ServiceControl> for SupervisorActor {
    type Result = MessageResult<ServiceControl>;

    fn handle(&mut self, msg: ServiceControl, _ctx: &mut Context<Self>) -> Self::Result {
        self.manually_stopped = msg == ServiceControl::Stop;
        tracing::info!(?msg, "service control");
        self.evaluate();
        MessageResult(self.status())
    }
}

impl Handler<GetSupervisorStatus> for SupervisorActor {
    type Result = MessageResult<GetSupervisorStatus>;

    fn handle(&mut self, _: GetSupervisorStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status())
    }
}
