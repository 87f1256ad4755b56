//! Gold tasks in a volunteer's stream: on a gold turn (a keyed draw at the rate
//! the schedule gives for the volunteer's experience) the claim serves a gold
//! task they have not answered, in exactly the shape of any other claim.
//! Gold tasks are served from PostgreSQL, never offered on the queue. Each
//! volunteer meets the gold tasks in an order of their own (a hash of volunteer
//! and task), so releasing one and claiming again brings the same one back
//! rather than revealing the rest of the pool.
//!
//! Whether any gold task exists is known in-process ([`GoldPool`], refreshed in
//! the background and at once when staff add one here), so a claim on a system
//! without gold never asks PostgreSQL.

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;
use spotcheck_shared::gold::is_gold_turn;
use spotcheck_shared::messages::OfferedListing;
use spotcheck_shared::{TaskId, UserId};
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Whether the gold pool has any task, as last read.
#[derive(Clone, Default)]
pub struct GoldPool {
    any: Arc<AtomicBool>,
}

impl GoldPool {
    /// Whether any gold task exists. Starts `true` (ask) until first read.
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// Records that a gold task was just added.
    pub fn added(&self) {
        self.any.store(true, Ordering::Relaxed);
    }

    /// A pool that asks PostgreSQL until told otherwise.
    pub fn unknown() -> Self {
        let pool = Self::default();
        pool.added();
        pool
    }

    /// Re-reads the pool every `every` until cancelled (another replica may add gold).
    pub async fn refresh_loop(self, pool: PgPool, every: Duration, cancel: CancellationToken) {
        loop {
            let any: Result<bool, _> =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tasks WHERE kind = 'gold')")
                    .fetch_one(&pool)
                    .await;
            match any {
                Ok(any) => self.any.store(any, Ordering::Relaxed),
                Err(e) => tracing::warn!(error = %e, "could not read the gold pool"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// Whether this claim of `me` is a gold turn.
pub fn is_turn(state: &AppState, me: &Caller) -> bool {
    if !state.gold_pool.any() {
        return false;
    }
    let answers = me.standing.answers;
    let rate = state.config.gold.schedule().rate(answers);
    is_gold_turn(
        state.config.gold.key.as_bytes(),
        me.id.0.as_bytes(),
        answers,
        rate,
    )
}

/// The next gold task left for `me` (none answered, none of a linked seller),
/// with its listing.
pub async fn next_for(state: &AppState, me: UserId) -> ApiResult<Option<(TaskId, OfferedListing)>> {
    if !state.gold_pool.any() {
        return Ok(None);
    }
    let row: Option<(uuid::Uuid, sqlx::types::Json<OfferedListing>)> = sqlx::query_as(concat!(
        "SELECT t.id, ",
        spotcheck_platform::offered_listing_sql!(),
        " FROM tasks t JOIN listings l ON l.listing_id = t.listing_id
         WHERE t.kind = 'gold'
           AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.task_id = t.id AND v.volunteer_id = $1)
           AND NOT EXISTS (SELECT 1 FROM volunteer_seller_links k
                           WHERE k.volunteer_id = $1 AND k.seller_id = l.seller_id)
         ORDER BY md5($1::text || t.id::text) LIMIT 1"
    ))
    .bind(me.0)
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.map(|(id, listing)| (TaskId(id), listing.0)))
}
