//! `GET /v1/staff/dashboard`: the time series the staff dashboards draw (votes,
//! decisions, escalations and the backlog per time bucket) and the figures of
//! the moment (backlog, pace, dead letters, outbox lag).

use crate::auth::caller::Staff;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spotcheck_shared::capacity::Capacity;
use spotcheck_shared::timeseries::{Buckets, MAX_WINDOW_SECS, MIN_WINDOW_SECS};
use utoipa::{IntoParams, ToSchema};

/// Query of the dashboard.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DashboardQuery {
    /// How far back the series reach, in seconds (60 to 604800; a day when absent).
    #[param(minimum = 60, maximum = 604800)]
    window_secs: Option<u64>,
}

/// The dashboard's series and current figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dashboard {
    /// How far back the series reach, in seconds.
    window_secs: u64,
    /// The length of one bucket, in seconds.
    bucket_secs: i64,
    /// Oldest first; the last bucket is the current, partial one.
    buckets: Vec<Bucket>,
    /// Figures of the moment.
    now: Now,
}

/// One time bucket.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Bucket {
    /// Start of the bucket.
    at: DateTime<Utc>,
    /// Votes cast (review and gold).
    votes: i64,
    /// Tasks decided.
    decisions: i64,
    /// Escalations opened.
    escalations: i64,
    /// Votes still needed by open tasks (mean of the bucket's minute samples;
    /// `null` when the capacity job recorded none in it).
    backlog_votes: Option<i64>,
    /// Hours the backlog takes at the measured pace (mean of the samples).
    backlog_hours: Option<f64>,
}

/// Figures of the moment.
#[derive(Debug, Serialize, ToSchema)]
pub struct Now {
    /// Votes still needed by open tasks, as last measured (`null`: not yet).
    backlog_votes: Option<i64>,
    /// Hours the backlog takes at the measured pace.
    backlog_hours: Option<f64>,
    /// The measured pace of votes.
    votes_per_hour: Option<f64>,
    /// Messages in the dead-letter queues (`null` when the broker did not answer).
    dead_lettered: Option<u64>,
    /// Outbox rows not yet published.
    outbox_unsent: i64,
    /// Age of the oldest of them, in seconds.
    outbox_lag_secs: f64,
}

/// Rows of one bucketed count: the kind, the bucket start (epoch seconds) and the count.
type CountRow = (String, i64, i64);

/// `GET /v1/staff/dashboard?window_secs=`.
#[utoipa::path(get, path = "/v1/staff/dashboard", params(DashboardQuery), responses(
    (status = 200, description = "The series, oldest bucket first, and the figures of the moment.", body = Dashboard),
    (status = 400, description = "`invalid_query`: an unknown or malformed parameter", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed`: window_secs out of range", body = Problem, content_type = "application/problem+json"),
))]
pub async fn dashboard(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<DashboardQuery>,
) -> ApiResult<Json<Dashboard>> {
    let window_secs = q.window_secs.unwrap_or(86_400);
    let buckets = Buckets::covering(window_secs, Utc::now().timestamp()).ok_or_else(|| {
        ApiError::invalid(format!(
            "window_secs must be between {MIN_WINDOW_SECS} and {MAX_WINDOW_SECS}"
        ))
    })?;
    let mut series: Vec<Bucket> = (0..buckets.count)
        .map(|i| Bucket {
            at: DateTime::from_timestamp(buckets.start_of(i), 0).unwrap_or_default(),
            ..Bucket::default()
        })
        .collect();
    let counts: Vec<CountRow> = sqlx::query_as(
        "WITH span AS (SELECT to_timestamp($1) AS since, to_timestamp($2) AS until)
         SELECT 'votes', floor(extract(epoch FROM created_at) / $3)::bigint * $3, count(*)
           FROM votes, span WHERE created_at >= since AND created_at < until GROUP BY 2
         UNION ALL
         SELECT 'decisions', floor(extract(epoch FROM decided_at) / $3)::bigint * $3, count(*)
           FROM decisions, span WHERE decided_at >= since AND decided_at < until GROUP BY 2
         UNION ALL
         SELECT 'escalations', floor(extract(epoch FROM created_at) / $3)::bigint * $3, count(*)
           FROM escalations, span WHERE created_at >= since AND created_at < until GROUP BY 2",
    )
    .bind(buckets.start_secs as f64)
    .bind(buckets.end_secs() as f64)
    .bind(buckets.bucket_secs)
    .fetch_all(&state.pool)
    .await?;
    for (kind, at, n) in counts {
        let Some(bucket) = buckets.index_of(at).and_then(|i| series.get_mut(i)) else {
            continue;
        };
        match kind.as_str() {
            "votes" => bucket.votes = n,
            "decisions" => bucket.decisions = n,
            _ => bucket.escalations = n,
        }
    }
    let backlog: Vec<(i64, f64, Option<f64>)> = sqlx::query_as(
        "SELECT floor(extract(epoch FROM at) / $3)::bigint * $3, avg(backlog_votes)::float8,
                avg(backlog_hours)
         FROM capacity_samples WHERE at >= to_timestamp($1) AND at < to_timestamp($2)
         GROUP BY 1",
    )
    .bind(buckets.start_secs as f64)
    .bind(buckets.end_secs() as f64)
    .bind(buckets.bucket_secs)
    .fetch_all(&state.pool)
    .await?;
    for (at, votes, hours) in backlog {
        if let Some(bucket) = buckets.index_of(at).and_then(|i| series.get_mut(i)) {
            bucket.backlog_votes = Some(votes.round() as i64);
            bucket.backlog_hours = hours;
        }
    }
    Ok(Json(Dashboard {
        window_secs,
        bucket_secs: buckets.bucket_secs,
        buckets: series,
        now: now(&state).await?,
    }))
}

/// The backlog as the capacity job last measured it, dead letters and the outbox.
async fn now(state: &AppState) -> ApiResult<Now> {
    let capacity: Option<(serde_json::Value, Option<f64>)> =
        sqlx::query_as("SELECT capacity, backlog_hours FROM capacity_state WHERE id = 1")
            .fetch_optional(&state.pool)
            .await?;
    let measured = capacity.map(|(measured, hours)| {
        let measured: Capacity = serde_json::from_value(measured).unwrap_or_default();
        (measured, hours)
    });
    let (outbox_unsent, outbox_lag_secs) =
        spotcheck_platform::figures::outbox_backlog(&state.pool).await?;
    let dead_lettered =
        match spotcheck_platform::figures::dead_letter_depths(&state.amqp, &state.names).await {
            Ok(depths) => Some(depths.iter().map(|(_, n)| u64::from(*n)).sum()),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the dead-letter queues");
                None
            }
        };
    Ok(Now {
        backlog_votes: measured.as_ref().map(|(m, _)| m.open_votes as i64),
        backlog_hours: measured.as_ref().and_then(|(_, h)| *h),
        votes_per_hour: measured.as_ref().map(|(m, _)| m.votes_per_hour()),
        dead_lettered,
        outbox_unsent,
        outbox_lag_secs,
    })
}
