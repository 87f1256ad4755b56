//! Complaints in PostgreSQL: the out-of-round inspection a complaint about a
//! listing opens at once (a review task with inclusion probability 1 and its
//! slot offers, in the caller's transaction), the boost a complaint gives the
//! seller's other listings, and a brand owner's record of decided complaints.

use crate::outbox;
use serde_json::json;
use spotcheck_shared::TaskId;
use spotcheck_shared::complaint::{
    COMPLAINT_SIGNAL, PrecisionPrior, boosts_listing, credibility, inspection_round,
};
use spotcheck_shared::sampling::{Inclusion, Stratum};
use sqlx::PgConnection;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The most of a seller's listings one complaint looks at for its boost; a
/// storefront larger than this has its first listings (by id) considered.
pub const MAX_BOOSTED_LISTINGS: i64 = 10_000;

/// A listing as an inspection needs it: version, stratum fields and how many
/// out-of-round inspections it had.
type ListingRow = (i64, String, String, String, i64);

/// The open out-of-round inspection of `listing_id`, or a new one: a review
/// task of origin `complaint`, sampled with probability 1 (it stays out of
/// prevalence estimates, which read round tasks only), asking
/// `votes_required` votes, with its slot offers in the outbox. Runs in the
/// caller's transaction; complaints of several brand owners about one listing
/// share its open inspection.
pub async fn open_inspection(
    conn: &mut PgConnection,
    listing_id: &str,
    votes_required: i32,
) -> sqlx::Result<TaskId> {
    let open: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM tasks
         WHERE listing_id = $1 AND origin = 'complaint' AND kind = 'review' AND state = 'open'
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(listing_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = open {
        return Ok(TaskId(id));
    }
    let (version, category, region, tier, previous): ListingRow = sqlx::query_as(
        "SELECT l.version, l.category, l.region, l.seller_risk_tier,
                    (SELECT count(*) FROM tasks t
                     WHERE t.listing_id = l.listing_id AND t.origin = 'complaint')
             FROM listings l WHERE l.listing_id = $1",
    )
    .bind(listing_id)
    .fetch_one(&mut *conn)
    .await?;
    let stratum = Stratum {
        category,
        region,
        seller_risk_tier: tier,
    };
    let inclusion = Inclusion {
        probability: 1.0,
        rule_index: None,
        base_rate: 1.0,
        boosts: BTreeMap::new(),
        rule: None,
        throttle: None,
    };
    let mut sampling =
        serde_json::to_value(&inclusion).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sampling["origin"] = json!("complaint");
    let round = inspection_round(previous);
    let task = TaskId::new();
    let created: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO tasks (id, listing_id, listing_version, round, votes_required,
             inclusion_probability, stratum, sampling, origin)
         VALUES ($1, $2, $3, $4, $5, 1, $6, $7, 'complaint')
         ON CONFLICT ON CONSTRAINT tasks_listing_round_key DO NOTHING
         RETURNING id",
    )
    .bind(task.0)
    .bind(listing_id)
    .bind(version)
    .bind(round)
    .bind(votes_required)
    .bind(stratum.key())
    .bind(sampling)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(id) = created else {
        // Another brand owner's complaint made this inspection a moment ago.
        let id: Uuid =
            sqlx::query_scalar("SELECT id FROM tasks WHERE listing_id = $1 AND round = $2")
                .bind(listing_id)
                .bind(round)
                .fetch_one(&mut *conn)
                .await?;
        return Ok(TaskId(id));
    };
    outbox::offer_slots(conn, &[TaskId(id)], votes_required).await?;
    metrics::counter!("spotcheck_complaint_inspections_total").increment(1);
    Ok(TaskId(id))
}

/// A brand owner's decided complaints: (upheld, decided).
pub async fn owner_record(conn: &mut PgConnection, owner: Uuid) -> sqlx::Result<(u64, u64)> {
    let (upheld, decided): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'upheld'),
                count(*) FILTER (WHERE status IN ('upheld', 'rejected'))
         FROM complaints WHERE brand_owner = $1",
    )
    .bind(owner)
    .fetch_one(conn)
    .await?;
    Ok((upheld.max(0) as u64, decided.max(0) as u64))
}

/// Records the [`COMPLAINT_SIGNAL`] on the active listings of `seller_id`
/// other than `except`, each when the complaint's draw for it falls below
/// `credibility` (see [`spotcheck_shared::complaint`]); the next surveillance
/// round samples them with the boost staff set for that signal. Listings that
/// carry the signal already are left alone; rows are locked in id order, as
/// ingest takes them. Returns how many listings got the signal.
pub async fn boost_seller_listings(
    conn: &mut PgConnection,
    complaint: Uuid,
    seller_id: &str,
    except: Option<&str>,
    credibility: f64,
) -> sqlx::Result<u64> {
    let candidates: Vec<String> = sqlx::query_scalar(
        "SELECT listing_id FROM listings
         WHERE seller_id = $1 AND active AND listing_id IS DISTINCT FROM $2
           AND NOT coalesce(signals @> jsonb_build_object($3::text, true), false)
         ORDER BY listing_id LIMIT $4",
    )
    .bind(seller_id)
    .bind(except)
    .bind(COMPLAINT_SIGNAL)
    .bind(MAX_BOOSTED_LISTINGS)
    .fetch_all(&mut *conn)
    .await?;
    let key = complaint.as_bytes();
    let chosen: Vec<&str> = candidates
        .iter()
        .map(String::as_str)
        .filter(|l| boosts_listing(key, l, credibility))
        .collect();
    if chosen.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "WITH locked AS (SELECT listing_id FROM listings WHERE listing_id = ANY($1)
                         ORDER BY listing_id FOR NO KEY UPDATE)
         UPDATE listings l SET signals = l.signals || jsonb_build_object($2::text, true)
         FROM locked WHERE l.listing_id = locked.listing_id",
    )
    .bind(&chosen)
    .bind(COMPLAINT_SIGNAL)
    .execute(&mut *conn)
    .await?;
    metrics::counter!("spotcheck_complaint_boosted_listings_total").increment(done.rows_affected());
    Ok(done.rows_affected())
}

/// The credibility of `owner` now (their record and the default prior).
pub async fn owner_credibility(conn: &mut PgConnection, owner: Uuid) -> sqlx::Result<f64> {
    let (upheld, decided) = owner_record(conn, owner).await?;
    Ok(credibility(upheld, decided, &PrecisionPrior::default()))
}
