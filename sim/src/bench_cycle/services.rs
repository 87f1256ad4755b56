//! The shared servers the stack runs on: whether PostgreSQL has the
//! connections a run needs, and removing the run's keys from Redis.

use super::args::BenchCycleArgs;
use anyhow::Context;
use std::time::Duration;

/// Refuses a run whose processes would need more PostgreSQL connections than the server has free.
pub async fn check_connections(
    pool: &sqlx::PgPool,
    args: &BenchCycleArgs,
    own: u32,
) -> anyhow::Result<()> {
    let max: String = sqlx::query_scalar("SHOW max_connections")
        .fetch_one(pool)
        .await?;
    let max: u32 = max.parse().context("reading max_connections")?;
    let used: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity")
        .fetch_one(pool)
        .await?;
    let processes = u32::from(args.api_replicas + args.coordinators);
    // Each process, the baseline's pool (as large as a process's) and the benchmark's own.
    let needed = (processes + 1) * args.db_connections + own;
    let free = max.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX));
    anyhow::ensure!(
        needed <= free,
        "the run needs up to {needed} PostgreSQL connections and {free} of {max} are free: lower --db-connections"
    );
    Ok(())
}

/// Deletes every key of the prefix (`{prefix}:...`); returns how many.
pub async fn delete_redis_keys(url: &str, prefix: &str) -> anyhow::Result<u64> {
    let client = redis::Client::open(url).context("parsing the Redis address")?;
    let work = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        let pattern = format!("{{{prefix}}}*");
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                deleted += redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<u64>(&mut conn)
                    .await?;
            }
            if next == 0 {
                return Ok::<u64, redis::RedisError>(deleted);
            }
            cursor = next;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .context("deleting the Redis keys timed out")?
        .context("deleting the Redis keys")
}
