//! What a failed API call looks like to the simulator: the status and the
//! RFC 9457 problem JSON's stable `code`, so reports can count errors by code.

use reqwest::Response;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// A failed call.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The server answered with a non-2xx status.
    Status {
        /// The HTTP status.
        status: u16,
        /// The problem JSON's `code`, `-` when the body had none.
        code: String,
        /// The `Retry-After` header, when present.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, timeout, or an unreadable body.
    Transport(String),
}

impl ApiError {
    /// The key errors are counted under, e.g. `409 lease_expired`.
    pub fn key(&self) -> String {
        match self {
            ApiError::Status { status, code, .. } => format!("{status} {code}"),
            ApiError::Transport(_) => "transport".to_owned(),
        }
    }

    /// Whether the access token was refused.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, ApiError::Status { status: 401, .. })
    }

    /// Whether the server answered with `status` and `code`.
    pub fn is(&self, want_status: u16, want_code: &str) -> bool {
        matches!(self, ApiError::Status { status, code, .. } if *status == want_status && code == want_code)
    }

    /// How long to wait before the next call after this error.
    pub fn backoff(&self) -> Duration {
        match self {
            ApiError::Status {
                retry_after: Some(d),
                ..
            } => (*d).min(Duration::from_secs(5)),
            ApiError::Status { status: 429, .. } => Duration::from_secs(1),
            ApiError::Status { status, .. } if *status >= 500 => Duration::from_millis(500),
            ApiError::Status { .. } => Duration::from_millis(100),
            ApiError::Transport(_) => Duration::from_millis(500),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Status { status, code, .. } => write!(f, "HTTP {status} ({code})"),
            ApiError::Transport(e) => write!(f, "transport error: {e}"),
        }
    }
}

impl std::error::Error for ApiError {}

impl From<reqwest::Error> for ApiError {
    fn from(e: reqwest::Error) -> Self {
        ApiError::Transport(e.to_string())
    }
}

impl ApiError {
    /// Reads the status, `Retry-After` and problem `code` of a non-2xx answer.
    pub async fn from_response(resp: Response) -> Self {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.unwrap_or_default();
        Self::from_parts(status, &headers, &body)
    }

    /// The same, from an answer already read: its status, headers and body.
    pub fn from_parts(status: u16, headers: &HeaderMap, body: &[u8]) -> Self {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let problem: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        ApiError::Status {
            status,
            code: problem_code(&problem),
            retry_after,
        }
    }
}

/// The stable `code` of an RFC 9457 problem body, `-` when absent.
fn problem_code(problem: &Value) -> String {
    problem
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_problem_code_is_read_from_the_body_or_shown_as_a_dash() {
        assert_eq!(
            problem_code(&json!({"type": "about:blank", "code": "lease_expired"})),
            "lease_expired"
        );
        assert_eq!(problem_code(&Value::Null), "-");
    }

    #[test]
    fn an_answer_already_read_gives_its_status_code_and_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, " 7".parse().unwrap());
        let body = br#"{"type":"about:blank","status":409,"code":"lease_released"}"#;
        assert_eq!(
            ApiError::from_parts(409, &headers, body),
            ApiError::Status {
                status: 409,
                code: "lease_released".into(),
                retry_after: Some(Duration::from_secs(7)),
            }
        );
        assert_eq!(
            ApiError::from_parts(502, &HeaderMap::new(), b"<html>bad gateway</html>").key(),
            "502 -"
        );
    }

    #[test]
    fn errors_are_keyed_by_status_and_code_and_back_off_by_kind() {
        let limited = ApiError::Status {
            status: 429,
            code: "rate_limited".into(),
            retry_after: Some(Duration::from_secs(60)),
        };
        assert_eq!(limited.key(), "429 rate_limited");
        assert_eq!(limited.backoff(), Duration::from_secs(5));
        assert!(limited.is(429, "rate_limited"));
        assert_eq!(ApiError::Transport("refused".into()).key(), "transport");
    }
}
