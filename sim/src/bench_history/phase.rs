//! One measurement of the history benchmark, the same on the empty and on the
//! seeded database: the round sweep from the start of a round, then the
//! closed loop of claim and vote, the staff routes one after another, and the
//! coordinator's periodic jobs watched after them, on a quiet stack, until
//! every one of them has run (recalibration, daily in the benchmark's
//! coordinator, is run and timed here).

use super::args::BenchHistoryArgs;
use super::jobs::{self, JOBS, JobFigures};
use super::staff;
use super::sweep::{self, SweepFigures};
use crate::bench_cycle::Bench;
use crate::bench_cycle::load::{ClosedLoop, Work};
use crate::bench_cycle::phases::CLOSED_TARGET;
use crate::bench_cycle::prefill::{ensure_slots, settle};
use crate::bench_cycle::tally::{LoadFigures, Window};
use crate::stats::LatencySummary;
use anyhow::Context;
use serde::Serialize;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::Duration;

/// Recalibrations the coordinator recorded while the jobs were watched.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recalibrations {
    /// How many finished.
    pub runs: i64,
    /// Votes they read, together.
    pub votes: i64,
    /// Seconds they took by their own account, together.
    pub secs: f64,
    /// Votes read a second.
    pub votes_per_sec: Option<f64>,
}

/// How big the database was.
#[derive(Debug, Clone, Serialize)]
pub struct Size {
    /// Rows of `votes`.
    pub votes: i64,
    /// Rows of `listings`.
    pub listings: i64,
    /// Bytes on disk.
    pub bytes: i64,
}

/// Everything one measurement found.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseFigures {
    /// The database measured.
    pub size: Size,
    /// The round sweep from the start of a round.
    pub sweep: SweepFigures,
    /// The closed loop's window.
    pub load: LoadFigures,
    /// Each staff route's latency, by path.
    pub staff: BTreeMap<String, LatencySummary>,
    /// Each periodic job's runs and durations while watched.
    pub jobs: BTreeMap<String, JobFigures>,
    /// How long the jobs were watched, seconds.
    pub jobs_watched_secs: f64,
    /// The recalibrations in that time, by their own record.
    pub recalibrations: Recalibrations,
}

/// Runs one measurement on the database as it is.
pub async fn measure(
    bench: &mut Bench<'_>,
    args: &BenchHistoryArgs,
    name: &str,
) -> anyhow::Result<PhaseFigures> {
    let cycle = bench.args;
    let slots = args
        .prefill_slots
        .unwrap_or_else(|| cycle.slots_for(CLOSED_TARGET));
    // The sweep needs listings to cover: on the empty database, those of the pre-fill.
    if !any_listing(&bench.pool).await? {
        ensure_slots(bench, slots).await?;
    }
    let sweep = sweep::measure(bench, args).await?;
    settle(bench).await?;
    ensure_slots(bench, slots).await?;
    settle(bench).await?;
    let size = size(&bench.pool).await?;
    let metrics = bench.stack.coordinator_metrics()[0].clone();
    let crew = bench.crew();
    let tokens = bench.users.tokens(0, cycle.volunteers);
    let window = Window::after(cycle.warmup(), cycle.window());
    let run = ClosedLoop::start(&crew, tokens, Work::Vote, window);
    tokio::time::sleep_until(window.end).await;
    let load = run.finish().await.figures(&window);
    eprintln!("bench-history: {name}: closed loop: {}", load.line());
    let api = bench.stack.api_urls()[0].clone();
    let staff = staff::time_routes(
        &bench.http,
        &api,
        &bench.users.staff.token,
        args.staff_requests,
    )
    .await?;
    for (route, s) in &staff {
        eprintln!(
            "bench-history: {name}: GET {route}: {} calls, p50 {:.1} ms, p99 {:.1} ms",
            s.count, s.p50_ms, s.p99_ms
        );
    }
    // The jobs are timed once the load and the staff calls are over, so a run's
    // time is what the job costs, not how long it waited for a core.
    let watched_from = chrono::Utc::now();
    let watch = jobs::Watch::start(&bench.http, &metrics).await;
    let periodic: Vec<&str> = JOBS
        .iter()
        .copied()
        .filter(|j| *j != "recalibration")
        .collect();
    watch
        .wait_for(&periodic, Duration::from_secs(args.jobs_wait_secs))
        .await;
    let (mut jobs, jobs_watched_secs) = watch.finish(&bench.http, &metrics).await;
    if jobs.get("recalibration").is_none_or(|f| f.runs == 0) {
        jobs.insert("recalibration".into(), recalibrate_once(&bench.pool).await?);
    }
    let missing: Vec<&str> = JOBS
        .iter()
        .copied()
        .filter(|j| jobs.get(*j).is_none_or(|f| f.runs == 0))
        .collect();
    if !missing.is_empty() {
        bench.report.warn(format!(
            "{name}: no run of {} in the {jobs_watched_secs:.0} s the jobs were watched",
            missing.join(", ")
        ));
    }
    let recalibrations = recalibrations_since(&bench.pool, watched_from).await?;
    Ok(PhaseFigures {
        size,
        sweep,
        load,
        staff,
        jobs,
        jobs_watched_secs,
        recalibrations,
    })
}

async fn any_listing(pool: &PgPool) -> anyhow::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM listings)")
        .fetch_one(pool)
        .await
        .context("looking for listings")
}

async fn size(pool: &PgPool) -> anyhow::Result<Size> {
    let (votes, listings, bytes): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM votes), (SELECT count(*) FROM listings),
                pg_database_size(current_database())",
    )
    .fetch_one(pool)
    .await
    .context("measuring the database")?;
    Ok(Size {
        votes,
        listings,
        bytes,
    })
}

async fn recalibrations_since(
    pool: &PgPool,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Recalibrations> {
    let (runs, votes, secs): (i64, i64, f64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(votes), 0)::bigint, coalesce(sum(seconds), 0)
         FROM recalibrations WHERE finished_at >= $1",
    )
    .bind(since)
    .fetch_one(pool)
    .await
    .context("reading the recalibrations")?;
    Ok(Recalibrations {
        runs,
        votes,
        secs,
        votes_per_sec: (secs > 0.0).then(|| votes as f64 / secs),
    })
}

/// One recalibration, as the coordinator's job runs it (its code, its window of
/// 30 days, warm-started from any previous fit), timed here on the quiet stack.
async fn recalibrate_once(pool: &PgPool) -> anyhow::Result<JobFigures> {
    for _ in 0..20 {
        let started = std::time::Instant::now();
        if coordinator::recalibrate::recalibrate(pool, 30)
            .await?
            .is_some()
        {
            let secs = started.elapsed().as_secs_f64();
            return Ok(JobFigures {
                runs: 1,
                total_secs: secs,
                mean_ms: Some(secs * 1000.0),
                max_ms: Some(secs * 1000.0),
            });
        }
        // The coordinator's own run holds the lock: try again after it.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("the recalibration lock stayed taken for 10 s")
}
