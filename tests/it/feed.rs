//! One upstream feed per API key (issue: ConnectionActor + SubscriptionRegistryActor), driven at
//! actor level against the simulator on port 0.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use ::actors::domain::backoff::BackoffPolicy;
use ::actors::feed::{
    ConnectionSettings, ConnectionState, Feed, FeedEvent, FeedTarget, GetConnectionStatus,
    GetRegistryStatus, Holder, Key, Mode, RegistryError, StartFeed, Subscribe, SubscriberId,
    Unsubscribe, next_subscriber_id,
};
use ::actors::supervised::Supervision;
use actix::prelude::*;
use serde_json::{Value, json};
use simulator::{SimConfig, Simulator};

use crate::helpers::poll_until;

pub const FEED_KEY: &str = "feedkey-0001-aaaa-bbbb";

/// A simulator on free ports with the feed key and a backup key, its clock at the tests' usual
/// starting instant.
pub fn sim_config(ticks_per_s: f64) -> SimConfig {
    SimConfig {
        rest_port: 0,
        ws_port: 0,
        api_keys: vec![FEED_KEY.into(), "backupkey-0002-cccc".into()],
        ticks_per_s,
        clock: crate::helpers::test_clock(),
        ..SimConfig::default()
    }
}

pub async fn start_sim(ticks_per_s: f64) -> Simulator {
    Simulator::start(sim_config(ticks_per_s))
        .await
        .expect("simulator starts")
}

pub fn fast_settings() -> ConnectionSettings {
    ConnectionSettings {
        backoff: BackoffPolicy {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(2),
            jitter: 0.2,
            reset_after: Duration::from_secs(30),
            limit_min: Duration::from_secs(1),
        },
        idle_timeout: Duration::from_secs(30),
        ping_interval: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(5),
        max_frame_bytes: 16 * 1024 * 1024,
        subscribe_batch_size: 100,
        max_symbols: 1000,
        position_reserve_share: 0.5,
        supervision: Supervision {
            max_restarts: 5,
            window: Duration::from_secs(60),
        },
    }
}

pub fn target(sim: &Simulator) -> FeedTarget {
    FeedTarget {
        account_id: 1,
        account_name: "primary".into(),
        ws_url: sim.ws_url(),
        rest_url: sim.rest_url(),
        api_key: FEED_KEY.into(),
    }
}

pub async fn sim_stats(sim: &Simulator) -> Value {
    let mut resp = awc::Client::default()
        .get(format!("{}/sim/stats", sim.rest_url()))
        .send()
        .await
        .expect("sim stats");
    resp.json().await.expect("sim stats json")
}

pub async fn sim_post(sim: &Simulator, path: &str, body: Value) -> Value {
    let mut resp = awc::Client::default()
        .post(format!("{}{path}", sim.rest_url()))
        .send_json(&body)
        .await
        .expect("sim control");
    assert!(
        resp.status().is_success(),
        "{path} {body}: {}",
        resp.status()
    );
    resp.json().await.unwrap_or(Value::Null)
}

/// Upstream subscriptions as the simulator holds them: (exchange, symbol, mode, clients).
pub async fn upstream(sim: &Simulator) -> BTreeSet<(String, String, u64, u64)> {
    sim_stats(sim).await["subscriptions"]
        .as_array()
        .expect("subscriptions array")
        .iter()
        .map(|s| {
            (
                s["exchange"].as_str().unwrap_or_default().to_string(),
                s["symbol"].as_str().unwrap_or_default().to_string(),
                s["mode"].as_u64().unwrap_or_default(),
                s["clients"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

async fn live_feed(sim: &Simulator, settings: ConnectionSettings) -> Feed {
    let feed = Feed::start(settings, Some(target(sim)), None);
    feed.streams.do_send(StartFeed);
    wait_live(&feed).await;
    feed
}

pub async fn wait_live(feed: &Feed) {
    let conn = feed.streams.clone();
    poll_until(Duration::from_secs(20), "feed Live", || {
        let conn = conn.clone();
        async move {
            let s = conn.send(GetConnectionStatus).await.ok()?;
            (s.state == ConnectionState::Live).then_some(())
        }
    })
    .await;
}

/// A test consumer that records what it receives.
#[derive(Default)]
pub struct Probe {
    pub ticks: HashMap<Key, (u64, f64)>,
    pub rejected: Vec<(Key, String)>,
}

impl Actor for Probe {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A consumer that keeps up (like the position monitor) sizes its mailbox for bursts.
        ctx.set_mailbox_capacity(100_000);
    }
}

impl Handler<FeedEvent> for Probe {
    type Result = ();
    fn handle(&mut self, msg: FeedEvent, _: &mut Context<Self>) {
        match msg {
            FeedEvent::Tick(t) => {
                let e = self.ticks.entry((*t.key).clone()).or_default();
                e.0 += 1;
                e.1 = t.ltp;
            }
            FeedEvent::Rejected { key, message } => self.rejected.push((key, message)),
        }
    }
}

#[derive(Message)]
#[rtype(result = "(HashMap<Key, (u64, f64)>, Vec<(Key, String)>)")]
pub struct Seen;

impl Handler<Seen> for Probe {
    type Result = MessageResult<Seen>;
    fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.ticks.clone(), self.rejected.clone()))
    }
}

pub struct ProbeHandle {
    pub id: SubscriberId,
    pub addr: Addr<Probe>,
}

pub fn probe() -> ProbeHandle {
    ProbeHandle {
        id: next_subscriber_id(),
        addr: Probe::default().start(),
    }
}

impl ProbeHandle {
    pub fn subscribe(&self, keys: &[(&str, &str, Mode)]) -> Subscribe {
        self.subscribe_as(Holder::Positions, keys)
    }

    pub fn subscribe_as(&self, holder: Holder, keys: &[(&str, &str, Mode)]) -> Subscribe {
        Subscribe {
            subscriber: self.id,
            label: format!("probe-{}", self.id.0),
            recipient: self.addr.clone().recipient(),
            keys: keys
                .iter()
                .map(|(e, s, m)| (Key::new(*e, *s), *m))
                .collect(),
            holder,
        }
    }

    pub async fn ticks_of(&self, exchange: &str, symbol: &str) -> u64 {
        let (ticks, _) = self.addr.send(Seen).await.unwrap();
        ticks
            .get(&Key::new(exchange, symbol))
            .map(|t| t.0)
            .unwrap_or(0)
    }
}

async fn frames_sent(feed: &Feed) -> u64 {
    feed.registry
        .send(GetRegistryStatus)
        .await
        .unwrap()
        .frames_sent
}

const EQUITIES: [&str; 10] = [
    "RELIANCE",
    "INFY",
    "TCS",
    "HDFCBANK",
    "ICICIBANK",
    "SBIN",
    "ITC",
    "LT",
    "AXISBANK",
    "KOTAKBANK",
];

#[actix_web::test]
async fn two_hundred_consumers_at_once_share_one_connection() {
    let sim = start_sim(0.0).await;
    let feed = Feed::start(fast_settings(), Some(target(&sim)), None);
    // Many consumers asking for the connection at once still yield one socket.
    for _ in 0..50 {
        feed.streams.do_send(StartFeed);
    }
    let modes = [Mode::Ltp, Mode::Quote, Mode::Depth];
    let probes: Vec<ProbeHandle> = (0..200).map(|_| probe()).collect();
    let mut expected: HashMap<(String, String), u64> = HashMap::new();
    let mut requests = Vec::new();
    for (i, p) in probes.iter().enumerate() {
        let symbol = EQUITIES[i % EQUITIES.len()];
        let mode = modes[(i / EQUITIES.len()) % 3];
        let keys = [("NSE", symbol, mode), ("NSE_INDEX", "NIFTY", Mode::Ltp)];
        for (e, s, m) in keys {
            let slot = expected.entry((e.to_string(), s.to_string())).or_default();
            *slot = (*slot).max(m as u64);
        }
        requests.push(feed.registry.send(p.subscribe(&keys)));
    }
    for r in futures_util::future::join_all(requests).await {
        r.unwrap().unwrap();
    }
    wait_live(&feed).await;
    let want: BTreeSet<(String, String, u64, u64)> = expected
        .into_iter()
        .map(|((e, s), m)| (e, s, m, 1))
        .collect();
    poll_until(
        Duration::from_secs(10),
        "upstream = union at max mode",
        || {
            let (sim, want) = (&sim, &want);
            async move { (upstream(sim).await == *want).then_some(()) }
        },
    )
    .await;
    let stats = sim_stats(&sim).await;
    assert_eq!(stats["feed"]["total_connections"], 1);
    assert_eq!(stats["feed"]["connections"]["feed…"], 1);
    assert_eq!(stats["feed"]["refused_connections"], 0);
    assert_eq!(
        stats["feed"]["auth_attempts"], 1,
        "one socket, one authentication"
    );
    let registry = feed.registry.send(GetRegistryStatus).await.unwrap();
    assert_eq!(registry.symbols, 11);
    assert_eq!(registry.consumers.len(), 200);
}

#[actix_web::test]
async fn only_refcount_edges_send_frames() {
    let sim = start_sim(0.0).await;
    let feed = live_feed(&sim, fast_settings()).await;
    let (a, b, c) = (probe(), probe(), probe());
    let reliance = |m: u64, clients: u64| {
        BTreeSet::from([("NSE".to_string(), "RELIANCE".to_string(), m, clients)])
    };
    let wait_upstream = |want: BTreeSet<(String, String, u64, u64)>, what: &'static str| {
        let sim = &sim;
        async move {
            poll_until(Duration::from_secs(10), what, || {
                let want = want.clone();
                async move { (upstream(sim).await == want).then_some(()) }
            })
            .await
        }
    };

    feed.registry
        .send(a.subscribe(&[("NSE", "RELIANCE", Mode::Ltp)]))
        .await
        .unwrap()
        .unwrap();
    wait_upstream(reliance(1, 1), "first subscriber subscribes").await;
    let f0 = frames_sent(&feed).await;

    feed.registry
        .send(b.subscribe(&[("NSE", "RELIANCE", Mode::Ltp)]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        frames_sent(&feed).await,
        f0,
        "a second subscriber adds no frame"
    );

    let key = Key::new("NSE", "RELIANCE");
    feed.registry
        .send(Unsubscribe {
            subscriber: a.id,
            keys: vec![key.clone()],
        })
        .await
        .unwrap();
    assert_eq!(
        frames_sent(&feed).await,
        f0,
        "the first leaving sends nothing"
    );
    assert_eq!(upstream(&sim).await, reliance(1, 1));

    feed.registry
        .send(c.subscribe(&[("NSE", "RELIANCE", Mode::Depth)]))
        .await
        .unwrap()
        .unwrap();
    wait_upstream(reliance(3, 1), "mode rises to Depth").await;
    assert_eq!(
        frames_sent(&feed).await,
        f0 + 2,
        "subscribe Depth, unsubscribe LTP"
    );

    feed.registry
        .send(Unsubscribe {
            subscriber: c.id,
            keys: vec![key.clone()],
        })
        .await
        .unwrap();
    wait_upstream(reliance(1, 1), "mode falls back to LTP").await;
    assert_eq!(frames_sent(&feed).await, f0 + 4);

    feed.registry
        .send(Unsubscribe {
            subscriber: b.id,
            keys: vec![key.clone()],
        })
        .await
        .unwrap();
    wait_upstream(BTreeSet::new(), "the last leaving unsubscribes").await;
    assert_eq!(frames_sent(&feed).await, f0 + 5);

    // A subscriber that stops releases all its keys in one sweep.
    let d = probe();
    let keys: Vec<(&str, &str, Mode)> = EQUITIES[..5]
        .iter()
        .map(|s| ("NSE", *s, Mode::Quote))
        .collect();
    feed.registry
        .send(d.subscribe(&keys))
        .await
        .unwrap()
        .unwrap();
    poll_until(Duration::from_secs(10), "five keys upstream", || {
        let sim = &sim;
        async move { (upstream(sim).await.len() == 5).then_some(()) }
    })
    .await;
    d.addr.do_send(StopProbe);
    wait_upstream(BTreeSet::new(), "stopped subscriber released").await;
    let registry = feed.registry.send(GetRegistryStatus).await.unwrap();
    assert_eq!(registry.symbols, 0);
    assert!(registry.consumers.is_empty());
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct StopProbe;

impl Handler<StopProbe> for Probe {
    type Result = ();
    fn handle(&mut self, _: StopProbe, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[actix_web::test]
async fn the_symbol_cap_rejects_a_request_whole() {
    let sim = start_sim(0.0).await;
    let mut settings = fast_settings();
    settings.max_symbols = 3;
    let feed = live_feed(&sim, settings).await;
    let p = probe();
    feed.registry
        .send(p.subscribe(&[("NSE", "RELIANCE", Mode::Ltp), ("NSE", "INFY", Mode::Ltp)]))
        .await
        .unwrap()
        .unwrap();
    let err = feed
        .registry
        .send(p.subscribe(&[("NSE", "TCS", Mode::Ltp), ("NSE", "SBIN", Mode::Ltp)]))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        RegistryError::SymbolCap {
            cap: 3,
            held: 2,
            adding: 2
        }
    );
    assert!(err.to_string().contains("at most 3 symbols"));
    let registry = feed.registry.send(GetRegistryStatus).await.unwrap();
    assert_eq!(
        registry.symbols, 2,
        "nothing of the refused request was added"
    );
    // Raising the mode of held keys is not refused by the cap.
    feed.registry
        .send(p.subscribe(&[("NSE", "RELIANCE", Mode::Quote)]))
        .await
        .unwrap()
        .unwrap();
}

#[actix_web::test]
async fn chain_viewers_never_take_the_symbols_kept_for_positions() {
    let sim = start_sim(0.0).await;
    let mut settings = fast_settings();
    settings.max_symbols = 4;
    settings.position_reserve_share = 0.5;
    let feed = live_feed(&sim, settings).await;
    let (viewer, positions) = (probe(), probe());
    feed.registry
        .send(viewer.subscribe_as(
            Holder::Viewer,
            &[("NSE", "RELIANCE", Mode::Ltp), ("NSE", "INFY", Mode::Ltp)],
        ))
        .await
        .unwrap()
        .unwrap();
    // A viewer may not go past the unreserved half…
    let err = feed
        .registry
        .send(viewer.subscribe_as(Holder::Viewer, &[("NSE", "TCS", Mode::Ltp)]))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err,
        RegistryError::ViewerShare {
            cap: 4,
            allowed: 2,
            held: 2,
            adding: 1
        }
    );
    assert!(err.to_string().contains("kept for open positions"), "{err}");
    // …while positions still find their room, and a viewer may share keys already held.
    feed.registry
        .send(positions.subscribe(&[("NSE", "TCS", Mode::Ltp), ("NSE", "SBIN", Mode::Ltp)]))
        .await
        .unwrap()
        .unwrap();
    feed.registry
        .send(viewer.subscribe_as(Holder::Viewer, &[("NSE", "TCS", Mode::Ltp)]))
        .await
        .unwrap()
        .unwrap();
    let registry = feed.registry.send(GetRegistryStatus).await.unwrap();
    assert_eq!(registry.symbols, 4);
}

#[actix_web::test]
async fn unknown_symbols_are_reported_and_not_retried() {
    let sim = start_sim(0.0).await;
    let feed = live_feed(&sim, fast_settings()).await;
    let p = probe();
    feed.registry
        .send(p.subscribe(&[
            ("NSE", "NOSUCHSYMBOL", Mode::Ltp),
            ("NSE", "INFY", Mode::Ltp),
        ]))
        .await
        .unwrap()
        .unwrap();
    let rejected = poll_until(Duration::from_secs(10), "rejection reported", || {
        let addr = p.addr.clone();
        async move {
            let (_, rejected) = addr.send(Seen).await.ok()?;
            (!rejected.is_empty()).then_some(rejected)
        }
    })
    .await;
    assert_eq!(rejected[0].0, Key::new("NSE", "NOSUCHSYMBOL"));
    assert!(rejected[0].1.contains("not found"), "{}", rejected[0].1);
    let status = feed.registry.send(GetRegistryStatus).await.unwrap();
    assert_eq!(status.rejected, 1);
    let frames = status.frames_sent;
    // Give a retry loop the chance to show itself: a few ack round trips later, still the same.
    for _ in 0..5 {
        sim_stats(&sim).await;
    }
    assert_eq!(
        frames_sent(&feed).await,
        frames,
        "a rejected symbol is not retried"
    );
}

#[actix_web::test]
async fn a_new_subscriber_gets_the_last_price_at_once() {
    let sim = start_sim(0.0).await;
    let feed = live_feed(&sim, fast_settings()).await;
    let (a, b) = (probe(), probe());
    feed.registry
        .send(a.subscribe(&[("NSE", "INFY", Mode::Ltp)]))
        .await
        .unwrap()
        .unwrap();
    poll_until(Duration::from_secs(10), "subscribed upstream", || {
        let sim = &sim;
        async move { (!upstream(sim).await.is_empty()).then_some(()) }
    })
    .await;
    sim_post(
        &sim,
        "/sim/price",
        json!({"exchange":"NSE","symbol":"INFY","ltp":1500.5}),
    )
    .await;
    poll_until(Duration::from_secs(10), "a sees the tick", || {
        let a = &a;
        async move { (a.ticks_of("NSE", "INFY").await > 0).then_some(()) }
    })
    .await;
    feed.registry
        .send(b.subscribe(&[("NSE", "INFY", Mode::Ltp)]))
        .await
        .unwrap()
        .unwrap();
    let (ticks, _) = b.addr.send(Seen).await.unwrap();
    assert_eq!(
        ticks.get(&Key::new("NSE", "INFY")).map(|t| t.1),
        Some(1500.5)
    );
}

#[actix_web::test]
async fn dropped_connections_come_back_live_with_everything_resubscribed() {
    let sim = start_sim(200.0).await;
    let feed = live_feed(&sim, fast_settings()).await;
    let p = probe();
    let keys: Vec<(&str, &str, Mode)> = EQUITIES
        .iter()
        .map(|s| ("NSE", *s, Mode::Quote))
        .chain([("NSE_INDEX", "NIFTY", Mode::Depth)])
        .collect();
    feed.registry
        .send(p.subscribe(&keys))
        .await
        .unwrap()
        .unwrap();
    let before = poll_until(Duration::from_secs(10), "all keys upstream", || {
        let (sim, keys) = (&sim, &keys);
        async move {
            let u = upstream(sim).await;
            (u.len() == keys.len()).then_some(u)
        }
    })
    .await;

    for round in 1..=2u64 {
        sim_post(&sim, "/sim/fault", json!({"drop_connections": true})).await;
        poll_until(Duration::from_secs(20), "reconnected", || {
            let (feed, sim) = (&feed, &sim);
            async move {
                let stats = sim_stats(sim).await;
                assert!(
                    stats["feed"]["total_connections"].as_u64().unwrap() <= 1,
                    "never two connections: {stats}"
                );
                let s = feed.streams.send(GetConnectionStatus).await.ok()?;
                (s.reconnects >= round && s.state == ConnectionState::Live).then_some(())
            }
        })
        .await;
        poll_until(Duration::from_secs(10), "resubscribed", || {
            let (sim, before) = (&sim, &before);
            async move { (upstream(sim).await == *before).then_some(()) }
        })
        .await;
        let t0 = p.ticks_of("NSE_INDEX", "NIFTY").await + p.ticks_of("NSE", "INFY").await;
        poll_until(Duration::from_secs(10), "ticks flowing again", || {
            let p = &p;
            async move {
                let t = p.ticks_of("NSE_INDEX", "NIFTY").await + p.ticks_of("NSE", "INFY").await;
                (t > t0).then_some(())
            }
        })
        .await;
    }
    let stats = sim_stats(&sim).await;
    assert_eq!(stats["feed"]["refused_connections"], 0);
    assert_eq!(stats["feed"]["total_connections"], 1);
}

#[actix_web::test]
async fn refused_authentication_backs_off_instead_of_storming() {
    let sim = start_sim(0.0).await;
    // Taken before the refusal starts, so "live after at least 3 s" holds however slow the
    // machine is.
    let started = std::time::Instant::now();
    sim_post(&sim, "/sim/fault", json!({"refuse_auth_s": 3})).await;
    let feed = Feed::start(fast_settings(), Some(target(&sim)), None);
    feed.streams.do_send(StartFeed);
    wait_live(&feed).await;
    let elapsed = started.elapsed();
    let attempts = sim_stats(&sim).await["feed"]["auth_attempts"]
        .as_u64()
        .unwrap();
    // limit_min is 1 s (×1.2 jitter at most): a 3 s refusal allows at most 4 refused attempts,
    // plus the one that succeeds. A storm would be hundreds.
    assert!(
        attempts <= 5,
        "{attempts} authentication attempts in {elapsed:?}"
    );
    assert!(attempts >= 2, "refused at first, then accepted: {attempts}");
    assert!(
        elapsed >= Duration::from_secs(3),
        "not live before the refusal ended"
    );
    let status = feed.streams.send(GetConnectionStatus).await.unwrap();
    assert!(
        status
            .recent_events
            .iter()
            .any(|e| e.detail.contains("AUTHENTICATION_ERROR"))
    );
    assert!(
        !format!("{status:?}").contains(FEED_KEY),
        "the key is never shown"
    );
}

#[actix_web::test]
async fn a_connection_limit_error_backs_off_and_recovers_when_the_slot_frees() {
    let sim = start_sim(0.0).await;
    // Another tool already holds the key's only feed slot.
    let (_resp, mut other) = awc::Client::default()
        .ws(sim.ws_url())
        .connect()
        .await
        .unwrap();
    use futures_util::{SinkExt, StreamExt};
    other
        .send(awc::ws::Message::Text(
            json!({"action":"authenticate","api_key":FEED_KEY})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let _auth = other.next().await.unwrap().unwrap();

    let feed = Feed::start(fast_settings(), Some(target(&sim)), None);
    feed.streams.do_send(StartFeed);
    let status = poll_until(Duration::from_secs(10), "refused and backing off", || {
        let feed = &feed;
        async move {
            let s = feed.streams.send(GetConnectionStatus).await.ok()?;
            (s.state == ConnectionState::BackingOff
                && s.last_error
                    .as_deref()
                    .unwrap_or("")
                    .contains("Connection Limit"))
            .then_some(s)
        }
    })
    .await;
    // The delay is measured from the failure the actor recorded, not from this read, which a
    // slow machine may make late.
    let next = status.next_retry_at.unwrap();
    let failed_at = status
        .recent_events
        .iter()
        .rev()
        .find(|e| e.detail.contains("Connection Limit"))
        .expect("the refusal is recorded")
        .at;
    let wait = next - failed_at;
    assert!(
        wait >= chrono::Duration::milliseconds(1000),
        "limit errors back off at least limit_min (1 s), got {wait}"
    );
    drop(other);
    wait_live(&feed).await;
    let refused = sim_stats(&sim).await["feed"]["refused_connections"]
        .as_u64()
        .unwrap();
    assert!(
        refused <= 2,
        "no retry storm against the limit: {refused} refusals"
    );
}

#[actix_web::test]
async fn a_stalled_feed_is_reconnected_by_the_idle_watchdog() {
    let sim = start_sim(100.0).await;
    let mut settings = fast_settings();
    settings.idle_timeout = Duration::from_secs(1);
    let feed = live_feed(&sim, settings).await;
    let p = probe();
    feed.registry
        .send(p.subscribe(&[("NSE_INDEX", "NIFTY", Mode::Ltp)]))
        .await
        .unwrap()
        .unwrap();
    poll_until(Duration::from_secs(10), "ticks", || {
        let p = &p;
        async move { (p.ticks_of("NSE_INDEX", "NIFTY").await > 0).then_some(()) }
    })
    .await;
    sim_post(&sim, "/sim/fault", json!({"pause_ticks_s": 4})).await;
    poll_until(Duration::from_secs(15), "watchdog reconnect", || {
        let feed = &feed;
        async move {
            let s = feed.streams.send(GetConnectionStatus).await.ok()?;
            s.recent_events
                .iter()
                .any(|e| e.detail.contains("feed stalled"))
                .then_some(())
        }
    })
    .await;
    wait_live(&feed).await;
    let t0 = p.ticks_of("NSE_INDEX", "NIFTY").await;
    poll_until(Duration::from_secs(15), "ticks after the pause", || {
        let p = &p;
        async move { (p.ticks_of("NSE_INDEX", "NIFTY").await > t0).then_some(()) }
    })
    .await;
}

#[actix_web::test]
async fn malformed_frames_are_counted_and_ticks_continue() {
    let sim = start_sim(100.0).await;
    let feed = live_feed(&sim, fast_settings()).await;
    let p = probe();
    feed.registry
        .send(p.subscribe(&[("NSE_INDEX", "NIFTY", Mode::Ltp)]))
        .await
        .unwrap()
        .unwrap();
    sim_post(&sim, "/sim/fault", json!({"malformed_frames": 8})).await;
    poll_until(Duration::from_secs(10), "malformed frames counted", || {
        let feed = &feed;
        async move {
            let c = feed.streams.send(GetConnectionStatus).await.ok()?;
            let r = feed.registry.send(GetRegistryStatus).await.ok()?;
            (c.malformed + r.malformed >= 8).then_some(())
        }
    })
    .await;
    let t0 = p.ticks_of("NSE_INDEX", "NIFTY").await;
    poll_until(Duration::from_secs(10), "ticks continue", || {
        let p = &p;
        async move { (p.ticks_of("NSE_INDEX", "NIFTY").await > t0 + 10).then_some(()) }
    })
    .await;
    let c = feed.streams.send(GetConnectionStatus).await.unwrap();
    assert_eq!(c.state, ConnectionState::Live);
    assert_eq!(
        c.reconnects, 0,
        "malformed frames do not cost the connection"
    );
}

/// A consumer stuck in a handler (blocking its own arbiter thread) until released.
struct Stuck {
    release: Option<std::sync::mpsc::Receiver<()>>,
}

impl Actor for Stuck {
    type Context = Context<Self>;
}

impl Handler<FeedEvent> for Stuck {
    type Result = ();
    fn handle(&mut self, _: FeedEvent, _: &mut Context<Self>) {
        if let Some(rx) = self.release.take() {
            let _ = rx.recv();
        }
    }
}

#[actix_web::test]
async fn a_consumer_that_never_drains_does_not_delay_the_others() {
    let sim = start_sim(2000.0).await;
    let feed = live_feed(&sim, fast_settings()).await;
    let keys: Vec<(&str, &str, Mode)> = EQUITIES[..5]
        .iter()
        .map(|s| ("NSE", *s, Mode::Ltp))
        .collect();

    let arbiter = Arbiter::new();
    let (release, rx) = std::sync::mpsc::channel();
    let stuck = Stuck::start_in_arbiter(&arbiter.handle(), move |_| Stuck { release: Some(rx) });
    let stuck_id = next_subscriber_id();
    feed.registry
        .send(Subscribe {
            subscriber: stuck_id,
            label: "stuck".into(),
            recipient: stuck.recipient(),
            keys: keys
                .iter()
                .map(|(e, s, m)| (Key::new(*e, *s), *m))
                .collect(),
            holder: Holder::Positions,
        })
        .await
        .unwrap()
        .unwrap();
    let (a, b) = (probe(), probe());
    feed.registry
        .send(a.subscribe(&keys))
        .await
        .unwrap()
        .unwrap();
    feed.registry
        .send(b.subscribe(&keys))
        .await
        .unwrap()
        .unwrap();

    let total = |p: &ProbeHandle| {
        let addr = p.addr.clone();
        async move {
            let (ticks, _) = addr.send(Seen).await.unwrap();
            ticks.values().map(|t| t.0).sum::<u64>()
        }
    };
    poll_until(
        Duration::from_secs(30),
        "2000 ticks to each live consumer",
        || {
            let (a, b) = (&a, &b);
            async move { (total(a).await >= 2000 && total(b).await >= 2000).then_some(()) }
        },
    )
    .await;
    let status = feed.registry.send(GetRegistryStatus).await.unwrap();
    let view = |id: SubscriberId| status.consumers.iter().find(|c| c.id == id.0).unwrap();
    let stuck_view = view(stuck_id);
    assert!(
        stuck_view.dropped > 0,
        "the stuck consumer's ticks were coalesced"
    );
    assert!(
        stuck_view.pending <= keys.len(),
        "at most one parked tick per key: {}",
        stuck_view.pending
    );
    assert!(
        stuck_view.delivered <= 20,
        "its mailbox filled: {}",
        stuck_view.delivered
    );
    for p in [&a, &b] {
        let v = view(p.id);
        assert_eq!(v.dropped, 0, "a live consumer loses nothing");
        assert!(v.delivered >= 2000);
    }
    let routed: u64 = status.subscriptions.iter().map(|s| s.ticks).sum();
    let delivered_a = view(a.id).delivered;
    assert!(
        delivered_a + 5 >= routed,
        "the live consumer got every routed tick: {delivered_a} of {routed}"
    );
    release.send(()).unwrap();
    arbiter.stop();
}
