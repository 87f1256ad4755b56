//! What operators watch: a small HTTP listener with `/metrics`, `/healthz` and
//! `/readyz` (PostgreSQL, Redis, the broker and every consumer; the shared
//! listener of [`spotcheck_platform::ops`]), and a loop that keeps the gauges
//! current (leases, outbox lag, over-collected votes, dead-lettered messages,
//! tasks by state).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use lapin::Connection;
use spotcheck_platform::amqp::Names;
use spotcheck_platform::figures;
use spotcheck_platform::lease::LeaseStore;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often the gauges are refreshed.
const REFRESH: Duration = Duration::from_secs(5);

/// Handles the operator endpoints and the gauges read.
#[derive(Clone)]
pub struct Ops {
    /// PostgreSQL.
    pub pool: PgPool,
    /// Leases in Redis.
    pub leases: LeaseStore,
    /// The broker connection.
    pub amqp: Arc<Connection>,
    /// Queue names.
    pub names: Names,
    /// One flag per consumer, true while it is subscribed.
    pub consumers: Vec<Arc<AtomicBool>>,
}

async fn ready(State(ops): State<Ops>) -> (StatusCode, &'static str) {
    let db = sqlx::query("SELECT 1").execute(&ops.pool).await.is_ok();
    let redis = ops.leases.tracked().await.is_ok();
    let broker = ops.amqp.status().connected();
    let consuming = ops.consumers.iter().all(|c| c.load(Ordering::Relaxed));
    let checks = [
        ("postgres", db),
        ("redis", redis),
        ("rabbitmq", broker),
        ("consumers", consuming),
    ];
    if spotcheck_platform::ops::report_ready(&checks) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Serves the operator endpoints until cancelled.
pub async fn serve(
    listener: TcpListener,
    ops: Ops,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let app = spotcheck_platform::ops::router()
        .route("/readyz", get(ready))
        .with_state(ops);
    spotcheck_platform::ops::serve(listener, app, cancel).await
}

/// Refreshes every gauge once.
pub async fn refresh(ops: &Ops) -> anyhow::Result<()> {
    let tracked = ops.leases.tracked().await? as f64;
    let expired = ops.leases.expired_count().await? as f64;
    metrics::gauge!("spotcheck_leases_live").set(tracked - expired);
    metrics::gauge!("spotcheck_leases_expired").set(expired);
    let db = figures::db_figures(&ops.pool).await?;
    metrics::gauge!("spotcheck_votes_over_collected").set(db.over_collected as f64);
    metrics::gauge!("spotcheck_outbox_unsent").set(db.outbox_unsent as f64);
    metrics::gauge!("spotcheck_outbox_lag_seconds").set(db.outbox_lag_secs);
    for (queue, depth) in figures::dead_letter_depths(&ops.amqp, &ops.names).await? {
        metrics::gauge!("spotcheck_dead_letter_messages", "queue" => queue).set(f64::from(depth));
    }
    // Counts that grow with the history come from the running counts (the
    // capacity job moves them), so the gauges cost the same after a year as on
    // the first day.
    let counts = figures::running_counts(&ops.pool, &["review_tasks"]).await?;
    let review = counts.get("review_tasks").copied().unwrap_or(0);
    let tasks = figures::task_figures(&ops.pool, review).await?;
    let states = [
        ("open", tasks.review_open + tasks.gold_open),
        (
            "decided",
            tasks.review_decided() + tasks.gold - tasks.gold_open,
        ),
        ("escalated", tasks.escalated),
    ];
    for (state, n) in states {
        metrics::gauge!("spotcheck_tasks", "state" => state).set(n as f64);
    }
    let enforcement = spotcheck_platform::enforcement::figures(&ops.pool).await?;
    for state in spotcheck_shared::enforcement::CaseState::ALL {
        let n = enforcement["cases_by_state"][state.as_str()]
            .as_f64()
            .unwrap_or(0.0);
        metrics::gauge!("spotcheck_cases", "state" => state.as_str()).set(n);
    }
    for kind in spotcheck_shared::enforcement::PenaltyKind::ALL {
        let n = enforcement["penalties_by_kind"][kind.as_str()]
            .as_f64()
            .unwrap_or(0.0);
        metrics::gauge!("spotcheck_penalties_in_force", "kind" => kind.as_str()).set(n);
    }
    if let Some(rate) = enforcement["refutation_rate"].as_f64() {
        metrics::gauge!("spotcheck_refutation_rate").set(rate);
    }
    if let Some(secs) = enforcement["median_secs_to_enforcement"].as_f64() {
        metrics::gauge!("spotcheck_median_seconds_to_enforcement").set(secs);
    }
    Ok(())
}

/// Records one run of a periodic job in `spotcheck_job_seconds{job}` (the
/// history benchmark and operators read how long each job takes a run).
pub fn job_ran(job: &'static str, started: std::time::Instant) {
    metrics::histogram!("spotcheck_job_seconds", "job" => job)
        .record(started.elapsed().as_secs_f64());
}

/// Keeps the gauges current until cancelled; failures are logged, not fatal.
pub async fn run_gauges(ops: Ops, cancel: CancellationToken) -> anyhow::Result<()> {
    loop {
        let started = std::time::Instant::now();
        match refresh(&ops).await {
            Ok(()) => job_ran("gauges", started),
            Err(e) => tracing::debug!(error = %e, "could not refresh the gauges"),
        }
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}
