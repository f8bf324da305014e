//! `supervisor demo` (and `make run`): the gateway simulator and the supervisor in one process,
//! a fresh SQLite database, demo accounts and strategies with open legs, market always open.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use rand::Rng;
use serde_json::{Value, json};

use actors::openalgo::rest::{OrderRequest, RestClient};

use crate::configuration::Settings;
use crate::startup::Application;
use bench::api_client::ApiClient;
use simulator::{SimConfig, Simulator};

const PRIMARY_KEY: &str = "demo-primary-key-0001";
const BACKUP_KEY: &str = "demo-backup-key-0002";

/// Runs the demo until SIGINT/SIGTERM.
pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    reset_sqlite(&settings.database.url)?;
    let key: [u8; 32] = rand::rng().random();
    settings.security.encryption_key = base64::engine::general_purpose::STANDARD.encode(key).into();

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

    let api = ApiClient::new(base.clone(), Some(token.clone()));
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

async fn seed(api: &ApiClient, sim: &Simulator) -> anyhow::Result<()> {
    let mut account_ids = Vec::new();
    for (name, key, primary) in [
        ("primary", PRIMARY_KEY, true),
        ("backup", BACKUP_KEY, false),
    ] {
        let account = api
            .post(
                "/api/v1/accounts",
                json!({"name": name, "broker": "sim", "rest_url": sim.rest_url(),
                       "ws_url": sim.ws_url(), "api_key": key, "is_primary": primary}),
            )
            .await?;
        account_ids.push(account["id"].clone());
    }

    // A short NIFTY straddle on the primary account: one lot of the nearest-expiry ATM CE and PE.
    let primary = RestClient::new(
        &sim.rest_url(),
        &PRIMARY_KEY.into(),
        Duration::from_secs(10),
    );
    let expiries = primary.expiries("NIFTY", "NFO").await?;
    let expiry = expiries
        .first()
        .context("the simulator lists no NIFTY expiry")?
        .replace('-', "");
    let straddle = strategy(
        api,
        "NIFTY short straddle",
        json!({"max_loss": 3000.0, "max_profit": 2500.0}),
    )
    .await?;
    for option_type in ["CE", "PE"] {
        let leg = primary
            .option_symbol("NIFTY", "NSE_INDEX", &expiry, "ATM", option_type)
            .await?;
        let lot = leg.lotsize.map(|l| l as i64).unwrap_or(65);
        enter(
            api,
            &primary,
            Leg {
                strategy_id: &straddle,
                account_id: &account_ids[0],
                exchange: &leg.exchange,
                symbol: &leg.symbol,
                action: "SELL",
                quantity: lot,
                product: "NRML",
                lot_size: Some(lot),
                freeze_qty: leg.freeze_qty.map(|f| f as i64),
            },
        )
        .await?;
    }

    // An equity basket on the backup account with a trailing stop.
    let backup = RestClient::new(&sim.rest_url(), &BACKUP_KEY.into(), Duration::from_secs(10));
    let basket = strategy(
        api,
        "Equity momentum",
        json!({"max_loss": 5000.0, "trailing_sl_type": "amount", "trailing_sl_value": 1500.0,
               "trailing_activation": 500.0}),
    )
    .await?;
    for (symbol, quantity) in [("RELIANCE", 50), ("INFY", 100)] {
        enter(
            api,
            &backup,
            Leg {
                strategy_id: &basket,
                account_id: &account_ids[1],
                exchange: "NSE",
                symbol,
                action: "BUY",
                quantity,
                product: "MIS",
                lot_size: None,
                freeze_qty: None,
            },
        )
        .await?;
    }
    Ok(())
}

async fn strategy(api: &ApiClient, name: &str, limits: Value) -> anyhow::Result<Value> {
    let mut body = limits;
    body["name"] = json!(name);
    Ok(api.post("/api/v1/strategies", body).await?["id"].clone())
}

struct Leg<'a> {
    strategy_id: &'a Value,
    account_id: &'a Value,
    exchange: &'a str,
    symbol: &'a str,
    action: &'a str,
    quantity: i64,
    product: &'a str,
    lot_size: Option<i64>,
    freeze_qty: Option<i64>,
}

/// Fills a MARKET entry order at the simulator, then registers the fill with the supervisor.
async fn enter(api: &ApiClient, gateway: &RestClient, leg: Leg<'_>) -> anyhow::Result<()> {
    let order_id = gateway
        .place_order(&OrderRequest {
            strategy: "demo".into(),
            exchange: leg.exchange.into(),
            symbol: leg.symbol.into(),
            action: leg.action.into(),
            quantity: leg.quantity,
            product: leg.product.into(),
            pricetype: "MARKET".into(),
        })
        .await?;
    let fill = gateway
        .order_book()
        .await?
        .into_iter()
        .find(|o| o.orderid == order_id)
        .and_then(|o| o.average_price)
        .with_context(|| format!("no fill price for order {order_id}"))?;
    api.post(
        "/api/v1/executions",
        json!({"strategy_id": leg.strategy_id, "account_id": leg.account_id,
               "symbol": leg.symbol, "exchange": leg.exchange, "product": leg.product,
               "action": leg.action, "quantity": leg.quantity, "entry_price": fill,
               "entry_order_id": order_id, "lot_size": leg.lot_size,
               "freeze_qty": leg.freeze_qty}),
    )
    .await?;
    Ok(())
}
