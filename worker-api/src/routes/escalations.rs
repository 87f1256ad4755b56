//! Staff review of escalations: a cursor-paged list, one with its evidence, and
//! the confirm-or-dismiss decision that opens the seller's refutation window.

use crate::audit;
use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, page_params, parse_id};
use crate::review_hold::{self, Held};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_platform::enforcement::{self, CaseSource, NewCase};
use spotcheck_platform::reliability::{self, Learning};
use spotcheck_shared::escalation::{EscalationStatus, StaffDecision, Transition, apply};
use spotcheck_shared::reliability::Confusion;
use spotcheck_shared::{EscalationId, Outcome, TaskState, Verdict};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Query of the list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only escalations in this status (all when absent or empty).
    #[param(value_type = Option<EscalationStatus>)]
    status: Option<String>,
    /// Escalations per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    cursor: Option<String>,
}

/// An escalation in a list or on its own.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct EscalationRow {
    /// The escalation.
    id: Uuid,
    /// The task whose decision raised it.
    task_id: Uuid,
    /// The listing it is about.
    listing_id: String,
    /// Where it is in its life.
    #[sqlx(try_from = "String")]
    status: EscalationStatus,
    /// Why it was raised.
    reason: String,
    /// When it was raised.
    created_at: DateTime<Utc>,
    /// The staff member who decided it.
    decided_by: Option<Uuid>,
    /// When it was decided.
    decided_at: Option<DateTime<Utc>>,
    /// The decision's note.
    decision_note: Option<String>,
    /// The end of the seller's refutation window (set when confirmed).
    refutation_deadline: Option<DateTime<Utc>>,
    /// Who holds it for review.
    reviewer: Option<Uuid>,
    /// When that hold ends.
    review_until: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, task_id, listing_id, status, reason, created_at, decided_by, decided_at, decision_note, refutation_deadline, reviewer, review_until";

/// A page of escalations.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page {
    /// Oldest first.
    items: Vec<EscalationRow>,
    /// `cursor` of the next page, when there is one.
    next_cursor: Option<String>,
}

/// `GET /v1/staff/escalations?status=&limit=&cursor=`, oldest first.
#[utoipa::path(get, path = "/v1/staff/escalations", params(ListQuery), responses(
    (status = 200, description = "A page of escalations, oldest first.", body = Page),
    (status = 400, description = "`invalid_query`: an unknown or malformed parameter", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: unknown status, limit out of range or malformed cursor", body = Problem, content_type = "application/problem+json"),
))]
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

/// The listing as stored, as the evidence shows it.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct EvidenceListing {
    /// The listing.
    #[serde(flatten)]
    #[sqlx(flatten)]
    listing: crate::routes::inspections::StoredListing,
    /// The round the sampler last looked at it (-1: never).
    last_round: i64,
}

/// The task whose decision raised the escalation.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct EvidenceTask {
    /// The task.
    task_id: Uuid,
    /// Its sampling round (negative out of round).
    round: i64,
    /// Where it is in its life.
    #[sqlx(try_from = "String")]
    state: TaskState,
    /// Votes it asks for.
    votes_required: i32,
    /// Votes counted so far.
    votes_counted: i32,
    /// The probability it was drawn with.
    inclusion_probability: f64,
    /// Its stratum (`category/region/tier`).
    stratum: String,
    /// How the sampler drew it, as recorded.
    #[sqlx(json)]
    sampling: crate::routes::inspections::SamplingRecord,
    /// The sampling rules' version it was drawn under.
    policy_id: Option<i64>,
}

/// A vote on the task, with what staff need to weigh it.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct EvidenceVote {
    /// The vote.
    vote_id: Uuid,
    /// Who cast it.
    volunteer_id: Uuid,
    /// What they answered.
    #[sqlx(try_from = "String")]
    verdict: Verdict,
    /// The reasons they gave.
    #[sqlx(json)]
    reasons: Vec<String>,
    /// Their note.
    note: Option<String>,
    /// When it was cast.
    created_at: DateTime<Utc>,
    /// Whether the voter's votes count (not stopped by the abuse rules).
    volunteer_counts: bool,
    /// The voter's estimated accuracy; `null` when none is stored.
    #[sqlx(skip)]
    reliability: Option<f64>,
    /// The voter's stored estimate, read to work out `reliability`.
    #[serde(skip)]
    confusion: Option<serde_json::Value>,
}

/// Votes per verdict as the decision counted them (members absent when the
/// decision did not record them).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Tally {
    /// Genuine votes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    genuine: Option<u32>,
    /// Counterfeit votes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    counterfeit: Option<u32>,
    /// Unsure votes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unsure: Option<u32>,
    /// Votes weighed by their voter's reliability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weighing: Option<u32>,
}

/// The decision the votes took.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct EvidenceDecision {
    /// What they decided.
    #[sqlx(try_from = "String")]
    outcome: Outcome,
    /// Votes per verdict.
    #[sqlx(json)]
    tally: Tally,
    /// The posterior it was taken at (majority decisions have none).
    posterior: Option<f64>,
    /// When it was taken.
    decided_at: DateTime<Utc>,
}

/// What staff see to decide an escalation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Evidence {
    /// The listing as stored.
    listing: EvidenceListing,
    /// The task.
    task: EvidenceTask,
    /// Every vote on it, oldest first.
    votes: Vec<EvidenceVote>,
    /// The decision, once taken.
    decision: Option<EvidenceDecision>,
}

/// An escalation with its evidence.
#[derive(Debug, Serialize, ToSchema)]
pub struct WithEvidence {
    /// The escalation.
    #[serde(flatten)]
    escalation: EscalationRow,
    /// What staff see to decide it.
    evidence: Evidence,
}

/// `GET /v1/staff/escalations/{id}`: the escalation with its evidence.
#[utoipa::path(get, path = "/v1/staff/escalations/{id}",
    params(("id" = Uuid, Path, description = "The escalation.")),
    responses(
        (status = 200, description = "The escalation with its evidence.", body = WithEvidence),
        (status = 404, description = "`not_found`: no such escalation", body = Problem, content_type = "application/problem+json"),
))]
pub async fn one(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<WithEvidence>> {
    let id: EscalationId = parse_id(&id, "escalation")?;
    let escalation = load(&state, id).await?;
    let listing: EvidenceListing = sqlx::query_as(
        "SELECT listing_id, version, seller_id, brand, category, region, seller_risk_tier,
                price, currency, title, description, image_urls, signals, active, last_round
         FROM listings WHERE listing_id = $1",
    )
    .bind(&escalation.listing_id)
    .fetch_one(&state.pool)
    .await?;
    let task: EvidenceTask = sqlx::query_as(
        "SELECT id AS task_id, round, state, votes_required, votes_counted,
                inclusion_probability, stratum, sampling, policy_id
         FROM tasks WHERE id = $1",
    )
    .bind(escalation.task_id)
    .fetch_one(&state.pool)
    .await?;
    let mut votes: Vec<EvidenceVote> = sqlx::query_as(
        "SELECT v.id AS vote_id, v.volunteer_id, v.verdict, v.reasons, v.note, v.created_at,
                coalesce(r.counting, true) AS volunteer_counts, r.confusion
         FROM votes v LEFT JOIN volunteer_reliability r ON r.volunteer_id = v.volunteer_id
         WHERE v.task_id = $1 ORDER BY v.created_at",
    )
    .bind(escalation.task_id)
    .fetch_all(&state.pool)
    .await?;
    for vote in &mut votes {
        vote.reliability = vote
            .confusion
            .take()
            .and_then(|c| serde_json::from_value::<Confusion>(c).ok())
            .map(|c| c.accuracy());
    }
    let decision: Option<EvidenceDecision> = sqlx::query_as(
        "SELECT outcome, tally, posterior, decided_at FROM decisions WHERE task_id = $1",
    )
    .bind(escalation.task_id)
    .fetch_optional(&state.pool)
    .await?;
    Ok(Json(WithEvidence {
        escalation,
        evidence: Evidence {
            listing,
            task,
            votes,
            decision,
        },
    }))
}

/// Body of a staff decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Confirm opens a case against the seller; dismiss closes the escalation.
    decision: StaffDecision,
    /// Why, up to 4000 characters.
    #[serde(default)]
    #[schema(max_length = 4000)]
    note: Option<String>,
}

/// An escalation with the case its confirmation opened.
#[derive(Debug, Serialize, ToSchema)]
pub struct WithCase {
    /// The escalation.
    #[serde(flatten)]
    escalation: EscalationRow,
    /// The case opened against the seller; `null` until confirmed.
    case_id: Option<Uuid>,
}

/// Status, task, listing, reviewer and end of the review hold of an escalation.
type DecisionRow = (String, Uuid, String, Option<Uuid>, Option<DateTime<Utc>>);

/// `POST /v1/staff/escalations/{id}/decision`: confirm or dismiss; a repeat
/// is answered as the first. A confirmation opens a case against the seller
/// (its id is in the answer as `case_id`), which notifies the seller and
/// starts the refutation window. Refused while another staff member holds
/// the escalation for review.
#[utoipa::path(post, path = "/v1/staff/escalations/{id}/decision", request_body = DecisionBody,
    params(("id" = Uuid, Path, description = "The escalation.")),
    responses(
        (status = 200, description = "The escalation as decided, with the case a confirmation opened.", body = WithCase),
        (status = 404, description = "`not_found`: no such escalation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`escalation_already_decided` (the other decision was taken), `held_by_another` (with `reviewer` and `review_until`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: note too long; `invalid_body`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn decide(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> ApiResult<Json<WithCase>> {
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
async fn one_with_case(state: &AppState, id: EscalationId) -> ApiResult<Json<WithCase>> {
    let escalation = load(state, id).await?;
    let case_id: Option<Uuid> = sqlx::query_scalar("SELECT id FROM cases WHERE escalation_id = $1")
        .bind(id.0)
        .fetch_optional(&state.pool)
        .await?;
    Ok(Json(WithCase {
        escalation,
        case_id,
    }))
}

/// `POST /v1/staff/escalations/{id}/review`: take the escalation for exclusive
/// review (`409 held_by_another` naming the holder while someone else has it).
#[utoipa::path(post, path = "/v1/staff/escalations/{id}/review",
    params(("id" = Uuid, Path, description = "The escalation.")),
    responses(
        (status = 200, description = "The escalation, held by the caller (`reviewer`, `review_until`).", body = WithCase),
        (status = 404, description = "`not_found`: no such escalation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`held_by_another`, with `reviewer` and `review_until`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn review(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<WithCase>> {
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
