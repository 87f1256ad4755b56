//! `bench-history`: whether Spotcheck stays as fast with months of history as
//! on an empty database. On `bench-cycle`'s isolated stack it measures the
//! same figures twice in one run, first on the empty database, then after
//! `seed-history` has written `--votes` votes of history into that same
//! database (the coordinator stopped meanwhile): the round sweep from the start
//! of a round, claim-and-vote cycles a second and their p99 latencies in a
//! closed loop, the p99 of the staff routes that read the whole history, and
//! how long each periodic coordinator job takes a run. It prints one table of
//! both beside the targets, writes the report as JSON, and removes everything
//! it made, also on error, Ctrl-C or `--max-secs`.
//!
//! ```sh
//! cargo build --release -p spotcheck-sim -p worker-api -p coordinator
//! target/release/spotcheck-sim bench-history --votes 10000000 --out history.json
//! ```

pub mod args;
pub mod jobs;
pub mod phase;
pub mod report;
pub mod staff;
pub mod sweep;

pub use args::BenchHistoryArgs;

use crate::bench_cycle::report::Report as CycleReport;
use crate::bench_cycle::stack::{self, Stack};
use crate::bench_cycle::{Bench, rules};
use crate::seed_history::{SeedHistoryArgs, seed};
use anyhow::{Context, anyhow};
use report::Report;
use serde_json::json;
use std::path::Path;
use tokio::time::Instant;

/// Names of the stack's database, AMQP namespace and Redis prefix start with this.
pub const PREFIX: &str = "benchh";

/// `spotcheck-sim bench-history`.
pub async fn run(args: BenchHistoryArgs) -> anyhow::Result<()> {
    args.validate()?;
    let cycle = args.cycle_args()?;
    let bin_dir = stack::bin_dir(args.stack.bin_dir.as_deref())?;
    let mut report = Report {
        started_at: chrono::Utc::now().to_rfc3339(),
        ..Report::default()
    };
    // The bench-cycle code it reuses records its warnings here; they are copied over.
    let mut log = CycleReport::default();
    let mut slot: Option<Stack> = None;
    let started = Instant::now();
    let outcome = tokio::select! {
        measured = tokio::time::timeout(
            args.max_duration(),
            measure(&args, &cycle, &bin_dir, &mut slot, &mut report, &mut log),
        ) => measured.unwrap_or_else(|_| Err(anyhow!("stopped after --max-secs {}", args.max_secs))),
        signal = tokio::signal::ctrl_c() => match signal {
            Ok(()) => Err(anyhow!("interrupted")),
            Err(e) => Err(anyhow::Error::new(e).context("listening for Ctrl-C")),
        },
    };
    if let Some(stack) = slot.as_mut() {
        eprintln!("bench-history: removing {}", stack.id);
        stack.remove(args.stack.keep_logs || outcome.is_err()).await;
    }
    report.warnings.append(&mut log.warnings);
    if let Err(e) = &outcome {
        report
            .warnings
            .push(format!("the run stopped early: {e:#}"));
    }
    report
        .setup
        .insert("total_secs".into(), json!(started.elapsed().as_secs_f64()));
    report.tabulate();
    report.write(&args.out)?;
    println!(
        "\nbench-history: {} votes of history over {} months; closed loop of {} volunteers, {} burn-in and {} measured windows of {} s after {} s of warm-up; {} staff calls a route; {} cores shared by everything",
        args.votes,
        args.months,
        args.volunteers,
        args.burn_in_windows,
        args.windows,
        args.window_secs,
        args.warmup_secs,
        args.staff_requests,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    print!("{}", report.table());
    println!("report: {}", args.out.display());
    outcome
}

async fn measure(
    args: &BenchHistoryArgs,
    cycle: &crate::bench_cycle::BenchCycleArgs,
    bin_dir: &Path,
    slot: &mut Option<Stack>,
    report: &mut Report,
    log: &mut CycleReport,
) -> anyhow::Result<()> {
    let stack = slot.insert(Stack::plan_named(
        cycle,
        bin_dir,
        PREFIX,
        &args.coordinator_env(),
    )?);
    eprintln!(
        "bench-history: binaries from {}; database, namespace and Redis prefix {}",
        bin_dir.display(),
        stack.id
    );
    report.setup.extend([
        ("stack_id".to_owned(), json!(stack.id)),
        ("history_votes".to_owned(), json!(args.votes)),
        ("history_months".to_owned(), json!(args.months)),
        ("warmup_secs".to_owned(), json!(args.warmup_secs)),
        ("window_secs".to_owned(), json!(args.window_secs)),
        ("windows".to_owned(), json!(args.windows)),
        ("burn_in_windows".to_owned(), json!(args.burn_in_windows)),
        ("volunteers".to_owned(), json!(args.volunteers)),
        ("staff_requests".to_owned(), json!(args.staff_requests)),
        ("sweep_secs".to_owned(), json!(args.sweep_secs)),
        (
            "sweep_sampling_rate".to_owned(),
            json!(args.sweep_sampling_rate),
        ),
        ("recalibrate_secs".to_owned(), json!(args.recalibrate_secs)),
        (
            "cores".to_owned(),
            json!(std::thread::available_parallelism().map_or(0, |n| n.get())),
        ),
    ]);
    let mut bench = Bench::start(cycle, stack, log).await?;

    let started = Instant::now();
    eprintln!("bench-history: measuring on the empty database");
    report.empty = Some(phase::measure(&mut bench, args, "empty").await?);
    eprintln!(
        "bench-history: empty database measured in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    crate::bench_cycle::prefill::settle(&mut bench).await?;
    for coordinator in &mut bench.stack.coordinators {
        coordinator.kill().await;
    }
    eprintln!(
        "bench-history: coordinator stopped; writing {} votes of history over {} months",
        args.votes, args.months
    );
    let seeded = seed(&SeedHistoryArgs {
        database_url: bench.stack.db.url()?,
        votes: args.votes,
        months: args.months,
        volunteers: None,
        counterfeit_share: 0.04,
    })
    .await
    .context("writing the history")?;
    eprintln!(
        "bench-history: {} tasks and {} votes written in {:.1} s",
        seeded.tasks, seeded.votes, seeded.secs
    );
    report.seed = Some(json!({
        "tasks": seeded.tasks,
        "votes": seeded.votes,
        "gold_votes": seeded.gold_votes,
        "escalations": seeded.escalations,
        "secs": seeded.secs,
        "bytes": seeded.bytes,
    }));
    // Every seeded listing is due: the coordinator starts sweeping at once, so
    // the sweep's sampling rate is in force before it starts.
    let api = bench.stack.api_urls()[0].clone();
    rules::set_sampling_rate(
        &bench.http,
        &api,
        &bench.users.staff.token,
        args.sweep_sampling_rate,
    )
    .await?;
    bench
        .stack
        .start_coordinators()
        .await
        .context("starting the coordinator again")?;
    // The history is stamped behind the running counts' marks, so the
    // coordinator's first capacity run counts it all once (seconds of work a
    // deployment did long ago): the measurement starts after it.
    caught_up(&bench.pool).await?;

    let started = Instant::now();
    eprintln!("bench-history: measuring with the history");
    report.history = Some(phase::measure(&mut bench, args, "history").await?);
    eprintln!(
        "bench-history: history measured in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _ = spotcheck_platform::amqp::timed("close", bench.amqp.close(200, "done".into())).await;
    bench.pool.close().await;
    Ok(())
}

/// Waits until the coordinator has counted the whole history into the running
/// counts (every mark past `-infinity`), at most five minutes.
async fn caught_up(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let done: bool = sqlx::query_scalar(
            "SELECT coalesce(bool_and(counted_to > '-infinity'), false) FROM running_counts",
        )
        .fetch_one(pool)
        .await
        .context("reading the running counts")?;
        if done {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the coordinator did not count the history within five minutes"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
