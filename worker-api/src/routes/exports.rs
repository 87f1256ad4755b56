//! `GET /v1/staff/exports/votes` and `GET /v1/staff/exports/decisions`: the
//! analysts' exports, streamed from PostgreSQL a chunk at a time (constant
//! memory whatever the range; gzip when the client asks, by the router's
//! compression), with volunteer ids pseudonymised unless an admin asks for them.

use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult};
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
use spotcheck_shared::export::{ExportFormat, ExportKind, VolunteerIds};

/// How volunteer ids are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdForm {
    /// Keyed hashes, stable within the deployment.
    #[default]
    Pseudonymised,
    /// The ids themselves (admins only).
    Raw,
}

/// Query of an export.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// First instant included (RFC 3339); the beginning when absent.
    since: Option<DateTime<Utc>>,
    /// First instant left out (RFC 3339); now when absent.
    until: Option<DateTime<Utc>>,
    /// `csv` (default) or `jsonl`.
    #[serde(default)]
    format: ExportFormat,
    /// `pseudonymised` (default) or `raw` (admins only).
    #[serde(default)]
    volunteer_ids: IdForm,
}

/// `GET /v1/staff/exports/votes?since=&until=&format=csv|jsonl&volunteer_ids=`.
pub async fn votes(
    State(state): State<AppState>,
    Staff(me): Staff,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    export(&state, me.role, ExportKind::Votes, q)
}

/// `GET /v1/staff/exports/decisions?since=&until=&format=csv|jsonl`.
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
