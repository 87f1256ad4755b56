//! Liveness and readiness for operators and Kubernetes probes, on the public
//! address: they say as little as they can (see [`crate::ops`] for the detail).

use crate::error::problem_response;
use crate::ops::Readiness;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /metrics`: Prometheus text (claims, votes, dead-lettered offers,
/// stalls), here only in development without `SPOTCHECK_METRICS_ADDR`;
/// otherwise it is served on that address and this route does not exist.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let config = &state.config;
    if config
        .edge
        .metrics_listen(config.is_development())
        .is_some()
    {
        return crate::routes::no_such_route();
    }
    spotcheck_platform::figures::render().await.into_response()
}

/// `GET /readyz`: `{"status": "ready"}`, or `503 not_ready` without saying
/// which dependency failed (the log, the `spotcheck_ready` gauge and the
/// operator listener's `/readyz` say).
pub async fn readyz(State(state): State<AppState>) -> Response {
    if Readiness::check(&state).await.ready() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the service is not ready to take requests".into(),
        )
    }
}
