//! Staff work on cases against sellers: the paged list, one case with its
//! evidence, refutation, penalties and history, exclusive review, the decision
//! on a refutation (never by the staff member who opened the case), and the
//! referral case file for law enforcement (JSON or a printable page).

use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, page_params, parse_id};
use crate::review_hold::{self, Held};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use spotcheck_platform::enforcement::{self, LockedCase};
use spotcheck_platform::reliability::{self, Learning};
use spotcheck_shared::enforcement::{CaseEvent, CaseRefusal, CaseState, RefutationDecision};
use sqlx::PgConnection;
use uuid::Uuid;

/// The columns of a case as the API shows it.
const CASE_JSON: &str = "jsonb_build_object(
    'case_id', c.id, 'seller_id', c.seller_id, 'listing_id', c.listing_id, 'source', c.source,
    'escalation_id', c.escalation_id, 'complaint_id', c.complaint_id,
    'test_purchase_id', c.test_purchase_id, 'state', c.state, 'opened_by', c.opened_by,
    'note', c.note, 'deadline', c.deadline, 'reviewer', c.reviewer,
    'review_until', c.review_until, 'strike', c.strike, 'created_at', c.created_at,
    'updated_at', c.updated_at, 'closed_at', c.closed_at)";

/// Query of the list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    seller_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /v1/staff/cases?state=&seller_id=&limit=&cursor=`, oldest first.
pub async fn list(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
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
        "SELECT c.id, {CASE_JSON} FROM cases c
         WHERE ($1::text IS NULL OR c.state = $1) AND ($2::text IS NULL OR c.seller_id = $2)
           AND ($3::uuid IS NULL OR c.id > $3)
         ORDER BY c.id LIMIT $4"
    );
    let rows: Vec<(Uuid, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(case_state.map(|s| s.as_str()))
        .bind(q.seller_id.as_deref().filter(|s| !s.is_empty()))
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await?;
    Ok(Json(page(rows, limit)))
}

/// `{items, next_cursor}` from rows fetched with one more than `limit`.
pub fn page(mut rows: Vec<(Uuid, Value)>, limit: i64) -> Value {
    let next_cursor = crate::extract::next_cursor(&mut rows, limit, |(id, _)| *id);
    json!({"items": rows.into_iter().map(|(_, v)| v).collect::<Vec<_>>(), "next_cursor": next_cursor})
}

/// One case as JSON, or 404.
pub async fn case_json(conn: &mut PgConnection, id: Uuid) -> ApiResult<Value> {
    let sql = format!("SELECT {CASE_JSON} FROM cases c WHERE c.id = $1");
    let row: Option<(Value,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|(v,)| v).ok_or_else(|| ApiError::not_found("case"))
}

/// The evidence a seller may see: the listing as sampled, the reasons the
/// volunteers gave (counted, without who gave them), the staff note, and the
/// test purchase's date and result. Never a volunteer's identity or a vote.
pub async fn seller_evidence(conn: &mut PgConnection, case: &Value) -> ApiResult<Value> {
    let listing_id = case["listing_id"].as_str();
    let listing: Option<(Value,)> = match listing_id {
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
    let escalation = case["escalation_id"]
        .as_str()
        .and_then(|s| s.parse::<Uuid>().ok());
    let reasons: (Value,) = sqlx::query_as(
        "SELECT coalesce(jsonb_object_agg(reason, n), '{}'::jsonb) FROM (
           SELECT r.reason, count(*) AS n
           FROM escalations e JOIN votes v ON v.task_id = e.task_id,
                jsonb_array_elements_text(v.reasons) AS r(reason)
           WHERE e.id = $1 AND v.verdict = 'counterfeit'
           GROUP BY r.reason) x",
    )
    .bind(escalation)
    .fetch_one(&mut *conn)
    .await?;
    let purchase = case["test_purchase_id"]
        .as_str()
        .and_then(|s| s.parse::<Uuid>().ok());
    let purchase: Option<(Value,)> = sqlx::query_as(
        "SELECT jsonb_build_object('purchased_at', purchased_at, 'result', result)
         FROM test_purchases WHERE id = $1",
    )
    .bind(purchase)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(json!({
        "listing": listing.map(|(l,)| l),
        "reasons": reasons.0,
        "staff_note": case["note"],
        "test_purchase": purchase.map(|(p,)| p),
    }))
}

/// The refutation of a case, if any.
pub async fn refutation_json(conn: &mut PgConnection, id: Uuid) -> ApiResult<Option<Value>> {
    let row: Option<(Value,)> = sqlx::query_as(
        "SELECT jsonb_build_object('text', text, 'evidence_urls', evidence_urls,
                'submitted_at', submitted_at, 'decision', decision, 'decided_at', decided_at,
                'decision_note', decision_note)
         FROM refutations WHERE case_id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(v,)| v))
}

/// The penalties a case issued.
pub async fn penalties_json(conn: &mut PgConnection, case_id: Uuid) -> ApiResult<Value> {
    let (v,): (Value,) = sqlx::query_as(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('penalty_id', id, 'kind', kind,
                'listing_id', listing_id, 'until', until, 'issued_at', issued_at,
                'lifted_at', lifted_at, 'lift_reason', lift_reason) ORDER BY id), '[]'::jsonb)
         FROM penalties WHERE case_id = $1",
    )
    .bind(case_id)
    .fetch_one(conn)
    .await?;
    Ok(v)
}

/// `GET /v1/staff/cases/{case_id}`: the case, its evidence (with the votes,
/// for staff), refutation, penalties and history.
pub async fn one(
    State(state): State<AppState>,
    Staff(_): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id: Uuid = parse_id(&id, "case")?;
    let mut conn = state.pool.acquire().await?;
    let mut case = case_json(&mut conn, id).await?;
    let mut evidence = seller_evidence(&mut conn, &case).await?;
    let (votes,): (Value,) = sqlx::query_as(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('vote_id', v.id, 'volunteer_id', v.volunteer_id,
                'verdict', v.verdict, 'reasons', v.reasons, 'note', v.note) ORDER BY v.id), '[]'::jsonb)
         FROM escalations e JOIN votes v ON v.task_id = e.task_id WHERE e.id = $1",
    )
    .bind(case["escalation_id"].as_str().and_then(|s| s.parse::<Uuid>().ok()))
    .fetch_one(&mut *conn)
    .await?;
    evidence["votes"] = votes;
    let (history,): (Value,) = sqlx::query_as(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('action', action, 'actor_id', actor_id,
                'old', old, 'new', new, 'at', at) ORDER BY id), '[]'::jsonb)
         FROM audit_log WHERE subject = $1 OR new ->> 'case_id' = $2",
    )
    .bind(format!("case:{id}"))
    .bind(id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    case["evidence"] = evidence;
    case["refutation"] = refutation_json(&mut conn, id).await?.unwrap_or(Value::Null);
    case["penalties"] = penalties_json(&mut conn, id).await?;
    case["history"] = history;
    Ok(Json(case))
}

async fn locked(conn: &mut PgConnection, id: &str) -> ApiResult<LockedCase> {
    let id: Uuid = parse_id(id, "case")?;
    enforcement::lock_case(conn, id)
        .await?
        .ok_or_else(|| ApiError::not_found("case"))
}

/// `POST /v1/staff/cases/{case_id}/review`: take the case for exclusive
/// review (`409 held_by_another` naming the holder while someone else has it).
pub async fn review(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
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
    let body = case_json(&mut tx, case.id).await?;
    tx.commit().await?;
    Ok(Json(body))
}

/// Body of a refutation decision.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefutationDecisionBody {
    decision: RefutationDecision,
    #[serde(default)]
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
pub async fn refutation_decision(
    State(state): State<AppState>,
    Staff(me): Staff,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RefutationDecisionBody>,
) -> ApiResult<Json<Value>> {
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
    let out = case_json(&mut tx, case.id).await?;
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

/// Query of the case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    seller_id: String,
    format: Option<String>,
}

/// `GET /v1/staff/cases/export?seller_id=a,b&format=json|html`: the referral
/// case file of one or more sellers: their records, cases with evidence,
/// refutations and penalties, and the sellers linked to them (volunteers who
/// declared a link are not named). Audited, since it leaves the system.
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
    let html = match q.format.as_deref() {
        None | Some("json") => false,
        Some("html") => true,
        Some(_) => return Err(ApiError::invalid("format must be json or html")),
    };
    let mut tx = state.pool.begin().await?;
    let mut files = Vec::new();
    for seller in &sellers {
        let record: Option<(Value,)> =
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
            let mut case = case_json(&mut tx, id).await?;
            case["evidence"] = seller_evidence(&mut tx, &case).await?;
            case["refutation"] = refutation_json(&mut tx, id).await?.unwrap_or(Value::Null);
            case["penalties"] = penalties_json(&mut tx, id).await?;
            cases.push(case);
        }
        files.push(json!({"seller_id": seller, "record": record.map(|(r,)| r), "cases": cases}));
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
    let file = json!({"generated_at": state.config.services.clock().now(), "generated_by": me.id.0, "sellers": files});
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

fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// The case file as a printable page: every value escaped (listing texts and
/// refutations are written by others).
fn render_case_file(file: &Value) -> String {
    let mut h = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Case file</title>\
         <style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}\
         td,th{border:1px solid #999;padding:4px 8px;text-align:left;vertical-align:top}\
         h2{page-break-before:always}h2:first-of-type{page-break-before:auto}</style></head><body>",
    );
    h.push_str(&format!(
        "<h1>Case file</h1><p>Generated {} by staff member {}.</p>",
        text(&file["generated_at"]),
        text(&file["generated_by"])
    ));
    for seller in file["sellers"].as_array().into_iter().flatten() {
        h.push_str(&format!("<h2>Seller {}</h2>", text(&seller["seller_id"])));
        let r = &seller["record"];
        h.push_str(&format!(
            "<table><tr><th>Storefront</th><td>{}</td></tr><tr><th>Deposit</th><td>{}</td></tr>\
             <tr><th>Banned</th><td>{}</td></tr><tr><th>Risk tier</th><td>{}</td></tr></table>",
            text(&r["storefront_status"]),
            text(&r["deposit_status"]),
            text(&r["banned"]),
            text(&r["derived_tier"])
        ));
        for case in seller["cases"].as_array().into_iter().flatten() {
            let listing = &case["evidence"]["listing"];
            h.push_str(&format!(
                "<h3>Case {}</h3><table><tr><th>Source</th><td>{}</td></tr>\
                 <tr><th>State</th><td>{}</td></tr><tr><th>Opened</th><td>{}</td></tr>\
                 <tr><th>Deadline</th><td>{}</td></tr><tr><th>Listing</th><td>{} — {}</td></tr>\
                 <tr><th>Reasons given</th><td>{}</td></tr><tr><th>Staff note</th><td>{}</td></tr>\
                 <tr><th>Refutation</th><td>{}</td></tr></table>",
                text(&case["case_id"]),
                text(&case["source"]),
                text(&case["state"]),
                text(&case["created_at"]),
                text(&case["deadline"]),
                text(&case["listing_id"]),
                text(&listing["title"]),
                text(&case["evidence"]["reasons"]),
                text(&case["note"]),
                text(&case["refutation"]["text"]),
            ));
            let penalties = case["penalties"].as_array().cloned().unwrap_or_default();
            if !penalties.is_empty() {
                h.push_str(
                    "<table><tr><th>Penalty</th><th>Until</th><th>Issued</th><th>Lifted</th></tr>",
                );
                for p in &penalties {
                    h.push_str(&format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        text(&p["kind"]),
                        text(&p["until"]),
                        text(&p["issued_at"]),
                        text(&p["lifted_at"])
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
        let file = json!({"generated_at": "now", "generated_by": "s", "sellers": [{
            "seller_id": "s<1>", "record": {"banned": true},
            "cases": [{"case_id": "c", "note": "<script>alert(1)</script>",
                       "evidence": {"listing": {"title": "\"><img src=x onerror=alert(1)>"}},
                       "refutation": {"text": "it's <b>fine</b>"}, "penalties": [{"kind": "delist_listing"}]}]}]});
        let page = render_case_file(&file);
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("s&lt;1&gt;"));
        assert!(page.contains("delist_listing"));
    }
}
