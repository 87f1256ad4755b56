//! Claim, extend and release: a volunteer's lease on one vote slot of a task.
//! The claim protocol itself lives in [`crate::claim`].

use crate::auth::caller::Volunteer;
use crate::claim::Claimed;
use crate::claim::{at_ms, lease_error};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, parse_id};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spotcheck_platform::lease::LeaseEnd;
use spotcheck_shared::TaskId;
use spotcheck_shared::lease_token::LeaseToken;
use utoipa::ToSchema;

/// Body of extend and release.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseBody {
    /// The token the claim returned.
    pub lease_token: String,
}

/// `200` answer of an extend.
#[derive(Debug, Serialize, ToSchema)]
pub struct Extended {
    lease_expires_at: DateTime<Utc>,
}

/// Reads a lease token a client sent; a malformed one is no token of theirs.
pub fn token_of(raw: &str) -> ApiResult<LeaseToken> {
    LeaseToken::parse(raw).map_err(|_| {
        ApiError::new(
            StatusCode::CONFLICT,
            "lease_token_mismatch",
            "malformed lease token",
        )
    })
}

/// `POST /v1/tasks/claim`: lease one vote slot, or `204` when none is available.
#[utoipa::path(post, path = "/v1/tasks/claim",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "A retry with the same key within the lease TTL answers the same lease.")),
    responses(
        (status = 200, description = "A lease on one vote slot.", body = Claimed),
        (status = 204, description = "Nothing is available for this volunteer now."),
        (status = 409, description = "`too_many_leases`, `claim_in_progress`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`not_counting`: this volunteer's votes are paused; `forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`, `daily_quota_exceeded`, with `Retry-After`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn claim(
    State(state): State<AppState>,
    Volunteer(me): Volunteer,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = crate::idempotency::key_of(&headers)?;
    Ok(match crate::claim::claim(&state, &me, key).await? {
        Some(claimed) => (StatusCode::OK, Json(claimed)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `POST /v1/tasks/{task_id}/extend`: push the caller's lease expiry out by one TTL.
#[utoipa::path(post, path = "/v1/tasks/{task_id}/extend", request_body = LeaseBody,
    params(("task_id" = uuid::Uuid, Path, description = "The task.")),
    responses(
        (status = 200, description = "The lease's new expiry.", body = Extended),
        (status = 404, description = "`not_found`: no such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_not_found`, `lease_token_mismatch`, `lease_expired`, `lease_released`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn extend(
    State(state): State<AppState>,
    Volunteer(me): Volunteer,
    Path(task): Path<String>,
    ApiJson(body): ApiJson<LeaseBody>,
) -> ApiResult<Json<Extended>> {
    let task: TaskId = parse_id(&task, "task")?;
    let token = token_of(&body.lease_token)?;
    let kind: Option<String> = sqlx::query_scalar("SELECT kind FROM tasks WHERE id = $1")
        .bind(task.0)
        .fetch_optional(&state.pool)
        .await?;
    let ttl_ms = state
        .config
        .lease_ttl_ms(kind.as_deref().unwrap_or("review"));
    let (_, expires) = state
        .leases
        .extend(task, me.id, &token, ttl_ms)
        .await
        .map_err(lease_error)?;
    Ok(Json(Extended {
        lease_expires_at: at_ms(expires),
    }))
}

/// `POST /v1/tasks/{task_id}/release`: give the slot back (skip). The lease
/// ends now. A lease granted by this replica hands its slot to the next claim
/// here (see [`crate::handback`]); any other goes back through the reaper's
/// next sweep, batched with every other lease that ended meanwhile. Either way
/// one Redis call here and no database write.
#[utoipa::path(post, path = "/v1/tasks/{task_id}/release", request_body = LeaseBody,
    params(("task_id" = uuid::Uuid, Path, description = "The task.")),
    responses(
        (status = 204, description = "Released; the slot is claimable again."),
        (status = 404, description = "`not_found`: no such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_not_found`, `lease_token_mismatch`, `lease_expired`, `lease_released`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn release(
    State(state): State<AppState>,
    Volunteer(me): Volunteer,
    Path(task): Path<String>,
    ApiJson(body): ApiJson<LeaseBody>,
) -> ApiResult<StatusCode> {
    let task: TaskId = parse_id(&task, "task")?;
    let token = token_of(&body.lease_token)?;
    let hold_ms = state.config.handback_hold_ms;
    let handback = if hold_ms > 0 {
        state.grants.take(task, me.id)
    } else {
        None
    };
    let hold = if handback.is_some() { hold_ms } else { 0 };
    state
        .leases
        .expire_now(task, me.id, &token, hold, LeaseEnd::Released)
        .await
        .map_err(lease_error)?;
    if let Some(offer) = handback {
        state.offers.hand_back(offer, me.id);
    }
    Ok(StatusCode::NO_CONTENT)
}
