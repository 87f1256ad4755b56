//! PostgreSQL: the pool and the migrations both binaries apply at start.

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

/// Opens a pool to `url` with at most `max` connections.
pub async fn connect(url: &str, max: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        // A checkout would otherwise cost a ping round trip; a broken
        // connection fails its query and is replaced.
        .test_before_acquire(false)
        .connect(url)
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
