//! Sampling candidates: the keyed draw for a round, and the tasks and slot offers
//! of those selected, written with one statement for any number of candidates.

use super::{FrameTally, Sampler};
use crate::policy::CurrentPolicy;
use spotcheck_platform::outbox;
use spotcheck_shared::capacity::Throttle;
use spotcheck_shared::sampling::decide;
use spotcheck_shared::{Listing, Stratum, TaskId};
use sqlx::PgConnection;
use std::collections::HashSet;
use uuid::Uuid;

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
/// those selected, in two statements (three with the relay's wake-up) however
/// many there are. The caller marks them as
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
