//! The coordinator's configuration: flags or `SPOTCHECK_*` environment variables, read once.

use clap::{Parser, Subcommand};
use spotcheck_platform::config::ServiceConfig;
use spotcheck_shared::agreement::AgreementParams;
use spotcheck_shared::decision::LEARNED_STOPPING_RULE;
use spotcheck_shared::difficulty::DifficultyRule;
use std::path::PathBuf;
use std::time::Duration;

/// Command line of the coordinator binary.
#[derive(Debug, Parser)]
#[command(name = "coordinator", version, about = "Spotcheck coordinator")]
pub struct Cli {
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Configuration.
    #[command(flatten)]
    pub config: Config,
}

/// The coordinator's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator (the default).
    Run,
    /// Apply pending migrations and exit.
    Migrate,
    /// Load a JSONL file of listings, one listing object a line.
    Import {
        /// The JSONL file.
        file: PathBuf,
    },
    /// Export votes or decisions of a time range for analysts (CSV or JSON lines).
    Export(crate::export::ExportArgs),
}

/// Typed configuration of one coordinator process.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Service addresses and names.
    #[command(flatten)]
    pub services: ServiceConfig,
    /// Secret key of the sampling hash; every replica must share it.
    #[arg(
        long,
        env = "SPOTCHECK_SAMPLING_KEY",
        default_value = "development-sampling-key",
        hide_env_values = true
    )]
    pub sampling_key: String,
    /// A file holding the sampling key (instead of `SPOTCHECK_SAMPLING_KEY`).
    #[arg(long, env = "SPOTCHECK_SAMPLING_KEY_FILE")]
    pub sampling_key_file: Option<PathBuf>,
    /// Votes each task asks for at first; in adaptive mode also the fewest
    /// counting votes a decision needs (audit tasks take at least
    /// `SPOTCHECK_AUDIT_VOTES`). Majority mode decides on exactly this many.
    #[arg(long, env = "SPOTCHECK_MIN_VOTES", default_value_t = LEARNED_STOPPING_RULE.min_votes as i32)]
    pub min_votes: i32,
    /// `adaptive` (reliability-weighted posterior and stopping rule) or
    /// `majority` (a fixed strict majority of `SPOTCHECK_MIN_VOTES`).
    #[arg(long, env = "SPOTCHECK_AGGREGATION", default_value = "adaptive", value_parser = ["adaptive", "majority"])]
    pub aggregation: String,
    /// Most counting votes before a task is escalated as uncertain.
    #[arg(long, env = "SPOTCHECK_MAX_VOTES", default_value_t = LEARNED_STOPPING_RULE.max_votes)]
    pub max_votes: u32,
    /// Most vote slots a task may ask for, counting or not (at most 50).
    #[arg(long, env = "SPOTCHECK_MAX_SLOTS", default_value_t = 12)]
    pub max_slots: i32,
    /// Posterior at or above which a listing is decided counterfeit (escalated).
    #[arg(long, env = "SPOTCHECK_COUNTERFEIT_AT", default_value_t = LEARNED_STOPPING_RULE.counterfeit_at)]
    pub counterfeit_at: f64,
    /// Posterior at or below which a listing is decided genuine.
    #[arg(long, env = "SPOTCHECK_GENUINE_AT", default_value_t = LEARNED_STOPPING_RULE.genuine_at)]
    pub genuine_at: f64,
    /// `counterfeit_at` for risky listings (a risky seller tier or a high price).
    #[arg(long, env = "SPOTCHECK_RISKY_COUNTERFEIT_AT", default_value_t = 0.7)]
    pub risky_counterfeit_at: f64,
    /// Seller risk tiers whose listings are escalated at the lower threshold.
    #[arg(
        long,
        env = "SPOTCHECK_RISKY_TIERS",
        default_value = "high",
        value_delimiter = ','
    )]
    pub risky_tiers: Vec<String>,
    /// Prices at or above this are escalated at the lower threshold.
    #[arg(long, env = "SPOTCHECK_HIGH_PRICE", default_value_t = 500.0)]
    pub high_price: f64,
    /// How far disagreement among careful voters discounts a task's evidence:
    /// it is divided by 1 + this x the task's difficulty (0 ignores
    /// difficulty). Adaptive mode only.
    #[arg(long, env = "SPOTCHECK_DIFFICULTY_DISCOUNT", default_value_t = DifficultyRule::LEARNED.discount)]
    pub difficulty_discount: f64,
    /// Share of tasks that are audit tasks (a keyed draw): they take at least
    /// `SPOTCHECK_AUDIT_VOTES` counting votes, and their first ones teach
    /// their voters' estimates by agreement with the decision (0 turns
    /// learning from agreement off). Adaptive mode only.
    #[arg(long, env = "SPOTCHECK_AUDIT_SHARE", default_value_t = AgreementParams::default().audit_share)]
    pub audit_share: f64,
    /// Counting votes an audit task takes at least, and how many of them teach.
    #[arg(long, env = "SPOTCHECK_AUDIT_VOTES", default_value_t = AgreementParams::default().audit_votes)]
    pub audit_votes: u32,
    /// Prior probability that a sampled listing is counterfeit.
    #[arg(long, env = "SPOTCHECK_PRIOR_COUNTERFEIT", default_value_t = 0.1)]
    pub prior_counterfeit: f64,
    /// Votes cast faster than this many seconds after the claim count as implausibly
    /// fast (0 turns the speed rule off).
    #[arg(long, env = "SPOTCHECK_FAST_VOTE_SECS", default_value_t = 3.0)]
    pub fast_vote_secs: f64,
    /// Share of a volunteer's recent votes (at least 20) that may be fast before
    /// they stop counting.
    #[arg(long, env = "SPOTCHECK_FAST_VOTE_SHARE", default_value_t = 0.5)]
    pub fast_vote_share: f64,
    /// Pause between Dawid-Skene recalibrations, in seconds (0 turns them off).
    #[arg(long, env = "SPOTCHECK_RECALIBRATE_SECS", default_value_t = 3_600)]
    pub recalibrate_secs: u64,
    /// Days of votes a recalibration looks at.
    #[arg(long, env = "SPOTCHECK_RECALIBRATE_DAYS", default_value_t = 30)]
    pub recalibrate_days: u32,
    /// Length of a surveillance round in seconds (a day by default).
    #[arg(long, env = "SPOTCHECK_ROUND_SECS", default_value_t = 86_400)]
    pub round_secs: i64,
    /// How often the sampling policy is re-read, in milliseconds.
    #[arg(long, env = "SPOTCHECK_POLICY_REFRESH_MS", default_value_t = 2_000)]
    pub policy_refresh_ms: u64,
    /// Pause between round sweeps once nothing is due, in milliseconds.
    #[arg(long, env = "SPOTCHECK_ROUND_SWEEP_MS", default_value_t = 10_000)]
    pub round_sweep_ms: u64,
    /// Listings per round-sweep transaction.
    #[arg(long, env = "SPOTCHECK_ROUND_SWEEP_BATCH", default_value_t = 500)]
    pub round_sweep_batch: i64,
    /// Backlog, in hours of volunteer work at the recent pace, above which new
    /// tasks from the lowest-risk strata are throttled.
    #[arg(long, env = "SPOTCHECK_MAX_BACKLOG_HOURS", default_value_t = 48.0)]
    pub max_backlog_hours: f64,
    /// Seller risk tiers throttled first to last, comma-separated.
    #[arg(
        long,
        env = "SPOTCHECK_THROTTLE_TIERS",
        default_value = "low,standard",
        value_delimiter = ','
    )]
    pub throttle_tiers: Vec<String>,
    /// The smallest factor throttling multiplies a probability by.
    #[arg(long, env = "SPOTCHECK_THROTTLE_MIN_FACTOR", default_value_t = 0.1)]
    pub throttle_min_factor: f64,
    /// Window over which the volunteers' pace is measured, in seconds.
    #[arg(long, env = "SPOTCHECK_CAPACITY_WINDOW_SECS", default_value_t = 3_600)]
    pub capacity_window_secs: u64,
    /// Votes the window must hold before the pace counts as measured.
    #[arg(long, env = "SPOTCHECK_CAPACITY_MIN_VOTES", default_value_t = 20)]
    pub capacity_min_votes: u64,
    /// Pause between capacity measurements, in milliseconds.
    #[arg(long, env = "SPOTCHECK_CAPACITY_INTERVAL_MS", default_value_t = 5_000)]
    pub capacity_interval_ms: u64,
    /// Outbox rows the relay publishes per batch.
    #[arg(long, env = "SPOTCHECK_RELAY_BATCH", default_value_t = 500)]
    pub relay_batch: i64,
    /// Longest pause of the relay between polls, in milliseconds (NOTIFY wakes it sooner).
    #[arg(long, env = "SPOTCHECK_RELAY_POLL_MS", default_value_t = 500)]
    pub relay_poll_ms: u64,
    /// Pause between reaper sweeps of expired leases, in milliseconds.
    #[arg(long, env = "SPOTCHECK_REAPER_INTERVAL_MS", default_value_t = 250)]
    pub reaper_interval_ms: u64,
    /// Pause between sweeps of refutation deadlines, in milliseconds.
    #[arg(long, env = "SPOTCHECK_DEADLINE_SWEEP_MS", default_value_t = 1000)]
    pub deadline_sweep_ms: u64,
    /// Unacked deliveries per consumer.
    #[arg(long, env = "SPOTCHECK_PREFETCH", default_value_t = 1000)]
    pub prefetch: u16,
    /// Deliveries a consumer handles in one transaction at most (feed and votes).
    #[arg(long, env = "SPOTCHECK_CONSUMER_BATCH", default_value_t = 500)]
    pub consumer_batch: usize,
    /// How long a consumer's batch waits, from its first delivery, for more
    /// to arrive, in milliseconds (feed and votes): fewer, larger transactions.
    #[arg(long, env = "SPOTCHECK_CONSUMER_LINGER_MS", default_value_t = 50)]
    pub consumer_linger_ms: u64,
    /// Pause between audits for vote slots nothing covers, in milliseconds.
    #[arg(long, env = "SPOTCHECK_AUDIT_INTERVAL_MS", default_value_t = 10_000)]
    pub audit_interval_ms: u64,
    /// How long past a lease TTL a shortfall must last before the audit offers
    /// its slots again, in milliseconds.
    #[arg(long, env = "SPOTCHECK_AUDIT_GRACE_MS", default_value_t = 10_000)]
    pub audit_grace_ms: u64,
    /// Open tasks one lost-slot audit reads at most; more take several runs.
    #[arg(long, env = "SPOTCHECK_AUDIT_TASKS_PER_RUN", default_value_t = 10_000)]
    pub audit_tasks_per_run: i64,
    /// Pause between sweeps for votes a worker-api counted but never
    /// announced to the aggregator, in milliseconds.
    #[arg(long, env = "SPOTCHECK_VOTE_SWEEP_MS", default_value_t = 10_000)]
    pub vote_sweep_ms: u64,
    /// How old an unaccounted vote must be before the sweep announces it
    /// again, in milliseconds: a worker-api announces within a moment of its
    /// commit, and the aggregator's queue may hold a backlog.
    #[arg(
        long,
        env = "SPOTCHECK_VOTE_ANNOUNCE_GRACE_MS",
        default_value_t = 60_000
    )]
    pub vote_announce_grace_ms: u64,
    /// Listings per ingest transaction during `import`.
    #[arg(long, env = "SPOTCHECK_IMPORT_BATCH", default_value_t = 200)]
    pub import_batch: usize,
    /// Seconds allowed for a graceful shutdown.
    #[arg(long, env = "SPOTCHECK_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Pause between partition upkeep runs (create ahead, retention), in seconds.
    #[arg(
        long,
        env = "SPOTCHECK_PARTITION_INTERVAL_SECS",
        default_value_t = 3_600
    )]
    pub partition_interval_secs: u64,
    /// Months past the current one whose partitions are created ahead of time.
    #[arg(long, env = "SPOTCHECK_PARTITIONS_AHEAD_MONTHS", default_value_t = 2)]
    pub partitions_ahead_months: u32,
    /// Whole months of votes kept before the current one (0 keeps all).
    #[arg(long, env = "SPOTCHECK_RETAIN_VOTES_MONTHS", default_value_t = 24)]
    pub retain_votes_months: u32,
    /// Whole months of decisions kept before the current one (0 keeps all).
    #[arg(long, env = "SPOTCHECK_RETAIN_DECISIONS_MONTHS", default_value_t = 24)]
    pub retain_decisions_months: u32,
    /// Whole months of the audit log kept before the current one (0 keeps all).
    #[arg(long, env = "SPOTCHECK_RETAIN_AUDIT_MONTHS", default_value_t = 84)]
    pub retain_audit_months: u32,
    /// Where partitions past retention are archived (gzipped CSV) before they
    /// are dropped. Without it nothing is dropped.
    #[arg(long, env = "SPOTCHECK_ARCHIVE_DIR")]
    pub archive_dir: Option<std::path::PathBuf>,
    /// Address of the operator endpoints (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "SPOTCHECK_METRICS_ADDR", default_value = "127.0.0.1:9091")]
    pub metrics_addr: std::net::SocketAddr,
    /// `json` for JSON log lines, anything else for text.
    #[arg(long, env = "SPOTCHECK_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl Config {
    /// Whether logs are JSON lines.
    pub fn json_logs(&self) -> bool {
        self.log_format.eq_ignore_ascii_case("json")
    }

    /// Reads every secret given as a file and checks the configuration as a
    /// whole. [`crate::App::build`] calls it before it connects to anything, so
    /// a bad setting stops the process before any loop or consumer starts.
    pub fn prepare(&mut self) -> anyhow::Result<()> {
        self.services.read_secret_files()?;
        self.services.check_production()?;
        spotcheck_platform::secrets::take_file(
            "SPOTCHECK_SAMPLING_KEY",
            &mut self.sampling_key,
            &mut self.sampling_key_file,
        )?;
        self.aggregation()?;
        if !self.services.is_development() {
            spotcheck_platform::secrets::check(
                "SPOTCHECK_SAMPLING_KEY",
                &self.sampling_key,
                spotcheck_platform::secrets::MIN_KEY_CHARS,
            )?;
        }
        Ok(())
    }

    /// The configuration from defaults alone (tests adjust fields).
    pub fn defaults() -> Self {
        Cli::parse_from(["coordinator"]).config
    }

    /// How votes become decisions; refuses inconsistent thresholds.
    pub fn aggregation(&self) -> anyhow::Result<crate::aggregator::Aggregation> {
        use crate::aggregator::{Aggregation, Audit};
        use spotcheck_shared::decision::DecisionRule;
        use spotcheck_shared::posterior::{RiskThresholds, StoppingRule};
        let mut difficulty = DifficultyRule::NONE;
        let mut audit = None;
        let rule = if self.aggregation == "majority" {
            DecisionRule::Majority
        } else {
            let thresholds = RiskThresholds {
                base: StoppingRule {
                    min_votes: self.min_votes.max(1) as u32,
                    max_votes: self.max_votes,
                    counterfeit_at: self.counterfeit_at,
                    genuine_at: self.genuine_at,
                },
                risky_tiers: self.risky_tiers.clone(),
                high_price: self.high_price,
                risky_counterfeit_at: self.risky_counterfeit_at,
            };
            thresholds.validate()?;
            anyhow::ensure!(
                (self.min_votes..=50).contains(&self.max_slots),
                "SPOTCHECK_MAX_SLOTS must be between SPOTCHECK_MIN_VOTES and 50"
            );
            anyhow::ensure!(
                self.prior_counterfeit > 0.0 && self.prior_counterfeit < 1.0,
                "SPOTCHECK_PRIOR_COUNTERFEIT must be in (0, 1)"
            );
            anyhow::ensure!(
                self.difficulty_discount.is_finite() && self.difficulty_discount >= 0.0,
                "SPOTCHECK_DIFFICULTY_DISCOUNT must be a number >= 0"
            );
            anyhow::ensure!(
                (0.0..=1.0).contains(&self.audit_share),
                "SPOTCHECK_AUDIT_SHARE must be in [0, 1]"
            );
            anyhow::ensure!(
                (2..=self.max_slots.max(2) as u32).contains(&self.audit_votes),
                "SPOTCHECK_AUDIT_VOTES must be between 2 and SPOTCHECK_MAX_SLOTS"
            );
            difficulty = DifficultyRule {
                discount: self.difficulty_discount,
            };
            let max_slots = self.max_slots.max(1) as u32;
            if self.audit_share > 0.0 {
                let params = AgreementParams {
                    audit_share: self.audit_share,
                    audit_votes: self.audit_votes,
                    ..AgreementParams::default()
                };
                audit = Some(Audit {
                    params,
                    // The sampling key is the coordinator's secret: volunteers
                    // cannot tell which tasks teach.
                    key: self.sampling_key.as_bytes().to_vec(),
                    rule: DecisionRule::Adaptive {
                        prior: self.prior_counterfeit,
                        thresholds: params.audit_thresholds(&thresholds),
                        max_slots,
                    },
                    prior: self.prior_counterfeit,
                });
            }
            DecisionRule::Adaptive {
                prior: self.prior_counterfeit,
                thresholds,
                max_slots,
            }
        };
        let abuse = spotcheck_shared::abuse::AbusePolicy {
            fast_vote_secs: self.fast_vote_secs.max(0.0),
            fast_share: self.fast_vote_share,
            ..spotcheck_shared::abuse::AbusePolicy::learned()
        };
        abuse
            .validate()
            .map_err(|_| anyhow::anyhow!("SPOTCHECK_FAST_VOTE_SHARE must be in (0, 1]"))?;
        Ok(Aggregation {
            rule,
            difficulty,
            audit,
            learning: spotcheck_platform::reliability::Learning {
                abuse,
                ..Default::default()
            },
        })
    }

    /// How partitions are kept: created ahead, archived and dropped.
    pub fn partition_upkeep(&self) -> anyhow::Result<crate::retention::Upkeep> {
        let retention = spotcheck_shared::partitions::Retention {
            votes_months: self.retain_votes_months,
            decisions_months: self.retain_decisions_months,
            audit_months: self.retain_audit_months,
        };
        // Recalibration reads its window of votes from the live table: retention
        // must not take them away first.
        let window_months = self.recalibrate_days.div_ceil(28);
        for (name, kept) in [
            ("SPOTCHECK_RETAIN_VOTES_MONTHS", retention.votes_months),
            (
                "SPOTCHECK_RETAIN_DECISIONS_MONTHS",
                retention.decisions_months,
            ),
        ] {
            anyhow::ensure!(
                kept == 0 || kept >= window_months,
                "{name}={kept} keeps less than SPOTCHECK_RECALIBRATE_DAYS={} of votes",
                self.recalibrate_days
            );
        }
        Ok(crate::retention::Upkeep {
            every: Duration::from_secs(self.partition_interval_secs.max(1)),
            ahead: self.partitions_ahead_months,
            retention,
            archive_dir: self.archive_dir.clone(),
        })
    }

    /// How the lost-slot audit runs.
    pub fn audit(&self) -> crate::audit::AuditConfig {
        crate::audit::AuditConfig {
            interval: Duration::from_millis(self.audit_interval_ms.max(10)),
            patience: Duration::from_secs(self.services.lease_ttl_secs)
                + Duration::from_millis(self.audit_grace_ms),
            replica: format!("coordinator-{}", uuid::Uuid::new_v4().simple()),
            tasks_per_run: self.audit_tasks_per_run.max(1),
        }
    }

    /// The capacity limits.
    pub fn capacity_policy(&self) -> spotcheck_shared::capacity::CapacityPolicy {
        spotcheck_shared::capacity::CapacityPolicy {
            max_backlog_hours: self.max_backlog_hours,
            throttle_tiers: self
                .throttle_tiers
                .iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            min_factor: self.throttle_min_factor.clamp(0.0, 1.0),
            min_window_votes: self.capacity_min_votes,
        }
    }

    /// The relay's longest pause.
    pub fn relay_poll(&self) -> Duration {
        Duration::from_millis(self.relay_poll_ms)
    }
}
