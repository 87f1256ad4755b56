//! Staff views of a task and of a listing: the votes, the decision, the
//! escalation, and why the listing was inspected (probability, stratum, rule,
//! boosts, throttling).

use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::parse_id;
use crate::routes::escalations::Tally;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use spotcheck_shared::escalation::EscalationStatus;
use spotcheck_shared::{ListingId, Outcome, TaskId, TaskKind, TaskState, Verdict};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

/// A listing as stored (the marketplace's fields, and whether it is still sampled).
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct StoredListing {
    /// The marketplace's id of the listing.
    listing_id: String,
    /// The newest version seen.
    version: i64,
    /// The seller's id.
    seller_id: String,
    /// The brand the listing claims.
    brand: String,
    /// Marketplace category.
    category: String,
    /// Where the seller ships from.
    region: String,
    /// The seller's risk tier.
    seller_risk_tier: String,
    /// Asking price in `currency`.
    price: f64,
    /// ISO 4217 code.
    currency: String,
    /// Listing title (the seller's text: escape it).
    title: String,
    /// Listing description (the seller's text: escape it).
    description: String,
    /// Image addresses.
    #[sqlx(json)]
    image_urls: Vec<String>,
    /// Risk signals by name; `true` means present.
    #[sqlx(json)]
    signals: BTreeMap<String, bool>,
    /// `false` once taken down: no longer sampled.
    active: bool,
}

/// How the sampler drew a task, as it was recorded on the task: a round's
/// inclusion (`probability`, `rule_index`, `base_rate`, `boosts`, and `rule`
/// and `throttle` when they applied), with `origin` on a complaint's task and
/// `gold` on a gold task. Records written by older versions may hold other
/// members, which are kept as they are.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SamplingRecord(Map<String, Value>);

impl utoipa::PartialSchema for SamplingRecord {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let schema = json!({
            "type": "object",
            "description": "How the sampler drew the task, as recorded on it.",
            "properties": {
                "probability": {"type": "number", "description": "The inclusion probability."},
                "rule_index": {"type": ["integer", "null"], "minimum": 0,
                               "description": "The rule that set the base rate, if any matched."},
                "base_rate": {"type": "number", "description": "The rate before boosts."},
                "boosts": {"type": "object", "additionalProperties": {"type": "number"},
                           "description": "The boosts applied, by signal name."},
                "rule": {"type": "object",
                         "description": "The rule that set the base rate, as it read then."},
                "throttle": {"type": "number",
                             "description": "The factor capacity throttling applied, if it did."},
                "origin": {"type": "string", "description": "`complaint` on a complaint's task."},
                "gold": {"type": "boolean", "description": "`true` on a gold task."},
            },
            "additionalProperties": true,
        });
        utoipa::openapi::RefOr::T(serde_json::from_value(schema).expect("a valid schema"))
    }
}

impl ToSchema for SamplingRecord {}

/// Why a task's listing was inspected: the sampler's record with the task's
/// probability, stratum, round and rules version.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhyInspected {
    /// The sampler's record (without `probability`, given below).
    #[serde(flatten)]
    recorded: SamplingRecord,
    /// The probability the listing was drawn with.
    probability: f64,
    /// Its stratum (`category/region/tier`).
    stratum: String,
    /// The round (negative out of round).
    round: i64,
    /// The sampling rules' version in force.
    policy_version: Option<i64>,
}

/// A task as stored.
#[derive(Debug, sqlx::FromRow)]
struct TaskRow {
    task_id: Uuid,
    listing_id: String,
    listing_version: i64,
    round: i64,
    #[sqlx(try_from = "String")]
    kind: TaskKind,
    #[sqlx(try_from = "String")]
    state: TaskState,
    votes_required: i32,
    votes_counted: i32,
    inclusion_probability: f64,
    stratum: String,
    #[sqlx(json)]
    sampling: SamplingRecord,
    policy_id: Option<i64>,
    created_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
}

/// A vote on the task.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct TaskVote {
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
}

/// The task's decision.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct TaskDecision {
    /// What the votes decided.
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

/// `GET /v1/staff/tasks/{task_id}`: a task with its votes, decision, escalation
/// and why it was inspected.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    /// The task.
    task_id: Uuid,
    /// Its listing.
    listing_id: String,
    /// The listing's version inspected.
    listing_version: i64,
    /// Its round (negative out of round).
    round: i64,
    /// Inspection or gold.
    kind: TaskKind,
    /// Where it is in its life.
    state: TaskState,
    /// Votes it asks for.
    votes_required: i32,
    /// Votes counted so far.
    votes_counted: i32,
    /// When it was opened.
    created_at: DateTime<Utc>,
    /// When it was decided.
    decided_at: Option<DateTime<Utc>>,
    /// Its votes, oldest first.
    votes: Vec<TaskVote>,
    /// Its decision, once taken.
    decision: Option<TaskDecision>,
    /// The escalation it raised, if any.
    escalation_id: Option<Uuid>,
    /// That escalation's status.
    escalation_status: Option<EscalationStatus>,
    /// Why its listing was inspected.
    why_inspected: WhyInspected,
}

/// `GET /v1/staff/tasks/{task_id}`.
#[utoipa::path(get, path = "/v1/staff/tasks/{task_id}",
    params(("task_id" = Uuid, Path, description = "The task.")),
    responses(
        (status = 200, description = "The task with its votes, decision, escalation and why it was inspected.", body = TaskView),
        (status = 404, description = "`not_found`: no such task", body = Problem, content_type = "application/problem+json"),
))]
pub async fn task(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(raw): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let id: TaskId = parse_id(&raw, "task")?;
    let row: Option<TaskRow> = sqlx::query_as(
        "SELECT id AS task_id, listing_id, listing_version, round, kind, state, votes_required,
                votes_counted, inclusion_probability, stratum, sampling, policy_id,
                created_at, decided_at
         FROM tasks WHERE id = $1",
    )
    .bind(id.0)
    .fetch_optional(&state.pool)
    .await?;
    let task = row.ok_or_else(|| ApiError::not_found("task"))?;
    let votes: Vec<TaskVote> = sqlx::query_as(
        "SELECT id AS vote_id, volunteer_id, verdict, reasons, note, created_at
         FROM votes WHERE task_id = $1 ORDER BY created_at, id",
    )
    .bind(id.0)
    .fetch_all(&state.pool)
    .await?;
    let decision: Option<TaskDecision> = sqlx::query_as(
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
    let (escalation_id, escalation_status) = match escalation {
        Some((id, status)) => (
            Some(id),
            Some(
                status
                    .parse::<EscalationStatus>()
                    .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?,
            ),
        ),
        None => (None, None),
    };
    let SamplingRecord(mut recorded) = task.sampling;
    // Given by the fields below, which take the task's own values.
    for key in ["probability", "stratum", "round", "policy_version"] {
        recorded.remove(key);
    }
    Ok(Json(TaskView {
        task_id: task.task_id,
        listing_id: task.listing_id,
        listing_version: task.listing_version,
        round: task.round,
        kind: task.kind,
        state: task.state,
        votes_required: task.votes_required,
        votes_counted: task.votes_counted,
        created_at: task.created_at,
        decided_at: task.decided_at,
        votes,
        decision,
        escalation_id,
        escalation_status,
        why_inspected: WhyInspected {
            recorded: SamplingRecord(recorded),
            probability: task.inclusion_probability,
            stratum: task.stratum,
            round: task.round,
            policy_version: task.policy_id,
        },
    }))
}

/// One of a listing's tasks.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct ListingTask {
    /// The task.
    task_id: Uuid,
    /// Its round (negative out of round).
    round: i64,
    /// Inspection or gold.
    #[sqlx(try_from = "String")]
    kind: TaskKind,
    /// Where it is in its life.
    #[sqlx(try_from = "String")]
    state: TaskState,
    /// The probability it was drawn with.
    inclusion_probability: f64,
    /// When it was opened.
    created_at: DateTime<Utc>,
}

/// `GET /v1/staff/listings/{listing_id}`: the stored listing and its tasks.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct ListingView {
    /// The listing.
    #[serde(flatten)]
    #[sqlx(flatten)]
    listing: StoredListing,
    /// The round the sampler last looked at it (-1: never).
    last_sampled_round: i64,
    /// Its tasks, by round.
    #[sqlx(skip)]
    tasks: Vec<ListingTask>,
}

/// `GET /v1/staff/listings/{listing_id}`: the stored listing and its tasks.
#[utoipa::path(get, path = "/v1/staff/listings/{listing_id}",
    params(("listing_id" = String, Path, description = "The marketplace's id of the listing.")),
    responses(
        (status = 200, description = "The stored listing and its tasks.", body = ListingView),
        (status = 404, description = "`not_found`: no such listing", body = Problem, content_type = "application/problem+json"),
))]
pub async fn listing(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(raw): Path<String>,
) -> ApiResult<Json<ListingView>> {
    let id = ListingId::parse(&raw).map_err(|_| ApiError::not_found("listing"))?;
    let row: Option<ListingView> = sqlx::query_as(
        "SELECT listing_id, version, seller_id, brand, category, region, seller_risk_tier,
                price, currency, title, description, image_urls, signals, active,
                last_round AS last_sampled_round
         FROM listings WHERE listing_id = $1",
    )
    .bind(id.as_str())
    .fetch_optional(&state.pool)
    .await?;
    let mut view = row.ok_or_else(|| ApiError::not_found("listing"))?;
    view.tasks = sqlx::query_as(
        "SELECT id AS task_id, round, kind, state, inclusion_probability, created_at
         FROM tasks WHERE listing_id = $1 ORDER BY round, created_at",
    )
    .bind(id.as_str())
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(view))
}
