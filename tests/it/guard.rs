//! Authentication is decided by routing. Every operation of the OpenAPI document that is not
//! public is sent, under many spellings of its path, without a token, with a wrong one and with
//! the right one, over raw HTTP (so that no client normalises the path): 401, 401, and with the
//! right token its handler's answer where the spelling routes to it, 404 where it routes
//! nowhere. An operation without a row in the table fails the test, and so does a route
//! registered outside the guard.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use simulator::Simulator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::admin_openapi::PUBLIC;
use crate::feed::{FEED_KEY, start_sim};
use crate::helpers::{TEST_ENCRYPTION_KEY, TestApp, json_body, poll_until, spawn_app_with};

/// One operation: what a request with the right token sends, and what its handler may answer.
/// Paths and bodies name fixtures as `{account}`, `{strategy}`, …; `{new_…}` is a fresh one for
/// each request with the right token (operations that delete).
struct Row {
    method: &'static str,
    /// The documented path template, and the path sent.
    template: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    /// Statuses of the handler for a request with the right token. Only operations whose
    /// repetition conflicts list a 409, after their success.
    ok: &'static [u16],
}

const fn row(
    method: &'static str,
    template: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    ok: &'static [u16],
) -> Row {
    Row {
        method,
        template,
        path,
        body,
        ok,
    }
}

const TABLE: &[Row] = &[
    row("GET", "/metrics", "/metrics", None, &[200]),
    row(
        "GET",
        "/api/openapi.json",
        "/api/openapi.json",
        None,
        &[200],
    ),
    row("GET", "/api/v1/state", "/api/v1/state", None, &[200]),
    row("GET", "/ws/admin", "/ws/admin", None, &[101]),
    row("GET", "/ws/chain/{id}", "/ws/chain/{chain}", None, &[101]),
    row("GET", "/api/v1/accounts", "/api/v1/accounts", None, &[200]),
    row(
        "POST",
        "/api/v1/accounts",
        "/api/v1/accounts",
        Some(
            r#"{"name": "spare", "broker": "sim", "rest_url": "{rest_url}", "ws_url": "{ws_url}",
                "api_key": "backupkey-0002-cccc", "is_active": false}"#,
        ),
        &[201, 409],
    ),
    row(
        "GET",
        "/api/v1/accounts/{id}",
        "/api/v1/accounts/{account}",
        None,
        &[200],
    ),
    row(
        "PUT",
        "/api/v1/accounts/{id}",
        "/api/v1/accounts/{account}",
        Some(r#"{"broker": "sim"}"#),
        &[200],
    ),
    row(
        "POST",
        "/api/v1/accounts/{id}/ping",
        "/api/v1/accounts/{account}/ping",
        None,
        &[200],
    ),
    row(
        "DELETE",
        "/api/v1/accounts/{id}",
        "/api/v1/accounts/{new_account}",
        None,
        &[204],
    ),
    row("GET", "/api/v1/calendar", "/api/v1/calendar", None, &[200]),
    row(
        "GET",
        "/api/v1/calendar/templates",
        "/api/v1/calendar/templates",
        None,
        &[200],
    ),
    row(
        "POST",
        "/api/v1/calendar/templates",
        "/api/v1/calendar/templates",
        Some(
            r#"{"name": "Spare", "exchange": "TST", "timezone": "Asia/Kolkata", "is_active": false}"#,
        ),
        &[201, 409],
    ),
    row(
        "GET",
        "/api/v1/calendar/templates/{id}",
        "/api/v1/calendar/templates/{template}",
        None,
        &[200],
    ),
    row(
        "PUT",
        "/api/v1/calendar/templates/{id}",
        "/api/v1/calendar/templates/{template}",
        Some(
            r#"{"name": "Test hours", "exchange": "TST", "timezone": "Asia/Kolkata", "is_active": false}"#,
        ),
        &[200],
    ),
    row(
        "DELETE",
        "/api/v1/calendar/templates/{id}",
        "/api/v1/calendar/templates/{new_template}",
        None,
        &[204],
    ),
    row(
        "GET",
        "/api/v1/calendar/sessions",
        "/api/v1/calendar/sessions",
        None,
        &[200],
    ),
    row(
        "POST",
        "/api/v1/calendar/sessions",
        "/api/v1/calendar/sessions",
        Some(
            r#"{"template_id": {template}, "weekday": 2, "start_time": "09:15",
                "end_time": "15:30", "session_type": "normal", "is_active": false}"#,
        ),
        &[201],
    ),
    row(
        "PUT",
        "/api/v1/calendar/sessions/{id}",
        "/api/v1/calendar/sessions/{session}",
        Some(
            r#"{"template_id": {template}, "weekday": 1, "start_time": "09:15",
                "end_time": "15:30", "session_type": "normal", "is_active": false}"#,
        ),
        &[200],
    ),
    row(
        "DELETE",
        "/api/v1/calendar/sessions/{id}",
        "/api/v1/calendar/sessions/{new_session}",
        None,
        &[204],
    ),
    row(
        "GET",
        "/api/v1/calendar/holidays",
        "/api/v1/calendar/holidays",
        None,
        &[200],
    ),
    row(
        "POST",
        "/api/v1/calendar/holidays",
        "/api/v1/calendar/holidays",
        Some(r#"{"date": "2099-03-03", "name": "Spare", "exchange": "TST"}"#),
        &[201, 409],
    ),
    row(
        "POST",
        "/api/v1/calendar/holidays/import",
        "/api/v1/calendar/holidays/import",
        Some(r#"[{"date": "2099-05-05", "name": "Imported", "exchange": "TST"}]"#),
        &[200],
    ),
    row(
        "PUT",
        "/api/v1/calendar/holidays/{id}",
        "/api/v1/calendar/holidays/{holiday}",
        Some(r#"{"date": "2099-01-01", "name": "Test day", "exchange": "TST"}"#),
        &[200],
    ),
    row(
        "DELETE",
        "/api/v1/calendar/holidays/{id}",
        "/api/v1/calendar/holidays/{new_holiday}",
        None,
        &[204],
    ),
    row(
        "GET",
        "/api/v1/calendar/special-sessions",
        "/api/v1/calendar/special-sessions",
        None,
        &[200],
    ),
    row(
        "POST",
        "/api/v1/calendar/special-sessions",
        "/api/v1/calendar/special-sessions",
        Some(
            r#"{"date": "2099-03-04", "name": "Spare", "start_time": "18:00",
                "end_time": "19:00", "exchange": "TST"}"#,
        ),
        &[201, 409],
    ),
    row(
        "PUT",
        "/api/v1/calendar/special-sessions/{id}",
        "/api/v1/calendar/special-sessions/{special}",
        Some(
            r#"{"date": "2099-01-02", "name": "Test evening", "start_time": "18:00",
                "end_time": "19:00", "exchange": "TST"}"#,
        ),
        &[200],
    ),
    row(
        "DELETE",
        "/api/v1/calendar/special-sessions/{id}",
        "/api/v1/calendar/special-sessions/{new_special}",
        None,
        &[204],
    ),
    row(
        "POST",
        "/api/v1/chain-sessions",
        "/api/v1/chain-sessions",
        Some(r#"{"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 1}"#),
        &[201],
    ),
    row(
        "GET",
        "/api/v1/chain-sessions",
        "/api/v1/chain-sessions",
        None,
        &[200],
    ),
    row(
        "GET",
        "/api/v1/chain-sessions/{id}",
        "/api/v1/chain-sessions/{chain}",
        None,
        &[200],
    ),
    row(
        "POST",
        "/api/v1/chain-sessions/{id}/heartbeat",
        "/api/v1/chain-sessions/{chain}/heartbeat",
        None,
        &[204],
    ),
    row(
        "DELETE",
        "/api/v1/chain-sessions/{id}",
        "/api/v1/chain-sessions/{new_chain}",
        None,
        &[204],
    ),
    row(
        "GET",
        "/api/v1/strategies",
        "/api/v1/strategies",
        None,
        &[200],
    ),
    row(
        "POST",
        "/api/v1/strategies",
        "/api/v1/strategies",
        Some(r#"{"name": "spare"}"#),
        &[201, 409],
    ),
    row(
        "GET",
        "/api/v1/strategies/{id}",
        "/api/v1/strategies/{strategy}",
        None,
        &[200],
    ),
    row(
        "PUT",
        "/api/v1/strategies/{id}",
        "/api/v1/strategies/{strategy}",
        Some(r#"{"description": "guarded"}"#),
        &[200],
    ),
    row(
        "PUT",
        "/api/v1/strategies/{id}/risk",
        "/api/v1/strategies/{strategy}/risk",
        Some(r#"{"max_loss": 100000}"#),
        &[200],
    ),
    row(
        "DELETE",
        "/api/v1/strategies/{id}",
        "/api/v1/strategies/{new_strategy}",
        None,
        &[204],
    ),
    row(
        "POST",
        "/api/v1/executions",
        "/api/v1/executions",
        Some(
            r#"{"strategy_id": {strategy}, "account_id": {account}, "symbol": "RELIANCE",
                "exchange": "NSE", "product": "MIS", "action": "BUY", "quantity": 1,
                "entry_price": 100.0}"#,
        ),
        &[201],
    ),
    row(
        "GET",
        "/api/v1/positions",
        "/api/v1/positions",
        None,
        &[200],
    ),
    row(
        "GET",
        "/api/v1/risk-events",
        "/api/v1/risk-events",
        None,
        &[200],
    ),
    // The open legs registered above are exited once; after that nothing is left to exit.
    row(
        "POST",
        "/api/v1/strategies/{id}/exit",
        "/api/v1/strategies/{strategy}/exit",
        None,
        &[202, 409],
    ),
    row(
        "POST",
        "/api/v1/connection/reconnect",
        "/api/v1/connection/reconnect",
        None,
        &[202, 409],
    ),
    row(
        "POST",
        "/api/v1/kill-switch",
        "/api/v1/kill-switch",
        None,
        &[200],
    ),
    row(
        "POST",
        "/api/v1/service/{action}",
        "/api/v1/service/stop",
        None,
        &[200],
    ),
];

/// A spelling of a path and whether the router takes it to the same handler.
struct Spelling {
    path: String,
    what: &'static str,
    routes: bool,
}

/// `path` as sent, and spelled in ways a guard comparing strings could be fooled by.
fn spellings(path: &str) -> Vec<Spelling> {
    let rest = &path[1..];
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!("/{tail}")
    };
    let encode = |c: char| format!("%{:02x}", c as u32);
    let head = first.chars().next().expect("a first segment");
    let head_rest = &first[head.len_utf8()..];
    let last = path.chars().last().expect("a path");
    let mut out = vec![
        (path.to_string(), "as documented", true),
        (
            format!("/{}{head_rest}{tail}", encode(head)),
            "a percent-encoded letter",
            true,
        ),
        (
            format!("{}{}", &path[..path.len() - last.len_utf8()], encode(last)),
            "its last character percent-encoded",
            true,
        ),
        (format!("/{path}"), "a leading double slash", false),
        (format!("{path}/"), "a trailing slash", false),
        (format!("/{first}%00{tail}"), "a NUL", false),
        (
            format!("/%25{:02x}{head_rest}{tail}", head as u32),
            "a double encoding",
            false,
        ),
        (
            format!("/{}{tail}", first.to_uppercase()),
            "upper case",
            false,
        ),
        (format!("/{first}/.{tail}"), "a `.` segment", false),
        (format!("/{first}/x/..{tail}"), "a `..` segment", false),
        (
            format!("/{first}/%2e%2e{tail}"),
            "an encoded `..` segment",
            false,
        ),
    ];
    if !tail.is_empty() {
        out.push((format!("/{first}/{tail}"), "a double slash inside", false));
        out.push((
            format!("/{}", rest.replace('/', "%2F")),
            "percent-encoded slashes",
            false,
        ));
        out.push((
            format!("/{}", rest.replace('/', "%2f")),
            "lower-case encoded slashes",
            false,
        ));
    }
    out.into_iter()
        .map(|(path, what, routes)| Spelling { path, what, routes })
        .collect()
}

/// Credentials of a request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Credentials {
    Nothing,
    Wrong,
    Right,
}

/// One raw HTTP/1.1 request; (status, body). A WebSocket handshake (`upgrade`) is answered by
/// its status line and headers only.
async fn raw(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    upgrade: bool,
) -> (u16, String) {
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the service");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if upgrade {
        request.push_str(
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        );
    } else {
        request.push_str("Connection: close\r\n");
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0u8; 8192];
        loop {
            let n = stream.read(&mut buf).await.expect("read the answer");
            received.extend_from_slice(&buf[..n]);
            if n == 0 || complete(&received) {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no complete answer"));
    let text = String::from_utf8_lossy(&received).to_string();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// True once `received` holds a whole answer: the head of a 101, or a head and as many body
/// bytes as its `Content-Length` says.
fn complete(received: &[u8]) -> bool {
    let text = String::from_utf8_lossy(received);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    if head.starts_with("HTTP/1.1 101") {
        return true;
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(usize::MAX);
    body.len() >= length
}

/// The service with an account on the simulator (so that the feed and the option chains are
/// live) and one of every kind of resource.
struct Fixtures {
    app: TestApp,
    sim: Simulator,
    ids: BTreeMap<&'static str, String>,
    made: u32,
}

impl Fixtures {
    async fn new() -> Fixtures {
        let sim = start_sim(0.0).await;
        let app = spawn_app_with(|s| {
            s.security.encryption_key = TEST_ENCRYPTION_KEY.into();
            s.calendar.always_open = true;
        })
        .await;
        let mut fixtures = Fixtures {
            app,
            sim,
            ids: BTreeMap::new(),
            made: 0,
        };
        let account = fixtures
            .app
            .add_account(
                "primary",
                &fixtures.sim.rest_url(),
                &fixtures.sim.ws_url(),
                FEED_KEY,
                true,
            )
            .await;
        fixtures.ids.insert("account", account.to_string());
        for kind in ["strategy", "template", "holiday", "special", "chain"] {
            let id = fixtures.make(kind).await;
            fixtures.ids.insert(kind, id);
        }
        let session = fixtures.make("session").await;
        fixtures.ids.insert("session", session);
        fixtures
    }

    /// Creates a resource of `kind` and returns its id.
    async fn make(&mut self, kind: &str) -> String {
        self.made += 1;
        let n = self.made;
        let (path, body) = match kind {
            "account" => (
                "/api/v1/accounts",
                json!({"name": format!("account {n}"), "broker": "sim",
                    "rest_url": self.sim.rest_url(), "ws_url": self.sim.ws_url(),
                    "api_key": "backupkey-0002-cccc", "is_active": false}),
            ),
            "strategy" => (
                "/api/v1/strategies",
                json!({"name": format!("strategy {n}")}),
            ),
            "template" => (
                "/api/v1/calendar/templates",
                json!({"name": format!("template {n}"), "exchange": "TST",
                    "timezone": "Asia/Kolkata", "is_active": false}),
            ),
            "session" => (
                "/api/v1/calendar/sessions",
                json!({"template_id": self.ids["template"].parse::<i64>().unwrap(),
                    "weekday": 0, "start_time": "09:15", "end_time": "15:30",
                    "session_type": "normal", "is_active": false}),
            ),
            "holiday" => (
                "/api/v1/calendar/holidays",
                json!({"date": format!("2098-01-{:02}", n % 28 + 1), "name": format!("holiday {n}"),
                    "exchange": format!("T{n}")}),
            ),
            "special" => (
                "/api/v1/calendar/special-sessions",
                json!({"date": format!("2098-02-{:02}", n % 28 + 1), "name": format!("special {n}"),
                    "start_time": "18:00", "end_time": "19:00", "exchange": format!("T{n}")}),
            ),
            "chain" => {
                let body = json!({"underlying": "NIFTY", "exchange": "NSE_INDEX", "strikes": 1});
                // The chain directory serves once the supervisor chose the feed account.
                let app = &self.app;
                let created = poll_until(Duration::from_secs(30), "a chain session", || {
                    let body = body.clone();
                    async move {
                        let (status, created) =
                            app.post_json("/api/v1/chain-sessions", &body).await;
                        (status == 201).then_some(created)
                    }
                })
                .await;
                return created["id"]
                    .as_str()
                    .expect("chain session id")
                    .to_string();
            }
            other => panic!("no fixture of kind {other}"),
        };
        let (status, created) = self.app.post_json(path, &body).await;
        assert_eq!(status, 201, "creating a {kind}: {created}");
        match &created["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// `text` with its fixtures named; a `{new_kind}` is created now when `fresh`.
    async fn fill(&mut self, text: &str, fresh: bool) -> String {
        let mut out = text.replace("{rest_url}", &self.sim.rest_url());
        out = out.replace("{ws_url}", &self.sim.ws_url());
        for (kind, id) in &self.ids {
            out = out.replace(&format!("{{{kind}}}"), id);
        }
        while let Some(start) = out.find("{new_") {
            let end = start + out[start..].find('}').expect("a closed placeholder");
            let kind = out[start + 5..end].to_string();
            let id = if fresh {
                self.make(&kind).await
            } else {
                self.ids[kind.as_str()].clone()
            };
            out.replace_range(start..=end, &id);
        }
        out
    }
}

#[actix_web::test]
async fn every_guarded_route_needs_the_token_under_every_spelling() {
    let mut fx = Fixtures::new().await;

    // The table covers exactly the documented operations that are not public.
    let mut resp = fx.app.get("/api/openapi.json").send().await.unwrap();
    let doc = json_body(&mut resp).await;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() && !PUBLIC.contains(&path.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let tabled: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|r| (r.method.to_string(), r.template.to_string()))
        .collect();
    let missing: Vec<_> = documented.difference(&tabled).collect();
    assert!(
        missing.is_empty(),
        "operations without a row in TABLE: {missing:?}"
    );
    let extra: Vec<_> = tabled.difference(&documented).collect();
    assert!(
        extra.is_empty(),
        "rows for undocumented operations: {extra:?}"
    );

    let token = fx.app.token.clone();
    let mut checked = 0;
    for row in TABLE {
        let socket = row.template.starts_with("/ws/");
        let path = fx.fill(row.path, false).await;
        for spelling in spellings(&path) {
            let what = format!("{} {} ({})", row.method, spelling.path, spelling.what);
            for credentials in [Credentials::Nothing, Credentials::Wrong, Credentials::Right] {
                let (sent, body) = match credentials {
                    Credentials::Right if spelling.routes => {
                        // Operations that delete get a fresh resource, spelled the same way.
                        let fresh = fx.fill(row.path, true).await;
                        let sent = spellings(&fresh)
                            .into_iter()
                            .find(|s| s.what == spelling.what)
                            .map(|s| s.path)
                            .expect("the same spelling");
                        let body = match row.body {
                            Some(b) => Some(fx.fill(b, true).await),
                            None => None,
                        };
                        (sent, body)
                    }
                    _ => (spelling.path.clone(), row.body.map(|b| b.to_string())),
                };
                let presented = match credentials {
                    Credentials::Nothing => None,
                    Credentials::Wrong => Some("wrong-admin-token-0123456789"),
                    Credentials::Right => Some(token.as_str()),
                };
                // A socket without any token may authenticate with its first message: the
                // request without credentials is a plain GET.
                let upgrade = socket && credentials != Credentials::Nothing;
                let (status, answer) = raw(
                    &fx.app,
                    row.method,
                    &sent,
                    presented,
                    body.as_deref(),
                    upgrade,
                )
                .await;
                let expected: Vec<u16> = match credentials {
                    Credentials::Nothing | Credentials::Wrong => vec![401],
                    Credentials::Right if spelling.routes => row.ok.to_vec(),
                    Credentials::Right => vec![404],
                };
                assert!(
                    expected.contains(&status),
                    "{what} with {credentials:?}: {status}, expected {expected:?}: {answer}"
                );
                if status == 401 || status == 404 {
                    let code = serde_json::from_str::<Value>(&answer)
                        .map(|v| v["error"]["code"].clone())
                        .unwrap_or_default();
                    let expected = if status == 401 {
                        "unauthorized"
                    } else {
                        "not_found"
                    };
                    assert_eq!(code, expected, "{what} with {credentials:?}: {answer}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 1500, "{checked} requests checked");
}

#[actix_web::test]
async fn an_unauthenticated_socket_upgrade_reaches_only_socket_handlers() {
    let fx = Fixtures::new().await;
    // Without a token an upgrade is let through only to the WebSocket routes, whose handlers
    // then wait for the authentication message; anywhere else it is a 401.
    for path in [
        "/api/v1/state",
        "/%61pi/v1/state",
        "/ws/nothing",
        "/%77s/nothing",
    ] {
        let (status, body) = raw(&fx.app, "GET", path, None, None, true).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    for path in ["/ws/admin", "/%77s/admin"] {
        let (status, _) = raw(&fx.app, "GET", path, None, None, true).await;
        assert_eq!(status, 101, "{path}");
    }
}
