//! Tasks ready before a phase: when the tasks queue holds fewer slot offers
//! than a phase needs, fresh demo listings are imported through `coordinator
//! import`'s own function (every one sampled, its task and slot offers in the
//! outbox), and the running coordinators' relay puts the offers on the queue.

use super::Bench;
use crate::bench_sampler::scratch::{JsonlFile, Scratch};
use anyhow::Context;
use coordinator::import::import_file;
use indicatif::ProgressBar;
use sqlx::PgPool;
use std::time::Duration;
use tokio::time::Instant;

/// Listings per import transaction (the import is set-up, not measured).
const IMPORT_BATCH: usize = 1000;
/// How long the relay may take to publish what an import wrote.
const RELAY_DEADLINE: Duration = Duration::from_secs(120);
/// How long the services may take to finish the work earlier load left them.
const SETTLE_DEADLINE: Duration = Duration::from_secs(30);

/// Slot offers ready on the tasks queue.
pub async fn queue_depth(bench: &Bench<'_>) -> anyhow::Result<u64> {
    Scratch::depth(&bench.channel, &bench.names.tasks_queue()).await
}

/// Makes sure the tasks queue holds at least `needed` slot offers; returns how many it holds.
pub async fn ensure_slots(bench: &mut Bench<'_>, needed: u64) -> anyhow::Result<u64> {
    let depth = queue_depth(bench).await?;
    if depth >= needed {
        return Ok(depth);
    }
    let votes = u64::from(bench.args.votes.max(1));
    let count = usize::try_from((needed - depth).div_ceil(votes))?;
    let (tag, listings) = bench.next_market(count);
    let file = JsonlFile::write(&format!("{}-{tag}", bench.stack.id), &listings)?;
    let started = Instant::now();
    let summary = import_file(
        &bench.pool,
        &bench.sampler,
        file.path(),
        IMPORT_BATCH,
        chrono::Utc::now().timestamp(),
        &ProgressBar::hidden(),
    )
    .await
    .context("importing the pre-fill listings")?;
    let imported = started.elapsed();
    let relayed = wait_relayed(&bench.pool, RELAY_DEADLINE).await?;
    let depth = queue_depth(bench).await?;
    eprintln!(
        "bench-cycle: pre-fill: {} listings imported in {:.1} s ({} tasks); {} slot offers on the queue after {:.1} s",
        summary.ingest.stored,
        imported.as_secs_f64(),
        summary.ingest.tasks,
        depth,
        started.elapsed().as_secs_f64()
    );
    if !relayed {
        bench.report.warn(format!(
            "pre-fill: the relay had not published every offer after {RELAY_DEADLINE:?}; {depth} on the queue"
        ));
    }
    Ok(depth)
}

/// Waits until the services have caught up with earlier load (nothing unsent
/// in the outbox, no vote or listing waiting on its queue), so one measurement
/// does not pay for the last; warns when they have not within a deadline.
pub async fn settle(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + SETTLE_DEADLINE;
    let mut first = None;
    loop {
        let outbox = u64::try_from(unsent(&bench.pool).await?).unwrap_or(0);
        let votes = Scratch::depth(&bench.channel, &bench.names.votes_queue()).await?;
        let listings = Scratch::depth(&bench.channel, &bench.names.ingest_queue()).await?;
        let backlog =
            format!("{outbox} unsent outbox rows, {votes} votes and {listings} listings queued");
        let first = first.get_or_insert(backlog.clone());
        if outbox + votes + listings == 0 {
            if started.elapsed() > Duration::from_millis(500) {
                eprintln!(
                    "bench-cycle: waited {:.1} s for the services to work off {first}",
                    started.elapsed().as_secs_f64()
                );
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            bench.report.warn(format!(
                "still {backlog} {SETTLE_DEADLINE:?} after the last load (at first {first})"
            ));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Unsent outbox rows.
pub async fn unsent(pool: &PgPool) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        .fetch_one(pool)
        .await
        .context("counting unsent outbox rows")
}

/// Waits until the outbox has no unsent row, up to `limit`; returns whether it emptied.
pub async fn wait_relayed(pool: &PgPool, limit: Duration) -> anyhow::Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        if unsent(pool).await? == 0 {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
