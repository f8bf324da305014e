//! The OpenAPI document at `/api/openapi.json`: it is valid OpenAPI 3, every `$ref` resolves,
//! every error is described with the error body, and it lists exactly the routes registered in
//! `src/http` — adding a route without documenting it fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use actix_web::http::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, json_body, spawn_app};

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// The only paths open without a token (`/metrics` has a token of its own).
pub const PUBLIC: [&str; 3] = ["/", "/static/{file}", "/health"];

async fn document(app: &TestApp) -> Value {
    let mut resp = app.get("/api/openapi.json").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    json_body(&mut resp).await
}

/// Every `$ref` anywhere in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// (METHOD, path) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[actix_web::test]
async fn the_document_is_valid_openapi_3_and_every_ref_resolves() {
    let app = spawn_app().await;
    let doc = document(&app).await;

    let text = doc.to_string();
    let spec = oas3::from_json(&text).expect("parses as an OpenAPI 3.1 document");
    let version = spec
        .validate_version()
        .expect("a supported OpenAPI version");
    assert_eq!(version.major, 3);
    assert_eq!(spec.info.title, "trading-supervisor");
    assert_eq!(spec.info.version, env!("CARGO_PKG_VERSION"));
    assert!(
        spec.components
            .as_ref()
            .is_some_and(|c| c.security_schemes.contains_key("admin_token")),
        "the bearer token is declared"
    );

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty(), "the document uses references");
    for r in all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{r} is a local reference"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }

    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let what = format!("{} {path}", method.to_uppercase());
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(
                operation_ids.insert(id.to_string()),
                "operationId {id} repeats"
            );
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            let templated: BTreeSet<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, templated, "{what}: path parameters");
            let responses = op["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{what} has responses");
            assert!(
                op["description"].is_string() || op["summary"].is_string(),
                "{what} is described"
            );
            let open = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
            });
            let protected = !PUBLIC.contains(&path.as_str());
            assert_eq!(!open, protected, "{what}: security matches the guard");
            if protected {
                assert!(responses.contains_key("401"), "{what} documents 401");
            }
            for (status, response) in responses {
                assert!(response["description"].is_string(), "{what} {status}");
                // `/health` answers 503 with its own report; every other error is the error body.
                if (status.starts_with('4') || status.starts_with('5')) && path != "/health" {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ErrorBody",
                        "{what} {status} is described with the error body"
                    );
                }
            }
            if ["post", "put", "patch"].contains(&method)
                && let Some(body) = op.get("requestBody")
            {
                assert!(
                    body["content"]["application/json"]["schema"].is_object(),
                    "{what}: its request body has a schema"
                );
            }
        }
    }
}

/// The schema `schema` stands for, following a `$ref` into the components.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .expect("a local ref");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// The property names of the schema of `method path`'s 200 answer.
fn answer_properties(doc: &Value, method: &str, path: &str) -> BTreeSet<String> {
    let schema =
        &doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"];
    resolve(doc, schema)["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path}: the 200 answer has no properties: {schema}"))
        .keys()
        .cloned()
        .collect()
}

#[actix_web::test]
async fn status_answers_are_described_with_their_real_shape() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let names = |method, path| answer_properties(&doc, method, path);

    let state = names("get", "/api/v1/state");
    for part in [
        "supervisor",
        "calendar",
        "connection",
        "monitor",
        "orders",
        "health",
    ] {
        assert!(
            state.contains(part),
            "/api/v1/state names {part}: {state:?}"
        );
    }
    // Each part is the actor's own status, not a free-form object.
    let supervisor = &doc["paths"]["/api/v1/state"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    let supervisor = &resolve(&doc, supervisor)["properties"]["supervisor"];
    let supervisor = resolve(&doc, supervisor)["properties"]
        .as_object()
        .expect("the supervisor's status has properties");
    assert!(supervisor.contains_key("running"), "{supervisor:?}");
    assert!(supervisor.contains_key("restarts"), "{supervisor:?}");

    let calendar = names("get", "/api/v1/calendar");
    for field in ["phase", "next_change_at", "templates", "restarts"] {
        assert!(
            calendar.contains(field),
            "/api/v1/calendar names {field}: {calendar:?}"
        );
    }
    assert!(names("get", "/api/v1/chain-sessions").contains("sessions"));
    assert!(names("post", "/api/v1/service/{action}").contains("running"));
}

// ---- the registered routes, read from src/http ----

fn http_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join("http")
}

/// A module's source with all whitespace removed (formatting cannot hide a registration).
fn compact(module: &str) -> String {
    let file = if module == "mod" {
        http_dir().join("mod.rs")
    } else {
        http_dir().join(format!("{module}.rs"))
    };
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()))
        .split_whitespace()
        .collect()
}

/// The string literal at the start of `s` and what follows it.
fn literal(s: &str) -> (&str, &str) {
    let rest = s.strip_prefix('"').expect("a string literal");
    let end = rest.find('"').expect("a closed string literal");
    (&rest[..end], &rest[end + 1..])
}

/// `web::<method>()` at the start of `s`.
fn method(s: &str) -> String {
    let rest = s.strip_prefix("web::").expect("web::<method>()");
    let end = rest.find("()").expect("web::<method>()");
    let m = &rest[..end];
    assert!(METHODS.contains(&m), "unknown method web::{m}()");
    m.to_uppercase()
}

/// The index just past the parenthesis that closes the one opening at `s[0]`.
fn closing(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '{' => depth += 1,
            ')' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced: {}", &s[..s.len().min(60)])
}

/// After `web::scope("…")`: skips `.wrap(…)` and `.default_service(…)` and returns the target
/// of `.configure(target)` and what follows it.
fn scope_target(after: &str) -> (&str, &str) {
    let mut rest = after.strip_prefix(')').expect("web::scope(path)");
    loop {
        if let Some(r) = rest.strip_prefix(".configure(") {
            return r.split_once(')').expect(".configure(…)");
        }
        let skipped = [".wrap", ".default_service"]
            .iter()
            .find_map(|m| rest.strip_prefix(m))
            .unwrap_or_else(|| {
                panic!(
                    "web::scope(path)[.wrap(…)][.default_service(…)].configure(routes), found {}",
                    &rest[..rest.len().min(40)]
                )
            });
        rest = &skipped[closing(skipped)..];
    }
}

/// The routes a module registers, with `prefix` before their paths. Understands
/// `.route("path", web::m()…)`, `web::resource("path").route(web::m()…)…`,
/// `web::scope("prefix")[.wrap(…)][.default_service(…)].configure(routes)` (another module's
/// `module::routes` or a function of this file), `module::routes(cfg)` and
/// `.configure(local_fn)`; any other registration fails the test, so that a new style of
/// registration is taught here rather than missed.
fn registered(module: &str, prefix: &str, out: &mut BTreeSet<(String, String)>) {
    let mut src = compact(module);
    // Functions of this file configured inside a scope are read with the scope's prefix, and
    // only so.
    let mut scoped = Vec::new();
    for (at, _) in src.match_indices("web::scope(") {
        let (scope, after) = literal(&src[at + "web::scope(".len()..]);
        let (target, _) = scope_target(after);
        if !target.contains("::") {
            scoped.push((target.to_string(), scope.to_string()));
        }
    }
    for (function, scope) in scoped {
        let head = format!("fn{function}(");
        let start = src
            .find(&head)
            .unwrap_or_else(|| panic!("{module}.rs: fn {function} not found"));
        let open = start + src[start..].find('{').expect("a function body");
        let end = open + closing(&src[open..]);
        let body = src[open..end].to_string();
        src.replace_range(start..end, "");
        registered_in(&body, module, &format!("{prefix}{scope}"), out);
    }
    registered_in(&src, module, prefix, out);
}

fn registered_in(src: &str, module: &str, prefix: &str, out: &mut BTreeSet<(String, String)>) {
    let mut resource: Option<String> = None;
    let mut i = 0;
    while i < src.len() {
        let rest = &src[i..];
        let after = if rest.starts_with(".route(\"") {
            let (path, after) = literal(&rest[".route(".len()..]);
            let after = after.strip_prefix(',').expect(".route(path, web::m()…)");
            out.insert((method(after), format!("{prefix}{path}")));
            after
        } else if rest.starts_with(".route(web::") {
            let path = resource
                .as_deref()
                .expect(".route(web::m()…) follows a web::resource(path)");
            let after = &rest[".route(".len()..];
            out.insert((method(after), format!("{prefix}{path}")));
            after
        } else if let Some(after) = rest.strip_prefix("web::resource(") {
            let (path, after) = literal(after);
            resource = Some(path.to_string());
            after
        } else if let Some(after) = rest.strip_prefix("web::scope(") {
            let (scope, after) = literal(after);
            let (target, after) = scope_target(after);
            // A function of this file was read above, with the scope's prefix.
            if let Some((child, _)) = target.split_once("::") {
                registered(child, &format!("{prefix}{scope}"), out);
            }
            after
        } else if let Some(after) = rest.strip_prefix(".configure(") {
            let (target, after) = after.split_once(')').expect(".configure(…)");
            // A local function's registrations are in this file and read in turn.
            if let Some((child, _)) = target.split_once("::") {
                registered(child, prefix, out);
            }
            after
        } else if let Some(after) = rest.strip_prefix("::routes(cfg)") {
            // `module::routes(cfg)`: another module registers into the same config.
            let before = &src[..i];
            let start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |p| p + 1);
            registered(&before[start..], prefix, out);
            after
        } else if let Some(after) = rest.strip_prefix(".service(") {
            assert!(
                after.starts_with("web::resource(") || after.starts_with("web::scope("),
                "{module}.rs: unrecognised registration .service({})",
                &after[..after.len().min(40)]
            );
            after
        } else {
            &rest[rest.chars().next().map_or(1, char::len_utf8)..]
        };
        i = src.len() - after.len();
    }
}

#[actix_web::test]
async fn every_registered_route_is_documented_and_every_documented_route_exists() {
    let mut routes = BTreeSet::new();
    registered("mod", "", &mut routes);
    assert!(
        routes.contains(&("GET".into(), "/api/v1/calendar/holidays".into())),
        "scoped routes are found: {routes:?}"
    );
    assert!(
        routes.contains(&("POST".into(), "/api/v1/accounts/{id}/ping".into())),
        "resource routes are found: {routes:?}"
    );
    let startup = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join("startup.rs"),
    )
    .unwrap();
    for registration in [".route(", "web::resource(", ".service("] {
        assert!(
            !startup.contains(registration),
            "routes are registered in src/http only (found {registration} in startup.rs)"
        );
    }

    let app = spawn_app().await;
    let documented = operations(&document(&app).await);
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "registered but not in the OpenAPI document: {undocumented:?}"
    );
    let phantom: Vec<_> = documented.difference(&routes).collect();
    assert!(
        phantom.is_empty(),
        "documented but not registered: {phantom:?}"
    );

    // And the running service answers each documented operation from a handler of its own,
    // never with the fallback "no route" (nor 405).
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", "999999")
            .replace("{action}", "nothing")
            .replace("{file}", "nothing");
        let url = app.url(&concrete);
        let req = match method.as_str() {
            "GET" => app.client.get(url),
            "POST" => app.client.post(url),
            "PUT" => app.client.put(url),
            "DELETE" => app.client.delete(url),
            other => panic!("unexpected method {other}"),
        }
        .bearer_auth(&app.token);
        let mut resp = req.send().await.unwrap();
        let status = resp.status();
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {concrete}"
        );
        if status == StatusCode::NOT_FOUND {
            let body = json_body(&mut resp).await;
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                !message.starts_with("no route for"),
                "{method} {concrete} reached no handler"
            );
        }
    }
}
