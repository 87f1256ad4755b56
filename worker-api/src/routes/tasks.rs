//! Claim, extend and release: a volunteer's lease on one vote slot of a task.

use crate::auth::caller::Volunteer;
use crate::dispatch::Settle;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, parse_id};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeZone, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use spotcheck_platform::lease::{ClaimRequest, ClaimResult, LeaseEnd, LeaseError, StoreError};
use spotcheck_platform::outbox;
use spotcheck_shared::{TaskId, UserId};
use std::collections::HashSet;

/// The listing as a volunteer sees it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ListingView {
    listing_id: String,
    title: String,
    description: String,
    brand: String,
    category: String,
    region: String,
    price: f64,
    currency: String,
    image_urls: serde_json::Value,
    seller_id: String,
}

/// `200` answer of a claim.
#[derive(Debug, Serialize)]
pub struct Claimed {
    task_id: TaskId,
    lease_token: String,
    lease_expires_at: DateTime<Utc>,
    listing: ListingView,
}

/// Body of extend and release.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseBody {
    /// The token the claim returned.
    pub lease_token: String,
}

/// `200` answer of an extend.
#[derive(Debug, Serialize)]
pub struct Extended {
    lease_expires_at: DateTime<Utc>,
}

/// How long the reaper leaves a lease being released alone (the release re-offers it).
const RELEASE_HOLD_MS: u64 = 30_000;

/// Unix milliseconds as a timestamp.
pub fn at_ms(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

/// Maps a lease-store failure to the API's codes.
pub fn lease_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Lease(LeaseError::NotFound) => ApiError::new(
            StatusCode::CONFLICT,
            "lease_not_found",
            "you hold no lease on this task",
        ),
        StoreError::Lease(LeaseError::WrongToken) => ApiError::new(
            StatusCode::CONFLICT,
            "lease_token_mismatch",
            "this is not the token of your current lease on this task",
        ),
        StoreError::Lease(LeaseError::Expired) => ApiError::new(
            StatusCode::GONE,
            "lease_expired",
            "your lease on this task has expired",
        ),
        StoreError::Lease(LeaseError::Released) => ApiError::new(
            StatusCode::GONE,
            "lease_released",
            "you released this lease",
        ),
        StoreError::Redis(e) => e.into(),
    }
}

/// A fresh lease token: `lt_<grant time, hex ms>_<random>`. The grant time lets
/// a vote measure how long it took; it cannot be forged, since a vote is
/// accepted only with the exact token stored for the lease.
pub fn new_lease_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "lt_{:x}_{}",
        Utc::now().timestamp_millis().max(0),
        hex::encode(bytes)
    )
}

/// When the lease behind `token` was granted (Unix milliseconds), if it says.
pub fn lease_granted_ms(token: &str) -> Option<i64> {
    let rest = token.strip_prefix("lt_")?;
    let (ms, _) = rest.split_once('_')?;
    i64::from_str_radix(ms, 16).ok()
}

/// The `200` answer of a granted claim: the listing, the token and its expiry.
pub async fn granted(
    state: &AppState,
    task: TaskId,
    lease: spotcheck_platform::lease::Lease,
) -> ApiResult<Response> {
    let listing: ListingView = sqlx::query_as(
        "SELECT l.listing_id, l.title, l.description, l.brand, l.category, l.region, l.price,
                l.currency, l.image_urls, l.seller_id
         FROM tasks t JOIN listings l ON l.listing_id = t.listing_id WHERE t.id = $1",
    )
    .bind(task.0)
    .fetch_one(&state.pool)
    .await?;
    let body = Claimed {
        task_id: task,
        lease_token: lease.token,
        lease_expires_at: at_ms(lease.expires_at_ms),
        listing,
    };
    metrics::counter!("spotcheck_claims_total", "outcome" => "granted").increment(1);
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// `409 too_many_leases`.
pub fn cap_reached(cap: u32) -> ApiError {
    metrics::counter!("spotcheck_claims_total", "outcome" => "too_many_leases").increment(1);
    ApiError::new(
        StatusCode::CONFLICT,
        "too_many_leases",
        format!("you already hold {cap} leases; vote on or release one first"),
    )
}

/// Checks a lease token's shape before it reaches Redis.
pub fn check_token_shape(token: &str) -> ApiResult<()> {
    if token.is_empty() || token.len() > 64 || token.contains('|') {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "lease_token_mismatch",
            "malformed lease token",
        ));
    }
    Ok(())
}

/// State, votes required, votes counted, barred for this volunteer (voted, or
/// linked to the seller), kind, and who voted.
type TaskRow = (String, i32, i32, bool, String, Vec<uuid::Uuid>);

/// `POST /v1/tasks/claim`: lease one vote slot, or `204` when none is available.
pub async fn claim(State(state): State<AppState>, Volunteer(me): Volunteer) -> ApiResult<Response> {
    state.quotas.ensure_votes_left(me.id).await?;
    if let Some(response) = crate::gold::claim_gold(&state, me.id).await? {
        return Ok(response);
    }
    // Tasks this attempt already found unavailable to the caller: their other
    // offers (duplicates) are passed over without asking PostgreSQL and Redis again.
    let mut passed_over: HashSet<TaskId> = HashSet::new();
    for _ in 0..state.offers.len() {
        let Some(offer) = state.offers.pop() else {
            break;
        };
        let Some(task) = offer.task else {
            state.offers.settle(offer, Settle::DeadLetter).await;
            continue;
        };
        if passed_over.contains(&task) {
            state.offers.put_back(offer).await;
            continue;
        }
        let row: Option<TaskRow> = match sqlx::query_as(
            "SELECT t.state, t.votes_required, t.votes_counted,
                    EXISTS (SELECT 1 FROM votes v WHERE v.task_id = t.id AND v.volunteer_id = $2)
                    OR EXISTS (SELECT 1 FROM volunteer_seller_links k JOIN listings l ON l.seller_id = k.seller_id
                               WHERE l.listing_id = t.listing_id AND k.volunteer_id = $2),
                    t.kind,
                    ARRAY(SELECT v.volunteer_id FROM votes v WHERE v.task_id = t.id)
             FROM tasks t WHERE t.id = $1",
        )
        .bind(task.0)
        .bind(me.id.0)
        .fetch_optional(&state.pool)
        .await
        {
            Ok(row) => row,
            Err(e) => {
                state.offers.put_back(offer).await;
                return Err(e.into());
            }
        };
        let Some((task_state, required, counted, barred, kind, voters)) = row else {
            state.offers.settle(offer, Settle::Ack).await;
            continue;
        };
        if task_state != "open" || kind == "gold" {
            state.offers.settle(offer, Settle::Ack).await;
            continue;
        }
        if barred {
            passed_over.insert(task);
            state.offers.put_back(offer).await;
            continue;
        }
        let token = new_lease_token();
        let cap = state.config.max_leases_per_volunteer;
        let ttl_ms = state.config.lease_ttl_ms(&kind);
        let voters: Vec<UserId> = voters.into_iter().map(UserId).collect();
        let request = ClaimRequest {
            task,
            volunteer: me.id,
            required,
            counted,
            ttl_ms,
            cap,
            token: &token,
            voters: &voters,
        };
        match state.leases.claim(&request).await {
            Err(e) => {
                state.offers.put_back(offer).await;
                return Err(lease_error(e));
            }
            Ok(ClaimResult::Granted(lease)) => {
                state.offers.settle(offer, Settle::Ack).await;
                tracing::debug!(task.id = %task, volunteer.id = %me.id, fence = lease.fence, "lease granted");
                return granted(&state, task, lease).await;
            }
            // Surplus (a duplicate, or an offer for a slot a live lease holds):
            // dropped; a lease that lapses gets its slot offered again.
            Ok(ClaimResult::Full) => state.offers.settle(offer, Settle::Ack).await,
            Ok(ClaimResult::AlreadyHeld) => {
                passed_over.insert(task);
                state.offers.put_back(offer).await;
            }
            Ok(ClaimResult::CapReached) => {
                state.offers.put_back(offer).await;
                return Err(cap_reached(cap));
            }
        }
    }
    metrics::counter!("spotcheck_claims_total", "outcome" => "empty").increment(1);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/tasks/{task_id}/extend`: push the caller's lease expiry out by one TTL.
pub async fn extend(
    State(state): State<AppState>,
    Volunteer(me): Volunteer,
    Path(task): Path<String>,
    ApiJson(body): ApiJson<LeaseBody>,
) -> ApiResult<Json<Extended>> {
    let task: TaskId = parse_id(&task, "task")?;
    check_token_shape(&body.lease_token)?;
    let kind: Option<String> = sqlx::query_scalar("SELECT kind FROM tasks WHERE id = $1")
        .bind(task.0)
        .fetch_optional(&state.pool)
        .await?;
    let ttl_ms = state
        .config
        .lease_ttl_ms(kind.as_deref().unwrap_or("review"));
    let (_, expires) = state
        .leases
        .extend(task, me.id, &body.lease_token, ttl_ms)
        .await
        .map_err(lease_error)?;
    Ok(Json(Extended {
        lease_expires_at: at_ms(expires),
    }))
}

/// `POST /v1/tasks/{task_id}/release`: give the slot back at once (skip).
pub async fn release(
    State(state): State<AppState>,
    Volunteer(me): Volunteer,
    Path(task): Path<String>,
    ApiJson(body): ApiJson<LeaseBody>,
) -> ApiResult<StatusCode> {
    let task: TaskId = parse_id(&task, "task")?;
    check_token_shape(&body.lease_token)?;
    state
        .leases
        .expire_now(task, me.id, &body.lease_token, RELEASE_HOLD_MS)
        .await
        .map_err(lease_error)?;
    // Re-offer first, then drop the lease: a crash in between only duplicates the offer.
    let mut conn = state.pool.acquire().await?;
    outbox::offer_slots(&mut conn, &[task], 1).await?;
    state
        .leases
        .drop_expired(task, me.id, LeaseEnd::Released)
        .await
        .map_err(lease_error)?;
    Ok(StatusCode::NO_CONTENT)
}
