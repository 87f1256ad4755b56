//! Staff views and settings of enforcement: a seller's record, the risk-tier
//! override, the penalty ladder, lifting a penalty, and the audit trail.

use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spotcheck_platform::enforcement::{self, LiftRefusal};
use spotcheck_shared::enforcement::{Ladder, PenaltyKind, check_text};
use sqlx::types::Json as SqlJson;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Whether a seller's storefront is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StorefrontStatus {
    /// Selling.
    Open,
    /// Closed by a `close_storefront` penalty.
    Closed,
}

impl StorefrontStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StorefrontStatus::Open => "open",
            StorefrontStatus::Closed => "closed",
        }
    }
}

/// Where a seller's consumer-protection deposit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DepositStatus {
    /// Held for the buyers.
    Held,
    /// Kept by a `confiscate_deposit` penalty.
    Confiscated,
}

impl DepositStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            DepositStatus::Held => "held",
            DepositStatus::Confiscated => "confiscated",
        }
    }
}

/// A seller's stored record, as the case file carries it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SellerRow {
    /// The seller.
    pub seller_id: String,
    /// Its storefront.
    pub storefront_status: StorefrontStatus,
    /// Its deposit.
    pub deposit_status: DepositStatus,
    /// Whether it is banned for good.
    pub banned: bool,
    /// The risk tier its live strikes give.
    pub derived_tier: String,
    /// The tier staff set instead, if any.
    pub tier_override: Option<String>,
    /// Why.
    pub tier_override_reason: Option<String>,
    /// Who set it.
    pub tier_override_by: Option<Uuid>,
    /// When.
    pub tier_override_at: Option<DateTime<Utc>>,
    /// When the record was made.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A seller's risk tier: derived from strikes, overridden by staff, and the
/// one the sampler uses.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RiskTier {
    /// The tier its live strikes give.
    pub derived: String,
    /// The tier staff set instead, if any.
    #[serde(rename = "override")]
    pub tier_override: Option<String>,
    /// Why.
    pub override_reason: Option<String>,
    /// Who set it.
    pub override_by: Option<Uuid>,
    /// When.
    pub override_at: Option<DateTime<Utc>>,
    /// The override, or else the derived tier.
    pub effective: String,
}

/// One strike against a seller.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Strike {
    /// The enforced case it came from.
    pub case_id: Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// Whether it still counts (younger than the ladder's `strikes_expire_days`).
    pub live: bool,
}

/// A penalty on a seller, lifted or not.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SellerPenalty {
    /// The penalty's id.
    pub penalty_id: Uuid,
    /// The case that issued it.
    pub case_id: Uuid,
    /// What it is.
    pub kind: PenaltyKind,
    /// The listing it concerns.
    pub listing_id: Option<String>,
    /// When a timed penalty ends.
    pub until: Option<DateTime<Utc>>,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it was lifted.
    pub lifted_at: Option<DateTime<Utc>>,
    /// Why it was lifted.
    pub lift_reason: Option<String>,
}

/// A seller's record as staff see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SellerRecord {
    /// The seller.
    pub seller_id: String,
    /// Its storefront.
    pub storefront_status: StorefrontStatus,
    /// Its deposit.
    pub deposit_status: DepositStatus,
    /// Whether it is banned for good.
    pub banned: bool,
    /// Its risk tier.
    pub risk_tier: RiskTier,
    /// Every strike, oldest first.
    pub strikes: Vec<Strike>,
    /// How many strikes still count.
    pub live_strikes: i64,
    /// Every penalty, oldest first.
    pub penalties: Vec<SellerPenalty>,
    /// Cases not yet closed.
    pub open_cases: i64,
}

/// `GET /v1/staff/sellers/{seller_id}`: storefront and deposit status, strikes
/// (live ones counted), the risk tier derived and overridden, and penalties.
#[utoipa::path(get, path = "/v1/staff/sellers/{seller_id}",
    params(("seller_id" = String, Path, description = "The seller.")),
    responses(
        (status = 200, description = "The seller's record.", body = SellerRecord),
        (status = 404, description = "`not_found`: no record of this seller", body = Problem, content_type = "application/problem+json"),
))]
pub async fn get(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(seller_id): Path<String>,
) -> ApiResult<Json<SellerRecord>> {
    let now = state.config.services.clock().now();
    let mut conn = state.pool.acquire().await?;
    let ladder = enforcement::ladder(&mut conn).await?;
    let since = now - chrono::Duration::days(i64::from(ladder.strikes_expire_days));
    let row: Option<(SqlJson<SellerRecord>,)> = sqlx::query_as(
        "SELECT jsonb_build_object('seller_id', s.seller_id,
                'storefront_status', s.storefront_status, 'deposit_status', s.deposit_status,
                'banned', s.banned,
                'risk_tier', jsonb_build_object('derived', s.derived_tier,
                    'override', s.tier_override, 'override_reason', s.tier_override_reason,
                    'override_by', s.tier_override_by, 'override_at', s.tier_override_at,
                    'effective', coalesce(s.tier_override, s.derived_tier)),
                'strikes', (SELECT coalesce(jsonb_agg(jsonb_build_object('case_id', k.case_id,
                        'at', k.at, 'live', k.at > $2) ORDER BY k.at), '[]'::jsonb)
                    FROM strikes k WHERE k.seller_id = s.seller_id),
                'live_strikes', (SELECT count(*) FROM strikes k
                    WHERE k.seller_id = s.seller_id AND k.at > $2),
                'penalties', (SELECT coalesce(jsonb_agg(jsonb_build_object('penalty_id', p.id,
                        'case_id', p.case_id, 'kind', p.kind, 'listing_id', p.listing_id,
                        'until', p.until, 'issued_at', p.issued_at, 'lifted_at', p.lifted_at,
                        'lift_reason', p.lift_reason) ORDER BY p.issued_at, p.id), '[]'::jsonb)
                    FROM penalties p WHERE p.seller_id = s.seller_id),
                'open_cases', (SELECT count(*) FROM cases c
                    WHERE c.seller_id = s.seller_id AND c.state NOT IN ('upheld', 'enforced')))
         FROM sellers s WHERE s.seller_id = $1",
    )
    .bind(&seller_id)
    .bind(since)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|(SqlJson(r),)| Json(r))
        .ok_or_else(|| ApiError::not_found("seller"))
}

/// Body of a risk-tier override.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierBody {
    /// The tier, or null to go back to the derived one.
    #[schema(pattern = "^[a-z0-9_-]{1,32}$")]
    tier: Option<String>,
    /// Why, up to 1,000 characters.
    #[schema(max_length = 1000)]
    reason: String,
}

/// `PUT /v1/staff/sellers/{seller_id}/risk-tier` `{tier, reason}`: overrides
/// the tier the sampler uses for the seller (null clears the override).
#[utoipa::path(put, path = "/v1/staff/sellers/{seller_id}/risk-tier", request_body = TierBody,
    params(("seller_id" = String, Path, description = "The seller (a record is made for one not seen before).")),
    responses(
        (status = 200, description = "The seller's record with the new tier.", body = SellerRecord),
        (status = 404, description = "`not_found`: a seller id of more than 128 characters", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `invalid_body`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn put_tier(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(seller_id): Path<String>,
    ApiJson(body): ApiJson<TierBody>,
) -> ApiResult<Json<SellerRecord>> {
    check_text("reason", &body.reason, 1000).map_err(ApiError::invalid)?;
    if let Some(tier) = &body.tier {
        let ok = (1..=32).contains(&tier.len())
            && tier
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !ok {
            return Err(ApiError::invalid(
                "tier is 1 to 32 lowercase letters, digits, '_' or '-', or null",
            ));
        }
    }
    if seller_id.is_empty() || seller_id.len() > 128 {
        return Err(ApiError::not_found("seller"));
    }
    let now = state.config.services.clock().now();
    let mut tx = state.pool.begin().await?;
    enforcement::ensure_seller(&mut tx, &seller_id).await?;
    let (old,): (Value,) = sqlx::query_as(
        "SELECT jsonb_build_object('override', tier_override, 'reason', tier_override_reason)
         FROM sellers WHERE seller_id = $1 FOR UPDATE",
    )
    .bind(&seller_id)
    .fetch_one(&mut *tx)
    .await?;
    let reason = body.tier.as_ref().map(|_| body.reason.as_str());
    sqlx::query(
        "UPDATE sellers SET tier_override = $2, tier_override_reason = $3,
                tier_override_by = $4, tier_override_at = $5, updated_at = $5
         WHERE seller_id = $1",
    )
    .bind(&seller_id)
    .bind(&body.tier)
    .bind(reason)
    .bind(me.id.0)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    enforcement::retier_listings(&mut tx, &seller_id).await?;
    enforcement::audit(
        &mut tx,
        Some(me.id.0),
        "seller.risk_tier",
        &format!("seller:{seller_id}"),
        Some(old),
        json!({"override": body.tier, "reason": body.reason}),
    )
    .await?;
    tx.commit().await?;
    get(State(state), Staff(me), Path(seller_id)).await
}

/// `GET /v1/staff/penalty-ladder`: the ladder in force.
#[utoipa::path(get, path = "/v1/staff/penalty-ladder", responses(
    (status = 200, description = "The ladder in force (the program's default until staff set one).", body = Ladder),
))]
pub async fn get_ladder(State(state): State<AppState>, Staff(_): Staff) -> ApiResult<Json<Ladder>> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(enforcement::ladder(&mut conn).await?))
}

/// `PUT /v1/staff/penalty-ladder`: replaces the ladder (validated, audited);
/// cases enforced from now on use it.
#[utoipa::path(put, path = "/v1/staff/penalty-ladder", request_body = Ladder, responses(
    (status = 200, description = "The ladder now in force.", body = Ladder),
    (status = 422, description = "`invalid_ladder` naming the field, `invalid_body`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn put_ladder(
    State(state): State<AppState>,
    Staff(me): Staff,
    ApiJson(ladder): ApiJson<Ladder>,
) -> ApiResult<Json<Ladder>> {
    ladder
        .validate()
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_ladder", e))?;
    let mut tx = state.pool.begin().await?;
    let old = enforcement::ladder(&mut tx).await?;
    let new = serde_json::to_value(&ladder).map_err(anyhow::Error::from)?;
    sqlx::query("INSERT INTO penalty_ladders (ladder, created_by) VALUES ($1, $2)")
        .bind(&new)
        .bind(me.id.0)
        .execute(&mut *tx)
        .await?;
    enforcement::audit(
        &mut tx,
        Some(me.id.0),
        "penalty_ladder.put",
        "penalty_ladder",
        Some(serde_json::to_value(&old).map_err(anyhow::Error::from)?),
        new,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(ladder))
}

/// Body of a lift.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftBody {
    /// Why, up to 1,000 characters.
    #[schema(max_length = 1000)]
    reason: String,
}

/// A penalty just lifted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LiftedPenalty {
    /// The penalty's id.
    pub penalty_id: Uuid,
    /// The case that issued it.
    pub case_id: Uuid,
    /// The seller it was on.
    pub seller_id: String,
    /// What it was.
    pub kind: PenaltyKind,
    /// The listing it concerned.
    pub listing_id: Option<String>,
    /// When it was lifted (now).
    pub lifted_at: DateTime<Utc>,
    /// Who lifted it.
    pub lifted_by: Uuid,
    /// Why.
    pub lift_reason: String,
}

/// `POST /v1/staff/penalties/{penalty_id}/lift` `{reason}`: lifts the penalty
/// and publishes a `lifted` enforcement event.
#[utoipa::path(post, path = "/v1/staff/penalties/{penalty_id}/lift", request_body = LiftBody,
    params(("penalty_id" = Uuid, Path, description = "The penalty.")),
    responses(
        (status = 200, description = "The penalty, lifted.", body = LiftedPenalty),
        (status = 404, description = "`not_found`: no such penalty", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`penalty_already_lifted`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `invalid_body`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn lift(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LiftBody>,
) -> ApiResult<Json<LiftedPenalty>> {
    check_text("reason", &body.reason, 1000).map_err(ApiError::invalid)?;
    let id: Uuid = crate::extract::parse_id(&id, "penalty")?;
    let now = state.config.services.clock().now();
    let mut tx = state.pool.begin().await?;
    let lifted = enforcement::lift(&mut tx, id, me.id.0, &body.reason, now).await?;
    let penalty = match lifted {
        Ok(p) => p,
        Err(LiftRefusal::NotFound) => return Err(ApiError::not_found("penalty")),
        Err(LiftRefusal::AlreadyLifted) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "penalty_already_lifted",
                "this penalty was lifted before",
            ));
        }
    };
    let penalty: LiftedPenalty = serde_json::from_value(penalty).map_err(anyhow::Error::from)?;
    tx.commit().await?;
    Ok(Json(penalty))
}

/// Query of the audit trail.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this actor's rows: a user id, or `system` for automatic actions.
    actor: Option<String>,
    /// Only actions starting with this (`case.`), up to 64 characters.
    #[param(max_length = 64)]
    action: Option<String>,
    /// Only rows from this time on.
    since: Option<DateTime<Utc>>,
    /// Rows per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page (the last row's `id`).
    cursor: Option<String>,
}

/// One row of the audit trail.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditEntry {
    /// Its number; later rows have higher ones.
    pub id: i64,
    /// Who acted (none for an automatic action).
    pub actor_id: Option<Uuid>,
    /// What they did (`case.refuted`, `seller.risk_tier`, ...).
    pub action: String,
    /// What it was done to (`case:<id>`, `seller:<id>`, ...).
    pub subject: String,
    /// What it changed from.
    #[schema(value_type = Option<Object>)]
    pub old: Option<Value>,
    /// What it changed to.
    #[schema(value_type = Option<Object>)]
    pub new: Option<Value>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A page of the audit trail, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The rows.
    pub items: Vec<AuditEntry>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

/// `GET /v1/staff/audit?actor=&action=&since=&limit=&cursor=`: every staff,
/// seller, brand-owner and automatic action, newest first. `actor=system`
/// names automatic actions; `action` matches a prefix (`case.` for every
/// case transition); the cursor is the last row's `id`.
#[utoipa::path(get, path = "/v1/staff/audit", params(AuditQuery), responses(
    (status = 200, description = "A page of the audit trail, newest first.", body = AuditPage),
    (status = 400, description = "`invalid_query`: an unknown parameter or a wrong type", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: a malformed actor or cursor, a limit out of range, an action too long", body = Problem, content_type = "application/problem+json"),
))]
pub async fn audit(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 200"));
    }
    let cursor: Option<i64> = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse()
                .map_err(|_| ApiError::invalid("malformed cursor"))?,
        ),
    };
    let (system, actor) = match q.actor.as_deref() {
        None | Some("") => (false, None),
        Some("system") => (true, None),
        Some(a) => (
            false,
            Some(
                a.parse::<Uuid>()
                    .map_err(|_| ApiError::invalid("actor is a user id or system"))?,
            ),
        ),
    };
    let action = q.action.as_deref().filter(|a| !a.is_empty());
    if action.is_some_and(|a| a.len() > 64) {
        return Err(ApiError::invalid("action is at most 64 characters"));
    }
    let mut items: Vec<AuditEntry> = sqlx::query_as(
        "SELECT id, actor_id, action, subject, old, new, at
         FROM audit_log
         WHERE ($1::uuid IS NULL OR actor_id = $1) AND (NOT $2 OR actor_id IS NULL)
           AND ($3::text IS NULL OR starts_with(action, $3))
           AND ($4::timestamptz IS NULL OR at >= $4)
           AND ($5::bigint IS NULL OR id < $5)
         ORDER BY id DESC LIMIT $6",
    )
    .bind(actor)
    .bind(system)
    .bind(action)
    .bind(q.since)
    .bind(cursor)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let next_cursor = crate::extract::next_cursor(&mut items, limit, |row| row.id);
    Ok(Json(AuditPage { items, next_cursor }))
}
