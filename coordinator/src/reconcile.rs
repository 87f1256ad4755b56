//! The reconciler: rebuilds the claimable state from PostgreSQL after Redis
//! lost its data (a restart without persistence, a FLUSHALL, a failover).
//!
//! Redis carries a sentinel key written after each reconciliation. When a sweep
//! finds it missing, one replica (holding a short lock) re-offers every vote
//! slot that open tasks still need, then writes the sentinel again. Leases held
//! at that moment are gone with the data: their holders get `lease_not_found`
//! on their next extend, release or vote and simply claim again, while their
//! slots are already back on offer. Offers still queued from before become
//! surplus; the claim cap refuses them and they are dropped when the task closes.
//! The voters of open tasks are written back too, so nobody is leased a task
//! they voted on.

use spotcheck_platform::lease::LeaseStore;
use spotcheck_shared::{TaskId, UserId};
use sqlx::PgPool;

/// How long one replica may hold the reconciliation lock.
const LOCK_MS: u64 = 60_000;

/// Checks the sentinel and reconciles if Redis lost its data; returns the slots re-offered.
pub async fn check(pool: &PgPool, leases: &LeaseStore) -> anyhow::Result<u64> {
    if leases.sentinel_present().await? {
        return Ok(0);
    }
    if !leases.lock_reconcile(LOCK_MS).await? {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    let offered = sqlx::query(concat!(
        "INSERT INTO outbox (topic, payload) SELECT 'tasks', ",
        spotcheck_platform::offer_payload_sql!(),
        " FROM tasks t JOIN listings l ON l.listing_id = t.listing_id
         CROSS JOIN LATERAL generate_series(1, t.votes_required - t.votes_counted)
         WHERE t.state = 'open' AND t.kind = 'review'"
    ))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(spotcheck_platform::outbox::NOTIFY_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    restore_voters(pool, leases).await?;
    leases
        .mark_reconciled(chrono::Utc::now().timestamp())
        .await?;
    metrics::counter!("spotcheck_reconciliations_total").increment(1);
    if offered > 0 {
        tracing::warn!(
            slots = offered,
            "Redis had lost its lease state; re-offered every open slot"
        );
    }
    Ok(offered)
}

/// Writes back the voters of every open review task, a page at a time.
async fn restore_voters(pool: &PgPool, leases: &LeaseStore) -> anyhow::Result<()> {
    let mut after = uuid::Uuid::nil();
    loop {
        let page: Vec<(uuid::Uuid, Vec<uuid::Uuid>)> = sqlx::query_as(
            "SELECT t.id, ARRAY(SELECT v.volunteer_id FROM votes v WHERE v.task_id = t.id)
             FROM tasks t WHERE t.state = 'open' AND t.kind = 'review' AND t.id > $1
             ORDER BY t.id LIMIT 1000",
        )
        .bind(after)
        .fetch_all(pool)
        .await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.0;
        let entries: Vec<(TaskId, Vec<UserId>)> = page
            .iter()
            .map(|(t, v)| (TaskId(*t), v.iter().copied().map(UserId).collect()))
            .collect();
        leases.restore_voters(&entries).await?;
        if page.len() < 1000 {
            return Ok(());
        }
    }
}
