//! Health, authentication, error bodies and the request size limit.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use chrono::{TimeZone, Utc};
use clock::ManualClock;

use crate::helpers::{json_body, poll_until, spawn_app, spawn_app_with_clock};

#[actix_web::test]
async fn health_is_open_and_reports_the_database() {
    // A Sunday whose next 30 days the seeded holidays cover: the real date may be past them,
    // which `/health` would report (see the calendar tests), and during market hours a service
    // without a feed account is degraded too.
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 15, 4, 30, 0).unwrap());
    let app = spawn_app_with_clock(|_| {}, Arc::new(clock)).await;
    // Right after start the order gateway waits for the first load of the accounts: that is a
    // reason too, for as long as it lasts.
    let body = poll_until(Duration::from_secs(20), "health ok", || async {
        let mut resp = app.client.get(app.url("/health")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = json_body(&mut resp).await;
        (body["status"] == "ok").then_some(body)
    })
    .await;
    assert_eq!(body["reasons"], serde_json::json!([]));
    let resp = app
        .client
        .get(app.url("/health?strict=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "strict and ok");
    let mut resp = app
        .client
        .get(app.url("/health?strict=yes"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let refusal = json_body(&mut resp).await;
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("strict"),
        "{refusal}"
    );
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["database"]["reachable"], true);
    let expected = if app.database.url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(body["database"]["backend"], expected);
}

#[actix_web::test]
async fn api_without_a_token_is_401_with_a_json_error() {
    let app = spawn_app().await;
    let mut resp = app
        .client
        .get(app.url("/api/v1/state"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body = json_body(&mut resp).await;
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer")
    );
}

#[actix_web::test]
async fn api_and_ws_with_a_wrong_token_are_401() {
    let app = spawn_app().await;
    for path in ["/api/v1/state", "/ws/admin"] {
        let mut resp = app
            .client
            .get(app.url(path))
            .bearer_auth("not-the-admin-token")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body = json_body(&mut resp).await;
        assert_eq!(body["error"]["message"], "invalid admin token");
        // The presented token is never echoed back.
        assert!(!body.to_string().contains("not-the-admin-token"));
    }
    let resp = app
        .client
        .get(app.url("/ws/admin?token=wrong-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .client
        .get(app.url("/api/v1/state"))
        .insert_header(("Authorization", format!("Basic {}", app.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "only Bearer is accepted"
    );
}

#[actix_web::test]
async fn unknown_routes_answer_a_json_404_once_authenticated() {
    let app = spawn_app().await;
    let mut resp = app.get("/api/v1/no-such-thing").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body = json_body(&mut resp).await;
    assert_eq!(body["error"]["code"], "not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/api/v1/no-such-thing")
    );
}

#[actix_web::test]
async fn an_oversize_body_is_413() {
    let app = spawn_app_with_small_limit().await;
    let big = "x".repeat(8 * 1024);
    let mut resp = app
        .post("/api/v1/executions")
        .insert_header(("Content-Type", "application/json"))
        .send_body(format!("{{\"pad\":\"{big}\"}}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = json_body(&mut resp).await;
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(body["error"]["message"].as_str().unwrap().contains("4096"));
}

async fn spawn_app_with_small_limit() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|s| s.server.body_limit_bytes = 4096).await
}

#[actix_web::test]
async fn state_reports_the_feed_and_reconnect_explains_why_it_cannot() {
    let app = spawn_app().await;
    let mut resp = app.get("/api/v1/state").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_body(&mut resp).await;
    assert_eq!(body["connection"]["state"], "Idle");
    assert_eq!(body["registry"]["symbols"], 0);

    let mut resp = app
        .post("/api/v1/connection/reconnect")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body = json_body(&mut resp).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no feed account"),
        "{body}"
    );
}

#[actix_web::test]
async fn every_answer_carries_the_security_headers() {
    let app = spawn_app().await;
    let requests = [
        app.get("/api/v1/state"),
        app.client.get(app.url("/api/v1/state")),
        app.get("/api/v1/no-such-thing"),
        app.client
            .put(app.url("/api/v1/state"))
            .bearer_auth(&app.token),
        app.client.get(app.url("/")),
        app.client.get(app.url("/static/admin.js")),
        app.client.get(app.url("/health")),
        app.get("/metrics"),
    ];
    for req in requests {
        let what = format!("{} {}", req.get_method(), req.get_uri());
        let resp = req.send().await.unwrap();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
        assert_eq!(header("x-frame-options"), "DENY", "{what}");
    }
}

#[actix_web::test]
async fn an_undeclared_method_is_a_json_405_naming_the_allowed_ones() {
    let app = spawn_app().await;
    for (method, path, allowed) in [
        ("PUT", "/api/v1/state", "GET"),
        ("DELETE", "/api/v1/accounts", "GET, POST"),
        ("PATCH", "/api/v1/accounts/1", "GET, PUT, DELETE"),
        ("GET", "/api/v1/kill-switch", "POST"),
        ("POST", "/%61pi/v1/calendar/holidays/7", "PUT, DELETE"),
    ] {
        let req = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth(&app.token);
        let mut resp = req.send().await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let allow = resp
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let mut allow: Vec<&str> = allow.split(',').map(str::trim).collect();
        let mut expected: Vec<&str> = allowed.split(", ").collect();
        allow.sort();
        expected.sort();
        assert_eq!(allow, expected, "{method} {path}");
        let body = json_body(&mut resp).await;
        assert_eq!(
            body["error"]["code"], "method_not_allowed",
            "{method} {path}"
        );
    }
}

#[actix_web::test]
async fn a_state_changing_request_from_a_foreign_origin_is_refused_even_with_the_token() {
    let app = spawn_app().await;
    let host = app.address.trim_start_matches("http://").to_string();
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let mut resp = app
            .post("/api/v1/service/stop")
            .insert_header(("Origin", origin))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{origin}");
        let body = json_body(&mut resp).await;
        assert_eq!(body["error"]["code"], "forbidden");
    }
    // Nothing was stopped.
    let state = app.get_json("/api/v1/state").await;
    assert_eq!(
        state["supervisor"]["manually_stopped"], false,
        "{}",
        state["supervisor"]
    );
    // A socket opened from another site is refused too, before the upgrade.
    let resp = app
        .client
        .get(app.url("/ws/admin"))
        .insert_header(("Origin", "http://evil.example"))
        .insert_header(("Upgrade", "websocket"))
        .insert_header(("Connection", "Upgrade"))
        .insert_header(("Sec-WebSocket-Version", "13"))
        .insert_header(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // The service's own page, and clients that send no Origin, are served.
    let resp = app
        .post("/api/v1/service/stop")
        .insert_header(("Origin", format!("http://{host}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let state = app.get_json("/api/v1/state").await;
    assert_eq!(state["supervisor"]["manually_stopped"], true);
    let resp = app
        .get("/api/v1/state")
        .insert_header(("Origin", "http://evil.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "reading is not refused");
    let resp = app.post("/api/v1/service/start").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}
