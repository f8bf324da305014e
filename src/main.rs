use clap::{Parser, Subcommand};
use trading_supervisor::sim;

#[derive(Parser)]
#[command(name = "supervisor", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the OpenAlgo-compatible gateway simulator.
    Sim(sim::SimArgs),
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    match Cli::parse().command {
        Command::Sim(args) => sim::run(args).await,
    }
}
