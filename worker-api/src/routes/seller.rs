//! What a seller account sees and does: its own seller's cases with their
//! evidence bundle (never a volunteer's identity or vote), one refutation per
//! case before the deadline, and the penalties in force.

use crate::auth::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, page_params, parse_id};
use crate::routes::cases::{self, case_refusal};
use crate::state::AppState;
use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};
use spotcheck_platform::enforcement;
use spotcheck_shared::enforcement::{
    CaseEvent, MAX_REFUTATION_CHARS, check_evidence_urls, check_text,
};
use sqlx::PgConnection;
use uuid::Uuid;

/// A signed-in seller account, with the seller it speaks for.
#[derive(Debug, Clone)]
pub struct SellerAccount {
    /// The account.
    pub caller: Caller,
    /// Its seller.
    pub seller_id: String,
}

impl FromRequestParts<AppState> for SellerAccount {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        crate::access::Access::Seller.check(caller.role)?;
        let seller: Option<(Option<String>,)> =
            sqlx::query_as("SELECT seller_id FROM users WHERE id = $1")
                .bind(caller.id.0)
                .fetch_optional(&state.pool)
                .await?;
        let seller_id = seller
            .and_then(|(s,)| s)
            .ok_or_else(|| ApiError::forbidden("this account is not linked to a seller"))?;
        Ok(SellerAccount { caller, seller_id })
    }
}

/// The fields of a case a seller sees.
fn for_seller(case: &Value) -> Value {
    json!({
        "case_id": case["case_id"], "listing_id": case["listing_id"], "source": case["source"],
        "state": case["state"], "deadline": case["deadline"], "created_at": case["created_at"],
        "updated_at": case["updated_at"], "closed_at": case["closed_at"], "strike": case["strike"],
    })
}

/// Query of the list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /v1/seller/cases`: the seller's cases, oldest first.
pub async fn list(
    State(state): State<AppState>,
    me: SellerAccount,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let (limit, cursor) = page_params(q.limit, q.cursor.as_deref())?;
    let ids: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT id FROM cases WHERE seller_id = $1 AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3",
    )
    .bind(&me.seller_id)
    .bind(cursor)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let mut conn = state.pool.acquire().await?;
    let mut rows = Vec::new();
    for (id,) in ids {
        let case = cases::case_json(&mut conn, id).await?;
        let mut shown = for_seller(&case);
        shown["evidence"] = cases::seller_evidence(&mut conn, &case).await?;
        rows.push((id, shown));
    }
    Ok(Json(cases::page(rows, limit)))
}

/// The seller's own case, or 404 (another seller's case is not theirs to know of).
async fn own_case(conn: &mut PgConnection, me: &SellerAccount, id: &str) -> ApiResult<Value> {
    let id: Uuid = parse_id(id, "case")?;
    let case = cases::case_json(conn, id).await?;
    if case["seller_id"].as_str() != Some(me.seller_id.as_str()) {
        return Err(ApiError::not_found("case"));
    }
    Ok(case)
}

/// `GET /v1/seller/cases/{case_id}`: one of the seller's cases with its
/// evidence bundle, its refutation and the penalties it issued.
pub async fn one(
    State(state): State<AppState>,
    me: SellerAccount,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let mut conn = state.pool.acquire().await?;
    let case = own_case(&mut conn, &me, &id).await?;
    let case_id: Uuid = parse_id(&id, "case")?;
    let mut shown = for_seller(&case);
    shown["evidence"] = cases::seller_evidence(&mut conn, &case).await?;
    shown["refutation"] = cases::refutation_json(&mut conn, case_id)
        .await?
        .unwrap_or(Value::Null);
    shown["penalties"] = cases::penalties_json(&mut conn, case_id).await?;
    Ok(Json(shown))
}

/// Body of a refutation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefutationBody {
    text: String,
    #[serde(default)]
    evidence_urls: Vec<String>,
}

/// `POST /v1/seller/cases/{case_id}/refutation`: one per case, before the
/// deadline (`409 refutation_window_closed` after it); it stops the clock and
/// sends the case back to staff.
pub async fn refute(
    State(state): State<AppState>,
    me: SellerAccount,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RefutationBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_text("text", &body.text, MAX_REFUTATION_CHARS).map_err(ApiError::invalid)?;
    check_evidence_urls(&body.evidence_urls).map_err(ApiError::invalid)?;
    let now = state.config.services.clock().now();
    let mut tx = state.pool.begin().await?;
    own_case(&mut tx, &me, &id).await?;
    let case_id: Uuid = parse_id(&id, "case")?;
    let case = enforcement::lock_case(&mut tx, case_id)
        .await?
        .ok_or_else(|| ApiError::not_found("case"))?;
    enforcement::transition(
        &mut tx,
        &case,
        CaseEvent::Refute { at: now },
        Some(me.caller.id.0),
        now,
    )
    .await?
    .map_err(case_refusal)?;
    sqlx::query(
        "INSERT INTO refutations (case_id, submitted_by, text, evidence_urls, submitted_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(case_id)
    .bind(me.caller.id.0)
    .bind(&body.text)
    .bind(json!(body.evidence_urls))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let refutation = cases::refutation_json(&mut tx, case_id).await?;
    let mut shown = for_seller(&cases::case_json(&mut tx, case_id).await?);
    shown["refutation"] = refutation.unwrap_or(Value::Null);
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(shown)))
}

/// `GET /v1/seller/penalties`: the penalties in force on the seller (not
/// lifted, and not past their end), with their end dates.
pub async fn penalties(State(state): State<AppState>, me: SellerAccount) -> ApiResult<Json<Value>> {
    let now = state.config.services.clock().now();
    let (items,): (Value,) = sqlx::query_as(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('penalty_id', id, 'case_id', case_id,
                'kind', kind, 'listing_id', listing_id, 'issued_at', issued_at, 'until', until)
                ORDER BY issued_at, id), '[]'::jsonb)
         FROM penalties
         WHERE seller_id = $1 AND lifted_at IS NULL AND (until IS NULL OR until > $2)",
    )
    .bind(&me.seller_id)
    .bind(now)
    .fetch_one(&state.pool)
    .await?;
    Ok(Json(json!({"seller_id": me.seller_id, "items": items})))
}
