//! `GET /v1/staff/exports/votes` and `GET /v1/staff/exports/decisions`: the
//! analysts' exports, streamed from PostgreSQL a chunk at a time (constant
//! memory whatever the range; gzip when the client asks, by the router's
//! compression), with volunteer ids pseudonymised unless an admin asks for them.

use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;
use spotcheck_platform::export::{ExportRequest, stream};
use spotcheck_shared::Role;
use spotcheck_shared::export::{DecisionRow, ExportFormat, ExportKind, VolunteerIds, VoteRow};
use utoipa::{IntoParams, ToSchema};

/// How volunteer ids are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IdForm {
    /// Keyed hashes, stable within the deployment.
    #[default]
    Pseudonymised,
    /// The ids themselves (admins only).
    Raw,
}

/// Query of an export.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// First instant included (RFC 3339); the beginning when absent.
    since: Option<DateTime<Utc>>,
    /// First instant left out (RFC 3339); now when absent.
    until: Option<DateTime<Utc>>,
    /// `csv` (default) or `jsonl`.
    #[serde(default)]
    #[param(value_type = Option<ExportFormat>, inline)]
    format: ExportFormat,
    /// `pseudonymised` (default) or `raw` (admins only).
    #[serde(default)]
    #[param(value_type = Option<IdForm>, inline)]
    volunteer_ids: IdForm,
}

/// `GET /v1/staff/exports/votes?since=&until=&format=csv|jsonl&volunteer_ids=`.
#[utoipa::path(get, path = "/v1/staff/exports/votes", params(ExportQuery), responses(
    (status = 200, description = "Every vote cast in the range, oldest first, streamed: CSV with a \
        header line (`reasons` joined by `;`), or one JSON object a line. Each row is a `VoteRow`.",
        headers(("Content-Disposition" = String, description = "`attachment` with the file's name.")),
        content((VoteRow = "text/csv"), (VoteRow = "application/jsonl"))),
    (status = 400, description = "`invalid_query`: an unknown or malformed parameter", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "`admin_only`: raw volunteer ids are for admins; `forbidden`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: since is not before until", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "`pseudonym_key_missing`: no key to pseudonymise volunteer ids with", body = Problem, content_type = "application/problem+json"),
))]
pub async fn votes(
    State(state): State<AppState>,
    Staff(me): Staff,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    export(&state, me.role, ExportKind::Votes, q)
}

/// `GET /v1/staff/exports/decisions?since=&until=&format=csv|jsonl`.
#[utoipa::path(get, path = "/v1/staff/exports/decisions", params(ExportQuery), responses(
    (status = 200, description = "Every decision taken in the range, oldest first, streamed: CSV \
        with a header line, or one JSON object a line. Each row is a `DecisionRow`.",
        headers(("Content-Disposition" = String, description = "`attachment` with the file's name.")),
        content((DecisionRow = "text/csv"), (DecisionRow = "application/jsonl"))),
    (status = 400, description = "`invalid_query`: an unknown or malformed parameter", body = Problem, content_type = "application/problem+json"),
    (status = 403, description = "`admin_only`: raw volunteer ids are for admins; `forbidden`", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: since is not before until", body = Problem, content_type = "application/problem+json"),
    (status = 503, description = "`pseudonym_key_missing`: no key to pseudonymise volunteer ids with", body = Problem, content_type = "application/problem+json"),
))]
pub async fn decisions(
    State(state): State<AppState>,
    Staff(me): Staff,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    export(&state, me.role, ExportKind::Decisions, q)
}

fn export(state: &AppState, role: Role, kind: ExportKind, q: ExportQuery) -> ApiResult<Response> {
    let since = q.since.unwrap_or(DateTime::UNIX_EPOCH);
    let until = q.until.unwrap_or_else(Utc::now);
    if since >= until {
        return Err(ApiError::invalid("since must be before until"));
    }
    let volunteers = match q.volunteer_ids {
        IdForm::Raw if role != Role::Admin => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_only",
                "only an admin may export volunteer ids unpseudonymised",
            ));
        }
        IdForm::Raw => VolunteerIds::Raw,
        IdForm::Pseudonymised => match state.config.services.pseudonyms() {
            Some(p) => VolunteerIds::Pseudonymised(p),
            None => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "pseudonym_key_missing",
                    "SPOTCHECK_PSEUDONYM_KEY is not set: exports with pseudonyms are unavailable",
                ));
            }
        },
    };
    metrics::counter!("spotcheck_exports_total", "kind" => kind.as_str()).increment(1);
    let rows = stream(
        state.pool.clone(),
        ExportRequest {
            kind,
            format: q.format,
            since,
            until,
            volunteers,
        },
    )
    .map(move |chunk| {
        chunk.inspect_err(
            |e| tracing::warn!(error = %e, export = kind.as_str(), "an export stopped"),
        )
    });
    let file = format!(
        "attachment; filename=\"{}-{}-{}.{}\"",
        kind.as_str(),
        since.format("%Y%m%dT%H%M%SZ"),
        until.format("%Y%m%dT%H%M%SZ"),
        q.format.extension()
    );
    let mut response = Response::new(Body::from_stream(rows));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(q.format.content_type()),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&file).map_err(|e| ApiError::internal(e.into()))?,
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
