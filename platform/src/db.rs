//! PostgreSQL: the pool and the migrations both binaries apply at start.

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// Opens a pool to `url` with at most `max` connections.
///
/// Statements are planned for the values they are given
/// (`plan_cache_mode = force_custom_plan`): the hot statements take arrays of
/// ids, and a generic plan cached while a table was still nearly empty (a new
/// deployment, a fresh partition) scans the whole table on every call ever
/// after, since nothing invalidates it until the table is analyzed. Measured:
/// the vote path's generic plans read the whole votes table about 140 times a
/// second. Planning each batch's statement costs far less than one such scan.
///
/// JIT compilation is off: every statement here is short, and on a large
/// history the planner's row guesses can pass the JIT threshold, adding tens of
/// milliseconds of compiling to a statement that reads a handful of rows.
///
/// A random page read is priced as on SSD or from cache (`random_page_cost =
/// 1.1`, not the default 4 made for spinning disks). At the default, the
/// planner preferred reading a young partition whole, and sorting or hashing
/// it, to a few hundred primary-key probes: the aggregator's accounting of 450
/// votes read all 14,781 rows of the month's partition twice (20 ms; with
/// probes, 13 ms, growing with the batch instead of the partition).
pub async fn connect(url: &str, max: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("parsing DATABASE_URL")?
        .options([
            ("plan_cache_mode", "force_custom_plan"),
            ("jit", "off"),
            ("random_page_cost", "1.1"),
        ]);
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        // A checkout would otherwise cost a ping round trip; a broken
        // connection fails its query and is replaced.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")
}

/// Applies every pending migration from `migrations/`.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("../migrations")
        .run(pool)
        .await
        .context("applying database migrations")
}
