//! The arguments of `bench-cycle`, the phases it can run, and their checks.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// One measured phase; phases always run in this order, whatever order they are named in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Phase {
    /// Closed loop of claim then vote, no think time.
    Closed,
    /// Claim then release at once, beside a `FOR UPDATE SKIP LOCKED` baseline.
    Claims,
    /// Open loop: cycles started on a fixed schedule.
    Open,
    /// Listing published to decision.
    Latency,
    /// worker-api resident memory, idle and after many signed-in volunteers.
    Memory,
    /// Feed ingest from the listings exchange.
    Ingest,
    /// RabbitMQ publish with confirms and Redis round trips, without Spotcheck.
    Raw,
}

impl Phase {
    /// Every phase, in the order they run.
    pub const ALL: [Phase; 7] = [
        Phase::Closed,
        Phase::Claims,
        Phase::Open,
        Phase::Latency,
        Phase::Memory,
        Phase::Ingest,
        Phase::Raw,
    ];

    /// The name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Claims => "claims",
            Phase::Open => "open",
            Phase::Latency => "latency",
            Phase::Memory => "memory",
            Phase::Ingest => "ingest",
            Phase::Raw => "raw",
        }
    }
}

/// `spotcheck-sim bench-cycle`.
/// Where a benchmark's own stack runs: the services it makes its namespace
/// in, and the binaries it starts (`bench-cycle`, `bench-history`).
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Where `worker-api` and `coordinator` are (default: beside this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Keep the processes' logs (they are also kept when the run fails).
    #[arg(long)]
    pub keep_logs: bool,
    /// A database of the PostgreSQL server; the benchmark creates its own beside it.
    #[arg(
        long = "database-url",
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    pub database_url: String,
    /// RabbitMQ address; the benchmark declares and deletes its own namespace there.
    #[arg(
        long = "amqp-url",
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// Redis address; the benchmark's keys carry its own prefix and are deleted at the end.
    #[arg(
        long = "redis-url",
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        hide_env_values = true
    )]
    pub redis_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct BenchCycleArgs {
    /// Phases to run (comma-separated); all of them by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub phases: Vec<Phase>,
    /// worker-api processes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub api_replicas: u16,
    /// Coordinator processes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub coordinators: u16,
    /// Seconds of load before each measured window.
    #[arg(long, default_value_t = 3)]
    pub warmup_secs: u64,
    /// Seconds of each measured window.
    #[arg(long, default_value_t = 10)]
    pub window_secs: u64,
    /// Volunteers of the closed loop (`closed`).
    #[arg(long, default_value_t = 64)]
    pub volunteers: usize,
    /// Clients that claim and release (`claims`, Spotcheck and baseline alike).
    #[arg(long, default_value_t = 64)]
    pub claim_clients: usize,
    /// Claim-and-vote cycles a second offered by the open loop (`open`).
    #[arg(long, default_value_t = 2000.0)]
    pub open_rate: f64,
    /// Most cycles of the open loop in flight (each with a volunteer of its own);
    /// a start that finds none free is dropped.
    #[arg(long, default_value_t = 512)]
    pub open_max_in_flight: usize,
    /// Listings published to the feed in the `latency` phase.
    #[arg(long, default_value_t = 300)]
    pub latency_listings: usize,
    /// Listings a second published in the `latency` phase.
    #[arg(long, default_value_t = 50.0)]
    pub latency_rate: f64,
    /// Volunteers claiming and voting in the `latency` phase.
    #[arg(long, default_value_t = 16)]
    pub latency_volunteers: usize,
    /// Seconds after the last publish the `latency` phase waits for decisions.
    #[arg(long, default_value_t = 30)]
    pub latency_timeout_secs: u64,
    /// Signed-in volunteers that each make a request in the `memory` phase.
    #[arg(long, default_value_t = 10_000)]
    pub memory_volunteers: usize,
    /// Listings published to the feed in the `ingest` phase.
    #[arg(long, default_value_t = 20_000)]
    pub ingest_listings: usize,
    /// Uniform sampling rate in force during the `ingest` phase (1.0 before it).
    #[arg(long, default_value_t = 0.2)]
    pub ingest_sampling_rate: f64,
    /// Seconds the `ingest` phase waits for every listing to be stored.
    #[arg(long, default_value_t = 90)]
    pub ingest_timeout_secs: u64,
    /// Messages of the raw RabbitMQ publish-with-confirms baseline.
    #[arg(long, default_value_t = 20_000)]
    pub raw_messages: u64,
    /// Concurrent Redis connections of the raw PING baseline.
    #[arg(long, default_value_t = 4)]
    pub redis_connections: usize,
    /// Seconds of the raw Redis PING baseline.
    #[arg(long, default_value_t = 3)]
    pub raw_secs: u64,
    /// A volunteer answered `204` (nothing to claim) waits this long before claiming again.
    #[arg(long, default_value_t = 50)]
    pub empty_backoff_ms: u64,
    /// Votes a task asks for (`SPOTCHECK_MIN_VOTES` of both services).
    #[arg(long, default_value_t = 3)]
    pub votes: u32,
    /// Aggregation of the coordinators (`SPOTCHECK_AGGREGATION`): `majority` decides
    /// at a fixed vote count, so every phase sees the same work per task.
    #[arg(long, default_value = "majority", value_parser = ["majority", "adaptive"])]
    pub aggregation: String,
    /// Slot offers pre-filled for a phase: its target rate x (warm-up + window) x this.
    #[arg(long, default_value_t = 1.5)]
    pub prefill_margin: f64,
    /// PostgreSQL connections of each service process (`SPOTCHECK_DB_MAX_CONNECTIONS`).
    #[arg(long, default_value_t = 16)]
    pub db_connections: u32,
    /// Seed of the demo marketplaces.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where this run's report is written as JSON.
    #[arg(long, default_value = "target/bench-cycle.json")]
    pub out: PathBuf,
    /// A JSON report of an earlier run, shown as "previous".
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// The whole benchmark stops (and cleans up) after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub max_secs: u64,
    /// The services and binaries of the stack.
    #[command(flatten)]
    pub stack: StackArgs,
}

impl BenchCycleArgs {
    /// The phases to run, in their fixed order.
    pub fn selected(&self) -> Vec<Phase> {
        Phase::ALL
            .into_iter()
            .filter(|p| self.phases.is_empty() || self.phases.contains(p))
            .collect()
    }

    /// Whether `phase` runs.
    pub fn runs(&self, phase: Phase) -> bool {
        self.selected().contains(&phase)
    }

    /// Warm-up before each window.
    pub fn warmup(&self) -> Duration {
        Duration::from_secs(self.warmup_secs)
    }

    /// Each measured window.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    /// How long the benchmark may take.
    pub fn max_duration(&self) -> Duration {
        Duration::from_secs(self.max_secs)
    }

    /// The pause after an empty claim.
    pub fn empty_backoff(&self) -> Duration {
        Duration::from_millis(self.empty_backoff_ms)
    }

    /// Slot offers a phase running at `rate` a second needs on the queue.
    pub fn slots_for(&self, rate: f64) -> u64 {
        let secs = (self.warmup_secs + self.window_secs) as f64;
        (rate * secs * self.prefill_margin).ceil() as u64
    }

    /// Users the benchmark creates: enough for every phase that runs.
    pub fn users_needed(&self) -> usize {
        let mut n = self.volunteers.max(self.claim_clients);
        n = n.max(self.open_max_in_flight).max(self.latency_volunteers);
        if self.runs(Phase::Memory) {
            n = n.max(self.memory_volunteers);
        }
        n
    }

    /// Refuses values the benchmark cannot run with.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.window_secs > 0, "--window-secs must be at least 1");
        anyhow::ensure!(self.max_secs > 0, "--max-secs must be at least 1");
        for (flag, n) in [
            ("--volunteers", self.volunteers),
            ("--claim-clients", self.claim_clients),
            ("--open-max-in-flight", self.open_max_in_flight),
            ("--latency-volunteers", self.latency_volunteers),
            ("--latency-listings", self.latency_listings),
            ("--memory-volunteers", self.memory_volunteers),
            ("--ingest-listings", self.ingest_listings),
            ("--redis-connections", self.redis_connections),
        ] {
            anyhow::ensure!((1..=100_000).contains(&n), "{flag} must be 1 to 100000");
        }
        for (flag, rate) in [
            ("--open-rate", self.open_rate),
            ("--latency-rate", self.latency_rate),
        ] {
            anyhow::ensure!(
                rate.is_finite() && rate > 0.0 && rate <= 1e6,
                "{flag} must be above 0"
            );
        }
        anyhow::ensure!(
            self.ingest_sampling_rate > 0.0 && self.ingest_sampling_rate <= 1.0,
            "--ingest-sampling-rate must be in (0, 1]"
        );
        anyhow::ensure!(
            self.prefill_margin.is_finite() && self.prefill_margin >= 1.0,
            "--prefill-margin must be at least 1"
        );
        anyhow::ensure!((1..=50).contains(&self.votes), "--votes must be 1 to 50");
        anyhow::ensure!(self.raw_messages > 0, "--raw-messages must be at least 1");
        anyhow::ensure!(
            (1..=64).contains(&self.db_connections),
            "--db-connections must be 1 to 64"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(extra: &[&str]) -> BenchCycleArgs {
        let mut argv = vec!["spotcheck-sim", "bench-cycle"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::BenchCycle(args) => args,
            other => panic!("not bench-cycle: {other:?}"),
        }
    }

    #[test]
    fn the_defaults_run_every_phase_in_order_and_validate() {
        let args = parse(&[]);
        assert_eq!(args.selected(), Phase::ALL.to_vec());
        assert_eq!((args.api_replicas, args.coordinators), (1, 1));
        assert_eq!((args.warmup_secs, args.window_secs), (3, 10));
        assert_eq!(args.users_needed(), 10_000);
        args.validate().unwrap();
    }

    #[test]
    fn named_phases_run_in_the_fixed_order_and_size_the_users() {
        let args = parse(&["--phases", "raw,closed"]);
        assert_eq!(args.selected(), vec![Phase::Closed, Phase::Raw]);
        assert!(!args.runs(Phase::Memory));
        assert_eq!(args.users_needed(), 512);
    }

    #[test]
    fn the_prefill_covers_warm_up_and_window_with_the_margin() {
        let args = parse(&["--prefill-margin", "2"]);
        assert_eq!(args.slots_for(1000.0), 26_000);
        assert!(parse(&["--prefill-margin", "0.5"]).validate().is_err());
        assert!(parse(&["--open-rate", "0"]).validate().is_err());
    }
}
