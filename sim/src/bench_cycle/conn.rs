//! One keep-alive HTTP/1.1 connection per closed-loop client, driven by hyper
//! directly: no pool, no URL parsing, no redirect or decompression layers.
//!
//! The load generator shares the cores with the services it measures, so
//! every microsecond it spends on a call is one the services do not get. A
//! closed-loop client has one call in flight at a time, which is exactly what
//! one HTTP/1.1 connection carries; it sends the same requests as
//! [`crate::api::Api`] and reads every answer whole (status, `Retry-After`,
//! body, the claim's JSON). A connection the server closed, or a failed call,
//! is replaced on the next call.

use crate::api::{ApiError, Claim};
use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long one call may take, connecting included, as with the pooled client.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A client's own connection to one worker-api (or the baseline server).
pub struct Conn {
    /// `host:port`.
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// A connection to `base` (`http://host:port`), opened on the first call.
    pub fn new(base: &str) -> Self {
        let authority = base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        Self {
            authority,
            sender: None,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ApiError> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(transport)?;
        stream.set_nodelay(true).map_err(transport)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(transport)?;
        tokio::spawn(connection);
        Ok(sender)
    }

    fn request(
        &self,
        path: &str,
        token: &str,
        body: &Bytes,
    ) -> Result<Request<Full<Bytes>>, ApiError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, &self.authority)
            .header(AUTHORIZATION, format!("Bearer {token}"));
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        request.body(Full::new(body.clone())).map_err(transport)
    }

    /// `POST path` with the bearer `token` and a JSON `body` (empty: none):
    /// the answer's status and body, or the problem of a non-2xx answer.
    /// Connecting counts against the call's time limit; a kept connection
    /// that the server closed before taking the request is replaced once.
    async fn post(
        &mut self,
        path: &str,
        token: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let call = async {
            let (mut sender, mut reused) = match self.sender.take() {
                Some(sender) if !sender.is_closed() => (sender, true),
                _ => (self.connect().await?, false),
            };
            loop {
                let request = self.request(path, token, &body)?;
                match exchange(&mut sender, request).await {
                    Err(e) if reused && (e.is_canceled() || e.is_incomplete_message()) => {
                        (sender, reused) = (self.connect().await?, false);
                    }
                    Err(e) => return Err(transport(e)),
                    Ok(answer) => return Ok((sender, answer)),
                }
            }
        };
        let (sender, (parts, bytes)) = tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| ApiError::Transport("timed out".to_owned()))??;
        // Kept only after a whole answer: a failed call drops its connection.
        self.sender = Some(sender);
        if parts.status.is_success() {
            Ok((parts.status, bytes))
        } else {
            Err(ApiError::from_parts(
                parts.status.as_u16(),
                &parts.headers,
                &bytes,
            ))
        }
    }

    /// `POST /v1/tasks/claim`: the lease, or `None` on `204`.
    pub async fn claim(&mut self, token: &str) -> Result<Option<Claim>, ApiError> {
        let (status, body) = self.post("/v1/tasks/claim", token, Bytes::new()).await?;
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| ApiError::Transport(format!("unexpected body: {e}")))
    }

    /// `POST /v1/tasks/{task_id}/votes` with `verdict` and no reasons.
    pub async fn vote(
        &mut self,
        token: &str,
        claim: &Claim,
        verdict: &str,
    ) -> Result<(), ApiError> {
        let (path, body) = claim.vote_call(verdict, &[]);
        self.post(&path, token, Bytes::from(body.to_string()))
            .await?;
        Ok(())
    }

    /// `POST /v1/tasks/{task_id}/release`.
    pub async fn release(&mut self, token: &str, claim: &Claim) -> Result<(), ApiError> {
        let (path, body) = claim.release_call();
        self.post(&path, token, Bytes::from(body.to_string()))
            .await?;
        Ok(())
    }
}

/// Sends `request` once it may go and reads the whole answer.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(hyper::http::response::Parts, Bytes), hyper::Error> {
    sender.ready().await?;
    let (parts, body) = sender.send_request(request).await?.into_parts();
    Ok((parts, body.collect().await?.to_bytes()))
}

fn transport(e: impl std::fmt::Display) -> ApiError {
    ApiError::Transport(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::HeaderMap;
    use axum::http::header::CONNECTION;
    use axum::routing::post;
    use serde_json::json;

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn claims_are_read_problems_keep_their_code_and_a_closed_connection_is_replaced() {
        let claim = |headers: HeaderMap| async move {
            let bearer = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
            if bearer != Some("Bearer vol-token") {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(CONNECTION, "close")],
                    String::new(),
                );
            }
            let body = json!({
                "task_id": "t1", "lease_token": "lt_1", "lease_expires_at": "2030-01-01T00:00:00Z",
                "listing": {"listing_id": "L1", "title": "x"}
            });
            // Every answer closes its connection: each call must open a new one.
            (StatusCode::OK, [(CONNECTION, "close")], body.to_string())
        };
        let release = || async {
            (
                StatusCode::CONFLICT,
                [(CONTENT_TYPE, "application/problem+json")],
                r#"{"type":"about:blank","status":409,"code":"lease_released"}"#,
            )
        };
        let app = Router::new()
            .route("/v1/tasks/claim", post(claim))
            .route("/v1/tasks/{task_id}/release", post(release));
        let mut conn = Conn::new(&serve(app).await);
        for _ in 0..3 {
            let claim = conn.claim("vol-token").await.unwrap().unwrap();
            assert_eq!(
                (claim.task_id.as_str(), claim.listing.listing_id.as_str()),
                ("t1", "L1")
            );
        }
        let claim = conn.claim("vol-token").await.unwrap().unwrap();
        let refused = conn.release("vol-token", &claim).await.unwrap_err();
        assert!(refused.is(409, "lease_released"), "{refused}");
        assert!(conn.claim("other").await.unwrap_err().is_unauthorized());
    }

    /// A server that answers the first request of each connection with `204`
    /// and closes the connection on the second without answering it.
    async fn one_answer_per_connection() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        match seen.windows(4).filter(|w| w == b"\r\n\r\n").count() {
                            1 => {
                                let answer = b"HTTP/1.1 204 No Content\r\n\r\n";
                                stream.write_all(answer).await.unwrap();
                            }
                            0 => {}
                            _ => return,
                        }
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_request_the_server_closed_its_kept_connection_on_is_sent_again_once() {
        let mut conn = Conn::new(&one_answer_per_connection().await);
        for _ in 0..4 {
            assert!(conn.claim("t").await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn nothing_listening_is_a_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = Conn::new(&base).claim("t").await.unwrap_err();
        assert_eq!(err.key(), "transport");
    }
}
