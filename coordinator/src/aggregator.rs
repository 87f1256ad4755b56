//! Aggregation: when a task has its votes, decide it once, and escalate a
//! counterfeit majority to staff, all in one transaction.

use crate::consumer::Handled;
use lapin::message::Delivery;
use spotcheck_shared::aggregate::majority;
use spotcheck_shared::messages::{VoteRecorded, decode};
use spotcheck_shared::{EscalationId, Outcome, TaskId, Verdict};
use sqlx::PgPool;

/// What looking at a task came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The task still waits for votes.
    Pending,
    /// Already decided earlier (a redelivery): nothing changed.
    AlreadyDecided,
    /// Decided now with this outcome.
    Decided(Outcome),
}

/// Decides `task` if it has all its votes. Idempotent: safe on any redelivery.
pub async fn decide(pool: &PgPool, task: TaskId) -> anyhow::Result<Decision> {
    let mut tx = pool.begin().await?;
    let row: Option<(String, i32, i32, String)> = sqlx::query_as(
        "SELECT state, votes_required, votes_counted, listing_id FROM tasks WHERE id = $1 FOR UPDATE",
    )
    .bind(task.0)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((state, required, counted, listing_id)) = row else {
        anyhow::bail!("vote event for unknown task {task}");
    };
    if state != "open" {
        return Ok(Decision::AlreadyDecided);
    }
    if counted < required {
        return Ok(Decision::Pending);
    }
    let verdicts: Vec<(String,)> = sqlx::query_as("SELECT verdict FROM votes WHERE task_id = $1")
        .bind(task.0)
        .fetch_all(&mut *tx)
        .await?;
    let verdicts: Vec<Verdict> = verdicts.iter().filter_map(|(v,)| v.parse().ok()).collect();
    let outcome = majority(&verdicts);
    let tally = serde_json::json!({
        "genuine": verdicts.iter().filter(|v| **v == Verdict::Genuine).count(),
        "counterfeit": verdicts.iter().filter(|v| **v == Verdict::Counterfeit).count(),
        "unsure": verdicts.iter().filter(|v| **v == Verdict::Unsure).count(),
    });
    sqlx::query("INSERT INTO decisions (task_id, outcome, tally) VALUES ($1, $2, $3) ON CONFLICT (task_id) DO NOTHING")
        .bind(task.0)
        .bind(outcome.as_str())
        .bind(tally)
        .execute(&mut *tx)
        .await?;
    let state = if outcome.escalates() {
        "escalated"
    } else {
        "decided"
    };
    sqlx::query("UPDATE tasks SET state = $2, decided_at = now() WHERE id = $1")
        .bind(task.0)
        .bind(state)
        .execute(&mut *tx)
        .await?;
    if outcome.escalates() {
        sqlx::query(
            "INSERT INTO escalations (id, task_id, listing_id, reason) VALUES ($1, $2, $3, 'counterfeit_majority')
             ON CONFLICT ON CONSTRAINT escalations_task_key DO NOTHING",
        )
        .bind(EscalationId::new().0)
        .bind(task.0)
        .bind(&listing_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    metrics::counter!("spotcheck_decisions_total", "outcome" => outcome.as_str()).increment(1);
    tracing::debug!(task.id = %task, outcome = outcome.as_str(), "task decided");
    Ok(Decision::Decided(outcome))
}

/// Handles one vote event.
pub async fn handle(pool: &PgPool, delivery: Delivery) -> (Delivery, Handled) {
    let event: VoteRecorded = match decode(&delivery.data) {
        Ok(event) => event,
        Err(e) => {
            return (
                delivery,
                Handled::DeadLetter(format!("malformed vote event: {e}")),
            );
        }
    };
    match decide(pool, event.task_id).await {
        Ok(_) => (delivery, Handled::Ack),
        Err(e) => (delivery, Handled::Retry(e)),
    }
}
