//! The admin page in headless Chromium (issue 8), driven from Rust through chromedriver with
//! fantoccini, against the service and the simulator on port 0. Screenshots go to
//! `target/screenshots/`. Without Chromium the test prints a note and passes, except in CI
//! (`CI` set), where it must run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{TEST_TOKEN, poll_until};
use crate::risk::{Harness, LegSpec, options};

/// What this machine's network allows: nothing reaches out.
const CHROMIUM_ARGS: [&str; 10] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,1100",
    "--lang=en-US",
];

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free port, with a fresh Chromium profile; both go away on drop.
struct Browser {
    client: Client,
    driver: Child,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts chromedriver and a headless Chromium session, or None (with a note) when Chromium
/// is not installed outside CI.
async fn browser() -> Option<Browser> {
    let chromium = on_path("chromium").or_else(|| on_path("chromium-browser"));
    let (chromium, chromedriver) = match (chromium, on_path("chromedriver")) {
        (Some(c), Some(d)) => (c, d),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI must run the browser test: install chromium and chromium-driver")
        }
        _ => {
            eprintln!(
                "note: chromium or chromedriver is not installed; the browser test is skipped \
                 (apt-get install -y chromium chromium-driver)"
            );
            return None;
        }
    };
    let port = free_port();
    let driver = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().expect("a profile directory");
    let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"binary": chromium, "args": args}),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => break client,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "chromedriver not ready yet");
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    };
    Some(Browser {
        client,
        driver,
        _profile: profile,
    })
}

fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("target/screenshots");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    let path = screenshot_dir().join(name);
    std::fs::write(&path, png).expect("saving the screenshot");
    eprintln!("screenshot: {}", path.display());
}

async fn text(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn click(client: &Client, css: &str) {
    // Centred, so that the sticky top bar never covers the target.
    client
        .execute(
            "document.querySelector(arguments[0]).scrollIntoView({block: 'center'})",
            vec![json!(css)],
        )
        .await
        .unwrap_or_else(|e| panic!("scrolling to {css}: {e}"));
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

/// Waits until the element's text satisfies `accept`; returns it.
async fn wait_text(
    client: &Client,
    css: &str,
    what: &str,
    accept: impl Fn(&str) -> bool,
) -> String {
    poll_until(Duration::from_secs(20), what, || async {
        text(client, css).await.filter(|t| accept(t))
    })
    .await
}

async fn state(h: &Harness) -> Value {
    let (status, state) = h.get("/api/v1/state").await;
    assert_eq!(status, 200);
    state
}

#[actix_web::test]
async fn the_admin_page_in_headless_chromium() {
    let Some(browser) = browser().await else {
        return;
    };
    // The whole service against the simulator, a strategy with one open leg priced by the
    // feed. A long first backoff keeps BackingOff on screen long enough to be seen.
    let mut opts = options();
    opts.connection.backoff_initial_ms = 1500;
    let h = Harness::start(opts).await;
    let base = h.p().address.clone();
    let strategy = h
        .strategy(
            "infy-momentum",
            json!({"max_loss": 5000.0, "max_profit": 8000.0, "trailing_sl_type": "amount",
                   "trailing_sl_value": 1500.0, "trailing_activation": 1000.0}),
        )
        .await;
    h.open(LegSpec::equity(strategy, "INFY", "BUY", 50, 100.0))
        .await;
    let client = &browser.client;

    // Sign in with the token; it is kept in sessionStorage, never in the URL.
    client
        .goto(&format!("{base}/"))
        .await
        .expect("the page loads");
    wait_text(client, "#login-view h1", "the login form", |t| {
        t == "Sign in"
    })
    .await;
    client
        .find(Locator::Id("login-token"))
        .await
        .unwrap()
        .send_keys(TEST_TOKEN)
        .await
        .unwrap();
    click(client, "#login-submit").await;
    wait_text(client, "#feed-state", "the feed shown Live", |t| {
        t == "Live"
    })
    .await;
    wait_text(client, "#socket-text", "the state stream live", |t| {
        t == "live"
    })
    .await;
    let url = client.current_url().await.unwrap();
    assert!(!url.as_str().contains(TEST_TOKEN), "no token in {url}");
    let stored = client
        .execute("return sessionStorage.length", vec![])
        .await
        .unwrap();
    assert_eq!(stored, json!(1), "the token is in sessionStorage");
    wait_text(client, "#tile-market .tile-value", "the market Open", |t| {
        t == "Open"
    })
    .await;

    // The strategy's P&L follows the price.
    let pnl = format!("#strategies-table tbody tr[data-key=\"{strategy}\"] td.pnl");
    wait_text(client, &pnl, "the P&L at entry", |t| t == "₹0.00").await;
    h.price("NSE", "INFY", 104.0).await;
    wait_text(client, &pnl, "the P&L after the price moved", |t| {
        t == "+₹200.00"
    })
    .await;
    wait_text(
        client,
        "#positions-table tbody tr td.pnl",
        "the leg's P&L",
        |t| t == "+₹200.00",
    )
    .await;
    wait_text(
        client,
        "#tile-strategies .tile-value",
        "the total P&L",
        |t| t == "+₹200.00",
    )
    .await;
    screenshot(client, "admin-01-live.png").await;
    // Each account's socket and its order updates; the actor tree shows them too.
    wait_text(
        client,
        "#streams-table tbody",
        "the feed account's socket with its order updates",
        |t| t.contains("market data + order updates") && t.contains("flowing"),
    )
    .await;
    wait_text(
        client,
        "#actor-tree",
        "the account sockets in the tree",
        |t| t.contains("StreamsActor") && t.contains("OrderEventRouter"),
    )
    .await;

    // The chain viewer: created through the API, streamed over /ws/chain, deleted on close.
    let strikes = 3;
    let input = client.find(Locator::Id("chain-strikes")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(&strikes.to_string()).await.unwrap();
    click(client, "#chain-open").await;
    let rows = 2 * strikes + 1;
    poll_until(Duration::from_secs(20), "the chain rows", || async {
        let found = client
            .find_all(Locator::Css("#chain-table tbody tr"))
            .await
            .ok()?;
        (found.len() == rows).then_some(())
    })
    .await;
    let session = poll_until(Duration::from_secs(10), "a chain viewer", || async {
        let s = state(&h).await;
        let session = s["chains"]["sessions"][0].clone();
        (session["viewers"] == 1).then_some(session)
    })
    .await;
    let id = session["id"].as_str().unwrap().to_string();
    h.price("NSE_INDEX", "NIFTY", 25931.5).await;
    wait_text(client, "#chain-meta", "the new underlying price", |t| {
        t.contains("25,931.50")
    })
    .await;
    wait_text(
        client,
        "#chain-table tbody tr.atm td.strike",
        "the ATM strike",
        |t| !t.is_empty(),
    )
    .await;
    screenshot(client, "admin-02-chain.png").await;
    click(client, "#chain-close").await;
    poll_until(Duration::from_secs(10), "the session deleted", || async {
        let s = state(&h).await;
        s["chains"]["sessions"]
            .as_array()
            .is_some_and(|a| a.is_empty())
            .then_some(())
    })
    .await;
    let (status, _) = h
        .post(&format!("/api/v1/chain-sessions/{id}/heartbeat"), json!({}))
        .await;
    assert_eq!(status, 404, "the viewer's session is gone");

    // The subscriptions view lists what is held, with its holders: the leg's symbol only.
    wait_text(client, "#subscriptions-count", "one subscription", |t| {
        t.starts_with("1 /")
    })
    .await;
    wait_text(
        client,
        "#subscriptions-table tbody tr td.holders",
        "the position monitor holding INFY",
        |t| t == "position-monitor",
    )
    .await;

    // Reconnect, confirmed: the page shows the feed go down and come back.
    click(client, "#reconnect").await;
    wait_text(client, "#confirm-title", "the confirmation", |t| {
        t == "Reconnect the feed?"
    })
    .await;
    assert_eq!(
        state(&h).await["connection"]["reconnects"],
        0,
        "nothing happens before the confirmation"
    );
    click(client, "#confirm-ok").await;
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut shot = false;
    loop {
        if let Some(t) = text(client, "#feed-state").await
            && seen.last() != Some(&t)
        {
            seen.push(t);
        }
        let went_down = seen
            .iter()
            .any(|s| s == "BackingOff" || s == "Connecting" || s == "Authenticating");
        if went_down && !shot && seen.last().is_some_and(|s| s == "BackingOff") {
            screenshot(client, "admin-03-backing-off.png").await;
            shot = true;
        }
        if went_down && seen.last().is_some_and(|s| s == "Live") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the feed never went through BackingOff/Connecting back to Live: {seen:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.iter().any(|s| s == "BackingOff"), "{seen:?}");
    wait_text(client, "#feed-events", "the reconnect in the events", |t| {
        t.contains("reconnect") && t.contains("connected")
    })
    .await;
    assert_eq!(state(&h).await["connection"]["reconnects"], 1);
    screenshot(client, "admin-04-live-again.png").await;

    browser
        .client
        .clone()
        .close()
        .await
        .expect("closing the session");
}
