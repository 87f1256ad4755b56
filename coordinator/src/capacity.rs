//! The capacity monitor: measures the backlog and the volunteers' recent pace,
//! sets the throttle new tasks are sampled with, and records both for staff.

use spotcheck_platform::figures::REVIEW_VOTES;
use spotcheck_shared::capacity::{Capacity, CapacityPolicy, Throttle};
use sqlx::PgPool;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Shortest span the pace is measured over, so a few quick votes right after a
/// start do not read as a huge pace.
const MIN_SPAN_SECS: f64 = 60.0;

/// Reads the open work and the review votes of the last `window_secs` seconds:
/// the minutes the running count has passed come from `vote_minutes`, the votes
/// after its mark are counted live, so a run reads the same few rows however
/// fast votes come. The pace is measured over the span those votes actually
/// cover (from the oldest of them, at least a minute), not the whole window: a
/// system that started ten minutes ago has ten minutes of pace, not an hour's.
pub async fn measure(pool: &PgPool, window_secs: u64) -> sqlx::Result<Capacity> {
    // The mark as a value, so the tail's statement is planned for the few
    // seconds of votes it reads.
    let mark: String = sqlx::query_scalar(
        "SELECT coalesce((SELECT counted_to::text FROM running_counts WHERE name = 'review_votes'),
                         '-infinity')",
    )
    .fetch_one(pool)
    .await?;
    let (open_votes, votes_in_window, span): (i64, i64, f64) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH since AS (SELECT now() - make_interval(secs => $1::double precision) AS at),
              counted AS (
                 SELECT coalesce(sum(review_votes), 0) AS n, min(minute) AS first
                 FROM vote_minutes, since
                 WHERE minute >= date_trunc('minute', since.at) AND minute <= $2::timestamptz),
              tail AS (
                 SELECT count(*) AS n, min(v.created_at) AS first
                 FROM {REVIEW_VOTES}
                   v.created_at > greatest($2::timestamptz,
                                               now() - make_interval(secs => $1::double precision)))
         SELECT
            (SELECT coalesce(sum(greatest(votes_required - votes_counted, 0)), 0)::bigint
               FROM tasks WHERE state = 'open' AND kind = 'review'),
            (counted.n + tail.n)::bigint,
            coalesce(extract(epoch FROM now() - least(counted.first, tail.first)), 0)::float8
         FROM counted, tail",
        )))
        .bind(window_secs as f64)
        .bind(mark)
        .fetch_one(pool)
        .await?;
    let span = span.clamp(MIN_SPAN_SECS, window_secs.max(1) as f64);
    Ok(Capacity {
        open_votes: open_votes.max(0) as u64,
        votes_in_window: votes_in_window.max(0) as u64,
        window_secs: span.round() as u64,
    })
}

/// Measures, sets `throttle`, exports gauges and records the state for staff.
pub async fn refresh(
    pool: &PgPool,
    policy: &CapacityPolicy,
    window_secs: u64,
    throttle: &RwLock<Throttle>,
) -> anyhow::Result<Throttle> {
    spotcheck_platform::figures::advance_running_counts(pool).await?;
    let capacity = measure(pool, window_secs).await?;
    let fresh = Throttle::for_capacity(&capacity, policy);
    let hours = capacity.backlog_hours(policy.min_window_votes);
    let previous = std::mem::replace(
        &mut *throttle.write().expect("throttle lock"),
        fresh.clone(),
    );
    if previous.tiers != fresh.tiers {
        tracing::info!(tiers = ?fresh.tiers, factor = fresh.factor, backlog_hours = ?hours, "capacity throttle changed");
    }
    metrics::gauge!("spotcheck_backlog_votes").set(capacity.open_votes as f64);
    metrics::gauge!("spotcheck_votes_per_hour").set(capacity.votes_per_hour());
    metrics::gauge!("spotcheck_backlog_hours").set(hours.unwrap_or(0.0));
    metrics::gauge!("spotcheck_throttle_factor").set(fresh.factor);
    sqlx::query(
        "INSERT INTO capacity_state (id, capacity, throttle, backlog_hours, updated_at)
         VALUES (1, $1, $2, $3, now())
         ON CONFLICT (id) DO UPDATE SET capacity = EXCLUDED.capacity,
             throttle = EXCLUDED.throttle, backlog_hours = EXCLUDED.backlog_hours,
             updated_at = now()",
    )
    .bind(serde_json::to_value(capacity)?)
    .bind(serde_json::to_value(&fresh)?)
    .bind(hours)
    .execute(pool)
    .await?;
    record_sample(pool, &capacity, hours).await?;
    Ok(fresh)
}

/// Keeps the minute's backlog for the staff dashboards (every replica writes the
/// same minute's row; the last write wins) and forgets samples past 90 days.
async fn record_sample(pool: &PgPool, capacity: &Capacity, hours: Option<f64>) -> sqlx::Result<()> {
    sqlx::query(
        "WITH gone AS (DELETE FROM capacity_samples WHERE at < now() - interval '90 days')
         INSERT INTO capacity_samples (at, backlog_votes, backlog_hours, votes_per_hour)
         VALUES (date_trunc('minute', now()), $1, $2, $3)
         ON CONFLICT (at) DO UPDATE SET backlog_votes = EXCLUDED.backlog_votes,
             backlog_hours = EXCLUDED.backlog_hours, votes_per_hour = EXCLUDED.votes_per_hour",
    )
    .bind(capacity.open_votes as i64)
    .bind(hours)
    .bind(capacity.votes_per_hour())
    .execute(pool)
    .await?;
    Ok(())
}

/// Refreshes every `interval` until `cancel`.
pub async fn run(
    pool: PgPool,
    policy: CapacityPolicy,
    window_secs: u64,
    throttle: Arc<RwLock<Throttle>>,
    interval: Duration,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    while !cancel.is_cancelled() {
        let started = std::time::Instant::now();
        match refresh(&pool, &policy, window_secs, &throttle).await {
            Ok(_) => crate::ops::job_ran("capacity", started),
            Err(e) => tracing::warn!(error = %e, "capacity measurement failed"),
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    Ok(())
}
