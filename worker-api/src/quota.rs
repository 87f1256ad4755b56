//! Quotas that must hold across replicas, so they live in Redis: votes per
//! volunteer per UTC day, charged only for votes that count. (Failed sign-ins
//! are kept in Redis too, by [`crate::backoff`].)
//!
//! The counter is under the deployment's hash tag and is charged in the same
//! atomic step as the vote's lease check, so every replica sees the same count
//! and a counter never outlives its day.

use crate::config::LimitsConfig;
use crate::error::ApiError;
use chrono::{DateTime, Duration as Days, Utc};
use redis::aio::ConnectionManager;
use spotcheck_shared::UserId;
use std::time::Duration;

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
}

/// A volunteer's votes counted today against the daily quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaToday {
    /// The quota (`None`: no quota).
    pub quota: Option<u32>,
    /// Counted votes charged to it today.
    pub spent: u32,
}

impl QuotaToday {
    /// Votes still allowed today (`None`: no quota).
    pub fn left(&self) -> Option<u32> {
        self.quota.map(|q| q.saturating_sub(self.spent))
    }
}

impl Quotas {
    /// Quotas under `{prefix}` with the limits of `config`.
    pub fn new(redis: ConnectionManager, prefix: &str, config: &LimitsConfig) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
            daily_votes: config.daily_vote_quota,
        }
    }

    fn vote_key(&self, user: UserId, now: DateTime<Utc>) -> String {
        vote_key(&self.prefix, user, now)
    }

    /// Today's vote counter of `user` and the quota, or `None` when there is no
    /// quota. A claim is refused once it is spent; a vote is charged to it only
    /// when it counts, in the same atomic step as its lease check (see
    /// `LeaseStore::seal`).
    pub fn daily_votes(&self, user: UserId) -> Option<(String, u32)> {
        (self.daily_votes > 0).then(|| (self.vote_key(user, Utc::now()), self.daily_votes))
    }

    /// What `user` has spent of today's quota (read from the shared counter, so
    /// every replica answers the same).
    pub async fn today(&self, user: UserId) -> redis::RedisResult<QuotaToday> {
        let Some((key, quota)) = self.daily_votes(user) else {
            return Ok(QuotaToday {
                quota: None,
                spent: 0,
            });
        };
        let spent: Option<u32> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.redis.clone())
            .await?;
        Ok(QuotaToday {
            quota: Some(quota),
            spent: spent.unwrap_or(0),
        })
    }

    /// The refusal of a claim or vote once today's quota is spent.
    pub fn spent(&self) -> ApiError {
        self.votes_spent(Utc::now())
    }

    fn votes_spent(&self, now: DateTime<Utc>) -> ApiError {
        daily_votes_spent(Some(self.daily_votes), now)
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
