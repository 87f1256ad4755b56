//! What a seller account sees and does: its own seller's cases with their
//! evidence bundle (never a volunteer's identity or vote), one refutation per
//! case before the deadline, and the penalties in force.

use crate::auth::caller::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, page_params, parse_id};
use crate::routes::cases::{
    self, Case, CaseEvidence, CasePenalty, CaseSourceKind, Refutation, case_refusal,
};
use crate::state::AppState;
use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_platform::enforcement;
use spotcheck_shared::enforcement::{
    CaseEvent, CaseState, MAX_REFUTATION_CHARS, PenaltyKind, check_evidence_urls, check_text,
};
use sqlx::PgConnection;
use sqlx::types::Json as SqlJson;
use utoipa::{IntoParams, ToSchema};
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

/// A case as its seller sees it: no staff member, reviewer or source id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SellerCase {
    /// The case's id.
    pub case_id: Uuid,
    /// The listing, when the case is about one.
    pub listing_id: Option<String>,
    /// What opened it.
    pub source: CaseSourceKind,
    /// Where it stands.
    pub state: CaseState,
    /// The end of the refutation window.
    pub deadline: DateTime<Utc>,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was closed (upheld or enforced).
    pub closed_at: Option<DateTime<Utc>>,
    /// The seller's strike number, once enforced.
    pub strike: Option<i32>,
}

impl From<&Case> for SellerCase {
    fn from(case: &Case) -> Self {
        SellerCase {
            case_id: case.case_id,
            listing_id: case.listing_id.clone(),
            source: case.source,
            state: case.state,
            deadline: case.deadline,
            created_at: case.created_at,
            updated_at: case.updated_at,
            closed_at: case.closed_at,
            strike: case.strike,
        }
    }
}

/// A case in the seller's list: the case and its evidence bundle.
#[derive(Debug, Serialize, ToSchema)]
pub struct SellerCaseSummary {
    /// The case.
    #[serde(flatten)]
    pub case: SellerCase,
    /// The evidence the seller may see.
    pub evidence: CaseEvidence,
}

/// One of the seller's cases with evidence, refutation and penalties.
#[derive(Debug, Serialize, ToSchema)]
pub struct SellerCaseDetail {
    /// The case.
    #[serde(flatten)]
    pub case: SellerCase,
    /// The evidence the seller may see.
    pub evidence: CaseEvidence,
    /// The seller's refutation, if any.
    pub refutation: Option<Refutation>,
    /// The penalties it issued.
    pub penalties: Vec<CasePenalty>,
}

/// The case after the seller's refutation.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefutedCase {
    /// The case, now `refuted`.
    #[serde(flatten)]
    pub case: SellerCase,
    /// The refutation just recorded.
    pub refutation: Option<Refutation>,
}

/// A page of the seller's cases, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SellerCasePage {
    /// The cases.
    pub items: Vec<SellerCaseSummary>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

/// Query of the list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Cases per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
}

/// `GET /v1/seller/cases`: the seller's cases, oldest first.
#[utoipa::path(get, path = "/v1/seller/cases", params(ListQuery), responses(
    (status = 200, description = "A page of the seller's cases with their evidence.", body = SellerCasePage),
    (status = 400, description = "`invalid_query`: an unknown parameter or a wrong type", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "`forbidden`: not a seller account, or one linked to no seller", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: a limit out of range, a malformed cursor", body = Problem, content_type = "application/problem+json"),
))]
pub async fn list(
    State(state): State<AppState>,
    me: SellerAccount,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<SellerCasePage>> {
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
    let mut ids: Vec<Uuid> = ids.into_iter().map(|(id,)| id).collect();
    let next_cursor = crate::extract::next_cursor(&mut ids, limit, |id| *id);
    let mut conn = state.pool.acquire().await?;
    let mut items = Vec::new();
    for id in ids {
        let case = cases::case(&mut conn, id).await?;
        items.push(SellerCaseSummary {
            evidence: cases::seller_evidence(&mut conn, &case).await?,
            case: SellerCase::from(&case),
        });
    }
    Ok(Json(SellerCasePage { items, next_cursor }))
}

/// The seller's own case, or 404 (another seller's case is not theirs to know of).
async fn own_case(conn: &mut PgConnection, me: &SellerAccount, id: &str) -> ApiResult<Case> {
    let id: Uuid = parse_id(id, "case")?;
    let case = cases::case(conn, id).await?;
    if case.seller_id != me.seller_id {
        return Err(ApiError::not_found("case"));
    }
    Ok(case)
}

/// `GET /v1/seller/cases/{case_id}`: one of the seller's cases with its
/// evidence bundle, its refutation and the penalties it issued.
#[utoipa::path(get, path = "/v1/seller/cases/{case_id}",
    params(("case_id" = Uuid, Path, description = "The case.")),
    responses(
        (status = 200, description = "The case with its evidence, refutation and penalties.", body = SellerCaseDetail),
        (status = 403, description = "`forbidden`: not a seller account, or one linked to no seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such case of this seller", body = Problem, content_type = "application/problem+json"),
))]
pub async fn one(
    State(state): State<AppState>,
    me: SellerAccount,
    Path(id): Path<String>,
) -> ApiResult<Json<SellerCaseDetail>> {
    let mut conn = state.pool.acquire().await?;
    let case = own_case(&mut conn, &me, &id).await?;
    Ok(Json(SellerCaseDetail {
        evidence: cases::seller_evidence(&mut conn, &case).await?,
        refutation: cases::refutation(&mut conn, case.case_id).await?,
        penalties: cases::penalties(&mut conn, case.case_id).await?,
        case: SellerCase::from(&case),
    }))
}

/// Body of a refutation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefutationBody {
    /// Why the case is wrong, up to 8,000 characters.
    #[schema(min_length = 1, max_length = 8000)]
    text: String,
    /// Links to the seller's evidence: up to 20 http(s) links.
    #[serde(default)]
    #[schema(max_items = 20)]
    evidence_urls: Vec<String>,
}

/// `POST /v1/seller/cases/{case_id}/refutation`: one per case, before the
/// deadline (`409 refutation_window_closed` after it); it stops the clock and
/// sends the case back to staff.
#[utoipa::path(post, path = "/v1/seller/cases/{case_id}/refutation", request_body = RefutationBody,
    params(("case_id" = Uuid, Path, description = "The case.")),
    responses(
        (status = 201, description = "Recorded; the case is `refuted`.", body = RefutedCase),
        (status = 403, description = "`forbidden`: not a seller account, or one linked to no seller", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such case of this seller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`refutation_window_closed`, `already_refuted`, `case_state`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `invalid_body`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn refute(
    State(state): State<AppState>,
    me: SellerAccount,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RefutationBody>,
) -> ApiResult<(StatusCode, Json<RefutedCase>)> {
    check_text("text", &body.text, MAX_REFUTATION_CHARS).map_err(ApiError::invalid)?;
    check_evidence_urls(&body.evidence_urls).map_err(ApiError::invalid)?;
    let now = state.config.services.clock().now();
    let mut tx = state.pool.begin().await?;
    let case_id = own_case(&mut tx, &me, &id).await?.case_id;
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
    let refutation = cases::refutation(&mut tx, case_id).await?;
    let case = SellerCase::from(&cases::case(&mut tx, case_id).await?);
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(RefutedCase { case, refutation })))
}

/// A penalty in force on the seller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PenaltyInForce {
    /// The penalty's id.
    pub penalty_id: Uuid,
    /// The case that issued it.
    pub case_id: Uuid,
    /// What it is.
    pub kind: PenaltyKind,
    /// The listing it concerns.
    pub listing_id: Option<String>,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When a timed penalty ends.
    pub until: Option<DateTime<Utc>>,
}

/// The penalties in force on a seller.
#[derive(Debug, Serialize, ToSchema)]
pub struct SellerPenalties {
    /// The seller.
    pub seller_id: String,
    /// The penalties, oldest first.
    pub items: Vec<PenaltyInForce>,
}

/// `GET /v1/seller/penalties`: the penalties in force on the seller (not
/// lifted, and not past their end), with their end dates.
#[utoipa::path(get, path = "/v1/seller/penalties", responses(
    (status = 200, description = "The penalties in force, oldest first.", body = SellerPenalties),
    (status = 403, description = "`forbidden`: not a seller account, or one linked to no seller", body = Problem, content_type = "application/problem+json"),
))]
pub async fn penalties(
    State(state): State<AppState>,
    me: SellerAccount,
) -> ApiResult<Json<SellerPenalties>> {
    let now = state.config.services.clock().now();
    let rows: Vec<(SqlJson<PenaltyInForce>,)> = sqlx::query_as(
        "SELECT jsonb_build_object('penalty_id', id, 'case_id', case_id,
                'kind', kind, 'listing_id', listing_id, 'issued_at', issued_at, 'until', until)
         FROM penalties
         WHERE seller_id = $1 AND lifted_at IS NULL AND (until IS NULL OR until > $2)
         ORDER BY issued_at, id",
    )
    .bind(&me.seller_id)
    .bind(now)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(SellerPenalties {
        seller_id: me.seller_id,
        items: rows.into_iter().map(|(SqlJson(p),)| p).collect(),
    }))
}
