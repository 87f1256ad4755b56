//! The sweep of unannounced votes. A worker-api announces the votes it counted
//! by a confirmed publish after their commit (the outbox when the broker
//! refuses); a worker-api that stops between the two leaves votes the
//! aggregator never hears of. They are still unaccounted in the record, so this
//! sweep reads the votes stamped since its mark and at least the grace ago,
//! and announces the unaccounted ones through the outbox. Replicas take turns
//! on the mark's row lock; the aggregator accounts each vote once, so a vote
//! announced twice (its first announcement still queued after the grace) costs
//! a second look, never a second count.

use spotcheck_platform::{figures, outbox};
use spotcheck_shared::messages::{Topic, VoteRecorded, VotesRecorded};
use spotcheck_shared::{TaskId, UserId};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Votes one announcement names at most.
const PER_EVENT: usize = 1000;

/// One sweep: announces the unaccounted votes stamped after the mark and
/// before `grace` ago (and before the start of the oldest transaction writing
/// to the database, whose votes may not be visible yet), then moves the mark
/// there. Returns how many votes it announced.
pub async fn sweep(pool: &PgPool, grace: Duration) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    // The mark as text (a value, so the read below is planned for its range).
    let from: String = sqlx::query_scalar(
        "SELECT checked_to::text FROM figure_marks WHERE name = 'votes_announced' FOR UPDATE",
    )
    .fetch_one(&mut *tx)
    .await?;
    let until = figures::writers_bound(&mut tx, grace.as_secs_f64()).await?;
    let votes: Vec<(Uuid, Uuid, Uuid)> = sqlx::query_as(
        "SELECT id, task_id, volunteer_id FROM votes
         WHERE created_at > $1::timestamptz AND created_at <= $2 AND accounted_at IS NULL
         ORDER BY created_at, id",
    )
    .bind(&from)
    .bind(until)
    .fetch_all(&mut *tx)
    .await?;
    let events: Vec<VotesRecorded> = votes
        .chunks(PER_EVENT)
        .map(|chunk| {
            VotesRecorded::new(
                chunk
                    .iter()
                    .map(|&(vote, task, volunteer)| {
                        VoteRecorded::new(TaskId(task), vote, UserId(volunteer))
                    })
                    .collect(),
            )
        })
        .collect();
    outbox::enqueue_many(&mut tx, Topic::Votes, &events).await?;
    sqlx::query(
        "UPDATE figure_marks SET checked_to = greatest(checked_to, $1) WHERE name = 'votes_announced'",
    )
    .bind(until)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if !votes.is_empty() {
        metrics::counter!("spotcheck_votes_announced_total", "how" => "sweep")
            .increment(votes.len() as u64);
        tracing::warn!(
            votes = votes.len(),
            "announced votes whose worker-api never did"
        );
    }
    Ok(votes.len())
}

/// Sweeps every `interval` until cancelled.
pub async fn run(
    pool: PgPool,
    interval: Duration,
    grace: Duration,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    crate::periodic::every(
        "vote_sweep",
        "sweep of unannounced votes",
        interval,
        cancel,
        || async {
            sweep(&pool, grace).await?;
            Ok(false)
        },
    )
    .await
}
