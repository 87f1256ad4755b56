//! The route table: every route, and the role it requires (by its extractor:
//! `Volunteer`, `Staff`, `Caller` for any signed-in user, none for anonymous).

pub mod auth;
pub mod escalations;
pub mod health;
pub mod me;
pub mod sampling;
pub mod stats;
pub mod tasks;
pub mod users;
pub mod votes;

use crate::error::problem_response;
use crate::state::AppState;
use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

/// Every route of the API.
pub fn router() -> Router<AppState> {
    Router::new()
        // anyone
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/refresh", post(auth::refresh))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        // volunteers
        .route("/v1/tasks/claim", post(tasks::claim))
        .route("/v1/tasks/{task_id}/extend", post(tasks::extend))
        .route("/v1/tasks/{task_id}/release", post(tasks::release))
        .route("/v1/tasks/{task_id}/votes", post(votes::vote))
        // any signed-in user
        .route("/v1/me", get(me::me))
        // staff
        .route("/v1/staff/escalations", get(escalations::list))
        .route("/v1/staff/escalations/{id}", get(escalations::one))
        .route(
            "/v1/staff/escalations/{id}/decision",
            post(escalations::decide),
        )
        .route(
            "/v1/staff/sampling-rules",
            get(sampling::get_rules).put(sampling::put_rules),
        )
        .route("/v1/staff/stats", get(stats::stats))
        .route("/v1/staff/users", post(users::create))
        .route("/v1/staff/users/{user_id}/suspend", post(users::suspend))
        .route(
            "/v1/staff/users/{user_id}/reinstate",
            post(users::reinstate),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> Response {
    problem_response(StatusCode::NOT_FOUND, "not_found", "no such route".into())
}

async fn method_not_allowed() -> Response {
    problem_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method".into(),
    )
}
