//! Operating figures for staff: listings, tasks, votes, decisions, escalations,
//! leases and the outbox backlog.

use crate::auth::caller::Staff;
use crate::error::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spotcheck_shared::capacity::{Capacity, Throttle};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Review tasks by state.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskCounts {
    /// Every review task.
    total: i64,
    /// Still collecting votes.
    open: i64,
    /// Decided by their votes.
    decided: i64,
    /// Handed to staff.
    escalated: i64,
    /// Votes the open ones still need.
    votes_still_needed: i64,
}

/// Decisions by outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionCounts {
    /// Found genuine.
    genuine: i64,
    /// Found counterfeit.
    counterfeit: i64,
    /// No majority either way.
    uncertain: i64,
}

/// Escalations by status.
#[derive(Debug, Serialize, ToSchema)]
pub struct EscalationCounts {
    /// Awaiting staff.
    open: i64,
    /// Confirmed by staff.
    confirmed: i64,
    /// Dismissed by staff.
    dismissed: i64,
}

/// Counts that stay small, read in one statement.
#[derive(Debug, sqlx::FromRow)]
struct SmallCounts {
    volunteers_not_counting: i64,
    collusion_flags_open: i64,
    escalations_open: i64,
}

/// Leases as Redis tracks them (`null` when Redis did not answer).
#[derive(Debug, Serialize, ToSchema)]
pub struct Leases {
    /// Leases not yet expired.
    live: Option<u64>,
    /// Expired leases the reaper has not swept yet.
    expired_awaiting_reaper: Option<u64>,
}

/// Messages in the dead-letter queues.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLettered {
    /// In every queue.
    total: u64,
    /// By queue name.
    by_queue: BTreeMap<String, u32>,
}

/// The coordinators' latest capacity measurement and throttle.
#[derive(Debug, Serialize, ToSchema)]
pub struct CapacityNow {
    /// Votes still needed by open tasks.
    backlog_votes: u64,
    /// The measured pace of votes.
    votes_per_hour: f64,
    /// Hours the backlog takes at that pace (`null` when no pace is measured).
    backlog_hours: Option<f64>,
    /// How new tasks are throttled.
    throttle: Throttle,
    /// When it was measured.
    measured_at: DateTime<Utc>,
}

/// Enforcement figures: cases, refutations and penalties.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnforcementFigures {
    /// Cases by state.
    cases_by_state: BTreeMap<String, i64>,
    /// Of the cases past notification, the share the seller refuted (`null`: none yet).
    refutation_rate: Option<f64>,
    /// Median seconds from a case's opening to its enforcement (`null`: none enforced).
    median_secs_to_enforcement: Option<f64>,
    /// Penalties in force by kind.
    penalties_by_kind: BTreeMap<String, i64>,
}

/// `GET /v1/staff/stats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// Listings stored.
    listings: i64,
    /// Review tasks by state.
    tasks: TaskCounts,
    /// Gold tasks.
    gold_tasks: i64,
    /// Volunteers whose votes stopped counting.
    volunteers_not_counting: i64,
    /// Collusion flags not yet looked into.
    collusion_flags_open: i64,
    /// Votes ever cast (retention does not lower it).
    votes: i64,
    /// Decisions by outcome.
    decisions: DecisionCounts,
    /// Escalations by status.
    escalations: EscalationCounts,
    /// Leases Redis tracks (`null` when Redis did not answer).
    leases_tracked: Option<u64>,
    /// Live and expired leases.
    leases: Leases,
    /// Votes beyond what their task asked for (should stay 0), as the
    /// coordinators' last check (every 5 s) found them.
    votes_over_collected: i64,
    /// Outbox rows not yet published.
    outbox_unsent: i64,
    /// Age of the oldest of them, in seconds (the same as `outbox_lag_secs`).
    outbox_oldest_secs: f64,
    /// Age of the oldest of them, in seconds.
    outbox_lag_secs: f64,
    /// The dead-letter queues (`null` when the broker did not answer).
    dead_lettered: Option<DeadLettered>,
    /// Slot offers this replica holds for claims.
    offers_buffered_here: usize,
    /// The latest capacity measurement (`null` before the first).
    capacity: Option<CapacityNow>,
    /// Cases, refutations and penalties.
    enforcement: EnforcementFigures,
}

/// `GET /v1/staff/stats`.
#[utoipa::path(get, path = "/v1/staff/stats", responses(
    (status = 200, description = "The operating figures of the moment.", body = Stats),
))]
pub async fn stats(State(state): State<AppState>, Staff(_): Staff) -> ApiResult<Json<Stats>> {
    // What grows with the history comes from the running counts the
    // coordinators keep (a total up to a mark, plus the rows since it).
    let running = spotcheck_platform::figures::running_counts(
        &state.pool,
        &[
            "listings",
            "review_tasks",
            "votes",
            "decisions_genuine",
            "decisions_counterfeit",
            "decisions_uncertain",
            "escalations_confirmed",
            "escalations_dismissed",
        ],
    )
    .await?;
    let count = |name: &str| running.get(name).copied().unwrap_or(0);
    let tasks =
        spotcheck_platform::figures::task_figures(&state.pool, count("review_tasks")).await?;
    let small: SmallCounts = sqlx::query_as(
        "SELECT (SELECT count(*) FROM volunteer_reliability WHERE NOT counting)
                    AS volunteers_not_counting,
                (SELECT count(*) FROM collusion_flags WHERE status = 'open') AS collusion_flags_open,
                (SELECT count(*) FROM escalations WHERE status = 'open') AS escalations_open",
    )
    .fetch_one(&state.pool)
    .await?;
    let tracked = state.leases.tracked().await.ok();
    let expired = state.leases.expired_count().await.ok();
    // As the coordinators' last check left it: a staff page must not recount
    // the votes of the last seconds on every load.
    let over = spotcheck_platform::figures::over_collected_as_checked(&state.pool).await?;
    let figures = spotcheck_platform::figures::db_figures_with(&state.pool, over).await?;
    let dead_lettered =
        match spotcheck_platform::figures::dead_letter_depths(&state.amqp, &state.names).await {
            Ok(depths) => Some(DeadLettered {
                total: depths.iter().map(|(_, n)| u64::from(*n)).sum(),
                by_queue: depths.into_iter().collect(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the dead-letter queues");
                None
            }
        };
    let capacity: Option<(
        serde_json::Value,
        serde_json::Value,
        Option<f64>,
        DateTime<Utc>,
    )> = sqlx::query_as(
        "SELECT capacity, throttle, backlog_hours, updated_at FROM capacity_state WHERE id = 1",
    )
    .fetch_optional(&state.pool)
    .await?;
    let capacity = capacity.map(|(measured, throttle, hours, at)| {
        let measured: Capacity = serde_json::from_value(measured).unwrap_or_default();
        CapacityNow {
            backlog_votes: measured.open_votes,
            votes_per_hour: measured.votes_per_hour(),
            backlog_hours: hours,
            throttle: serde_json::from_value(throttle).unwrap_or_else(|_| Throttle::none()),
            measured_at: at,
        }
    });
    let enforcement = spotcheck_platform::enforcement::figures(&state.pool).await?;
    Ok(Json(Stats {
        listings: count("listings"),
        tasks: TaskCounts {
            total: tasks.review,
            open: tasks.review_open,
            decided: tasks.review_decided(),
            escalated: tasks.escalated,
            votes_still_needed: tasks.votes_still_needed,
        },
        gold_tasks: tasks.gold,
        volunteers_not_counting: small.volunteers_not_counting,
        collusion_flags_open: small.collusion_flags_open,
        votes: count("votes"),
        decisions: DecisionCounts {
            genuine: count("decisions_genuine"),
            counterfeit: count("decisions_counterfeit"),
            uncertain: count("decisions_uncertain"),
        },
        escalations: EscalationCounts {
            open: small.escalations_open,
            confirmed: count("escalations_confirmed"),
            dismissed: count("escalations_dismissed"),
        },
        leases_tracked: tracked,
        leases: Leases {
            live: tracked.zip(expired).map(|(t, e)| t.saturating_sub(e)),
            expired_awaiting_reaper: expired,
        },
        votes_over_collected: figures.over_collected,
        outbox_unsent: figures.outbox_unsent,
        outbox_oldest_secs: figures.outbox_lag_secs,
        outbox_lag_secs: figures.outbox_lag_secs,
        dead_lettered,
        offers_buffered_here: state.offers.len(),
        capacity,
        enforcement: serde_json::from_value(enforcement).map_err(anyhow::Error::from)?,
    }))
}
