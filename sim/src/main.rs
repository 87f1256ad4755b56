//! The `spotcheck-sim` binary: parse the command line and run it.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    spotcheck_sim::run(spotcheck_sim::cli::Cli::parse()).await
}
