//! Liveness and readiness for operators and Kubernetes probes.

use crate::error::problem_response;
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

/// `GET /metrics`: Prometheus text (claims, votes, dead-lettered offers, stalls).
pub async fn metrics() -> impl IntoResponse {
    spotcheck_platform::figures::render().await
}

/// `GET /readyz`: PostgreSQL and Redis answer and the offer consumer runs.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let db = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let redis = state.leases.tracked().await.is_ok();
    let consumer = state.offers.is_alive();
    if db && redis && consumer {
        Json(json!({"status": "ready"})).into_response()
    } else {
        let detail = format!("postgres: {db}, redis: {redis}, task consumer: {consumer}");
        problem_response(StatusCode::SERVICE_UNAVAILABLE, "not_ready", detail)
    }
}
