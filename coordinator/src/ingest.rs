//! Ingest and sampling: store a listing (idempotent by id and version) and, once
//! per surveillance round, decide whether it is inspected; a sampled listing
//! becomes a task with slot offers in the same transaction.

use crate::policy::CurrentPolicy;
use spotcheck_platform::outbox;
use spotcheck_shared::capacity::Throttle;
use spotcheck_shared::sampling::{decide, round_of};
use spotcheck_shared::{Listing, Stratum, TaskId};
use sqlx::PgConnection;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

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
    /// The capacity throttle in force, refreshed by the capacity monitor.
    pub throttle: Arc<RwLock<Throttle>>,
}

impl Sampler {
    /// The throttle in force now.
    pub fn throttle(&self) -> Throttle {
        self.throttle.read().expect("throttle lock").clone()
    }
}

/// Sampling-frame counts gathered during one transaction, written at its end in
/// key order so concurrent transactions never lock frame rows in opposite orders.
#[derive(Debug, Default)]
pub struct FrameTally(BTreeMap<(i64, String), (i64, f64, i64)>);

impl FrameTally {
    fn add(&mut self, round: i64, stratum: String, probability: f64, sampled: bool) {
        let entry = self.0.entry((round, stratum)).or_default();
        entry.0 += 1;
        entry.1 += probability;
        entry.2 += i64::from(sampled);
    }

    /// Adds the counts to `sampling_frames`.
    pub async fn flush(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        for ((round, stratum), (listings, expected, tasks)) in self.0 {
            sqlx::query(
                "INSERT INTO sampling_frames (round, stratum, listings, expected_tasks, tasks)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (round, stratum) DO UPDATE SET
                     listings = sampling_frames.listings + EXCLUDED.listings,
                     expected_tasks = sampling_frames.expected_tasks + EXCLUDED.expected_tasks,
                     tasks = sampling_frames.tasks + EXCLUDED.tasks",
            )
            .bind(round)
            .bind(stratum)
            .bind(listings)
            .bind(expected)
            .bind(tasks)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// A stored listing as the sampler needs it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The listing's id.
    pub listing_id: String,
    /// Its stored version.
    pub version: i64,
    /// Its stratum.
    pub stratum: Stratum,
    /// The risk signals present on it.
    pub signals: Vec<String>,
}

impl From<&Listing> for Candidate {
    fn from(l: &Listing) -> Self {
        Self {
            listing_id: l.listing_id.as_str().to_owned(),
            version: l.version,
            stratum: l.stratum(),
            signals: l.active_signals().map(str::to_owned).collect(),
        }
    }
}

/// Samples one listing for `round` and, if selected, creates its task and slot
/// offers. The caller marks the listing as looked at for the round and commits.
/// Returns whether a task was created.
pub async fn sample_into(
    conn: &mut PgConnection,
    sampler: &Sampler,
    throttle: &Throttle,
    policy: &CurrentPolicy,
    candidate: &Candidate,
    round: i64,
    frames: &mut FrameTally,
) -> anyhow::Result<bool> {
    let (inclusion, sampled) = decide(
        &policy.policy,
        throttle,
        &sampler.key,
        &candidate.listing_id,
        &candidate.stratum,
        candidate.signals.iter().map(String::as_str),
        round,
    );
    let mut created = false;
    if sampled {
        let task = TaskId::new();
        let inserted = sqlx::query(
            "INSERT INTO tasks (id, listing_id, listing_version, round, votes_required,
                 inclusion_probability, stratum, sampling, policy_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT ON CONSTRAINT tasks_listing_round_key DO NOTHING",
        )
        .bind(task.0)
        .bind(&candidate.listing_id)
        .bind(candidate.version)
        .bind(round)
        .bind(sampler.votes_required)
        .bind(inclusion.probability)
        .bind(candidate.stratum.key())
        .bind(serde_json::to_value(&inclusion)?)
        .bind(policy.id)
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 1 {
            outbox::offer_slots(conn, &[task], sampler.votes_required).await?;
            created = true;
        }
    }
    frames.add(
        round,
        candidate.stratum.key(),
        inclusion.probability,
        created,
    );
    metrics::counter!("spotcheck_listings_sampled_total").increment(1);
    if created {
        metrics::counter!("spotcheck_tasks_created_total").increment(1);
    }
    Ok(created)
}

/// Stores one listing and, if it is active and not yet looked at in the round of
/// `now_secs`, samples it. Runs in the caller's transaction; the caller flushes
/// `frames` before committing.
pub async fn ingest_one(
    conn: &mut PgConnection,
    sampler: &Sampler,
    throttle: &Throttle,
    policy: &CurrentPolicy,
    listing: &Listing,
    now_secs: i64,
    frames: &mut FrameTally,
) -> anyhow::Result<IngestReport> {
    let stratum = listing.stratum();
    let stored: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO listings (listing_id, version, seller_id, brand, category, region,
             seller_risk_tier, price, currency, title, description, image_urls, signals, active)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (listing_id) DO UPDATE SET
             version = EXCLUDED.version, seller_id = EXCLUDED.seller_id, brand = EXCLUDED.brand,
             category = EXCLUDED.category, region = EXCLUDED.region,
             seller_risk_tier = EXCLUDED.seller_risk_tier, price = EXCLUDED.price,
             currency = EXCLUDED.currency, title = EXCLUDED.title,
             description = EXCLUDED.description, image_urls = EXCLUDED.image_urls,
             signals = EXCLUDED.signals, active = EXCLUDED.active, updated_at = now()
         WHERE listings.version < EXCLUDED.version
         RETURNING last_round",
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
    .bind(listing.active)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((last_round,)) = stored else {
        return Ok(IngestReport {
            unchanged: 1,
            ..Default::default()
        });
    };
    let mut report = IngestReport {
        stored: 1,
        ..Default::default()
    };
    let round = round_of(now_secs, sampler.round_secs);
    if listing.active && last_round < round {
        let candidate = Candidate::from(listing);
        if sample_into(conn, sampler, throttle, policy, &candidate, round, frames).await? {
            report.tasks = 1;
        }
        sqlx::query("UPDATE listings SET last_round = $2 WHERE listing_id = $1")
            .bind(listing.listing_id.as_str())
            .bind(round)
            .execute(&mut *conn)
            .await?;
    }
    Ok(report)
}
