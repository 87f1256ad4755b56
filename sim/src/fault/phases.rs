//! The phases of a fault run once its world is up: faults on a schedule while
//! volunteers work, then the drain, and the report; all output stamped with
//! the time.

use crate::fault::FaultArgs;
use crate::fault::crowd::Crowd;
use crate::fault::fleet::Fleet;
use crate::fault::invariants::{self, Snapshot};
use crate::fault::report::{FaultReport, Settings};
use crate::fault::schedule::{self, FaultRecord, Schedule};
use anyhow::Context;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior, interval, interval_at, sleep, sleep_until};

/// Seconds between progress lines.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How often stopped processes are looked for (and started again).
const SUPERVISE_EVERY: Duration = Duration::from_millis(500);
/// How often the drain looks at the open tasks.
const DRAIN_POLL: Duration = Duration::from_secs(1);

/// Stamps output lines with the wall clock (UTC) and the seconds since the run began.
pub struct Clock {
    started: Instant,
    started_wall: chrono::DateTime<chrono::Utc>,
}

impl Clock {
    /// A clock started now.
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
            started_wall: chrono::Utc::now(),
        }
    }

    /// Seconds since the run began.
    pub fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Prints `what` stamped with the present moment.
    pub fn say(&self, what: impl Display) {
        self.say_at(self.secs(), what);
    }

    /// Prints `what` stamped with the moment `secs` into the run.
    pub fn say_at(&self, secs: f64, what: impl Display) {
        let offset = chrono::Duration::milliseconds((secs * 1000.0) as i64);
        let wall = (self.started_wall + offset).format("%H:%M:%S");
        println!("[{wall} +{secs:>6.1}s] {what}");
    }
}

/// What the run shares between its phases.
pub struct Run<'a> {
    /// The command line.
    pub args: &'a FaultArgs,
    /// Stamps the output.
    pub clock: Clock,
    /// The run's database.
    pub pool: PgPool,
    /// The volunteers' shared state and record.
    pub crowd: Arc<Crowd>,
    /// Listings published so far.
    pub published: Arc<AtomicUsize>,
    /// Processes that stopped by themselves and were started again.
    pub unplanned: Vec<String>,
}

impl Run<'_> {
    /// Injects a fault every interval until the window ends, starting again any
    /// process that stopped by itself meanwhile; returns the faults.
    pub async fn inject_faults(&mut self, fleet: &mut Fleet) -> anyhow::Result<Vec<FaultRecord>> {
        let args = self.args;
        let deadline = Instant::now() + args.duration();
        let every = args.fault_every();
        let mut next_fault = interval_at(Instant::now() + every, every);
        // A slow fault (a restart, rabbitmqctl) delays the next one rather than bunching them.
        next_fault.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut supervise = interval(SUPERVISE_EVERY);
        let mut progress = interval_at(Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        let mut schedule = Schedule::new(args.kinds(), fleet.apis.len(), fleet.coordinators.len());
        let mut faults = Vec::new();
        loop {
            tokio::select! {
                () = sleep_until(deadline) => return Ok(faults),
                _ = next_fault.tick() => {
                    if Instant::now() >= deadline {
                        return Ok(faults);
                    }
                    let Some(fault) = schedule.next_fault() else { continue };
                    let at_secs = self.clock.secs();
                    let (target, result) = schedule::inject(fault, fleet, &args.namespace).await;
                    let (injected, outcome) = match result {
                        Ok(outcome) => (true, outcome),
                        Err(e) => (false, format!("FAILED: {e:#}")),
                    };
                    let n = faults.len() + 1;
                    self.clock.say_at(at_secs, format!("fault {n} {} {target}: {outcome}", fault.kind.as_str()));
                    faults.push(FaultRecord { at_secs, kind: fault.kind.as_str(), target, outcome, injected });
                }
                _ = supervise.tick() => self.revive(fleet).await?,
                _ = progress.tick() => self.progress().await,
            }
        }
    }

    /// Starts again the processes that stopped by themselves, saying so.
    async fn revive(&mut self, fleet: &mut Fleet) -> anyhow::Result<()> {
        for line in fleet.revive_exited().await? {
            self.clock.say(&line);
            self.unplanned.push(line);
        }
        Ok(())
    }

    /// Lets volunteers work until every listing is a closed task or the bound passes.
    pub async fn drain(&mut self, fleet: &mut Fleet, published: usize) -> anyhow::Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(self.args.drain_secs);
        let mut last_progress = Instant::now();
        loop {
            let snap = Snapshot::read(&self.pool)
                .await
                .context("reading the open tasks")?;
            let all_in = snap.listings >= published as i64 && snap.tasks >= published as i64;
            if all_in && snap.open == 0 {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                self.progress().await;
            }
            self.revive(fleet).await?;
            sleep(DRAIN_POLL).await;
        }
    }

    /// Prints one line of progress: the database's figures and the simulator's.
    pub async fn progress(&self) {
        let (claims, _, _, votes) = self.crowd.ledger.counts();
        let (_, empty, _, errors) = self.crowd.rec.counts();
        let published = self.published.load(Ordering::Relaxed);
        let db = match Snapshot::read(&self.pool).await {
            Ok(s) => format!(
                "listings {} | tasks {} (open {}, decided {}, escalated {}) | votes {}",
                s.listings, s.tasks, s.open, s.decided, s.escalated, s.votes
            ),
            Err(e) => format!("database unreadable: {e}"),
        };
        self.clock.say(format!(
            "published {published} | {db} || sim: claims {claims}, empty {empty}, votes {votes}, errors {errors}"
        ));
    }

    #[allow(clippy::too_many_arguments)]
    pub fn report(
        &self,
        faults: Vec<FaultRecord>,
        published: usize,
        load: crate::stats::Report,
        drain_secs: f64,
        drained: bool,
        database: Snapshot,
        dead_lettered: BTreeMap<String, u32>,
        findings: invariants::Findings,
    ) -> FaultReport {
        let args = self.args;
        let mut faults_by_kind = BTreeMap::new();
        for f in faults.iter().filter(|f| f.injected) {
            *faults_by_kind.entry(f.kind.to_owned()).or_insert(0) += 1;
        }
        let (claims_granted, tasks_claimed, _, votes_acknowledged) = self.crowd.ledger.counts();
        let (claims_abandoned, claims_released) = self.crowd.ledger.drops();
        let (stolen_token_probes, expired_token_probes) = self.crowd.ledger.probes();
        let violations = findings.violations();
        FaultReport {
            settings: Settings {
                duration_secs: args.duration_secs,
                fault_every_secs: args.fault_every_secs,
                faults: args.kinds().iter().map(|k| k.as_str()).collect(),
                apis: args.apis,
                front: args.front.as_str(),
                coordinators: args.coordinators,
                volunteers: args.volunteers,
                listings: args.listings,
                feed_waves: args.waves(),
                abandon_percent: args.abandon_percent,
                release_percent: args.release_percent,
                late_percent: args.late_percent,
                lease_ttl_secs: args.lease_ttl_secs,
                min_votes: args.min_votes,
                seed: args.seed,
            },
            faults_injected: faults.iter().filter(|f| f.injected).count(),
            faults_failed: faults.iter().filter(|f| !f.injected).count(),
            faults,
            faults_by_kind,
            unplanned_restarts: self.unplanned.clone(),
            balancer_connections: Vec::new(),
            listings_published: published,
            claims_granted,
            claims_abandoned,
            claims_released,
            tasks_claimed,
            votes_acknowledged,
            errors: load.errors.clone(),
            stolen_token_probes,
            expired_token_probes,
            load,
            drain_secs,
            drained,
            database,
            dead_lettered,
            tasks_lost: findings.tasks_lost(),
            votes_double_counted: findings.votes_double_counted(),
            ok: violations.is_empty(),
            violations,
            findings,
        }
    }
}
