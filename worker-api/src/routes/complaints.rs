//! What a brand-owner account does: files complaints about the brands it is
//! linked to, and reads the status and outcome of its own complaints (never a
//! volunteer's identity or vote).
//!
//! A complaint about a listing opens an out-of-round inspection of it at once;
//! any complaint boosts the seller's other listings by the owner's credibility
//! (see [`spotcheck_shared::complaint`]). A duplicate while one is open for
//! the same listing (or, without a listing, the same seller) merges its
//! evidence into the open one. All of it, with one audit row, in one
//! transaction; an owner's complaints are serialised, so neither the merge nor
//! the hourly limit can be raced.

use crate::audit;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, page_params, parse_id};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_platform::complaints::{boost_seller_listings, open_inspection, owner_credibility};
use spotcheck_shared::complaint::{
    ComplaintReason, MAX_BRAND_CHARS, MAX_DESCRIPTION_CHARS, check_id, merge_evidence,
};
use spotcheck_shared::enforcement::{check_evidence_urls, check_text};
use sqlx::types::Json as SqlJson;
use std::time::Duration;
use uuid::Uuid;

crate::auth::caller::role_extractor!(
    /// A signed-in brand-owner account (other roles get 403).
    BrandOwner => BrandOwner
);

/// `POST /v1/complaints` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewComplaint {
    brand: String,
    #[serde(default)]
    listing_id: Option<String>,
    #[serde(default)]
    seller_id: Option<String>,
    reason: ComplaintReason,
    description: String,
    #[serde(default)]
    evidence_urls: Vec<String>,
}

fn check(body: &NewComplaint) -> ApiResult<()> {
    check_text("brand", &body.brand, MAX_BRAND_CHARS).map_err(ApiError::invalid)?;
    check_text("description", &body.description, MAX_DESCRIPTION_CHARS)
        .map_err(ApiError::invalid)?;
    check_evidence_urls(&body.evidence_urls).map_err(ApiError::invalid)?;
    if let Some(id) = &body.listing_id {
        check_id("listing_id", id).map_err(ApiError::invalid)?;
    }
    if let Some(id) = &body.seller_id {
        check_id("seller_id", id).map_err(ApiError::invalid)?;
    }
    if body.listing_id.is_none() && body.seller_id.is_none() {
        return Err(ApiError::invalid(
            "a complaint names a listing_id, a seller_id or both",
        ));
    }
    Ok(())
}

/// Answer of `POST /v1/complaints`.
#[derive(Debug, Serialize)]
pub struct Filed {
    complaint_id: Uuid,
    /// Whether the complaint merged into an open one of the same owner.
    merged: bool,
}

/// `POST /v1/complaints`: `201 {complaint_id}`, or `200` with the open
/// complaint's id when it merged into one.
pub async fn create(
    State(state): State<AppState>,
    BrandOwner(me): BrandOwner,
    ApiJson(body): ApiJson<NewComplaint>,
) -> ApiResult<(StatusCode, Json<Filed>)> {
    check(&body)?;
    let brand = body.brand.trim();
    let mut tx = state.pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('spotcheck.complaints:' || $1::text, 0))",
    )
    .bind(me.id.0)
    .execute(&mut *tx)
    .await?;
    let linked: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM brand_owner_brands WHERE user_id = $1 AND brand = $2)",
    )
    .bind(me.id.0)
    .bind(brand)
    .fetch_one(&mut *tx)
    .await?;
    if !linked {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "brand_not_linked",
            "this account is not linked to that brand",
        ));
    }
    let (recent, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT count(*), min(created_at) FROM complaints
         WHERE brand_owner = $1 AND created_at > now() - interval '1 hour'",
    )
    .bind(me.id.0)
    .fetch_one(&mut *tx)
    .await?;
    if recent >= i64::from(state.config.complaints_per_hour) {
        let free_at = oldest.unwrap_or_else(Utc::now) + chrono::Duration::hours(1);
        let wait = (free_at - Utc::now())
            .to_std()
            .unwrap_or(Duration::from_secs(1));
        return Err(ApiError::too_many(
            "complaint_rate_limited",
            format!(
                "at most {} complaints an hour per brand owner",
                state.config.complaints_per_hour
            ),
            wait,
        ));
    }
    // The seller a listing names; a gold task's listing is no marketplace listing.
    let seller_id = match body.listing_id.as_deref() {
        Some(listing) => {
            let seller: String = sqlx::query_scalar(
                "SELECT seller_id FROM listings l WHERE listing_id = $1 AND NOT EXISTS
                     (SELECT 1 FROM tasks g WHERE g.listing_id = l.listing_id AND g.kind = 'gold')",
            )
            .bind(listing)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::not_found("listing"))?;
            if body.seller_id.as_ref().is_some_and(|s| *s != seller) {
                return Err(ApiError::invalid("seller_id is not the listing's seller"));
            }
            seller
        }
        None => {
            let seller = body.seller_id.clone().unwrap_or_default();
            let known: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM sellers WHERE seller_id = $1)
                     OR EXISTS (SELECT 1 FROM listings WHERE seller_id = $1)",
            )
            .bind(&seller)
            .fetch_one(&mut *tx)
            .await?;
            if !known {
                return Err(ApiError::not_found("seller"));
            }
            seller
        }
    };
    let open: Option<(Uuid, SqlJson<Vec<String>>)> = sqlx::query_as(
        "SELECT id, evidence_urls FROM complaints
         WHERE brand_owner = $1 AND status = 'open'
           AND CASE WHEN $2::text IS NULL THEN listing_id IS NULL AND seller_id = $3
                    ELSE listing_id = $2 END
         FOR UPDATE",
    )
    .bind(me.id.0)
    .bind(body.listing_id.as_deref())
    .bind(&seller_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((id, SqlJson(had))) = open {
        let merged = merge_evidence(&had, &body.evidence_urls).map_err(ApiError::invalid)?;
        sqlx::query("UPDATE complaints SET evidence_urls = $2 WHERE id = $1")
            .bind(id)
            .bind(json!(merged))
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut tx,
            me.id,
            "complaint.merge",
            &format!("complaint:{id}"),
            Some(json!({"evidence_urls": had})),
            json!({"evidence_urls": merged}),
        )
        .await?;
        tx.commit().await?;
        let filed = Filed {
            complaint_id: id,
            merged: true,
        };
        return Ok((StatusCode::OK, Json(filed)));
    }
    let id = Uuid::now_v7();
    let votes = i32::try_from(state.config.min_votes.clamp(1, 50)).unwrap_or(3);
    let task = match body.listing_id.as_deref() {
        Some(listing) => Some(open_inspection(&mut tx, listing, votes).await?),
        None => None,
    };
    sqlx::query(
        "INSERT INTO complaints (id, brand_owner, brand, listing_id, seller_id, reason,
             description, evidence_urls, task_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(me.id.0)
    .bind(brand)
    .bind(body.listing_id.as_deref())
    .bind(&seller_id)
    .bind(body.reason.as_str())
    .bind(&body.description)
    .bind(json!(body.evidence_urls))
    .bind(task.map(|t| t.0))
    .execute(&mut *tx)
    .await?;
    let credibility = owner_credibility(&mut tx, me.id.0).await?;
    let boosted = boost_seller_listings(
        &mut tx,
        id,
        &seller_id,
        body.listing_id.as_deref(),
        credibility,
    )
    .await?;
    audit::record(
        &mut tx,
        me.id,
        "complaint.create",
        &format!("complaint:{id}"),
        None,
        json!({"brand": brand, "listing_id": body.listing_id, "seller_id": seller_id,
               "reason": body.reason, "task_id": task, "credibility": credibility,
               "boosted_listings": boosted}),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(complaint.id = %id, brand_owner.id = %me.id, boosted, "complaint filed");
    let filed = Filed {
        complaint_id: id,
        merged: false,
    };
    Ok((StatusCode::CREATED, Json(filed)))
}

/// A complaint as its brand owner sees it: what they filed, its status and
/// outcome (the staff note, the case it led to and how the case stands, and
/// whether the inspection is done); nothing about who inspected or how.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ComplaintView {
    /// The complaint's id.
    pub complaint_id: Uuid,
    brand: String,
    listing_id: Option<String>,
    seller_id: Option<String>,
    reason: String,
    description: String,
    evidence_urls: SqlJson<Vec<String>>,
    status: String,
    decision_note: Option<String>,
    decided_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    inspection_state: Option<String>,
    case_id: Option<Uuid>,
    case_state: Option<String>,
}

/// The columns of a [`ComplaintView`] from `complaints c` joined with its
/// task `t` and case `k`.
pub const VIEW_COLUMNS: &str = "c.id AS complaint_id, c.brand, c.listing_id, c.seller_id,
    c.reason, c.description, c.evidence_urls, c.status, c.decision_note, c.decided_at,
    c.created_at, t.state AS inspection_state, c.case_id, k.state AS case_state";

/// The joins a [`ComplaintView`] reads.
pub const VIEW_FROM: &str = "complaints c LEFT JOIN tasks t ON t.id = c.task_id
    LEFT JOIN cases k ON k.id = c.case_id";

/// Query of a list of complaints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// A page of complaints, newest first.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    /// The complaints.
    pub items: Vec<T>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

/// `GET /v1/complaints`: the caller's own complaints, newest first.
pub async fn list(
    State(state): State<AppState>,
    BrandOwner(me): BrandOwner,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<ComplaintView>>> {
    let (limit, cursor) = page_params(q.limit, q.cursor.as_deref())?;
    let sql = format!(
        "SELECT {VIEW_COLUMNS} FROM {VIEW_FROM}
         WHERE c.brand_owner = $1 AND ($2::uuid IS NULL OR c.id < $2)
         ORDER BY c.id DESC LIMIT $3"
    );
    let mut items: Vec<ComplaintView> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(me.id.0)
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await?;
    let next_cursor = crate::extract::next_cursor(&mut items, limit, |c| c.complaint_id);
    Ok(Json(Page { items, next_cursor }))
}

/// `GET /v1/complaints/{complaint_id}`: one of the caller's own complaints
/// (another owner's is answered 404, as an unknown one).
pub async fn one(
    State(state): State<AppState>,
    BrandOwner(me): BrandOwner,
    Path(id): Path<String>,
) -> ApiResult<Json<ComplaintView>> {
    let id: Uuid = parse_id(&id, "complaint")?;
    let sql =
        format!("SELECT {VIEW_COLUMNS} FROM {VIEW_FROM} WHERE c.id = $1 AND c.brand_owner = $2");
    let view: Option<ComplaintView> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(me.id.0)
        .fetch_optional(&state.pool)
        .await?;
    view.map(Json)
        .ok_or_else(|| ApiError::not_found("complaint"))
}
