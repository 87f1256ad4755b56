//! The sampling rules in force: read, and replace (validated and audited).

use crate::audit;
use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use spotcheck_shared::SamplingPolicy;

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
    policy.validate().map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_sampling_rules",
            e.to_string(),
        )
    })?;
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
        &mut *tx,
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
