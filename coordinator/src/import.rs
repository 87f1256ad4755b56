//! `coordinator import FILE`: load a JSONL file of listings with a progress bar.
//!
//! A malformed line is reported with its line number and skipped; it never stops
//! the import. Valid listings are written in batches, each batch one transaction,
//! so nothing is ever half-written.

use crate::config::Config;
use crate::ingest::{FrameTally, IngestReport, Sampler, ingest_many};
use crate::policy;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use spotcheck_shared::Listing;
use spotcheck_shared::capacity::Throttle;
use sqlx::PgPool;
use std::path::Path;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A malformed line of the input.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// Why it was refused.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImportSummary {
    /// Lines read (blank lines excluded).
    pub lines: usize,
    /// What ingest did with the valid ones.
    pub ingest: IngestReport,
    /// The lines refused.
    pub bad: Vec<BadLine>,
}

/// Imports `path` into the database behind `pool`, sampling for the round of
/// `now_secs` (Unix seconds).
pub async fn import_file(
    pool: &PgPool,
    sampler: &Sampler,
    path: &Path,
    batch_size: usize,
    now_secs: i64,
    progress: &ProgressBar,
) -> anyhow::Result<ImportSummary> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let policy = policy::load(pool).await?;
    let throttle = sampler.throttle();
    let mut lines = BufReader::new(file).lines();
    let mut summary = ImportSummary::default();
    let mut batch = Vec::with_capacity(batch_size);
    let mut number = 0;
    while let Some(line) = lines.next_line().await.context("reading the import file")? {
        number += 1;
        progress.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        summary.lines += 1;
        match Listing::from_json(line.as_bytes()) {
            Ok(listing) => batch.push(listing),
            Err(e) => {
                progress.suspend(|| eprintln!("line {number}: skipped: {e}"));
                tracing::debug!(line = number, error = %e, "skipped a malformed listing");
                summary.bad.push(BadLine {
                    line: number,
                    reason: e.to_string(),
                });
            }
        }
        if batch.len() >= batch_size {
            summary.ingest +=
                write_batch(pool, sampler, &throttle, &policy, &batch, now_secs).await?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        summary.ingest += write_batch(pool, sampler, &throttle, &policy, &batch, now_secs).await?;
    }
    Ok(summary)
}

async fn write_batch(
    pool: &PgPool,
    sampler: &Sampler,
    throttle: &Throttle,
    policy: &policy::CurrentPolicy,
    batch: &[Listing],
    now: i64,
) -> anyhow::Result<IngestReport> {
    let mut tx = pool.begin().await?;
    let mut frames = FrameTally::default();
    let report = ingest_many(&mut tx, sampler, throttle, policy, batch, now, &mut frames).await?;
    frames.flush(&mut tx).await?;
    tx.commit().await.context("committing an import batch")?;
    Ok(report)
}

/// The `import` subcommand.
pub async fn run(config: &Config, path: &Path) -> anyhow::Result<()> {
    let pool = crate::app::connect_and_migrate(config).await?;
    let size = tokio::fs::metadata(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let bar = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {elapsed} eta {eta}")
            .expect("valid progress template"),
    );
    let sampler = crate::app::sampler(config);
    crate::capacity::refresh(
        &pool,
        &config.capacity_policy(),
        config.capacity_window_secs,
        &sampler.throttle,
    )
    .await?;
    let summary = import_file(
        &pool,
        &sampler,
        path,
        config.import_batch,
        chrono::Utc::now().timestamp(),
        &bar,
    )
    .await?;
    bar.finish_and_clear();
    println!(
        "imported {} lines: {} listings stored, {} unchanged, {} tasks created, {} malformed lines skipped",
        summary.lines,
        summary.ingest.stored,
        summary.ingest.unchanged,
        summary.ingest.tasks,
        summary.bad.len()
    );
    Ok(())
}
