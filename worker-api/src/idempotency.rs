//! `Idempotency-Key` on claims: a retry with the same key within the lease TTL
//! answers the same lease instead of granting a second one.
//!
//! The key (per volunteer, hashed) is reserved in Redis before the claim runs;
//! a granted claim stores its answer there for the lease's lifetime, and a claim
//! that granted nothing frees the key again. A retry that arrives while the
//! first attempt still runs is answered `409 claim_in_progress`.

use crate::claim::Claimed;
use crate::error::{ApiError, ApiResult};
use axum::http::{HeaderMap, StatusCode};
use redis::Script;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use spotcheck_shared::UserId;
use std::sync::LazyLock;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted.
const MAX_KEY_LEN: usize = 128;
/// How long a reservation lasts if its claim never finishes.
const PENDING_MS: u64 = 20_000;

/// Returns the stored answer, or reserves the key and returns nothing.
static BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], 'pending', 'PX', ARGV[1])
return false",
    )
});

/// The claim's idempotency key, if the request has a well-formed one.
pub fn key_of(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .ok_or_else(|| {
            ApiError::invalid("Idempotency-Key must be 1 to 128 visible ASCII characters")
        })?;
    Ok(Some(key.to_owned()))
}

/// Idempotency records of one deployment.
#[derive(Clone)]
pub struct Idempotency {
    redis: ConnectionManager,
    prefix: String,
}

/// What an earlier attempt with the same key left.
pub enum Earlier {
    /// None: the key is now reserved for this attempt.
    Nothing,
    /// Its answer.
    Answer(Box<Claimed>),
}

impl Idempotency {
    /// Records under the `{prefix}` hash tag.
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            redis,
            prefix: format!("{{{prefix}}}"),
        }
    }

    fn record_key(&self, user: UserId, key: &str) -> String {
        let digest = Sha256::digest(key.as_bytes());
        format!("{}:idem:{user}:{}", self.prefix, hex::encode(&digest[..16]))
    }

    /// The earlier answer for this key, or a reservation of it.
    pub async fn begin(&self, user: UserId, key: &str) -> ApiResult<Earlier> {
        let stored: Option<String> = BEGIN
            .key(self.record_key(user, key))
            .arg(PENDING_MS)
            .invoke_async(&mut self.redis.clone())
            .await?;
        match stored.as_deref() {
            None => Ok(Earlier::Nothing),
            Some("pending") => Err(ApiError::new(
                StatusCode::CONFLICT,
                "claim_in_progress",
                "a claim with this Idempotency-Key is still running; retry shortly",
            )),
            Some(json) => serde_json::from_str(json)
                .map(|c| Earlier::Answer(Box::new(c)))
                .map_err(|e| ApiError::internal(e.into())),
        }
    }

    /// Stores the answer of a granted claim until its lease expires, or frees
    /// the key when nothing was granted.
    pub async fn finish(&self, user: UserId, key: &str, answer: Option<&Claimed>) {
        let record = self.record_key(user, key);
        let mut redis = self.redis.clone();
        let result: redis::RedisResult<()> = match answer {
            Some(claimed) => {
                let ttl_ms = (claimed.lease_expires_at - chrono::Utc::now())
                    .num_milliseconds()
                    .max(1);
                let json = serde_json::to_string(claimed).unwrap_or_default();
                redis::cmd("SET")
                    .arg(&record)
                    .arg(json)
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut redis)
                    .await
            }
            None => redis::cmd("DEL").arg(&record).query_async(&mut redis).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not record an idempotent claim");
        }
    }
}
