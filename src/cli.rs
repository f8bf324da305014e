//! The command line: `serve`, `migrate`, `sim`, `demo` and `bench`. It lives in the library so
//! the program's asynchronous bodies compile with the rest of the library, in parallel, instead
//! of in the binary crate after it (a first release build is about 20 s shorter).

use actors::secrets::ExposeSecret;
use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::configuration::Settings;
use crate::startup::Application;
use crate::{database, demo, telemetry};

/// Trading supervisor: one market-data feed per API key, live P&L and risk exits for OpenAlgo.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (migrates the database first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Run the OpenAlgo-compatible gateway simulator.
    Sim(simulator::SimArgs),
    /// Run the simulator and the service together with demo data (fresh SQLite database).
    Demo,
    /// Measure throughput, latency and memory against the simulator in firehose mode.
    Bench(bench::BenchArgs),
}

/// Parses the command line and runs the chosen command to completion.
pub fn main() -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = match cli.command {
        Command::Demo => Settings::load_for("demo"),
        _ => Settings::load(),
    }
    .context("loading settings")?;
    telemetry::init(&settings.telemetry);
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let db = database::connect(&settings.database).await?;
            database::migrate(&db).await?;
            // With the key at hand, API keys stored before they were bound to their account are
            // re-encrypted now rather than at the next start.
            let key = settings.security.encryption_key.expose_secret();
            if !key.is_empty() {
                crate::startup::check_encryption_key(&db, key).await?;
            }
            println!(
                "migrations applied to {}",
                database::redact(&settings.database.url)
            );
            Ok(())
        }
        Command::Sim(args) => simulator::run(args).await,
        Command::Demo => demo::run(settings).await,
        Command::Bench(args) => bench::run(args).await,
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let host = settings.server.host.clone();
    let app = Application::build(settings).await?;
    println!("supervisor listening on http://{host}:{}/", app.port());
    if app.token_generated() {
        println!(
            "admin token (generated for this run): {}",
            app.admin_token()
        );
    }
    app.run_until_stopped().await.context("serving HTTP")
}
