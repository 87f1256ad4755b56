//! Liveness and readiness for operators and Kubernetes probes, on the public
//! address: they say as little as they can (see [`crate::ops`] for the detail).

use crate::error::{Problem, problem_response};
use crate::ops::Readiness;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProbeStatus {
    /// `ok` (liveness) or `ready` (readiness).
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

/// `GET /healthz`: the process is up.
#[utoipa::path(get, path = "/healthz", responses(
    (status = 200, description = "The process is up.", body = ProbeStatus),
))]
pub async fn healthz() -> Json<ProbeStatus> {
    Json(ProbeStatus { status: "ok" })
}

/// `GET /metrics`: Prometheus text (claims, votes, dead-lettered offers,
/// stalls), here only in development without `SPOTCHECK_METRICS_ADDR`;
/// otherwise it is served on that address and this route does not exist.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text exposition.", body = String, content_type = "text/plain"),
    (status = 404, description = "`not_found`: served on the operator address instead", body = Problem, content_type = "application/problem+json"),
))]
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
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Ready to take requests.", body = ProbeStatus),
    (status = 503, description = "`not_ready`", body = Problem, content_type = "application/problem+json"),
))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    if Readiness::check(&state).await.ready() {
        Json(ProbeStatus { status: "ready" }).into_response()
    } else {
        problem_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the service is not ready to take requests".into(),
        )
    }
}
