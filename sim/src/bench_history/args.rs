//! The arguments of `bench-history`, their checks, and the `bench-cycle`
//! arguments its stack and closed loop are built from.

use crate::bench_cycle::args::StackArgs;
use crate::bench_cycle::{BenchCycleArgs, Phase};
use clap::{Args, FromArgMatches};
use std::path::PathBuf;
use std::time::Duration;

/// The round sweep's pause once nothing is due (`SPOTCHECK_ROUND_SWEEP_MS`).
pub const SWEEP_IDLE_MS: u64 = 1_000;

/// `spotcheck-sim bench-history`.
#[derive(Debug, Clone, Args)]
pub struct BenchHistoryArgs {
    /// Review votes of history written between the two measurements (three a task).
    #[arg(long, default_value_t = 10_000_000)]
    pub votes: i64,
    /// Months the history spans.
    #[arg(long, default_value_t = 12)]
    pub months: i64,
    /// Seconds of load before each measured window.
    #[arg(long, default_value_t = 3)]
    pub warmup_secs: u64,
    /// Seconds of each measured window.
    #[arg(long, default_value_t = 10)]
    pub window_secs: u64,
    /// Closed-loop windows in each measurement, each after its own warm-up;
    /// the figures compared are their medians, so one window slowed by the
    /// shared machine does not decide the comparison.
    #[arg(long, default_value_t = 5)]
    pub windows: usize,
    /// Unmeasured windows of the same closed loop before the measured ones. A
    /// fresh database is fastest while it is tiny: over its first 150,000
    /// cycles the rate fell by a tenth and the p99s rose by half, then held;
    /// the burn-in compares the history with an empty database in that
    /// steady state, not with its first minute.
    #[arg(long, default_value_t = 4)]
    pub burn_in_windows: usize,
    /// Longest wait, before the closed loop, for the database to be quiet: the
    /// sweep's mark of the listings it did not reach vacuumed, and no
    /// autovacuum running in the database.
    #[arg(long, default_value_t = 300)]
    pub quiet_wait_secs: u64,
    /// Volunteers of the closed loop.
    #[arg(long, default_value_t = 64)]
    pub volunteers: usize,
    /// Requests to each staff route, one after another, in each measurement.
    #[arg(long, default_value_t = 200)]
    pub staff_requests: usize,
    /// Slot offers on the queue before each window (default: enough for
    /// `bench-cycle`'s closed-loop target over warm-up and window).
    #[arg(long)]
    pub prefill_slots: Option<u64>,
    /// Longest the round sweep is timed in each measurement; the listings it
    /// has not reached by then are marked swept for the round.
    #[arg(long, default_value_t = 20)]
    pub sweep_secs: u64,
    /// Uniform sampling rate in force while the round sweep is timed (the
    /// history was sampled at 5 % for most sellers).
    #[arg(long, default_value_t = 0.05)]
    pub sweep_sampling_rate: f64,
    /// The coordinator's pause between recalibrations (`SPOTCHECK_RECALIBRATE_SECS`,
    /// an hour in production). By default a day, so none falls in the run: a
    /// recalibration over a large history takes seconds of a core, and would
    /// be measured as a slower closed loop. The benchmark times one itself, with
    /// the coordinator's code, once the jobs have been watched.
    #[arg(long, default_value_t = 86_400)]
    pub recalibrate_secs: u64,
    /// After the window and the staff calls, the jobs are timed on the quiet
    /// stack until every one of them has run, at most this long.
    #[arg(long, default_value_t = 60)]
    pub jobs_wait_secs: u64,
    /// PostgreSQL connections of each service process (`SPOTCHECK_DB_MAX_CONNECTIONS`).
    #[arg(long, default_value_t = 16)]
    pub db_connections: u32,
    /// Seed of the demo marketplaces of the pre-fill.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the report is written as JSON.
    #[arg(long, default_value = "target/bench-history.json")]
    pub out: PathBuf,
    /// The whole benchmark stops (and cleans up) after this many seconds.
    #[arg(long, default_value_t = 14_400)]
    pub max_secs: u64,
    /// The services and binaries of the stack.
    #[command(flatten)]
    pub stack: StackArgs,
}

impl BenchHistoryArgs {
    /// Refuses values the benchmark cannot run with.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.votes >= 3, "--votes must be at least 3");
        anyhow::ensure!(
            (1..=120).contains(&self.months),
            "--months must be 1 to 120"
        );
        anyhow::ensure!(self.window_secs > 0, "--window-secs must be at least 1");
        anyhow::ensure!(
            (1..=100).contains(&self.windows),
            "--windows must be 1 to 100"
        );
        anyhow::ensure!(
            self.burn_in_windows <= 100,
            "--burn-in-windows must be 0 to 100"
        );
        anyhow::ensure!(self.max_secs > 0, "--max-secs must be at least 1");
        anyhow::ensure!(self.sweep_secs > 0, "--sweep-secs must be at least 1");
        anyhow::ensure!(
            (1..=10_000).contains(&self.volunteers),
            "--volunteers must be 1 to 10000"
        );
        anyhow::ensure!(
            (1..=100_000).contains(&self.staff_requests),
            "--staff-requests must be 1 to 100000"
        );
        anyhow::ensure!(
            self.sweep_sampling_rate > 0.0 && self.sweep_sampling_rate <= 1.0,
            "--sweep-sampling-rate must be in (0, 1]"
        );
        anyhow::ensure!(
            self.recalibrate_secs > 0,
            "--recalibrate-secs must be at least 1 (recalibration is one of the jobs measured)"
        );
        anyhow::ensure!(
            (1..=64).contains(&self.db_connections),
            "--db-connections must be 1 to 64"
        );
        Ok(())
    }

    /// How long the benchmark may take.
    pub fn max_duration(&self) -> Duration {
        Duration::from_secs(self.max_secs)
    }

    /// The `bench-cycle` arguments of the same stack and closed loop: its
    /// defaults (one worker-api, one coordinator, majority of three votes)
    /// with this run's sizes, connections and services.
    pub fn cycle_args(&self) -> anyhow::Result<BenchCycleArgs> {
        let command = BenchCycleArgs::augment_args(clap::Command::new("bench-cycle"));
        let matches = command.try_get_matches_from(["bench-cycle"])?;
        let mut cycle = BenchCycleArgs::from_arg_matches(&matches)?;
        cycle.phases = vec![Phase::Closed];
        cycle.warmup_secs = self.warmup_secs;
        cycle.window_secs = self.window_secs;
        cycle.volunteers = self.volunteers;
        cycle.db_connections = self.db_connections;
        cycle.seed = self.seed;
        cycle.max_secs = self.max_secs;
        cycle.stack = self.stack.clone();
        cycle.validate()?;
        Ok(cycle)
    }

    /// What the coordinators run with on top of `bench-cycle`'s configuration:
    /// recalibration every `--recalibrate-secs`, and a round sweep that looks
    /// for due listings every second once idle (10 s by default), so the timed
    /// sweep starts within a second of the listings falling due.
    pub fn coordinator_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "SPOTCHECK_RECALIBRATE_SECS",
                self.recalibrate_secs.to_string(),
            ),
            ("SPOTCHECK_ROUND_SWEEP_MS", SWEEP_IDLE_MS.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(extra: &[&str]) -> BenchHistoryArgs {
        let mut argv = vec!["spotcheck-sim", "bench-history"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::BenchHistory(args) => args,
            other => panic!("not bench-history: {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_ten_million_votes_over_a_year_and_validate() {
        let args = parse(&[]);
        assert_eq!((args.votes, args.months), (10_000_000, 12));
        assert_eq!(args.staff_requests, 200);
        args.validate().unwrap();
    }

    #[test]
    fn the_cycle_arguments_run_the_closed_loop_with_this_runs_sizes() {
        let args = parse(&["--window-secs", "2", "--volunteers", "8", "--seed", "7"]);
        let cycle = args.cycle_args().unwrap();
        assert_eq!(cycle.selected(), vec![Phase::Closed]);
        assert_eq!((cycle.window_secs, cycle.volunteers, cycle.seed), (2, 8, 7));
        assert_eq!(cycle.votes, 3);
        assert_eq!(cycle.stack.database_url, args.stack.database_url);
    }

    #[test]
    fn values_it_cannot_run_with_are_refused() {
        assert!(parse(&["--votes", "2"]).validate().is_err());
        assert!(parse(&["--sweep-sampling-rate", "0"]).validate().is_err());
        assert!(parse(&["--recalibrate-secs", "0"]).validate().is_err());
        assert!(parse(&["--staff-requests", "0"]).validate().is_err());
        assert!(parse(&["--windows", "0"]).validate().is_err());
        assert!(parse(&["--burn-in-windows", "101"]).validate().is_err());
    }
}
