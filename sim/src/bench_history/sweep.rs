//! The round sweep timed from the start of a round: every listing is made due,
//! the coordinator sweeps at a production-like sampling rate for at most
//! `--sweep-secs`, and the listings it covered a second tell how long ten
//! million would take beside a tenth of a round. What it has not reached by
//! then is marked swept, so the load window that follows sees the quiet time
//! between sweeps, as it would in production.

use super::args::BenchHistoryArgs;
use super::jobs::{self, JobFigures};
use crate::bench_cycle::{Bench, ROUND_SECS, rules};
use anyhow::Context;
use serde::Serialize;
use spotcheck_shared::sampling::round_of;
use sqlx::PgPool;
use std::time::Duration;
use tokio::time::Instant;

/// The listings the target is about.
pub const TARGET_LISTINGS: f64 = 10_000_000.0;
/// How often the benchmark looks whether the sweep is done.
const POLL: Duration = Duration::from_millis(500);

/// What the round sweep did while it was timed.
#[derive(Debug, Clone, Serialize)]
pub struct SweepFigures {
    /// Listings due when the timing started.
    pub listings_due: i64,
    /// Listings it covered.
    pub listings_swept: i64,
    /// How long it was timed.
    pub secs: f64,
    /// Whether it reached every due listing in that time.
    pub finished: bool,
    /// Listings covered a second of the sweep's own time (its batches').
    pub per_sec: Option<f64>,
    /// Listings covered a second of the wall clock while timed.
    pub wall_per_sec: f64,
    /// Seconds ten million listings would take at that rate.
    pub secs_for_target: Option<f64>,
    /// A tenth of a round, seconds: what [`SweepFigures::secs_for_target`] must stay under.
    pub tenth_of_round_secs: f64,
    /// Its batches (`spotcheck_job_seconds{job="round_sweep"}`) while timed.
    pub batches: JobFigures,
    /// Listings left due and marked swept afterwards.
    pub marked_swept: u64,
}

/// Times the round sweep over every listing of the database (see the module doc);
/// the sampling rate is back at 1 when it returns.
pub async fn measure(
    bench: &mut Bench<'_>,
    args: &BenchHistoryArgs,
) -> anyhow::Result<SweepFigures> {
    let metrics = bench.stack.coordinator_metrics();
    let api = bench.stack.api_urls()[0].clone();
    let staff = bench.users.staff.token.clone();
    let version =
        rules::set_sampling_rate(&bench.http, &api, &staff, args.sweep_sampling_rate).await?;
    if !rules::wait_in_force(&bench.http, &metrics, version).await? {
        bench.report.warn(format!(
            "sweep: sampling rate {} not in force in time",
            args.sweep_sampling_rate
        ));
    }
    let round = round_of(chrono::Utc::now().timestamp(), ROUND_SECS);
    mark_due(&bench.pool, round).await?;
    let watch = jobs::Watch::start(&bench.http, &metrics[0]).await;
    let started = Instant::now();
    let listings_due = due(&bench.pool, round).await?;
    let limit = Duration::from_secs(args.sweep_secs);
    let mut finished = false;
    while started.elapsed() < limit {
        if !any_due(&bench.pool, round).await? {
            finished = true;
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let left = if finished {
        0
    } else {
        due(&bench.pool, round).await?
    };
    let (batches, _) = watch.finish(&bench.http, &metrics[0]).await;
    let marked_swept = mark_swept(&bench.pool, round).await?;
    let version = rules::set_sampling_rate(&bench.http, &api, &staff, 1.0).await?;
    if !rules::wait_in_force(&bench.http, &metrics, version).await? {
        bench
            .report
            .warn("sweep: sampling rate 1 not in force in time after the sweep".into());
    }
    let listings_swept = listings_due - left;
    let batches = batches.get("round_sweep").copied().unwrap_or_default();
    // Batches follow one another without a pause while listings are due, so
    // their time is the sweep's; the wall clock adds up to one idle pause and
    // the benchmark's polling.
    let per_sec = (listings_swept > 0 && batches.total_secs > 0.0)
        .then(|| listings_swept as f64 / batches.total_secs);
    let figures = SweepFigures {
        listings_due,
        listings_swept,
        secs,
        finished,
        per_sec,
        wall_per_sec: listings_swept as f64 / secs,
        secs_for_target: per_sec.map(|r| TARGET_LISTINGS / r),
        tenth_of_round_secs: ROUND_SECS as f64 / 10.0,
        batches,
        marked_swept,
    };
    eprintln!(
        "bench-history: round sweep: {listings_swept} of {listings_due} listings in {secs:.1} s, {} batches taking {:.2} s ({:.0}/s); {marked_swept} marked swept",
        figures.batches.runs,
        figures.batches.total_secs,
        per_sec.unwrap_or(0.0)
    );
    Ok(figures)
}

/// Puts every listing swept in `round` back to the round before, so it is due.
async fn mark_due(pool: &PgPool, round: i64) -> anyhow::Result<u64> {
    let done =
        sqlx::query("UPDATE listings SET last_round = $1 - 1 WHERE active AND last_round >= $1")
            .bind(round)
            .execute(pool)
            .await
            .context("making every listing due")?;
    Ok(done.rows_affected())
}

/// Marks every listing still due as swept in `round`.
async fn mark_swept(pool: &PgPool, round: i64) -> anyhow::Result<u64> {
    let done = sqlx::query("UPDATE listings SET last_round = $1 WHERE active AND last_round < $1")
        .bind(round)
        .execute(pool)
        .await
        .context("marking the listings left due as swept")?;
    Ok(done.rows_affected())
}

async fn due(pool: &PgPool, round: i64) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM listings WHERE active AND last_round < $1")
        .bind(round)
        .fetch_one(pool)
        .await
        .context("counting the listings due")
}

async fn any_due(pool: &PgPool, round: i64) -> anyhow::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM listings WHERE active AND last_round < $1)")
        .bind(round)
        .fetch_one(pool)
        .await
        .context("looking for listings due")
}
