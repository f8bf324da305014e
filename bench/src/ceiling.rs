//! The ceiling: a bare client on the same feed that only reads and parses frames (with the
//! supervisor's own parser), nothing else.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use awc::ws;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

use actors::openalgo::feed::parse_market_data;

/// Symbols per subscribe frame.
const BATCH: usize = 500;

/// An authenticated feed connection with `symbols` subscribed in Quote mode.
pub async fn connect(
    ws_url: &str,
    api_key: &str,
    symbols: &[(String, String)],
) -> anyhow::Result<actix_codec::Framed<awc::BoxedSocket, ws::Codec>> {
    let (_, mut feed) = awc::Client::new()
        .ws(ws_url)
        .max_frame_size(16 * 1024 * 1024)
        .connect()
        .await
        .map_err(|e| anyhow!("connecting the bare client to {ws_url}: {e}"))?;
    send(
        &mut feed,
        json!({"action": "authenticate", "api_key": api_key}),
    )
    .await?;
    let auth = next_reply(&mut feed).await?;
    if auth["status"] != "success" {
        bail!("the feed refused the bare client: {auth}");
    }
    for batch in symbols.chunks(BATCH) {
        let list: Vec<Value> = batch
            .iter()
            .map(|(exchange, symbol)| json!({"exchange": exchange, "symbol": symbol}))
            .collect();
        send(
            &mut feed,
            json!({"action": "subscribe", "symbols": list, "mode": 2}),
        )
        .await?;
    }
    Ok(feed)
}

async fn send(
    feed: &mut actix_codec::Framed<awc::BoxedSocket, ws::Codec>,
    message: Value,
) -> anyhow::Result<()> {
    feed.send(ws::Message::Text(message.to_string().into()))
        .await
        .map_err(|e| anyhow!("writing to the feed: {e}"))
}

/// The next text frame that is not market data.
async fn next_reply(
    feed: &mut actix_codec::Framed<awc::BoxedSocket, ws::Codec>,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(frame) = tokio::time::timeout_at(deadline.into(), feed.next())
        .await
        .context("the feed did not answer within 10 s")?
    {
        if let ws::Frame::Text(text) = frame.map_err(|e| anyhow!("reading the feed: {e}"))? {
            let value: Value = serde_json::from_slice(&text).context("a feed reply")?;
            if value["type"] != "market_data" {
                return Ok(value);
            }
        }
    }
    bail!("the feed closed")
}

/// Reads and parses market data for `warmup` + `window`; ticks per second over the window.
pub async fn measure(
    feed: &mut actix_codec::Framed<awc::BoxedSocket, ws::Codec>,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<f64> {
    let start = Instant::now() + warmup;
    let end = start + window;
    let mut parsed = 0u64;
    loop {
        let Ok(next) = tokio::time::timeout_at(end.into(), feed.next()).await else {
            break;
        };
        let frame = next
            .context("the feed closed during the ceiling run")?
            .map_err(|e| anyhow!("reading the feed: {e}"))?;
        match frame {
            ws::Frame::Text(text)
                if parse_market_data(&text).is_ok() && Instant::now() >= start =>
            {
                parsed += 1;
            }
            ws::Frame::Ping(payload) => {
                feed.send(ws::Message::Pong(payload))
                    .await
                    .map_err(|e| anyhow!("answering a ping: {e}"))?;
            }
            ws::Frame::Close(reason) => bail!("the feed closed the bare client: {reason:?}"),
            _ => {}
        }
    }
    let _ = feed.send(ws::Message::Close(None)).await;
    Ok(parsed as f64 / window.as_secs_f64())
}
