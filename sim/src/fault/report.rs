//! What a fault run prints at the end and writes with `--json-report`: the
//! faults injected, what the simulator did and saw, and the invariants.

use crate::fault::invariants::{Findings, Snapshot};
use crate::fault::ledger::Probes;
use crate::fault::schedule::FaultRecord;
use crate::stats::Report;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The run's settings, as the report states them.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Length of the fault window in seconds.
    pub duration_secs: u64,
    /// Seconds between faults.
    pub fault_every_secs: u64,
    /// The kinds cycled through.
    pub faults: Vec<&'static str>,
    /// worker-api replicas.
    pub apis: u16,
    /// How volunteers reached them (`balancer` or `round-robin`).
    pub front: &'static str,
    /// Coordinator replicas.
    pub coordinators: u16,
    /// Simulated volunteers.
    pub volunteers: usize,
    /// Listings published.
    pub listings: usize,
    /// Waves they were published in.
    pub feed_waves: usize,
    /// Percent of claims walked away from.
    pub abandon_percent: u32,
    /// Percent of claims released.
    pub release_percent: u32,
    /// Percent of claims voted on after their lease expired.
    pub late_percent: u32,
    /// Lease lifetime in seconds.
    pub lease_ttl_secs: u64,
    /// Votes per task.
    pub min_votes: u32,
    /// Seed of the marketplace and answers.
    pub seed: u64,
}

/// Everything a fault run found.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    /// How the run was set up.
    pub settings: Settings,
    /// Every fault, in order.
    pub faults: Vec<FaultRecord>,
    /// Faults injected as planned.
    pub faults_injected: usize,
    /// Of those, by kind.
    pub faults_by_kind: BTreeMap<String, usize>,
    /// Faults that could not be injected (their `outcome` says why).
    pub faults_failed: usize,
    /// Processes that stopped without being killed and were started again.
    pub unplanned_restarts: Vec<String>,
    /// Connections the balancer gave each worker-api replica (empty without one).
    pub balancer_connections: Vec<u64>,
    /// Listings published to the feed.
    pub listings_published: usize,
    /// Claims granted to the simulator.
    pub claims_granted: u64,
    /// Of those, walked away from (left to expire).
    pub claims_abandoned: u64,
    /// Of those, released.
    pub claims_released: u64,
    /// Distinct tasks among them.
    pub tasks_claimed: usize,
    /// Distinct votes acknowledged with `201`.
    pub votes_acknowledged: usize,
    /// Failed calls by `<call> <status> <code>` (`transport` when no answer came).
    pub errors: BTreeMap<String, u64>,
    /// I4 probes: votes with another volunteer's live lease token.
    pub stolen_token_probes: Probes,
    /// I4 probes: votes with the caller's own token after its lease expired.
    pub expired_token_probes: Probes,
    /// Load figures of the volunteers.
    pub load: Report,
    /// Seconds the drain took.
    pub drain_secs: f64,
    /// Whether every task was closed before the drain's bound.
    pub drained: bool,
    /// The database after the drain.
    pub database: Snapshot,
    /// Messages in the namespace's dead-letter queues.
    pub dead_lettered: BTreeMap<String, u32>,
    /// The invariant figures.
    pub findings: Findings,
    /// I1: tasks lost.
    pub tasks_lost: i64,
    /// I2/I3: votes double-counted.
    pub votes_double_counted: i64,
    /// One line per broken invariant.
    pub violations: Vec<String>,
    /// Whether every invariant held.
    pub ok: bool,
}

impl FaultReport {
    /// The last line: `fault run: OK` or `fault run: VIOLATED ...`.
    pub fn verdict(&self) -> String {
        if self.ok {
            "fault run: OK".to_owned()
        } else {
            format!("fault run: VIOLATED {}", self.violations.join("; "))
        }
    }
}

fn join_counts<V: fmt::Display>(map: &BTreeMap<String, V>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        let (db, x) = (&self.database, &self.findings);
        writeln!(
            f,
            "faults: {} injected over {} s ({}); {} failed to inject; unplanned restarts {}",
            self.faults_injected,
            s.duration_secs,
            join_counts(&self.faults_by_kind),
            self.faults_failed,
            self.unplanned_restarts.len()
        )?;
        for line in &self.unplanned_restarts {
            writeln!(f, "  {line}")?;
        }
        writeln!(
            f,
            "simulator: {} listings published, {} claims granted on {} tasks ({} abandoned, {} released), {} votes acknowledged",
            self.listings_published,
            self.claims_granted,
            self.tasks_claimed,
            self.claims_abandoned,
            self.claims_released,
            self.votes_acknowledged
        )?;
        writeln!(f, "  errors: {}", join_counts(&self.errors))?;
        writeln!(
            f,
            "  {} worker-api and {} coordinators; volunteers through {}{}",
            s.apis,
            s.coordinators,
            s.front,
            if self.balancer_connections.is_empty() {
                String::new()
            } else {
                format!(
                    " (connections per worker-api: {:?})",
                    self.balancer_connections
                )
            }
        )?;
        writeln!(
            f,
            "database: {} listings, {} tasks (open {}, decided {}, escalated {}), {} votes, {} decisions, {} escalations, outbox unsent {}",
            db.listings,
            db.tasks,
            db.open,
            db.decided,
            db.escalated,
            db.votes,
            db.decisions,
            db.escalations,
            db.outbox_unsent
        )?;
        writeln!(f, "  dead-lettered: {}", join_counts(&self.dead_lettered))?;
        writeln!(
            f,
            "I1 no loss:         tasks lost {} (claimed but missing {}, closed without a decision {}, listings not ingested {}, listings without a task {})",
            self.tasks_lost,
            x.claimed_tasks_missing,
            x.closed_without_decision,
            x.listings_missing,
            x.listings_without_task
        )?;
        writeln!(
            f,
            "I2 no double count: votes double-counted {} (votes_counted differs {}, acknowledged but missing {}, acknowledged but misfiled {}, pairs acknowledged twice {}); over-collected votes {}",
            self.votes_double_counted,
            x.counted_mismatch,
            x.acknowledged_votes_missing,
            x.acknowledged_votes_misfiled,
            x.pairs_acknowledged_twice,
            x.over_collected_votes
        )?;
        writeln!(
            f,
            "I3 distinct:        duplicate (task, volunteer) votes {}",
            x.duplicate_pairs
        )?;
        let (stolen, late) = (&self.stolen_token_probes, &self.expired_token_probes);
        writeln!(
            f,
            "I4 fenced:          votes with another volunteer's token {} (accepted {}, refused: {}); after expiry {} (accepted {}, refused: {})",
            stolen.sent,
            stolen.accepted.len(),
            join_counts(&stolen.refused),
            late.sent,
            late.accepted.len(),
            join_counts(&late.refused)
        )?;
        writeln!(
            f,
            "I5 single effect:   duplicate escalations {}, decisions beyond one per task {}",
            x.duplicate_escalations, x.extra_decisions
        )?;
        writeln!(
            f,
            "I6 liveness:        tasks not decided after the drain {} (drain {:.1} s{})",
            x.tasks_not_decided,
            self.drain_secs,
            if self.drained { "" } else { ", bound reached" }
        )?;
        write!(f, "{}", self.verdict())
    }
}
