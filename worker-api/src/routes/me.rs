//! The signed-in user's own profile, with a volunteer's figures for today.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use spotcheck_shared::streak::streak_days;
use spotcheck_shared::{Role, UserId, UserStatus};
use utoipa::ToSchema;

/// `GET /v1/me`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The caller's id.
    user_id: UserId,
    /// Their username.
    username: String,
    /// What they may do.
    role: Role,
    /// Whether their account may act.
    status: UserStatus,
    /// When the account was created.
    created_at: DateTime<Utc>,
    /// Totals of their own record.
    counts: Counts,
    /// Their UTC day so far.
    today: Today,
    /// Consecutive UTC days with a vote, ending today or yesterday.
    streak_days: u32,
}

/// Totals of the user's own record.
#[derive(Debug, Serialize, ToSchema)]
pub struct Counts {
    /// Votes ever cast.
    votes: i64,
}

/// The user's UTC day so far.
#[derive(Debug, Serialize, ToSchema)]
pub struct Today {
    /// Votes cast today.
    votes: i64,
    /// The daily quota of counted votes (`null`: none).
    quota: Option<u32>,
    /// Counted votes still allowed today (`null`: no quota).
    quota_left: Option<u32>,
}

/// `GET /v1/me`: profile, role, counts, today's votes and quota, and streak.
#[utoipa::path(get, path = "/v1/me", responses(
    (status = 200, description = "The caller's profile, today's votes and quota, and streak.", body = Me),
    (status = 401, description = "`unauthorized`, `account_suspended`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Me>> {
    let now = Utc::now();
    let today = now.date_naive();
    let (username, status, created_at, votes, votes_today, days): (
        String,
        String,
        DateTime<Utc>,
        i64,
        i64,
        Vec<NaiveDate>,
    ) = sqlx::query_as(
        "SELECT u.username, u.status, u.created_at,
                (SELECT count(*) FROM votes v WHERE v.volunteer_id = u.id),
                (SELECT count(*) FROM votes v WHERE v.volunteer_id = u.id
                   AND v.created_at >= $2::date::timestamp AT TIME ZONE 'UTC'),
                (SELECT coalesce(array_agg(DISTINCT (v.created_at AT TIME ZONE 'UTC')::date), '{}')
                 FROM votes v WHERE v.volunteer_id = u.id
                   AND v.created_at >= ($2::date - 400)::timestamp AT TIME ZONE 'UTC')
         FROM users u WHERE u.id = $1",
    )
    .bind(caller.id.0)
    .bind(today)
    .fetch_one(&state.pool)
    .await?;
    let quota = state
        .quotas
        .today(caller.id)
        .await
        .map_err(|e| ApiError::internal(e.into()))?;
    Ok(Json(Me {
        user_id: caller.id,
        username,
        role: caller.role,
        status: status
            .parse()
            .map_err(|e: String| ApiError::internal(anyhow::anyhow!(e)))?,
        created_at,
        counts: Counts { votes },
        today: Today {
            votes: votes_today,
            quota: quota.quota,
            quota_left: quota.left(),
        },
        streak_days: streak_days(&days, today),
    }))
}
