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
        "/readyz" => Some(
            "`{\"status\": \"ready\"}`, or 503 `not_ready` without naming the failed \
             dependency (the operator address's /readyz does).",
        ),
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
