//! Aggregation: account each vote to its volunteer (pace, gold answers, abuse
//! rules), then decide the task once it has the votes it asked for, in one
//! transaction: a decision and maybe an escalation, or one more vote slot.
//!
//! Adaptive mode (the default) weighs each counting vote by its volunteer's
//! confusion estimate into the posterior that the listing is counterfeit and
//! applies the stopping rule for the listing's business risk: decide, ask for
//! another vote, or escalate as uncertain. Majority mode is the fixed k-vote
//! majority the simulation compares against.

use crate::consumer::Handled;
use lapin::message::Delivery;
use spotcheck_platform::outbox;
use spotcheck_platform::reliability::{self, Learning};
use spotcheck_shared::aggregate::majority;
use spotcheck_shared::messages::{VoteRecorded, decode};
use spotcheck_shared::posterior::{RiskThresholds, Step, posterior_counterfeit};
use spotcheck_shared::reliability::Confusion;
use spotcheck_shared::{EscalationId, Outcome, TaskId, Verdict};
use sqlx::PgPool;

/// How tasks are decided.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Fixed redundancy: a strict majority of the required votes.
    Majority,
    /// Reliability-weighted posterior with a stopping rule.
    Adaptive {
        /// The prior probability that a sampled listing is counterfeit.
        prior: f64,
        /// Stopping rules by business risk.
        thresholds: RiskThresholds,
        /// Most vote slots a task may ever ask for (counting or not).
        max_slots: i32,
    },
}

/// Everything the aggregator needs besides the database.
#[derive(Debug, Clone)]
pub struct Aggregation {
    /// How tasks are decided.
    pub mode: Mode,
    /// Reliability learning and abuse rules.
    pub learning: Learning,
}

/// What looking at a task came to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// The task still waits for votes.
    Pending,
    /// Already decided earlier (a redelivery), or a gold task: nothing to decide.
    AlreadyDecided,
    /// The posterior was not confident: one more vote slot was offered.
    MoreVotes,
    /// Decided now with this outcome.
    Decided(Outcome),
}

type TaskRow = (String, String, i32, i32, String, String, f64);

/// Decides `task` if it has all the votes it asked for. Idempotent: safe on any
/// redelivery, and at most one decision per task (the row is locked).
pub async fn decide(pool: &PgPool, agg: &Aggregation, task: TaskId) -> anyhow::Result<Decision> {
    let mut tx = pool.begin().await?;
    let row: Option<TaskRow> = sqlx::query_as(
        "SELECT t.state, t.kind, t.votes_required, t.votes_counted, t.listing_id,
                l.seller_risk_tier, l.price
         FROM tasks t JOIN listings l ON l.listing_id = t.listing_id
         WHERE t.id = $1 FOR UPDATE OF t",
    )
    .bind(task.0)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((state, kind, required, counted, listing_id, tier, price)) = row else {
        anyhow::bail!("vote event for unknown task {task}");
    };
    if state != "open" || kind == "gold" {
        return Ok(Decision::AlreadyDecided);
    }
    if counted < required {
        return Ok(Decision::Pending);
    }
    let votes: Vec<(String, Option<serde_json::Value>, Option<bool>)> = sqlx::query_as(
        "SELECT v.verdict, r.confusion, r.counting
         FROM votes v LEFT JOIN volunteer_reliability r ON r.volunteer_id = v.volunteer_id
         WHERE v.task_id = $1",
    )
    .bind(task.0)
    .fetch_all(&mut *tx)
    .await?;
    let verdicts: Vec<Verdict> = votes
        .iter()
        .map(|(v, _, _)| v.parse().unwrap_or(Verdict::Unsure))
        .collect();
    let (outcome, posterior) = match &agg.mode {
        Mode::Majority => (majority(&verdicts), None),
        Mode::Adaptive {
            prior,
            thresholds,
            max_slots,
        } => {
            // A volunteer without a row yet is a newcomer: the prior confusion.
            let newcomer = Confusion::prior(&agg.learning.prior);
            let confusions: Vec<Option<Confusion>> = votes
                .iter()
                .map(|(_, c, counting)| match (c, counting) {
                    (_, Some(false)) => None,
                    (Some(c), _) => Some(serde_json::from_value(c.clone()).unwrap_or(newcomer)),
                    (None, _) => Some(newcomer),
                })
                .collect();
            let weighing = confusions.iter().filter(|c| c.is_some()).count() as u32;
            let p = posterior_counterfeit(
                *prior,
                confusions
                    .iter()
                    .map(Option::as_ref)
                    .zip(verdicts.iter().copied()),
            );
            match thresholds.rule_for(&tier, price).step(p, weighing) {
                Step::Decide(outcome) => (outcome, Some(p)),
                Step::NeedMore if required < *max_slots => {
                    sqlx::query(
                        "UPDATE tasks SET votes_required = votes_required + 1 WHERE id = $1",
                    )
                    .bind(task.0)
                    .execute(&mut *tx)
                    .await?;
                    outbox::offer_slots(&mut tx, &[task], 1).await?;
                    tx.commit().await?;
                    metrics::counter!("spotcheck_extra_votes_total").increment(1);
                    tracing::debug!(task.id = %task, posterior = p, "asked for another vote");
                    return Ok(Decision::MoreVotes);
                }
                Step::NeedMore | Step::Uncertain => (Outcome::Uncertain, Some(p)),
            }
        }
    };
    let escalates = match agg.mode {
        Mode::Majority => outcome.escalates(),
        Mode::Adaptive { .. } => outcome != Outcome::Genuine,
    };
    let tally = serde_json::json!({
        "genuine": verdicts.iter().filter(|v| **v == Verdict::Genuine).count(),
        "counterfeit": verdicts.iter().filter(|v| **v == Verdict::Counterfeit).count(),
        "unsure": verdicts.iter().filter(|v| **v == Verdict::Unsure).count(),
        "weighing": votes.iter().filter(|(_, _, counting)| *counting != Some(false)).count(),
    });
    sqlx::query(
        "INSERT INTO decisions (task_id, outcome, tally, posterior) VALUES ($1, $2, $3, $4)
         ON CONFLICT (task_id) DO NOTHING",
    )
    .bind(task.0)
    .bind(outcome.as_str())
    .bind(tally)
    .bind(posterior)
    .execute(&mut *tx)
    .await?;
    let state = if escalates { "escalated" } else { "decided" };
    sqlx::query("UPDATE tasks SET state = $2, decided_at = now() WHERE id = $1")
        .bind(task.0)
        .bind(state)
        .execute(&mut *tx)
        .await?;
    if escalates {
        let reason = match (&agg.mode, outcome) {
            (Mode::Majority, _) => "counterfeit_majority",
            (_, Outcome::Counterfeit) => "counterfeit_posterior",
            _ => "uncertain",
        };
        sqlx::query(
            "INSERT INTO escalations (id, task_id, listing_id, reason) VALUES ($1, $2, $3, $4)
             ON CONFLICT ON CONSTRAINT escalations_task_key DO NOTHING",
        )
        .bind(EscalationId::new().0)
        .bind(task.0)
        .bind(&listing_id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    metrics::counter!("spotcheck_decisions_total", "outcome" => outcome.as_str()).increment(1);
    tracing::debug!(task.id = %task, outcome = outcome.as_str(), ?posterior, "task decided");
    Ok(Decision::Decided(outcome))
}

/// Accounts the vote to its volunteer (its own transaction), then decides.
pub async fn on_vote(
    pool: &PgPool,
    agg: &Aggregation,
    event: &VoteRecorded,
) -> anyhow::Result<Decision> {
    let mut tx = pool.begin().await?;
    reliability::account_vote(&mut tx, event.vote_id, &agg.learning).await?;
    tx.commit().await?;
    decide(pool, agg, event.task_id).await
}

/// Handles one vote event.
pub async fn handle(pool: &PgPool, agg: &Aggregation, delivery: Delivery) -> (Delivery, Handled) {
    let event: VoteRecorded = match decode(&delivery.data) {
        Ok(event) => event,
        Err(e) => {
            return (
                delivery,
                Handled::DeadLetter(format!("malformed vote event: {e}")),
            );
        }
    };
    match on_vote(pool, agg, &event).await {
        Ok(_) => (delivery, Handled::Ack),
        Err(e) => (delivery, Handled::Retry(e)),
    }
}
