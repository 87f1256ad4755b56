//! A small typed client of the worker-api routes the simulator uses.
//!
//! Every non-2xx answer becomes an [`ApiError`] (see `problem`).

pub use crate::problem::ApiError;
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;

/// How long one HTTP call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The answer of login and refresh.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    /// Bearer token for API calls.
    pub access_token: String,
    /// Spent by `POST /v1/auth/refresh` for a new pair.
    pub refresh_token: String,
}

/// The listing part of a claim; other fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct ClaimedListing {
    /// The marketplace's listing id.
    pub listing_id: String,
}

/// A granted claim: a lease on one vote slot of a task.
#[derive(Debug, Clone, Deserialize)]
pub struct Claim {
    /// The task to vote on.
    pub task_id: String,
    /// Fences the vote to this lease.
    pub lease_token: String,
    /// The listing under review.
    pub listing: ClaimedListing,
}

impl Claim {
    /// Path and body of the vote on this claim.
    pub fn vote_call(&self, verdict: &str, reasons: &[&str]) -> (String, Value) {
        let path = format!("/v1/tasks/{}/votes", self.task_id);
        let body =
            json!({ "lease_token": self.lease_token, "verdict": verdict, "reasons": reasons });
        (path, body)
    }

    /// Path and body of the release of this claim.
    pub fn release_call(&self) -> (String, Value) {
        let path = format!("/v1/tasks/{}/release", self.task_id);
        (path, json!({ "lease_token": self.lease_token }))
    }
}

/// The `201` answer of a vote.
#[derive(Debug, Clone, Deserialize)]
pub struct Voted {
    /// The recorded vote (the first one's, when the same vote is sent again).
    pub vote_id: String,
}

/// One escalation as listed to staff; other fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct EscalationItem {
    /// The escalation's id.
    #[serde(default)]
    pub id: String,
    /// The escalated listing.
    pub listing_id: String,
    /// `open`, `confirmed` or `dismissed`.
    #[serde(default)]
    pub status: String,
}

/// A page of escalations.
#[derive(Debug, Clone, Deserialize)]
pub struct EscalationPage {
    /// This page's escalations.
    pub items: Vec<EscalationItem>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The worker-api at one base address, over a shared connection pool.
#[derive(Debug, Clone)]
pub struct Api {
    http: Client,
    base: String,
}

impl Api {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:8080`) keeping up to `pool` idle connections.
    pub fn new(base: &str, pool: usize) -> anyhow::Result<Self> {
        Self::with_idle_connections(base, pool.max(1))
    }

    /// A client that opens a connection for every request (keeps none idle):
    /// behind a per-connection balancer, requests then spread over the
    /// replicas the way an HTTP ingress spreads them, one by one.
    pub fn connection_per_request(base: &str) -> anyhow::Result<Self> {
        Self::with_idle_connections(base, 0)
    }

    fn with_idle_connections(base: &str, idle: usize) -> anyhow::Result<Self> {
        let http = Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(idle)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The base address.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn post(&self, path: &str, token: Option<&str>) -> RequestBuilder {
        let req = self.http.post(format!("{}{path}", self.base));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `POST /v1/auth/login`.
    pub async fn login(&self, username: &str, password: &str) -> Result<Tokens, ApiError> {
        let req = self.post("/v1/auth/login", None);
        json_of(send(req.json(&json!({ "username": username, "password": password }))).await?).await
    }

    /// `POST /v1/auth/refresh`; the old refresh token is spent.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, ApiError> {
        let req = self.post("/v1/auth/refresh", None);
        json_of(send(req.json(&json!({ "refresh_token": refresh_token }))).await?).await
    }

    /// `POST /v1/staff/users`: creates a user with `role`.
    pub async fn create_user(
        &self,
        token: &str,
        username: &str,
        password: &str,
        role: &str,
    ) -> Result<(), ApiError> {
        let body = json!({ "username": username, "password": password, "role": role });
        send(self.post("/v1/staff/users", Some(token)).json(&body)).await?;
        Ok(())
    }

    /// `POST /v1/tasks/claim`: `None` when nothing is available (`204`).
    pub async fn claim(&self, token: &str) -> Result<Option<Claim>, ApiError> {
        let resp = send(self.post("/v1/tasks/claim", Some(token))).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        json_of(resp).await.map(Some)
    }

    /// `POST /v1/tasks/{task_id}/votes`.
    pub async fn vote(
        &self,
        token: &str,
        claim: &Claim,
        verdict: &str,
        reasons: &[&str],
    ) -> Result<(), ApiError> {
        self.cast_vote(token, claim, verdict, reasons)
            .await
            .map(|_| ())
    }

    /// `POST /v1/tasks/{task_id}/votes`, keeping the id of the recorded vote.
    pub async fn cast_vote(
        &self,
        token: &str,
        claim: &Claim,
        verdict: &str,
        reasons: &[&str],
    ) -> Result<Voted, ApiError> {
        let (path, body) = claim.vote_call(verdict, reasons);
        json_of(send(self.post(&path, Some(token)).json(&body)).await?).await
    }

    /// `PUT /v1/staff/sampling-rules`: replaces the sampling policy.
    pub async fn put_sampling_rules(&self, token: &str, rules: &Value) -> Result<(), ApiError> {
        let url = format!("{}/v1/staff/sampling-rules", self.base);
        send(self.http.put(url).bearer_auth(token).json(rules)).await?;
        Ok(())
    }

    /// `POST /v1/staff/gold-tasks`: makes `listing` a gold task with `answer`.
    pub async fn add_gold_task(
        &self,
        token: &str,
        listing: &spotcheck_shared::Listing,
        answer: &str,
    ) -> Result<(), ApiError> {
        let url = format!("{}/v1/staff/gold-tasks", self.base);
        let body = json!({ "listing": listing, "answer": answer });
        send(self.http.post(url).bearer_auth(token).json(&body)).await?;
        Ok(())
    }

    /// `POST /v1/tasks/{task_id}/release`: gives the slot back.
    pub async fn release(&self, token: &str, claim: &Claim) -> Result<(), ApiError> {
        let (path, body) = claim.release_call();
        send(self.post(&path, Some(token)).json(&body)).await?;
        Ok(())
    }

    /// `GET /v1/staff/stats`, kept as loose JSON.
    pub async fn staff_stats(&self, token: &str) -> Result<Value, ApiError> {
        let req = self
            .http
            .get(format!("{}/v1/staff/stats", self.base))
            .bearer_auth(token);
        json_of(send(req).await?).await
    }

    /// `POST /v1/staff/escalations/{id}/decision`: `confirm` or `dismiss`.
    pub async fn decide_escalation(
        &self,
        token: &str,
        id: &str,
        decision: &str,
        note: &str,
    ) -> Result<(), ApiError> {
        let body = json!({ "decision": decision, "note": note });
        let path = format!("/v1/staff/escalations/{id}/decision");
        send(self.post(&path, Some(token)).json(&body)).await?;
        Ok(())
    }

    /// `GET /v1/staff/escalations`: one page of up to `limit`, from `cursor`.
    pub async fn escalations(
        &self,
        token: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<EscalationPage, ApiError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        let url = format!("{}/v1/staff/escalations", self.base);
        json_of(send(self.http.get(url).bearer_auth(token).query(&query)).await?).await
    }
}

/// Sends `req`, turning a non-2xx answer into [`ApiError::Status`].
async fn send(req: RequestBuilder) -> Result<Response, ApiError> {
    let resp = req.send().await?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    Err(ApiError::from_response(resp).await)
}

async fn json_of<T: DeserializeOwned>(resp: Response) -> Result<T, ApiError> {
    resp.json()
        .await
        .map_err(|e| ApiError::Transport(format!("unexpected body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_read_from_the_contract_shape() {
        let body = json!({
            "task_id": "0190a0b0-0000-7000-8000-000000000001", "lease_token": "lt",
            "lease_expires_at": "2030-01-01T00:00:00Z",
            "listing": {"listing_id": "L1", "title": "t", "price": 1.0, "image_urls": []}
        });
        let claim: Claim = serde_json::from_value(body).unwrap();
        assert_eq!(claim.listing.listing_id, "L1");
    }
}
