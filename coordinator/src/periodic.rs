//! The loop a periodic job runs in: a run every interval, at once again when
//! the run says more is due, its duration recorded, failures retried, and the
//! job given up (ending the process) after 60 failures in a row.

use std::future::Future;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Runs `once` every `interval` until cancelled (the first run at once).
/// `once` answers whether more is due (a full pass): then it runs again at
/// once. `job` names the run in `spotcheck_job_seconds`, `what` in the logs.
pub async fn every<F, Fut>(
    job: &'static str,
    what: &str,
    interval: Duration,
    cancel: CancellationToken,
    mut once: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let mut failures = 0u32;
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let started = Instant::now();
        match once().await {
            Ok(more) => {
                failures = 0;
                crate::ops::job_ran(job, started);
                if more {
                    continue;
                }
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "{what} failed; will retry");
                if failures >= 60 {
                    return Err(e.context(format!("{what} failed 60 times in a row")));
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}
