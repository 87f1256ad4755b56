//! Staff views and settings of enforcement: a seller's record, the risk-tier
//! override, the penalty ladder, lifting a penalty, and the audit trail.

use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use spotcheck_platform::enforcement::{self, LiftRefusal};
use spotcheck_shared::enforcement::{Ladder, check_text};
use uuid::Uuid;

/// `GET /v1/staff/sellers/{seller_id}`: storefront and deposit status, strikes
/// (live ones counted), the risk tier derived and overridden, and penalties.
pub async fn get(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(seller_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let now = state.config.services.clock().now();
    let mut conn = state.pool.acquire().await?;
    let ladder = enforcement::ladder(&mut conn).await?;
    let since = now - chrono::Duration::days(i64::from(ladder.strikes_expire_days));
    let row: Option<(Value,)> = sqlx::query_as(
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
    row.map(|(v,)| Json(v))
        .ok_or_else(|| ApiError::not_found("seller"))
}

/// Body of a risk-tier override.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierBody {
    /// The tier, or null to go back to the derived one.
    tier: Option<String>,
    reason: String,
}

/// `PUT /v1/staff/sellers/{seller_id}/risk-tier` `{tier, reason}`: overrides
/// the tier the sampler uses for the seller (null clears the override).
pub async fn put_tier(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(seller_id): Path<String>,
    ApiJson(body): ApiJson<TierBody>,
) -> ApiResult<Json<Value>> {
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
pub async fn get_ladder(State(state): State<AppState>, Staff(_): Staff) -> ApiResult<Json<Ladder>> {
    let mut conn = state.pool.acquire().await?;
    Ok(Json(enforcement::ladder(&mut conn).await?))
}

/// `PUT /v1/staff/penalty-ladder`: replaces the ladder (validated, audited);
/// cases enforced from now on use it.
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiftBody {
    reason: String,
}

/// `POST /v1/staff/penalties/{penalty_id}/lift` `{reason}`: lifts the penalty
/// and publishes a `lifted` enforcement event.
pub async fn lift(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LiftBody>,
) -> ApiResult<Json<Value>> {
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
    tx.commit().await?;
    Ok(Json(penalty))
}

/// Query of the audit trail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    since: Option<DateTime<Utc>>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /v1/staff/audit?actor=&action=&since=&limit=&cursor=`: every staff,
/// seller, brand-owner and automatic action, newest first. `actor=system`
/// names automatic actions; `action` matches a prefix (`case.` for every
/// case transition); the cursor is the last row's `id`.
pub async fn audit(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Value>> {
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
    let rows: Vec<(i64, Value)> = sqlx::query_as(
        "SELECT id, jsonb_build_object('id', id, 'actor_id', actor_id, 'action', action,
                'subject', subject, 'old', old, 'new', new, 'at', at)
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
    let mut rows = rows;
    let next_cursor = crate::extract::next_cursor(&mut rows, limit, |(id, _)| *id);
    Ok(Json(json!({
        "items": rows.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}
