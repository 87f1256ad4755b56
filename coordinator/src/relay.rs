//! The outbox relay: publishes committed outbox rows with publisher confirms and
//! deletes them once confirmed. Safe on every replica (`FOR UPDATE SKIP LOCKED`);
//! a crash between publish and delete re-publishes, never loses.

use spotcheck_platform::amqp::{Names, ResilientPublisher};
use spotcheck_platform::outbox::NOTIFY_CHANNEL;
use spotcheck_shared::messages::Topic;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Publishes up to `limit` outbox rows; returns how many went out.
pub async fn relay_once(
    pool: &PgPool,
    publisher: &ResilientPublisher,
    names: &Names,
    limit: i64,
) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(i64, String, serde_json::Value)> = sqlx::query_as(
        "SELECT id, topic, payload FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut messages = Vec::with_capacity(rows.len());
    for (id, topic, payload) in &rows {
        let queue = match Topic::parse(topic) {
            Some(Topic::Tasks) => names.tasks_queue(),
            Some(Topic::Votes) => names.votes_queue(),
            None => anyhow::bail!("outbox row {id} has unknown topic {topic:?}"),
        };
        messages.push((queue, serde_json::to_vec(payload)?));
    }
    publisher.publish_all("", &messages).await?;
    let ids: Vec<i64> = rows.iter().map(|(id, _, _)| *id).collect();
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!("spotcheck_outbox_published_total").increment(rows.len() as u64);
    Ok(rows.len())
}

/// Runs the relay until cancelled: drains the outbox, then waits for a NOTIFY
/// or the poll interval, whichever comes first.
pub async fn run(
    pool: PgPool,
    publisher: ResilientPublisher,
    names: Names,
    batch: i64,
    poll: Duration,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut listener = match PgListener::connect_with(&pool).await {
        Ok(mut l) => l.listen(NOTIFY_CHANNEL).await.map(|()| l).ok(),
        Err(_) => None,
    };
    let mut failures = 0u32;
    loop {
        match relay_once(&pool, &publisher, &names, batch).await {
            Ok(n) if n as i64 >= batch => {
                failures = 0;
                continue;
            }
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "outbox relay failed; will retry");
                if failures >= 30 {
                    return Err(e.context("outbox relay failed 30 times in a row"));
                }
            }
        }
        let wake = async {
            match listener.as_mut() {
                Some(l) => {
                    let _ = l.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = wake => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}
