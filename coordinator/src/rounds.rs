//! Surveillance rounds: every active listing is sampled again each round.
//!
//! A sweep takes listings not yet looked at in the current round in batches
//! (`FOR NO KEY UPDATE SKIP LOCKED`, so any number of replicas share the work without a
//! leader), samples each with the keyed draw for that round, and marks it done.

use crate::ingest::{Candidate, FrameTally, Sampler, sample_many};
use crate::policy::PolicyCache;
use spotcheck_shared::Stratum;
use spotcheck_shared::listing::present;
use spotcheck_shared::sampling::round_of;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What one sweep batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Listings looked at.
    pub listings: u64,
    /// Tasks created.
    pub tasks: u64,
}

type DueRow = (String, i64, String, String, String, serde_json::Value);

/// Samples up to `batch` listings not yet looked at in the round of `now_secs`.
pub async fn sweep_batch(
    pool: &PgPool,
    sampler: &Sampler,
    policies: &PolicyCache,
    now_secs: i64,
    batch: i64,
) -> anyhow::Result<SweepReport> {
    let round = round_of(now_secs, sampler.round_secs);
    let policy = policies.get().await?;
    let throttle = sampler.throttle();
    let mut tx = pool.begin().await?;
    let due: Vec<DueRow> = sqlx::query_as(
        "SELECT listing_id, version, category, region, seller_risk_tier, signals
         FROM listings WHERE active AND last_round < $1
         ORDER BY last_round, listing_id LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(round)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    let candidates: Vec<Candidate> = due
        .into_iter()
        .map(
            |(listing_id, version, category, region, seller_risk_tier, signals)| {
                let signals: BTreeMap<String, bool> =
                    serde_json::from_value(signals).unwrap_or_default();
                Candidate {
                    listing_id,
                    version,
                    stratum: Stratum {
                        category,
                        region,
                        seller_risk_tier,
                    },
                    signals: present(&signals).map(str::to_owned).collect(),
                }
            },
        )
        .collect();
    let mut frames = FrameTally::default();
    let tasks = sample_many(
        &mut tx,
        sampler,
        &throttle,
        &policy,
        &candidates,
        round,
        &mut frames,
    )
    .await?;
    let report = SweepReport {
        listings: candidates.len() as u64,
        tasks,
    };
    let ids: Vec<&str> = candidates.iter().map(|c| c.listing_id.as_str()).collect();
    if !ids.is_empty() {
        sqlx::query("UPDATE listings SET last_round = $2 WHERE listing_id = ANY($1)")
            .bind(&ids)
            .bind(round)
            .execute(&mut *tx)
            .await?;
        frames.flush(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// Sweeps until nothing is due, then waits `interval`; until `cancel`.
pub async fn run(
    pool: PgPool,
    sampler: std::sync::Arc<Sampler>,
    policies: PolicyCache,
    interval: Duration,
    batch: i64,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    while !cancel.is_cancelled() {
        let now = chrono::Utc::now().timestamp();
        let started = std::time::Instant::now();
        let swept = sweep_batch(&pool, &sampler, &policies, now, batch).await;
        if swept.is_ok() {
            crate::ops::job_ran("round_sweep", started);
        }
        match swept {
            Ok(r) if r.listings > 0 => {
                tracing::debug!(listings = r.listings, tasks = r.tasks, "round sweep batch");
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "round sweep failed; retrying"),
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    Ok(())
}
