//! Plain clients for driving a simulator (or any OpenAlgo gateway) from tests: a feed
//! WebSocket client that answers protocol pings, a REST client, and polling helpers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix_web_actors::ws::ProtocolError;
use anyhow::{Context, anyhow, bail};
use awc::ws::{CloseReason, Frame, Message};
use chrono::{DateTime, TimeZone, Utc};
use clock::OffsetClock;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use simulator::{SimConfig, Simulator};

pub const KEY_A: &str = "alpha-key-0001";
pub const KEY_B: &str = "bravo-key-0002";
pub const MASK_A: &str = "alph…";
pub const MASK_B: &str = "brav…";

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(5);

/// The instant a test's clock shows when it starts: Saturday 2026-11-28 at 10:00 in
/// Asia/Kolkata, the instant the service's integration tests start at too. The market is closed,
/// the nearest expiries are days away and midnight is hours away, so nothing a test does depends
/// on the machine's date or time of day (docs/time.md).
pub fn test_start() -> DateTime<Utc> {
    chrono_tz::Asia::Kolkata
        .with_ymd_and_hms(2026, 11, 28, 10, 0, 0)
        .single()
        .expect("a valid instant")
        .with_timezone(&Utc)
}

/// Two keys, free ports, no random walk (ticks only through `/sim/price`), a clock that starts
/// at [`test_start`] and then runs at the speed of real time.
pub fn config() -> SimConfig {
    SimConfig {
        rest_port: 0,
        ws_port: 0,
        api_keys: vec![KEY_A.to_string(), KEY_B.to_string()],
        ticks_per_s: 0.0,
        clock: Arc::new(OffsetClock::starting_at(test_start())),
        ..SimConfig::default()
    }
}

pub async fn start(config: SimConfig) -> Simulator {
    Simulator::start(config).await.expect("simulator starts")
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What arrived on a feed connection.
#[derive(Debug)]
pub enum Event {
    Json(Value),
    /// A text frame that is not JSON.
    Text(String),
    Binary(Vec<u8>),
    Closed(Option<CloseReason>),
}

trait Socket:
    Stream<Item = Result<Frame, ProtocolError>> + Sink<Message, Error = ProtocolError> + Unpin
{
}

impl<T> Socket for T where
    T: Stream<Item = Result<Frame, ProtocolError>> + Sink<Message, Error = ProtocolError> + Unpin
{
}

/// A feed client. Protocol pings are answered while reading unless disabled.
pub struct FeedClient {
    socket: Box<dyn Socket>,
    pub answer_pings: bool,
    pub pings_seen: usize,
}

impl FeedClient {
    pub async fn connect(url: &str) -> anyhow::Result<FeedClient> {
        let (_, framed) = awc::Client::new()
            .ws(url)
            .max_frame_size(16 * 1024 * 1024)
            .connect()
            .await
            .map_err(|e| anyhow!("connecting to {url}: {e}"))?;
        Ok(FeedClient {
            socket: Box::new(framed),
            answer_pings: true,
            pings_seen: 0,
        })
    }

    /// Connects and authenticates; fails unless the gateway answers with success.
    pub async fn authenticated(url: &str, key: &str) -> anyhow::Result<FeedClient> {
        let mut client = FeedClient::connect(url).await?;
        let reply = client
            .request(&json!({"action": "authenticate", "api_key": key}))
            .await?;
        if reply["type"] != "auth" || reply["status"] != "success" {
            bail!("authentication failed: {reply}");
        }
        Ok(client)
    }

    pub async fn send_json(&mut self, value: &Value) -> anyhow::Result<()> {
        self.send_text(&value.to_string()).await
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.socket
            .send(Message::Text(text.to_string().into()))
            .await
            .map_err(|e| anyhow!("sending: {e}"))
    }

    pub async fn send_binary(&mut self, bytes: &'static [u8]) -> anyhow::Result<()> {
        self.socket
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(|e| anyhow!("sending: {e}"))
    }

    /// Closes the connection with a normal close frame.
    pub async fn close(mut self) {
        let _ = self.socket.send(Message::Close(None)).await;
        let _ = self.socket.close().await;
    }

    /// The next event within `timeout`; `None` on timeout.
    pub async fn next_event_within(&mut self, timeout: Duration) -> anyhow::Result<Option<Event>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Ok(Some(Event::Closed(None))),
                Ok(Some(frame)) => frame.map_err(|e| anyhow!("reading: {e}"))?,
            };
            match frame {
                Frame::Text(bytes) => {
                    let text = String::from_utf8(bytes.to_vec()).context("text frame is UTF-8")?;
                    return Ok(Some(match serde_json::from_str(&text) {
                        Ok(value) => Event::Json(value),
                        Err(_) => Event::Text(text),
                    }));
                }
                Frame::Binary(bytes) => return Ok(Some(Event::Binary(bytes.to_vec()))),
                Frame::Close(reason) => return Ok(Some(Event::Closed(reason))),
                Frame::Ping(payload) => {
                    self.pings_seen += 1;
                    if self.answer_pings {
                        self.socket
                            .send(Message::Pong(payload))
                            .await
                            .map_err(|e| anyhow!("answering a ping: {e}"))?;
                    }
                }
                Frame::Pong(_) | Frame::Continuation(_) => {}
            }
        }
    }

    pub async fn next_event(&mut self) -> anyhow::Result<Event> {
        self.next_event_within(WAIT)
            .await?
            .ok_or_else(|| anyhow!("no frame within {WAIT:?}"))
    }

    /// The next JSON message; fails on anything else.
    pub async fn next_json(&mut self) -> anyhow::Result<Value> {
        match self.next_event().await? {
            Event::Json(value) => Ok(value),
            other => bail!("expected a JSON message, got {other:?}"),
        }
    }

    /// The next JSON message accepted by `keep`, skipping others.
    pub async fn next_matching(
        &mut self,
        what: &str,
        keep: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event_within(left).await? {
                Some(Event::Json(value)) if keep(&value) => return Ok(value),
                Some(Event::Closed(reason)) => {
                    bail!("closed ({reason:?}) while waiting for {what}")
                }
                Some(_) => {}
                None => bail!("no {what} within {WAIT:?}"),
            }
        }
    }

    /// The next `market_data` message.
    pub async fn next_tick(&mut self) -> anyhow::Result<Value> {
        self.next_matching("market_data", |v| v["type"] == "market_data")
            .await
    }

    /// Sends a request and returns the next message that is not a push
    /// (`market_data`, `order_update`).
    pub async fn request(&mut self, value: &Value) -> anyhow::Result<Value> {
        self.send_json(value).await?;
        self.next_matching("a reply", |v| {
            v["type"] != "market_data" && v["type"] != "order_update"
        })
        .await
    }

    /// Everything received until the reply to a JSON ping sent now (a fence: the
    /// gateway answers in order, so earlier pushes arrive first).
    pub async fn drain_until_pong(&mut self) -> anyhow::Result<Vec<Value>> {
        let fence = format!("fence-{}", rand::random::<u64>());
        self.send_json(&json!({"action": "ping", "_pingId": fence}))
            .await?;
        let mut seen = Vec::new();
        loop {
            match self.next_event().await? {
                Event::Json(value)
                    if value["type"] == "pong" && value["_pingId"] == fence.as_str() =>
                {
                    return Ok(seen);
                }
                Event::Json(value) => seen.push(value),
                Event::Closed(reason) => bail!("closed ({reason:?}) before the fence"),
                _ => {}
            }
        }
    }

    /// Waits for the connection to close; returns the close reason.
    pub async fn closed(&mut self) -> anyhow::Result<Option<CloseReason>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event_within(left).await {
                Ok(Some(Event::Closed(reason))) => return Ok(reason),
                // A connection reset also ends the stream.
                Err(_) => return Ok(None),
                Ok(Some(_)) => {}
                Ok(None) => bail!("still open after {WAIT:?}"),
            }
        }
    }
}

/// A REST client for `/api/v1/*` and `/sim/*`.
pub struct Rest {
    client: awc::Client,
    base: String,
}

impl Rest {
    pub fn new(base: String) -> Rest {
        Rest::with_timeout(base, Duration::from_secs(10))
    }

    /// A client that gives up waiting for an answer after `timeout`.
    pub fn with_timeout(base: String, timeout: Duration) -> Rest {
        Rest {
            client: awc::Client::builder().timeout(timeout).finish(),
            base,
        }
    }

    async fn read(
        mut response: awc::ClientResponse<
            impl Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
        >,
    ) -> (u16, Value) {
        let status = response.status().as_u16();
        let body = response
            .body()
            .limit(64 * 1024 * 1024)
            .await
            .expect("response body");
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        (status, value)
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .send_json(body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        Self::read(response).await
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .insert_header(("content-type", "application/json"))
            .send_body(body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        Self::read(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        Self::read(response).await
    }

    /// `POST /api/v1/<endpoint>` with `apikey` added to `body`.
    pub async fn api(&self, endpoint: &str, key: &str, mut body: Value) -> (u16, Value) {
        body["apikey"] = json!(key);
        self.post(&format!("/api/v1/{endpoint}"), &body).await
    }

    /// Like [`Rest::api`], but a request that gets no answer (a timeout, a reset) is an
    /// error, as text, instead of a panic.
    pub async fn try_api(
        &self,
        endpoint: &str,
        key: &str,
        mut body: Value,
    ) -> Result<(u16, Value), String> {
        body["apikey"] = json!(key);
        let response = self
            .client
            .post(format!("{}/api/v1/{endpoint}", self.base))
            .send_json(&body)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self::read(response).await)
    }

    pub async fn stats(&self) -> Value {
        let (status, stats) = self.get("/sim/stats").await;
        assert_eq!(status, 200, "{stats}");
        stats
    }

    pub async fn set_price(&self, exchange: &str, symbol: &str, ltp: f64) {
        let (status, body) = self
            .post(
                "/sim/price",
                &json!({"exchange": exchange, "symbol": symbol, "ltp": ltp}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn fault(&self, fault: Value) {
        let (status, body) = self.post("/sim/fault", &fault).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!({"status": "ok"}));
    }

    /// The subscription rows of `/sim/stats` for one instrument: mode → clients.
    pub async fn holders(&self, exchange: &str, symbol: &str) -> Vec<(u64, u64)> {
        let stats = self.stats().await;
        stats["subscriptions"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter(|r| r["exchange"] == exchange && r["symbol"] == symbol)
                    .map(|r| {
                        (
                            r["mode"].as_u64().unwrap_or(0),
                            r["clients"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
