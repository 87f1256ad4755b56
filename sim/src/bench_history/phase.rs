//! One measurement of the history benchmark, the same on the empty and on the
//! seeded database: the round sweep from the start of a round, then (once the
//! database is quiet, and after unmeasured burn-in windows) windows of the
//! closed loop of claim and vote, the staff
//! routes one after another, and the coordinator's periodic jobs watched after
//! them, on a quiet stack, until every one of them has run (recalibration,
//! daily in the benchmark's coordinator, is run and timed here).

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
    /// The database made quiet before the closed loop.
    pub quiet: Quiet,
    /// The closed loop: each figure the median of the windows'.
    pub load: LoadFigures,
    /// Each window of the closed loop.
    pub windows: Vec<LoadFigures>,
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
    let quiet = make_quiet(&bench.pool, Duration::from_secs(args.quiet_wait_secs)).await?;
    eprintln!(
        "bench-history: {name}: listings vacuumed in {:.1} s, then {:.1} s until no autovacuum ran{}",
        quiet.vacuum_secs,
        quiet.waited_secs,
        if quiet.quiet { "" } else { " (gave up)" }
    );
    if !quiet.quiet {
        bench.report.warn(format!(
            "{name}: autovacuum still ran {} s after the sweep; the closed loop shared the machine with it",
            args.quiet_wait_secs
        ));
    }
    let size = size(&bench.pool).await?;
    let metrics = bench.stack.coordinator_metrics()[0].clone();
    let mut windows = Vec::with_capacity(args.windows);
    for i in 0..args.burn_in_windows + args.windows {
        ensure_slots(bench, slots).await?;
        settle(bench).await?;
        let crew = bench.crew();
        let tokens = bench.users.tokens(0, cycle.volunteers);
        let window = Window::after(cycle.warmup(), cycle.window());
        let run = ClosedLoop::start(&crew, tokens, Work::Vote, window);
        tokio::time::sleep_until(window.end).await;
        let load = run.finish().await.figures(&window);
        let Some(measured) = i.checked_sub(args.burn_in_windows) else {
            eprintln!(
                "bench-history: {name}: burn-in {}/{}: {}",
                i + 1,
                args.burn_in_windows,
                load.line()
            );
            continue;
        };
        eprintln!(
            "bench-history: {name}: closed loop {}/{}: {}",
            measured + 1,
            args.windows,
            load.line()
        );
        windows.push(load);
    }
    let load = median_window(&windows).context("no closed-loop window")?;
    eprintln!(
        "bench-history: {name}: closed loop, medians: {}",
        load.line()
    );
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
        quiet,
        load,
        windows,
        staff,
        jobs,
        jobs_watched_secs,
        recalibrations,
    })
}

/// How the database was made quiet before the closed loop.
#[derive(Debug, Clone, Serialize)]
pub struct Quiet {
    /// Seconds `VACUUM (ANALYZE) listings` took.
    pub vacuum_secs: f64,
    /// Seconds then waited until no vacuum ran in the database.
    pub waited_secs: f64,
    /// Whether that happened within the wait.
    pub quiet: bool,
}

/// Vacuums the listings (the sweep has just marked every listing it did not
/// reach: a round's updates in a minute, which a deployment spreads over the
/// round) and waits until no autovacuum runs in the database, at most `wait`.
async fn make_quiet(pool: &PgPool, wait: Duration) -> anyhow::Result<Quiet> {
    let started = std::time::Instant::now();
    sqlx::query("VACUUM (ANALYZE) listings")
        .execute(pool)
        .await
        .context("vacuuming the listings")?;
    let vacuum_secs = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let quiet = loop {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_progress_vacuum
             WHERE datname = current_database()",
        )
        .fetch_one(pool)
        .await
        .context("looking for vacuums")?;
        if running == 0 {
            break true;
        }
        if started.elapsed() >= wait {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    Ok(Quiet {
        vacuum_secs,
        waited_secs: started.elapsed().as_secs_f64(),
        quiet,
    })
}

/// The windows' medians, figure by figure: rates, and each latency summary
/// that of the window with the median p99 (the lower middle one of an even
/// count); counts and errors are the windows' sums.
pub fn median_window(windows: &[LoadFigures]) -> Option<LoadFigures> {
    fn median(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        values[(values.len() - 1) / 2]
    }
    fn median_summary(summaries: Vec<&LatencySummary>) -> Option<LatencySummary> {
        let mut summaries = summaries;
        summaries.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
        summaries
            .get(summaries.len().checked_sub(1)? / 2)
            .map(|s| (*s).clone())
    }
    windows.first()?;
    let mut errors = BTreeMap::new();
    for w in windows {
        for (key, n) in &w.errors {
            *errors.entry(key.clone()).or_default() += n;
        }
    }
    Some(LoadFigures {
        window_secs: windows.iter().map(|w| w.window_secs).sum(),
        claims_granted: windows.iter().map(|w| w.claims_granted).sum(),
        claims_empty: windows.iter().map(|w| w.claims_empty).sum(),
        cycles: windows.iter().map(|w| w.cycles).sum(),
        claims_per_sec: median(windows.iter().map(|w| w.claims_per_sec).collect()),
        cycles_per_sec: median(windows.iter().map(|w| w.cycles_per_sec).collect()),
        claim_ms: median_summary(windows.iter().filter_map(|w| w.claim_ms.as_ref()).collect()),
        vote_ms: median_summary(windows.iter().filter_map(|w| w.vote_ms.as_ref()).collect()),
        release_ms: median_summary(
            windows
                .iter()
                .filter_map(|w| w.release_ms.as_ref())
                .collect(),
        ),
        errors,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn window(
        cycles_per_sec: f64,
        claim_p99: f64,
        vote_p99: f64,
        error: Option<&str>,
    ) -> LoadFigures {
        let summary = |p99_ms: f64| LatencySummary {
            count: 100,
            p50_ms: p99_ms / 4.0,
            p99_ms,
            max_ms: p99_ms * 2.0,
        };
        LoadFigures {
            window_secs: 10.0,
            claims_granted: (cycles_per_sec * 10.0) as u64,
            claims_empty: 0,
            cycles: (cycles_per_sec * 10.0) as u64,
            claims_per_sec: cycles_per_sec,
            cycles_per_sec,
            claim_ms: Some(summary(claim_p99)),
            vote_ms: Some(summary(vote_p99)),
            release_ms: None,
            errors: error.map(|e| (e.to_owned(), 1)).into_iter().collect(),
        }
    }

    #[test]
    fn the_median_window_takes_each_figure_from_the_middle_and_sums_the_counts() {
        let windows = [
            window(3000.0, 14.0, 90.0, None),
            window(1200.0, 11.0, 30.0, Some("vote 500 internal")),
            window(3100.0, 40.0, 31.0, Some("vote 500 internal")),
        ];
        let m = median_window(&windows).unwrap();
        assert_eq!(m.cycles_per_sec, 3000.0);
        assert_eq!(m.claim_ms.unwrap().p99_ms, 14.0);
        assert_eq!(m.vote_ms.unwrap().p99_ms, 31.0);
        assert!(m.release_ms.is_none());
        assert_eq!((m.cycles, m.window_secs), (73_000, 30.0));
        assert_eq!(m.errors["vote 500 internal"], 2);
        // An even count takes the lower middle; none gives nothing.
        let two = median_window(&windows[..2]).unwrap();
        assert_eq!(two.cycles_per_sec, 1200.0);
        assert_eq!(two.vote_ms.unwrap().p99_ms, 30.0);
        assert!(median_window(&[]).is_none());
    }
}
