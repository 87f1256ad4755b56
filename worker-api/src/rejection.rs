//! The last word on error bodies: whatever answers with an error status without
//! problem JSON (one of axum's own rejections such as a malformed path or query,
//! the body limit, the request timeout, or a caught panic) is rewritten here
//! into problem JSON with a stable code, so no error is ever plain text and
//! none carries internal detail.

use crate::error::{PROBLEM_JSON, problem_response};
use axum::http::{StatusCode, header};
use axum::response::Response;
use std::any::Any;

/// The stable code and detail for an error status that arrived without a body of ours.
fn describe(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
        StatusCode::UNAUTHORIZED => ("unauthorized", "sign in first"),
        StatusCode::FORBIDDEN => ("forbidden", "not allowed"),
        StatusCode::NOT_FOUND => ("not_found", "no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "this route does not take that method")
        }
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long to arrive"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request URI is too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid_body", "the request could not be understood"),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests; retry later"),
        StatusCode::SERVICE_UNAVAILABLE => {
            ("timeout", "the request took too long; try again shortly")
        }
        s if s.is_client_error() => ("bad_request", "the request was refused"),
        _ => ("internal", "an internal error occurred"),
    }
}

/// Middleware (`map_response`): error responses that are not problem JSON become problem JSON.
pub async fn ensure_problem(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if is_problem {
        return response;
    }
    let (code, detail) = describe(status);
    let mut problem = problem_response(status, code, detail.to_owned());
    // Keep what the client needs to act on the answer.
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = response.headers().get(&name) {
            problem.headers_mut().insert(name, value.clone());
        }
    }
    problem
}

/// Answer to a handler that panicked: an opaque 500; the panic is logged once, here.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "a request handler panicked");
    problem_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "an internal error occurred".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[tokio::test]
    async fn a_plain_text_error_becomes_problem_json_and_keeps_allow() {
        let plain = Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("Method Not Allowed"))
            .unwrap();
        let fixed = ensure_problem(plain).await;
        assert_eq!(fixed.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(fixed.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(fixed.headers()[header::ALLOW], "GET");
        let ok = Response::new(Body::from("fine"));
        assert_eq!(ensure_problem(ok).await.status(), StatusCode::OK);
    }
}
