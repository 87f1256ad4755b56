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
use serde_json::json;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long one call may take, as with the pooled client.
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

    /// `POST path` with the bearer `token` and a JSON `body`: the answer's
    /// status and body, or the problem of a non-2xx answer.
    async fn post(
        &mut self,
        path: &str,
        token: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, &self.authority)
            .header(AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(transport)?;
        let exchange = async {
            sender.ready().await.map_err(transport)?;
            let (parts, body) = sender
                .send_request(request)
                .await
                .map_err(transport)?
                .into_parts();
            let bytes = body.collect().await.map_err(transport)?.to_bytes();
            Ok::<_, ApiError>((parts, bytes))
        };
        let (parts, bytes) = tokio::time::timeout(CALL_TIMEOUT, exchange)
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
        let (status, body) = self.post("/v1/tasks/claim", token, None).await?;
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
        let path = format!("/v1/tasks/{}/votes", claim.task_id);
        let body = json!({ "lease_token": claim.lease_token, "verdict": verdict, "reasons": [] });
        self.post(&path, token, Some(body.to_string())).await?;
        Ok(())
    }

    /// `POST /v1/tasks/{task_id}/release`.
    pub async fn release(&mut self, token: &str, claim: &Claim) -> Result<(), ApiError> {
        let path = format!("/v1/tasks/{}/release", claim.task_id);
        let body = json!({ "lease_token": claim.lease_token });
        self.post(&path, token, Some(body.to_string())).await?;
        Ok(())
    }
}

fn transport(e: impl std::fmt::Display) -> ApiError {
    ApiError::Transport(e.to_string())
}
