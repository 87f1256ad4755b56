//! Voting: the lease holder's verdict, counted at most once.

use crate::auth::caller::Volunteer;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, parse_id};
use crate::routes::tasks::{check_token_shape, lease_error, lease_granted_ms};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use spotcheck_platform::outbox;
use spotcheck_shared::gold::Feedback;
use spotcheck_shared::messages::{MESSAGE_VERSION, Topic, VoteRecorded};
use spotcheck_shared::{TaskId, UserId, Verdict};
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

impl VoteCreated {
    fn new(vote_id: Uuid) -> Self {
        Self {
            vote_id,
            feedback: None,
        }
    }
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

/// The caller's earlier vote on the task: the same vote is answered as the first; a different one is refused.
async fn earlier_vote(
    state: &AppState,
    task: TaskId,
    me: UserId,
    body: &VoteBody,
) -> ApiResult<Option<Uuid>> {
    let row: Option<(Uuid, String, serde_json::Value)> = sqlx::query_as(
        "SELECT id, verdict, reasons FROM votes WHERE task_id = $1 AND volunteer_id = $2",
    )
    .bind(task.0)
    .bind(me.0)
    .fetch_optional(&state.pool)
    .await?;
    match row {
        None => Ok(None),
        Some((id, verdict, reasons))
            if verdict == body.verdict.as_str() && reasons == serde_json::json!(body.reasons) =>
        {
            Ok(Some(id))
        }
        Some(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_voted",
            "you already voted on this task with a different verdict",
        )),
    }
}

/// Records the vote, ends the lease and notifies the aggregator.
pub async fn vote(
    State(state): State<AppState>,
    Volunteer(me): Volunteer,
    Path(task): Path<String>,
    ApiJson(body): ApiJson<VoteBody>,
) -> ApiResult<(StatusCode, Json<VoteCreated>)> {
    let task: TaskId = parse_id(&task, "task")?;
    validate(&body)?;
    check_token_shape(&body.lease_token)?;
    if let Some(vote_id) = earlier_vote(&state, task, me.id, &body).await? {
        return Ok((StatusCode::CREATED, Json(VoteCreated::new(vote_id))));
    }
    let (fence, _) = state
        .leases
        .check(task, me.id, &body.lease_token)
        .await
        .map_err(lease_error)?;
    state.quotas.spend_vote(me.id).await?;
    let vote_id = Uuid::now_v7();
    let seconds_taken = lease_granted_ms(&body.lease_token)
        .map(|granted| (chrono::Utc::now().timestamp_millis() - granted).max(0) as f64 / 1000.0);
    let mut tx = state.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, note, lease_fence, seconds_taken)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT ON CONSTRAINT votes_task_volunteer_key DO NOTHING",
    )
    .bind(vote_id)
    .bind(task.0)
    .bind(me.id.0)
    .bind(body.verdict.as_str())
    .bind(serde_json::json!(body.reasons))
    .bind(&body.note)
    .bind(fence)
    .bind(seconds_taken)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        // A concurrent duplicate of this request won the race.
        drop(tx);
        let id = earlier_vote(&state, task, me.id, &body)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("vote vanished")))?;
        return Ok((StatusCode::CREATED, Json(VoteCreated::new(id))));
    }
    // A gold task counts no votes: every volunteer may answer it once.
    let counted: Option<(String, Option<String>)> = sqlx::query_as(
        "UPDATE tasks SET votes_counted = votes_counted + CASE WHEN kind = 'gold' THEN 0 ELSE 1 END
         WHERE id = $1 AND state = 'open' AND (kind = 'gold' OR votes_counted < votes_required)
         RETURNING kind, (SELECT answer FROM gold_answers WHERE task_id = $1)",
    )
    .bind(task.0)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((_, gold_answer)) = counted else {
        drop(tx);
        let _ = state
            .leases
            .expire_now(task, me.id, &body.lease_token, 0)
            .await;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "task_closed",
            "this task no longer needs votes",
        ));
    };
    let event = VoteRecorded {
        v: MESSAGE_VERSION,
        task_id: task,
        vote_id,
        volunteer_id: me.id,
    };
    outbox::enqueue(&mut tx, Topic::Votes, &event).await?;
    tx.commit().await?;
    if let Err(e) = state.leases.finish(task, me.id, &body.lease_token).await {
        // The vote is committed; the lease will expire and its surplus offer be refused.
        tracing::warn!(task.id = %task, error = %e, "could not end a lease after its vote");
    }
    metrics::counter!("spotcheck_votes_total", "outcome" => "counted").increment(1);
    tracing::debug!(task.id = %task, volunteer.id = %me.id, "vote recorded");
    let feedback = gold_answer
        .filter(|_| state.config.gold.feedback)
        .and_then(|a| a.parse::<Verdict>().ok())
        .map(|expected| Feedback::new(expected, body.verdict));
    Ok((StatusCode::CREATED, Json(VoteCreated { vote_id, feedback })))
}
