//! Ingest: store a listing (idempotent by id and version), sample it for the
//! current round, and create its task with slot offers in the same transaction.

use crate::policy::CurrentPolicy;
use spotcheck_platform::outbox;
use spotcheck_shared::sampling::{is_sampled, round_of};
use spotcheck_shared::{Listing, TaskId};
use sqlx::PgConnection;

/// What ingesting a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestReport {
    /// Listings new or at a newer version.
    pub stored: u64,
    /// Listings already stored at this version or a newer one.
    pub unchanged: u64,
    /// Tasks created (listings sampled this round).
    pub tasks: u64,
}

impl std::ops::AddAssign for IngestReport {
    fn add_assign(&mut self, o: Self) {
        self.stored += o.stored;
        self.unchanged += o.unchanged;
        self.tasks += o.tasks;
    }
}

/// How ingest samples and sizes tasks.
#[derive(Debug, Clone)]
pub struct Sampler {
    /// The keyed-hash secret.
    pub key: Vec<u8>,
    /// Round length in seconds.
    pub round_secs: i64,
    /// Votes each new task asks for.
    pub votes_required: i32,
}

/// Stores one listing and, if sampled in the round of `now_secs`, creates its task.
/// Runs in the caller's transaction.
pub async fn ingest_one(
    conn: &mut PgConnection,
    sampler: &Sampler,
    policy: &CurrentPolicy,
    listing: &Listing,
    now_secs: i64,
) -> anyhow::Result<IngestReport> {
    let stratum = listing.stratum();
    let stored: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO listings (listing_id, version, seller_id, brand, category, region,
             seller_risk_tier, price, currency, title, description, image_urls, signals)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (listing_id) DO UPDATE SET
             version = EXCLUDED.version, seller_id = EXCLUDED.seller_id, brand = EXCLUDED.brand,
             category = EXCLUDED.category, region = EXCLUDED.region,
             seller_risk_tier = EXCLUDED.seller_risk_tier, price = EXCLUDED.price,
             currency = EXCLUDED.currency, title = EXCLUDED.title,
             description = EXCLUDED.description, image_urls = EXCLUDED.image_urls,
             signals = EXCLUDED.signals, updated_at = now()
         WHERE listings.version < EXCLUDED.version
         RETURNING version",
    )
    .bind(listing.listing_id.as_str())
    .bind(listing.version)
    .bind(&listing.seller_id)
    .bind(&listing.brand)
    .bind(&stratum.category)
    .bind(&stratum.region)
    .bind(&stratum.seller_risk_tier)
    .bind(listing.price)
    .bind(&listing.currency)
    .bind(&listing.title)
    .bind(&listing.description)
    .bind(serde_json::to_value(&listing.image_urls)?)
    .bind(serde_json::to_value(&listing.signals)?)
    .fetch_optional(&mut *conn)
    .await?;
    if stored.is_none() {
        return Ok(IngestReport {
            unchanged: 1,
            ..Default::default()
        });
    }
    let mut report = IngestReport {
        stored: 1,
        ..Default::default()
    };
    let round = round_of(now_secs, sampler.round_secs);
    let inclusion = policy.policy.inclusion(&stratum, listing.active_signals());
    if inclusion.probability > 0.0
        && is_sampled(
            &sampler.key,
            listing.listing_id.as_str(),
            round,
            inclusion.probability,
        )
    {
        let task = TaskId::new();
        let created = sqlx::query(
            "INSERT INTO tasks (id, listing_id, listing_version, round, votes_required,
                 inclusion_probability, stratum, sampling, policy_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT ON CONSTRAINT tasks_listing_round_key DO NOTHING",
        )
        .bind(task.0)
        .bind(listing.listing_id.as_str())
        .bind(listing.version)
        .bind(round)
        .bind(sampler.votes_required)
        .bind(inclusion.probability)
        .bind(stratum.key())
        .bind(serde_json::to_value(&inclusion)?)
        .bind(policy.id)
        .execute(&mut *conn)
        .await?;
        if created.rows_affected() == 1 {
            outbox::offer_slots(conn, &[task], sampler.votes_required).await?;
            report.tasks = 1;
        }
    }
    Ok(report)
}
