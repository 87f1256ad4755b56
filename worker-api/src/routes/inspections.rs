//! Staff views of a task and of a listing: the votes, the decision, the
//! escalation, and why the listing was inspected (probability, stratum, rule,
//! boosts, throttling).

use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult};
use crate::extract::parse_id;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use spotcheck_shared::{ListingId, TaskId};
use uuid::Uuid;

type TaskRow = (
    Uuid,
    String,
    i64,
    i64,
    String,
    String,
    i32,
    i32,
    f64,
    String,
    Value,
    Option<i64>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

type VoteRow = (Uuid, Uuid, String, Value, Option<String>, DateTime<Utc>);

/// `GET /v1/staff/tasks/{task_id}`.
pub async fn task(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    let id: TaskId = parse_id(&raw, "task")?;
    let row: Option<TaskRow> = sqlx::query_as(
        "SELECT id, listing_id, listing_version, round, kind, state, votes_required,
                votes_counted, inclusion_probability, stratum, sampling, policy_id,
                created_at, decided_at
         FROM tasks WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(&state.pool)
    .await?;
    let Some((
        task_id,
        listing_id,
        version,
        round,
        kind,
        task_state,
        required,
        counted,
        probability,
        stratum,
        sampling,
        policy_id,
        created_at,
        decided_at,
    )) = row
    else {
        return Err(ApiError::not_found("task"));
    };
    let votes: Vec<VoteRow> = sqlx::query_as(
        "SELECT id, volunteer_id, verdict, reasons, note, created_at
         FROM votes WHERE task_id = $1 ORDER BY created_at, id",
    )
    .bind(id.0)
    .fetch_all(&state.pool)
    .await?;
    let decision: Option<(String, Value, Option<f64>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT outcome, tally, posterior, decided_at FROM decisions WHERE task_id = $1",
    )
    .bind(id.0)
    .fetch_optional(&state.pool)
    .await?;
    let escalation: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM escalations WHERE task_id = $1")
            .bind(id.0)
            .fetch_optional(&state.pool)
            .await?;
    let mut why = sampling;
    why["probability"] = json!(probability);
    why["stratum"] = json!(stratum);
    why["round"] = json!(round);
    why["policy_version"] = json!(policy_id);
    Ok(Json(json!({
        "task_id": task_id,
        "listing_id": listing_id,
        "listing_version": version,
        "round": round,
        "kind": kind,
        "state": task_state,
        "votes_required": required,
        "votes_counted": counted,
        "created_at": created_at,
        "decided_at": decided_at,
        "votes": votes.into_iter().map(|(vote_id, volunteer_id, verdict, reasons, note, at)| json!({
            "vote_id": vote_id, "volunteer_id": volunteer_id, "verdict": verdict,
            "reasons": reasons, "note": note, "created_at": at,
        })).collect::<Vec<_>>(),
        "decision": decision.map(|(outcome, tally, posterior, at)| json!({"outcome": outcome, "tally": tally, "posterior": posterior, "decided_at": at})),
        "escalation_id": escalation.as_ref().map(|e| e.0),
        "escalation_status": escalation.map(|e| e.1),
        "why_inspected": why,
    })))
}

/// `GET /v1/staff/listings/{listing_id}`: the stored listing and its tasks.
pub async fn listing(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = ListingId::parse(&raw).map_err(|_| ApiError::not_found("listing"))?;
    let row: Option<(Value,)> = sqlx::query_as(
        "SELECT jsonb_build_object(
            'listing_id', listing_id, 'version', version, 'seller_id', seller_id,
            'brand', brand, 'category', category, 'region', region,
            'seller_risk_tier', seller_risk_tier, 'price', price, 'currency', currency,
            'title', title, 'description', description, 'image_urls', image_urls,
            'signals', signals, 'active', active, 'last_sampled_round', last_round)
         FROM listings WHERE listing_id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(&state.pool)
    .await?;
    let Some((mut body,)) = row else {
        return Err(ApiError::not_found("listing"));
    };
    let tasks: Vec<(Uuid, i64, String, String, f64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, round, kind, state, inclusion_probability, created_at
         FROM tasks WHERE listing_id = $1 ORDER BY round, created_at",
    )
    .bind(id.as_str())
    .fetch_all(&state.pool)
    .await?;
    body["tasks"] = json!(
        tasks
            .into_iter()
            .map(|(task_id, round, kind, task_state, p, at)| json!({
                "task_id": task_id, "round": round, "kind": kind, "state": task_state,
                "inclusion_probability": p, "created_at": at,
            }))
            .collect::<Vec<_>>()
    );
    Ok(Json(body))
}
