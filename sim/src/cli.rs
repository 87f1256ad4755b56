//! The command line: `generate`, `publish`, `volunteers`, `demo`, `fault`, `seed-history`,
//! `bench-sampler`, `bench-cycle` and `bench-history` (the last ones keep their
//! arguments with them, as `fault::args` and `bench_sampler::args` do).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Drives Spotcheck with a simulated marketplace and simulated volunteers.
#[derive(Debug, Parser)]
#[command(name = "spotcheck-sim", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the demo marketplace as JSONL listings, for `coordinator import`.
    Generate(GenerateArgs),
    /// Publish the demo marketplace to the listings exchange.
    Publish(PublishArgs),
    /// Run simulated volunteers against the API (with `--think-ms 0`, a load generator).
    Volunteers(VolunteersArgs),
    /// Publish the marketplace, run volunteers, report progress and score the escalations.
    Demo(DemoArgs),
    /// Run volunteers at full speed while killing and restarting processes, flushing
    /// or restarting Redis and dropping RabbitMQ connections; then check invariants I1 to I6.
    Fault(crate::fault::FaultArgs),
    /// Measure listings sampled/s and tasks published/s through the real ingest and
    /// outbox relay, beside RabbitMQ's publish-with-confirms rate in the same run.
    BenchSampler(crate::bench_sampler::BenchSamplerArgs),
    /// Measure the claim-and-vote cycle end to end on an isolated stack, phase by
    /// phase, beside a `FOR UPDATE SKIP LOCKED` baseline and the raw service limits.
    BenchCycle(crate::bench_cycle::BenchCycleArgs),
    /// Measure the same figures on an empty database and after writing months of
    /// history into it: cycle rate and p99s, staff routes, periodic job durations.
    BenchHistory(crate::bench_history::BenchHistoryArgs),
    /// Write months of realistic history (listings, tasks, votes, decisions,
    /// escalations, gold answers, audit rows) straight into a database.
    SeedHistory(crate::seed_history::SeedHistoryArgs),
    /// Time the Dawid-Skene recalibration over a database's history, cold and
    /// warm-started, with its peak memory and the warm fit's gap to the cold one.
    BenchRecalibration(crate::bench_recalibration::BenchRecalibrationArgs),
}

/// Which marketplace: the same seed and count always give the same listings.
#[derive(Debug, Clone, Args)]
pub struct MarketArgs {
    /// Seed of the marketplace and of the volunteers' answers.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How many listings.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
}

/// `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The marketplace.
    #[command(flatten)]
    pub market: MarketArgs,
    /// Where to write the listings, one JSON object a line.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the hidden truth, `{"listing_id", "counterfeit"}` a line.
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

/// Where the listings exchange is.
#[derive(Debug, Clone, Args)]
pub struct AmqpArgs {
    /// RabbitMQ address.
    #[arg(
        long = "amqp-url",
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub url: String,
    /// Prefix of exchange and queue names.
    #[arg(
        long = "amqp-namespace",
        env = "SPOTCHECK_AMQP_NAMESPACE",
        default_value = "spotcheck"
    )]
    pub namespace: String,
    /// Messages published per batch of publisher confirms.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

/// `publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The marketplace.
    #[command(flatten)]
    pub market: MarketArgs,
    /// The broker.
    #[command(flatten)]
    pub amqp: AmqpArgs,
}

/// Where the API is and who the users are.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Base address of worker-api.
    #[arg(long, env = "SPOTCHECK_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// A staff or admin user that creates the volunteers and reads the stats.
    #[arg(long, env = "SPOTCHECK_ADMIN_USER", default_value = "admin")]
    pub admin_user: String,
    /// That user's password.
    #[arg(long, env = "SPOTCHECK_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
    /// Volunteer usernames are this prefix and a five-digit index.
    #[arg(long, default_value = "vol")]
    pub user_prefix: String,
    /// The password of every simulated volunteer.
    #[arg(
        long,
        env = "SPOTCHECK_SIM_PASSWORD",
        default_value = "spotcheck-sim-volunteer",
        hide_env_values = true
    )]
    pub volunteer_password: String,
}

/// How the volunteers work and for how long.
#[derive(Debug, Clone, Args)]
pub struct CrewArgs {
    /// Mean time between claim and vote in ms (each drawn from [0.5T, 1.5T]); 0 for load.
    #[arg(long, default_value_t = 0)]
    pub think_ms: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// Each volunteer stops after this many accepted votes.
    #[arg(long)]
    pub max_votes_per_volunteer: Option<u64>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json_report: Option<PathBuf>,
}

impl CrewArgs {
    /// The run's length.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }
}

/// `volunteers`.
#[derive(Debug, Args)]
pub struct VolunteersArgs {
    /// The API and users.
    #[command(flatten)]
    pub api: ApiArgs,
    /// How many volunteers.
    #[arg(long, default_value_t = 20)]
    pub count: usize,
    /// Seed of the marketplace (for the truth) and of the volunteers.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How many listings the marketplace of `--seed` had (for the truth).
    #[arg(long, default_value_t = 1000)]
    pub listings_count: usize,
    /// The volunteers' work.
    #[command(flatten)]
    pub crew: CrewArgs,
}

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The marketplace.
    #[command(flatten)]
    pub market: MarketArgs,
    /// How many volunteers.
    #[arg(long, default_value_t = 50)]
    pub volunteers: usize,
    /// Seconds between progress summaries.
    #[arg(long, default_value_t = 10)]
    pub report_every: u64,
    /// Do not publish (the listings were published or imported before).
    #[arg(long)]
    pub skip_publish: bool,
    /// Start the volunteers only once every listing is ingested (for clean load figures).
    #[arg(long)]
    pub wait_ingest: bool,
    /// Gold tasks (listings with known answers) staff add before the volunteers start.
    #[arg(long, default_value_t = 40)]
    pub gold: usize,
    /// After the review, staff decide the escalations and the demo waits up to
    /// this many seconds for the cases' refutation windows to run out and the
    /// penalties to be issued (`0`: staff decide nothing).
    #[arg(long, default_value_t = 0)]
    pub enforce_secs: u64,
    /// The API and users.
    #[command(flatten)]
    pub api: ApiArgs,
    /// The broker.
    #[command(flatten)]
    pub amqp: AmqpArgs,
    /// The volunteers' work.
    #[command(flatten)]
    pub crew: CrewArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn volunteers_parse_with_their_defaults() {
        let cli = Cli::try_parse_from([
            "spotcheck-sim",
            "volunteers",
            "--admin-password",
            "pw",
            "--count",
            "3",
        ])
        .unwrap();
        let Command::Volunteers(args) = cli.command else {
            panic!("not volunteers")
        };
        assert_eq!(
            (
                args.count,
                args.crew.think_ms,
                args.api.user_prefix.as_str()
            ),
            (3, 0, "vol")
        );
        assert_eq!(args.crew.max_votes_per_volunteer, None);
    }

    #[test]
    fn bench_sampler_parses_with_its_defaults() {
        let cli = Cli::try_parse_from(["spotcheck-sim", "bench-sampler", "--runs", "1"]).unwrap();
        let Command::BenchSampler(args) = cli.command else {
            panic!("not bench-sampler")
        };
        assert_eq!((args.listings, args.runs, args.batch), (20_000, 1, 200));
        assert_eq!(args.rate, 0.2);
        args.validate().unwrap();
    }
}
