//! The sampling rules: read, replace (validated and audited), their history, and
//! a dry run of proposed rules against the active listings.

use crate::audit;
use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spotcheck_shared::listing::present;
use spotcheck_shared::sampling::{ListingGroup, Plan};
use spotcheck_shared::{SamplingPolicy, Stratum};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The rules in force as `GET` answers them, and as `PUT` and the dry run take
/// them: the policy, with its version and time, which are read-only (a client
/// may send back what it read; they are ignored).
#[derive(Debug, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Map<String, Value>")]
pub struct SamplingRules {
    /// The policy.
    #[serde(flatten)]
    pub policy: SamplingPolicy,
    /// The version in force (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// When it was saved (read-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl TryFrom<serde_json::Map<String, Value>> for SamplingRules {
    type Error = serde_json::Error;
    fn try_from(mut body: serde_json::Map<String, Value>) -> Result<Self, Self::Error> {
        // Read-only members: accepted and ignored, so a GET can be PUT back.
        body.remove("version");
        body.remove("updated_at");
        Ok(Self {
            policy: serde_json::from_value(Value::Object(body))?,
            version: None,
            updated_at: None,
        })
    }
}

/// The policy's schema with the read-only members beside its own (an `allOf`
/// would not do: the policy admits no member it does not name).
impl utoipa::PartialSchema for SamplingRules {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut schema =
            serde_json::to_value(SamplingPolicy::schema()).expect("a schema serializes");
        let read_only = [
            (
                "version",
                json!({"type": "integer", "format": "int64", "readOnly": true,
                "description": "The version in force (read-only; ignored when sent)."}),
            ),
            (
                "updated_at",
                json!({"type": "string", "format": "date-time", "readOnly": true,
                "description": "When it was saved (read-only; ignored when sent)."}),
            ),
        ];
        for (name, member) in read_only {
            schema["properties"][name] = member;
        }
        schema["description"] =
            json!("The sampling rules: what GET answers can be sent back through PUT unchanged.");
        utoipa::openapi::RefOr::T(serde_json::from_value(schema).expect("a valid schema"))
    }
}

impl ToSchema for SamplingRules {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <SamplingPolicy as ToSchema>::schemas(schemas);
    }
}

/// One version of the rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct RulesVersion {
    /// Its version number.
    version: i64,
    /// When it was saved.
    changed_at: DateTime<Utc>,
    /// Who saved it (none for the rules the schema started with).
    changed_by: Option<Author>,
    /// The rules it replaced (none for the first version).
    old: Option<SamplingPolicy>,
    /// The rules it put in force.
    new: SamplingPolicy,
}

/// Who made a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct Author {
    /// The staff member's id.
    user_id: Uuid,
    /// Their username.
    username: Option<String>,
}

/// A page of the history, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RulesHistory {
    /// The versions.
    items: Vec<RulesVersion>,
    /// `before` of the next page, when there may be one.
    next_before: Option<i64>,
}

/// What one stratum would cost per round.
#[derive(Debug, Serialize, ToSchema)]
pub struct StratumCost {
    /// Active listings in the stratum.
    listings: u64,
    /// Expected tasks per round.
    expected_tasks: f64,
    /// Volunteer-hours those tasks take.
    volunteer_hours: f64,
}

/// What a policy would cost per round, per stratum and in total.
#[derive(Debug, Serialize, ToSchema)]
pub struct Costed {
    /// Active listings.
    listings: u64,
    /// Expected tasks per round.
    expected_tasks: f64,
    /// Votes those tasks ask for.
    votes: f64,
    /// Volunteer-hours those votes take.
    volunteer_hours: f64,
    /// Hours to collect them at the recent pace, when one is measured.
    hours_at_current_pace: Option<f64>,
    /// By stratum key (`category/region/tier`).
    strata: BTreeMap<String, StratumCost>,
}

/// The answer of a dry run.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRun {
    /// The period the figures are for: `round`.
    #[schema(value_type = String, example = "round")]
    per: &'static str,
    /// Votes a task asks for.
    votes_per_task: f64,
    /// Seconds a vote takes.
    vote_seconds: f64,
    /// The recent pace of votes, when measured.
    votes_per_hour_recently: Option<f64>,
    /// The proposed rules' cost.
    proposed: Costed,
    /// The cost of the rules in force.
    in_force: Costed,
}

async fn current(state: &AppState) -> ApiResult<SamplingRules> {
    let (id, policy, created_at): (i64, Value, DateTime<Utc>) = sqlx::query_as(
        "SELECT id, policy, created_at FROM sampling_policies ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&state.pool)
    .await?;
    Ok(SamplingRules {
        policy: stored(policy)?,
        version: Some(id),
        updated_at: Some(created_at),
    })
}

/// A stored policy.
fn stored(policy: Value) -> ApiResult<SamplingPolicy> {
    Ok(serde_json::from_value(policy).map_err(anyhow::Error::from)?)
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
#[utoipa::path(get, path = "/v1/staff/sampling-rules", responses(
    (status = 200, description = "The rules in force, with their version.", body = SamplingRules),
))]
pub async fn get_rules(
    State(state): State<AppState>,
    Staff(_): Staff,
) -> ApiResult<Json<SamplingRules>> {
    Ok(Json(current(&state).await?))
}

/// `PUT /v1/staff/sampling-rules`: replaces the policy; coordinators pick it up within seconds.
#[utoipa::path(put, path = "/v1/staff/sampling-rules", request_body = SamplingRules, responses(
    (status = 200, description = "The new rules in force, with their version.", body = SamplingRules),
    (status = 422, description = "`invalid_sampling_rules` naming the field, `invalid_body`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn put_rules(
    State(state): State<AppState>,
    Staff(me): Staff,
    ApiJson(SamplingRules { policy, .. }): ApiJson<SamplingRules>,
) -> ApiResult<Json<SamplingRules>> {
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
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Versions per page, 1 to 100 (20 when absent).
    limit: Option<i64>,
    /// Only versions older than this one.
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
#[utoipa::path(get, path = "/v1/staff/sampling-rules/history", params(HistoryQuery), responses(
    (status = 200, description = "A page of versions, newest first.", body = RulesHistory),
    (status = 422, description = "`validation_failed`: limit out of range", body = Problem, content_type = "application/problem+json"),
))]
pub async fn history(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<RulesHistory>> {
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
    let items = rows
        .into_iter()
        .map(|(version, new, at, by, username, old)| {
            Ok(RulesVersion {
                version,
                changed_at: at,
                changed_by: by.map(|user_id| Author { user_id, username }),
                old: old.map(stored).transpose()?,
                new: stored(new)?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(RulesHistory {
        items,
        next_before: next,
    }))
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
) -> Costed {
    let hours = |tasks: f64| tasks * votes_per_task * vote_seconds / 3600.0;
    let strata = plan
        .strata
        .iter()
        .map(|(k, s)| {
            (
                k.clone(),
                StratumCost {
                    listings: s.listings,
                    expected_tasks: s.expected_tasks,
                    volunteer_hours: hours(s.expected_tasks),
                },
            )
        })
        .collect();
    let votes = plan.expected_tasks * votes_per_task;
    Costed {
        listings: plan.listings,
        expected_tasks: plan.expected_tasks,
        votes,
        volunteer_hours: hours(plan.expected_tasks),
        hours_at_current_pace: votes_per_hour.filter(|v| *v > 0.0).map(|v| votes / v),
        strata,
    }
}

/// `POST /v1/staff/sampling-rules/dry-run`: what proposed rules would sample per
/// round (per stratum and in total, before any capacity throttling) and the
/// volunteer-hours that is, beside the same figures for the rules in force.
/// Changes nothing.
#[utoipa::path(post, path = "/v1/staff/sampling-rules/dry-run", request_body = SamplingRules, responses(
    (status = 200, description = "The proposed rules' cost beside the cost of those in force.", body = DryRun),
    (status = 422, description = "`invalid_sampling_rules` naming the field, `invalid_body`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn dry_run(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiJson(SamplingRules {
        policy: proposed, ..
    }): ApiJson<SamplingRules>,
) -> ApiResult<Json<DryRun>> {
    validated(&proposed)?;
    let (in_force,): (Value,) =
        sqlx::query_as("SELECT policy FROM sampling_policies ORDER BY id DESC LIMIT 1")
            .fetch_one(&state.pool)
            .await?;
    let in_force = stored(in_force)?;
    let groups = active_groups(&state).await?;
    let pace: Option<(Value,)> = sqlx::query_as("SELECT capacity FROM capacity_state WHERE id = 1")
        .fetch_optional(&state.pool)
        .await?;
    let votes_per_hour = pace
        .and_then(|(c,)| serde_json::from_value::<spotcheck_shared::capacity::Capacity>(c).ok())
        .map(|c| c.votes_per_hour());
    let (votes, secs) = (f64::from(state.config.min_votes), state.config.vote_seconds);
    Ok(Json(DryRun {
        per: "round",
        votes_per_task: votes,
        vote_seconds: secs,
        votes_per_hour_recently: votes_per_hour,
        proposed: costed(&proposed.plan(&groups), votes, secs, votes_per_hour),
        in_force: costed(&in_force.plan(&groups), votes, secs, votes_per_hour),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_as_read_can_be_sent_back_and_their_read_only_members_are_ignored() {
        let read = SamplingRules {
            policy: serde_json::from_value(json!({
                "default_rate": 0.2, "floor_rate": 0.01,
                "rules": [{"category": "bags", "rate": 0.5}], "boosts": {"brand_complaint": 3.0},
            }))
            .unwrap(),
            version: Some(7),
            updated_at: Some(Utc::now()),
        };
        let sent = serde_json::to_value(&read).unwrap();
        assert_eq!(sent["version"], 7);
        let back: SamplingRules = serde_json::from_value(sent).unwrap();
        assert_eq!(back.policy, read.policy);
        assert_eq!((back.version, back.updated_at), (None, None));
        let typo = json!({"default_rate": 0.2, "flor_rate": 0.1});
        assert!(serde_json::from_value::<SamplingRules>(typo).is_err());
    }
}
