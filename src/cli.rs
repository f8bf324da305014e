//! The command line: `serve`, `migrate`, `calendar import`, `sim`, `demo` and `bench`. It lives in the library so
//! the program's asynchronous bodies compile with the rest of the library, in parallel, instead
//! of in the binary crate after it (a first release build is about 20 s shorter).

use std::path::{Path, PathBuf};

use actors::secrets::ExposeSecret;
use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::configuration::{DatabaseSettings, Settings};
use crate::holiday_import::{self, Format, ImportError, ImportReport};
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
    /// Calendar data.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Run the OpenAlgo-compatible gateway simulator.
    Sim(simulator::SimArgs),
    /// Run the simulator and the service together with demo data (fresh SQLite database).
    Demo,
    /// Measure throughput, latency and memory against the simulator in firehose mode.
    Bench(bench::BenchArgs),
}

#[derive(Subcommand)]
enum CalendarCommand {
    /// Import holidays (e.g. next year's) from a CSV file with the header `date,name,exchange`
    /// or a JSON array of {"date","name","exchange"} objects, into the configured database
    /// (migrated first). All or nothing; holidays already stored are skipped. A running service
    /// picks them up within a minute.
    Import {
        /// The file: `.csv` or `.json` (any other name: JSON if it starts with `[`).
        file: PathBuf,
    },
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
        Command::Calendar(CalendarCommand::Import { file }) => {
            let report = import_holidays(&settings.database, &file).await?;
            println!(
                "imported {} into {}: {report}",
                file.display(),
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

/// `supervisor calendar import FILE`: connects to the database, applies pending migrations and
/// imports the file's holidays (see [`holiday_import`]).
pub async fn import_holidays(
    settings: &DatabaseSettings,
    file: &Path,
) -> anyhow::Result<ImportReport> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let format = match file.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
        Some(e) if e.eq_ignore_ascii_case("json") => Format::Json,
        _ => Format::sniff(&bytes),
    };
    let rows = holiday_import::parse(format, &bytes).map_err(|e| import_failed(file, e))?;
    let db = database::connect(settings).await?;
    database::migrate(&db).await?;
    let report = holiday_import::import(&db, rows)
        .await
        .map_err(|e| import_failed(file, e))?;
    db.close()
        .await
        .context("closing the database connection")?;
    Ok(report)
}

/// The import's error, with one invalid row per line.
fn import_failed(file: &Path, e: ImportError) -> anyhow::Error {
    match e {
        ImportError::Invalid(rows) => {
            let list: Vec<String> = rows.iter().map(ToString::to_string).collect();
            anyhow::anyhow!(
                "{}: {} invalid row{}, nothing was imported:\n  {}",
                file.display(),
                rows.len(),
                if rows.len() == 1 { "" } else { "s" },
                list.join("\n  ")
            )
        }
        other => anyhow::Error::new(other).context(format!("importing {}", file.display())),
    }
}
