//! Aggregation, in batches: the vote events that arrived together are first
//! accounted to their volunteers (pace, gold answers, abuse rules) in one
//! transaction, then every task they touch that has the votes it asked for is
//! judged in a second one: a decision and maybe an escalation, or one more
//! vote slot. The first locks votes, then volunteers; the second tasks, then
//! (for decided audit tasks) their voters, each in id order.
//!
//! What the votes come to is [`DecisionRule::judge_with`], the pure function
//! the simulation calls too, with the task's difficulty. A keyed share of
//! tasks are audit tasks ([`AgreementParams::is_audit_task`]): they take at
//! least `audit_votes` counting votes, and once decided their first ones (in
//! the order cast) teach their voters' confusion estimates by agreement, in
//! the transaction that writes the decision. Exactly one decision per task,
//! and so one lesson, whatever the redelivery: task rows are locked (in id
//! order) and decided only while open.

use crate::consumer::Handled;
use lapin::message::Delivery;
use spotcheck_platform::outbox;
use spotcheck_platform::reliability::{self, Learning};
use spotcheck_platform::standing::StandingCache;
use spotcheck_shared::agreement::{
    AgreementParams, AgreementUpdate, AgreementVote, agreement_updates,
};
use spotcheck_shared::decision::{DecisionRule, Judgement, TaskFacts, WeighedVote};
use spotcheck_shared::difficulty::DifficultyRule;
use spotcheck_shared::messages::{VoteRecorded, decode_votes};
use spotcheck_shared::reliability::Confusion;
use spotcheck_shared::{EscalationId, Outcome, TaskId, Verdict};
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

/// Everything the aggregator needs besides the database.
#[derive(Debug, Clone)]
pub struct Aggregation {
    /// How tasks are decided.
    pub rule: DecisionRule,
    /// How disagreement among careful voters asks for more votes.
    pub difficulty: DifficultyRule,
    /// Audit tasks and learning from agreement (`None`: gold and staff only).
    pub audit: Option<Audit>,
    /// Reliability learning and abuse rules.
    pub learning: Learning,
}

/// Audit tasks: which they are, how they are decided, what they teach.
#[derive(Clone)]
pub struct Audit {
    /// The share of audit tasks, their votes and the agreement guards.
    pub params: AgreementParams,
    /// Secret of the keyed draw that makes a task an audit task.
    pub key: Vec<u8>,
    /// The rule audit tasks are decided by (at least `audit_votes` votes).
    pub rule: DecisionRule,
    /// The prior P(counterfeit) of the soft labels.
    pub prior: f64,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("params", &self.params)
            .field("key", &"<redacted>")
            .field("rule", &self.rule)
            .field("prior", &self.prior)
            .finish()
    }
}

impl Audit {
    /// Whether `task` is an audit task.
    pub fn covers(&self, task: Uuid) -> bool {
        self.params.is_audit_task(&self.key, task.as_bytes())
    }
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

type TaskRow = (Uuid, String, String, i32, i32, String, String, f64);

/// A vote of a ready task: task, voter, verdict, their confusion and whether they count.
type VoteRow = (Uuid, Uuid, String, Option<serde_json::Value>, Option<bool>);

/// A task judged in this batch.
struct Judged {
    task: Uuid,
    listing_id: String,
    judgement: Judgement,
    tally: serde_json::Value,
}

/// Judges every task of `tasks` that has all the votes it asked for, in one
/// transaction. Idempotent: safe on any redelivery.
pub async fn decide_many(
    pool: &PgPool,
    agg: &Aggregation,
    tasks: &[TaskId],
) -> anyhow::Result<HashMap<TaskId, Decision>> {
    let mut ids: Vec<Uuid> = tasks.iter().map(|t| t.0).collect();
    ids.sort_unstable();
    ids.dedup();
    // First without locks: most tasks of a batch still wait for votes, and
    // locking them would queue the vote writers counting on them behind us.
    let seen: Vec<(Uuid, String, String, i32, i32)> = sqlx::query_as(
        "SELECT id, state, kind, votes_required, votes_counted FROM tasks WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut decisions: HashMap<TaskId, Decision> = HashMap::new();
    let mut candidates: Vec<Uuid> = Vec::new();
    for (id, state, kind, required, counted) in seen {
        if state != "open" || kind == "gold" {
            decisions.insert(TaskId(id), Decision::AlreadyDecided);
        } else if counted < required {
            decisions.insert(TaskId(id), Decision::Pending);
        } else {
            candidates.push(id);
        }
    }
    if candidates.is_empty() {
        return Ok(decisions);
    }
    // Then the ready ones, locked in id order and checked again under the lock.
    let mut tx = pool.begin().await?;
    // By id only: conditions on state and kind would match the partial indexes
    // of open and of review tasks, and the planner has been seen to AND those
    // (tens of thousands of rows) instead of looking the ids up.
    let locked: Vec<TaskRow> = sqlx::query_as(
        "SELECT t.id, t.state, t.kind, t.votes_required, t.votes_counted, t.listing_id,
                l.seller_risk_tier, l.price
         FROM tasks t JOIN listings l ON l.listing_id = t.listing_id
         WHERE t.id = ANY($1) ORDER BY t.id FOR UPDATE OF t",
    )
    .bind(&candidates)
    .fetch_all(&mut *tx)
    .await?;
    let ready: Vec<TaskRow> = locked
        .into_iter()
        .filter(|r| r.1 == "open" && r.2 == "review" && r.4 >= r.3)
        .collect();
    for id in candidates {
        // Judged meanwhile by another aggregator (decided, or given one more slot).
        if !ready.iter().any(|r| r.0 == id) {
            decisions.insert(TaskId(id), Decision::AlreadyDecided);
        }
    }
    if ready.is_empty() {
        return Ok(decisions);
    }
    let ready_ids: Vec<Uuid> = ready.iter().map(|r| r.0).collect();
    // In the order cast: an audit task's first counting votes teach.
    let votes: Vec<VoteRow> = sqlx::query_as(
        "SELECT v.task_id, v.volunteer_id, v.verdict, r.confusion, r.counting
         FROM votes v LEFT JOIN volunteer_reliability r ON r.volunteer_id = v.volunteer_id
         WHERE v.task_id = ANY($1) ORDER BY v.created_at, v.id",
    )
    .bind(&ready_ids)
    .fetch_all(&mut *tx)
    .await?;
    // A volunteer without a row yet is a newcomer: the prior confusion.
    let newcomer = Confusion::prior(&agg.learning.prior);
    let mut by_task: HashMap<Uuid, Vec<(Uuid, WeighedVote)>> = HashMap::new();
    for (task, voter, verdict, confusion, counting) in votes {
        let confusion = match (confusion, counting) {
            (_, Some(false)) => None,
            (Some(c), _) => Some(serde_json::from_value(c).unwrap_or(newcomer)),
            (None, _) => Some(newcomer),
        };
        let vote = WeighedVote {
            verdict: verdict.parse().unwrap_or(Verdict::Unsure),
            confusion,
        };
        by_task.entry(task).or_default().push((voter, vote));
    }
    let mut more: Vec<TaskId> = Vec::new();
    let mut judged: Vec<Judged> = Vec::new();
    let mut lessons: Vec<AgreementUpdate<Uuid>> = Vec::new();
    for (id, _, _, required, _, listing_id, tier, price) in ready {
        let cast = by_task.remove(&id).unwrap_or_default();
        let votes: Vec<WeighedVote> = cast.iter().map(|(_, v)| *v).collect();
        let facts = TaskFacts {
            slots: required.max(0) as u32,
            seller_risk_tier: &tier,
            price,
        };
        let audit = agg.audit.as_ref().filter(|a| a.covers(id));
        let rule = audit.map_or(&agg.rule, |a| &a.rule);
        let judgement = rule.judge_with(&votes, facts, &agg.difficulty);
        if let (Some(audit), Judgement::Decided { .. }) = (audit, judgement) {
            lessons.extend(lessons_of(audit, &cast));
        }
        match judgement {
            Judgement::MoreVotes { posterior } => {
                tracing::debug!(task.id = %id, posterior, "asking for another vote");
                more.push(TaskId(id));
                decisions.insert(TaskId(id), Decision::MoreVotes);
            }
            Judgement::Decided { outcome, .. } => {
                decisions.insert(TaskId(id), Decision::Decided(outcome));
                judged.push(Judged {
                    task: id,
                    listing_id,
                    judgement,
                    tally: tally(&votes),
                });
            }
        }
    }
    if !more.is_empty() {
        let more_ids: Vec<Uuid> = more.iter().map(|t| t.0).collect();
        sqlx::query("UPDATE tasks SET votes_required = votes_required + 1 WHERE id = ANY($1)")
            .bind(&more_ids)
            .execute(&mut *tx)
            .await?;
        outbox::offer_slots(&mut tx, &more, 1).await?;
    }
    write_decisions(&mut tx, &judged).await?;
    if let Some(audit) = &agg.audit {
        let added =
            reliability::apply_agreement(&mut tx, &lessons, &audit.params, &agg.learning.prior)
                .await?;
        if added > 0.0 {
            tracing::debug!(updates = lessons.len(), added, "agreement taught");
        }
    }
    tx.commit().await?;
    metrics::counter!("spotcheck_agreement_updates_total").increment(lessons.len() as u64);
    metrics::counter!("spotcheck_extra_votes_total").increment(more.len() as u64);
    for j in &judged {
        if let Judgement::Decided { outcome, .. } = j.judgement {
            metrics::counter!("spotcheck_decisions_total", "outcome" => outcome.as_str())
                .increment(1);
        }
    }
    Ok(decisions)
}

/// What a decided audit task teaches: the agreement updates of its first
/// `audit_votes` counting votes in the order cast (`cast`), each with its
/// voter's estimate as it was before the decision.
fn lessons_of(audit: &Audit, cast: &[(Uuid, WeighedVote)]) -> Vec<AgreementUpdate<Uuid>> {
    let first: Vec<AgreementVote<Uuid>> = cast
        .iter()
        .filter_map(|(voter, v)| {
            v.confusion.map(|confusion| AgreementVote {
                voter: *voter,
                verdict: v.verdict,
                confusion,
            })
        })
        .take(audit.params.audit_votes as usize)
        .collect();
    agreement_updates(audit.prior, &first, &audit.params)
}

/// Votes per verdict, and how many weighed.
fn tally(votes: &[WeighedVote]) -> serde_json::Value {
    let count = |v: Verdict| votes.iter().filter(|w| w.verdict == v).count();
    serde_json::json!({
        "genuine": count(Verdict::Genuine),
        "counterfeit": count(Verdict::Counterfeit),
        "unsure": count(Verdict::Unsure),
        "weighing": votes.iter().filter(|w| w.confusion.is_some()).count(),
    })
}

/// Decisions, task states and escalations of the judged tasks, a statement each.
async fn write_decisions(conn: &mut sqlx::PgConnection, judged: &[Judged]) -> sqlx::Result<()> {
    if judged.is_empty() {
        return Ok(());
    }
    let mut tasks = Vec::new();
    let mut outcomes = Vec::new();
    let mut tallies = Vec::new();
    let mut posteriors = Vec::new();
    let mut states = Vec::new();
    let (mut esc_ids, mut esc_tasks, mut esc_listings, mut esc_reasons) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for j in judged {
        let Judgement::Decided {
            outcome,
            posterior,
            escalation,
        } = j.judgement
        else {
            continue;
        };
        tasks.push(j.task);
        outcomes.push(outcome.as_str());
        tallies.push(j.tally.clone());
        posteriors.push(posterior);
        states.push(if escalation.is_some() {
            "escalated"
        } else {
            "decided"
        });
        if let Some(reason) = escalation {
            esc_ids.push(EscalationId::new().0);
            esc_tasks.push(j.task);
            esc_listings.push(j.listing_id.as_str());
            esc_reasons.push(reason.as_str());
        }
    }
    sqlx::query(
        "INSERT INTO decisions (task_id, outcome, tally, posterior)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::float8[])
         ON CONFLICT (task_id) DO NOTHING",
    )
    .bind(&tasks)
    .bind(&outcomes)
    .bind(&tallies)
    .bind(&posteriors)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE tasks t SET state = c.state, decided_at = now()
         FROM unnest($1::uuid[], $2::text[]) AS c(id, state) WHERE t.id = c.id",
    )
    .bind(&tasks)
    .bind(&states)
    .execute(&mut *conn)
    .await?;
    // Automatic decisions are audited, one row each, in the same transaction.
    sqlx::query(
        "INSERT INTO audit_log (actor_id, action, subject, new)
         SELECT NULL, 'task.decide', 'task:' || t, jsonb_build_object('outcome', o, 'state', s)
         FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(t, o, s)",
    )
    .bind(&tasks)
    .bind(&outcomes)
    .bind(&states)
    .execute(&mut *conn)
    .await?;
    if !esc_ids.is_empty() {
        sqlx::query(
            "INSERT INTO escalations (id, task_id, listing_id, reason)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[])
             ON CONFLICT ON CONSTRAINT escalations_task_key DO NOTHING",
        )
        .bind(&esc_ids)
        .bind(&esc_tasks)
        .bind(&esc_listings)
        .bind(&esc_reasons)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Accounts a batch of vote events to their volunteers (one transaction), lets
/// every replica know of volunteers stopped now, then judges their tasks.
pub async fn on_votes(
    pool: &PgPool,
    agg: &Aggregation,
    standing: Option<&StandingCache>,
    events: &[VoteRecorded],
) -> anyhow::Result<HashMap<TaskId, Decision>> {
    let votes: Vec<(Uuid, Uuid)> = events.iter().map(|e| (e.vote_id, e.task_id.0)).collect();
    let mut tx = pool.begin().await?;
    let stopped = reliability::account_votes(&mut tx, &votes, &agg.learning).await?;
    tx.commit().await?;
    if let Some(standing) = standing
        && !stopped.is_empty()
    {
        let ids: Vec<Uuid> = stopped.iter().map(|(id, _)| *id).collect();
        // Not fatal: the entries expire by themselves, and the vote path reads
        // whether a voter counts from the record.
        if let Err(e) = standing.invalidate(&ids).await {
            tracing::warn!(error = %e, "could not invalidate the standing of stopped volunteers");
        }
    }
    let tasks: Vec<TaskId> = events.iter().map(|e| e.task_id).collect();
    decide_many(pool, agg, &tasks).await
}

/// Handles one vote event (as a batch of one).
pub async fn on_vote(
    pool: &PgPool,
    agg: &Aggregation,
    event: &VoteRecorded,
) -> anyhow::Result<Decision> {
    let decisions = on_votes(pool, agg, None, std::slice::from_ref(event)).await?;
    decisions
        .get(&event.task_id)
        .copied()
        .ok_or_else(|| anyhow::anyhow!("vote event for unknown task {}", event.task_id))
}

/// Handles a batch of vote events (each may name many votes): malformed ones
/// are dead-lettered, the rest acked together once their work committed (or
/// all handed back on failure).
pub async fn handle(
    pool: &PgPool,
    agg: &Aggregation,
    standing: &StandingCache,
    deliveries: Vec<Delivery>,
) -> Vec<(Delivery, Handled)> {
    let mut out = Vec::with_capacity(deliveries.len());
    let mut good: Vec<(Delivery, Vec<VoteRecorded>)> = Vec::new();
    for delivery in deliveries {
        match decode_votes(&delivery.data) {
            Ok(events) => good.push((delivery, events)),
            Err(e) => out.push((
                delivery,
                Handled::DeadLetter(format!("malformed vote event: {e}")),
            )),
        }
    }
    let events: Vec<VoteRecorded> = good.iter().flat_map(|(_, e)| e.iter().cloned()).collect();
    let result = if events.is_empty() {
        Ok(HashMap::new())
    } else {
        on_votes(pool, agg, Some(standing), &events).await
    };
    match result {
        Ok(decisions) => {
            for (delivery, events) in good {
                // An event for a task that does not exist can never be processed:
                // retried until the delivery limit dead-letters it.
                let unknown = events.iter().find(|e| !decisions.contains_key(&e.task_id));
                let handled = match unknown {
                    None => Handled::Ack,
                    Some(e) => {
                        Handled::Retry(anyhow::anyhow!("vote event for unknown task {}", e.task_id))
                    }
                };
                out.push((delivery, handled));
            }
        }
        Err(e) => {
            let e = format!("{e:#}");
            for (delivery, _) in good {
                out.push((delivery, Handled::Retry(anyhow::anyhow!("{e}"))));
            }
        }
    }
    out
}
