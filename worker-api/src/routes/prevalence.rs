//! Prevalence estimates for staff: the counterfeit share per stratum and overall
//! in a surveillance round, with 95% intervals (Horvitz–Thompson; see
//! `spotcheck_shared::prevalence`).

use crate::auth::caller::Staff;
use crate::error::ApiResult;
use crate::extract::ApiQuery;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use spotcheck_shared::prevalence::{StratumSample, estimate};
use std::collections::BTreeMap;

/// Query of the estimate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrevalenceQuery {
    round: Option<i64>,
}

type StratumRow = (String, i64, i64, i64, i64, f64, f64, f64, f64, f64);

/// `GET /v1/staff/prevalence?round=`: the round defaults to the newest one with
/// a decided inspection. A listing counts as counterfeit when staff confirmed
/// it, genuine when staff dismissed it, and otherwise as the volunteers decided;
/// uncertain and undecided inspections are treated as not (yet) answered.
/// Only round tasks count: an inspection a complaint opened was not drawn with
/// a known probability from the round's frame, so it would bias the estimate.
pub async fn prevalence(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<PrevalenceQuery>,
) -> ApiResult<Json<Value>> {
    let round = match q.round {
        Some(r) => Some(r),
        None => {
            sqlx::query_scalar(
                "SELECT coalesce(
                    (SELECT max(t.round) FROM tasks t JOIN decisions d ON d.task_id = t.id
                      WHERE t.kind = 'review' AND t.origin = 'round'),
                    (SELECT max(round) FROM sampling_frames))",
            )
            .fetch_one(&state.pool)
            .await?
        }
    };
    let Some(round) = round else {
        return Ok(Json(json!({"round": null, "overall": null, "strata": {}})));
    };
    let rows: Vec<StratumRow> = sqlx::query_as(
        "WITH outcome AS (
            SELECT t.stratum, t.inclusion_probability AS p,
                   CASE WHEN e.status = 'confirmed' THEN true
                        WHEN e.status = 'dismissed' THEN false
                        WHEN d.outcome = 'counterfeit' THEN true
                        WHEN d.outcome = 'genuine' THEN false END AS y
            FROM tasks t
            LEFT JOIN decisions d ON d.task_id = t.id
            LEFT JOIN escalations e ON e.task_id = t.id
            WHERE t.round = $1 AND t.kind = 'review' AND t.origin = 'round'),
         sample AS (
            SELECT stratum, count(*) AS inspected, count(y) AS decided,
                   count(*) FILTER (WHERE y) AS found,
                   coalesce(sum(1 / p) FILTER (WHERE y), 0) AS inv_p,
                   coalesce(sum(1 / (p * p)) FILTER (WHERE y), 0) AS inv_p2,
                   coalesce(sum(1 / p), 0) AS inv_p_inspected,
                   coalesce(sum(1 / p) FILTER (WHERE y IS NOT NULL), 0) AS inv_p_decided,
                   coalesce(sum(1 / (p * p)) FILTER (WHERE y IS NOT NULL), 0) AS inv_p2_decided
            FROM outcome GROUP BY stratum)
         SELECT coalesce(f.stratum, s.stratum), coalesce(f.listings, 0),
                coalesce(s.inspected, 0), coalesce(s.decided, 0), coalesce(s.found, 0),
                coalesce(s.inv_p, 0), coalesce(s.inv_p2, 0), coalesce(s.inv_p_inspected, 0),
                coalesce(s.inv_p_decided, 0), coalesce(s.inv_p2_decided, 0)
         FROM (SELECT stratum, listings FROM sampling_frames WHERE round = $1) f
         FULL JOIN sample s ON s.stratum = f.stratum",
    )
    .bind(round)
    .fetch_all(&state.pool)
    .await?;
    let strata: BTreeMap<String, StratumSample> = rows
        .into_iter()
        .map(|row| {
            let n = |v: i64| v.max(0) as u64;
            let sample = StratumSample {
                population: n(row.1),
                inspected: n(row.2),
                decided: n(row.3),
                found: n(row.4),
                inv_p: row.5,
                inv_p2: row.6,
                inv_p_inspected: row.7,
                inv_p_decided: row.8,
                inv_p2_decided: row.9,
            };
            (row.0, sample)
        })
        .collect();
    let result = estimate(&strata);
    Ok(Json(json!({
        "round": round,
        "method": "horvitz-thompson",
        "confidence": 0.95,
        "overall": result.overall,
        "strata_pending": result.strata_pending,
        "strata": result.strata,
    })))
}
