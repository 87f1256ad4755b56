//! Partition upkeep: month partitions created ahead of time, and partitions past
//! retention archived to gzipped CSV, then dropped.
//!
//! A partition is archived from one snapshot (its row count and a `COPY` of
//! it), written to a temporary file that is synced and renamed into place, and
//! recorded in `retention_archives` with its rows and SHA-256. It is dropped
//! only while it still holds exactly the archived rows (see
//! `spotcheck_platform::partitions::drop_archived`); otherwise it is archived
//! again next run. Every replica runs the upkeep; the advisory lock and the
//! record make a second one find the work done.

use anyhow::Context;
use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use spotcheck_platform::partitions::{self, Kept, attached_months};
use spotcheck_shared::partitions::{Month, Retention, Table};
use sqlx::PgPool;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How partitions are kept.
#[derive(Debug, Clone)]
pub struct Upkeep {
    /// Pause between runs.
    pub every: Duration,
    /// Months created ahead of the current one.
    pub ahead: u32,
    /// Months kept per table.
    pub retention: Retention,
    /// Where archives go (`None`: nothing is dropped).
    pub archive_dir: Option<PathBuf>,
}

/// One archive written.
#[derive(Debug, Clone, PartialEq)]
pub struct Archive {
    /// Rows in it.
    pub rows: i64,
    /// Its size on disk.
    pub bytes: i64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Where it is.
    pub path: PathBuf,
}

/// What one upkeep run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Partitions created.
    pub created: Vec<String>,
    /// Rows moved into them from the default partitions.
    pub moved: u64,
    /// Partitions archived and dropped.
    pub dropped: Vec<String>,
    /// Partitions past retention still kept, with why.
    pub kept: Vec<(String, String)>,
}

/// A writer that counts and hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `table`'s partition for `month` to `dir` as gzipped CSV with a
/// header (every column, as `COPY` writes them) and records the archive.
pub async fn archive(
    pool: &PgPool,
    dir: &Path,
    table: Table,
    month: Month,
) -> anyhow::Result<Archive> {
    let partition = table.partition(month);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{partition}.csv.gz"));
    let part = dir.join(format!("{partition}.csv.gz.part"));
    let file =
        std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?;
    let mut gz = GzEncoder::new(
        Hashing {
            inner: std::io::BufWriter::new(file),
            hash: Sha256::new(),
            bytes: 0,
        },
        Compression::default(),
    );
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {partition}"
    )))
    .fetch_one(&mut *tx)
    .await?;
    {
        let mut copy = tx
            .copy_out_raw(&format!(
                "COPY (SELECT * FROM {partition} ORDER BY {key}) TO STDOUT WITH (FORMAT csv, HEADER)",
                key = table.key()
            ))
            .await?;
        while let Some(chunk) = copy.try_next().await? {
            gz.write_all(&chunk)?;
        }
    }
    tx.commit().await?;
    let mut hashing = gz.finish()?;
    hashing.flush()?;
    let (bytes, sha256) = (hashing.bytes, hex(&hashing.hash.finalize()));
    let file = hashing.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&part, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    let archive = Archive {
        rows,
        bytes: bytes as i64,
        sha256,
        path,
    };
    sqlx::query(
        "INSERT INTO retention_archives (partition, table_name, month, rows, bytes, sha256, path)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (partition) DO UPDATE SET rows = EXCLUDED.rows, bytes = EXCLUDED.bytes,
             sha256 = EXCLUDED.sha256, path = EXCLUDED.path, exported_at = now(),
             dropped_at = NULL",
    )
    .bind(&partition)
    .bind(table.name())
    .bind(month.start().date_naive())
    .bind(archive.rows)
    .bind(archive.bytes)
    .bind(&archive.sha256)
    .bind(archive.path.to_string_lossy().as_ref())
    .execute(pool)
    .await?;
    tracing::info!(%partition, rows, bytes, "partition archived");
    Ok(archive)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One run: partitions created ahead (and rows moved out of the defaults), then
/// every partition past retention archived and dropped, oldest first.
pub async fn run_once(
    pool: &PgPool,
    upkeep: &Upkeep,
    now: DateTime<Utc>,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let created = partitions::ensure(pool, now, upkeep.ahead).await?;
    crate::ops::job_ran("partitions", started);
    let started = Instant::now();
    let mut report = Report {
        created: created.partitions,
        moved: created.moved,
        ..Report::default()
    };
    for table in Table::ALL {
        let months = attached_months(&mut *pool.acquire().await?, table).await?;
        for month in months
            .into_iter()
            .filter(|m| upkeep.retention.expired(table, *m, now))
        {
            let partition = table.partition(month);
            let Some(dir) = &upkeep.archive_dir else {
                report
                    .kept
                    .push((partition, "SPOTCHECK_ARCHIVE_DIR is not set".into()));
                continue;
            };
            let archive = archive(pool, dir, table, month).await?;
            match partitions::drop_archived(pool, table, month, archive.rows).await? {
                Ok(()) => report.dropped.push(partition),
                Err(Kept::Changed { archived, now }) => report.kept.push((
                    partition,
                    format!("{now} rows now, {archived} archived: archived again next run"),
                )),
                Err(Kept::Missing) => {}
            }
        }
    }
    if !report.kept.is_empty() {
        tracing::warn!(kept = ?report.kept, "partitions past retention kept");
    }
    metrics::gauge!("spotcheck_partitions_past_retention").set(report.kept.len() as f64);
    crate::ops::job_ran("retention", started);
    Ok(report)
}

/// Runs the upkeep every `upkeep.every` until cancelled (the first run at once).
pub async fn run(pool: PgPool, upkeep: Upkeep, cancel: CancellationToken) {
    loop {
        match run_once(&pool, &upkeep, Utc::now()).await {
            Ok(report) if !report.created.is_empty() || !report.dropped.is_empty() => {
                tracing::info!(created = ?report.created, dropped = ?report.dropped,
                               moved = report.moved, "partition upkeep");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "partition upkeep failed; retrying next run"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(upkeep.every) => {}
        }
    }
}
