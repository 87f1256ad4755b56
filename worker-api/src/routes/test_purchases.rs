//! Test purchases staff record: a third party bought the listing and the goods
//! proved authentic or counterfeit.
//!
//! The result is ground truth about the listing. A counterfeit opens a case
//! against the seller at once, with the purchase as its evidence; either
//! result teaches the volunteers who voted on the listing's inspections, as a
//! staff outcome does (each vote once), and the coordinator's recalibration
//! counts it as a known label.

use crate::audit;
use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_platform::enforcement::{CaseSource, NewCase, open_case};
use spotcheck_platform::reliability::{Learning, score_outcome};
use spotcheck_shared::complaint::check_id;
use spotcheck_shared::enforcement::{check_evidence_urls, check_text};
use utoipa::ToSchema;
use uuid::Uuid;

/// What the purchased goods proved to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PurchaseResult {
    /// Genuine goods.
    Authentic,
    /// Fakes.
    Counterfeit,
}

impl PurchaseResult {
    fn as_str(self) -> &'static str {
        match self {
            PurchaseResult::Authentic => "authentic",
            PurchaseResult::Counterfeit => "counterfeit",
        }
    }
}

/// `POST /v1/staff/test-purchases` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPurchase {
    /// The listing bought (1 to 128 characters, not a gold task's listing).
    #[schema(min_length = 1, max_length = 128)]
    listing_id: String,
    /// When it was bought (not in the future).
    purchased_at: DateTime<Utc>,
    /// Who bought it, up to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    vendor: String,
    /// What the goods proved to be.
    result: PurchaseResult,
    /// Notes, up to 8,000 characters; a counterfeit's case carries them.
    #[serde(default)]
    #[schema(max_length = 8000)]
    notes: Option<String>,
    /// Links to the evidence: up to 20 http(s) links.
    #[serde(default)]
    #[schema(max_items = 20)]
    evidence_urls: Vec<String>,
}

fn check(body: &NewPurchase, now: DateTime<Utc>) -> ApiResult<()> {
    check_id("listing_id", &body.listing_id).map_err(ApiError::invalid)?;
    check_text("vendor", &body.vendor, 200).map_err(ApiError::invalid)?;
    if let Some(notes) = &body.notes {
        check_text("notes", notes, 8000).map_err(ApiError::invalid)?;
    }
    check_evidence_urls(&body.evidence_urls).map_err(ApiError::invalid)?;
    // A few minutes of clock skew between the buyer's records and ours.
    if body.purchased_at > now + Duration::minutes(5) {
        return Err(ApiError::invalid("purchased_at is in the future"));
    }
    Ok(())
}

/// Answer of a recorded purchase.
#[derive(Debug, Serialize, ToSchema)]
pub struct Recorded {
    /// The purchase's id.
    test_purchase_id: Uuid,
    /// The case a counterfeit result opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    case_id: Option<Uuid>,
    /// Votes on the listing's inspections scored against the result now.
    votes_scored: u64,
}

/// `POST /v1/staff/test-purchases`: `201 {test_purchase_id, case_id?}`.
/// Audited: one `test_purchase.record` row, naming the case a counterfeit
/// opens (opened by the staff member who records it).
#[utoipa::path(post, path = "/v1/staff/test-purchases", request_body = NewPurchase, responses(
    (status = 201, description = "Recorded; a counterfeit opened a case.", body = Recorded),
    (status = 404, description = "`not_found`: no such listing (or a gold task's)", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`, `invalid_body`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn record(
    State(state): State<AppState>,
    Staff(me): Staff,
    ApiJson(body): ApiJson<NewPurchase>,
) -> ApiResult<(StatusCode, Json<Recorded>)> {
    let now = state.config.services.clock().now();
    check(&body, now)?;
    let mut tx = state.pool.begin().await?;
    let seller: String = sqlx::query_scalar(
        "SELECT seller_id FROM listings l WHERE listing_id = $1 AND NOT EXISTS
             (SELECT 1 FROM tasks g WHERE g.listing_id = l.listing_id AND g.kind = 'gold')",
    )
    .bind(&body.listing_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("listing"))?;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO test_purchases (id, listing_id, seller_id, purchased_at, vendor, result,
             notes, evidence_urls, recorded_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(&body.listing_id)
    .bind(&seller)
    .bind(body.purchased_at)
    .bind(&body.vendor)
    .bind(body.result.as_str())
    .bind(&body.notes)
    .bind(json!(body.evidence_urls))
    .bind(me.id.0)
    .execute(&mut *tx)
    .await?;
    let counterfeit = body.result == PurchaseResult::Counterfeit;
    let case_id = if counterfeit {
        let case = NewCase {
            seller_id: &seller,
            listing_id: Some(&body.listing_id),
            source: CaseSource::TestPurchase(id),
            opened_by: Some(me.id.0),
            note: body.notes.as_deref(),
        };
        let window = state.config.services.refutation_window_secs;
        Some(open_case(&mut tx, &case, window, now).await?)
    } else {
        None
    };
    audit::record(
        &mut tx,
        me.id,
        "test_purchase.record",
        &format!("test_purchase:{id}"),
        None,
        json!({"listing_id": body.listing_id, "seller_id": seller, "vendor": body.vendor,
               "purchased_at": body.purchased_at, "result": body.result, "case_id": case_id}),
    )
    .await?;
    // The truth about the listing teaches everyone who inspected it, in task order.
    let tasks: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM tasks WHERE listing_id = $1 AND kind = 'review' ORDER BY id",
    )
    .bind(&body.listing_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut votes_scored = 0;
    for task in tasks {
        votes_scored += score_outcome(&mut tx, task, counterfeit, &Learning::default()).await?;
    }
    tx.commit().await?;
    tracing::info!(test_purchase.id = %id, staff.id = %me.id, result = body.result.as_str(), votes_scored, "test purchase recorded");
    Ok((
        StatusCode::CREATED,
        Json(Recorded {
            test_purchase_id: id,
            case_id,
            votes_scored,
        }),
    ))
}
