//! The phases that go through the feed: `latency` (a listing published to the
//! listings exchange until its decision is written, with volunteers claiming
//! and voting at zero think time) and `ingest` (a burst of listings published
//! with confirms until every one is stored).

use super::Bench;
use super::load::{ClosedLoop, Work};
use super::phases::note_cpu;
use super::prefill::{queue_depth, settle};
use super::report::{Target, Unit};
use super::rules;
use super::tally::{Window, micros};
use crate::feed::messages;
use crate::stats::LatencySummary;
use anyhow::Context;
use chrono::{DateTime, Utc};
use lapin::options::QueuePurgeOptions;
use serde_json::json;
use spotcheck_platform::amqp::timed;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Listing-to-decision p99 target, ms.
pub const LATENCY_P99: f64 = 1_000.0;
/// Feed ingest target, listings a second.
pub const INGEST_TARGET: f64 = 10_000.0;
/// Listings per confirmed batch of the ingest burst.
const INGEST_BATCH: usize = 500;
/// A drain is over once no claim was granted for this long.
const QUIET: Duration = Duration::from_secs(1);
/// Longest drain of the offers left from earlier phases.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Empties the tasks queue and lets volunteers take what worker-api still
/// buffers, so the phase's listings queue behind nothing; returns the claims drained.
async fn drain(bench: &Bench<'_>, tokens: &[String]) -> anyhow::Result<u64> {
    let queue = bench.names.tasks_queue();
    timed(
        "purge the tasks queue",
        bench
            .channel
            .queue_purge(queue.as_str().into(), QueuePurgeOptions::default()),
    )
    .await?;
    let crew = bench.crew();
    let started = Instant::now();
    let mut drained = 0;
    while started.elapsed() < DRAIN_LIMIT {
        let window = Window::after(Duration::ZERO, QUIET);
        let run = ClosedLoop::start(&crew, tokens.to_vec(), Work::Vote, window);
        tokio::time::sleep_until(window.end).await;
        let granted = run.finish().await.granted;
        drained += granted;
        if granted == 0 && queue_depth(bench).await? == 0 {
            break;
        }
    }
    Ok(drained)
}

/// `latency`: listings published one by one at a modest rate; the time from each
/// publish (this machine's clock) to its decision's `decided_at` (PostgreSQL's
/// clock on the same machine).
pub async fn latency(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let args = bench.args;
    let tokens = bench.users.tokens(0, args.latency_volunteers);
    let drained = drain(bench, &tokens).await?;
    settle(bench).await?;
    let (_, listings) = bench.next_market(args.latency_listings);
    let crew = bench.crew();
    let everything = Window::after(Duration::ZERO, Duration::from_secs(args.max_secs));
    let crowd = ClosedLoop::start(&crew, tokens, Work::Vote, everything);
    let exchange = bench.names.listings_exchange();
    let mut published: HashMap<String, DateTime<Utc>> = HashMap::new();
    let cpu = bench.cpu.snapshot();
    let started = Instant::now();
    for (i, message) in messages(&listings)?.into_iter().enumerate() {
        let slot = started + Duration::from_secs_f64(i as f64 / args.latency_rate);
        tokio::time::sleep_until(slot).await;
        let at = Utc::now();
        bench
            .publisher
            .publish_all(&exchange, std::slice::from_ref(&message))
            .await
            .context("publishing a listing")?;
        published.insert(listings[i].listing.listing_id.as_str().to_owned(), at);
    }
    let ids: Vec<String> = published.keys().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(args.latency_timeout_secs);
    let decided = loop {
        let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT t.listing_id, d.decided_at FROM decisions d JOIN tasks t ON t.id = d.task_id
             WHERE t.listing_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&bench.pool)
        .await
        .context("reading the decisions")?;
        if rows.len() >= ids.len() || Instant::now() >= deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let cpu = bench.cpu.since(&cpu);
    note_cpu(bench, "latency", Some(&cpu));
    let volunteers = crowd.finish().await;
    let mut us: Vec<u64> = decided
        .iter()
        .filter_map(|(id, at)| (*at - *published.get(id)?).to_std().ok())
        .map(micros)
        .collect();
    let summary = LatencySummary::from_micros(&mut us);
    eprintln!(
        "bench-cycle: latency: {} of {} listings decided ({drained} older offers drained first); {}",
        decided.len(),
        ids.len(),
        summary.as_ref().map_or("no decision".into(), |s| format!(
            "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            s.p50_ms, s.p99_ms, s.max_ms
        ))
    );
    if decided.len() < ids.len() {
        bench.report.warn(format!(
            "latency: {} of {} listings undecided {} s after the last publish; percentiles are of the decided ones",
            ids.len() - decided.len(),
            ids.len(),
            args.latency_timeout_secs
        ));
    }
    let r = &mut *bench.report;
    let pick = |f: fn(&LatencySummary) -> f64| summary.as_ref().map(f);
    r.add(
        "latency.p50_ms",
        "latency: listing to decision p50",
        Unit::Ms,
        pick(|s| s.p50_ms),
        None,
    );
    r.add(
        "latency.p99_ms",
        "latency: listing to decision p99",
        Unit::Ms,
        pick(|s| s.p99_ms),
        Some(Target::Below(LATENCY_P99)),
    );
    r.add(
        "latency.decided",
        &format!("latency: listings decided (of {})", ids.len()),
        Unit::Count,
        Some(decided.len() as f64),
        Some(Target::AtLeast(ids.len() as f64)),
    );
    r.detail(
        "latency",
        json!({
            "published": ids.len(), "decided": decided.len(), "drained_first": drained,
            "rate_per_sec": args.latency_rate, "volunteers": args.latency_volunteers,
            "decision_ms": summary, "errors": volunteers.errors, "cpu": cpu,
        }),
    );
    Ok(())
}

async fn stored(bench: &Bench<'_>) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM listings")
        .fetch_one(&bench.pool)
        .await
        .context("counting listings")
}

/// `ingest`: a burst of listings published with confirms to the listings
/// exchange, timed from the first publish until every one is in `listings`.
pub async fn ingest(bench: &mut Bench<'_>) -> anyhow::Result<()> {
    let args = bench.args;
    let urls = bench.stack.api_urls();
    let rate = args.ingest_sampling_rate;
    let version =
        rules::set_sampling_rate(&bench.http, &urls[0], &bench.users.staff.token, rate).await?;
    let metrics = bench.stack.coordinator_metrics();
    if !rules::wait_in_force(&bench.http, &metrics, version).await? {
        bench.report.warn(format!(
            "ingest: sampling rate {rate} not yet in force on every coordinator"
        ));
    }
    settle(bench).await?;
    let (_, listings) = bench.next_market(args.ingest_listings);
    let all = messages(&listings)?;
    let before = stored(bench).await?;
    let want = before + i64::try_from(all.len())?;
    let exchange = bench.names.listings_exchange();
    let cpu = bench.cpu.snapshot();
    let started = Instant::now();
    for batch in all.chunks(INGEST_BATCH) {
        bench.publisher.publish_all(&exchange, batch).await?;
    }
    let published = started.elapsed();
    let deadline = started + Duration::from_secs(args.ingest_timeout_secs);
    let mut now_stored = stored(bench).await?;
    while now_stored < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        now_stored = stored(bench).await?;
    }
    let took = started.elapsed();
    let cpu = bench.cpu.since(&cpu);
    note_cpu(bench, "ingest", Some(&cpu));
    let done = now_stored - before;
    let per_sec = done as f64 / took.as_secs_f64();
    eprintln!(
        "bench-cycle: ingest: {done} of {} listings stored in {:.2} s ({per_sec:.0}/s; published in {:.2} s; sampling rate {rate})",
        all.len(),
        took.as_secs_f64(),
        published.as_secs_f64()
    );
    if now_stored < want {
        bench.report.warn(format!(
            "ingest: {done} of {} listings stored after {} s; the rate is of those",
            all.len(),
            args.ingest_timeout_secs
        ));
        // What is left would be ingested during the next phases and disturb them.
        let queue = bench.names.ingest_queue();
        timed(
            "purge the ingest queue",
            bench
                .channel
                .queue_purge(queue.as_str().into(), QueuePurgeOptions::default()),
        )
        .await?;
    }
    bench.report.add(
        "ingest.listings_per_sec",
        &format!("ingest ({} from the feed): listings stored/s", all.len()),
        Unit::PerSec,
        Some(per_sec),
        Some(Target::AtLeast(INGEST_TARGET)),
    );
    bench.report.detail(
        "ingest",
        json!({
            "listings": all.len(), "stored": done, "secs": took.as_secs_f64(),
            "publish_secs": published.as_secs_f64(), "sampling_rate": rate, "cpu": cpu,
        }),
    );
    Ok(())
}
