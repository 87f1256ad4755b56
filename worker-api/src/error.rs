//! One error type for every handler, answered as RFC 9457 problem JSON with a
//! stable `code`. 5xx bodies are opaque; their cause is logged once, here.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::Duration;

/// An error a handler returns.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    source: Option<anyhow::Error>,
    retry_after_secs: Option<u64>,
    /// Extension members of the problem (RFC 9457 section 3.2).
    extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The problem-details body.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Extension members, when the problem has any.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    /// A client error with a stable code.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            source: None,
            retry_after_secs: None,
            extra: None,
        }
    }

    /// The same error with extension members (an object's fields) in its body.
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        if let serde_json::Value::Object(map) = extra {
            self.extra = Some(map);
        }
        self
    }

    /// 429 with this code and a `Retry-After` of at least one second.
    pub fn too_many(code: &'static str, detail: impl Into<String>, retry_after: Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self {
            retry_after_secs: Some(secs.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, detail)
        }
    }

    /// 503 `busy`: a bound this process keeps on purpose (password hashes at
    /// once) is reached; `Retry-After` says when to try again.
    pub fn busy(detail: impl Into<String>, retry_after: Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self {
            retry_after_secs: Some(secs.max(1)),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", detail)
        }
    }

    /// 422 `validation_failed`: well-formed input with a wrong value.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            detail,
        )
    }

    /// 404 `not_found`.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403 `forbidden`.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 500 `internal`, keeping the cause for the log only.
    pub fn internal(source: anyhow::Error) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            detail: "an internal error occurred".into(),
            source: Some(source),
            retry_after_secs: None,
            extra: None,
        }
    }

    /// 503 `unavailable`, keeping the cause for the log only.
    pub fn unavailable(source: anyhow::Error) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            detail: "a backing service is unavailable; try again shortly".into(),
            source: Some(source),
            retry_after_secs: None,
            extra: None,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of an error with this status, code and detail.
pub fn problem(status: StatusCode, code: &'static str, detail: String) -> Problem {
    Problem {
        kind: format!("https://spotcheck.dev/problems/{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail,
        code,
        extra: None,
    }
}

/// Writes a problem response with the right content type.
pub fn problem_response(status: StatusCode, code: &'static str, detail: String) -> Response {
    let mut response = (status, Json(problem(status, code, detail))).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            tracing::error!(error = ?source, code = self.code, "request failed");
        }
        let mut body = problem(self.status, self.code, self.detail);
        body.extra = self.extra;
        let mut response = (self.status, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => Self::unavailable(e.into()),
            other => Self::internal(other.into()),
        }
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        Self::unavailable(e.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(e)
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

/// Every stable `code` a problem body can carry, listed in the document's
/// `Problem` schema so clients can switch on them.
pub const CODES: &[&str] = &[
    "account_suspended",
    "admin_only",
    "already_refuted",
    "already_voted",
    "bad_request",
    "brand_not_linked",
    "busy",
    "case_state",
    "claim_in_progress",
    "complaint_already_decided",
    "complaint_rate_limited",
    "daily_quota_exceeded",
    "escalation_already_decided",
    "forbidden",
    "gold_task_exists",
    "held_by_another",
    "internal",
    "invalid_body",
    "invalid_credentials",
    "invalid_ladder",
    "invalid_query",
    "invalid_refresh_token",
    "invalid_sampling_rules",
    "lease_expired",
    "lease_not_found",
    "lease_released",
    "lease_token_mismatch",
    "listing_exists",
    "malformed_json",
    "method_not_allowed",
    "not_counting",
    "not_found",
    "not_ready",
    "payload_too_large",
    "penalty_already_lifted",
    "pseudonym_key_missing",
    "rate_limited",
    "refresh_token_reused",
    "refutation_window_closed",
    "request_timeout",
    "seller_banned",
    "separation_of_duties",
    "task_closed",
    "timeout",
    "too_many_leases",
    "too_many_login_attempts",
    "unauthorized",
    "unavailable",
    "unsupported_media_type",
    "uri_too_long",
    "username_taken",
    "validation_failed",
];

impl utoipa::PartialSchema for Problem {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let schema = serde_json::json!({
            "type": "object",
            "description": "RFC 9457 problem details. Extension members beyond the listed \
                ones may be added.",
            "required": ["type", "title", "status", "code", "detail"],
            "properties": {
                "type": {"type": "string", "description": "A URI naming the problem type."},
                "title": {"type": "string", "description": "The HTTP status's reason phrase."},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string", "description": "What went wrong in this occurrence."},
                "code": {"type": "string", "enum": CODES,
                         "description": "Stable machine-readable code."},
                "reviewer": {"type": "string", "format": "uuid",
                             "description": "`held_by_another`: who holds the review."},
                "review_until": {"type": "string", "format": "date-time",
                                 "description": "`held_by_another`: when the hold ends."},
            },
            "additionalProperties": true,
        });
        utoipa::openapi::RefOr::T(
            serde_json::from_value(schema).expect("the problem schema is a valid schema"),
        )
    }
}

impl utoipa::ToSchema for Problem {}
