//! Quotas that must hold across replicas, so they live in Redis: votes per
//! volunteer per UTC day (charged only for votes that count), and sign-in
//! attempts per account per window.
//!
//! Each is one counter under the deployment's hash tag, incremented and given
//! its expiry in one script, so every replica sees the same count and a counter
//! never outlives its period.

use crate::config::LimitsConfig;
use crate::error::{ApiError, ApiResult};
use chrono::{DateTime, Duration as Days, Utc};
use redis::Script;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use spotcheck_shared::UserId;
use std::sync::LazyLock;
use std::time::Duration;

/// Increments KEYS[1]; sets its expiry (ARGV[1] seconds) on the first count.
/// Returns the count and the seconds the counter still lives.
static COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local n = redis.call('INCR', KEYS[1])
          if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
          local ttl = redis.call('TTL', KEYS[1])
          if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
          return {n, ttl}",
    )
});

/// `{prefix}:quota:<user>:<yyyymmdd>`: one counter per volunteer and UTC day.
fn vote_key(prefix: &str, user: UserId, now: DateTime<Utc>) -> String {
    format!("{{{prefix}}}:quota:{user}:{}", now.format("%Y%m%d"))
}

/// Redis-backed quotas of one deployment.
#[derive(Clone)]
pub struct Quotas {
    redis: ConnectionManager,
    prefix: String,
    daily_votes: u32,
    login_attempts: u32,
    login_window_secs: u64,
}

impl Quotas {
    /// Quotas under `{prefix}` with the limits of `config`.
    pub fn new(redis: ConnectionManager, prefix: &str, config: &LimitsConfig) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            daily_votes: config.daily_vote_quota,
            login_attempts: config.login_attempts_per_account,
            login_window_secs: config.login_window_secs.max(1),
        }
    }

    fn vote_key(&self, user: UserId, now: DateTime<Utc>) -> String {
        vote_key(&self.prefix, user, now)
    }

    fn login_key(&self, username: &str) -> String {
        // Hashed: the username is input of any shape, and keys need not show it.
        let digest = Sha256::digest(username.as_bytes());
        format!("{{{}}}:login:{}", self.prefix, hex::encode(&digest[..16]))
    }

    async fn count(&self, key: &str, ttl_secs: u64) -> ApiResult<(u64, u64)> {
        let mut redis = self.redis.clone();
        let (n, ttl): (u64, i64) = COUNT
            .key(key)
            .arg(ttl_secs)
            .invoke_async(&mut redis)
            .await?;
        Ok((n, ttl.max(1) as u64))
    }

    /// Today's vote counter of `user` and the quota, or `None` when there is no
    /// quota. A claim is refused once it is spent; a vote is charged to it only
    /// when it counts, in the same atomic step as its lease check (see
    /// `LeaseStore::seal`).
    pub fn daily_votes(&self, user: UserId) -> Option<(String, u32)> {
        (self.daily_votes > 0).then(|| (self.vote_key(user, Utc::now()), self.daily_votes))
    }

    /// The refusal of a claim or vote once today's quota is spent.
    pub fn spent(&self) -> ApiError {
        self.votes_spent(Utc::now())
    }

    fn votes_spent(&self, now: DateTime<Utc>) -> ApiError {
        daily_votes_spent(Some(self.daily_votes), now)
    }

    /// Counts a sign-in attempt for `username`, refusing it once the account's
    /// attempts in the window are spent. The same for names that exist and
    /// names that do not, so the answer says nothing about which is which.
    pub async fn login_attempt(&self, username: &str) -> ApiResult<()> {
        let key = self.login_key(username);
        let (attempts, ttl) = self.count(&key, self.login_window_secs).await?;
        if attempts > u64::from(self.login_attempts) {
            metrics::counter!("spotcheck_quota_refused_total", "quota" => "login_attempts")
                .increment(1);
            return Err(ApiError::too_many(
                "too_many_login_attempts",
                "too many sign-in attempts for this account; try again later",
                Duration::from_secs(ttl),
            ));
        }
        Ok(())
    }

    /// Forgets the attempts of an account that has just signed in.
    pub async fn login_succeeded(&self, username: &str) {
        let mut redis = self.redis.clone();
        let result: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(self.login_key(username))
            .query_async(&mut redis)
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not reset sign-in attempts");
        }
    }
}

/// `429 daily_quota_exceeded`, with `Retry-After` until the next UTC midnight.
pub fn daily_votes_spent(quota: Option<u32>, now: DateTime<Utc>) -> ApiError {
    metrics::counter!("spotcheck_quota_refused_total", "quota" => "daily_votes").increment(1);
    let midnight = (now.date_naive() + Days::days(1))
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now);
    let wait = (midnight - now).to_std().unwrap_or(Duration::from_secs(1));
    let quota = quota.map_or_else(
        || "today's quota of votes".to_owned(),
        |q| format!("today's quota of {q} votes"),
    );
    ApiError::too_many(
        "daily_quota_exceeded",
        format!("you reached {quota}; it resets at midnight UTC"),
        wait,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_volunteers_vote_counter_is_per_utc_day_under_the_deployments_hash_tag() {
        let user = UserId(uuid::Uuid::nil());
        let late = Utc.with_ymd_and_hms(2026, 11, 28, 23, 59, 59).unwrap();
        let next = late + Days::seconds(1);
        assert_eq!(
            vote_key("spotcheck", user, late),
            "{spotcheck}:quota:00000000-0000-0000-0000-000000000000:20261128"
        );
        assert!(vote_key("spotcheck", user, next).ends_with(":20261129"));
    }
}
