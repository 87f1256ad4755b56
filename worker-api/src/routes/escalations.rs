//! Staff review of escalations: a cursor-paged list, one with its evidence, and
//! the confirm-or-dismiss decision that opens the seller's refutation window.

use crate::audit;
use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, page_params, parse_id};
use crate::review_hold::{self, Held};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spotcheck_platform::enforcement::{self, CaseSource, NewCase};
use spotcheck_platform::reliability::{self, Learning};
use spotcheck_shared::EscalationId;
use spotcheck_shared::escalation::{EscalationStatus, StaffDecision, Transition, apply};
use spotcheck_shared::reliability::Confusion;
use uuid::Uuid;

/// Query of the list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// An escalation in a list or on its own.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct EscalationRow {
    id: Uuid,
    task_id: Uuid,
    listing_id: String,
    status: String,
    reason: String,
    created_at: DateTime<Utc>,
    decided_by: Option<Uuid>,
    decided_at: Option<DateTime<Utc>>,
    decision_note: Option<String>,
    refutation_deadline: Option<DateTime<Utc>>,
    reviewer: Option<Uuid>,
    review_until: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, task_id, listing_id, status, reason, created_at, decided_by, decided_at, decision_note, refutation_deadline, reviewer, review_until";

/// A page of escalations.
#[derive(Debug, Serialize)]
pub struct Page {
    items: Vec<EscalationRow>,
    next_cursor: Option<String>,
}

/// `GET /v1/staff/escalations?status=&limit=&cursor=`, oldest first.
pub async fn list(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page>> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<EscalationStatus>()
                .map_err(|_| ApiError::invalid("status must be open, confirmed or dismissed"))?,
        ),
    };
    let (limit, cursor) = page_params(q.limit, q.cursor.as_deref())?;
    let sql = format!(
        "SELECT {COLUMNS} FROM escalations
         WHERE ($1::text IS NULL OR status = $1) AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3"
    );
    let mut items: Vec<EscalationRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(status.map(|s| s.as_str()))
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await?;
    let next_cursor = crate::extract::next_cursor(&mut items, limit, |e| e.id);
    Ok(Json(Page { items, next_cursor }))
}

async fn load(state: &AppState, id: EscalationId) -> ApiResult<EscalationRow> {
    let sql = format!("SELECT {COLUMNS} FROM escalations WHERE id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("escalation"))
}

/// `GET /v1/staff/escalations/{id}`: the escalation with its evidence.
pub async fn one(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id: EscalationId = parse_id(&id, "escalation")?;
    let escalation = load(&state, id).await?;
    let (listing,): (Value,) = sqlx::query_as(
        "SELECT to_jsonb(l) - 'first_seen_at' - 'updated_at' FROM listings l WHERE listing_id = $1",
    )
    .bind(&escalation.listing_id)
    .fetch_one(&state.pool)
    .await?;
    let (task,): (Value,) = sqlx::query_as(
        "SELECT jsonb_build_object('task_id', id, 'round', round, 'state', state,
                'votes_required', votes_required, 'votes_counted', votes_counted,
                'inclusion_probability', inclusion_probability, 'stratum', stratum,
                'sampling', sampling, 'policy_id', policy_id)
         FROM tasks WHERE id = $1",
    )
    .bind(escalation.task_id)
    .fetch_one(&state.pool)
    .await?;
    let (votes,): (Value,) = sqlx::query_as(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('vote_id', v.id, 'volunteer_id', v.volunteer_id,
                'verdict', v.verdict, 'reasons', v.reasons, 'note', v.note, 'created_at', v.created_at,
                'volunteer_counts', coalesce(r.counting, true), 'confusion', r.confusion)
                ORDER BY v.created_at), '[]'::jsonb)
         FROM votes v LEFT JOIN volunteer_reliability r ON r.volunteer_id = v.volunteer_id
         WHERE v.task_id = $1",
    )
    .bind(escalation.task_id)
    .fetch_one(&state.pool)
    .await?;
    let votes = with_reliability(votes);
    let decision: Option<(Value,)> = sqlx::query_as(
        "SELECT jsonb_build_object('outcome', outcome, 'tally', tally, 'posterior', posterior, 'decided_at', decided_at)
         FROM decisions WHERE task_id = $1",
    )
    .bind(escalation.task_id)
    .fetch_optional(&state.pool)
    .await?;
    let mut body = serde_json::to_value(&escalation).map_err(anyhow::Error::from)?;
    body["evidence"] = json!({
        "listing": listing,
        "task": task,
        "votes": votes,
        "decision": decision.map(|(d,)| d),
    });
    Ok(Json(body))
}

/// Each vote's `confusion` (the voter's stored estimate) replaced by
/// `reliability`: the voter's estimated accuracy, `null` when none is stored.
fn with_reliability(mut votes: Value) -> Value {
    for vote in votes.as_array_mut().into_iter().flatten() {
        let reliability = vote
            .as_object_mut()
            .and_then(|v| v.remove("confusion"))
            .and_then(|c| serde_json::from_value::<Confusion>(c).ok())
            .map(|c| c.accuracy());
        vote["reliability"] = json!(reliability);
    }
    votes
}

/// Body of a staff decision.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    decision: StaffDecision,
    #[serde(default)]
    note: Option<String>,
}

/// Status, task, listing, reviewer and end of the review hold of an escalation.
type DecisionRow = (String, Uuid, String, Option<Uuid>, Option<DateTime<Utc>>);

/// `POST /v1/staff/escalations/{id}/decision`: confirm or dismiss; a repeat
/// is answered as the first. A confirmation opens a case against the seller
/// (its id is in the answer as `case_id`), which notifies the seller and
/// starts the refutation window. Refused while another staff member holds
/// the escalation for review.
pub async fn decide(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> ApiResult<Json<Value>> {
    let id: EscalationId = parse_id(&id, "escalation")?;
    if body.note.as_ref().is_some_and(|n| n.chars().count() > 4000) {
        return Err(ApiError::invalid("note is at most 4000 characters"));
    }
    let now = state.config.services.clock().now();
    let window = state.config.services.refutation_window_secs;
    let mut tx = state.pool.begin().await?;
    let current: Option<DecisionRow> = sqlx::query_as(
        "SELECT status, task_id, listing_id, reviewer, review_until
             FROM escalations WHERE id = $1 FOR UPDATE",
    )
    .bind(id.0)
    .fetch_optional(&mut *tx)
    .await?;
    let (current, task, listing_id, reviewer, review_until) =
        current.ok_or_else(|| ApiError::not_found("escalation"))?;
    let current: EscalationStatus = current
        .parse()
        .map_err(|e: String| ApiError::internal(anyhow::anyhow!(e)))?;
    match apply(current, body.decision) {
        Transition::Repeat => {}
        Transition::Conflict => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "escalation_already_decided",
                format!("this escalation is already {}", current.as_str()),
            ));
        }
        Transition::To(next) => {
            review_hold::refuse_if_held_by_other(reviewer, review_until, me.id.0, now)?;
            let confirmed = next == EscalationStatus::Confirmed;
            let deadline = confirmed.then(|| now + chrono::Duration::seconds(window));
            sqlx::query(
                "UPDATE escalations SET status = $2, decided_by = $3, decided_at = $5,
                        decision_note = $4, refutation_deadline = $6
                 WHERE id = $1",
            )
            .bind(id.0)
            .bind(next.as_str())
            .bind(me.id.0)
            .bind(&body.note)
            .bind(now)
            .bind(deadline)
            .execute(&mut *tx)
            .await?;
            // The staff outcome is the truth: it teaches every voter's reliability.
            reliability::score_outcome(&mut tx, task, confirmed, &Learning::default()).await?;
            let mut case_id = None;
            if confirmed {
                let (seller,): (String,) =
                    sqlx::query_as("SELECT seller_id FROM listings WHERE listing_id = $1")
                        .bind(&listing_id)
                        .fetch_one(&mut *tx)
                        .await?;
                let case = NewCase {
                    seller_id: &seller,
                    listing_id: Some(&listing_id),
                    source: CaseSource::Escalation(id.0),
                    opened_by: Some(me.id.0),
                    note: body.note.as_deref(),
                };
                case_id = Some(enforcement::open_case(&mut tx, &case, window, now).await?);
            }
            audit::record(
                &mut tx,
                me.id,
                "escalation.decide",
                &format!("escalation:{id}"),
                Some(json!({"status": current.as_str()})),
                json!({"status": next.as_str(), "note": body.note, "case_id": case_id}),
            )
            .await?;
            tracing::info!(escalation.id = %id, staff.id = %me.id, status = next.as_str(), "escalation decided");
        }
    }
    tx.commit().await?;
    one_with_case(&state, id).await
}

/// The escalation with the id of the case it opened (null until confirmed).
async fn one_with_case(state: &AppState, id: EscalationId) -> ApiResult<Json<Value>> {
    let escalation = load(state, id).await?;
    let case: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM cases WHERE escalation_id = $1")
        .bind(id.0)
        .fetch_optional(&state.pool)
        .await?;
    let mut body = serde_json::to_value(&escalation).map_err(anyhow::Error::from)?;
    body["case_id"] = json!(case.map(|(c,)| c));
    Ok(Json(body))
}

/// `POST /v1/staff/escalations/{id}/review`: take the escalation for exclusive
/// review (`409 held_by_another` naming the holder while someone else has it).
pub async fn review(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id: EscalationId = parse_id(&id, "escalation")?;
    let now = state.config.services.clock().now();
    let mut tx = state.pool.begin().await?;
    let row: Option<(Option<Uuid>, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT reviewer, review_until FROM escalations WHERE id = $1 FOR UPDATE")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
    let (reviewer, until) = row.ok_or_else(|| ApiError::not_found("escalation"))?;
    let end = review_hold::take(
        &mut tx,
        Held::Escalation,
        id.0,
        reviewer,
        until,
        me.id.0,
        now,
    )
    .await?;
    audit::record(
        &mut tx,
        me.id,
        "escalation.review",
        &format!("escalation:{id}"),
        None,
        json!({"reviewer": me.id.0, "review_until": end}),
    )
    .await?;
    tx.commit().await?;
    one_with_case(&state, id).await
}
