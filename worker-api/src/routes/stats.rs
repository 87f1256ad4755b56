//! Operating figures for staff: listings, tasks, votes, decisions, escalations,
//! leases and the outbox backlog.

use crate::auth::caller::Staff;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use spotcheck_shared::capacity::Capacity;

/// `GET /v1/staff/stats`.
pub async fn stats(State(state): State<AppState>, Staff(_): Staff) -> ApiResult<Json<Value>> {
    let (doc,): (Value,) = sqlx::query_as(
        "SELECT jsonb_build_object(
            'listings', (SELECT count(*) FROM listings),
            'tasks', (SELECT jsonb_build_object(
                'total', count(*),
                'open', count(*) FILTER (WHERE state = 'open'),
                'decided', count(*) FILTER (WHERE state = 'decided'),
                'escalated', count(*) FILTER (WHERE state = 'escalated'),
                'votes_still_needed', coalesce(sum(votes_required - votes_counted) FILTER (WHERE state = 'open'), 0))
              FROM tasks WHERE kind = 'review'),
            'gold_tasks', (SELECT count(*) FROM tasks WHERE kind = 'gold'),
            'volunteers_not_counting', (SELECT count(*) FROM volunteer_reliability WHERE NOT counting),
            'collusion_flags_open', (SELECT count(*) FROM collusion_flags WHERE status = 'open'),
            'votes', (SELECT count(*) FROM votes),
            'decisions', (SELECT jsonb_build_object(
                'genuine', count(*) FILTER (WHERE outcome = 'genuine'),
                'counterfeit', count(*) FILTER (WHERE outcome = 'counterfeit'),
                'uncertain', count(*) FILTER (WHERE outcome = 'uncertain'))
              FROM decisions),
            'escalations', (SELECT jsonb_build_object(
                'open', count(*) FILTER (WHERE status = 'open'),
                'confirmed', count(*) FILTER (WHERE status = 'confirmed'),
                'dismissed', count(*) FILTER (WHERE status = 'dismissed'))
              FROM escalations))",
    )
    .fetch_one(&state.pool)
    .await?;
    let mut doc = doc;
    let tracked = state.leases.tracked().await.ok();
    let expired = state.leases.expired_count().await.ok();
    doc["leases_tracked"] = json!(tracked);
    doc["leases"] = json!({
        "live": tracked.zip(expired).map(|(t, e)| t.saturating_sub(e)),
        "expired_awaiting_reaper": expired,
    });
    let figures = spotcheck_platform::figures::db_figures(&state.pool).await?;
    doc["votes_over_collected"] = json!(figures.over_collected);
    doc["outbox_unsent"] = json!(figures.outbox_unsent);
    doc["outbox_oldest_secs"] = json!(figures.outbox_lag_secs);
    doc["outbox_lag_secs"] = json!(figures.outbox_lag_secs);
    doc["dead_lettered"] =
        match spotcheck_platform::figures::dead_letter_depths(&state.amqp, &state.names).await {
            Ok(depths) => {
                let total: u64 = depths.iter().map(|(_, n)| u64::from(*n)).sum();
                let by_queue: serde_json::Map<String, serde_json::Value> =
                    depths.into_iter().map(|(q, n)| (q, json!(n))).collect();
                json!({"total": total, "by_queue": by_queue})
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the dead-letter queues");
                json!(null)
            }
        };
    doc["offers_buffered_here"] = json!(state.offers.len());
    let capacity: Option<(Value, Value, Option<f64>, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as(
            "SELECT capacity, throttle, backlog_hours, updated_at FROM capacity_state WHERE id = 1",
        )
        .fetch_optional(&state.pool)
        .await?;
    doc["capacity"] = match capacity {
        Some((measured, throttle, hours, at)) => {
            let measured: Capacity = serde_json::from_value(measured).unwrap_or_default();
            json!({
            "backlog_votes": measured.open_votes,
            "votes_per_hour": measured.votes_per_hour(),
            "backlog_hours": hours,
            "throttle": throttle,
            "measured_at": at,
            })
        }
        None => json!(null),
    };
    doc["enforcement"] = spotcheck_platform::enforcement::figures(&state.pool).await?;
    Ok(Json(doc))
}
