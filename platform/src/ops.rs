//! The operator listener both binaries run apart from their public one:
//! `/metrics` and `/healthz` (each binary adds its own `/readyz`), and how a
//! readiness check is reported: a gauge per dependency and a warning naming
//! what failed, so the answer itself can stay as terse as the caller wants.

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// `/metrics` (Prometheus text) and `/healthz`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/metrics", get(crate::figures::render))
        .route("/healthz", get(|| async { "ok" }))
}

/// Serves `app` on `listener` until `cancel`, letting requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await?;
    Ok(())
}

/// Records one readiness check: `spotcheck_ready{dependency}` is 1 or 0 for
/// each, and the failing ones are named in a warning. Returns whether all passed.
pub fn report_ready(checks: &[(&'static str, bool)]) -> bool {
    for &(dependency, ok) in checks {
        metrics::gauge!("spotcheck_ready", "dependency" => dependency).set(f64::from(u8::from(ok)));
    }
    let failing: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(dependency, _)| *dependency)
        .collect();
    if !failing.is_empty() {
        tracing::warn!(failing = %failing.join(", "), "not ready");
    }
    failing.is_empty()
}
