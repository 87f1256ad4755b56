//! The sampling policy in force, read from PostgreSQL and refreshed every few
//! seconds so a staff change reaches every replica without a restart.

use anyhow::Context;
use spotcheck_shared::SamplingPolicy;
use sqlx::PgPool;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The policy currently in force and its row id.
#[derive(Debug, Clone)]
pub struct CurrentPolicy {
    /// Row id in `sampling_policies`.
    pub id: i64,
    /// The rules.
    pub policy: SamplingPolicy,
}

/// Loads the newest policy row.
pub async fn load(pool: &PgPool) -> anyhow::Result<CurrentPolicy> {
    let (id, doc): (i64, serde_json::Value) =
        sqlx::query_as("SELECT id, policy FROM sampling_policies ORDER BY id DESC LIMIT 1")
            .fetch_one(pool)
            .await
            .context("reading the sampling policy")?;
    let policy = serde_json::from_value(doc).context("decoding the stored sampling policy")?;
    Ok(CurrentPolicy { id, policy })
}

/// A policy and when it was read.
type Cached = (Instant, Arc<CurrentPolicy>);

/// A cached policy that re-reads the database when older than `max_age`.
#[derive(Clone)]
pub struct PolicyCache {
    pool: PgPool,
    max_age: Duration,
    cached: Arc<RwLock<Option<Cached>>>,
}

impl PolicyCache {
    /// A cache over `pool` refreshing after `max_age`.
    pub fn new(pool: PgPool, max_age: Duration) -> Self {
        Self {
            pool,
            max_age,
            cached: Arc::new(RwLock::new(None)),
        }
    }

    /// The policy in force, at most `max_age` old.
    pub async fn get(&self) -> anyhow::Result<Arc<CurrentPolicy>> {
        if let Some((at, policy)) = self.cached.read().expect("policy lock").as_ref()
            && at.elapsed() < self.max_age
        {
            return Ok(policy.clone());
        }
        let fresh = Arc::new(load(&self.pool).await?);
        let previous = self
            .cached
            .write()
            .expect("policy lock")
            .replace((Instant::now(), fresh.clone()));
        if previous.is_some_and(|(_, p)| p.id != fresh.id) {
            tracing::info!(policy.id = fresh.id, "sampling policy changed");
        }
        metrics::gauge!("spotcheck_sampling_policy_version").set(fresh.id as f64);
        Ok(fresh)
    }

    /// How often the policy is re-read.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }
}

/// Re-reads the policy every `max_age` even when nothing is ingested, so a staff
/// change is in force (and visible in the version gauge) within that time.
pub async fn run(cache: PolicyCache, cancel: CancellationToken) -> anyhow::Result<()> {
    while !cancel.is_cancelled() {
        if let Err(e) = cache.get().await {
            tracing::warn!(error = %e, "could not read the sampling policy");
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(cache.max_age()) => {}
        }
    }
    Ok(())
}
