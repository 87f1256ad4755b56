//! Prevalence estimates for staff: the counterfeit share per stratum and overall
//! in a surveillance round, with 95% intervals (Horvitz–Thompson; see
//! `spotcheck_shared::prevalence`).

use crate::auth::caller::Staff;
use crate::error::{ApiResult, Problem};
use crate::extract::ApiQuery;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use spotcheck_shared::prevalence::{Estimate, StratumSample, estimate};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Query of the estimate.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PrevalenceQuery {
    /// The surveillance round (the newest with a decided inspection when absent).
    round: Option<i64>,
}

/// How the estimate is made: `horvitz-thompson`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub enum Method {
    /// Each inspection weighed by the inverse of its inclusion probability.
    #[serde(rename = "horvitz-thompson")]
    HorvitzThompson,
}

/// The counterfeit share of a round, per stratum and overall. Before any round
/// has been sampled, only `round` and `overall` (both `null`) and `strata`
/// (empty) are present.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrevalenceReport {
    /// The round estimated.
    round: Option<i64>,
    /// How.
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<Method>,
    /// The intervals' confidence level: 0.95.
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence: Option<f64>,
    /// All strata together, except those pending.
    overall: Option<Estimate>,
    /// Strata with inspections but no known outcome yet, left out of `overall`.
    #[serde(skip_serializing_if = "Option::is_none")]
    strata_pending: Option<u64>,
    /// By stratum key (`category/region/tier`).
    strata: BTreeMap<String, Estimate>,
}

type StratumRow = (String, i64, i64, i64, i64, f64, f64, f64, f64, f64);

/// `GET /v1/staff/prevalence?round=`: the round defaults to the newest one with
/// a decided inspection. A listing counts as counterfeit when staff confirmed
/// it, genuine when staff dismissed it, and otherwise as the volunteers decided;
/// uncertain and undecided inspections are treated as not (yet) answered.
/// Only round tasks count: an inspection a complaint opened was not drawn with
/// a known probability from the round's frame, so it would bias the estimate.
#[utoipa::path(get, path = "/v1/staff/prevalence", params(PrevalenceQuery), responses(
    (status = 200, description = "The round's estimates with their 95% intervals.", body = PrevalenceReport),
    (status = 400, description = "`invalid_query`: an unknown or malformed parameter", body = Problem, content_type = "application/problem+json"),
))]
pub async fn prevalence(
    State(state): State<AppState>,
    Staff(_): Staff,
    ApiQuery(q): ApiQuery<PrevalenceQuery>,
) -> ApiResult<Json<PrevalenceReport>> {
    let round = match q.round {
        Some(r) => Some(r),
        None => {
            // The rounds, newest first, by a walk down the round index (one
            // probe a round, not a scan of every task), until one has a decision.
            sqlx::query_scalar(
                "WITH RECURSIVE r AS (
                     (SELECT round FROM tasks WHERE kind = 'review' AND origin = 'round'
                      ORDER BY round DESC LIMIT 1)
                     UNION ALL
                     SELECT (SELECT t.round FROM tasks t
                             WHERE t.kind = 'review' AND t.origin = 'round' AND t.round < r.round
                             ORDER BY t.round DESC LIMIT 1)
                     FROM r WHERE r.round IS NOT NULL)
                 SELECT coalesce(
                    (SELECT round FROM r WHERE round IS NOT NULL AND
                         EXISTS (SELECT 1 FROM tasks t
                                 WHERE t.round = r.round AND t.kind = 'review'
                                   AND t.origin = 'round'
                                   AND (t.state <> 'open' OR t.finding IS NOT NULL))
                     ORDER BY round DESC LIMIT 1),
                    (SELECT max(round) FROM sampling_frames))",
            )
            .fetch_one(&state.pool)
            .await?
        }
    };
    let Some(round) = round else {
        return Ok(Json(PrevalenceReport {
            round: None,
            method: None,
            confidence: None,
            overall: None,
            strata_pending: None,
            strata: BTreeMap::new(),
        }));
    };
    // Each round task carries its finding (kept by triggers on decisions and
    // escalations), so the estimate reads the round's tasks and nothing else.
    let rows: Vec<StratumRow> = sqlx::query_as(
        "WITH sample AS (
            SELECT stratum, count(*) AS inspected, count(finding) AS decided,
                   count(*) FILTER (WHERE finding) AS found,
                   coalesce(sum(1 / p) FILTER (WHERE finding), 0) AS inv_p,
                   coalesce(sum(1 / (p * p)) FILTER (WHERE finding), 0) AS inv_p2,
                   coalesce(sum(1 / p), 0) AS inv_p_inspected,
                   coalesce(sum(1 / p) FILTER (WHERE finding IS NOT NULL), 0) AS inv_p_decided,
                   coalesce(sum(1 / (p * p)) FILTER (WHERE finding IS NOT NULL), 0) AS inv_p2_decided
            FROM (SELECT stratum, inclusion_probability AS p, finding FROM tasks
                  WHERE round = $1 AND kind = 'review' AND origin = 'round') t
            GROUP BY stratum)
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
    Ok(Json(PrevalenceReport {
        round: Some(round),
        method: Some(Method::HorvitzThompson),
        confidence: Some(0.95),
        overall: Some(result.overall),
        strata_pending: Some(result.strata_pending),
        strata: result.strata,
    }))
}
