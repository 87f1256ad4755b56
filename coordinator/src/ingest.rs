//! Ingest and sampling: store a listing (idempotent by id and version) and, once
//! per surveillance round, decide whether it is inspected; a sampled listing
//! becomes a task with slot offers in the same transaction.
//!
//! A batch costs a handful of statements, not a few per listing: the listings
//! are upserted with one `unnest` statement (a new listing stored as looked at
//! in the round), the tasks of those sampled inserted with another, their slot
//! offers with a third, `last_round` of the newer versions due set with a
//! fourth and the sampling frame with a fifth.

mod frames;
mod sample;

pub use frames::FrameTally;
pub use sample::{Candidate, sample_many};
use spotcheck_shared::complaint::COMPLAINT_SIGNAL;

use crate::policy::CurrentPolicy;
use spotcheck_shared::capacity::Throttle;
use spotcheck_shared::sampling::round_of;
use spotcheck_shared::{Listing, Stratum};
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};
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
    ingest_many(
        conn,
        sampler,
        throttle,
        policy,
        std::slice::from_ref(listing),
        now_secs,
        frames,
    )
    .await
}

/// Stores the listings and samples those due, exactly as [`ingest_one`] would one
/// after another, with a few statements per batch instead of a few per listing.
/// Runs in the caller's transaction; the caller flushes `frames` before committing.
pub async fn ingest_many(
    conn: &mut PgConnection,
    sampler: &Sampler,
    throttle: &Throttle,
    policy: &CurrentPolicy,
    listings: &[Listing],
    now_secs: i64,
    frames: &mut FrameTally,
) -> anyhow::Result<IngestReport> {
    let marked = seller_records(conn, listings).await?;
    let listings = marked.as_deref().unwrap_or(listings);
    let mut report = IngestReport::default();
    for part in distinct_runs(listings) {
        report += ingest_distinct(conn, sampler, throttle, policy, part, now_secs, frames).await?;
    }
    Ok(report)
}

/// The signal a listing of a permanently banned seller carries.
pub const BANNED_SELLER_SIGNAL: &str = "banned_seller";

/// The listings as the records already stored have them, when any record
/// matters: the tier staff set or strikes gave a seller replaces the feed's (so
/// a seller with strikes is inspected more), a banned seller's listings carry
/// the [`BANNED_SELLER_SIGNAL`], and a listing a brand owner's complaint boosted
/// keeps its complaint signal through the feed's newer versions. One statement
/// for the batch; `None` when nothing changes.
async fn seller_records(
    conn: &mut PgConnection,
    listings: &[Listing],
) -> anyhow::Result<Option<Vec<Listing>>> {
    let ids: Vec<&str> = listings.iter().map(|l| l.listing_id.as_str()).collect();
    let sellers: Vec<&str> = listings.iter().map(|l| l.seller_id.as_str()).collect();
    // Listing, the seller's tier (when its record matters), banned, complaint-boosted.
    let records: Vec<(String, Option<String>, bool, bool)> = sqlx::query_as(
        "SELECT u.listing_id, coalesce(s.tier_override, s.derived_tier), coalesce(s.banned, false),
                coalesce((l.signals ->> $3)::boolean, false)
         FROM unnest($1::text[], $2::text[]) AS u(listing_id, seller_id)
         -- looked up by key, each (lateral, kept apart by LIMIT): a join planned
         -- over lagging statistics hashed the whole listings table every batch
         LEFT JOIN LATERAL (SELECT * FROM sellers s WHERE s.seller_id = u.seller_id
             AND (s.tier_override IS NOT NULL OR s.derived_tier <> 'standard' OR s.banned)
             LIMIT 1) s ON true
         LEFT JOIN LATERAL (SELECT l.signals FROM listings l WHERE l.listing_id = u.listing_id
             LIMIT 1) l ON true
         WHERE s.seller_id IS NOT NULL OR coalesce((l.signals ->> $3)::boolean, false)",
    )
    .bind(&ids)
    .bind(&sellers)
    .bind(COMPLAINT_SIGNAL)
    .fetch_all(&mut *conn)
    .await?;
    if records.is_empty() {
        return Ok(None);
    }
    let records: HashMap<String, (Option<String>, bool, bool)> = records
        .into_iter()
        .map(|(listing, tier, banned, boosted)| (listing, (tier, banned, boosted)))
        .collect();
    let mut marked = listings.to_vec();
    for listing in &mut marked {
        let Some((tier, banned, boosted)) = records.get(listing.listing_id.as_str()) else {
            continue;
        };
        if let Some(tier) = tier {
            listing.seller_risk_tier = Some(tier.clone());
        }
        if *banned {
            listing
                .signals
                .insert(BANNED_SELLER_SIGNAL.to_owned(), true);
        }
        if *boosted {
            listing.signals.insert(COMPLAINT_SIGNAL.to_owned(), true);
        }
    }
    Ok(Some(marked))
}

/// Splits `listings` into consecutive runs in which no listing id repeats: an
/// upsert may touch a row only once per statement, and a later version of a
/// listing must see the earlier one stored (and sampled) first.
fn distinct_runs(listings: &[Listing]) -> Vec<&[Listing]> {
    let mut runs = Vec::new();
    let mut seen = HashSet::new();
    let mut start = 0;
    for (i, listing) in listings.iter().enumerate() {
        if !seen.insert(listing.listing_id.as_str()) {
            runs.push(&listings[start..i]);
            seen.clear();
            seen.insert(listing.listing_id.as_str());
            start = i;
        }
    }
    if start < listings.len() {
        runs.push(&listings[start..]);
    }
    runs
}

/// [`ingest_many`] for listings with distinct ids.
async fn ingest_distinct(
    conn: &mut PgConnection,
    sampler: &Sampler,
    throttle: &Throttle,
    policy: &CurrentPolicy,
    listings: &[Listing],
    now_secs: i64,
    frames: &mut FrameTally,
) -> anyhow::Result<IngestReport> {
    let n = listings.len();
    let strata: Vec<Stratum> = listings.iter().map(Listing::stratum).collect();
    let mut images = Vec::with_capacity(n);
    let mut signals = Vec::with_capacity(n);
    for l in listings {
        images.push(serde_json::to_value(&l.image_urls)?);
        signals.push(serde_json::to_value(&l.signals)?);
    }
    let column = |f: fn(&Listing) -> &str| listings.iter().map(f).collect::<Vec<_>>();
    let round = round_of(now_secs, sampler.round_secs);
    // Only new listings and newer versions come back. A new active listing is
    // due for this round, so it is stored as looked at in it (one write, not
    // an insert and then an update of every index); a newer version comes back
    // with the round it was last looked at in, unchanged.
    let stored: Vec<(String, i64, bool, String, String, f64)> = sqlx::query_as(
        "INSERT INTO listings (listing_id, version, seller_id, brand, category, region,
             seller_risk_tier, price, currency, title, description, image_urls, signals, active,
             last_round)
         SELECT u.*, CASE WHEN u.active THEN $15 ELSE -1 END
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
             $6::text[], $7::text[], $8::float8[], $9::text[], $10::text[], $11::text[],
             $12::jsonb[], $13::jsonb[], $14::bool[])
             AS u(listing_id, version, seller_id, brand, category, region, seller_risk_tier,
                  price, currency, title, description, image_urls, signals, active)
         ORDER BY 1 -- rows locked in id order: concurrent imports cannot deadlock
         ON CONFLICT (listing_id) DO UPDATE SET
             version = EXCLUDED.version, seller_id = EXCLUDED.seller_id, brand = EXCLUDED.brand,
             category = EXCLUDED.category, region = EXCLUDED.region,
             seller_risk_tier = EXCLUDED.seller_risk_tier, price = EXCLUDED.price,
             currency = EXCLUDED.currency, title = EXCLUDED.title,
             description = EXCLUDED.description, image_urls = EXCLUDED.image_urls,
             signals = EXCLUDED.signals, active = EXCLUDED.active, updated_at = now()
         WHERE listings.version < EXCLUDED.version
           -- a gold task's listing stays as staff stored it, and never sampled
           AND NOT EXISTS (SELECT 1 FROM tasks g
                           WHERE g.listing_id = listings.listing_id AND g.kind = 'gold')
         -- xmax is 0 only on a row this statement inserted (not on a new version)
         RETURNING listing_id, last_round, xmax = 0, category, currency, price",
    )
    .bind(column(|l| l.listing_id.as_str()))
    .bind(listings.iter().map(|l| l.version).collect::<Vec<_>>())
    .bind(column(|l| &l.seller_id))
    .bind(column(|l| &l.brand))
    .bind(
        strata
            .iter()
            .map(|s| s.category.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(strata.iter().map(|s| s.region.as_str()).collect::<Vec<_>>())
    .bind(
        strata
            .iter()
            .map(|s| s.seller_risk_tier.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(listings.iter().map(|l| l.price).collect::<Vec<_>>())
    .bind(column(|l| &l.currency))
    .bind(column(|l| &l.title))
    .bind(column(|l| &l.description))
    .bind(images)
    .bind(signals)
    .bind(listings.iter().map(|l| l.active).collect::<Vec<_>>())
    .bind(round)
    .fetch_all(&mut *conn)
    .await?;
    let report = IngestReport {
        stored: stored.len() as u64,
        unchanged: (n - stored.len()) as u64,
        tasks: 0,
    };
    add_prices(conn, &stored).await?;
    // Due: new (already marked for the round above), or a newer version of a
    // listing not yet looked at in this round (marked below).
    let stored: HashMap<String, (i64, bool)> = stored
        .into_iter()
        .map(|(id, last, inserted, ..)| (id, (last, inserted)))
        .collect();
    let mut due = Vec::new();
    let mut to_mark = Vec::new();
    for l in listings.iter().filter(|l| l.active) {
        match stored.get(l.listing_id.as_str()) {
            Some((_, true)) => due.push(Candidate::from(l)),
            Some((last, false)) if *last < round => {
                due.push(Candidate::from(l));
                to_mark.push(l.listing_id.as_str());
            }
            _ => {}
        }
    }
    if due.is_empty() {
        return Ok(report);
    }
    let tasks = sample_many(conn, sampler, throttle, policy, &due, round, frames).await?;
    if !to_mark.is_empty() {
        sqlx::query("UPDATE listings SET last_round = $2 WHERE listing_id = ANY($1)")
            .bind(&to_mark)
            .bind(round)
            .execute(&mut *conn)
            .await?;
    }
    Ok(IngestReport { tasks, ..report })
}

/// Adds the prices of newly stored listing versions to their categories' typical
/// prices (one upsert per batch, rows taken in key order so concurrent batches
/// cannot deadlock).
async fn add_prices(
    conn: &mut PgConnection,
    stored: &[(String, i64, bool, String, String, f64)],
) -> sqlx::Result<()> {
    let mut sums: std::collections::BTreeMap<(&str, &str), (i64, f64)> = Default::default();
    for (_, _, _, category, currency, price) in stored {
        if *price > 0.0 && price.is_finite() {
            let sum = sums.entry((category, currency)).or_default();
            sum.0 += 1;
            sum.1 += price.ln();
        }
    }
    if sums.is_empty() {
        return Ok(());
    }
    let (keys, figures): (Vec<_>, Vec<_>) = sums.into_iter().unzip();
    let (categories, currencies): (Vec<&str>, Vec<&str>) = keys.into_iter().unzip();
    let (counts, logs): (Vec<i64>, Vec<f64>) = figures.into_iter().unzip();
    sqlx::query(
        "INSERT INTO category_prices (category, currency, n, sum_ln)
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::float8[])
         ORDER BY 1, 2
         ON CONFLICT (category, currency) DO UPDATE
             SET n = category_prices.n + EXCLUDED.n,
                 sum_ln = category_prices.sum_ln + EXCLUDED.sum_ln",
    )
    .bind(categories)
    .bind(currencies)
    .bind(counts)
    .bind(logs)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<'a>(runs: &[&'a [Listing]]) -> Vec<Vec<&'a str>> {
        runs.iter()
            .map(|r| r.iter().map(|l| l.listing_id.as_str()).collect())
            .collect()
    }

    #[test]
    fn a_batch_is_split_where_a_listing_id_comes_again() {
        let market: Vec<Listing> = spotcheck_simulation::demo::generate(3, 3)
            .into_iter()
            .map(|d| d.listing)
            .collect();
        let (a, b, c) = (&market[0], &market[1], &market[2]);
        let mut newer_a = a.clone();
        newer_a.version += 1;
        let batch = vec![a.clone(), b.clone(), newer_a, c.clone(), a.clone()];
        let (a, b, c) = (
            a.listing_id.as_str(),
            b.listing_id.as_str(),
            c.listing_id.as_str(),
        );
        assert_eq!(
            ids(&distinct_runs(&batch)),
            vec![vec![a, b], vec![a, c], vec![a]]
        );
        assert_eq!(ids(&distinct_runs(&market[..])), vec![vec![a, b, c]]);
        assert!(distinct_runs(&[]).is_empty());
    }
}
