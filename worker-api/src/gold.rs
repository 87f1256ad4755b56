//! Gold tasks in a volunteer's stream: on a gold turn (a keyed draw at the rate
//! the schedule gives for the volunteer's experience) the claim serves a gold
//! task they have not answered, in exactly the shape of any other claim.
//! Gold tasks are served from PostgreSQL, never offered on the queue. Each
//! volunteer meets the gold tasks in an order of their own (a hash of volunteer
//! and task), so releasing one and claiming again brings the same one back
//! rather than revealing the rest of the pool.

use crate::error::ApiResult;
use crate::routes::tasks::{cap_reached, granted, lease_error, new_lease_token};
use crate::state::AppState;
use axum::response::Response;
use spotcheck_platform::lease::{ClaimRequest, ClaimResult};
use spotcheck_shared::gold::is_gold_turn;
use spotcheck_shared::{TaskId, UserId};

/// Any number of volunteers may hold a lease on a gold task at once.
const GOLD_SLOTS: i32 = 1_000_000;

/// A gold claim when this is the volunteer's gold turn and a gold task is left
/// for them; `None` to claim a review task instead.
pub async fn claim_gold(state: &AppState, me: UserId) -> ApiResult<Option<Response>> {
    let answers: i64 = sqlx::query_scalar("SELECT count(*) FROM votes WHERE volunteer_id = $1")
        .bind(me.0)
        .fetch_one(&state.pool)
        .await?;
    let answers = answers.max(0) as u64;
    let rate = state.config.gold.schedule().rate(answers);
    if !is_gold_turn(
        state.config.gold.key.as_bytes(),
        me.0.as_bytes(),
        answers,
        rate,
    ) {
        return Ok(None);
    }
    let task: Option<uuid::Uuid> = sqlx::query_scalar(
        "SELECT t.id FROM tasks t JOIN listings l ON l.listing_id = t.listing_id
         WHERE t.kind = 'gold'
           AND NOT EXISTS (SELECT 1 FROM votes v WHERE v.task_id = t.id AND v.volunteer_id = $1)
           AND NOT EXISTS (SELECT 1 FROM volunteer_seller_links k
                           WHERE k.volunteer_id = $1 AND k.seller_id = l.seller_id)
         ORDER BY md5($1::text || t.id::text) LIMIT 1",
    )
    .bind(me.0)
    .fetch_optional(&state.pool)
    .await?;
    let Some(task) = task.map(TaskId) else {
        return Ok(None);
    };
    let token = new_lease_token();
    let cap = state.config.max_leases_per_volunteer;
    let request = ClaimRequest {
        task,
        volunteer: me,
        required: GOLD_SLOTS,
        counted: 0,
        ttl_ms: state.config.lease_ttl_ms("gold"),
        cap,
        token: &token,
        voters: &[],
    };
    match state.leases.claim(&request).await.map_err(lease_error)? {
        ClaimResult::Granted(lease) => {
            metrics::counter!("spotcheck_gold_served_total").increment(1);
            Ok(Some(granted(state, task, lease).await?))
        }
        ClaimResult::CapReached => Err(cap_reached(cap)),
        ClaimResult::Full | ClaimResult::AlreadyHeld => Ok(None),
    }
}
