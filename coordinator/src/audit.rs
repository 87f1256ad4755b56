//! The lost-slot audit: finds open review tasks whose needed votes are covered
//! by nothing (no live or expiring lease, no offer queued or buffered, no
//! offer waiting in the outbox, no vote) and offers those slots again.
//!
//! Redis may lose some writes without losing everything (a failover that drops
//! the last writes): a lease entry can vanish while the sentinel stays, and
//! then neither the reaper nor the reconciler would ever see that slot. The
//! audit needs no sentinel: it compares what PostgreSQL says a task still needs
//! with what covers it ([`LeaseStore::coverage`], the outbox), and re-offers a
//! shortfall once it has lasted longer than a lease TTL plus a grace period, so
//! a lease in flight or an offer between publish and count is never mistaken
//! for a lost one. One replica audits at a time (a lock it renews).
//!
//! A run reads at most [`AuditConfig::tasks_per_run`] open tasks, from where
//! the last run stopped, so its cost stays flat however much work is open; a
//! full pass over the open tasks takes several runs when there are more.

use spotcheck_platform::lease::LeaseStore;
use spotcheck_platform::outbox;
use spotcheck_shared::TaskId;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Open tasks read per page (at most; a smaller run reads a smaller page).
const PAGE: i64 = 1000;

/// How the audit runs.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Pause between audits.
    pub interval: Duration,
    /// How long a shortfall must last before its slots are offered again
    /// (a lease TTL plus a grace period).
    pub patience: Duration,
    /// This replica's name for the audit lock.
    pub replica: String,
    /// Open tasks one run reads at most (rounded up to whole pages).
    pub tasks_per_run: i64,
}

/// Shortfalls seen and since when, and where the next run starts, kept
/// between audits.
#[derive(Debug, Default)]
pub struct Suspects {
    since: HashMap<TaskId, Instant>,
    /// The last task id the previous run read; nil starts a new pass.
    cursor: Uuid,
}

impl Suspects {
    /// Tasks currently short of cover.
    pub fn len(&self) -> usize {
        self.since.len()
    }

    /// Whether no task is short of cover.
    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }
}

/// What one audit did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Audited {
    /// Open tasks read.
    pub read: u64,
    /// Vote slots offered again.
    pub offered: u64,
}

/// One audit of the next slice of open tasks.
pub async fn audit_once(
    pool: &PgPool,
    leases: &LeaseStore,
    config: &AuditConfig,
    suspects: &mut Suspects,
) -> anyhow::Result<Audited> {
    let hold = config
        .interval
        .saturating_mul(3)
        .max(Duration::from_secs(1));
    if !leases.hold_lock("audit", &config.replica, hold).await? {
        suspects.since.clear();
        suspects.cursor = Uuid::nil();
        return Ok(Audited::default());
    }
    // After a total loss the reconciler re-offers everything; the audit waits.
    if !leases.sentinel_present().await? {
        return Ok(Audited::default());
    }
    let pending: HashMap<Uuid, i64> = sqlx::query_as::<_, (Uuid, i64)>(
        "SELECT (payload->>'task_id')::uuid, sum(copies)::bigint FROM outbox
         WHERE topic = 'tasks' GROUP BY 1",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let now = Instant::now();
    let mut short_now: HashMap<TaskId, i64> = HashMap::new();
    let start = suspects.cursor;
    let mut after = start;
    let page_size = PAGE.min(config.tasks_per_run.max(1));
    let mut read = 0i64;
    // The end of the slice this run read: `None` when it reached the last task.
    let end = loop {
        let page: Vec<(Uuid, i32, i32)> = sqlx::query_as(
            "SELECT id, votes_required, votes_counted FROM tasks
             WHERE state = 'open' AND kind = 'review' AND id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(page_size)
        .fetch_all(pool)
        .await?;
        let ids: Vec<TaskId> = page.iter().map(|r| TaskId(r.0)).collect();
        let cover = leases.coverage(&ids).await?;
        for ((id, required, counted), c) in page.iter().zip(cover) {
            let votes = i64::from(*counted).max(c.voters);
            let queued = pending.get(id).copied().unwrap_or(0);
            let short = i64::from(*required) - votes - c.leases - c.offers - queued;
            if short > 0 {
                short_now.insert(TaskId(*id), short);
            }
        }
        read += page.len() as i64;
        match page.last() {
            Some(last) if page.len() as i64 == page_size => {
                after = last.0;
                if read >= config.tasks_per_run {
                    break Some(after);
                }
            }
            _ => break None,
        }
    };
    suspects.cursor = end.unwrap_or(Uuid::nil());
    // Suspects this run looked at and found covered are cleared; the others
    // wait for their own slice.
    let looked_at = |task: &TaskId| task.0 > start && end.is_none_or(|end| task.0 <= end);
    suspects
        .since
        .retain(|task, _| !looked_at(task) || short_now.contains_key(task));
    let mut reoffer: Vec<TaskId> = Vec::new();
    for (task, short) in &short_now {
        let since = *suspects.since.entry(*task).or_insert(now);
        if now.duration_since(since) >= config.patience {
            reoffer.extend(std::iter::repeat_n(*task, *short as usize));
            suspects.since.remove(task);
        }
    }
    metrics::gauge!("spotcheck_audit_short_tasks").set(suspects.len() as f64);
    let read = read as u64;
    if reoffer.is_empty() {
        return Ok(Audited { read, offered: 0 });
    }
    let mut conn = pool.acquire().await?;
    let offered = outbox::offer_slots(&mut conn, &reoffer, 1).await?;
    metrics::counter!("spotcheck_lost_slots_reoffered_total").increment(offered);
    tracing::warn!(
        slots = offered,
        "offered again vote slots that nothing covered (lost lease or offer)"
    );
    Ok(Audited { read, offered })
}

/// Audits every interval until cancelled.
pub async fn run(
    pool: PgPool,
    leases: LeaseStore,
    config: AuditConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut suspects = Suspects::default();
    let mut failures = 0u32;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(config.interval) => {}
        }
        let started = std::time::Instant::now();
        let audited = audit_once(&pool, &leases, &config, &mut suspects).await;
        if audited.is_ok() {
            crate::ops::job_ran("lease_audit", started);
        }
        match audited {
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "lost-slot audit failed; will retry");
                if failures >= 60 {
                    return Err(e.context("lost-slot audit failed 60 times in a row"));
                }
            }
        }
    }
}
