//! The claim protocol: turning a buffered slot offer, or on a gold turn a gold
//! task, into a lease for the caller.
//!
//! A steady-state claim makes no PostgreSQL round trip: the caller's role,
//! status, counting flag, answers and seller links come with their standing
//! (Redis), the task's votes asked and counted and its listing come with the
//! offer, and the task's voters, live leases, the per-volunteer cap and the
//! daily quota are checked by one Redis script. The protocol runs on a task of
//! its own, so a cancelled request (timeout, client gone) cannot interrupt it
//! half way: the offer is granted, put back or acked as surplus regardless,
//! and a lease granted to a vanished client expires like any other. An offer
//! held when the claim panics goes back to the buffer (see
//! [`crate::dispatch::TakenOffer`]).
//!
//! Volunteers whose votes do not count (stopped by the abuse rules) are served
//! gold tasks only, until staff reinstate them.

use crate::auth::Caller;
use crate::dispatch::Settle;
use crate::error::{ApiError, ApiResult};
use crate::idempotency::Earlier;
use crate::state::AppState;
use axum::http::StatusCode;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use spotcheck_platform::lease::{
    ClaimRequest, ClaimResult, Lease, LeaseError, QuotaRef, SlotSource, StoreError,
};
use spotcheck_shared::lease_token::LeaseToken;
use spotcheck_shared::messages::OfferedListing;
use spotcheck_shared::{TaskId, UserId};
use std::collections::HashSet;

/// Any number of volunteers may hold a lease on a gold task at once.
const GOLD_SLOTS: i32 = 1_000_000;

/// The `200` answer of a granted claim.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Claimed {
    /// The task.
    pub task_id: TaskId,
    /// The lease's token.
    pub lease_token: LeaseToken,
    /// When the lease expires.
    pub lease_expires_at: DateTime<Utc>,
    /// The listing to judge.
    pub listing: OfferedListing,
}

/// Unix milliseconds as a timestamp.
pub fn at_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

/// Maps a lease-store failure to the API's codes.
pub fn lease_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Lease(e) => lease_refusal(e),
        StoreError::Redis(e) => e.into(),
    }
}

/// The API's answer to a refused lease check.
pub fn lease_refusal(e: LeaseError) -> ApiError {
    match e {
        LeaseError::NotFound => ApiError::new(
            StatusCode::CONFLICT,
            "lease_not_found",
            "you hold no lease on this task",
        ),
        LeaseError::WrongToken => ApiError::new(
            StatusCode::CONFLICT,
            "lease_token_mismatch",
            "this is not the token of your current lease on this task",
        ),
        LeaseError::Expired => ApiError::new(
            StatusCode::GONE,
            "lease_expired",
            "your lease on this task has expired",
        ),
        LeaseError::Released => ApiError::new(
            StatusCode::GONE,
            "lease_released",
            "you released this lease",
        ),
        LeaseError::QuotaSpent => crate::quota::daily_votes_spent(None, Utc::now()),
    }
}

/// `409 too_many_leases`.
fn cap_reached(cap: u32) -> ApiError {
    metrics::counter!("spotcheck_claims_total", "outcome" => "too_many_leases").increment(1);
    ApiError::new(
        StatusCode::CONFLICT,
        "too_many_leases",
        format!("you already hold {cap} leases; vote on or release one first"),
    )
}

/// Claims a slot for `me`, or `None` when nothing is available to them; with
/// an idempotency key, a retry gets the first attempt's lease. Runs detached
/// from the request (see the module documentation).
pub async fn claim(
    state: &AppState,
    me: &Caller,
    idempotency_key: Option<String>,
) -> ApiResult<Option<Claimed>> {
    let (state, me) = (state.clone(), me.clone());
    let tasks = state.tasks.clone();
    tasks
        .spawn(async move {
            let Some(key) = idempotency_key else {
                return claim_detached(&state, &me).await;
            };
            if let Earlier::Answer(claimed) = state.idempotency.begin(me.id, &key).await? {
                return Ok(Some(*claimed));
            }
            let result = claim_detached(&state, &me).await;
            let granted = result.as_ref().ok().and_then(Option::as_ref);
            state.idempotency.finish(me.id, &key, granted).await;
            result
        })
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("the claim failed: {e}")))?
}

async fn claim_detached(state: &AppState, me: &Caller) -> ApiResult<Option<Claimed>> {
    let counting = me.standing.counting;
    if (!counting || crate::gold::is_turn(state, me))
        && let Some(claimed) = claim_gold(state, me).await?
    {
        return Ok(Some(claimed));
    }
    if !counting {
        metrics::counter!("spotcheck_claims_total", "outcome" => "not_counting").increment(1);
        return Ok(None);
    }
    let claimed = claim_review(state, me).await?;
    if claimed.is_none() && quota_spent(state, me.id).await? {
        // Nothing was on offer for them, but the answer a spent quota gets is 429.
        return Err(state.quotas.spent());
    }
    let outcome = if claimed.is_some() {
        "granted"
    } else {
        "empty"
    };
    metrics::counter!("spotcheck_claims_total", "outcome" => outcome).increment(1);
    Ok(claimed)
}

/// Whether today's vote quota of `me` is spent (one Redis read; only asked
/// when no offer was left to try, since the claim script checks it otherwise).
async fn quota_spent(state: &AppState, me: UserId) -> ApiResult<bool> {
    Ok(match state.quotas.daily_votes(me) {
        Some((key, limit)) => {
            state.leases.counter(&key).await.map_err(lease_error)? >= i64::from(limit)
        }
        None => false,
    })
}

async fn claim_review(state: &AppState, me: &Caller) -> ApiResult<Option<Claimed>> {
    let quota = state.quotas.daily_votes(me.id);
    let cap = state.config.max_leases_per_volunteer;
    let ttl_ms = state.config.lease_ttl_ms("review");
    // Tasks this attempt found unavailable to the caller: their other offers
    // (duplicates) are passed over without asking Redis again.
    let mut passed_over: HashSet<TaskId> = HashSet::new();
    for _ in 0..state.offers.len() {
        let Some(taken) = state.offers.take() else {
            break;
        };
        let Some(message) = taken.offer().message.clone() else {
            taken.settle(Settle::DeadLetter).await;
            continue;
        };
        let source = match taken.offer().released_by {
            Some(released_by) => SlotSource::Handback { released_by },
            None => SlotSource::Queue,
        };
        let task = message.task_id;
        if passed_over.contains(&task) {
            taken.put_back();
            continue;
        }
        let snapshot = match (message.required, message.counted, message.listing) {
            (Some(required), Some(counted), Some(listing)) => Some((required, counted, listing)),
            // An offer of the first shape: the task as the database has it now.
            _ => match task_snapshot(state, task).await {
                Ok(snapshot) => snapshot,
                Err(e) => {
                    taken.put_back();
                    return Err(e);
                }
            },
        };
        let Some((required, counted, listing)) = snapshot else {
            // Closed, gold or unknown: the offer is surplus.
            taken.settle(Settle::Ack).await;
            continue;
        };
        if me.standing.seller_links.contains(&listing.seller_id) {
            passed_over.insert(task);
            taken.put_back();
            continue;
        }
        let token = LeaseToken::generate(Utc::now().timestamp_millis());
        let request = ClaimRequest {
            task,
            volunteer: me.id,
            required,
            counted,
            ttl_ms,
            cap,
            token: &token,
            quota: quota
                .as_ref()
                .map(|(key, limit)| QuotaRef { key, limit: *limit }),
            source,
        };
        match state.leases.claim(&request).await {
            Err(e) => {
                taken.put_back();
                return Err(lease_error(e));
            }
            Ok(ClaimResult::Granted(lease)) => {
                taken.settle(Settle::Ack).await;
                tracing::debug!(task.id = %task, volunteer.id = %me.id, fence = lease.fence, "lease granted");
                state
                    .grants
                    .remember(task, me.id, required, counted, &listing);
                return Ok(Some(claimed(task, lease, listing)));
            }
            // Surplus (a duplicate, or an offer for a slot a live lease holds):
            // dropped; a lease that lapses gets its slot offered again. A stale
            // hand-back: the reaper has its slot.
            Ok(ClaimResult::Full | ClaimResult::Stale) => taken.settle(Settle::Ack).await,
            Ok(ClaimResult::AlreadyHeld) => {
                passed_over.insert(task);
                taken.put_back();
            }
            Ok(ClaimResult::CapReached) => {
                taken.put_back();
                return Err(cap_reached(cap));
            }
            Ok(ClaimResult::QuotaSpent) => {
                taken.put_back();
                return Err(state.quotas.spent());
            }
        }
    }
    Ok(None)
}

fn claimed(task: TaskId, lease: Lease, listing: OfferedListing) -> Claimed {
    Claimed {
        task_id: task,
        lease_token: lease.token,
        lease_expires_at: at_ms(lease.expires_at_ms),
        listing,
    }
}

/// Votes asked and counted and the listing of an open review task, from PostgreSQL.
async fn task_snapshot(
    state: &AppState,
    task: TaskId,
) -> ApiResult<Option<(i32, i32, OfferedListing)>> {
    let row: Option<(i32, i32, sqlx::types::Json<OfferedListing>)> = sqlx::query_as(concat!(
        "SELECT t.votes_required, t.votes_counted, ",
        spotcheck_platform::offered_listing_sql!(),
        " FROM tasks t JOIN listings l ON l.listing_id = t.listing_id
         WHERE t.id = $1 AND t.state = 'open' AND t.kind = 'review'"
    ))
    .bind(task.0)
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.map(|(required, counted, listing)| (required, counted, listing.0)))
}

/// A gold claim when a gold task is left for the caller; `None` otherwise.
async fn claim_gold(state: &AppState, me: &Caller) -> ApiResult<Option<Claimed>> {
    let Some((task, listing)) = crate::gold::next_for(state, me).await? else {
        return Ok(None);
    };
    let quota = state.quotas.daily_votes(me.id);
    let token = LeaseToken::generate(Utc::now().timestamp_millis());
    let cap = state.config.max_leases_per_volunteer;
    let request = ClaimRequest {
        task,
        volunteer: me.id,
        required: GOLD_SLOTS,
        counted: 0,
        ttl_ms: state.config.lease_ttl_ms("gold"),
        cap,
        token: &token,
        quota: quota
            .as_ref()
            .map(|(key, limit)| QuotaRef { key, limit: *limit }),
        source: SlotSource::Gold,
    };
    match state.leases.claim(&request).await.map_err(lease_error)? {
        ClaimResult::Granted(lease) => {
            metrics::counter!("spotcheck_gold_served_total").increment(1);
            Ok(Some(claimed(task, lease, listing)))
        }
        ClaimResult::CapReached => Err(cap_reached(cap)),
        ClaimResult::QuotaSpent => Err(state.quotas.spent()),
        ClaimResult::Full | ClaimResult::AlreadyHeld | ClaimResult::Stale => Ok(None),
    }
}
