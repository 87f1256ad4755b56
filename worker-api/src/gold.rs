//! Gold tasks in a volunteer's stream: on a gold turn (a keyed draw at the rate
//! [`GoldPolicy`] gives for what is still unknown about the volunteer: the
//! uncertainty of their confusion estimate and their spammer risk, from their
//! cached standing) the claim serves a gold task they have not answered, in
//! exactly the shape of any other claim. A second keyed draw picks its class,
//! leaning to the one whose estimate is weaker, and any gold task serves when
//! none of that class is left.
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
use spotcheck_platform::standing::Standing;
use spotcheck_shared::TaskId;
use spotcheck_shared::abuse::AbusePolicy;
use spotcheck_shared::gold::{is_counterfeit_gold, is_gold_turn};
use spotcheck_shared::gold_rate::GoldPolicy;
use spotcheck_shared::messages::OfferedListing;
use spotcheck_shared::reliability::{Confusion, ReliabilityPrior};
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

/// The share of gold for a volunteer with this standing under `policy`, by
/// the abuse rules the coordinator runs ([`AbusePolicy::learned`]) and the
/// newcomer's prior.
pub fn rate(policy: &GoldPolicy, standing: &Standing) -> f64 {
    let prior = ReliabilityPrior::default();
    let confusion = confusion(standing, &prior);
    policy.rate(
        &confusion,
        &standing.measured.stats,
        &AbusePolicy::learned(),
        &prior,
    )
}

fn confusion(standing: &Standing, prior: &ReliabilityPrior) -> Confusion {
    standing
        .measured
        .confusion
        .unwrap_or_else(|| Confusion::prior(prior))
}

/// Whether this claim of `me` is a gold turn.
pub fn is_turn(state: &AppState, me: &Caller) -> bool {
    let Some(policy) = state.config.gold.policy() else {
        return false;
    };
    if !state.gold_pool.any() {
        return false;
    }
    is_gold_turn(
        state.config.gold.key.as_bytes(),
        me.id.0.as_bytes(),
        me.standing.answers,
        rate(&policy, &me.standing),
    )
}

/// Whether `me`'s gold task this claim should be a counterfeit listing: a
/// keyed draw at the share [`GoldPolicy::counterfeit_share`] gives.
fn wants_counterfeit(state: &AppState, me: &Caller) -> bool {
    let policy = state.config.gold.policy().unwrap_or_default();
    let share = policy.counterfeit_share(&confusion(&me.standing, &ReliabilityPrior::default()));
    is_counterfeit_gold(
        state.config.gold.key.as_bytes(),
        me.id.0.as_bytes(),
        me.standing.answers,
        share,
    )
}

/// The next gold task left for `me` (none answered, none of a linked seller),
/// with its listing: one of the class the draw picked when any is left, else
/// any.
pub async fn next_for(
    state: &AppState,
    me: &Caller,
) -> ApiResult<Option<(TaskId, OfferedListing)>> {
    if !state.gold_pool.any() {
        return Ok(None);
    }
    let answer = if wants_counterfeit(state, me) {
        "counterfeit"
    } else {
        "genuine"
    };
    let row: Option<(uuid::Uuid, sqlx::types::Json<OfferedListing>)> = sqlx::query_as(concat!(
        "SELECT t.id, ",
        spotcheck_platform::offered_listing_sql!(),
        " FROM tasks t JOIN listings l ON l.listing_id = t.listing_id
         LEFT JOIN gold_answers g ON g.task_id = t.id
         WHERE t.kind = 'gold'
           AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.task_id = t.id AND v.volunteer_id = $1)
           AND NOT EXISTS (SELECT 1 FROM volunteer_seller_links k
                           WHERE k.volunteer_id = $1 AND k.seller_id = l.seller_id)
         ORDER BY g.answer IS NOT DISTINCT FROM $2 DESC, md5($1::text || t.id::text) LIMIT 1"
    ))
    .bind(me.id.0)
    .bind(answer)
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.map(|(id, listing)| (TaskId(id), listing.0)))
}
