//! `GET /openapi.json`: the OpenAPI 3.1 document of the API, generated from the
//! route table, so it lists every route with who may call it and its rate limit.

use crate::access::Access;
use crate::ratelimit::Throttle;
use crate::routes::{ROUTES, RouteSpec};
use axum::Json;
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

fn access_name(access: &Access) -> &'static str {
    match access {
        Access::Anonymous => "anyone",
        Access::SignedIn => "signed-in",
        Access::Volunteer => "volunteer",
        Access::Staff => "staff",
        Access::Admin => "admin",
        Access::Seller => "seller",
        Access::BrandOwner => "brand_owner",
    }
}

fn throttle_name(throttle: &Throttle) -> &'static str {
    match throttle {
        Throttle::Address => "per client address",
        Throttle::Claim => "claims per volunteer",
        Throttle::Vote => "votes per volunteer",
        Throttle::Subject => "requests per user",
        Throttle::Unlimited => "none",
    }
}

/// What a client must know about a route beyond its access and limit.
fn note(spec: &RouteSpec) -> Option<&'static str> {
    match spec.path {
        "/metrics" => Some(
            "Prometheus text for operators. Served on the operator address \
             (SPOTCHECK_METRICS_ADDR); on this address only by a development process \
             without that setting, 404 otherwise.",
        ),
        "/app/" => Some(
            "The web app (volunteer review page and staff console): HTML, not JSON. It \
             signs in and calls this API from the same origin.",
        ),
        "/app/{file}" => Some(
            "One of the web app's embedded files (scripts, style sheet, icon), with its \
             content type, an `ETag` and `Cache-Control: no-cache`.",
        ),
        "/readyz" => Some(
            "`{\"status\": \"ready\"}`, or 503 `not_ready` without naming the failed \
             dependency (the operator address's /readyz does).",
        ),
        "/v1/complaints" if spec.method == axum::http::Method::POST => Some(
            "`{brand, listing_id?, seller_id?, reason, description, evidence_urls}`; reason \
             `counterfeit`, `trademark_misuse`, `unauthorized_seller` or `other`. `201 \
             {complaint_id}`; a duplicate while one is open for the same listing (or seller) \
             merges its evidence and answers `200` with the open one's id. 403 \
             `brand_not_linked`, 404 for an unknown listing or seller, 429 \
             `complaint_rate_limited` past SPOTCHECK_COMPLAINTS_PER_HOUR.",
        ),
        "/v1/complaints" => Some(
            "`{items, next_cursor}`: the caller's own complaints, newest first, with status \
             and outcome (staff note, case and its state, inspection state); never a \
             volunteer's identity or vote.",
        ),
        "/v1/complaints/{complaint_id}" => {
            Some("One of the caller's own complaints (another owner's is 404).")
        }
        "/v1/staff/complaints" => Some(
            "`?status=open|upheld|rejected&limit=&cursor=`: `{items, next_cursor}`, oldest first.",
        ),
        "/v1/staff/complaints/{complaint_id}/decision" => Some(
            "`{decision: \"accept\" | \"reject\", note}`: accept upholds the complaint and \
             opens a case against the seller (the answer carries `case_id`); the same \
             decision again answers as the first, the other is 409 \
             `complaint_already_decided`.",
        ),
        "/v1/staff/brand-owners" => Some(
            "`{items, next_cursor}`: each brand owner's brands, complaint counts, precision \
             (upheld / decided) and credibility (the share of a complaint's boost it earns).",
        ),
        "/v1/staff/test-purchases" => Some(
            "`{listing_id, purchased_at, vendor, result: \"authentic\" | \"counterfeit\", \
             notes?, evidence_urls?}`: `201 {test_purchase_id, case_id?, votes_scored}`; a \
             counterfeit opens a case, and either result teaches the reliability of the \
             volunteers who voted on the listing.",
        ),
        "/v1/staff/escalations/{id}/decision" => Some(
            "`{decision: \"confirm\" | \"dismiss\", note?}`: the escalation with `case_id`; a \
             confirmation opens a case against the seller and starts the refutation window \
             (SPOTCHECK_REFUTATION_WINDOW_SECS). 409 `escalation_already_decided`, 409 \
             `held_by_another` while another staff member reviews it.",
        ),
        "/v1/staff/escalations/{id}/review" | "/v1/staff/cases/{case_id}/review" => Some(
            "Holds it for exclusive review for 15 minutes (renewed by the holder); 409 \
             `held_by_another` with `reviewer` and `review_until` while someone else holds it.",
        ),
        "/v1/staff/cases" => Some(
            "`?state=notified|refuted|upheld|rejected|expired|enforced&seller_id=&limit=&cursor=`: \
             `{items, next_cursor}`, oldest first.",
        ),
        "/v1/staff/cases/{case_id}" => Some(
            "The case with `evidence` (listing, reasons, staff note, test purchase, votes), \
             `refutation`, `penalties` and `history` (its audit rows).",
        ),
        "/v1/staff/cases/{case_id}/refutation-decision" => Some(
            "`{decision: \"uphold\" | \"reject\", note?}` on a refuted case, never by the staff \
             member who opened it (403 `separation_of_duties`): uphold closes it without \
             penalty, reject issues the ladder's penalties at once. 409 `case_state`, 409 \
             `held_by_another`.",
        ),
        "/v1/staff/cases/export" => Some(
            "`?seller_id=a,b&format=json|html`: the referral case file of 1 to 50 sellers \
             (records, cases, evidence, refutations, penalties), as JSON or a printable page.",
        ),
        "/v1/staff/sellers/{seller_id}" => Some(
            "Storefront and deposit status, banned, strikes (live or aged out), risk tier \
             (derived, override, effective) and penalties.",
        ),
        "/v1/staff/sellers/{seller_id}/risk-tier" => Some(
            "`{tier, reason}`: overrides the tier the sampler uses for the seller's listings; \
             `tier: null` clears it.",
        ),
        "/v1/staff/penalty-ladder" => Some(
            "`{strike_window_days, strikes_expire_days, steps: [{strike, penalties: [{kind, \
             days?}]}]}`; kinds `delist_listing`, `reimburse_buyers`, `limit_new_listings` \
             (days), `public_notice` (days), `close_storefront`, `confiscate_deposit`, \
             `permanent_ban`. A PUT is validated (422 `invalid_ladder` naming the field) and \
             audited.",
        ),
        "/v1/staff/penalties/{penalty_id}/lift" => Some(
            "`{reason}`: lifts the penalty, restores what it changed and publishes a `lifted` \
             enforcement event; 409 `penalty_already_lifted`.",
        ),
        "/v1/staff/audit" => Some(
            "`?actor=<user id>|system&action=<prefix>&since=<RFC 3339>&limit=&cursor=`: \
             `{items, next_cursor}`, newest first.",
        ),
        "/v1/seller/cases" => Some(
            "`{items, next_cursor}`: the seller's own cases with their evidence bundle (listing, \
             reasons given with counts, staff note), never a volunteer's identity or a vote.",
        ),
        "/v1/seller/cases/{case_id}" => Some(
            "One of the seller's own cases with evidence, refutation and penalties (another \
             seller's is 404).",
        ),
        "/v1/seller/cases/{case_id}/refutation" => Some(
            "`{text, evidence_urls}` (text up to 8,000 characters, up to 20 http(s) links), \
             once per case before its deadline: `201`, the case `refuted`. 409 \
             `refutation_window_closed` after the deadline, 409 `already_refuted`.",
        ),
        "/v1/seller/penalties" => {
            Some("`{seller_id, items}`: the penalties in force, with `until` for timed ones.")
        }
        _ => None,
    }
}

fn operation(spec: &RouteSpec) -> Value {
    let parameters: Vec<Value> = spec
        .path
        .split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let security = if matches!(spec.access, Access::Anonymous) {
        json!([])
    } else {
        json!([{"bearer": []}])
    };
    let problem = json!({"description": "an error", "content": {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
    let mut op = json!({
        "operationId": spec.operation.replace("::", "_"),
        "tags": [spec.operation.split("::").next().unwrap_or("api")],
        "security": security,
        "x-access": access_name(&spec.access),
        "x-rate-limit": throttle_name(&spec.throttle),
        "responses": {"2XX": {"description": "success"}, "default": problem},
    });
    if !parameters.is_empty() {
        op["parameters"] = json!(parameters);
    }
    if let Some(note) = note(spec) {
        op["description"] = json!(note);
    }
    if matches!(spec.method.as_str(), "POST" | "PUT") {
        op["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}});
    }
    op
}

/// The document, built once from [`ROUTES`].
pub fn build() -> Value {
    let mut paths = Map::new();
    for spec in ROUTES {
        let entry = paths
            .entry(spec.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[spec.method.as_str().to_lowercase()] = operation(spec);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Spotcheck worker API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Volunteers claim and vote on review tasks; staff decide escalations and set sampling rules. Every error is RFC 9457 problem JSON with a stable `code`.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {"Problem": {
                "type": "object",
                "required": ["type", "title", "status", "code", "detail"],
                "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"},
                    "status": {"type": "integer"}, "code": {"type": "string"},
                    "detail": {"type": "string"},
                },
            }},
        },
    })
}

/// `GET /openapi.json`.
pub async fn document() -> Json<Value> {
    static DOC: OnceLock<Value> = OnceLock::new();
    Json(DOC.get_or_init(build).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_table_is_in_the_document_with_its_access() {
        let doc = build();
        for spec in ROUTES {
            let op = &doc["paths"][spec.path][spec.method.as_str().to_lowercase()];
            assert_eq!(
                op["x-access"],
                access_name(&spec.access),
                "{} {}",
                spec.method,
                spec.path
            );
            let params = op["parameters"].as_array().map_or(0, Vec::len);
            assert_eq!(params, spec.path.matches('{').count(), "{}", spec.path);
        }
        assert_eq!(
            doc["paths"]["/v1/tasks/claim"]["post"]["security"][0]["bearer"],
            json!([])
        );
        assert_eq!(
            doc["paths"]["/v1/auth/login"]["post"]["security"],
            json!([])
        );
        let metrics = doc["paths"]["/metrics"]["get"]["description"].as_str();
        assert!(metrics.is_some_and(|d| d.contains("SPOTCHECK_METRICS_ADDR")));
    }
}
