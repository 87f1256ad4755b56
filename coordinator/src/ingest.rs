//! Ingest and sampling: store a listing (idempotent by id and version) and, once
//! per surveillance round, decide whether it is inspected; a sampled listing
//! becomes a task with slot offers in the same transaction.
//!
//! A batch costs a few statements, not a few per listing: the listings are
//! upserted with one `unnest` statement, the sampled ones' tasks inserted with
//! another, their offers with a third, and `last_round` set with a fourth.

use crate::policy::CurrentPolicy;
use spotcheck_platform::outbox;
use spotcheck_shared::capacity::Throttle;
use spotcheck_shared::sampling::{decide, round_of};
use spotcheck_shared::{Listing, Stratum, TaskId};
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use uuid::Uuid;

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

    /// Adds the counts to `sampling_frames`, in one statement that takes the
    /// rows in key order.
    pub async fn flush(self, conn: &mut PgConnection) -> sqlx::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let n = self.0.len();
        let (mut rounds, mut strata) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut listings, mut expected, mut tasks) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for ((round, stratum), (l, e, t)) in self.0 {
            rounds.push(round);
            strata.push(stratum);
            listings.push(l);
            expected.push(e);
            tasks.push(t);
        }
        sqlx::query(
            "INSERT INTO sampling_frames (round, stratum, listings, expected_tasks, tasks)
             SELECT f.round, f.stratum, f.listings, f.expected_tasks, f.tasks
             FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::float8[], $5::bigint[])
                 WITH ORDINALITY AS f(round, stratum, listings, expected_tasks, tasks, n)
             ORDER BY f.n
             ON CONFLICT (round, stratum) DO UPDATE SET
                 listings = sampling_frames.listings + EXCLUDED.listings,
                 expected_tasks = sampling_frames.expected_tasks + EXCLUDED.expected_tasks,
                 tasks = sampling_frames.tasks + EXCLUDED.tasks",
        )
        .bind(rounds)
        .bind(strata)
        .bind(listings)
        .bind(expected)
        .bind(tasks)
        .execute(&mut *conn)
        .await?;
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
    let created = sample_many(
        conn,
        sampler,
        throttle,
        policy,
        std::slice::from_ref(candidate),
        round,
        frames,
    )
    .await?;
    Ok(created == 1)
}

/// The task rows of one [`sample_many`] call, as columns for `unnest`.
#[derive(Default)]
struct TaskRows<'a> {
    ids: Vec<Uuid>,
    listing_ids: Vec<&'a str>,
    versions: Vec<i64>,
    probabilities: Vec<f64>,
    strata: Vec<String>,
    samplings: Vec<serde_json::Value>,
}

/// Samples each candidate for `round` and creates the tasks and slot offers of
/// those selected, as [`sample_into`] would one after another, in two statements
/// (three with the wake-up) however many there are. The caller marks them as
/// looked at for the round and commits. Returns how many tasks were created.
pub async fn sample_many(
    conn: &mut PgConnection,
    sampler: &Sampler,
    throttle: &Throttle,
    policy: &CurrentPolicy,
    candidates: &[Candidate],
    round: i64,
    frames: &mut FrameTally,
) -> anyhow::Result<u64> {
    let mut rows = TaskRows::default();
    let mut decided = Vec::with_capacity(candidates.len());
    for c in candidates {
        let (inclusion, sampled) = decide(
            &policy.policy,
            throttle,
            &sampler.key,
            &c.listing_id,
            &c.stratum,
            c.signals.iter().map(String::as_str),
            round,
        );
        let task = sampled.then(|| TaskId::new().0);
        if let Some(id) = task {
            rows.ids.push(id);
            rows.listing_ids.push(&c.listing_id);
            rows.versions.push(c.version);
            rows.probabilities.push(inclusion.probability);
            rows.strata.push(c.stratum.key());
            rows.samplings.push(serde_json::to_value(&inclusion)?);
        }
        decided.push((inclusion.probability, task));
    }
    let created: HashSet<Uuid> = if rows.ids.is_empty() {
        HashSet::new()
    } else {
        sqlx::query_scalar(
            "INSERT INTO tasks (id, listing_id, listing_version, round, votes_required,
                 inclusion_probability, stratum, sampling, policy_id)
             SELECT t.id, t.listing_id, t.listing_version, $4, $5, t.probability,
                 t.stratum, t.sampling, $9
             FROM unnest($1::uuid[], $2::text[], $3::bigint[], $6::float8[], $7::text[],
                 $8::jsonb[]) AS t(id, listing_id, listing_version, probability, stratum, sampling)
             ON CONFLICT ON CONSTRAINT tasks_listing_round_key DO NOTHING
             RETURNING id",
        )
        .bind(&rows.ids)
        .bind(&rows.listing_ids)
        .bind(&rows.versions)
        .bind(round)
        .bind(sampler.votes_required)
        .bind(&rows.probabilities)
        .bind(&rows.strata)
        .bind(&rows.samplings)
        .bind(policy.id)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };
    if !created.is_empty() {
        // In the candidates' order: offers go out in the order listings came in.
        let tasks: Vec<TaskId> = rows
            .ids
            .iter()
            .filter(|id| created.contains(id))
            .map(|id| TaskId(*id))
            .collect();
        outbox::offer_slots(conn, &tasks, sampler.votes_required).await?;
    }
    for (c, (probability, task)) in candidates.iter().zip(decided) {
        let made = task.is_some_and(|id| created.contains(&id));
        frames.add(round, c.stratum.key(), probability, made);
    }
    metrics::counter!("spotcheck_listings_sampled_total").increment(candidates.len() as u64);
    if !created.is_empty() {
        metrics::counter!("spotcheck_tasks_created_total").increment(created.len() as u64);
    }
    Ok(created.len() as u64)
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
    let mut report = IngestReport::default();
    for part in distinct_runs(listings) {
        report += ingest_distinct(conn, sampler, throttle, policy, part, now_secs, frames).await?;
    }
    Ok(report)
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
    // Rows are written in the order given; only new listings and newer versions
    // come back, with the round each was last looked at in.
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO listings (listing_id, version, seller_id, brand, category, region,
             seller_risk_tier, price, currency, title, description, image_urls, signals, active)
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
             $6::text[], $7::text[], $8::float8[], $9::text[], $10::text[], $11::text[],
             $12::jsonb[], $13::jsonb[], $14::bool[])
         ON CONFLICT (listing_id) DO UPDATE SET
             version = EXCLUDED.version, seller_id = EXCLUDED.seller_id, brand = EXCLUDED.brand,
             category = EXCLUDED.category, region = EXCLUDED.region,
             seller_risk_tier = EXCLUDED.seller_risk_tier, price = EXCLUDED.price,
             currency = EXCLUDED.currency, title = EXCLUDED.title,
             description = EXCLUDED.description, image_urls = EXCLUDED.image_urls,
             signals = EXCLUDED.signals, active = EXCLUDED.active, updated_at = now()
         WHERE listings.version < EXCLUDED.version
         RETURNING listing_id, last_round",
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
    .fetch_all(&mut *conn)
    .await?;
    let report = IngestReport {
        stored: stored.len() as u64,
        unchanged: (n - stored.len()) as u64,
        tasks: 0,
    };
    let round = round_of(now_secs, sampler.round_secs);
    let last_rounds: HashMap<String, i64> = stored.into_iter().collect();
    let due: Vec<Candidate> = listings
        .iter()
        .filter(|l| {
            l.active
                && last_rounds
                    .get(l.listing_id.as_str())
                    .is_some_and(|last| *last < round)
        })
        .map(Candidate::from)
        .collect();
    if due.is_empty() {
        return Ok(report);
    }
    let tasks = sample_many(conn, sampler, throttle, policy, &due, round, frames).await?;
    let ids: Vec<&str> = due.iter().map(|c| c.listing_id.as_str()).collect();
    sqlx::query("UPDATE listings SET last_round = $2 WHERE listing_id = ANY($1)")
        .bind(&ids)
        .bind(round)
        .execute(&mut *conn)
        .await?;
    Ok(IngestReport { tasks, ..report })
}
