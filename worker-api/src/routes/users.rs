//! Account management by staff: create (admins any role, staff volunteers only),
//! suspend and reinstate.

use crate::audit;
use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, parse_id};
use crate::state::AppState;
use crate::users::{CreateUserError, create_user_with};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use spotcheck_shared::{Role, UserId, UserStatus};

/// `POST /v1/staff/users` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    password: String,
    role: Role,
}

/// Creates an account.
pub async fn create(
    State(state): State<AppState>,
    Staff(me): Staff,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if me.role != Role::Admin && body.role != Role::Volunteer {
        return Err(ApiError::forbidden(
            "only admins create staff or admin accounts",
        ));
    }
    let id = create_user_with(
        &state.pool,
        &state.hasher,
        &body.username,
        body.password,
        body.role,
    )
    .await
    .map_err(|e| match e {
        CreateUserError::Taken => {
            ApiError::new(StatusCode::CONFLICT, "username_taken", e.to_string())
        }
        CreateUserError::BadUsername | CreateUserError::WeakPassword(_) => {
            ApiError::invalid(e.to_string())
        }
        CreateUserError::Busy(busy) => busy.into(),
        CreateUserError::Internal(e) => ApiError::internal(e),
    })?;
    let new = json!({"username": body.username, "role": body.role});
    audit::record(
        &state.pool,
        me.id,
        "user.create",
        &format!("user:{id}"),
        None,
        new,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"user_id": id}))))
}

async fn set_status(
    state: &AppState,
    me: crate::auth::Caller,
    raw_id: &str,
    status: UserStatus,
) -> ApiResult<Json<Value>> {
    let id: UserId = parse_id(raw_id, "user")?;
    if id == me.id {
        return Err(ApiError::forbidden("you cannot change your own status"));
    }
    let mut tx = state.pool.begin().await?;
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT role, status FROM users WHERE id = $1 FOR UPDATE")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
    let (role, old) = row.ok_or_else(|| ApiError::not_found("user"))?;
    if me.role != Role::Admin && role != Role::Volunteer.as_str() {
        return Err(ApiError::forbidden(
            "only admins change the status of staff or admins",
        ));
    }
    sqlx::query("UPDATE users SET status = $2 WHERE id = $1")
        .bind(id.0)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut *tx,
        me.id,
        "user.status",
        &format!("user:{id}"),
        Some(json!({"status": old})),
        json!({"status": status.as_str()}),
    )
    .await?;
    tx.commit().await?;
    state.standing.invalidate(&[id.0]).await?;
    Ok(Json(json!({"user_id": id, "status": status.as_str()})))
}

/// `POST /v1/staff/users/{user_id}/suspend`: the user's tokens stop working at once.
pub async fn suspend(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    set_status(&state, me, &id, UserStatus::Suspended).await
}

/// `POST /v1/staff/users/{user_id}/reinstate`.
pub async fn reinstate(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    set_status(&state, me, &id, UserStatus::Active).await
}

/// `POST /v1/staff/users/{user_id}/seller-links` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SellerLink {
    seller_id: String,
    #[serde(default)]
    reason: Option<String>,
}

/// Records that a volunteer is linked to a seller (conflict of interest): the
/// volunteer is never offered that seller's listings. Idempotent.
pub async fn link_seller(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SellerLink>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let id: UserId = parse_id(&id, "user")?;
    if body.seller_id.is_empty() || body.seller_id.len() > 128 {
        return Err(ApiError::invalid("seller_id must be 1 to 128 characters"));
    }
    let reason = body.reason.unwrap_or_else(|| "declared".to_owned());
    if reason.chars().count() > 500 {
        return Err(ApiError::invalid("reason is at most 500 characters"));
    }
    let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(id.0)
        .fetch_optional(&state.pool)
        .await?;
    if role.ok_or_else(|| ApiError::not_found("user"))? != Role::Volunteer.as_str() {
        return Err(ApiError::invalid(
            "seller links are recorded for volunteers",
        ));
    }
    sqlx::query(
        "INSERT INTO volunteer_seller_links (volunteer_id, seller_id, reason, created_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT ON CONSTRAINT volunteer_seller_links_pkey DO NOTHING",
    )
    .bind(id.0)
    .bind(&body.seller_id)
    .bind(&reason)
    .bind(me.id.0)
    .execute(&state.pool)
    .await?;
    state.standing.invalidate(&[id.0]).await?;
    let new = json!({"seller_id": body.seller_id, "reason": reason});
    audit::record(
        &state.pool,
        me.id,
        "user.seller_link",
        &format!("user:{id}"),
        None,
        new,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user_id": id, "seller_id": body.seller_id})),
    ))
}
