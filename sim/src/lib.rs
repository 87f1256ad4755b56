//! Spotcheck's simulator: the demo marketplace as a file or a feed, simulated
//! volunteers that double as a load generator, the end-to-end demo, fault runs,
//! the benchmarks (sampler, cycle, history) and the history seeder.

pub mod api;
pub mod bench_cycle;
pub mod bench_history;
pub mod bench_recalibration;
pub mod bench_sampler;
pub mod cli;
pub mod demo;
pub mod export;
pub mod fault;
pub mod feed;
pub mod load;
pub mod problem;
pub mod roster;
pub mod seed_history;
pub mod session;
pub mod staff;
pub mod stats;
pub mod truth;
pub mod volunteer;

use cli::{Cli, Command};

/// Runs the subcommand of `cli`.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => export::run(&args),
        Command::Publish(args) => feed::run(&args).await,
        Command::Volunteers(args) => load::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Fault(args) => fault::run(args).await,
        Command::BenchSampler(args) => bench_sampler::run(args).await,
        Command::BenchCycle(args) => bench_cycle::run(args).await,
        Command::BenchHistory(args) => bench_history::run(args).await,
        Command::SeedHistory(args) => seed_history::run(args).await,
        Command::BenchRecalibration(args) => bench_recalibration::run(args).await,
    }
}
