//! The `fault` subcommand's command line: the world it builds, the load it
//! drives, the faults it injects and for how long.

use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// One kind of fault the run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum FaultKind {
    /// SIGKILL a worker-api process, then start it again on the same port.
    KillApi,
    /// SIGKILL a coordinator process, then start it again.
    KillCoordinator,
    /// FLUSHALL the run's Redis: every lease, quota and sentinel gone.
    FlushRedis,
    /// SIGKILL the run's redis-server and start it again empty, on the same port.
    RestartRedis,
    /// Close every RabbitMQ connection of the run's namespace (`rabbitmqctl close_connection`).
    CloseAmqp,
}

impl FaultKind {
    /// Every kind, in the order a run cycles through them.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::KillApi,
        FaultKind::KillCoordinator,
        FaultKind::FlushRedis,
        FaultKind::RestartRedis,
        FaultKind::CloseAmqp,
    ];

    /// The name used in output and reports (the same as on the command line).
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::KillApi => "kill-api",
            FaultKind::KillCoordinator => "kill-coordinator",
            FaultKind::FlushRedis => "flush-redis",
            FaultKind::RestartRedis => "restart-redis",
            FaultKind::CloseAmqp => "close-amqp",
        }
    }
}

/// How the volunteers reach the worker-api replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Front {
    /// One address: a TCP balancer in front of the replicas, as a Kubernetes
    /// Service is (each new connection to the next replica that accepts).
    Balancer,
    /// Each volunteer sends each claim to the next replica itself.
    RoundRobin,
}

impl Front {
    /// The name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Front::Balancer => "balancer",
            Front::RoundRobin => "round-robin",
        }
    }
}

/// `spotcheck-sim fault`.
#[derive(Debug, Clone, Args)]
pub struct FaultArgs {
    /// How long faults are injected, in seconds (the drain and the checks come after).
    #[arg(long)]
    pub duration_secs: u64,
    /// Seconds between two faults.
    #[arg(long, default_value_t = 5)]
    pub fault_every_secs: u64,
    /// Which faults to cycle through (comma-separated); all of them by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub faults: Vec<FaultKind>,
    /// worker-api processes to run.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub apis: u16,
    /// Coordinator processes to run.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub coordinators: u16,
    /// How volunteers reach the worker-api replicas.
    #[arg(long, value_enum, default_value_t = Front::Balancer)]
    pub front: Front,
    /// Simulated volunteers, claiming and voting without pause.
    #[arg(long, default_value_t = 40)]
    pub volunteers: usize,
    /// Percent of granted claims a volunteer walks away from (no vote, no release):
    /// their leases must expire and their slots come back.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=50))]
    pub abandon_percent: u32,
    /// Percent of granted claims a volunteer skips (releases).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=50))]
    pub release_percent: u32,
    /// Percent of granted claims voted on only after the lease expired (must be refused).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=50))]
    pub late_percent: u32,
    /// Demo listings published to the feed (every one is sampled).
    #[arg(long, default_value_t = 600)]
    pub listings: usize,
    /// Batches the listings are published in, spread over the fault window so
    /// faults meet work in flight (default: one a second; 1 publishes everything at the start).
    #[arg(long)]
    pub feed_waves: Option<usize>,
    /// Seed of the marketplace and of the volunteers' answers.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Lease lifetime of the run's worker-api processes, in seconds.
    #[arg(long, default_value_t = 3)]
    pub lease_ttl_secs: u64,
    /// Votes each task asks for.
    #[arg(long, default_value_t = 3)]
    pub min_votes: u32,
    /// After the faults, how long volunteers may keep working before the checks.
    #[arg(long, default_value_t = 120)]
    pub drain_secs: u64,
    /// Where the `coordinator` and `worker-api` binaries are
    /// (default: `target/release` if it has them, else `target/debug`).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// The run's own database, dropped and created again at the start.
    #[arg(long, default_value = "spotcheck_fault")]
    pub db_name: String,
    /// The run's AMQP namespace (exchange and queue prefix) and Redis key prefix.
    #[arg(long, default_value = "spotcheck_fault")]
    pub namespace: String,
    /// A database of the PostgreSQL server to create and drop the run's database from.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub admin_db_url: String,
    /// RabbitMQ address.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
    /// The redis-server program.
    #[arg(long, default_value = "redis-server")]
    pub redis_server: String,
    /// Write the processes' logs here and keep them (default: a temporary
    /// directory, removed at the end unless an invariant is violated).
    #[arg(long)]
    pub logs: Option<PathBuf>,
    /// Keep the database and logs at the end.
    #[arg(long)]
    pub keep: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json_report: Option<PathBuf>,
}

impl FaultArgs {
    /// The fault window.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }

    /// Time between faults (at least one second).
    pub fn fault_every(&self) -> Duration {
        Duration::from_secs(self.fault_every_secs.max(1))
    }

    /// The faults to cycle through.
    pub fn kinds(&self) -> Vec<FaultKind> {
        if self.faults.is_empty() {
            FaultKind::ALL.to_vec()
        } else {
            self.faults.clone()
        }
    }

    /// How many batches the listings are published in.
    pub fn waves(&self) -> usize {
        let one_a_second = usize::try_from(self.duration_secs).unwrap_or(usize::MAX);
        self.feed_waves
            .unwrap_or(one_a_second)
            .clamp(1, self.listings.max(1))
    }

    /// Refuses names that would touch a real deployment or reach SQL unquoted.
    pub fn validate(&self) -> anyhow::Result<()> {
        let plain = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        anyhow::ensure!(
            plain(&self.db_name),
            "--db-name must be 1 to 63 of a-z, 0-9 and _ (not starting with a digit)"
        );
        anyhow::ensure!(
            plain(&self.namespace),
            "--namespace must be 1 to 63 of a-z, 0-9 and _ (not starting with a digit)"
        );
        for (what, name) in [
            ("--db-name", &self.db_name),
            ("--namespace", &self.namespace),
        ] {
            anyhow::ensure!(
                !matches!(
                    name.as_str(),
                    "spotcheck" | "postgres" | "template0" | "template1"
                ),
                "{what} {name} belongs to a real deployment or the server; the run drops it"
            );
        }
        anyhow::ensure!(self.listings > 0, "--listings must be at least 1");
        anyhow::ensure!(self.volunteers > 0, "--volunteers must be at least 1");
        anyhow::ensure!(
            (1..=50).contains(&self.min_votes),
            "--min-votes must be 1 to 50"
        );
        anyhow::ensure!(
            self.lease_ttl_secs > 0,
            "--lease-ttl-secs must be at least 1"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(extra: &[&str]) -> super::FaultArgs {
        let mut argv = vec!["spotcheck-sim", "fault", "--duration-secs", "60"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Fault(args) => args,
            other => panic!("not fault: {other:?}"),
        }
    }

    #[test]
    fn a_fault_run_has_safe_defaults_and_cycles_every_fault() {
        let args = parse(&[]);
        assert_eq!((args.apis, args.coordinators, args.volunteers), (2, 2, 40));
        assert_eq!(
            (args.listings, args.lease_ttl_secs, args.drain_secs),
            (600, 3, 120)
        );
        assert_eq!(args.kinds(), super::FaultKind::ALL.to_vec());
        assert_eq!(args.waves(), 60);
        args.validate().unwrap();
    }

    #[test]
    fn faults_can_be_chosen_and_real_deployments_are_refused() {
        let args = parse(&["--faults", "flush-redis,close-amqp", "--feed-waves", "1"]);
        assert_eq!(
            args.kinds(),
            vec![super::FaultKind::FlushRedis, super::FaultKind::CloseAmqp]
        );
        assert_eq!(args.waves(), 1);
        assert!(parse(&["--db-name", "spotcheck"]).validate().is_err());
        assert!(parse(&["--namespace", "bad-name"]).validate().is_err());
        assert!(parse(&["--db-name", "x; DROP"]).validate().is_err());
    }
}
