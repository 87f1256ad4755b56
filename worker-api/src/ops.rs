//! worker-api's operator endpoints: `/metrics`, `/healthz` and a detailed
//! `/readyz` on their own listener (`SPOTCHECK_METRICS_ADDR`; outside
//! development `127.0.0.1:9090` when unset), and the readiness check that the
//! public `/readyz` shares.
//!
//! Publicly, `/readyz` says only ready or not ready: which dependency failed
//! goes to the log (a warning), to `spotcheck_ready{dependency}` and to the
//! private `/readyz`. When the operator listener runs, the public `/metrics`
//! answers 404 like any unknown route.

use crate::config::Config;
use crate::state::AppState;
use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long one dependency may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds the operator listener, unless `/metrics` stays public.
pub async fn bind(config: &Config) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = config.edge.metrics_listen(config.is_development()) else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding SPOTCHECK_METRICS_ADDR {addr}"))?;
    Ok(Some(listener))
}

/// The state of each dependency, from one check.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    /// PostgreSQL answers.
    pub postgres: bool,
    /// Redis answers.
    pub redis: bool,
    /// The offer consumer runs.
    pub consumer: bool,
}

impl Readiness {
    /// Checks every dependency at once, each within a short timeout, and
    /// reports the result (gauges, and a warning naming what failed).
    pub async fn check(state: &AppState) -> Self {
        let within = |ok: Result<bool, _>| ok.unwrap_or(false);
        let (postgres, redis) = tokio::join!(
            tokio::time::timeout(CHECK_TIMEOUT, async {
                sqlx::query("SELECT 1").execute(&state.pool).await.is_ok()
            }),
            tokio::time::timeout(CHECK_TIMEOUT, async {
                state.leases.tracked().await.is_ok()
            }),
        );
        let readiness = Self {
            postgres: within(postgres),
            redis: within(redis),
            consumer: state.offers.is_alive(),
        };
        spotcheck_platform::ops::report_ready(&readiness.checks());
        readiness
    }

    fn checks(&self) -> [(&'static str, bool); 3] {
        [
            ("postgres", self.postgres),
            ("redis", self.redis),
            ("consumer", self.consumer),
        ]
    }

    /// Whether every dependency is fine.
    pub fn ready(&self) -> bool {
        self.checks().iter().all(|(_, ok)| *ok)
    }
}

/// The private `/readyz`: the status and each dependency.
async fn detailed_readyz(State(state): State<AppState>) -> Response {
    let readiness = Readiness::check(&state).await;
    let dependencies: serde_json::Map<String, serde_json::Value> = readiness
        .checks()
        .iter()
        .map(|(name, ok)| ((*name).to_owned(), json!(ok)))
        .collect();
    let (status, word) = if readiness.ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    };
    (
        status,
        Json(json!({"status": word, "dependencies": dependencies})),
    )
        .into_response()
}

/// The operator endpoints over `state`.
pub fn router(state: AppState) -> Router {
    spotcheck_platform::ops::router()
        .route("/readyz", get(detailed_readyz))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use crate::config::EdgeConfig;

    #[test]
    fn metrics_are_public_only_in_development_without_an_address() {
        let mut edge = crate::Config::defaults().edge;
        assert_eq!(edge.metrics_listen(true), None, "development: public");
        assert_eq!(
            edge.metrics_listen(false),
            EdgeConfig::DEFAULT_METRICS_ADDR.parse().ok(),
            "anywhere else: private by default"
        );
        edge.metrics_addr = Some("0.0.0.0:9100".parse().unwrap());
        for development in [true, false] {
            assert_eq!(edge.metrics_listen(development), edge.metrics_addr);
        }
    }
}
