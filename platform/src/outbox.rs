//! Writing to the transactional outbox: a row per message, in the caller's
//! transaction, published later by the coordinator's relay.

use serde::Serialize;
use spotcheck_shared::TaskId;
use spotcheck_shared::messages::{MESSAGE_VERSION, SlotOffer, Topic};
use sqlx::PgConnection;

/// The channel the relay listens on to wake up early.
pub const NOTIFY_CHANNEL: &str = "spotcheck_outbox";

/// Adds one message per payload to the outbox in one statement, and wakes the
/// relay once at commit (never once per message: PostgreSQL serialises the
/// commits of notifying transactions).
pub async fn enqueue_many<T: Serialize>(
    conn: &mut PgConnection,
    topic: Topic,
    payloads: &[T],
) -> sqlx::Result<()> {
    if payloads.is_empty() {
        return Ok(());
    }
    let payloads = payloads
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("INSERT INTO outbox (topic, payload) SELECT $1, p FROM unnest($2::jsonb[]) AS p")
        .bind(topic.as_str())
        .bind(payloads)
        .execute(&mut *conn)
        .await?;
    notify(conn).await
}

/// The SQL of the listing as a volunteer sees it (an `OfferedListing`, with its
/// category's typical price and its present signals), for a listing row `l`.
#[macro_export]
macro_rules! offered_listing_sql {
    () => {
        "jsonb_build_object(
             'listing_id', l.listing_id, 'title', l.title, 'description', l.description,
             'brand', l.brand, 'category', l.category, 'region', l.region, 'price', l.price,
             'currency', l.currency, 'image_urls', l.image_urls, 'seller_id', l.seller_id,
             'typical_price', (SELECT exp(c.sum_ln / c.n) FROM category_prices c
                               WHERE c.category = l.category AND c.currency = l.currency),
             'signals', (SELECT coalesce(jsonb_agg(s.k ORDER BY s.k), '[]'::jsonb)
                         FROM jsonb_each(l.signals) AS s(k, v) WHERE s.v = 'true'::jsonb))"
    };
}

/// The SQL of a slot offer's payload (a [`SlotOffer`] with the claim's
/// snapshot), for a task row `t` joined with its listing row `l`.
#[macro_export]
macro_rules! offer_payload_sql {
    () => {
        concat!(
            "jsonb_build_object('v', 1, 'task_id', t.id, 'required', t.votes_required,
                 'counted', t.votes_counted, 'listing', ",
            $crate::offered_listing_sql!(),
            ")"
        )
    };
}

/// Adds `count` slot offers for each entry of `task_ids` whose task is an open
/// review task; closed tasks get none, and gold tasks are never offered (they are
/// served from PostgreSQL). An id listed twice gets twice the offers (one per expired lease).
/// The offers are written task after task in the order given, so the relay
/// publishes them in that order. Returns how many offers were added.
pub async fn offer_slots(
    conn: &mut PgConnection,
    task_ids: &[TaskId],
    count: i32,
) -> sqlx::Result<u64> {
    if count < 1 {
        return Ok(0);
    }
    let ids: Vec<uuid::Uuid> = task_ids.iter().map(|t| t.0).collect();
    // One row per entry, standing for `count` identical offers (see `copies`).
    // Each task is looked up by its key (a lateral join, kept apart from the
    // outer query by its LIMIT): a plain join, planned over statistics that lag
    // a fast-growing table, hashed every open task.
    let done = sqlx::query(concat!(
        "INSERT INTO outbox (topic, payload, copies)
         SELECT 'tasks', o.payload, $2
         FROM unnest($1::uuid[]) WITH ORDINALITY AS e(id, n)
         CROSS JOIN LATERAL (SELECT ",
        offer_payload_sql!(),
        " AS payload FROM tasks t JOIN listings l ON l.listing_id = t.listing_id
             WHERE t.id = e.id AND t.state = 'open' AND t.kind = 'review' LIMIT 1) AS o
         ORDER BY e.n"
    ))
    .bind(&ids)
    .bind(count)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() > 0 {
        notify(conn).await?;
    }
    Ok(done.rows_affected() * count as u64)
}

/// A slot offer message naming only the task (what offers of the first shape
/// carried; a claim reads the rest from the database).
pub fn slot_offer(task_id: TaskId) -> SlotOffer {
    SlotOffer {
        v: MESSAGE_VERSION,
        task_id,
        required: None,
        counted: None,
        listing: None,
    }
}

async fn notify(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}
