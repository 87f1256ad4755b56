//! The arguments of `bench-sampler` and their checks.

use clap::Args;
use spotcheck_shared::SamplingPolicy;
use std::time::Duration;

/// `bench-sampler`.
#[derive(Debug, Clone, Args)]
pub struct BenchSamplerArgs {
    /// Demo listings ingested in each run.
    #[arg(long, default_value_t = 20_000)]
    pub listings: usize,
    /// The uniform sampling rate (inclusion probability of every listing).
    #[arg(long, default_value_t = 0.2)]
    pub rate: f64,
    /// Runs; the figures reported are the medians over them.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Listings per ingest transaction (the coordinator's `SPOTCHECK_IMPORT_BATCH` default).
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// Outbox rows per relay batch (the coordinator's `SPOTCHECK_RELAY_BATCH` default),
    /// and messages per confirmed batch of the raw baseline.
    #[arg(long, default_value_t = 500)]
    pub relay_batch: i64,
    /// Votes each task asks for, hence slot offers per task.
    #[arg(long, default_value_t = 3)]
    pub votes: i32,
    /// Seed of the demo marketplace.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The whole benchmark stops (and cleans up) after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub max_secs: u64,
    /// A database of the PostgreSQL server to measure; the benchmark creates its own
    /// database beside it and drops it at the end.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    pub database_url: String,
    /// RabbitMQ address; the benchmark declares and deletes its own queues there.
    #[arg(
        long = "amqp-url",
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
}

impl BenchSamplerArgs {
    /// Refuses values the benchmark cannot run with.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.listings > 0, "--listings must be at least 1");
        anyhow::ensure!((1..=100).contains(&self.runs), "--runs must be 1 to 100");
        anyhow::ensure!(self.batch > 0, "--batch must be at least 1");
        anyhow::ensure!(self.relay_batch > 0, "--relay-batch must be at least 1");
        anyhow::ensure!((1..=50).contains(&self.votes), "--votes must be 1 to 50");
        anyhow::ensure!(self.max_secs > 0, "--max-secs must be at least 1");
        self.policy()
            .validate()
            .map_err(|e| anyhow::anyhow!("--rate: {e}"))
    }

    /// The sampling policy of the runs: every listing at `--rate`.
    pub fn policy(&self) -> SamplingPolicy {
        SamplingPolicy::uniform(self.rate)
    }

    /// How long the benchmark may take.
    pub fn max_duration(&self) -> Duration {
        Duration::from_secs(self.max_secs)
    }
}
