//! `StreamsActor`: one [`ConnectionActor`] per account key, for good (docs/order-updates.md).
//!
//! Every active account's key gets exactly one socket, which carries that key's order updates.
//! The feed account's socket also carries the market-data feed: the subscription registry is
//! attached to it. A failover moves the feed role from one socket to another (the old one
//! unsubscribes everything and keeps its order updates, the registry resubscribes on the new
//! one): no socket is opened or closed for it, so no key ever has two.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;
use serde::Serialize;

use super::FeedTarget;
use super::connection::{
    ConnectionActor, ConnectionSettings, ConnectionStatus, GetConnectionStatus, OrderStreamEvent,
    Reconnect, Retire, SetFeed, SetTarget, StartFeed, StopFeed,
};
use super::registry::{AttachConnection, SubscriptionRegistryActor};
use crate::orders::SetAccounts;

/// Every account's socket, with which one carries the feed.
#[derive(Message)]
#[rtype(result = "StreamsStatus")]
pub struct GetStreams;

#[derive(utoipa::ToSchema, Debug, Clone, Serialize)]
pub struct StreamsStatus {
    /// The account whose socket carries the market-data feed.
    pub feed_account_id: Option<i32>,
    /// One per account key.
    pub streams: Vec<ConnectionStatus>,
}

pub struct StreamsActor {
    settings: ConnectionSettings,
    registry: Addr<SubscriptionRegistryActor>,
    orders: Option<Recipient<OrderStreamEvent>>,
    streams: HashMap<i32, (FeedTarget, Addr<ConnectionActor>)>,
    /// The accounts of the last [`SetAccounts`]: their sockets stay while listed.
    listed: HashSet<i32>,
    feed: Option<i32>,
    running: bool,
}

impl StreamsActor {
    pub fn new(
        settings: ConnectionSettings,
        registry: Addr<SubscriptionRegistryActor>,
        orders: Option<Recipient<OrderStreamEvent>>,
    ) -> Self {
        Self {
            settings,
            registry,
            orders,
            streams: HashMap::new(),
            listed: HashSet::new(),
            feed: None,
            running: false,
        }
    }

    /// The account's connection, created (started when the streams run) or pointed at its
    /// changed gateway.
    fn connection_for(&mut self, target: FeedTarget) -> Addr<ConnectionActor> {
        let id = target.account_id;
        if let Some((known, addr)) = self.streams.get_mut(&id) {
            if *known != target {
                addr.do_send(SetTarget(Some(target.clone())));
                *known = target;
            }
            return addr.clone();
        }
        let (settings, registry, orders) = (
            self.settings.clone(),
            self.registry.clone(),
            self.orders.clone(),
        );
        let initial = Some(target.clone());
        let addr = crate::supervised::start(move |_| {
            ConnectionActor::new(settings, initial, registry, false, orders)
        });
        if self.running {
            addr.do_send(StartFeed);
        }
        self.streams.insert(id, (target, addr.clone()));
        addr
    }

    /// Ends the socket of an account that is neither listed nor the feed's.
    fn retire_unless_needed(&mut self, id: i32) {
        if self.listed.contains(&id) || self.feed == Some(id) {
            return;
        }
        if let Some((_, addr)) = self.streams.remove(&id) {
            addr.do_send(Retire);
        }
    }

    fn feed_connection(&self) -> Option<Addr<ConnectionActor>> {
        self.feed
            .and_then(|id| self.streams.get(&id))
            .map(|(_, addr)| addr.clone())
    }
}

impl Actor for StreamsActor {
    type Context = Context<Self>;
}

impl actix::Supervised for StreamsActor {}

impl Handler<SetTarget> for StreamsActor {
    type Result = ();

    /// The feed account (`None`: there is none): the feed role moves to its socket.
    fn handle(&mut self, msg: SetTarget, _ctx: &mut Context<Self>) {
        let new_id = msg.0.as_ref().map(|t| t.account_id);
        let new = msg.0.map(|t| self.connection_for(t));
        if new_id == self.feed {
            return;
        }
        if let Some(old) = self.feed_connection() {
            old.do_send(SetFeed(false));
        }
        let old_id = std::mem::replace(&mut self.feed, new_id);
        if let Some(new) = new {
            self.registry.do_send(AttachConnection(new.clone()));
            new.do_send(SetFeed(true));
        }
        if let Some(old_id) = old_id {
            self.retire_unless_needed(old_id);
        }
    }
}

impl Handler<SetAccounts> for StreamsActor {
    type Result = ();

    /// Every active account gets its socket; those no longer listed lose theirs (unless it
    /// carries the feed).
    fn handle(&mut self, msg: SetAccounts, _ctx: &mut Context<Self>) {
        self.listed = msg.0.iter().map(|a| a.id).collect();
        for account in msg.0 {
            self.connection_for(FeedTarget {
                account_id: account.id,
                account_name: account.name,
                ws_url: account.ws_url,
                rest_url: account.rest_url,
                api_key: account.api_key,
            });
        }
        let ids: Vec<i32> = self.streams.keys().copied().collect();
        for id in ids {
            self.retire_unless_needed(id);
        }
    }
}

impl Handler<StartFeed> for StreamsActor {
    type Result = ();

    fn handle(&mut self, _: StartFeed, _ctx: &mut Context<Self>) {
        self.running = true;
        self.streams
            .values()
            .for_each(|(_, a)| a.do_send(StartFeed));
    }
}

impl Handler<StopFeed> for StreamsActor {
    type Result = ();

    fn handle(&mut self, _: StopFeed, _ctx: &mut Context<Self>) {
        self.running = false;
        self.streams.values().for_each(|(_, a)| a.do_send(StopFeed));
    }
}

impl Handler<GetConnectionStatus> for StreamsActor {
    type Result = ResponseFuture<ConnectionStatus>;

    /// The feed socket's status (an idle one when there is no feed account).
    fn handle(&mut self, msg: GetConnectionStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let feed = self.feed_connection();
        Box::pin(async move {
            match feed {
                Some(addr) => addr
                    .send(msg)
                    .await
                    .unwrap_or_else(|e| ConnectionStatus::unanswered(&e.to_string())),
                None => ConnectionStatus::unanswered("no feed account"),
            }
        })
    }
}

impl Handler<Reconnect> for StreamsActor {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, msg: Reconnect, _ctx: &mut Context<Self>) -> Self::Result {
        let feed = self.feed_connection();
        Box::pin(async move {
            match feed {
                Some(addr) => addr
                    .send(msg)
                    .await
                    .map_err(|e| format!("the feed connection did not answer: {e}"))?,
                None => Err("there is no feed account to reconnect".into()),
            }
        })
    }
}

impl Handler<GetStreams> for StreamsActor {
    type Result = ResponseFuture<StreamsStatus>;

    fn handle(&mut self, _: GetStreams, _ctx: &mut Context<Self>) -> Self::Result {
        let mut addrs: Vec<(i32, Addr<ConnectionActor>)> = self
            .streams
            .iter()
            .map(|(id, (_, addr))| (*id, addr.clone()))
            .collect();
        addrs.sort_by_key(|(id, _)| *id);
        let feed_account_id = self.feed;
        Box::pin(async move {
            let mut streams = Vec::with_capacity(addrs.len());
            for (_, addr) in addrs {
                streams.push(
                    addr.send(GetConnectionStatus)
                        .await
                        .unwrap_or_else(|e| ConnectionStatus::unanswered(&e.to_string())),
                );
            }
            StreamsStatus {
                feed_account_id,
                streams,
            }
        })
    }
}
