//! Staff review of brand-owner complaints: a paged list by status, the
//! accept-or-reject decision (accepting opens a case against the seller), and
//! each brand owner's complaint precision with the share of a complaint's
//! boost it earns them.

use crate::audit;
use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, page_params, parse_id};
use crate::routes::complaints::{ComplaintView, Page, VIEW_COLUMNS, VIEW_FROM};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use spotcheck_platform::enforcement::{CaseSource, NewCase, open_case};
use spotcheck_shared::complaint::{
    ComplaintDecision, ComplaintStatus, DecisionStep, PrecisionPrior, credibility, decide as step,
    precision,
};
use spotcheck_shared::enforcement::check_text;
use uuid::Uuid;

/// The longest staff note on a complaint, in characters.
const MAX_NOTE_CHARS: usize = 4000;

/// A complaint as staff see it: the owner's view, who filed it and its inspection task.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct StaffComplaintView {
    #[serde(flatten)]
    #[sqlx(flatten)]
    complaint: ComplaintView,
    brand_owner: Uuid,
    brand_owner_username: String,
    task_id: Option<Uuid>,
    decided_by: Option<Uuid>,
}

/// Query of the staff list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffListQuery {
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /v1/staff/complaints?status=&limit=&cursor=`, oldest first (the queue).
pub async fn list(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<StaffListQuery>,
) -> ApiResult<Json<Page<StaffComplaintView>>> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<ComplaintStatus>()
                .map_err(|_| ApiError::invalid("status must be open, upheld or rejected"))?,
        ),
    };
    let (limit, cursor) = page_params(q.limit, q.cursor.as_deref())?;
    let sql = format!(
        "SELECT {VIEW_COLUMNS}, c.brand_owner, u.username AS brand_owner_username, c.task_id,
                c.decided_by
         FROM {VIEW_FROM} JOIN users u ON u.id = c.brand_owner
         WHERE ($1::text IS NULL OR c.status = $1) AND ($2::uuid IS NULL OR c.id > $2)
         ORDER BY c.id LIMIT $3"
    );
    let mut items: Vec<StaffComplaintView> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(status.map(ComplaintStatus::as_str))
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await?;
    let next_cursor = crate::extract::next_cursor(&mut items, limit, |c| c.complaint.complaint_id);
    Ok(Json(Page { items, next_cursor }))
}

/// Body of a staff decision on a complaint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    decision: ComplaintDecision,
    note: String,
}

/// A complaint being decided: status, listing, seller and case.
type DecidingRow = (String, Option<String>, Option<String>, Option<Uuid>);

/// Answer of a decision.
#[derive(Debug, Serialize)]
pub struct Decided {
    complaint_id: Uuid,
    status: ComplaintStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    case_id: Option<Uuid>,
}

/// `POST /v1/staff/complaints/{complaint_id}/decision`: accept (the complaint
/// is upheld and a case opened against the seller, whose id the answer
/// carries) or reject; the same decision again is answered as the first, the
/// other one is `409 complaint_already_decided`. Audited: one
/// `complaint.decide` row, naming the case an acceptance opens.
pub async fn decide(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnersQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

type OwnerRow = (Uuid, String, String, Vec<String>, i64, i64, i64);

/// `GET /v1/staff/brand-owners?limit=&cursor=`: each brand owner with their
/// brands, complaint counts, precision (upheld ÷ decided, `null` before any
/// decision) and credibility (the share of a complaint's boost they earn).
pub async fn brand_owners(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<OwnersQuery>,
) -> ApiResult<Json<serde_json::Value>> {
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
    let items: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(id, username, status, brands, open, upheld, rejected)| {
            let (upheld, decided) = (upheld.max(0) as u64, (upheld + rejected).max(0) as u64);
            json!({
                "user_id": id, "username": username, "status": status, "brands": brands,
                "complaints": {"open": open, "upheld": upheld, "rejected": rejected},
                "precision": precision(upheld, decided),
                "credibility": credibility(upheld, decided, &prior),
            })
        })
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": next_cursor})))
}
