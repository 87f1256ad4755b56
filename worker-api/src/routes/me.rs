//! The signed-in user's own profile.

use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

/// `GET /v1/me`: profile, role and counts.
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let (username, status, created_at, votes): (String, String, chrono::DateTime<chrono::Utc>, i64) = sqlx::query_as(
        "SELECT u.username, u.status, u.created_at, (SELECT count(*) FROM votes v WHERE v.volunteer_id = u.id)
         FROM users u WHERE u.id = $1",
    )
    .bind(caller.id.0)
    .fetch_one(&state.pool)
    .await?;
    Ok(Json(json!({
        "user_id": caller.id,
        "username": username,
        "role": caller.role,
        "status": status,
        "created_at": created_at,
        "counts": {"votes": votes},
    })))
}
