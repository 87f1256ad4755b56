//! Request extractors whose rejections are problem JSON like every other error.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

/// `Json<T>` whose every rejection is a problem with a stable code.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

/// The client's address: the TCP peer, or what a trusted proxy forwarded for
/// it (see [`crate::ratelimit::proxies`]).
pub struct ClientAddr(pub std::net::IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(Self(state.limits.client_ip(peer, &parts.headers)))
    }
}

/// `Query<T>` whose rejection (an unknown parameter, a wrong type) is a problem.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                scrub(&rejection.body_text()),
            )),
        }
    }
}

/// The `limit` (1 to 200, 50 when absent) and `cursor` (a UUID after which the
/// page starts) of a keyset-paged list.
pub fn page_params(
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<(i64, Option<uuid::Uuid>), ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 200"));
    }
    let cursor = match cursor {
        None | Some("") => None,
        Some(c) => {
            Some(uuid::Uuid::parse_str(c).map_err(|_| ApiError::invalid("malformed cursor"))?)
        }
    };
    Ok((limit, cursor))
}

/// The end of a keyset page: `items` were fetched with one more than `limit`;
/// the extra one is dropped, and the cursor of the next page (the last kept
/// item's, by `cursor_of`) is returned when there is a next page.
pub fn next_cursor<T, C: ToString>(
    items: &mut Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> C,
) -> Option<String> {
    if items.len() as i64 <= limit {
        return None;
    }
    items.truncate(limit.max(0) as usize);
    items.last().map(|item| cursor_of(item).to_string())
}

/// A deserializer's message without the names of our Rust types
/// ("expected struct Login" reads "expected an object").
fn scrub(message: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut words = message.split(' ');
    while let Some(word) = words.next() {
        match word {
            "struct" | "enum" => {
                let next = words.next().unwrap_or("");
                let tail = next.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
                out.push(if word == "struct" {
                    "an object"
                } else {
                    "a known value"
                });
                if !tail.is_empty() {
                    out.push(tail);
                }
            }
            other => out.push(other),
        }
    }
    out.join(" ").replace(" ,", ",")
}

fn json_error(rejection: JsonRejection) -> ApiError {
    let detail = scrub(&rejection.body_text());
    match rejection {
        JsonRejection::JsonDataError(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", detail)
        }
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", detail)
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        ),
        other => ApiError::new(other.status(), "bad_request", detail),
    }
}

/// Parses an id from a path segment; a malformed id is 404, as an unknown one would be.
pub fn parse_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_keeps_its_limit_and_names_the_next_one_only_when_there_is_one() {
        let mut full = vec![1, 2, 3];
        assert_eq!(next_cursor(&mut full, 2, |i| *i), Some("2".into()));
        assert_eq!(full, [1, 2]);
        let mut last = vec![1, 2];
        assert_eq!(next_cursor(&mut last, 2, |i| *i), None);
        assert_eq!(last, [1, 2]);
    }

    #[test]
    fn deserializer_messages_lose_our_type_names() {
        assert_eq!(
            scrub("invalid type: integer `1`, expected struct Login at line 1 column 1"),
            "invalid type: integer `1`, expected an object at line 1 column 1"
        );
        assert_eq!(
            scrub("expected enum Verdict, got struct Foo,"),
            "expected a known value, got an object,"
        );
        assert_eq!(scrub("unknown field `x`"), "unknown field `x`");
    }
}
