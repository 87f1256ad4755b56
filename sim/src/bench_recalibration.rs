//! `bench-recalibration`: the Dawid–Skene recalibration over a database's
//! history (a `seed-history` one, say), started cold and warm, with the time,
//! the iterations, the process's peak memory and how far the warm fit lands from
//! the cold one.
//!
//! The warm start is what the periodic job does: the previous run's fit (here,
//! over the window ending `--step-hours` earlier) seeds the EM of the next.
//! It writes what a recalibration writes (volunteers' confusion estimates), so
//! point it at a benchmark database, not production.

use anyhow::Context;
use clap::Args;
use coordinator::recalibrate::{Start, Summary, recalibrate_window};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::Instant;
use uuid::Uuid;

/// `bench-recalibration` options.
#[derive(Debug, Clone, Args)]
pub struct BenchRecalibrationArgs {
    /// The database (it is written to).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Days of votes a recalibration reads (as `SPOTCHECK_RECALIBRATE_DAYS`).
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// How much earlier the previous run's window ended.
    #[arg(long, default_value_t = 24)]
    pub step_hours: i64,
}

/// One fit and what it cost.
#[derive(Debug, Clone)]
pub struct Run {
    /// What the recalibration reported.
    pub summary: Summary,
    /// Wall time, reading and writing included.
    pub secs: f64,
    /// Each volunteer's fitted accuracy on genuine and on counterfeit listings.
    pub accuracy: HashMap<Uuid, (f64, f64)>,
}

/// The figures of one benchmark.
#[derive(Debug, Clone)]
pub struct Report {
    /// The previous window, cold (the warm start's source).
    pub previous: Run,
    /// The current window, warm from `previous`.
    pub warm: Run,
    /// The current window, cold.
    pub cold: Run,
    /// Largest difference of a volunteer's fitted accuracy, warm against cold.
    pub max_accuracy_gap: f64,
    /// Peak resident memory of this process, in bytes (the EM runs in it).
    pub peak_rss: Option<u64>,
}

async fn fit(
    pool: &PgPool,
    days: u32,
    until: chrono::DateTime<chrono::Utc>,
    start: Start,
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let summary = recalibrate_window(pool, days, until, start)
        .await?
        .context("another process holds the recalibration lock")?;
    let secs = started.elapsed().as_secs_f64();
    let rows: Vec<(Uuid, f64, f64)> = sqlx::query_as(
        "SELECT volunteer_id, (recalibrated->>'genuine_right')::float8,
                (recalibrated->>'counterfeit_right')::float8
         FROM volunteer_reliability WHERE recalibrated ? 'genuine_right'",
    )
    .fetch_all(pool)
    .await?;
    Ok(Run {
        summary,
        secs,
        accuracy: rows.into_iter().map(|(id, g, c)| (id, (g, c))).collect(),
    })
}

/// Peak resident memory of this process (Linux `VmHWM`).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs the benchmark: the previous window cold, then the current one warm and
/// cold.
pub async fn bench(args: &BenchRecalibrationArgs) -> anyhow::Result<Report> {
    let pool = spotcheck_platform::db::connect(&args.database_url, 2).await?;
    let now = chrono::Utc::now();
    let previous = fit(
        &pool,
        args.days,
        now - chrono::Duration::hours(args.step_hours),
        Start::Cold,
    )
    .await?;
    let warm = fit(&pool, args.days, now, Start::Warm).await?;
    let cold = fit(&pool, args.days, now, Start::Cold).await?;
    let max_accuracy_gap = warm
        .accuracy
        .iter()
        .filter_map(|(id, (g, c))| {
            let (g2, c2) = cold.accuracy.get(id)?;
            Some((g - g2).abs().max((c - c2).abs()))
        })
        .fold(0.0, f64::max);
    pool.close().await;
    Ok(Report {
        previous,
        warm,
        cold,
        max_accuracy_gap,
        peak_rss: peak_rss(),
    })
}

/// `spotcheck-sim bench-recalibration`: runs and prints the figures.
pub async fn run(args: BenchRecalibrationArgs) -> anyhow::Result<()> {
    let report = bench(&args).await?;
    let line = |name: &str, r: &Run| {
        println!(
            "{name:<22} {:>10} votes {:>9} tasks {:>6} volunteers {:>4} iterations {:>8.2} s  agreement with decisions {}",
            r.summary.votes,
            r.summary.tasks,
            r.summary.volunteers,
            r.summary.iterations,
            r.secs,
            r.summary
                .agreement
                .map_or("-".to_owned(), |a| format!("{:.4}", a)),
        );
    };
    println!("recalibration over {} days of votes:", args.days);
    line(
        &format!("previous (-{} h), cold", args.step_hours),
        &report.previous,
    );
    line("now, warm", &report.warm);
    line("now, cold", &report.cold);
    println!(
        "warm ÷ cold time: {:.2}; largest accuracy gap warm vs cold: {:.5}; peak RSS: {}",
        report.warm.secs / report.cold.secs.max(1e-9),
        report.max_accuracy_gap,
        report
            .peak_rss
            .map_or("unknown".to_owned(), |b| format!("{} MB", b / 1_000_000)),
    );
    Ok(())
}
