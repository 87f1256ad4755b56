//! Staff views of volunteer quality: gold tasks (added by staff), each
//! volunteer's reliability and abuse flags, reinstatement, and collusion flags.

use crate::audit;
use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, page_params, parse_id};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spotcheck_shared::abuse::VolunteerStats;
use spotcheck_shared::reliability::Confusion;
use spotcheck_shared::{Listing, TaskId, UserId, Verdict};
use uuid::Uuid;

/// Body of `POST /v1/staff/gold-tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldBody {
    listing: Listing,
    answer: Verdict,
}

/// `POST /v1/staff/gold-tasks`: a listing with a known answer becomes a gold
/// task. The listing must be new to Spotcheck; it is stored inactive, so it is
/// never sampled, and the feed never changes it.
pub async fn add_gold(
    State(state): State<AppState>,
    Staff(me): Staff,
    ApiJson(body): ApiJson<GoldBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
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
    Ok((StatusCode::CREATED, Json(json!({"task_id": task}))))
}

type VolunteerRow = (
    Uuid,
    String,
    String,
    Option<Value>,
    Option<Value>,
    Option<bool>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<Value>,
    i64,
);

const VOLUNTEER_SELECT: &str = "SELECT u.id, u.username, u.status, r.confusion, r.stats,
        r.counting, r.flag, r.flagged_at, r.recalibrated,
        (SELECT count(*) FROM votes v WHERE v.volunteer_id = u.id)
     FROM users u LEFT JOIN volunteer_reliability r ON r.volunteer_id = u.id";

fn volunteer_json(row: VolunteerRow) -> Value {
    let (id, username, status, confusion, stats, counting, flag, flagged_at, recalibrated, votes) =
        row;
    let confusion: Confusion = confusion
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    let stats: VolunteerStats = stats
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default();
    let p = |truth, verdict| confusion.prob(truth, verdict);
    json!({
        "user_id": id,
        "username": username,
        "status": status,
        "counting": counting.unwrap_or(true),
        "flag": flag,
        "flagged_at": flagged_at,
        "votes": votes,
        "accuracy": confusion.accuracy(),
        "answers_with_known_truth": confusion.answers(),
        "confusion": {
            "genuine": {"genuine": p(false, Verdict::Genuine), "counterfeit": p(false, Verdict::Counterfeit), "unsure": p(false, Verdict::Unsure)},
            "counterfeit": {"genuine": p(true, Verdict::Genuine), "counterfeit": p(true, Verdict::Counterfeit), "unsure": p(true, Verdict::Unsure)},
        },
        "gold": {
            "answered": stats.gold_answered(),
            "correct": stats.gold_genuine.correct + stats.gold_counterfeit.correct,
        },
        "recent_votes": stats.recent_votes,
        "recent_fast_votes": stats.recent_fast_votes,
        "recalibrated": recalibrated,
    })
}

/// Query of the volunteer list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolunteerQuery {
    flagged: Option<bool>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /v1/staff/volunteers?flagged=&limit=&cursor=`: volunteers with their
/// reliability, in id order; `flagged=true` lists those who stopped counting.
pub async fn list(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<VolunteerQuery>,
) -> ApiResult<Json<Value>> {
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
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.0.to_string()))
        .flatten();
    let items: Vec<Value> = rows.into_iter().map(volunteer_json).collect();
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

async fn one(state: &AppState, id: UserId) -> ApiResult<Value> {
    let sql = format!("{VOLUNTEER_SELECT} WHERE u.id = $1 AND u.role = 'volunteer'");
    let row: Option<VolunteerRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(&state.pool)
        .await?;
    row.map(volunteer_json)
        .ok_or_else(|| ApiError::not_found("volunteer"))
}

/// `GET /v1/staff/volunteers/{user_id}`.
pub async fn get(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id: UserId = parse_id(&id, "volunteer")?;
    let mut volunteer = one(&state, id).await?;
    volunteer["gold_history"] = gold_history(&state, id).await?;
    Ok(Json(volunteer))
}

/// One UTC day of a volunteer's gold answers.
#[derive(Debug, Serialize, sqlx::FromRow)]
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
async fn gold_history(state: &AppState, id: UserId) -> ApiResult<Value> {
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
    Ok(json!(days))
}

/// `POST /v1/staff/volunteers/{user_id}/reinstate-counting`: a volunteer the
/// abuse rules stopped counts again, with fresh gold and pace tallies (their
/// confusion estimate is kept). Audited.
pub async fn reinstate_counting(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagQuery {
    status: Option<String>,
}

/// `GET /v1/staff/collusion-flags?status=open`: groups of accounts that vote
/// identically far more often than chance, newest first.
pub async fn collusion_flags(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<FlagQuery>,
) -> ApiResult<Json<Value>> {
    let status = q.status.as_deref().unwrap_or("open");
    if !["open", "cleared"].contains(&status) {
        return Err(ApiError::invalid("status must be open or cleared"));
    }
    let rows: Vec<(i64, Value, DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT f.id,
                (SELECT jsonb_agg(jsonb_build_object('user_id', u.id, 'username', u.username) ORDER BY u.id)
                 FROM users u WHERE u.id = ANY(f.members)),
                f.detected_at, f.status
         FROM collusion_flags f WHERE f.status = $1 ORDER BY f.id DESC LIMIT 200",
    )
    .bind(status)
    .fetch_all(&state.pool)
    .await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(id, members, at, status)| {
            json!({"id": id, "members": members, "detected_at": at, "status": status})
        })
        .collect();
    Ok(Json(json!({"items": items})))
}
