//! The timed phases of one benchmark run: ingest through the real import path,
//! the real outbox relay until the outbox is empty, and the raw baseline that
//! publishes as many slot-offer-sized messages with confirms, without a database.

use anyhow::Context;
use coordinator::import::{ImportSummary, import_file};
use coordinator::ingest::Sampler;
use coordinator::relay::relay_once;
use indicatif::ProgressBar;
use spotcheck_platform::amqp::{Names, Publisher, ResilientPublisher};
use spotcheck_platform::outbox::slot_offer;
use spotcheck_shared::TaskId;
use sqlx::PgPool;
use std::path::Path;
use std::time::{Duration, Instant};

/// Imports the JSONL file at `path` (`coordinator import`'s own function), sampling
/// for the round of `now_secs`; returns what it did and how long it took.
pub async fn ingest(
    pool: &PgPool,
    sampler: &Sampler,
    path: &Path,
    batch: usize,
    now_secs: i64,
) -> anyhow::Result<(ImportSummary, Duration)> {
    let started = Instant::now();
    let summary = import_file(pool, sampler, path, batch, now_secs, &ProgressBar::hidden())
        .await
        .context("importing the listings")?;
    Ok((summary, started.elapsed()))
}

/// Runs the coordinator's relay step until the `expected` outbox rows are
/// published with confirms and deleted; returns how long that took.
pub async fn relay(
    pool: &PgPool,
    publisher: &ResilientPublisher,
    names: &Names,
    batch: i64,
    expected: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut published = 0;
    while published < expected {
        let n = relay_once(pool, publisher, names, None, batch)
            .await
            .context("relaying the outbox")?;
        anyhow::ensure!(
            n.messages > 0,
            "the relay found no rows after {published} of {expected} offers"
        );
        published += n.messages as u64;
    }
    Ok(started.elapsed())
}

/// `count` messages shaped like slot offers (same JSON, same size), for `queue`.
pub fn offer_like_messages(queue: &str, count: u64) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    (0..count)
        .map(|_| {
            let body = serde_json::to_vec(&slot_offer(TaskId::new()))?;
            Ok((queue.to_owned(), body))
        })
        .collect()
}

/// Publishes `messages` through the default exchange in batches of `batch`, each
/// published in full and then its confirms awaited, as the relay does; returns
/// how long that took.
pub async fn raw_publish(
    publisher: &Publisher,
    messages: &[(String, Vec<u8>)],
    batch: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    for chunk in messages.chunks(batch.max(1)) {
        publisher
            .publish_all("", chunk)
            .await
            .context("publishing the raw baseline")?;
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_messages_are_the_size_of_a_relayed_slot_offer() {
        let messages = offer_like_messages("q", 3).unwrap();
        assert_eq!(messages.len(), 3);
        // What the relay sends: the outbox's jsonb payload, re-serialised.
        let relayed = serde_json::to_vec(
            &serde_json::json!({"v": spotcheck_shared::messages::MESSAGE_VERSION, "task_id": TaskId::new()}),
        )
        .unwrap();
        for (queue, body) in &messages {
            assert_eq!(queue, "q");
            assert_eq!(body.len(), relayed.len());
        }
    }
}
