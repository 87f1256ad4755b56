//! Voting: the lease holder's verdict, counted at most once, group-committed.

use crate::auth::caller::Volunteer;
use crate::ballot_box::Ballot;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, parse_id};
use crate::routes::tasks::token_of;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use spotcheck_shared::gold::Feedback;
use spotcheck_shared::{TaskId, Verdict};
use uuid::Uuid;

/// `POST /v1/tasks/{task_id}/votes` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    lease_token: String,
    verdict: Verdict,
    #[serde(default)]
    reasons: Vec<String>,
    #[serde(default)]
    note: Option<String>,
}

/// `201` answer.
#[derive(Debug, Serialize)]
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
