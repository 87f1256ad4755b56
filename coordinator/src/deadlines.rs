//! The deadline sweep: cases whose refutation window ran out are expired and
//! enforced, on every replica side by side (each case is taken with `SKIP
//! LOCKED` and enforced once in its own transaction), exact under restarts,
//! with the deadline clock of the configuration (injectable outside production).

use spotcheck_platform::clock::Clock;
use spotcheck_platform::enforcement;
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Cases one pass enforces at most before it yields.
const PASS_LIMIT: i64 = 200;

/// Sweeps every `interval` until cancelled.
pub async fn run(
    pool: PgPool,
    clock: Clock,
    interval: Duration,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    crate::periodic::every(
        "deadline_sweep",
        "deadline sweep",
        interval,
        cancel,
        || async {
            let n = enforcement::sweep(&pool, &clock, PASS_LIMIT).await?;
            if n > 0 {
                tracing::info!(cases = n, "refutation windows ran out: cases enforced");
            }
            Ok(n as i64 >= PASS_LIMIT)
        },
    )
    .await
}
