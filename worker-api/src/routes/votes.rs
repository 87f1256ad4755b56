//! Voting: the lease holder's verdict, counted at most once, group-committed.

use crate::auth::caller::Volunteer;
use crate::ballot_box::Ballot;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, parse_id};
use crate::routes::tasks::token_of;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use spotcheck_shared::gold::Feedback;
use spotcheck_shared::{TaskId, Verdict};
use utoipa::ToSchema;
use uuid::Uuid;

/// `POST /v1/tasks/{task_id}/votes` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    /// The token the claim returned.
    lease_token: String,
    /// The volunteer's verdict.
    verdict: Verdict,
    /// Reason codes (up to 16, each 1 to 64 of `a-z`, `0-9`, `_`).
    #[serde(default)]
    #[schema(max_items = 16, pattern = "^[a-z0-9_]{1,64}$")]
    reasons: Vec<String>,
    /// An optional note, up to 2,000 characters.
    #[serde(default)]
    #[schema(max_length = 2000)]
    note: Option<String>,
}

/// `201` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoteCreated {
    vote_id: Uuid,
    /// On a gold task, when feedback is on: whether the verdict was right.
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback: Option<Feedback>,
}

fn validate(body: &VoteBody) -> ApiResult<()> {
    if body.reasons.len() > 16 {
        return Err(ApiError::invalid("at most 16 reasons"));
    }
    let code_ok = |r: &String| {
        !r.is_empty()
            && r.len() <= 64
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if !body.reasons.iter().all(code_ok) {
        return Err(ApiError::invalid(
            "reasons are codes of 1 to 64 characters of a-z, 0-9 and _",
        ));
    }
    if body.note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(ApiError::invalid("note is at most 2000 characters"));
    }
    Ok(())
}

/// Records the vote in the next batch (see [`crate::ballot_box`]); answers
/// `201` once it is committed.
#[utoipa::path(post, path = "/v1/tasks/{task_id}/votes", request_body = VoteBody,
    params(("task_id" = uuid::Uuid, Path, description = "The task.")),
    responses(
        (status = 201, description = "Recorded (a repeat of the same vote answers as the first).", body = VoteCreated),
        (status = 404, description = "`not_found`: no such task", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`lease_not_found`, `lease_token_mismatch`, `lease_expired`, `lease_released`, `already_voted`, `task_closed`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `invalid_body`", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`rate_limited`, `daily_quota_exceeded`, with `Retry-After`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn vote(
    State(state): State<AppState>,
    Volunteer(me): Volunteer,
    Path(task): Path<String>,
    ApiJson(body): ApiJson<VoteBody>,
) -> ApiResult<(StatusCode, Json<VoteCreated>)> {
    let task: TaskId = parse_id(&task, "task")?;
    validate(&body)?;
    let token = token_of(&body.lease_token)?;
    let ballot = Ballot {
        task,
        volunteer: me.id,
        counting: me.standing.counting,
        token,
        verdict: body.verdict,
        reasons: body.reasons,
        note: body.note,
        quota: state.quotas.daily_votes(me.id),
    };
    let receipt = state.ballots.cast(ballot).await;
    // Voted on (or refused): the lease is no longer one to hand back.
    state.grants.forget(task, me.id);
    let receipt = receipt?;
    tracing::debug!(task.id = %task, volunteer.id = %me.id, "vote recorded");
    let feedback = receipt
        .gold_answer
        .filter(|_| state.config.gold.feedback)
        .map(|expected| Feedback::new(expected, body.verdict));
    Ok((
        StatusCode::CREATED,
        Json(VoteCreated {
            vote_id: receipt.vote_id,
            feedback,
        }),
    ))
}
