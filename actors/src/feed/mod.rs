//! The upstream sockets: one [`ConnectionActor`] per account key (kept by the
//! [`StreamsActor`]), carrying that key's order updates; the feed account's also carries the
//! market data of the [`SubscriptionRegistryActor`] (docs/order-updates.md).

mod connection;
mod registry;
mod streams;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix::prelude::*;

pub use connection::{
    ConnectionActor, ConnectionSettings, ConnectionState, ConnectionStatus, GetConnectionStatus,
    OrderStreamEvent, OrderStreamView, Reconnect, SetFeed, SetTarget, StartFeed, StopFeed,
};
pub use registry::{
    GetRegistryStatus, Holder, RegistryError, RegistryStatus, ReleaseAll, Subscribe,
    SubscriptionRegistryActor, SubscriptionView, Unsubscribe,
};
pub use streams::{GetStreams, StreamsActor, StreamsStatus};

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

/// The market-data feed and the accounts' sockets: the subscription registry, and the
/// [`StreamsActor`] that keeps one connection per account key, the feed account's carrying the
/// market data.
#[derive(Clone)]
pub struct Feed {
    pub streams: Addr<StreamsActor>,
    pub registry: Addr<SubscriptionRegistryActor>,
}

impl Feed {
    /// Starts the registry and the streams, each supervised (restarted after a stop or a
    /// panic), on the current arbiter. Order updates of every socket go to `orders` (none:
    /// the sockets do not ask for them). With a `target`, its socket carries the feed. The
    /// sockets stay idle until [`StartFeed`].
    pub fn start(
        settings: ConnectionSettings,
        target: Option<FeedTarget>,
        orders: Option<Recipient<OrderStreamEvent>>,
    ) -> Feed {
        let registry_settings = registry::RegistrySettings::from(&settings);
        let registry =
            crate::supervised::start(move |_| SubscriptionRegistryActor::new(registry_settings));
        let reg = registry.clone();
        let streams = crate::supervised::start(move |_| StreamsActor::new(settings, reg, orders));
        if target.is_some() {
            streams.do_send(SetTarget(target));
        }
        Feed { streams, registry }
    }
}
