//! The listing feed: listings the marketplace publishes to `<ns>.listings`,
//! ingested in batches. Whatever arrived together is stored and sampled in one
//! transaction and acked together after the commit; malformed messages are
//! dead-lettered at once. Should a batch fail, its listings are ingested one
//! by one, so a listing the database refuses is retried (and in the end
//! dead-lettered) alone rather than with its neighbours.

use crate::consumer::{Handled, message_ref};
use crate::ingest::{FrameTally, Sampler, ingest_many};
use crate::policy::PolicyCache;
use lapin::message::Delivery;
use spotcheck_shared::Listing;
use sqlx::PgPool;

/// Ingests `listings` in one transaction.
async fn ingest(
    pool: &PgPool,
    sampler: &Sampler,
    policies: &PolicyCache,
    listings: &[Listing],
) -> anyhow::Result<u64> {
    let policy = policies.get().await?;
    let mut tx = pool.begin().await?;
    let mut frames = FrameTally::default();
    let report = ingest_many(
        &mut tx,
        sampler,
        &sampler.throttle(),
        &policy,
        listings,
        chrono::Utc::now().timestamp(),
        &mut frames,
    )
    .await?;
    frames.flush(&mut tx).await?;
    tx.commit().await?;
    Ok(report.tasks)
}

/// Ingests a batch of feed messages.
pub async fn handle(
    pool: &PgPool,
    sampler: &Sampler,
    policies: &PolicyCache,
    deliveries: Vec<Delivery>,
) -> Vec<(Delivery, Handled)> {
    let mut out = Vec::with_capacity(deliveries.len());
    let mut good: Vec<(Delivery, Listing)> = Vec::new();
    for delivery in deliveries {
        match Listing::from_json(&delivery.data) {
            Ok(listing) => good.push((delivery, listing)),
            Err(e) => {
                tracing::warn!(message = %message_ref(&delivery), error = %e, "malformed listing on the feed");
                let reason = e.to_string();
                out.push((delivery, Handled::DeadLetter(reason)));
            }
        }
    }
    if good.is_empty() {
        return out;
    }
    let listings: Vec<Listing> = good.iter().map(|(_, l)| l.clone()).collect();
    match ingest(pool, sampler, policies, &listings).await {
        Ok(tasks) => {
            tracing::debug!(listings = listings.len(), tasks, "ingested a feed batch");
            out.extend(good.into_iter().map(|(d, _)| (d, Handled::Ack)));
        }
        Err(e) if good.len() > 1 => {
            tracing::warn!(error = %e, listings = good.len(), "a feed batch failed; ingesting it one by one");
            for (delivery, listing) in good {
                let handled =
                    match ingest(pool, sampler, policies, std::slice::from_ref(&listing)).await {
                        Ok(_) => Handled::Ack,
                        Err(e) => Handled::Retry(e),
                    };
                out.push((delivery, handled));
            }
        }
        Err(e) => out.extend(
            good.into_iter()
                .map(|(d, _)| (d, Handled::Retry(anyhow::anyhow!("{e:#}")))),
        ),
    }
    out
}
