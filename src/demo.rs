//! `supervisor demo` (and `make run`): the gateway simulator and the supervisor in one process,
//! a fresh SQLite database, demo accounts and strategies with open legs, market always open.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use rand::Rng;
use serde_json::{Value, json};

use crate::configuration::Settings;
use crate::sim::{SimConfig, Simulator};
use crate::startup::Application;

const PRIMARY_KEY: &str = "demo-primary-key-0001";
const BACKUP_KEY: &str = "demo-backup-key-0002";

/// Runs the demo until SIGINT/SIGTERM.
pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    reset_sqlite(&settings.database.url)?;
    let key: [u8; 32] = rand::rng().random();
    settings.security.encryption_key = base64::engine::general_purpose::STANDARD.encode(key);

    let sim = Simulator::start(SimConfig {
        rest_port: 0,
        ws_port: 0,
        api_keys: vec![PRIMARY_KEY.into(), BACKUP_KEY.into()],
        ticks_per_s: 20.0,
        ..SimConfig::default()
    })
    .await
    .context("starting the gateway simulator")?;

    let host = settings.server.host.clone();
    let app = Application::build(settings).await?;
    let base = format!("http://{host}:{}", app.port());
    let token = app.admin_token().to_string();
    let server = actix_rt::spawn(app.run_until_stopped());

    let api = Api {
        base: base.clone(),
        token: token.clone(),
        http: awc::Client::builder()
            .timeout(Duration::from_secs(10))
            .finish(),
    };
    seed(&api, &sim).await.context("creating the demo data")?;

    println!(
        "gateway simulator: REST {} · feed {}",
        sim.rest_url(),
        sim.ws_url()
    );
    println!("admin page: {base}/");
    println!("admin token: {token}");
    println!("press Ctrl-C to stop");
    server
        .await
        .context("the HTTP server task failed")?
        .context("serving HTTP")?;
    sim.stop().await;
    Ok(())
}

/// Deletes the demo's SQLite file so every demo starts from the same state.
fn reset_sqlite(url: &str) -> anyhow::Result<()> {
    let Some(path) = url
        .strip_prefix("sqlite://")
        .and_then(|rest| rest.split('?').next())
    else {
        bail!("the demo runs on SQLite only; database.url is {url}");
    };
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{path}{suffix}");
        if Path::new(&file).exists() {
            std::fs::remove_file(&file).with_context(|| format!("removing {file}"))?;
        }
    }
    Ok(())
}

struct Api {
    base: String,
    token: String,
    http: awc::Client,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let mut resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send_json(&body)
            .await
            .map_err(|e| anyhow::anyhow!("POST {path}: {e}"))?;
        let status = resp.status();
        let value: Value = resp
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("POST {path}: reading the answer: {e}"))?;
        if !status.is_success() {
            bail!("POST {path}: HTTP {status}: {value}");
        }
        Ok(value)
    }
}

async fn seed(api: &Api, sim: &Simulator) -> anyhow::Result<()> {
    for (name, key, primary) in [
        ("primary", PRIMARY_KEY, true),
        ("backup", BACKUP_KEY, false),
    ] {
        api.post(
            "/api/v1/accounts",
            json!({"name": name, "broker": "sim", "rest_url": sim.rest_url(),
                   "ws_url": sim.ws_url(), "api_key": key, "is_primary": primary}),
        )
        .await?;
    }
    Ok(())
}
