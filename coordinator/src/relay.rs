//! The outbox relay: publishes committed outbox rows with publisher confirms and
//! deletes them once confirmed. Safe on every replica (`FOR UPDATE SKIP LOCKED`);
//! a crash between publish and delete re-publishes, never loses.

use spotcheck_platform::amqp::{Names, ResilientPublisher};
use spotcheck_platform::lease::LeaseStore;
use spotcheck_platform::outbox::NOTIFY_CHANNEL;
use spotcheck_shared::TaskId;
use spotcheck_shared::messages::{EnforcementEvent, Topic};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::time::{Duration, Instant};

/// How long the relay may fail without a break before the process gives up.
const GIVE_UP: Duration = Duration::from_secs(120);
use tokio_util::sync::CancellationToken;

/// What one [`relay_once`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    /// Outbox rows published and deleted.
    pub rows: usize,
    /// Messages published (a row stands for `copies` identical ones).
    pub messages: usize,
}

/// An outbox row as the relay reads it: id, topic, payload (JSON text),
/// copies, and the task id or event kind the payload names.
type OutboxRow = (i64, String, String, i32, Option<String>, Option<String>);

/// Publishes up to `limit` outbox rows. With a lease store, the slot offers
/// published are counted there for the audit.
pub async fn relay_once(
    pool: &PgPool,
    publisher: &ResilientPublisher,
    names: &Names,
    leases: Option<&LeaseStore>,
    limit: i64,
) -> anyhow::Result<Relayed> {
    let mut tx = pool.begin().await?;
    // The payload goes out as PostgreSQL writes it: no parse and re-encode here.
    let rows: Vec<OutboxRow> = sqlx::query_as(
        "SELECT id, topic, payload::text, copies, payload->>'task_id', payload->>'kind'
         FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(Relayed::default());
    }
    // Work messages go to their queues through the default exchange;
    // enforcement events to the enforcement exchange, routed by kind.
    let mut messages = Vec::with_capacity(rows.len());
    let mut events = Vec::new();
    let mut offered: Vec<TaskId> = Vec::new();
    for (id, topic, payload, copies, task, kind) in rows.iter() {
        let copies = usize::try_from(*copies).unwrap_or(1).max(1);
        let queue = match Topic::parse(topic) {
            Some(Topic::Tasks) => {
                if let Some(task) = task.as_deref().and_then(|t| t.parse::<TaskId>().ok()) {
                    offered.extend(std::iter::repeat_n(task, copies));
                }
                names.tasks_queue()
            }
            Some(Topic::Votes) => names.votes_queue(),
            Some(Topic::Enforcement) => {
                let kind = kind.as_deref().unwrap_or("unknown");
                let key = EnforcementEvent::routing_key(kind);
                events.extend(std::iter::repeat_n(
                    (key, payload.as_bytes().to_vec()),
                    copies,
                ));
                continue;
            }
            None => anyhow::bail!("outbox row {id} has unknown topic {topic:?}"),
        };
        messages.extend(std::iter::repeat_n(
            (queue, payload.as_bytes().to_vec()),
            copies,
        ));
    }
    let published = messages.len() + events.len();
    if !messages.is_empty() {
        publisher.publish_all("", &messages).await?;
    }
    if !events.is_empty() {
        publisher
            .publish_all(&names.enforcement_exchange(), &events)
            .await?;
    }
    let ids: Vec<i64> = rows.iter().map(|(id, ..)| *id).collect();
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    // Counted after the commit: a crash before it under-counts, which the
    // audit can only answer with a duplicate offer, never a lost one.
    if let Some(leases) = leases
        && let Err(e) = leases.count_offers(&offered).await
    {
        tracing::warn!(error = %e, "could not count published offers");
    }
    metrics::counter!("spotcheck_outbox_published_total").increment(published as u64);
    Ok(Relayed {
        rows: rows.len(),
        messages: published,
    })
}

/// Runs the relay until cancelled: drains the outbox, then waits for a NOTIFY
/// or the poll interval, whichever comes first.
pub async fn run(
    pool: PgPool,
    publisher: ResilientPublisher,
    names: Names,
    leases: LeaseStore,
    batch: i64,
    poll: Duration,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut listener = match PgListener::connect_with(&pool).await {
        Ok(mut l) => l.listen(NOTIFY_CHANNEL).await.map(|()| l).ok(),
        Err(_) => None,
    };
    // Failures back off (ignoring NOTIFY, which keeps coming under load) and the
    // relay only gives up after failing for `GIVE_UP` on end, well beyond a
    // broker reconnect.
    let mut failing_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        match relay_once(&pool, &publisher, &names, Some(&leases), batch).await {
            Ok(r) if r.rows as i64 >= batch => {
                failing_since = None;
                continue;
            }
            Ok(_) => failing_since = None,
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                tracing::warn!(error = %e, failing_for = ?since.elapsed(), "outbox relay failed; will retry");
                if since.elapsed() >= GIVE_UP {
                    return Err(e.context(format!("outbox relay failed for {GIVE_UP:?}")));
                }
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        backoff = Duration::from_millis(100);
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
