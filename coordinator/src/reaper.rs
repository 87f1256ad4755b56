//! The lease reaper: re-offers the slot of every expired lease, then removes the
//! lease. No keyspace notifications; a sweep every interval on every replica,
//! each expired lease taken by one sweep at a time.

use spotcheck_platform::lease::LeaseStore;
use spotcheck_platform::outbox;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Expired leases handled per sweep.
const SWEEP_LIMIT: usize = 1000;
/// How long a taken lease stays hidden from other replicas' sweeps.
const HOLD_MS: u64 = 30_000;

/// One sweep: first the reconciliation check, then the expired leases; returns
/// how many expired leases were handed back.
pub async fn sweep(pool: &PgPool, leases: &LeaseStore) -> anyhow::Result<usize> {
    crate::reconcile::check(pool, leases).await?;
    let expired = leases.take_expired(SWEEP_LIMIT, HOLD_MS).await?;
    if expired.is_empty() {
        return Ok(0);
    }
    let ids: Vec<uuid::Uuid> = expired.iter().map(|(task, _)| task.0).collect();
    // Gold tasks are served from PostgreSQL, never offered on the queue.
    let review: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM unnest($1::uuid[]) AS e(id) JOIN tasks t USING (id) WHERE t.kind = 'review'")
            .bind(&ids)
            .fetch_all(pool)
            .await?;
    let tasks: Vec<_> = expired
        .iter()
        .map(|(task, _)| *task)
        .filter(|t| review.contains(&t.0))
        .collect();
    // The offer is committed before the lease leaves Redis: a crash here can only duplicate it.
    let mut conn = pool.acquire().await?;
    outbox::offer_slots(&mut conn, &tasks, 1).await?;
    leases.drop_expired(&expired).await?;
    metrics::counter!("spotcheck_leases_reaped_total").increment(expired.len() as u64);
    tracing::info!(
        count = expired.len(),
        "re-offered the slots of expired leases"
    );
    Ok(expired.len())
}

/// Sweeps every `interval` until cancelled.
pub async fn run(
    pool: PgPool,
    leases: LeaseStore,
    interval: Duration,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    crate::periodic::every("reaper", "lease sweep", interval, cancel, || async {
        // A full sweep: more are due, sweep again at once.
        Ok(sweep(&pool, &leases).await? >= SWEEP_LIMIT)
    })
    .await
}
