//! `GET /openapi.json`: the OpenAPI 3.1 document of the API, assembled from the
//! route table. Each route's operation (parameters, request and response bodies,
//! errors) comes from its handler's `#[utoipa::path]`, whose types are the ones
//! the handler really takes and returns; the table adds who may call it
//! (`x-access`, bearer security), its rate limit (`x-rate-limit`), the guard's
//! own refusals and the notes below.

use crate::access::Access;
use crate::error::Problem;
use crate::ratelimit::Throttle;
use crate::routes::{ROUTES, RouteSpec};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{HttpMethod, Operation, Paths};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, RefOr, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

/// What a handler's `#[utoipa::path]` says about it.
pub struct Documented {
    /// The path it declares.
    pub path: String,
    /// The methods it declares.
    pub methods: Vec<HttpMethod>,
    /// Its operation: parameters, bodies, responses.
    pub operation: Operation,
    /// The named schemas the operation refers to.
    pub schemas: Vec<(String, RefOr<Schema>)>,
}

/// The [`Documented`] of the path item type `#[utoipa::path]` generates for a
/// handler (`__path_<handler>`).
pub fn documented<P: utoipa::Path + utoipa::__dev::SchemaReferences>() -> Documented {
    let mut schemas = Vec::new();
    P::schemas(&mut schemas);
    Documented {
        path: P::path(),
        methods: P::methods(),
        operation: P::operation(),
        schemas,
    }
}

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

/// The document's method for a route's method.
pub fn http_method(method: &axum::http::Method) -> HttpMethod {
    match method.as_str() {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "PUT" => HttpMethod::Put,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        "HEAD" => HttpMethod::Head,
        "OPTIONS" => HttpMethod::Options,
        other => panic!("the route table uses an unexpected method {other}"),
    }
}

/// A response whose body is problem JSON.
pub fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            crate::error::PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    Problem::name(),
                ))))
                .build(),
        )
        .build()
        .into()
}

/// The route's operation: its handler's, with what the table knows added.
fn operation(spec: &RouteSpec, documented: Option<Documented>) -> Operation {
    let mut op = match documented {
        Some(doc) => doc.operation,
        None => {
            let mut op = Operation::new();
            op.responses.responses.insert(
                "2XX".into(),
                ResponseBuilder::new().description("success").build().into(),
            );
            let params = spec
                .path
                .split('/')
                .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
                .map(|name| {
                    utoipa::openapi::path::ParameterBuilder::new()
                        .name(name)
                        .parameter_in(utoipa::openapi::path::ParameterIn::Path)
                        .required(utoipa::openapi::Required::True)
                        .schema(Some(String::schema()))
                        .build()
                        .into()
                })
                .collect::<Vec<_>>();
            if !params.is_empty() {
                op.parameters = Some(params);
            }
            op
        }
    };
    op.operation_id = Some(spec.operation.replace("::", "_"));
    op.tags = Some(vec![
        spec.operation
            .split("::")
            .next()
            .unwrap_or("api")
            .to_owned(),
    ]);
    if let Some(note) = note(spec) {
        op.description = Some(note.to_owned());
    }
    let anonymous = matches!(spec.access, Access::Anonymous);
    op.security = Some(if anonymous {
        Vec::new()
    } else {
        vec![SecurityRequirement::new("bearer", Vec::<String>::new())]
    });
    op.extensions = Some(
        ExtensionsBuilder::new()
            .add("x-access", access_name(&spec.access))
            .add("x-rate-limit", throttle_name(&spec.throttle))
            .build(),
    );
    // What the guard in front of the handler may answer (see `crate::access`).
    let responses = &mut op.responses.responses;
    if !anonymous {
        responses.entry("401".into()).or_insert_with(|| {
            problem("`unauthorized`: no valid bearer token; `account_suspended`")
        });
        responses
            .entry("403".into())
            .or_insert_with(|| problem("`forbidden`: the caller's role may not use this route"));
    }
    if !matches!(spec.throttle, Throttle::Unlimited) {
        responses.entry("429".into()).or_insert_with(|| {
            problem("`rate_limited` (and this route's own quotas), with `Retry-After`")
        });
    }
    responses.entry("default".into()).or_insert_with(|| {
        problem(
            "Any other error: problem JSON with a stable `code` (malformed input, \
             `payload_too_large`, `request_timeout`, `unavailable`, `internal`).",
        )
    });
    op
}

/// The document, assembled from [`ROUTES`].
pub fn build() -> OpenApi {
    let mut paths = Paths::new();
    let mut components = ComponentsBuilder::new()
        .schema(Problem::name(), Problem::schema())
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    for spec in ROUTES {
        let documented = spec.doc.map(|doc| doc());
        if let Some(doc) = &documented {
            for (name, schema) in &doc.schemas {
                components = components.schema(name.clone(), schema.clone());
            }
        }
        paths.add_path_operation(
            spec.path,
            vec![http_method(&spec.method)],
            operation(spec, documented),
        );
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Spotcheck worker API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Volunteers claim and vote on review tasks; staff decide escalations and \
                     set sampling rules. Every error is RFC 9457 problem JSON with a stable \
                     `code`.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| build().to_json().expect("the document serializes"))
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", responses(
    (status = 200, description = "This document (OpenAPI 3.1).", body = Object),
))]
pub async fn document() -> Response {
    let mut response = json().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn every_route_of_the_table_takes_its_operation_from_its_handler() {
        let undocumented: Vec<String> = ROUTES
            .iter()
            .filter(|spec| spec.doc.is_none())
            .map(|spec| format!("{} {}", spec.method, spec.path))
            .collect();
        assert!(
            undocumented.is_empty(),
            "routes without `; doc` (a #[utoipa::path] on their handler): {undocumented:?}"
        );
    }

    fn doc() -> Value {
        serde_json::from_str(json()).unwrap()
    }

    #[test]
    fn every_route_of_the_table_is_in_the_document_with_its_access_and_path_parameters() {
        let doc = doc();
        for spec in ROUTES {
            let op = &doc["paths"][spec.path][spec.method.as_str().to_lowercase()];
            assert_eq!(
                op["x-access"],
                access_name(&spec.access),
                "{} {}",
                spec.method,
                spec.path
            );
            assert_eq!(op["x-rate-limit"], throttle_name(&spec.throttle));
            let path_params: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let in_path: Vec<&str> = spec
                .path
                .split('/')
                .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(path_params, in_path, "{} {}", spec.method, spec.path);
            for (status, response) in op["responses"].as_object().unwrap() {
                assert!(
                    response["description"].is_string(),
                    "{} {} {status}: a response needs a description",
                    spec.method,
                    spec.path
                );
            }
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

    #[test]
    fn every_documented_handler_declares_the_path_and_method_of_its_route() {
        for spec in ROUTES {
            if let Some(doc) = spec.doc {
                let doc = doc();
                assert_eq!(doc.path, spec.path, "{}", spec.operation);
                assert!(
                    doc.methods == vec![http_method(&spec.method)],
                    "{}: `#[utoipa::path]` declares another method than the table",
                    spec.operation
                );
            }
        }
    }

    #[test]
    fn every_schema_reference_in_the_document_resolves() {
        let text = json();
        let doc = doc();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referred to but not defined"
            );
        }
    }

    #[test]
    fn the_problem_schema_lists_every_code() {
        let doc = doc();
        let codes = &doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"];
        assert_eq!(codes.as_array().unwrap().len(), crate::error::CODES.len());
    }

    #[test]
    fn no_two_handlers_name_different_schemas_alike() {
        // The document keeps one schema per name: a second type of the same
        // name would silently replace the first in every operation using it.
        let mut seen: std::collections::HashMap<String, (&str, Value)> = Default::default();
        for spec in ROUTES {
            let Some(doc) = spec.doc else { continue };
            for (name, schema) in doc().schemas {
                let schema = serde_json::to_value(schema).unwrap();
                match seen.get(&name) {
                    Some((first, had)) => assert!(
                        *had == schema,
                        "{name}: {first} and {} use different schemas of that name",
                        spec.operation
                    ),
                    None => {
                        seen.insert(name, (spec.operation, schema));
                    }
                }
            }
        }
    }
}
