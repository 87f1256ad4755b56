//! Staff views of volunteer quality: gold tasks (added by staff), each
//! volunteer's reliability and abuse flags, reinstatement, and collusion flags.

use crate::audit;
use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, page_params, parse_id};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spotcheck_shared::abuse::{AbuseReason, VolunteerStats};
use spotcheck_shared::reliability::Confusion;
use spotcheck_shared::{Listing, TaskId, UserId, UserStatus, Verdict};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Body of `POST /v1/staff/gold-tasks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GoldBody {
    /// A listing new to Spotcheck, as the marketplace would publish it.
    listing: Listing,
    /// The known answer: `genuine` or `counterfeit`.
    answer: Verdict,
}

/// `201` answer of a new gold task.
#[derive(Debug, Serialize, ToSchema)]
pub struct GoldCreated {
    /// The gold task.
    task_id: TaskId,
}

/// `POST /v1/staff/gold-tasks`: a listing with a known answer becomes a gold
/// task. The listing must be new to Spotcheck; it is stored inactive, so it is
/// never sampled, and the feed never changes it.
#[utoipa::path(post, path = "/v1/staff/gold-tasks", request_body = GoldBody, responses(
    (status = 201, description = "The gold task.", body = GoldCreated),
    (status = 409, description = "`listing_exists`: the listing is already known; `gold_task_exists`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: an invalid listing, or `unsure` as the answer; `invalid_body`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn add_gold(
    State(state): State<AppState>,
    Staff(me): Staff,
    ApiJson(body): ApiJson<GoldBody>,
) -> ApiResult<(StatusCode, Json<GoldCreated>)> {
    body.listing
        .validate()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if body.answer == Verdict::Unsure {
        return Err(ApiError::invalid("answer must be genuine or counterfeit"));
    }
    let l = &body.listing;
    let stratum = l.stratum();
    let mut tx = state.pool.begin().await?;
    let stored = sqlx::query(
        "INSERT INTO listings (listing_id, version, seller_id, brand, category, region,
             seller_risk_tier, price, currency, title, description, image_urls, signals, active)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, false)
         ON CONFLICT (listing_id) DO NOTHING",
    )
    .bind(l.listing_id.as_str())
    .bind(l.version)
    .bind(&l.seller_id)
    .bind(&l.brand)
    .bind(&stratum.category)
    .bind(&stratum.region)
    .bind(&stratum.seller_risk_tier)
    .bind(l.price)
    .bind(&l.currency)
    .bind(&l.title)
    .bind(&l.description)
    .bind(json!(l.image_urls))
    .bind(json!(l.signals))
    .execute(&mut *tx)
    .await?;
    if stored.rows_affected() == 0 {
        // A marketplace listing (or an earlier gold task's): a gold task needs a
        // listing of its own, or its answer would leak into real inspections.
        let gold: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE listing_id = $1 AND kind = 'gold')",
        )
        .bind(l.listing_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        return Err(if gold {
            ApiError::new(
                StatusCode::CONFLICT,
                "gold_task_exists",
                "this listing is already a gold task",
            )
        } else {
            ApiError::new(
                StatusCode::CONFLICT,
                "listing_exists",
                "a listing with this id is already known; give the gold listing an id of its own",
            )
        });
    }
    let task = TaskId::new();
    let created = sqlx::query(
        "INSERT INTO tasks (id, listing_id, listing_version, round, kind, votes_required,
             inclusion_probability, stratum, sampling)
         VALUES ($1, $2, $3, -1, 'gold', 1, 1, $4, '{\"gold\": true}')
         ON CONFLICT ON CONSTRAINT tasks_listing_round_key DO NOTHING",
    )
    .bind(task.0)
    .bind(l.listing_id.as_str())
    .bind(l.version)
    .bind(stratum.key())
    .execute(&mut *tx)
    .await?;
    if created.rows_affected() == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "gold_task_exists",
            "this listing is already a gold task",
        ));
    }
    sqlx::query("INSERT INTO gold_answers (task_id, answer, created_by) VALUES ($1, $2, $3)")
        .bind(task.0)
        .bind(body.answer.as_str())
        .bind(me.id.0)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        me.id,
        "gold_task.create",
        &format!("task:{task}"),
        None,
        json!({"listing_id": l.listing_id.as_str(), "answer": body.answer.as_str()}),
    )
    .await?;
    tx.commit().await?;
    state.gold_pool.added();
    Ok((StatusCode::CREATED, Json(GoldCreated { task_id: task })))
}

/// A volunteer's row: account, stored reliability and abuse state, votes.
#[derive(Debug, sqlx::FromRow)]
struct VolunteerRow {
    id: Uuid,
    username: String,
    #[sqlx(try_from = "String")]
    status: UserStatus,
    confusion: Option<Value>,
    stats: Option<Value>,
    counting: Option<bool>,
    flag: Option<String>,
    flagged_at: Option<DateTime<Utc>>,
    recalibrated: Option<Value>,
    votes: i64,
}

const VOLUNTEER_SELECT: &str = "SELECT u.id, u.username, u.status, r.confusion, r.stats,
        r.counting, r.flag, r.flagged_at, r.recalibrated,
        coalesce(r.votes_total, 0) AS votes
     FROM users u LEFT JOIN volunteer_reliability r ON r.volunteer_id = u.id";

/// The estimated chance of each answer, for listings of one true class.
#[derive(Debug, Serialize, ToSchema)]
pub struct Answers {
    /// Of answering genuine.
    genuine: f64,
    /// Of answering counterfeit.
    counterfeit: f64,
    /// Of answering unsure.
    unsure: f64,
}

/// A volunteer's estimated confusion matrix, by the listing's true class.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConfusionView {
    /// Genuine listings.
    genuine: Answers,
    /// Counterfeit listings.
    counterfeit: Answers,
}

/// Gold tasks answered and answered right (since the last reinstatement).
#[derive(Debug, Serialize, ToSchema)]
pub struct GoldRecord {
    /// Gold tasks answered.
    answered: u32,
    /// Of those, answered with the known answer.
    correct: u32,
}

/// A volunteer with their reliability and abuse state.
#[derive(Debug, Serialize, ToSchema)]
pub struct VolunteerView {
    /// The volunteer.
    user_id: Uuid,
    /// Their username.
    username: String,
    /// Whether their account may act.
    status: UserStatus,
    /// Whether their votes count (`false` once the abuse rules stopped them).
    counting: bool,
    /// Why their votes stopped counting.
    flag: Option<AbuseReason>,
    /// When they did.
    flagged_at: Option<DateTime<Utc>>,
    /// Votes ever cast, counted as the aggregator accounts them (a moment
    /// after each vote); retention does not lower it.
    votes: i64,
    /// Estimated accuracy.
    accuracy: f64,
    /// Answers whose truth is known (gold or staff outcomes) behind the estimate.
    answers_with_known_truth: f64,
    /// Estimated chance of each answer by true class.
    confusion: ConfusionView,
    /// Gold tasks answered and answered right.
    gold: GoldRecord,
    /// Recent votes counted for the pace check.
    recent_votes: u32,
    /// Of those, the ones faster than anyone can judge a listing.
    recent_fast_votes: u32,
    /// The last Dawid-Skene recalibration's estimate, when one was made.
    recalibrated: Option<Recalibration>,
}

/// What the last Dawid-Skene recalibration estimated for a volunteer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recalibration {
    /// The chance they answer a genuine listing right.
    genuine_right: f64,
    /// The chance they answer a counterfeit listing right.
    counterfeit_right: f64,
}

fn volunteer_view(row: VolunteerRow) -> ApiResult<VolunteerView> {
    let confusion: Confusion = row
        .confusion
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    let stats: VolunteerStats = row
        .stats
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    let answers = |truth| Answers {
        genuine: confusion.prob(truth, Verdict::Genuine),
        counterfeit: confusion.prob(truth, Verdict::Counterfeit),
        unsure: confusion.prob(truth, Verdict::Unsure),
    };
    let flag = row
        .flag
        .map(|f| f.parse::<AbuseReason>())
        .transpose()
        .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
    Ok(VolunteerView {
        user_id: row.id,
        username: row.username,
        status: row.status,
        counting: row.counting.unwrap_or(true),
        flag,
        flagged_at: row.flagged_at,
        votes: row.votes,
        accuracy: confusion.accuracy(),
        answers_with_known_truth: confusion.answers(),
        confusion: ConfusionView {
            genuine: answers(false),
            counterfeit: answers(true),
        },
        gold: GoldRecord {
            answered: stats.gold_answered(),
            correct: stats.gold_genuine.correct + stats.gold_counterfeit.correct,
        },
        recent_votes: stats.recent_votes,
        recent_fast_votes: stats.recent_fast_votes,
        recalibrated: row
            .recalibrated
            .and_then(|r| serde_json::from_value(r).ok()),
    })
}

/// Query of the volunteer list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VolunteerQuery {
    /// `true`: only those whose votes stopped counting; `false`: only those counting.
    flagged: Option<bool>,
    /// Volunteers per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    cursor: Option<String>,
}

/// A page of volunteers.
#[derive(Debug, Serialize, ToSchema)]
pub struct VolunteerPage {
    /// In id order.
    items: Vec<VolunteerView>,
    /// `cursor` of the next page, when there may be one.
    next_cursor: Option<String>,
}

/// `GET /v1/staff/volunteers?flagged=&limit=&cursor=`: volunteers with their
/// reliability, in id order; `flagged=true` lists those who stopped counting.
#[utoipa::path(get, path = "/v1/staff/volunteers", params(VolunteerQuery), responses(
    (status = 200, description = "A page of volunteers with their reliability.", body = VolunteerPage),
    (status = 400, description = "`invalid_query`: an unknown or malformed parameter", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: limit out of range or malformed cursor", body = Problem, content_type = "application/problem+json"),
))]
pub async fn list(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<VolunteerQuery>,
) -> ApiResult<Json<VolunteerPage>> {
    let (limit, cursor) = page_params(q.limit, q.cursor.as_deref())?;
    let sql = format!(
        "{VOLUNTEER_SELECT}
         WHERE u.role = 'volunteer' AND ($1::uuid IS NULL OR u.id > $1)
           AND ($2::bool IS NULL OR coalesce(NOT r.counting, false) = $2)
         ORDER BY u.id LIMIT $3"
    );
    let rows: Vec<VolunteerRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(cursor)
        .bind(q.flagged)
        .bind(limit)
        .fetch_all(&state.pool)
        .await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let items = rows
        .into_iter()
        .map(volunteer_view)
        .collect::<ApiResult<_>>()?;
    Ok(Json(VolunteerPage { items, next_cursor }))
}

async fn one(state: &AppState, id: UserId) -> ApiResult<VolunteerView> {
    let sql = format!("{VOLUNTEER_SELECT} WHERE u.id = $1 AND u.role = 'volunteer'");
    let row: Option<VolunteerRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(&state.pool)
        .await?;
    volunteer_view(row.ok_or_else(|| ApiError::not_found("volunteer"))?)
}

/// A volunteer with their gold answers per day.
#[derive(Debug, Serialize, ToSchema)]
pub struct VolunteerDetail {
    /// The volunteer.
    #[serde(flatten)]
    volunteer: VolunteerView,
    /// Gold answers per UTC day over the last 30 days, oldest first (days
    /// without one left out).
    gold_history: Vec<GoldDay>,
}

/// `GET /v1/staff/volunteers/{user_id}`.
#[utoipa::path(get, path = "/v1/staff/volunteers/{user_id}",
    params(("user_id" = Uuid, Path, description = "The volunteer.")),
    responses(
        (status = 200, description = "The volunteer with their reliability and gold answers per day.", body = VolunteerDetail),
        (status = 404, description = "`not_found`: no such volunteer", body = Problem, content_type = "application/problem+json"),
))]
pub async fn get(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<VolunteerDetail>> {
    let id: UserId = parse_id(&id, "volunteer")?;
    Ok(Json(VolunteerDetail {
        volunteer: one(&state, id).await?,
        gold_history: gold_history(&state, id).await?,
    }))
}

/// One UTC day of a volunteer's gold answers.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct GoldDay {
    /// The day, `YYYY-MM-DD`.
    day: chrono::NaiveDate,
    /// Gold tasks answered that day.
    answered: i64,
    /// Of those, answered with the known answer.
    correct: i64,
}

/// A volunteer's gold answers per UTC day over the last 30 days, oldest first
/// (days without a gold answer are left out).
async fn gold_history(state: &AppState, id: UserId) -> ApiResult<Vec<GoldDay>> {
    let days: Vec<GoldDay> = sqlx::query_as(
        "SELECT (v.created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS answered,
                count(*) FILTER (WHERE v.verdict = g.answer) AS correct
         FROM votes v JOIN gold_answers g ON g.task_id = v.task_id
         WHERE v.volunteer_id = $1 AND v.created_at >= now() - interval '30 days'
         GROUP BY 1 ORDER BY 1",
    )
    .bind(id.0)
    .fetch_all(&state.pool)
    .await?;
    Ok(days)
}

/// `POST /v1/staff/volunteers/{user_id}/reinstate-counting`: a volunteer the
/// abuse rules stopped counts again, with fresh gold and pace tallies (their
/// confusion estimate is kept). Audited.
#[utoipa::path(post, path = "/v1/staff/volunteers/{user_id}/reinstate-counting",
    params(("user_id" = Uuid, Path, description = "The volunteer.")),
    responses(
        (status = 200, description = "The volunteer, counting again (unchanged when they were).", body = VolunteerView),
        (status = 404, description = "`not_found`: no such volunteer", body = Problem, content_type = "application/problem+json"),
))]
pub async fn reinstate_counting(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<VolunteerView>> {
    let id: UserId = parse_id(&id, "volunteer")?;
    let mut tx = state.pool.begin().await?;
    let previous: Option<(bool, Option<String>)> = sqlx::query_as(
        "UPDATE volunteer_reliability r SET counting = true, flag = NULL, flagged_at = NULL,
             stats = $3, reinstated_by = $2, reinstated_at = now(), updated_at = now()
         FROM volunteer_reliability old
         WHERE r.volunteer_id = $1 AND old.volunteer_id = r.volunteer_id
         RETURNING old.counting, old.flag",
    )
    .bind(id.0)
    .bind(me.id.0)
    .bind(json!(VolunteerStats::default()))
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((was_counting, flag)) = previous {
        audit::record(
            &mut tx,
            me.id,
            "volunteer.reinstate_counting",
            &format!("user:{id}"),
            Some(json!({"counting": was_counting, "flag": flag})),
            json!({"counting": true}),
        )
        .await?;
    }
    tx.commit().await?;
    state.standing.invalidate(&[id.0]).await?;
    Ok(Json(one(&state, id).await?))
}

/// Query of the collusion flags.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FlagQuery {
    /// `open` (when absent) or `cleared`.
    #[param(value_type = Option<FlagStatus>)]
    status: Option<String>,
}

/// Whether a collusion flag still stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlagStatus {
    /// Not yet looked into.
    Open,
    /// Looked into and cleared.
    Cleared,
}

impl FlagStatus {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(FlagStatus::Open),
            "cleared" => Some(FlagStatus::Cleared),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            FlagStatus::Open => "open",
            FlagStatus::Cleared => "cleared",
        }
    }
}

/// A member of a collusion group.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Member {
    /// The account.
    user_id: Uuid,
    /// Its username.
    username: String,
}

/// A group of accounts that vote identically far more often than chance.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollusionFlag {
    /// The flag.
    id: i64,
    /// The accounts, in id order (`null` if none of them exists any more).
    members: Option<Vec<Member>>,
    /// When the group was found.
    detected_at: DateTime<Utc>,
    /// Whether it still stands.
    status: FlagStatus,
}

/// The collusion flags of one status.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollusionFlags {
    /// Newest first, at most 200.
    items: Vec<CollusionFlag>,
}

/// `GET /v1/staff/collusion-flags?status=open`: groups of accounts that vote
/// identically far more often than chance, newest first.
#[utoipa::path(get, path = "/v1/staff/collusion-flags", params(FlagQuery), responses(
    (status = 200, description = "The flags of that status, newest first.", body = CollusionFlags),
    (status = 400, description = "`invalid_query`: an unknown or malformed parameter", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: status neither open nor cleared", body = Problem, content_type = "application/problem+json"),
))]
pub async fn collusion_flags(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<FlagQuery>,
) -> ApiResult<Json<CollusionFlags>> {
    let status = FlagStatus::parse(q.status.as_deref().unwrap_or("open"))
        .ok_or_else(|| ApiError::invalid("status must be open or cleared"))?;
    let rows: Vec<(i64, Option<Value>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT f.id,
                (SELECT jsonb_agg(jsonb_build_object('user_id', u.id, 'username', u.username) ORDER BY u.id)
                 FROM users u WHERE u.id = ANY(f.members)),
                f.detected_at
         FROM collusion_flags f WHERE f.status = $1 ORDER BY f.id DESC LIMIT 200",
    )
    .bind(status.as_str())
    .fetch_all(&state.pool)
    .await?;
    let items = rows
        .into_iter()
        .map(|(id, members, detected_at)| {
            let members = members
                .map(serde_json::from_value)
                .transpose()
                .map_err(anyhow::Error::from)?;
            Ok(CollusionFlag {
                id,
                members,
                detected_at,
                status,
            })
        })
        .collect::<ApiResult<_>>()?;
    Ok(Json(CollusionFlags { items }))
}
