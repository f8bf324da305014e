//! The subscription registry's reference counting as a pure state machine
//! (docs/ARCHITECTURE.md §4.5), and the OpenAlgo batch frames that carry its edges upstream
//! (docs/openalgo.md §2.3, §2.4).
//!
//! Per key `(exchange, symbol)` every subscriber holds one requested mode; the upstream mode is
//! the highest of them. Frames are sent only on edges: the first subscriber arrives, the last
//! leaves, or the upstream mode changes. A mode change subscribes at the new mode first and then
//! unsubscribes the old one, so the gateway holds exactly one mode per key at any time (the same
//! state a resubscription after a reconnect produces) and the last unsubscribe releases it fully.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Default cap on distinct symbols per upstream connection (OpenAlgo `MAX_SYMBOLS_PER_WEBSOCKET`).
pub const DEFAULT_SYMBOL_CAP: usize = 1000;

/// Default number of symbols per batch subscribe/unsubscribe message.
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// Market-data mode, ordered by richness: LTP < Quote < Depth. Serialised as its integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Last traded price only.
    Ltp = 1,
    /// LTP plus OHLC, volume and totals.
    Quote = 2,
    /// Quote plus market depth.
    Depth = 3,
}

impl Mode {
    /// Every mode, lowest first.
    pub const ALL: [Mode; 3] = [Mode::Ltp, Mode::Quote, Mode::Depth];

    /// The wire integer (1–3).
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The mode for a wire integer, if it is 1–3.
    pub fn from_int(value: i64) -> Option<Mode> {
        match value {
            1 => Some(Mode::Ltp),
            2 => Some(Mode::Quote),
            3 => Some(Mode::Depth),
            _ => None,
        }
    }

    /// The label OpenAlgo uses in replies: "LTP", "Quote" or "Depth".
    pub fn label(self) -> &'static str {
        match self {
            Mode::Ltp => "LTP",
            Mode::Quote => "Quote",
            Mode::Depth => "Depth",
        }
    }

    /// Position in [`Mode::ALL`].
    fn index(self) -> usize {
        usize::from(self.as_u8() - 1)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A mode that is neither 1–3 nor one of "ltp", "quote", "depth".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mode {0:?}: expected 1, 2, 3, \"LTP\", \"Quote\" or \"Depth\"")]
pub struct InvalidMode(pub String);

impl FromStr for Mode {
    type Err = InvalidMode;

    /// Parses "1"–"3" or "ltp"/"quote"/"depth" in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("ltp") || t == "1" {
            Ok(Mode::Ltp)
        } else if t.eq_ignore_ascii_case("quote") || t == "2" {
            Ok(Mode::Quote)
        } else if t.eq_ignore_ascii_case("depth") || t == "3" {
            Ok(Mode::Depth)
        } else {
            Err(InvalidMode(s.to_owned()))
        }
    }
}

/// The schema of [`Mode`] as it is serialised: its wire integer (1 LTP, 2 Quote, 3 Depth).
#[derive(utoipa::ToSchema)]
#[schema(as = Mode)]
#[allow(dead_code)]
struct ModeShape(u8);

impl utoipa::PartialSchema for Mode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <ModeShape as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Mode {
    fn name() -> std::borrow::Cow<'static, str> {
        <ModeShape as utoipa::ToSchema>::name()
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.as_u8())
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModeVisitor;

        impl serde::de::Visitor<'_> for ModeVisitor {
            type Value = Mode;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mode: 1, 2, 3, \"LTP\", \"Quote\" or \"Depth\"")
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Mode, E> {
                Mode::from_int(v).ok_or_else(|| E::custom(InvalidMode(v.to_string())))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Mode, E> {
                i64::try_from(v)
                    .ok()
                    .and_then(Mode::from_int)
                    .ok_or_else(|| E::custom(InvalidMode(v.to_string())))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Mode, E> {
                v.parse().map_err(E::custom)
            }

            /// JSON has one number type: `2.0` is mode 2.
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Mode, E> {
                Some(v)
                    .filter(|v| v.fract() == 0.0)
                    .and_then(|v| Mode::from_int(v as i64))
                    .ok_or_else(|| E::custom(InvalidMode(v.to_string())))
            }
        }

        deserializer.deserialize_any(ModeVisitor)
    }
}

/// An instrument as the feed knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// Exchange code, e.g. "NSE", "NFO", "NSE_INDEX".
    pub exchange: String,
    /// Trading symbol, e.g. "RELIANCE", "NIFTY28NOV2624000CE".
    pub symbol: String,
}

impl Key {
    /// Builds a key from an exchange code and a symbol.
    pub fn new(exchange: impl Into<String>, symbol: impl Into<String>) -> Self {
        Self {
            exchange: exchange.into(),
            symbol: symbol.into(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.exchange, self.symbol)
    }
}

/// Identifies one subscriber (an actor recipient registered with the registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SubscriberId(pub u64);

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One upstream subscription change to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edge {
    /// Subscribe `key` at `mode`.
    Subscribe {
        /// The instrument.
        key: Key,
        /// The mode to subscribe at.
        mode: Mode,
    },
    /// Unsubscribe `key` at `mode`.
    Unsubscribe {
        /// The instrument.
        key: Key,
        /// The mode being released.
        mode: Mode,
    },
}

/// A new key was refused because the connection already carries `cap` distinct symbols.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "symbol limit reached: this feed connection already carries {cap} symbols, cannot add {key}"
)]
pub struct CapError {
    /// The configured cap.
    pub cap: usize,
    /// The key that was refused.
    pub key: Key,
}

#[derive(Debug, Clone)]
struct Entry {
    key: Key,
    holders: BTreeMap<SubscriberId, Mode>,
    upstream: Mode,
}

impl Entry {
    /// Recomputes the upstream mode after a holder changed, returning the frames to send.
    fn retarget(&mut self) -> Vec<Edge> {
        let Some(&wanted) = self.holders.values().max() else {
            return Vec::new();
        };
        let old = self.upstream;
        if wanted == old {
            return Vec::new();
        }
        self.upstream = wanted;
        vec![
            Edge::Subscribe {
                key: self.key.clone(),
                mode: wanted,
            },
            Edge::Unsubscribe {
                key: self.key.clone(),
                mode: old,
            },
        ]
    }
}

/// Reference-counted subscriptions of one upstream connection.
#[derive(Debug, Clone)]
pub struct SubscriptionTable {
    cap: usize,
    len: usize,
    /// exchange → symbol → entry, so ticks can be routed from borrowed strings.
    entries: HashMap<String, HashMap<String, Entry>>,
    by_subscriber: HashMap<SubscriberId, BTreeSet<Key>>,
}

impl Default for SubscriptionTable {
    fn default() -> Self {
        Self::new(DEFAULT_SYMBOL_CAP)
    }
}

impl SubscriptionTable {
    /// An empty table accepting at most `cap` distinct keys.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            len: 0,
            entries: HashMap::new(),
            by_subscriber: HashMap::new(),
        }
    }

    /// The cap on distinct keys.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Number of distinct keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn entry(&self, exchange: &str, symbol: &str) -> Option<&Entry> {
        self.entries.get(exchange)?.get(symbol)
    }

    fn entry_mut(&mut self, exchange: &str, symbol: &str) -> Option<&mut Entry> {
        self.entries.get_mut(exchange)?.get_mut(symbol)
    }

    /// Sets `sub`'s requested mode for `key` (adding it as a holder if new) and returns the
    /// upstream frames this causes. A key not yet held is refused once the cap is reached.
    pub fn subscribe(
        &mut self,
        sub: SubscriberId,
        key: Key,
        mode: Mode,
    ) -> Result<Vec<Edge>, CapError> {
        let edges = if let Some(entry) = self.entry_mut(&key.exchange, &key.symbol) {
            entry.holders.insert(sub, mode);
            entry.retarget()
        } else {
            if self.len >= self.cap {
                return Err(CapError { cap: self.cap, key });
            }
            let entry = Entry {
                key: key.clone(),
                holders: BTreeMap::from([(sub, mode)]),
                upstream: mode,
            };
            self.entries
                .entry(key.exchange.clone())
                .or_default()
                .insert(key.symbol.clone(), entry);
            self.len += 1;
            vec![Edge::Subscribe {
                key: key.clone(),
                mode,
            }]
        };
        self.by_subscriber.entry(sub).or_default().insert(key);
        Ok(edges)
    }

    /// Removes `sub` as a holder of `key`; returns the upstream frames this causes (none if
    /// `sub` did not hold it).
    pub fn unsubscribe(&mut self, sub: SubscriberId, key: &Key) -> Vec<Edge> {
        let Some(keys) = self.by_subscriber.get_mut(&sub) else {
            return Vec::new();
        };
        if !keys.remove(key) {
            return Vec::new();
        }
        if keys.is_empty() {
            self.by_subscriber.remove(&sub);
        }
        let mut edges = Vec::new();
        self.drop_holder(sub, key, &mut edges);
        edges
    }

    /// Releases every key `sub` holds (the subscriber stopped), in one sweep.
    pub fn release_all(&mut self, sub: SubscriberId) -> Vec<Edge> {
        let mut edges = Vec::new();
        for key in self.by_subscriber.remove(&sub).unwrap_or_default() {
            self.drop_holder(sub, &key, &mut edges);
        }
        edges
    }

    fn drop_holder(&mut self, sub: SubscriberId, key: &Key, edges: &mut Vec<Edge>) {
        let Some(symbols) = self.entries.get_mut(&key.exchange) else {
            return;
        };
        let Some(entry) = symbols.get_mut(&key.symbol) else {
            return;
        };
        if entry.holders.remove(&sub).is_none() {
            return;
        }
        if !entry.holders.is_empty() {
            edges.extend(entry.retarget());
            return;
        }
        let mode = entry.upstream;
        symbols.remove(&key.symbol);
        if symbols.is_empty() {
            self.entries.remove(&key.exchange);
        }
        self.len -= 1;
        edges.push(Edge::Unsubscribe {
            key: key.clone(),
            mode,
        });
    }

    /// The keys `sub` holds.
    pub fn keys_of(&self, sub: SubscriberId) -> impl Iterator<Item = &Key> {
        self.by_subscriber.get(&sub).into_iter().flatten()
    }

    /// Every held key with its upstream mode (in no particular order).
    pub fn upstream(&self) -> impl Iterator<Item = (&Key, Mode)> {
        self.entries
            .values()
            .flat_map(HashMap::values)
            .map(|e| (&e.key, e.upstream))
    }

    /// The upstream mode of `key`, if anyone holds it.
    pub fn upstream_mode(&self, key: &Key) -> Option<Mode> {
        self.entry(&key.exchange, &key.symbol).map(|e| e.upstream)
    }

    /// The holders of `key` with their requested modes, by subscriber id.
    pub fn holders(&self, key: &Key) -> impl Iterator<Item = (SubscriberId, Mode)> + '_ {
        self.holders_by(&key.exchange, &key.symbol)
    }

    /// Like [`Self::holders`], looked up from borrowed strings (no allocation on the tick path).
    pub fn holders_by(
        &self,
        exchange: &str,
        symbol: &str,
    ) -> impl Iterator<Item = (SubscriberId, Mode)> + '_ {
        self.entry(exchange, symbol)
            .into_iter()
            .flat_map(|e| e.holders.iter().map(|(&s, &m)| (s, m)))
    }

    /// Frames that restore everything held, each key at its upstream mode, after a reconnect.
    pub fn resubscribe_frames(&self, batch_size: usize) -> Vec<Frame> {
        let size = batch_size.max(1);
        let mut by_mode: [Vec<&Key>; 3] = Default::default();
        for (key, mode) in self.upstream() {
            by_mode[mode.index()].push(key);
        }
        let mut frames = Vec::new();
        for (keys, mode) in by_mode.iter_mut().zip(Mode::ALL) {
            keys.sort();
            for chunk in keys.chunks(size) {
                frames.push(Frame::Subscribe {
                    symbols: chunk.iter().map(|&k| k.clone()).collect(),
                    mode,
                });
            }
        }
        frames
    }
}

/// One OpenAlgo batch message (serialise with serde_json and send as a text frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Frame {
    /// `{"action":"subscribe","symbols":[{"exchange","symbol"}…],"mode":m}`: one mode per message.
    Subscribe {
        /// The instruments to subscribe.
        symbols: Vec<Key>,
        /// The mode applied to every symbol of the message.
        mode: Mode,
    },
    /// `{"action":"unsubscribe","symbols":[{"exchange","symbol","mode"}…]}`: the gateway reads
    /// the mode from each entry in the batch form.
    Unsubscribe {
        /// The instruments to release, each with its own mode.
        symbols: Vec<KeyMode>,
    },
}

/// An unsubscribe entry: a key and the mode to release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyMode {
    /// The instrument.
    #[serde(flatten)]
    pub key: Key,
    /// The mode to release.
    pub mode: Mode,
}

/// Groups edges into batch frames of at most `batch_size` symbols (0 counts as 1).
///
/// Each run of consecutive subscribes becomes one frame per mode, each run of consecutive
/// unsubscribes one set of frames; runs stay in order, so a key's subscribe-then-unsubscribe
/// (or the reverse) reaches the gateway in the order the edges were produced.
pub fn batch_frames(edges: &[Edge], batch_size: usize) -> Vec<Frame> {
    let size = batch_size.max(1);
    let mut frames: Vec<Frame> = Vec::new();
    // Open frames of the current run: subscribe frames per mode, or the unsubscribe frame.
    let mut open_subscribe: [Option<usize>; 3] = [None; 3];
    let mut open_unsubscribe: Option<usize> = None;
    for edge in edges {
        match edge {
            Edge::Subscribe { key, mode } => {
                open_unsubscribe = None;
                let slot = &mut open_subscribe[mode.index()];
                match slot.and_then(|i| frames.get_mut(i)) {
                    Some(Frame::Subscribe { symbols, .. }) if symbols.len() < size => {
                        symbols.push(key.clone());
                    }
                    _ => {
                        *slot = Some(frames.len());
                        frames.push(Frame::Subscribe {
                            symbols: vec![key.clone()],
                            mode: *mode,
                        });
                    }
                }
            }
            Edge::Unsubscribe { key, mode } => {
                open_subscribe = [None; 3];
                let entry = KeyMode {
                    key: key.clone(),
                    mode: *mode,
                };
                match open_unsubscribe.and_then(|i| frames.get_mut(i)) {
                    Some(Frame::Unsubscribe { symbols }) if symbols.len() < size => {
                        symbols.push(entry);
                    }
                    _ => {
                        open_unsubscribe = Some(frames.len());
                        frames.push(Frame::Unsubscribe {
                            symbols: vec![entry],
                        });
                    }
                }
            }
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k(symbol: &str) -> Key {
        Key::new("NSE", symbol)
    }

    fn sub(key: &Key, mode: Mode) -> Edge {
        Edge::Subscribe {
            key: key.clone(),
            mode,
        }
    }

    fn unsub(key: &Key, mode: Mode) -> Edge {
        Edge::Unsubscribe {
            key: key.clone(),
            mode,
        }
    }

    const A: SubscriberId = SubscriberId(1);
    const B: SubscriberId = SubscriberId(2);
    const C: SubscriberId = SubscriberId(3);

    #[test]
    fn mode_parsing_labels_and_order() {
        for (text, want) in [
            ("ltp", Mode::Ltp),
            ("LTP", Mode::Ltp),
            ("Quote", Mode::Quote),
            ("QUOTE", Mode::Quote),
            ("depth", Mode::Depth),
            (" Depth ", Mode::Depth),
            ("2", Mode::Quote),
        ] {
            assert_eq!(text.parse::<Mode>(), Ok(want), "{text}");
        }
        for bad in ["", "full", "4", "0", "ltpx"] {
            assert!(bad.parse::<Mode>().is_err(), "{bad}");
        }
        assert_eq!(Mode::ALL.map(Mode::label), ["LTP", "Quote", "Depth"]);
        assert!(Mode::Ltp < Mode::Quote && Mode::Quote < Mode::Depth);
        assert_eq!(Mode::from_int(3), Some(Mode::Depth));
        assert_eq!(Mode::from_int(0), None);
    }

    #[test]
    fn mode_serde_is_the_integer_and_accepts_strings() {
        assert_eq!(serde_json::to_value(Mode::Quote).unwrap(), json!(2));
        for (input, want) in [
            (json!(1), Mode::Ltp),
            (json!(3), Mode::Depth),
            (json!("quote"), Mode::Quote),
            (json!("DEPTH"), Mode::Depth),
        ] {
            assert_eq!(serde_json::from_value::<Mode>(input).unwrap(), want);
        }
        for bad in [
            json!(0),
            json!(4),
            json!(-1),
            json!("full"),
            json!(null),
            json!(2.5),
        ] {
            assert!(
                serde_json::from_value::<Mode>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn first_subscriber_subscribes_and_second_at_lower_or_equal_mode_does_not() {
        let mut t = SubscriptionTable::default();
        let key = k("RELIANCE");
        assert_eq!(
            t.subscribe(A, key.clone(), Mode::Quote).unwrap(),
            [sub(&key, Mode::Quote)]
        );
        assert_eq!(t.subscribe(B, key.clone(), Mode::Quote).unwrap(), []);
        assert_eq!(t.subscribe(C, key.clone(), Mode::Ltp).unwrap(), []);
        // Repeating a subscription changes nothing.
        assert_eq!(t.subscribe(A, key.clone(), Mode::Quote).unwrap(), []);
        assert_eq!(t.len(), 1);
        assert_eq!(t.upstream_mode(&key), Some(Mode::Quote));
        let holders: Vec<_> = t.holders(&key).collect();
        assert_eq!(
            holders,
            [(A, Mode::Quote), (B, Mode::Quote), (C, Mode::Ltp)]
        );
    }

    #[test]
    fn rising_max_subscribes_higher_then_releases_lower() {
        let mut t = SubscriptionTable::default();
        let key = k("INFY");
        t.subscribe(A, key.clone(), Mode::Ltp).unwrap();
        assert_eq!(
            t.subscribe(B, key.clone(), Mode::Depth).unwrap(),
            [sub(&key, Mode::Depth), unsub(&key, Mode::Ltp)]
        );
        assert_eq!(t.upstream_mode(&key), Some(Mode::Depth));
        // A subscriber raising its own mode is a rise too.
        let other = k("TCS");
        t.subscribe(A, other.clone(), Mode::Ltp).unwrap();
        assert_eq!(
            t.subscribe(A, other.clone(), Mode::Quote).unwrap(),
            [sub(&other, Mode::Quote), unsub(&other, Mode::Ltp)]
        );
    }

    #[test]
    fn falling_max_subscribes_lower_then_unsubscribes_higher() {
        let mut t = SubscriptionTable::default();
        let key = k("SBIN");
        t.subscribe(A, key.clone(), Mode::Ltp).unwrap();
        t.subscribe(B, key.clone(), Mode::Quote).unwrap();
        t.subscribe(C, key.clone(), Mode::Depth).unwrap();
        // The Depth holder leaves: down to Quote.
        assert_eq!(
            t.unsubscribe(C, &key),
            [sub(&key, Mode::Quote), unsub(&key, Mode::Depth)]
        );
        // A subscriber lowering its own mode is a fall too.
        assert_eq!(
            t.subscribe(B, key.clone(), Mode::Ltp).unwrap(),
            [sub(&key, Mode::Ltp), unsub(&key, Mode::Quote)]
        );
        assert_eq!(t.upstream_mode(&key), Some(Mode::Ltp));
    }

    #[test]
    fn non_last_leaving_without_lowering_the_max_is_silent() {
        let mut t = SubscriptionTable::default();
        let key = k("ITC");
        t.subscribe(A, key.clone(), Mode::Depth).unwrap();
        t.subscribe(B, key.clone(), Mode::Ltp).unwrap();
        t.subscribe(C, key.clone(), Mode::Depth).unwrap();
        assert_eq!(t.unsubscribe(B, &key), []);
        assert_eq!(t.unsubscribe(A, &key), []);
        assert_eq!(t.upstream_mode(&key), Some(Mode::Depth));
        // The last one leaves: unsubscribe at the upstream mode.
        assert_eq!(t.unsubscribe(C, &key), [unsub(&key, Mode::Depth)]);
        assert!(t.is_empty());
        assert_eq!(t.upstream_mode(&key), None);
        assert_eq!(t.holders(&key).count(), 0);
    }

    #[test]
    fn unsubscribing_something_not_held_is_silent() {
        let mut t = SubscriptionTable::default();
        let key = k("WIPRO");
        assert_eq!(t.unsubscribe(A, &key), []);
        t.subscribe(A, key.clone(), Mode::Ltp).unwrap();
        assert_eq!(t.unsubscribe(B, &key), []);
        assert_eq!(t.unsubscribe(A, &k("OTHER")), []);
        assert_eq!(t.unsubscribe(A, &key), [unsub(&key, Mode::Ltp)]);
        assert_eq!(t.unsubscribe(A, &key), []);
        assert_eq!(t.release_all(A), []);
    }

    #[test]
    fn release_all_sweeps_every_key_of_a_subscriber() {
        let mut t = SubscriptionTable::default();
        let (x, y, z) = (k("X"), k("Y"), Key::new("NFO", "Z"));
        t.subscribe(A, x.clone(), Mode::Quote).unwrap();
        t.subscribe(A, y.clone(), Mode::Depth).unwrap();
        t.subscribe(A, z.clone(), Mode::Ltp).unwrap();
        t.subscribe(B, y.clone(), Mode::Ltp).unwrap();
        t.subscribe(B, z.clone(), Mode::Ltp).unwrap();
        let mut edges = t.release_all(A);
        edges.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        let mut want = vec![
            unsub(&x, Mode::Quote),
            sub(&y, Mode::Ltp),
            unsub(&y, Mode::Depth),
        ];
        want.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(edges, want);
        assert_eq!(t.len(), 2);
        assert_eq!(t.holders(&y).collect::<Vec<_>>(), [(B, Mode::Ltp)]);
        assert_eq!(t.release_all(A), []);
        // B's sweep removes the rest.
        assert_eq!(t.release_all(B).len(), 2);
        assert!(t.is_empty());
        assert_eq!(t.upstream().count(), 0);
    }

    #[test]
    fn cap_rejects_new_keys_only() {
        let mut t = SubscriptionTable::new(2);
        t.subscribe(A, k("ONE"), Mode::Ltp).unwrap();
        t.subscribe(A, k("TWO"), Mode::Ltp).unwrap();
        let err = t.subscribe(B, k("THREE"), Mode::Ltp).unwrap_err();
        assert_eq!(
            err,
            CapError {
                cap: 2,
                key: k("THREE")
            }
        );
        assert_eq!(
            err.to_string(),
            "symbol limit reached: this feed connection already carries 2 symbols, cannot add NSE:THREE"
        );
        // A refused key leaves no trace.
        assert_eq!(t.release_all(B), []);
        assert_eq!(t.len(), 2);
        // Held keys still accept more holders and mode changes.
        assert_eq!(t.subscribe(B, k("ONE"), Mode::Ltp).unwrap(), []);
        assert_eq!(t.subscribe(B, k("TWO"), Mode::Quote).unwrap().len(), 2);
        // Room again after a key is released.
        t.release_all(A);
        t.unsubscribe(B, &k("ONE"));
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.subscribe(B, k("THREE"), Mode::Ltp).unwrap(),
            [sub(&k("THREE"), Mode::Ltp)]
        );
    }

    #[test]
    fn holders_by_borrowed_strings_and_upstream_listing() {
        let mut t = SubscriptionTable::default();
        t.subscribe(A, Key::new("NSE_INDEX", "NIFTY"), Mode::Ltp)
            .unwrap();
        t.subscribe(B, Key::new("NFO", "NIFTY28NOV2624000CE"), Mode::Quote)
            .unwrap();
        assert_eq!(
            t.holders_by("NSE_INDEX", "NIFTY").collect::<Vec<_>>(),
            [(A, Mode::Ltp)]
        );
        // Same symbol on another exchange is another key.
        assert_eq!(t.holders_by("NSE", "NIFTY").count(), 0);
        let mut up: Vec<(String, Mode)> = t.upstream().map(|(k, m)| (k.to_string(), m)).collect();
        up.sort();
        assert_eq!(
            up,
            [
                ("NFO:NIFTY28NOV2624000CE".to_owned(), Mode::Quote),
                ("NSE_INDEX:NIFTY".to_owned(), Mode::Ltp)
            ]
        );
    }

    #[test]
    fn frames_match_the_openalgo_batch_forms() {
        let edges = [
            sub(&k("RELIANCE"), Mode::Ltp),
            sub(&Key::new("NSE_INDEX", "NIFTY"), Mode::Ltp),
            unsub(&k("INFY"), Mode::Depth),
            unsub(&k("TCS"), Mode::Ltp),
        ];
        let frames: Vec<serde_json::Value> = batch_frames(&edges, 100)
            .iter()
            .map(|f| serde_json::to_value(f).unwrap())
            .collect();
        assert_eq!(
            frames,
            [
                json!({"action": "subscribe", "mode": 1, "symbols": [
                    {"symbol": "RELIANCE", "exchange": "NSE"},
                    {"symbol": "NIFTY", "exchange": "NSE_INDEX"}]}),
                json!({"action": "unsubscribe", "symbols": [
                    {"symbol": "INFY", "exchange": "NSE", "mode": 3},
                    {"symbol": "TCS", "exchange": "NSE", "mode": 1}]}),
            ]
        );
    }

    #[test]
    fn subscribes_are_grouped_by_mode_and_split_by_batch_size() {
        let keys: Vec<Key> = (0..5).map(|i| k(&format!("S{i}"))).collect();
        let edges = [
            sub(&keys[0], Mode::Ltp),
            sub(&keys[1], Mode::Quote),
            sub(&keys[2], Mode::Ltp),
            sub(&keys[3], Mode::Ltp),
            sub(&keys[4], Mode::Quote),
        ];
        assert_eq!(
            batch_frames(&edges, 2),
            [
                Frame::Subscribe {
                    symbols: vec![keys[0].clone(), keys[2].clone()],
                    mode: Mode::Ltp
                },
                Frame::Subscribe {
                    symbols: vec![keys[1].clone(), keys[4].clone()],
                    mode: Mode::Quote
                },
                Frame::Subscribe {
                    symbols: vec![keys[3].clone()],
                    mode: Mode::Ltp
                },
            ]
        );
        // Batch size 0 is treated as 1.
        assert_eq!(batch_frames(&edges, 0).len(), 5);
        assert_eq!(batch_frames(&[], 100), []);
        // Unsubscribes of mixed modes share frames (mode is per entry).
        let releases: Vec<Edge> = keys
            .iter()
            .zip([Mode::Ltp, Mode::Depth, Mode::Quote, Mode::Ltp, Mode::Ltp])
            .map(|(key, mode)| unsub(key, mode))
            .collect();
        let frames = batch_frames(&releases, 3);
        assert_eq!(frames.len(), 2);
        assert!(matches!(&frames[0], Frame::Unsubscribe { symbols } if symbols.len() == 3));
        assert!(matches!(&frames[1], Frame::Unsubscribe { symbols } if symbols.len() == 2));
    }

    #[test]
    fn batching_keeps_each_keys_edges_in_order() {
        // Release then immediate re-subscribe of the same key must end subscribed.
        let x = k("X");
        let y = k("Y");
        let edges = [sub(&y, Mode::Ltp), unsub(&x, Mode::Ltp), sub(&x, Mode::Ltp)];
        assert_eq!(
            batch_frames(&edges, 100),
            [
                Frame::Subscribe {
                    symbols: vec![y.clone()],
                    mode: Mode::Ltp
                },
                Frame::Unsubscribe {
                    symbols: vec![KeyMode {
                        key: x.clone(),
                        mode: Mode::Ltp
                    }]
                },
                Frame::Subscribe {
                    symbols: vec![x.clone()],
                    mode: Mode::Ltp
                },
            ]
        );
        // A fall (subscribe lower, then unsubscribe higher) keeps its order.
        let mut t = SubscriptionTable::default();
        t.subscribe(A, x.clone(), Mode::Ltp).unwrap();
        t.subscribe(B, x.clone(), Mode::Depth).unwrap();
        let frames = batch_frames(&t.unsubscribe(B, &x), 100);
        assert_eq!(
            frames,
            [
                Frame::Subscribe {
                    symbols: vec![x.clone()],
                    mode: Mode::Ltp
                },
                Frame::Unsubscribe {
                    symbols: vec![KeyMode {
                        key: x.clone(),
                        mode: Mode::Depth
                    }]
                },
            ]
        );
    }

    #[test]
    fn resubscribe_restores_everything_at_upstream_mode_in_batches() {
        let mut t = SubscriptionTable::default();
        for i in 0..250 {
            t.subscribe(A, k(&format!("L{i:03}")), Mode::Ltp).unwrap();
        }
        for i in 0..3 {
            let key = k(&format!("D{i}"));
            t.subscribe(A, key.clone(), Mode::Ltp).unwrap();
            t.subscribe(B, key, Mode::Depth).unwrap();
        }
        let frames = t.resubscribe_frames(100);
        let shape: Vec<(Mode, usize)> = frames
            .iter()
            .map(|f| match f {
                Frame::Subscribe { symbols, mode } => (*mode, symbols.len()),
                Frame::Unsubscribe { .. } => panic!("resubscribe sent an unsubscribe"),
            })
            .collect();
        assert_eq!(
            shape,
            [
                (Mode::Ltp, 100),
                (Mode::Ltp, 100),
                (Mode::Ltp, 50),
                (Mode::Depth, 3)
            ]
        );
        let mut all: Vec<&Key> = frames
            .iter()
            .flat_map(|f| match f {
                Frame::Subscribe { symbols, .. } => symbols.iter(),
                Frame::Unsubscribe { .. } => [].iter(),
            })
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 253);
        assert_eq!(SubscriptionTable::default().resubscribe_frames(100), []);
    }
}
