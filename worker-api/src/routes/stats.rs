//! Operating figures for staff: listings, tasks, votes, decisions, escalations,
//! leases and the outbox backlog.

use crate::auth::caller::Staff;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

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
              FROM tasks),
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
              FROM escalations),
            'outbox_unsent', (SELECT count(*) FROM outbox WHERE sent_at IS NULL),
            'outbox_oldest_secs', (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)
              FROM outbox WHERE sent_at IS NULL))",
    )
    .fetch_one(&state.pool)
    .await?;
    let mut doc = doc;
    doc["leases_tracked"] = json!(state.leases.tracked().await.ok());
    doc["offers_buffered_here"] = json!(state.offers.len());
    Ok(Json(doc))
}
