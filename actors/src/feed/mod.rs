//! The upstream market-data feed: one [`ConnectionActor`] per feed API key and its
//! [`SubscriptionRegistryActor`] (ARCHITECTURE §5).

mod connection;
mod registry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix::prelude::*;

pub use connection::{
    ConnectionActor, ConnectionSettings, ConnectionState, ConnectionStatus, GetConnectionStatus,
    Reconnect, SetTarget, StartFeed, StopFeed,
};
pub use registry::{
    GetRegistryStatus, Holder, RegistryError, RegistryStatus, ReleaseAll, Subscribe,
    SubscriptionRegistryActor, SubscriptionView, Unsubscribe,
};

pub use crate::domain::subscriptions::{Key, Mode, SubscriberId};
use crate::secrets::ApiKey;

/// The account whose gateway carries the feed. `Debug` masks the API key.
#[derive(Clone, PartialEq, Eq)]
pub struct FeedTarget {
    pub account_id: i32,
    pub account_name: String,
    pub ws_url: String,
    /// The same gateway's REST base URL (option chains, quotes).
    pub rest_url: String,
    pub api_key: ApiKey,
}

impl std::fmt::Debug for FeedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedTarget")
            .field("account_id", &self.account_id)
            .field("account_name", &self.account_name)
            .field("ws_url", &self.ws_url)
            .field("rest_url", &self.rest_url)
            .field("api_key", &self.api_key)
            .finish()
    }
}

/// One price update, shared by every subscriber of its key.
#[derive(Debug, Clone)]
pub struct Tick {
    pub key: Arc<Key>,
    pub ltp: f64,
    pub bid: Option<f64>,
    pub ask: Option<f64>,
    pub volume: Option<f64>,
    pub oi: Option<f64>,
    /// When the supervisor received the frame.
    pub received_at: Instant,
    /// Epoch microseconds when the gateway sent it (simulator extension; benchmark latency).
    pub sent_us: Option<u64>,
}

/// What a subscriber receives. Delivery never blocks the registry: a subscriber whose mailbox is
/// full gets the latest tick per key later (coalesced) and the skipped ones are counted.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum FeedEvent {
    Tick(Arc<Tick>),
    /// The gateway refused the key (a per-symbol error in a subscribe ack). Not retried.
    Rejected {
        key: Key,
        message: String,
    },
}

/// A fresh subscriber id (unique in this process).
pub fn next_subscriber_id() -> SubscriberId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    SubscriberId(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The feed of one account: the connection and its registry.
#[derive(Clone)]
pub struct Feed {
    pub connection: Addr<ConnectionActor>,
    pub registry: Addr<SubscriptionRegistryActor>,
}

impl Feed {
    /// Starts the registry and the connection, each supervised (restarted after a stop or a panic), on the current
    /// arbiter. The connection stays idle until [`StartFeed`].
    pub fn start(settings: ConnectionSettings, target: Option<FeedTarget>) -> Feed {
        let registry_settings = registry::RegistrySettings::from(&settings);
        let registry =
            crate::supervised::start(move |_| SubscriptionRegistryActor::new(registry_settings));
        let reg = registry.clone();
        let connection =
            crate::supervised::start(move |_| ConnectionActor::new(settings, target, reg));
        registry.do_send(registry::AttachConnection(connection.clone()));
        Feed {
            connection,
            registry,
        }
    }
}
