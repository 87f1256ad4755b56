//! The deadline sweep: cases whose refutation window ran out are expired and
//! enforced, on every replica side by side (each case is taken with `SKIP
//! LOCKED` and enforced once in its own transaction), exact under restarts,
//! with the deadline clock of the configuration (injectable outside production).

use spotcheck_platform::clock::Clock;
use spotcheck_platform::enforcement;
use sqlx::PgPool;
use std::time::{Duration, Instant};
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
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        match enforcement::sweep(&pool, &clock, PASS_LIMIT).await {
            Ok(n) => {
                failures = 0;
                crate::ops::job_ran("deadline_sweep", started);
                if n > 0 {
                    tracing::info!(cases = n, "refutation windows ran out: cases enforced");
                }
                if n as i64 >= PASS_LIMIT {
                    continue;
                }
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "deadline sweep failed; will retry");
                if failures >= 60 {
                    return Err(e.context("deadline sweep failed 60 times in a row"));
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}
