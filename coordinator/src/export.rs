//! `coordinator export`: the analysts' exports (votes or decisions of a time
//! range, as CSV or JSON lines, gzipped on request) written to a file or to
//! standard output, streamed from PostgreSQL in constant memory: the same rows
//! as `GET /v1/staff/exports/...`.

use crate::config::Config;
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use futures::TryStreamExt;
use spotcheck_platform::export::{ExportRequest, stream};
use spotcheck_shared::export::{ExportFormat, ExportKind, VolunteerIds};
use std::io::Write;
use std::path::PathBuf;

/// `coordinator export` options.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// `votes` or `decisions`.
    #[arg(long, value_parser = parse_kind)]
    pub what: ExportKind,
    /// First instant included (RFC 3339); the beginning when absent.
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// First instant left out (RFC 3339); now when absent.
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// `csv` or `jsonl`.
    #[arg(long, default_value = "csv", value_parser = parse_format)]
    pub format: ExportFormat,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Gzip the output.
    #[arg(long)]
    pub gzip: bool,
    /// Write volunteer ids as they are, not pseudonymised (whoever runs this
    /// command holds the database's credentials already).
    #[arg(long)]
    pub raw_volunteer_ids: bool,
}

fn parse_kind(raw: &str) -> Result<ExportKind, String> {
    match raw {
        "votes" => Ok(ExportKind::Votes),
        "decisions" => Ok(ExportKind::Decisions),
        _ => Err("votes or decisions".into()),
    }
}

fn parse_format(raw: &str) -> Result<ExportFormat, String> {
    match raw {
        "csv" => Ok(ExportFormat::Csv),
        "jsonl" => Ok(ExportFormat::Jsonl),
        _ => Err("csv or jsonl".into()),
    }
}

/// Runs the export; returns the bytes written (before compression).
pub async fn run(config: &Config, args: &ExportArgs) -> anyhow::Result<u64> {
    let since = args.since.unwrap_or(DateTime::UNIX_EPOCH);
    let until = args.until.unwrap_or_else(Utc::now);
    anyhow::ensure!(since < until, "--since must be before --until");
    let volunteers =
        if args.raw_volunteer_ids {
            VolunteerIds::Raw
        } else {
            VolunteerIds::Pseudonymised(config.services.pseudonyms().context(
                "SPOTCHECK_PSEUDONYM_KEY is not set: set it, or pass --raw-volunteer-ids",
            )?)
        };
    let pool = spotcheck_platform::db::connect(&config.services.database_url, 2).await?;
    let sink: Box<dyn Write + Send> = match &args.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let request = ExportRequest {
        kind: args.what,
        format: args.format,
        since,
        until,
        volunteers,
    };
    if args.gzip {
        let mut gz = flate2::write::GzEncoder::new(sink, flate2::Compression::default());
        let written = pump(&mut gz, pool, request).await?;
        gz.finish()?.flush()?;
        Ok(written)
    } else {
        let mut sink = sink;
        let written = pump(&mut sink, pool, request).await?;
        sink.flush()?;
        Ok(written)
    }
}

/// Writes the export's chunks to `out` as they come; returns the bytes written.
async fn pump(
    out: &mut impl Write,
    pool: sqlx::PgPool,
    request: ExportRequest,
) -> anyhow::Result<u64> {
    let mut chunks = std::pin::pin!(stream(pool, request));
    let mut written = 0u64;
    while let Some(chunk) = chunks.try_next().await? {
        out.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    Ok(written)
}
