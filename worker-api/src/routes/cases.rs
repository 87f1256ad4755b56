//! Staff work on cases against sellers: the paged list, one case with its
//! evidence, refutation, penalties and history, exclusive review, the decision
//! on a refutation (never by the staff member who opened the case), and the
//! referral case file for law enforcement (JSON or a printable page).

use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{ApiJson, ApiQuery, page_params, parse_id};
use crate::review_hold::{self, Held};
use crate::routes::sellers::SellerRow;
use crate::routes::test_purchases::PurchaseResult;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use spotcheck_platform::enforcement::{self, LockedCase};
use spotcheck_platform::reliability::{self, Learning};
use spotcheck_shared::Verdict;
use spotcheck_shared::enforcement::{
    CaseEvent, CaseRefusal, CaseState, PenaltyKind, RefutationDecision,
};
use sqlx::PgConnection;
use sqlx::types::Json as SqlJson;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The columns of a case as the API shows it (a [`Case`]).
const CASE_JSON: &str = "jsonb_build_object(
    'case_id', c.id, 'seller_id', c.seller_id, 'listing_id', c.listing_id, 'source', c.source,
    'escalation_id', c.escalation_id, 'complaint_id', c.complaint_id,
    'test_purchase_id', c.test_purchase_id, 'state', c.state, 'opened_by', c.opened_by,
    'note', c.note, 'deadline', c.deadline, 'reviewer', c.reviewer,
    'review_until', c.review_until, 'strike', c.strike, 'created_at', c.created_at,
    'updated_at', c.updated_at, 'closed_at', c.closed_at)";

/// What a case was opened from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseSourceKind {
    /// A confirmed escalation (`escalation_id`).
    Escalation,
    /// An accepted brand-owner complaint (`complaint_id`).
    Complaint,
    /// A counterfeit test purchase (`test_purchase_id`).
    TestPurchase,
}

impl CaseSourceKind {
    /// The source as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseSourceKind::Escalation => "escalation",
            CaseSourceKind::Complaint => "complaint",
            CaseSourceKind::TestPurchase => "test_purchase",
        }
    }
}

/// A case against a seller, as staff see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Case {
    /// The case's id.
    pub case_id: Uuid,
    /// The seller accused.
    pub seller_id: String,
    /// The listing, when the case is about one.
    pub listing_id: Option<String>,
    /// What opened it.
    pub source: CaseSourceKind,
    /// The escalation that opened it.
    pub escalation_id: Option<Uuid>,
    /// The complaint that opened it.
    pub complaint_id: Option<Uuid>,
    /// The test purchase that opened it.
    pub test_purchase_id: Option<Uuid>,
    /// Where it stands.
    pub state: CaseState,
    /// The staff member who opened it.
    pub opened_by: Option<Uuid>,
    /// Their note.
    pub note: Option<String>,
    /// The end of the refutation window.
    pub deadline: DateTime<Utc>,
    /// Who holds it for review.
    pub reviewer: Option<Uuid>,
    /// Until when the review hold lasts.
    pub review_until: Option<DateTime<Utc>>,
    /// The seller's strike number, once enforced.
    pub strike: Option<i32>,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was closed (upheld or enforced).
    pub closed_at: Option<DateTime<Utc>>,
}

/// The listing of a case, as sampled.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaseListing {
    /// Its id.
    pub listing_id: String,
    /// Its title (written by the seller).
    pub title: String,
    /// Its description (written by the seller).
    pub description: String,
    /// Its brand.
    pub brand: String,
    /// Its category.
    pub category: String,
    /// Its region.
    pub region: String,
    /// Its price.
    pub price: f64,
    /// The price's currency.
    pub currency: String,
    /// Its images.
    pub image_urls: Vec<String>,
}

/// The date and result of the test purchase behind a case.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PurchaseSummary {
    /// When it was bought.
    pub purchased_at: DateTime<Utc>,
    /// What the goods proved to be.
    pub result: PurchaseResult,
}

/// The evidence a seller may see: the listing as sampled, the reasons the
/// volunteers gave (counted, without who gave them), the staff note and the
/// test purchase. Never a volunteer's identity or a vote.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaseEvidence {
    /// The listing, when the case is about one still stored.
    pub listing: Option<CaseListing>,
    /// Each reason code the counterfeit votes gave, with how many gave it.
    pub reasons: BTreeMap<String, i64>,
    /// The note of the staff member who opened the case.
    pub staff_note: Option<String>,
    /// The test purchase that opened the case.
    pub test_purchase: Option<PurchaseSummary>,
}

/// One vote on the escalated task (staff only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaseVote {
    /// The vote's id.
    pub vote_id: Uuid,
    /// Who cast it.
    pub volunteer_id: Uuid,
    /// Their verdict.
    pub verdict: Verdict,
    /// Their reason codes.
    pub reasons: Vec<String>,
    /// Their note.
    pub note: Option<String>,
}

/// The evidence as staff see it: the seller's, and every vote.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StaffEvidence {
    /// What the seller sees too.
    #[serde(flatten)]
    pub shown: CaseEvidence,
    /// The votes on the escalated task (none for other sources).
    pub votes: Vec<CaseVote>,
}

/// A seller's refutation of a case, and staff's decision on it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Refutation {
    /// The seller's text.
    pub text: String,
    /// The seller's evidence links.
    pub evidence_urls: Vec<String>,
    /// When it arrived.
    pub submitted_at: DateTime<Utc>,
    /// Staff's decision, once made.
    pub decision: Option<RefutationDecision>,
    /// When it was decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// Staff's note on the decision.
    pub decision_note: Option<String>,
}

/// A penalty a case issued.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CasePenalty {
    /// The penalty's id.
    pub penalty_id: Uuid,
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

/// One audit row of a case's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct HistoryEntry {
    /// What happened (`case.refuted`, `case.review`, ...).
    pub action: String,
    /// Who did it (none for an automatic action).
    pub actor_id: Option<Uuid>,
    /// What it changed from.
    #[schema(value_type = Option<Object>)]
    pub old: Option<Value>,
    /// What it changed to.
    #[schema(value_type = Option<Object>)]
    pub new: Option<Value>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A case with everything staff review: evidence with votes, refutation,
/// penalties and history.
#[derive(Debug, Serialize, ToSchema)]
pub struct CaseDetail {
    /// The case.
    #[serde(flatten)]
    pub case: Case,
    /// The evidence, with the votes.
    pub evidence: StaffEvidence,
    /// The seller's refutation, if any.
    pub refutation: Option<Refutation>,
    /// The penalties it issued.
    pub penalties: Vec<CasePenalty>,
    /// Its audit rows, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// A page of cases, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct CasePage {
    /// The cases.
    pub items: Vec<Case>,
    /// The cursor of the next page, when there is one.
    pub next_cursor: Option<String>,
}

/// Query of the list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only cases in this state.
    #[param(value_type = Option<CaseState>, inline)]
    state: Option<String>,
    /// Only this seller's cases.
    seller_id: Option<String>,
    /// Cases per page, 1 to 200 (50 when absent).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
}

/// `GET /v1/staff/cases?state=&seller_id=&limit=&cursor=`, oldest first.
#[utoipa::path(get, path = "/v1/staff/cases", params(ListQuery), responses(
    (status = 200, description = "A page of cases, oldest first.", body = CasePage),
    (status = 400, description = "`invalid_query`: an unknown parameter or a wrong type", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: an unknown state, a limit out of range, a malformed cursor", body = Problem, content_type = "application/problem+json"),
))]
pub async fn list(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<CasePage>> {
    let case_state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<CaseState>().map_err(|_| {
            ApiError::invalid(
                "state must be notified, refuted, upheld, rejected, expired or enforced",
            )
        })?),
    };
    let (limit, cursor) = page_params(q.limit, q.cursor.as_deref())?;
    let sql = format!(
        "SELECT {CASE_JSON} FROM cases c
         WHERE ($1::text IS NULL OR c.state = $1) AND ($2::text IS NULL OR c.seller_id = $2)
           AND ($3::uuid IS NULL OR c.id > $3)
         ORDER BY c.id LIMIT $4"
    );
    let rows: Vec<(SqlJson<Case>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(case_state.map(|s| s.as_str()))
        .bind(q.seller_id.as_deref().filter(|s| !s.is_empty()))
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await?;
    let mut items: Vec<Case> = rows.into_iter().map(|(SqlJson(c),)| c).collect();
    let next_cursor = crate::extract::next_cursor(&mut items, limit, |c| c.case_id);
    Ok(Json(CasePage { items, next_cursor }))
}

/// One case, or 404.
pub async fn case(conn: &mut PgConnection, id: Uuid) -> ApiResult<Case> {
    let sql = format!("SELECT {CASE_JSON} FROM cases c WHERE c.id = $1");
    let row: Option<(SqlJson<Case>,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|(SqlJson(c),)| c)
        .ok_or_else(|| ApiError::not_found("case"))
}

/// The evidence a seller may see (see [`CaseEvidence`]).
pub async fn seller_evidence(conn: &mut PgConnection, case: &Case) -> ApiResult<CaseEvidence> {
    let listing: Option<(SqlJson<CaseListing>,)> = match &case.listing_id {
        Some(id) => {
            sqlx::query_as(
                "SELECT jsonb_build_object('listing_id', listing_id, 'title', title,
                    'description', description, 'brand', brand, 'category', category,
                    'region', region, 'price', price, 'currency', currency,
                    'image_urls', image_urls)
                 FROM listings WHERE listing_id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        }
        None => None,
    };
    let reasons: Vec<(String, i64)> = sqlx::query_as(
        "SELECT r.reason, count(*)
         FROM escalations e JOIN votes v ON v.task_id = e.task_id,
              jsonb_array_elements_text(v.reasons) AS r(reason)
         WHERE e.id = $1 AND v.verdict = 'counterfeit'
         GROUP BY r.reason",
    )
    .bind(case.escalation_id)
    .fetch_all(&mut *conn)
    .await?;
    let purchase: Option<(SqlJson<PurchaseSummary>,)> = sqlx::query_as(
        "SELECT jsonb_build_object('purchased_at', purchased_at, 'result', result)
         FROM test_purchases WHERE id = $1",
    )
    .bind(case.test_purchase_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(CaseEvidence {
        listing: listing.map(|(SqlJson(l),)| l),
        reasons: reasons.into_iter().collect(),
        staff_note: case.note.clone(),
        test_purchase: purchase.map(|(SqlJson(p),)| p),
    })
}

/// The refutation of a case, if any.
pub async fn refutation(conn: &mut PgConnection, id: Uuid) -> ApiResult<Option<Refutation>> {
    let row: Option<(SqlJson<Refutation>,)> = sqlx::query_as(
        "SELECT jsonb_build_object('text', text, 'evidence_urls', evidence_urls,
                'submitted_at', submitted_at, 'decision', decision, 'decided_at', decided_at,
                'decision_note', decision_note)
         FROM refutations WHERE case_id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(SqlJson(r),)| r))
}

/// The penalties a case issued.
pub async fn penalties(conn: &mut PgConnection, case_id: Uuid) -> ApiResult<Vec<CasePenalty>> {
    let rows: Vec<(SqlJson<CasePenalty>,)> = sqlx::query_as(
        "SELECT jsonb_build_object('penalty_id', id, 'kind', kind,
                'listing_id', listing_id, 'until', until, 'issued_at', issued_at,
                'lifted_at', lifted_at, 'lift_reason', lift_reason)
         FROM penalties WHERE case_id = $1 ORDER BY id",
    )
    .bind(case_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(SqlJson(p),)| p).collect())
}

/// `GET /v1/staff/cases/{case_id}`: the case, its evidence (with the votes,
/// for staff), refutation, penalties and history.
#[utoipa::path(get, path = "/v1/staff/cases/{case_id}",
    params(("case_id" = Uuid, Path, description = "The case.")),
    responses(
        (status = 200, description = "The case with its evidence, refutation, penalties and history.", body = CaseDetail),
        (status = 404, description = "`not_found`: no such case", body = Problem, content_type = "application/problem+json"),
))]
pub async fn one(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<CaseDetail>> {
    let id: Uuid = parse_id(&id, "case")?;
    let mut conn = state.pool.acquire().await?;
    let case = case(&mut conn, id).await?;
    let shown = seller_evidence(&mut conn, &case).await?;
    let votes: Vec<(SqlJson<CaseVote>,)> = sqlx::query_as(
        "SELECT jsonb_build_object('vote_id', v.id, 'volunteer_id', v.volunteer_id,
                'verdict', v.verdict, 'reasons', v.reasons, 'note', v.note)
         FROM escalations e JOIN votes v ON v.task_id = e.task_id WHERE e.id = $1
         ORDER BY v.id",
    )
    .bind(case.escalation_id)
    .fetch_all(&mut *conn)
    .await?;
    let history: Vec<HistoryEntry> = sqlx::query_as(
        "SELECT action, actor_id, old, new, at
         FROM audit_log WHERE subject = $1 OR new ->> 'case_id' = $2 ORDER BY id",
    )
    .bind(format!("case:{id}"))
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    Ok(Json(CaseDetail {
        evidence: StaffEvidence {
            shown,
            votes: votes.into_iter().map(|(SqlJson(v),)| v).collect(),
        },
        refutation: refutation(&mut conn, id).await?,
        penalties: penalties(&mut conn, id).await?,
        history,
        case,
    }))
}

async fn locked(conn: &mut PgConnection, id: &str) -> ApiResult<LockedCase> {
    let id: Uuid = parse_id(id, "case")?;
    enforcement::lock_case(conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("case"))
}

/// `POST /v1/staff/cases/{case_id}/review`: take the case for exclusive
/// review (`409 held_by_another` naming the holder while someone else has it).
#[utoipa::path(post, path = "/v1/staff/cases/{case_id}/review",
    params(("case_id" = Uuid, Path, description = "The case.")),
    responses(
        (status = 200, description = "The case, held by the caller (`reviewer`, `review_until`).", body = Case),
        (status = 404, description = "`not_found`: no such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`held_by_another`, with `reviewer` and `review_until`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn review(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Case>> {
    let now = state.config.services.clock().now();
    let mut tx = state.pool.begin().await?;
    let case = locked(&mut tx, &id).await?;
    let until = review_hold::take(
        &mut tx,
        Held::Case,
        case.id,
        case.reviewer,
        case.review_until,
        me.id.0,
        now,
    )
    .await?;
    enforcement::audit(
        &mut tx,
        Some(me.id.0),
        "case.review",
        &format!("case:{}", case.id),
        None,
        json!({"reviewer": me.id.0, "review_until": until}),
    )
    .await?;
    let body = self::case(&mut tx, case.id).await?;
    tx.commit().await?;
    Ok(Json(body))
}

/// Body of a refutation decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefutationDecisionBody {
    /// Uphold (close without penalty) or reject (issue the penalties).
    decision: RefutationDecision,
    /// A note, up to 4,000 characters.
    #[serde(default)]
    #[schema(max_length = 4000)]
    note: Option<String>,
}

/// The answer to a refused case transition.
pub fn case_refusal(refusal: CaseRefusal) -> ApiError {
    match refusal {
        CaseRefusal::WindowClosed => ApiError::new(
            StatusCode::CONFLICT,
            "refutation_window_closed",
            "the refutation window of this case has closed",
        ),
        CaseRefusal::AlreadyRefuted => ApiError::new(
            StatusCode::CONFLICT,
            "already_refuted",
            "this case already has a refutation",
        ),
        CaseRefusal::SameStaff => ApiError::new(
            StatusCode::FORBIDDEN,
            "separation_of_duties",
            "the staff member who opened a case does not decide its refutation",
        ),
        CaseRefusal::WrongState(s) => ApiError::new(
            StatusCode::CONFLICT,
            "case_state",
            format!("this case is {s}, which does not allow that"),
        ),
    }
}

/// `POST /v1/staff/cases/{case_id}/refutation-decision`: uphold (closed, no
/// penalty; the volunteers and the complainant learn the listing was genuine)
/// or reject (the penalties are issued at once). Not by the staff member who
/// opened the case, nor while another holds it for review.
#[utoipa::path(post, path = "/v1/staff/cases/{case_id}/refutation-decision",
    request_body = RefutationDecisionBody,
    params(("case_id" = Uuid, Path, description = "The case.")),
    responses(
        (status = 200, description = "The case, `upheld` or (its penalties issued) `enforced`.", body = Case),
        (status = 403, description = "`separation_of_duties`: the caller opened the case; `forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such case", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`case_state`: the case is not `refuted`; `held_by_another`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`, `invalid_body`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn refutation_decision(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RefutationDecisionBody>,
) -> ApiResult<Json<Case>> {
    if let Some(note) = &body.note {
        spotcheck_shared::enforcement::check_text("note", note, 4000).map_err(ApiError::invalid)?;
    }
    let now = state.config.services.clock().now();
    let mut tx = state.pool.begin().await?;
    let case = locked(&mut tx, &id).await?;
    review_hold::refuse_if_held_by_other(case.reviewer, case.review_until, me.id.0, now)?;
    let event = CaseEvent::Decide {
        decision: body.decision,
        by_opener: case.opened_by == Some(me.id.0),
    };
    let to = enforcement::transition(&mut tx, &case, event, Some(me.id.0), now)
        .await?
        .map_err(case_refusal)?;
    sqlx::query(
        "UPDATE refutations SET decision = $2, decided_by = $3, decision_note = $4, decided_at = $5
         WHERE case_id = $1",
    )
    .bind(case.id)
    .bind(match body.decision {
        RefutationDecision::Uphold => "uphold",
        RefutationDecision::Reject => "reject",
    })
    .bind(me.id.0)
    .bind(&body.note)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    match to {
        CaseState::Rejected => {
            let mut rejected = case.clone();
            rejected.state = to.as_str().to_owned();
            enforcement::enforce(&mut tx, &rejected, now).await?;
        }
        CaseState::Upheld => learn_genuine(&mut tx, &case).await?,
        _ => {}
    }
    let out = self::case(&mut tx, case.id).await?;
    tx.commit().await?;
    Ok(Json(out))
}

/// An upheld refutation says the listing was genuine: the volunteers who voted
/// on the escalated task relearn it as such, and the complaint behind the case
/// counts as rejected in its brand owner's precision.
async fn learn_genuine(conn: &mut PgConnection, case: &LockedCase) -> ApiResult<()> {
    let task: Option<(Uuid,)> = sqlx::query_as(
        "SELECT e.task_id FROM cases c JOIN escalations e ON e.id = c.escalation_id WHERE c.id = $1",
    )
    .bind(case.id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((task,)) = task {
        reliability::rescore_outcome(conn, task, true, false, &Learning::default()).await?;
    }
    sqlx::query(
        "UPDATE complaints SET status = 'rejected',
                decision_note = coalesce(decision_note || ' ', '') || '(the seller''s refutation was upheld)'
         WHERE case_id = $1 AND status = 'upheld'",
    )
    .bind(case.id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The form of the case file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseFileFormat {
    /// A [`CaseFile`] as JSON.
    #[default]
    Json,
    /// A printable HTML page.
    Html,
}

/// Query of the case file.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// The sellers: 1 to 50 ids, comma-separated.
    seller_id: String,
    /// JSON (the default) or a printable page.
    #[param(inline)]
    format: Option<CaseFileFormat>,
}

/// One case in the case file.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FiledCase {
    /// The case.
    #[serde(flatten)]
    pub case: Case,
    /// Its evidence, as the seller sees it (no votes).
    pub evidence: CaseEvidence,
    /// The seller's refutation, if any.
    pub refutation: Option<Refutation>,
    /// The penalties it issued.
    pub penalties: Vec<CasePenalty>,
}

/// One seller in the case file.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SellerFile {
    /// The seller.
    pub seller_id: String,
    /// Its record, when it has one.
    pub record: Option<SellerRow>,
    /// Its cases, oldest first.
    pub cases: Vec<FiledCase>,
}

/// The referral case file of one or more sellers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CaseFile {
    /// When it was generated.
    pub generated_at: DateTime<Utc>,
    /// The staff member who generated it.
    pub generated_by: Uuid,
    /// The sellers, in the order asked.
    pub sellers: Vec<SellerFile>,
}

/// `GET /v1/staff/cases/export?seller_id=a,b&format=json|html`: the referral
/// case file of one or more sellers: their records, cases with evidence,
/// refutations and penalties, and the sellers linked to them (volunteers who
/// declared a link are not named). Audited, since it leaves the system.
#[utoipa::path(get, path = "/v1/staff/cases/export", params(ExportQuery), responses(
    (status = 200, description = "The case file: JSON, or a printable page for `format=html`.", content(
        (CaseFile = "application/json"),
        (String = "text/html"),
    )),
    (status = 400, description = "`invalid_query`: a missing `seller_id`, an unknown format or parameter", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: not 1 to 50 sellers", body = Problem, content_type = "application/problem+json"),
))]
pub async fn export(
    State(state): State<AppState>,
    Staff(me): Staff,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let sellers: Vec<String> = q
        .seller_id
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if sellers.is_empty() || sellers.len() > 50 {
        return Err(ApiError::invalid(
            "seller_id names 1 to 50 sellers, comma-separated",
        ));
    }
    let html = q.format.unwrap_or_default() == CaseFileFormat::Html;
    let mut tx = state.pool.begin().await?;
    let mut files = Vec::new();
    for seller in &sellers {
        let record: Option<(SqlJson<SellerRow>,)> =
            sqlx::query_as("SELECT to_jsonb(s) FROM sellers s WHERE seller_id = $1")
                .bind(seller)
                .fetch_optional(&mut *tx)
                .await?;
        let ids: Vec<(Uuid,)> =
            sqlx::query_as("SELECT id FROM cases WHERE seller_id = $1 ORDER BY id")
                .bind(seller)
                .fetch_all(&mut *tx)
                .await?;
        let mut cases = Vec::new();
        for (id,) in ids {
            let case = self::case(&mut tx, id).await?;
            cases.push(FiledCase {
                evidence: seller_evidence(&mut tx, &case).await?,
                refutation: refutation(&mut tx, id).await?,
                penalties: penalties(&mut tx, id).await?,
                case,
            });
        }
        files.push(SellerFile {
            seller_id: seller.clone(),
            record: record.map(|(SqlJson(r),)| r),
            cases,
        });
    }
    enforcement::audit(
        &mut tx,
        Some(me.id.0),
        "cases.export",
        &format!("sellers:{}", sellers.join(",")),
        None,
        json!({"sellers": sellers, "format": if html { "html" } else { "json" }}),
    )
    .await?;
    tx.commit().await?;
    let file = CaseFile {
        generated_at: state.config.services.clock().now(),
        generated_by: me.id.0,
        sellers: files,
    };
    if !html {
        return Ok(Json(file).into_response());
    }
    let mut response = render_case_file(&file).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    Ok(response)
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A cell's text, escaped; a dash when there is none.
fn text(v: Option<&str>) -> String {
    v.map_or_else(|| "—".into(), esc)
}

/// A time as the JSON case file writes it.
fn time(t: Option<DateTime<Utc>>) -> String {
    text(
        t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            .as_deref(),
    )
}

/// The case file as a printable page: every value escaped (listing texts and
/// refutations are written by others).
fn render_case_file(file: &CaseFile) -> String {
    let mut h = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Case file</title>\
         <style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}\
         td,th{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}\
         h2{page-break-before:always}h2:first-of-type{page-break-before:auto}</style></head><body>",
    );
    h.push_str(&format!(
        "<h1>Case file</h1><p>Generated {} by staff member {}.</p>",
        time(Some(file.generated_at)),
        text(Some(&file.generated_by.to_string()))
    ));
    for seller in &file.sellers {
        h.push_str(&format!(
            "<h2>Seller {}</h2>",
            text(Some(&seller.seller_id))
        ));
        let r = seller.record.as_ref();
        h.push_str(&format!(
            "<table><tr><th>Storefront</th><td>{}</td></tr><tr><th>Deposit</th><td>{}</td></tr>\
             <tr><th>Banned</th><td>{}</td></tr><tr><th>Risk tier</th><td>{}</td></tr></table>",
            text(r.map(|r| r.storefront_status.as_str())),
            text(r.map(|r| r.deposit_status.as_str())),
            text(r.map(|r| if r.banned { "true" } else { "false" })),
            text(r.map(|r| r.derived_tier.as_str()))
        ));
        for filed in &seller.cases {
            let case = &filed.case;
            let title = filed.evidence.listing.as_ref().map(|l| l.title.as_str());
            let reasons = serde_json::to_string(&filed.evidence.reasons).unwrap_or_default();
            h.push_str(&format!(
                "<h3>Case {}</h3><table><tr><th>Source</th><td>{}</td></tr>\
                 <tr><th>State</th><td>{}</td></tr><tr><th>Opened</th><td>{}</td></tr>\
                 <tr><th>Deadline</th><td>{}</td></tr><tr><th>Listing</th><td>{} — {}</td></tr>\
                 <tr><th>Reasons given</th><td>{}</td></tr><tr><th>Staff note</th><td>{}</td></tr>\
                 <tr><th>Refutation</th><td>{}</td></tr></table>",
                text(Some(&case.case_id.to_string())),
                text(Some(case.source.as_str())),
                text(Some(case.state.as_str())),
                time(Some(case.created_at)),
                time(Some(case.deadline)),
                text(case.listing_id.as_deref()),
                text(title),
                text(Some(&reasons)),
                text(case.note.as_deref()),
                text(filed.refutation.as_ref().map(|r| r.text.as_str())),
            ));
            if !filed.penalties.is_empty() {
                h.push_str(
                    "<table><tr><th>Penalty</th><th>Until</th><th>Issued</th><th>Lifted</th></tr>",
                );
                for p in &filed.penalties {
                    h.push_str(&format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        text(Some(p.kind.as_str())),
                        time(p.until),
                        time(Some(p.issued_at)),
                        time(p.lifted_at)
                    ));
                }
                h.push_str("</table>");
            }
        }
    }
    h.push_str("</body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_case_file_escapes_what_others_wrote() {
        let at = "2026-01-02T03:04:05Z";
        let file: CaseFile = serde_json::from_value(json!({
            "generated_at": at, "generated_by": Uuid::nil(), "sellers": [{
            "seller_id": "s<1>",
            "record": {"seller_id": "s<1>", "storefront_status": "closed", "deposit_status": "held",
                       "banned": true, "derived_tier": "high", "tier_override": null,
                       "tier_override_reason": null, "tier_override_by": null,
                       "tier_override_at": null, "created_at": at, "updated_at": at},
            "cases": [{"case_id": Uuid::nil(), "seller_id": "s<1>", "listing_id": "L1",
                       "source": "escalation", "escalation_id": null, "complaint_id": null,
                       "test_purchase_id": null, "state": "enforced", "opened_by": null,
                       "note": "<script>alert(1)</script>", "deadline": at, "reviewer": null,
                       "review_until": null, "strike": 1, "created_at": at, "updated_at": at,
                       "closed_at": null,
                       "evidence": {"listing": {"listing_id": "L1",
                            "title": "\"><img src=x onerror=alert(1)>", "description": "d",
                            "brand": "b", "category": "c", "region": "r", "price": 1.5,
                            "currency": "EUR", "image_urls": []},
                            "reasons": {"logo": 2}, "staff_note": null, "test_purchase": null},
                       "refutation": {"text": "it's <b>fine</b>", "evidence_urls": [],
                            "submitted_at": at, "decision": null, "decided_at": null,
                            "decision_note": null},
                       "penalties": [{"penalty_id": Uuid::nil(), "kind": "delist_listing",
                            "listing_id": "L1", "until": null, "issued_at": at,
                            "lifted_at": null, "lift_reason": null}]}]}]}))
        .unwrap();
        let page = render_case_file(&file);
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("<img"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("s&lt;1&gt;"));
        assert!(page.contains("delist_listing"));
        assert!(page.contains("<td>closed</td>"));
        assert!(page.contains("{&quot;logo&quot;:2}"));
    }

    #[test]
    fn a_case_reads_back_from_the_json_the_database_builds() {
        let row = json!({"case_id": Uuid::nil(), "seller_id": "S", "listing_id": null,
            "source": "test_purchase", "escalation_id": null, "complaint_id": null,
            "test_purchase_id": Uuid::nil(), "state": "notified", "opened_by": null, "note": null,
            "deadline": "2026-01-02T03:04:05.123456+00:00", "reviewer": null,
            "review_until": null, "strike": null, "created_at": "2026-01-01T00:00:00+00:00",
            "updated_at": "2026-01-01T00:00:00+00:00", "closed_at": null});
        let case: Case = serde_json::from_value(row.clone()).unwrap();
        assert_eq!(case.source, CaseSourceKind::TestPurchase);
        assert_eq!(case.state, CaseState::Notified);
        let shown = serde_json::to_value(&case).unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&shown), keys(&row));
        assert!(shown["listing_id"].is_null() && shown["closed_at"].is_null());
        assert_eq!(shown["deadline"], "2026-01-02T03:04:05.123456Z");
    }
}
