//! `SupervisorActor` (ARCHITECTURE §4, §8.1): the root that starts the market-hours subtree —
//! the feed connection and the members that follow market hours (position monitor, …) — when the
//! calendar is open, the feed account answers its pings and nobody stopped the service, and stops
//! it otherwise. Exits already handed to the order gateway are never interrupted: the gateway is
//! not part of the subtree.

use std::collections::VecDeque;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::accounts::FeedAccountChanged;
use crate::calendar::PhaseChanged;
use crate::chain::SetChainGateway;
use crate::domain::calendar::Phase;
use crate::feed::{Feed, FeedTarget, SetTarget, StartFeed, StopFeed};
use crate::status::Lifecycle;

const TRANSITIONS_KEPT: usize = 20;

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

#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub running: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
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
    pub feed_account_reachable: bool,
    pub feed_account_reason: String,
    pub manually_stopped: bool,
    pub transitions: Vec<Transition>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FeedAccountView {
    pub id: i32,
    pub name: String,
}

pub struct SupervisorActor {
    feed: Feed,
    members: Vec<Recipient<MarketHours>>,
    gateway_followers: Vec<Recipient<SetChainGateway>>,
    phase: Option<Phase>,
    next_change: Option<(DateTime<Utc>, Phase)>,
    target: Option<FeedTarget>,
    reachable: bool,
    account_reason: String,
    manually_stopped: bool,
    running: bool,
    reason: String,
    since: DateTime<Utc>,
    transitions: VecDeque<Transition>,
    restarts: u64,
}

impl SupervisorActor {
    pub fn new(feed: Feed) -> Self {
        Self {
            feed,
            members: Vec::new(),
            gateway_followers: Vec::new(),
            phase: None,
            next_change: None,
            target: None,
            reachable: false,
            account_reason: "waiting for the first round of account pings".into(),
            manually_stopped: false,
            running: false,
            reason: "starting".into(),
            since: Utc::now(),
            transitions: VecDeque::new(),
            restarts: 0,
        }
    }

    /// Whether the subtree should run, and why (not).
    fn decide(&self) -> (bool, String) {
        if self.manually_stopped {
            return (false, "stopped through the API".into());
        }
        match self.phase {
            None => return (false, "waiting for the calendar".into()),
            Some(Phase::Closed) => return (false, "market closed".into()),
            Some(Phase::PreOpen) | Some(Phase::Open) => {}
        }
        let Some(target) = &self.target else {
            return (false, format!("no feed account ({})", self.account_reason));
        };
        if !self.reachable {
            return (
                false,
                format!(
                    "feed account '{}' unreachable ({})",
                    target.account_name, self.account_reason
                ),
            );
        }
        let phase = if self.phase == Some(Phase::PreOpen) {
            "pre-open"
        } else {
            "market open"
        };
        (
            true,
            format!(
                "{phase}; feed on '{}' ({})",
                target.account_name, self.account_reason
            ),
        )
    }

    fn evaluate(&mut self) {
        let (run, reason) = self.decide();
        self.reason = reason.clone();
        if run == self.running {
            return;
        }
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
        if run {
            self.feed.connection.do_send(StartFeed);
        } else {
            self.feed.connection.do_send(StopFeed);
        }
        for m in &self.members {
            m.do_send(MarketHours(run));
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
            state: if self.running {
                Lifecycle::Running
            } else {
                Lifecycle::Stopped
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
            manually_stopped: self.manually_stopped,
            transitions: self.transitions.iter().cloned().collect(),
        }
    }
}

impl Actor for SupervisorActor {
    type Context = Context<Self>;
}

impl actix::Supervised for SupervisorActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.restarts += 1;
        tracing::warn!(restarts = self.restarts, "SupervisorActor restarted");
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
            // Failover (or the first decision): the connection closes the old socket first.
            self.feed.connection.do_send(SetTarget(msg.target.clone()));
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
