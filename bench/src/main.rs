//! `spotcheck-bench`: offline benchmarks of Spotcheck's aggregation.
//!
//! `aggregation` compares vote policies on a simulated crowd; `dawid-skene`
//! times batch Dawid–Skene on about a million votes (and can write the votes
//! and labels out for comparison with crowd-kit).

mod aggregation;
mod dawid_skene;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "spotcheck-bench",
    about = "Offline benchmarks of Spotcheck's aggregation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Majority of 3, majority of 5 and the adaptive policy on one simulated crowd.
    Aggregation {
        /// Tasks to decide.
        #[arg(long, default_value_t = 20_000)]
        tasks: usize,
        /// Volunteers in the crowd.
        #[arg(long, default_value_t = 200)]
        volunteers: usize,
        /// Seed of the crowd, the tasks and every answer.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Times Dawid–Skene EM on a synthetic vote set (median of several runs).
    DawidSkene {
        /// Votes to generate (tasks = votes / votes-per-task).
        #[arg(long, default_value_t = 1_000_000)]
        votes: usize,
        /// Votes per task.
        #[arg(long, default_value_t = 5)]
        votes_per_task: usize,
        /// Workers in the crowd.
        #[arg(long, default_value_t = 2_000)]
        workers: usize,
        /// Seed of the vote set.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Timed runs; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Write the votes here as CSV (task,worker,label).
        #[arg(long)]
        csv_out: Option<PathBuf>,
        /// Write the labels here as JSON {task: label}.
        #[arg(long)]
        labels_out: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Aggregation {
            tasks,
            volunteers,
            seed,
        } => aggregation::run(tasks, volunteers, seed),
        Command::DawidSkene {
            votes,
            votes_per_task,
            workers,
            seed,
            runs,
            csv_out,
            labels_out,
        } => dawid_skene::run(&dawid_skene::Args {
            votes,
            votes_per_task,
            workers,
            seed,
            runs,
            csv_out,
            labels_out,
        }),
    }
}
