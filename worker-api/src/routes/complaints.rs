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
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, page_params, parse_id};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_platform::complaints::{boost_seller_listings, open_inspection, owner_credibility};
use spotcheck_shared::TaskState;
use spotcheck_shared::complaint::{
    ComplaintReason, ComplaintStatus, MAX_BRAND_CHARS, MAX_DESCRIPTION_CHARS, check_id,
    merge_evidence,
};
use spotcheck_shared::enforcement::{CaseState, check_evidence_urls, check_text};
use sqlx::types::Json as SqlJson;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

crate::auth::caller::role_extractor!(
    /// A signed-in brand-owner account (other roles get 403).
    BrandOwner => BrandOwner
);

/// `POST /v1/complaints` body: a listing, a seller or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComplaint {
    /// One of the brands the account is linked to.
    #[schema(min_length = 1, max_length = 128)]
    brand: String,
    /// The listing complained about.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    listing_id: Option<String>,
    /// The seller complained about (the listing's seller, when both are given).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 128)]
    seller_id: Option<String>,
    /// Why.
    reason: ComplaintReason,
    /// What is wrong, up to 8,000 characters.
    #[schema(min_length = 1, max_length = 8000)]
    description: String,
    /// Links to the evidence: up to 20 http(s) links.
    #[serde(default)]
    #[schema(max_items = 20)]
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
#[derive(Debug, Serialize, ToSchema)]
pub struct Filed {
    /// The complaint's id (the open one's, when merged).
    complaint_id: Uuid,
    /// Whether the complaint merged into an open one of the same owner.
    merged: bool,
}

/// `POST /v1/complaints`: `201 {complaint_id}`, or `200` with the open
/// complaint's id when it merged into one.
#[utoipa::path(post, path = "/v1/complaints", request_body = NewComplaint, responses(
    (status = 201, description = "Filed; a complaint about a listing opened its inspection.", body = Filed),
    (status = 200, description = "Merged into the open complaint about the same listing (or seller).", body = Filed),
    (status = 403, description = "`brand_not_linked`; `forbidden`: not a brand-owner account", body = Problem, content_type = "application/problem+json"),
    (status = 404, description = "`not_found`: no such listing or seller", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`, `invalid_body`", body = Problem, content_type = "application/problem+json"),
    (status = 429, description = "`complaint_rate_limited` past the hourly limit, `rate_limited`, with `Retry-After`", body = Problem, content_type = "application/problem+json"),
))]
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
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ComplaintView {
    /// The complaint's id.
    pub complaint_id: Uuid,
    /// The brand.
    pub brand: String,
    /// The listing complained about.
    pub listing_id: Option<String>,
    /// The seller complained about.
    pub seller_id: Option<String>,
    /// Why.
    pub reason: ComplaintReason,
    /// What is wrong.
    pub description: String,
    /// Links to the evidence (a duplicate's merged in).
    pub evidence_urls: Vec<String>,
    /// Where it stands.
    pub status: ComplaintStatus,
    /// Staff's note on the decision.
    pub decision_note: Option<String>,
    /// When it was decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// When it was filed.
    pub created_at: DateTime<Utc>,
    /// The state of the listing's inspection, when one was opened.
    pub inspection_state: Option<TaskState>,
    /// The case it led to.
    pub case_id: Option<Uuid>,
    /// How that case stands.
    pub case_state: Option<CaseState>,
}

/// A [`ComplaintView`] as JSON from `complaints c` joined with its task `t`
/// and case `k`.
pub const VIEW_JSON: &str = "jsonb_build_object('complaint_id', c.id, 'brand', c.brand,
    'listing_id', c.listing_id, 'seller_id', c.seller_id, 'reason', c.reason,
    'description', c.description, 'evidence_urls', c.evidence_urls, 'status', c.status,
    'decision_note', c.decision_note, 'decided_at', c.decided_at, 'created_at', c.created_at,
    'inspection_state', t.state, 'case_id', c.case_id, 'case_state', k.state)";

/// The joins a [`ComplaintView`] reads.
pub const VIEW_FROM: &str = "complaints c LEFT JOIN tasks t ON t.id = c.task_id
    LEFT JOIN cases k ON k.id = c.case_id";

/// Query of a list of complaints.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Complaints per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
}

/// A page of the caller's complaints, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplaintPage {
    /// The complaints.
    pub items: Vec<ComplaintView>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

/// `GET /v1/complaints`: the caller's own complaints, newest first.
#[utoipa::path(get, path = "/v1/complaints", params(ListQuery), responses(
    (status = 200, description = "A page of the caller's complaints, newest first.", body = ComplaintPage),
    (status = 400, description = "`invalid_query`: an unknown parameter or a wrong type", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: a limit out of range, a malformed cursor", body = Problem, content_type = "application/problem+json"),
))]
pub async fn list(
    State(state): State<AppState>,
    BrandOwner(me): BrandOwner,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ComplaintPage>> {
    let (limit, cursor) = page_params(q.limit, q.cursor.as_deref())?;
    let sql = format!(
        "SELECT {VIEW_JSON} FROM {VIEW_FROM}
         WHERE c.brand_owner = $1 AND ($2::uuid IS NULL OR c.id < $2)
         ORDER BY c.id DESC LIMIT $3"
    );
    let rows: Vec<(SqlJson<ComplaintView>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(me.id.0)
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await?;
    let mut items: Vec<ComplaintView> = rows.into_iter().map(|(SqlJson(c),)| c).collect();
    let next_cursor = crate::extract::next_cursor(&mut items, limit, |c| c.complaint_id);
    Ok(Json(ComplaintPage { items, next_cursor }))
}

/// `GET /v1/complaints/{complaint_id}`: one of the caller's own complaints
/// (another owner's is answered 404, as an unknown one).
#[utoipa::path(get, path = "/v1/complaints/{complaint_id}",
    params(("complaint_id" = Uuid, Path, description = "The complaint.")),
    responses(
        (status = 200, description = "The complaint with its status and outcome.", body = ComplaintView),
        (status = 404, description = "`not_found`: no such complaint of the caller's", body = Problem, content_type = "application/problem+json"),
))]
pub async fn one(
    State(state): State<AppState>,
    BrandOwner(me): BrandOwner,
    Path(id): Path<String>,
) -> ApiResult<Json<ComplaintView>> {
    let id: Uuid = parse_id(&id, "complaint")?;
    let sql = format!("SELECT {VIEW_JSON} FROM {VIEW_FROM} WHERE c.id = $1 AND c.brand_owner = $2");
    let view: Option<(SqlJson<ComplaintView>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(me.id.0)
        .fetch_optional(&state.pool)
        .await?;
    view.map(|(SqlJson(v),)| Json(v))
        .ok_or_else(|| ApiError::not_found("complaint"))
}
