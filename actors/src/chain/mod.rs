//! On-demand option chains (docs/ARCHITECTURE.md §4.10): a [`ChainDirectoryActor`] (supervised, one
//! per service) creates one [`ChainSessionActor`] per viewer. A session subscribes its strike
//! window and the underlying through the shared subscription registry, re-centres the window when
//! ATM moves more than one strike, pushes coalesced snapshots to its viewers and stops (releasing
//! everything) when its lease runs out or it is deleted.

mod directory;
mod resolve;
mod session;

use std::sync::Arc;
use std::time::Duration;

use actix::Message;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use directory::{
    ChainDirectoryActor, ChainDirectoryStatus, CloseAllChainSessions, CreateChainSession,
    FindChainSession, GatewayView, GetChainDirectoryStatus, SetChainGateway,
};
pub use entity::websocket_sessions::CloseReason;
pub use session::{
    ChainHeartbeat, ChainSessionActor, ChainSessionStatus, CloseChainSession,
    GetChainSessionStatus, GetChainSnapshot, WatchChain,
};

use crate::domain::chain::ChainRow;
use crate::feed::Mode;
use crate::supervised::Supervision;

/// Option-chain settings (the `option_chain` section of `settings/base.toml`).
#[derive(Debug, Clone)]
pub struct ChainSettings {
    /// False: chain sessions are refused (`option_chain.on_demand`).
    pub enabled: bool,
    /// Strikes on each side of ATM when the request names none.
    pub default_strikes: u32,
    /// How many upcoming expiries a new session lists for the viewer to pick from.
    pub default_expiries: u32,
    /// A session without a heartbeat for this long stops.
    pub session_timeout: Duration,
    /// Snapshots per second per viewer, at most.
    pub max_push_hz: f64,
    /// Timeout of one REST call to the gateway.
    pub rest_timeout: Duration,
    /// Sessions open at once, service-wide.
    pub max_sessions: usize,
    /// Sessions open at once for one client address.
    pub max_sessions_per_client: usize,
    /// Rows of ended sessions are deleted once they ended longer ago than this.
    pub closed_retention: Duration,
    /// "Today" for the nearest expiry is taken in this timezone.
    pub timezone: chrono_tz::Tz,
    pub supervision: Supervision,
}

/// Most strikes a session may ask for on each side of ATM.
pub const MAX_STRIKES: u32 = 50;

/// A viewer's request for a chain (`POST /api/v1/chain-sessions`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChainRequest {
    pub underlying: String,
    /// The underlying's exchange, e.g. NSE_INDEX (options are on NFO).
    pub exchange: String,
    /// `DD-MMM-YY` or `DDMMMYY`; the nearest listed expiry when None.
    pub expiry: Option<String>,
    /// Strikes on each side of ATM (1..=50); the configured default when None.
    pub strikes: Option<i64>,
    /// Subscription mode; Quote when None.
    pub mode: Option<Mode>,
    /// Who asks (the client's address): the per-client cap counts by it.
    pub client: String,
}

/// Why a chain request or a session operation failed. Messages never contain the API key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChainError {
    #[error("option chains are disabled (option_chain.on_demand = false)")]
    Disabled,
    #[error("no feed account: the gateway that serves option chains is not configured yet")]
    NoGateway,
    #[error("unknown underlying {underlying} on {exchange} (gateway: {detail})")]
    UnknownUnderlying {
        underlying: String,
        exchange: String,
        detail: String,
    },
    #[error("expiry {requested} is not listed for {underlying}; available: {}", available.join(", "))]
    UnknownExpiry {
        underlying: String,
        requested: String,
        available: Vec<String>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("gateway: {0}")]
    Gateway(String),
    #[error("cannot subscribe the chain: {0}")]
    Subscription(String),
    #[error("chain session {0} not found")]
    NotFound(String),
    #[error("{0}")]
    TooMany(String),
    #[error("{0}")]
    Internal(String),
}

/// The answer to a successful [`CreateChainSession`].
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChainCreated {
    pub id: String,
    pub underlying: String,
    pub exchange: String,
    /// The exchange and symbol of the underlying's own feed.
    pub underlying_exchange: String,
    pub underlying_symbol: String,
    /// `DD-MMM-YY`.
    pub expiry: String,
    /// The next upcoming expiries (`option_chain.default_expiries` of them), `DD-MMM-YY`.
    pub expiries: Vec<String>,
    pub atm_strike: f64,
    pub strike_step: f64,
    pub strikes: u32,
    /// 1 (LTP), 2 (Quote) or 3 (Depth).
    #[schema(value_type = u8, minimum = 1, maximum = 3)]
    pub mode: Mode,
    /// The option symbols subscribed: per strike ascending, CE then PE.
    pub symbols: Vec<String>,
}

/// What a viewer sees: the window's strikes with CE and PE quotes, the underlying and ATM.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChainSnapshot {
    pub id: String,
    pub underlying: String,
    pub exchange: String,
    /// `DD-MMM-YY`.
    pub expiry: String,
    pub atm_strike: f64,
    pub underlying_ltp: Option<f64>,
    pub strike_step: f64,
    /// When the data last changed.
    pub updated_at: DateTime<Utc>,
    pub rows: Vec<ChainRow>,
}

/// Sent by a session to each of its viewers. Snapshots are JSON, rendered once per change and
/// shared by every viewer.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum ChainPush {
    Snapshot(Arc<str>),
    /// The session ended; no more snapshots follow.
    Closed(CloseReason),
}
