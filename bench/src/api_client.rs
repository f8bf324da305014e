//! A small JSON client of the supervisor's HTTP API and the simulator's control API, for the
//! demo and the benchmark.

use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use anyhow::{anyhow, bail};
use serde_json::Value;

/// Largest answer read (a full `/api/v1/state` with thousands of legs).
const MAX_BODY: usize = 64 * 1024 * 1024;

pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: awc::Client,
}

impl ApiClient {
    /// A client of `base` (e.g. `http://127.0.0.1:8000`), sending `token` as a bearer token.
    pub fn new(base: impl Into<String>, token: Option<String>) -> ApiClient {
        ApiClient {
            base: base.into(),
            token,
            http: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.json(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.json(Method::POST, path, Some(body)).await
    }

    /// Sends a request and answers its status only (the body is read and dropped).
    pub async fn status(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<StatusCode> {
        Ok(self.call(method, path, body).await?.0)
    }

    /// The answer of GET `path` as text (e.g. `/metrics`).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let (status, body) = self.call(Method::GET, path, None).await?;
        let text = String::from_utf8(body.to_vec()).map_err(|e| anyhow!("GET {path}: {e}"))?;
        if !status.is_success() {
            bail!("GET {path}: HTTP {status}: {text}");
        }
        Ok(text)
    }

    async fn json(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let (status, bytes) = self.call(method.clone(), path, body).await?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow!("{method} {path}: the answer is not JSON: {e}"))?;
        if !status.is_success() {
            bail!("{method} {path}: HTTP {status}: {value}");
        }
        Ok(value)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let sent = match body {
            Some(body) => request.send_json(&body).await,
            None => request.send().await,
        };
        let mut resp = sent.map_err(|e| anyhow!("{method} {path}: {e}"))?;
        let bytes = resp
            .body()
            .limit(MAX_BODY)
            .await
            .map_err(|e| anyhow!("{method} {path}: reading the answer: {e}"))?;
        Ok((resp.status(), bytes))
    }
}
