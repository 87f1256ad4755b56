//! The sampling rules: read, replace (validated and audited), their history, and
//! a dry run of proposed rules against the active listings.

use crate::audit;
use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use spotcheck_shared::listing::present;
use spotcheck_shared::sampling::{ListingGroup, Plan};
use spotcheck_shared::{SamplingPolicy, Stratum};
use std::collections::BTreeMap;
use uuid::Uuid;

async fn current(state: &AppState) -> ApiResult<Value> {
    let (id, policy, created_at): (i64, Value, DateTime<Utc>) = sqlx::query_as(
        "SELECT id, policy, created_at FROM sampling_policies ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&state.pool)
    .await?;
    let mut body = policy;
    body["version"] = json!(id);
    body["updated_at"] = json!(created_at);
    Ok(body)
}

fn validated(policy: &SamplingPolicy) -> ApiResult<()> {
    policy.validate().map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_sampling_rules",
            e.to_string(),
        )
    })
}

/// `GET /v1/staff/sampling-rules`.
pub async fn get_rules(State(state): State<AppState>, Staff(_): Staff) -> ApiResult<Json<Value>> {
    Ok(Json(current(&state).await?))
}

/// `PUT /v1/staff/sampling-rules`: replaces the policy; coordinators pick it up within seconds.
pub async fn put_rules(
    State(state): State<AppState>,
    Staff(me): Staff,
    ApiJson(policy): ApiJson<SamplingPolicy>,
) -> ApiResult<Json<Value>> {
    validated(&policy)?;
    let new = serde_json::to_value(&policy).map_err(anyhow::Error::from)?;
    let mut tx = state.pool.begin().await?;
    let (old,): (Value,) =
        sqlx::query_as("SELECT policy FROM sampling_policies ORDER BY id DESC LIMIT 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query("INSERT INTO sampling_policies (policy, created_by) VALUES ($1, $2)")
        .bind(&new)
        .bind(me.id.0)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        me.id,
        "sampling_rules.replace",
        "sampling_rules",
        Some(old),
        new,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(staff.id = %me.id, "sampling rules replaced");
    Ok(Json(current(&state).await?))
}

/// Query of the history.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    limit: Option<i64>,
    before: Option<i64>,
}

type VersionRow = (
    i64,
    Value,
    DateTime<Utc>,
    Option<Uuid>,
    Option<String>,
    Option<Value>,
);

/// `GET /v1/staff/sampling-rules/history?limit=&before=`: every version, newest
/// first, with who made it, when, and the rules it replaced.
pub async fn history(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 100"));
    }
    let rows: Vec<VersionRow> = sqlx::query_as(
        "SELECT p.id, p.policy, p.created_at, p.created_by, u.username,
                (SELECT prev.policy FROM sampling_policies prev WHERE prev.id < p.id
                 ORDER BY prev.id DESC LIMIT 1)
         FROM sampling_policies p LEFT JOIN users u ON u.id = p.created_by
         WHERE $1::bigint IS NULL OR p.id < $1
         ORDER BY p.id DESC LIMIT $2",
    )
    .bind(q.before)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.0))
        .flatten();
    let items: Vec<Value> = rows
        .into_iter()
        .map(|(version, new, at, by, username, old)| {
            json!({
                "version": version,
                "changed_at": at,
                "changed_by": by.map(|id| json!({"user_id": id, "username": username})),
                "old": old,
                "new": new,
            })
        })
        .collect();
    Ok(Json(json!({"items": items, "next_before": next})))
}

/// Active listings grouped by stratum and present signals.
async fn active_groups(state: &AppState) -> ApiResult<Vec<ListingGroup>> {
    let rows: Vec<(String, String, String, Value, i64)> = sqlx::query_as(
        "SELECT category, region, seller_risk_tier, signals, count(*)
         FROM listings WHERE active GROUP BY 1, 2, 3, 4",
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(category, region, seller_risk_tier, signals, n)| {
            let signals: BTreeMap<String, bool> =
                serde_json::from_value(signals).unwrap_or_default();
            ListingGroup {
                stratum: Stratum {
                    category,
                    region,
                    seller_risk_tier,
                },
                signals: present(&signals).map(str::to_owned).collect(),
                listings: n.max(0) as u64,
            }
        })
        .collect())
}

/// A plan with its cost in votes and volunteer-hours.
fn costed(
    plan: &Plan,
    votes_per_task: f64,
    vote_seconds: f64,
    votes_per_hour: Option<f64>,
) -> Value {
    let hours = |tasks: f64| tasks * votes_per_task * vote_seconds / 3600.0;
    let strata: BTreeMap<&String, Value> = plan
        .strata
        .iter()
        .map(|(k, s)| {
            (
                k,
                json!({
                    "listings": s.listings,
                    "expected_tasks": s.expected_tasks,
                    "volunteer_hours": hours(s.expected_tasks),
                }),
            )
        })
        .collect();
    let votes = plan.expected_tasks * votes_per_task;
    json!({
        "listings": plan.listings,
        "expected_tasks": plan.expected_tasks,
        "votes": votes,
        "volunteer_hours": hours(plan.expected_tasks),
        "hours_at_current_pace": votes_per_hour.filter(|v| *v > 0.0).map(|v| votes / v),
        "strata": strata,
    })
}

/// `POST /v1/staff/sampling-rules/dry-run`: what proposed rules would sample per
/// round (per stratum and in total, before any capacity throttling) and the
/// volunteer-hours that is, beside the same figures for the rules in force.
/// Changes nothing.
pub async fn dry_run(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiJson(proposed): ApiJson<SamplingPolicy>,
) -> ApiResult<Json<Value>> {
    validated(&proposed)?;
    let (in_force,): (Value,) =
        sqlx::query_as("SELECT policy FROM sampling_policies ORDER BY id DESC LIMIT 1")
            .fetch_one(&state.pool)
            .await?;
    let in_force: SamplingPolicy = serde_json::from_value(in_force).map_err(anyhow::Error::from)?;
    let groups = active_groups(&state).await?;
    let pace: Option<(Value,)> = sqlx::query_as("SELECT capacity FROM capacity_state WHERE id = 1")
        .fetch_optional(&state.pool)
        .await?;
    let votes_per_hour = pace
        .and_then(|(c,)| serde_json::from_value::<spotcheck_shared::capacity::Capacity>(c).ok())
        .map(|c| c.votes_per_hour());
    let (votes, secs) = (f64::from(state.config.min_votes), state.config.vote_seconds);
    Ok(Json(json!({
        "per": "round",
        "votes_per_task": votes,
        "vote_seconds": secs,
        "votes_per_hour_recently": votes_per_hour,
        "proposed": costed(&proposed.plan(&groups), votes, secs, votes_per_hour),
        "in_force": costed(&in_force.plan(&groups), votes, secs, votes_per_hour),
    })))
}
