//! Account management by staff: create (admins any role, staff the roles
//! without staff powers; sellers linked to their seller id, brand owners to
//! their brands), list, suspend and reinstate.

use crate::audit;
use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, next_cursor, page_params, parse_id};
use crate::state::AppState;
use crate::users::{CreateUserError, hash_new_account, insert_user};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_shared::complaint::{check_brands, check_id};
use spotcheck_shared::{Role, UserId, UserStatus};
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/staff/users` body: a seller account names its `seller_id`, a
/// brand owner's the `brands` it may complain about.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 3 to 64 characters of letters, digits, `_`, `.` or `-`.
    username: String,
    /// 10 to 256 characters.
    #[schema(format = Password)]
    password: String,
    /// What the account may do (staff and admins only by admins).
    role: Role,
    /// The seller a seller account acts for (seller accounts only).
    #[serde(default)]
    seller_id: Option<String>,
    /// The brands a brand owner may complain about (brand owners only).
    #[serde(default)]
    brands: Option<Vec<String>>,
}

/// `201` answer of a new account.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserCreated {
    /// The account.
    user_id: UserId,
}

/// The answer of a status change.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusChanged {
    /// The account.
    user_id: UserId,
    /// Its status now.
    status: UserStatus,
}

/// The links a new account's role asks for, validated.
fn links(body: &NewUser) -> ApiResult<(Option<&str>, Vec<String>)> {
    let seller_id = match (body.role, body.seller_id.as_deref()) {
        (Role::Seller, Some(id)) => {
            check_id("seller_id", id).map_err(ApiError::invalid)?;
            Some(id)
        }
        (Role::Seller, None) => return Err(ApiError::invalid("a seller account needs seller_id")),
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "seller_id is given for seller accounts only",
            ));
        }
        (_, None) => None,
    };
    let brands = match (body.role, body.brands.as_deref()) {
        (Role::BrandOwner, Some(brands)) => check_brands(brands).map_err(ApiError::invalid)?,
        (Role::BrandOwner, None) => {
            return Err(ApiError::invalid("a brand-owner account needs brands"));
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "brands are given for brand-owner accounts only",
            ));
        }
        (_, None) => Vec::new(),
    };
    Ok((seller_id, brands))
}

/// Creates an account: admins any role, staff the roles without staff powers
/// (volunteers, sellers, brand owners). A seller account is refused while its
/// seller is banned (409 `seller_banned`). One audit row, in the same
/// transaction as the account and its brands.
#[utoipa::path(post, path = "/v1/staff/users", request_body = NewUser, responses(
    (status = 201, description = "The account.", body = UserCreated),
    (status = 403, description = "`forbidden`: only admins create staff or admin accounts", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "`username_taken`, `seller_banned`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: bad username, weak password, a link the role does not take or lacks; `invalid_body`", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "`busy`: no password-hashing slot came free in time", body = Problem, content_type = "application/problem+json"),
))]
pub async fn create(
    State(state): State<AppState>,
    Staff(me): Staff,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<UserCreated>)> {
    if me.role != Role::Admin && body.role.is_staff() {
        return Err(ApiError::forbidden(
            "only admins create staff or admin accounts",
        ));
    }
    let (seller_id, brands) = links(&body)?;
    let refused = |e: CreateUserError| match e {
        CreateUserError::Taken => {
            ApiError::new(StatusCode::CONFLICT, "username_taken", e.to_string())
        }
        CreateUserError::BadUsername | CreateUserError::WeakPassword(_) => {
            ApiError::invalid(e.to_string())
        }
        CreateUserError::Busy(busy) => busy.into(),
        CreateUserError::Internal(e) => ApiError::internal(e),
    };
    let hash = hash_new_account(&state.hasher, &body.username, body.password.clone())
        .await
        .map_err(refused)?;
    let mut tx = state.pool.begin().await?;
    if let Some(seller) = seller_id {
        // Shared lock: a ban committed meanwhile waits for this account, or is seen.
        let banned: Option<bool> =
            sqlx::query_scalar("SELECT banned FROM sellers WHERE seller_id = $1 FOR SHARE")
                .bind(seller)
                .fetch_optional(&mut *tx)
                .await?;
        if banned == Some(true) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "seller_banned",
                "this seller is banned: no new account may act for it",
            ));
        }
    }
    let id = insert_user(&mut *tx, &body.username, hash, body.role, seller_id)
        .await
        .map_err(refused)?;
    if !brands.is_empty() {
        sqlx::query(
            "INSERT INTO brand_owner_brands (user_id, brand) SELECT $1, b FROM unnest($2::text[]) AS b",
        )
        .bind(id.0)
        .bind(&brands)
        .execute(&mut *tx)
        .await?;
    }
    let mut new = json!({"username": body.username, "role": body.role});
    if let Some(seller) = seller_id {
        new["seller_id"] = json!(seller);
    }
    if !brands.is_empty() {
        new["brands"] = json!(brands);
    }
    audit::record(
        &mut tx,
        me.id,
        "user.create",
        &format!("user:{id}"),
        None,
        new,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(UserCreated { user_id: id })))
}

async fn set_status(
    state: &AppState,
    me: crate::auth::Caller,
    raw_id: &str,
    status: UserStatus,
) -> ApiResult<Json<StatusChanged>> {
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
    let staff_account = role.parse::<Role>().map_or(true, Role::is_staff);
    if me.role != Role::Admin && staff_account {
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
        &mut tx,
        me.id,
        "user.status",
        &format!("user:{id}"),
        Some(json!({"status": old})),
        json!({"status": status.as_str()}),
    )
    .await?;
    tx.commit().await?;
    state.standing.invalidate(&[id.0]).await?;
    Ok(Json(StatusChanged {
        user_id: id,
        status,
    }))
}

/// Query of the user list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Only accounts of this role.
    role: Option<Role>,
    /// Only accounts in this status.
    status: Option<UserStatus>,
    /// Part of the username, any case (up to 64 characters).
    q: Option<String>,
    /// Accounts per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(format = Uuid)]
    cursor: Option<String>,
}

/// One account in the user list.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct UserEntry {
    /// The account.
    user_id: uuid::Uuid,
    /// Its username.
    username: String,
    /// What it may do.
    #[sqlx(try_from = "String")]
    role: Role,
    /// Whether it may act.
    #[sqlx(try_from = "String")]
    status: UserStatus,
    /// When it was created.
    created_at: chrono::DateTime<chrono::Utc>,
    /// The seller of a seller account.
    seller_id: Option<String>,
    /// The brands of a brand owner's account (empty for other roles).
    brands: Vec<String>,
}

/// A page of the user list.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    /// In id order.
    items: Vec<UserEntry>,
    /// `cursor` of the next page, when there is one.
    next_cursor: Option<String>,
}

/// `GET /v1/staff/users?role=&status=&q=&limit=&cursor=`: accounts in id order,
/// filtered by role, status and part of the username.
#[utoipa::path(get, path = "/v1/staff/users", params(UserQuery), responses(
    (status = 200, description = "A page of accounts, in id order.", body = UserPage),
    (status = 400, description = "`invalid_query`: an unknown or malformed parameter", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: q too long, limit out of range or malformed cursor", body = Problem, content_type = "application/problem+json"),
))]
pub async fn list(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(query): ApiQuery<UserQuery>,
) -> ApiResult<Json<UserPage>> {
    let (limit, cursor) = page_params(query.limit, query.cursor.as_deref())?;
    let needle = match query.q.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(q) if q.chars().count() > 64 => {
            return Err(ApiError::invalid("q is at most 64 characters"));
        }
        // LIKE's own characters match themselves.
        Some(q) => Some(format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )),
    };
    let mut items: Vec<UserEntry> = sqlx::query_as(
        "SELECT u.id AS user_id, u.username, u.role, u.status, u.created_at, u.seller_id,
                coalesce((SELECT array_agg(b.brand ORDER BY b.brand) FROM brand_owner_brands b
                          WHERE b.user_id = u.id), '{}') AS brands
         FROM users u
         WHERE ($1::uuid IS NULL OR u.id > $1)
           AND ($2::text IS NULL OR u.role = $2)
           AND ($3::text IS NULL OR u.status = $3)
           AND ($4::text IS NULL OR u.username ILIKE $4)
         ORDER BY u.id LIMIT $5",
    )
    .bind(cursor)
    .bind(query.role.map(Role::as_str))
    .bind(query.status.map(UserStatus::as_str))
    .bind(needle)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let next_cursor = next_cursor(&mut items, limit, |u| u.user_id);
    Ok(Json(UserPage { items, next_cursor }))
}

/// `POST /v1/staff/users/{user_id}/suspend`: the user's tokens stop working at once.
#[utoipa::path(post, path = "/v1/staff/users/{user_id}/suspend",
    params(("user_id" = Uuid, Path, description = "The account.")),
    responses(
        (status = 200, description = "Suspended (a repeat answers the same).", body = StatusChanged),
        (status = 403, description = "`forbidden`: your own account, or a staff or admin account unless you are an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such account", body = Problem, content_type = "application/problem+json"),
))]
pub async fn suspend(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<StatusChanged>> {
    set_status(&state, me, &id, UserStatus::Suspended).await
}

/// `POST /v1/staff/users/{user_id}/reinstate`.
#[utoipa::path(post, path = "/v1/staff/users/{user_id}/reinstate",
    params(("user_id" = Uuid, Path, description = "The account.")),
    responses(
        (status = 200, description = "Active again (a repeat answers the same).", body = StatusChanged),
        (status = 403, description = "`forbidden`: your own account, or a staff or admin account unless you are an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such account", body = Problem, content_type = "application/problem+json"),
))]
pub async fn reinstate(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<StatusChanged>> {
    set_status(&state, me, &id, UserStatus::Active).await
}

/// `POST /v1/staff/users/{user_id}/seller-links` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SellerLink {
    /// The seller the volunteer is linked to.
    #[schema(min_length = 1, max_length = 128)]
    seller_id: String,
    /// Why (`declared` when absent), up to 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// `201` answer of a seller link.
#[derive(Debug, Serialize, ToSchema)]
pub struct SellerLinked {
    /// The volunteer.
    user_id: UserId,
    /// The seller.
    seller_id: String,
}

/// Records that a volunteer is linked to a seller (conflict of interest): the
/// volunteer is never offered that seller's listings. Idempotent.
#[utoipa::path(post, path = "/v1/staff/users/{user_id}/seller-links", request_body = SellerLink,
    params(("user_id" = Uuid, Path, description = "The volunteer.")),
    responses(
        (status = 201, description = "Recorded (a repeat answers the same).", body = SellerLinked),
        (status = 404, description = "`not_found`: no such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: not a volunteer, seller_id or reason out of bounds; `invalid_body`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn link_seller(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SellerLink>,
) -> ApiResult<(StatusCode, Json<SellerLinked>)> {
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
    // The link and its audit row in one transaction; the cached standing is
    // dropped once both are committed.
    let mut tx = state.pool.begin().await?;
    sqlx::query(
        "INSERT INTO volunteer_seller_links (volunteer_id, seller_id, reason, created_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT ON CONSTRAINT volunteer_seller_links_pkey DO NOTHING",
    )
    .bind(id.0)
    .bind(&body.seller_id)
    .bind(&reason)
    .bind(me.id.0)
    .execute(&mut *tx)
    .await?;
    let new = json!({"seller_id": body.seller_id, "reason": reason});
    audit::record(
        &mut tx,
        me.id,
        "user.seller_link",
        &format!("user:{id}"),
        None,
        new,
    )
    .await?;
    tx.commit().await?;
    state.standing.invalidate(&[id.0]).await?;
    Ok((
        StatusCode::CREATED,
        Json(SellerLinked {
            user_id: id,
            seller_id: body.seller_id,
        }),
    ))
}
