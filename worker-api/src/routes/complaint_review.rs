//! Staff review of brand-owner complaints: a paged list by status, the
//! accept-or-reject decision (accepting opens a case against the seller), and
//! each brand owner's complaint precision with the share of a complaint's
//! boost it earns them.

use crate::audit;
use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, page_params, parse_id};
use crate::routes::complaints::{ComplaintView, VIEW_FROM, VIEW_JSON};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_platform::enforcement::{CaseSource, NewCase, open_case};
use spotcheck_shared::UserStatus;
use spotcheck_shared::complaint::{
    ComplaintDecision, ComplaintStatus, DecisionStep, PrecisionPrior, credibility, decide as step,
    precision,
};
use spotcheck_shared::enforcement::check_text;
use sqlx::types::Json as SqlJson;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The longest staff note on a complaint, in characters.
const MAX_NOTE_CHARS: usize = 4000;

/// A complaint as staff see it: the owner's view, who filed it and its inspection task.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StaffComplaintView {
    /// What the brand owner sees.
    #[serde(flatten)]
    complaint: ComplaintView,
    /// The brand owner who filed it.
    brand_owner: Uuid,
    /// Their username.
    brand_owner_username: String,
    /// The listing's inspection task, when one was opened.
    task_id: Option<Uuid>,
    /// The staff member who decided it.
    decided_by: Option<Uuid>,
}

/// A page of the complaint queue, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaffComplaintPage {
    /// The complaints.
    pub items: Vec<StaffComplaintView>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

/// Query of the staff list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StaffListQuery {
    /// Only complaints with this status.
    #[param(value_type = Option<ComplaintStatus>, inline)]
    status: Option<String>,
    /// Complaints per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
}

/// `GET /v1/staff/complaints?status=&limit=&cursor=`, oldest first (the queue).
#[utoipa::path(get, path = "/v1/staff/complaints", params(StaffListQuery), responses(
    (status = 200, description = "A page of complaints, oldest first.", body = StaffComplaintPage),
    (status = 400, description = "`invalid_query`: an unknown parameter or a wrong type", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: an unknown status, a limit out of range, a malformed cursor", body = Problem, content_type = "application/problem+json"),
))]
pub async fn list(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<StaffListQuery>,
) -> ApiResult<Json<StaffComplaintPage>> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<ComplaintStatus>()
                .map_err(|_| ApiError::invalid("status must be open, upheld or rejected"))?,
        ),
    };
    let (limit, cursor) = page_params(q.limit, q.cursor.as_deref())?;
    let sql = format!(
        "SELECT {VIEW_JSON} || jsonb_build_object('brand_owner', c.brand_owner,
                'brand_owner_username', u.username, 'task_id', c.task_id,
                'decided_by', c.decided_by)
         FROM {VIEW_FROM} JOIN users u ON u.id = c.brand_owner
         WHERE ($1::text IS NULL OR c.status = $1) AND ($2::uuid IS NULL OR c.id > $2)
         ORDER BY c.id LIMIT $3"
    );
    let rows: Vec<(SqlJson<StaffComplaintView>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(status.map(ComplaintStatus::as_str))
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await?;
    let mut items: Vec<StaffComplaintView> = rows.into_iter().map(|(SqlJson(c),)| c).collect();
    let next_cursor = crate::extract::next_cursor(&mut items, limit, |c| c.complaint.complaint_id);
    Ok(Json(StaffComplaintPage { items, next_cursor }))
}

/// Body of a staff decision on a complaint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplaintDecisionBody {
    /// Accept (uphold, open a case) or reject.
    decision: ComplaintDecision,
    /// Why, up to 4,000 characters (an accepted complaint's case carries it).
    #[schema(min_length = 1, max_length = 4000)]
    note: String,
}

/// A complaint being decided: status, listing, seller and case.
type DecidingRow = (String, Option<String>, Option<String>, Option<Uuid>);

/// Answer of a decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct Decided {
    /// The complaint.
    complaint_id: Uuid,
    /// Its status now.
    status: ComplaintStatus,
    /// The case an acceptance opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    case_id: Option<Uuid>,
}

/// `POST /v1/staff/complaints/{complaint_id}/decision`: accept (the complaint
/// is upheld and a case opened against the seller, whose id the answer
/// carries) or reject; the same decision again is answered as the first, the
/// other one is `409 complaint_already_decided`. Audited: one
/// `complaint.decide` row, naming the case an acceptance opens.
#[utoipa::path(post, path = "/v1/staff/complaints/{complaint_id}/decision", request_body = ComplaintDecisionBody,
    params(("complaint_id" = Uuid, Path, description = "The complaint.")),
    responses(
        (status = 200, description = "Decided (the same decision again answers as the first).", body = Decided),
        (status = 404, description = "`not_found`: no such complaint", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`complaint_already_decided`: decided the other way", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `invalid_body`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn decide(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ComplaintDecisionBody>,
) -> ApiResult<Json<Decided>> {
    let id: Uuid = parse_id(&id, "complaint")?;
    check_text("note", &body.note, MAX_NOTE_CHARS).map_err(ApiError::invalid)?;
    let mut tx = state.pool.begin().await?;
    let row: Option<DecidingRow> = sqlx::query_as(
        "SELECT status, listing_id, seller_id, case_id FROM complaints WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let (current, listing_id, seller_id, case_id) =
        row.ok_or_else(|| ApiError::not_found("complaint"))?;
    let current: ComplaintStatus = current
        .parse()
        .map_err(|e: String| ApiError::internal(anyhow::anyhow!(e)))?;
    let next = match step(current, body.decision) {
        DecisionStep::Repeat => {
            return Ok(Json(Decided {
                complaint_id: id,
                status: current,
                case_id,
            }));
        }
        DecisionStep::Conflict => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "complaint_already_decided",
                format!("this complaint is already {current}"),
            ));
        }
        DecisionStep::To(next) => next,
    };
    sqlx::query(
        "UPDATE complaints SET status = $2, decided_by = $3, decided_at = now(), decision_note = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(next.as_str())
    .bind(me.id.0)
    .bind(&body.note)
    .execute(&mut *tx)
    .await?;
    let mut case_id = None;
    if next == ComplaintStatus::Upheld {
        let seller = seller_id
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("complaint {id} has no seller")))?;
        let case = NewCase {
            seller_id: &seller,
            listing_id: listing_id.as_deref(),
            source: CaseSource::Complaint(id),
            opened_by: Some(me.id.0),
            note: Some(&body.note),
        };
        let window = state.config.services.refutation_window_secs;
        let now = state.config.services.clock().now();
        let case = open_case(&mut tx, &case, window, now).await?;
        sqlx::query("UPDATE complaints SET case_id = $2 WHERE id = $1")
            .bind(id)
            .bind(case)
            .execute(&mut *tx)
            .await?;
        case_id = Some(case);
    }
    audit::record(
        &mut tx,
        me.id,
        "complaint.decide",
        &format!("complaint:{id}"),
        Some(json!({"status": current})),
        json!({"status": next, "note": body.note, "case_id": case_id}),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(complaint.id = %id, staff.id = %me.id, status = next.as_str(), "complaint decided");
    Ok(Json(Decided {
        complaint_id: id,
        status: next,
        case_id,
    }))
}

/// Query of the brand-owner list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OwnersQuery {
    /// Brand owners per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
}

/// A brand owner's complaints by status.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComplaintCounts {
    /// Waiting for staff.
    open: i64,
    /// Upheld.
    upheld: i64,
    /// Rejected.
    rejected: i64,
}

/// A brand owner with their record.
#[derive(Debug, Serialize, ToSchema)]
pub struct BrandOwnerRecord {
    /// The account.
    user_id: Uuid,
    /// Its username.
    username: String,
    /// Whether it may sign in.
    status: UserStatus,
    /// The brands it is linked to.
    brands: Vec<String>,
    /// Its complaints by status.
    complaints: ComplaintCounts,
    /// Upheld ÷ decided; null before any decision.
    #[schema(minimum = 0.0, maximum = 1.0)]
    precision: Option<f64>,
    /// The share of a complaint's boost it earns.
    #[schema(minimum = 0.0, maximum = 1.0)]
    credibility: f64,
}

/// A page of brand owners.
#[derive(Debug, Serialize, ToSchema)]
pub struct BrandOwnerPage {
    /// The brand owners.
    items: Vec<BrandOwnerRecord>,
    /// The cursor of the next page, when there is one.
    next_cursor: Option<String>,
}

type OwnerRow = (Uuid, String, String, Vec<String>, i64, i64, i64);

/// `GET /v1/staff/brand-owners?limit=&cursor=`: each brand owner with their
/// brands, complaint counts, precision (upheld ÷ decided, `null` before any
/// decision) and credibility (the share of a complaint's boost they earn).
#[utoipa::path(get, path = "/v1/staff/brand-owners", params(OwnersQuery), responses(
    (status = 200, description = "A page of brand owners with their records.", body = BrandOwnerPage),
    (status = 400, description = "`invalid_query`: an unknown parameter or a wrong type", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: a limit out of range, a malformed cursor", body = Problem, content_type = "application/problem+json"),
))]
pub async fn brand_owners(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<OwnersQuery>,
) -> ApiResult<Json<BrandOwnerPage>> {
    let (limit, cursor) = page_params(q.limit, q.cursor.as_deref())?;
    let mut rows: Vec<OwnerRow> = sqlx::query_as(
        "SELECT u.id, u.username, u.status,
                coalesce((SELECT array_agg(b.brand ORDER BY b.brand) FROM brand_owner_brands b
                          WHERE b.user_id = u.id), '{}'),
                count(c.id) FILTER (WHERE c.status = 'open'),
                count(c.id) FILTER (WHERE c.status = 'upheld'),
                count(c.id) FILTER (WHERE c.status = 'rejected')
         FROM users u LEFT JOIN complaints c ON c.brand_owner = u.id
         WHERE u.role = 'brand_owner' AND ($1::uuid IS NULL OR u.id > $1)
         GROUP BY u.id ORDER BY u.id LIMIT $2",
    )
    .bind(cursor)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let next_cursor = crate::extract::next_cursor(&mut rows, limit, |r| r.0);
    let prior = PrecisionPrior::default();
    let items = rows
        .into_iter()
        .map(
            |(user_id, username, status, brands, open, upheld, rejected)| {
                let (won, decided) = (upheld.max(0) as u64, (upheld + rejected).max(0) as u64);
                Ok(BrandOwnerRecord {
                    user_id,
                    username,
                    status: status
                        .parse()
                        .map_err(|e: String| ApiError::internal(anyhow::anyhow!(e)))?,
                    brands,
                    complaints: ComplaintCounts {
                        open,
                        upheld,
                        rejected,
                    },
                    precision: precision(won, decided),
                    credibility: credibility(won, decided, &prior),
                })
            },
        )
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(BrandOwnerPage { items, next_cursor }))
}
