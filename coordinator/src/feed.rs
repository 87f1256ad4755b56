//! The listing feed: listings the marketplace publishes to `<ns>.listings`.

use crate::consumer::{Handled, message_ref};
use crate::ingest::{FrameTally, Sampler, ingest_one};
use crate::policy::PolicyCache;
use lapin::message::Delivery;
use spotcheck_shared::Listing;
use sqlx::PgPool;

/// Ingests one feed message: malformed ones are dead-lettered at once.
pub async fn handle(
    pool: &PgPool,
    sampler: &Sampler,
    policies: &PolicyCache,
    delivery: Delivery,
) -> (Delivery, Handled) {
    let listing = match Listing::from_json(&delivery.data) {
        Ok(listing) => listing,
        Err(e) => {
            tracing::warn!(message = %message_ref(&delivery), error = %e, "malformed listing on the feed");
            return (delivery, Handled::DeadLetter(e.to_string()));
        }
    };
    let result = async {
        let policy = policies.get().await?;
        let mut tx = pool.begin().await?;
        let mut frames = FrameTally::default();
        let report = ingest_one(
            &mut tx,
            sampler,
            &sampler.throttle(),
            &policy,
            &listing,
            chrono::Utc::now().timestamp(),
            &mut frames,
        )
        .await?;
        frames.flush(&mut tx).await?;
        tx.commit().await?;
        anyhow::Ok(report)
    }
    .await;
    match result {
        Ok(report) => {
            tracing::debug!(listing.id = %listing.listing_id, tasks = report.tasks, "ingested");
            (delivery, Handled::Ack)
        }
        Err(e) => (delivery, Handled::Retry(e)),
    }
}
