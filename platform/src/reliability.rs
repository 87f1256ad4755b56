//! Volunteer reliability in PostgreSQL: the confusion estimate, the figures the
//! abuse rules judge, and whether a volunteer's votes count. Both binaries use
//! it: the coordinator applies gold answers, vote pace and agreement with
//! decided audit tasks, worker-api applies staff outcomes and reinstatements.

use spotcheck_shared::Verdict;
use spotcheck_shared::abuse::{AbusePolicy, AbuseReason, SOFT_STOP_MARGIN, VolunteerStats};
use spotcheck_shared::agreement::{AgreementParams, AgreementUpdate};
use spotcheck_shared::reliability::{Confusion, ReliabilityPrior};
use sqlx::PgConnection;
use uuid::Uuid;

/// Votes kept in the pace window: past this many, both pace counts are halved,
/// so the speed rule judges recent behaviour.
pub const PACE_WINDOW: u32 = 50;

/// One volunteer's stored reliability.
#[derive(Debug, Clone, PartialEq)]
pub struct Reliability {
    /// The confusion estimate.
    pub confusion: Confusion,
    /// What the abuse rules look at.
    pub stats: VolunteerStats,
    /// Whether their votes carry weight.
    pub counting: bool,
}

/// Locks and reads a volunteer's row (a newcomer's prior when there is none).
pub async fn lock(
    conn: &mut PgConnection,
    volunteer: Uuid,
    prior: &ReliabilityPrior,
) -> sqlx::Result<Reliability> {
    sqlx::query(
        "INSERT INTO volunteer_reliability (volunteer_id, confusion, stats)
         VALUES ($1, $2, $3) ON CONFLICT (volunteer_id) DO NOTHING",
    )
    .bind(volunteer)
    .bind(serde_json::to_value(Confusion::prior(prior)).expect("serializable"))
    .bind(serde_json::to_value(VolunteerStats::default()).expect("serializable"))
    .execute(&mut *conn)
    .await?;
    let (confusion, stats, counting): (serde_json::Value, serde_json::Value, bool) =
        sqlx::query_as(
            "SELECT confusion, stats, counting FROM volunteer_reliability
             WHERE volunteer_id = $1 FOR UPDATE",
        )
        .bind(volunteer)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Reliability {
        confusion: serde_json::from_value(confusion).unwrap_or_else(|_| Confusion::prior(prior)),
        stats: serde_json::from_value(stats).unwrap_or_default(),
        counting,
    })
}

/// Writes the row back; when `stop` is set and the volunteer still counts, they
/// stop counting and are flagged to staff with the reason.
pub async fn store(
    conn: &mut PgConnection,
    volunteer: Uuid,
    r: &Reliability,
    stop: Option<AbuseReason>,
) -> sqlx::Result<()> {
    let stop = stop.filter(|_| r.counting);
    sqlx::query(
        "UPDATE volunteer_reliability SET confusion = $2, stats = $3, updated_at = now(),
             counting = counting AND NOT $4,
             flag = CASE WHEN $4 THEN $5 ELSE flag END,
             flagged_at = CASE WHEN $4 THEN now() ELSE flagged_at END
         WHERE volunteer_id = $1",
    )
    .bind(volunteer)
    .bind(serde_json::to_value(r.confusion).expect("serializable"))
    .bind(serde_json::to_value(r.stats).expect("serializable"))
    .bind(stop.is_some())
    .bind(stop.map(AbuseReason::as_str))
    .execute(&mut *conn)
    .await?;
    if let Some(reason) = stop {
        metrics::counter!("spotcheck_volunteers_stopped_total", "reason" => reason.as_str())
            .increment(1);
        tracing::warn!(volunteer.id = %volunteer, reason = reason.as_str(), "volunteer stopped counting");
        audit_stops(conn, &[(volunteer, reason)]).await?;
    }
    Ok(())
}

/// The knobs of reliability learning and abuse detection.
#[derive(Debug, Clone)]
pub struct Learning {
    /// The newcomer's prior.
    pub prior: ReliabilityPrior,
    /// The abuse thresholds.
    pub abuse: AbusePolicy,
    /// Nats above the gold tests' bar at which the same tests on the whole
    /// confusion estimate stop a volunteer ([`AbusePolicy::assess_with`]).
    pub soft_margin: f64,
}

impl Default for Learning {
    /// The learned settings ([`AbusePolicy::learned`], [`SOFT_STOP_MARGIN`]).
    fn default() -> Self {
        Learning {
            prior: ReliabilityPrior::default(),
            abuse: AbusePolicy::learned(),
            soft_margin: SOFT_STOP_MARGIN,
        }
    }
}

/// A vote being accounted: id, volunteer, verdict, seconds taken, gold answer.
type AccountedRow = (Uuid, Uuid, String, Option<f64>, Option<String>);

/// Applies each vote of `votes` to its volunteer, exactly once (a vote already
/// accounted is skipped): its pace (was it fast?) and, on a gold task, the
/// known answer (confusion and gold tallies, "unsure" told from wrong), else
/// the verdict (how often they say "unsure"); then the abuse rules, on the
/// gold tallies and on the whole confusion estimate. Votes and
/// volunteers are locked in id order, so concurrent batches cannot deadlock,
/// and the whole batch is a fixed handful of statements. Runs in the caller's
/// transaction; returns the volunteers the abuse rules stopped now.
///
/// `votes` are (vote id, task id) pairs: the task is the votes' partition key,
/// so each vote is one primary-key probe of one partition. By id alone every
/// partition is searched, and a partition whose statistics lag its growth is
/// read whole (16 ms a batch of 124 votes under load, a third of a core).
pub async fn account_votes(
    conn: &mut PgConnection,
    votes: &[(Uuid, Uuid)],
    learning: &Learning,
) -> sqlx::Result<Vec<(Uuid, AbuseReason)>> {
    let (ids, tasks): (Vec<Uuid>, Vec<Uuid>) = votes.iter().copied().unzip();
    let mut rows: Vec<AccountedRow> = sqlx::query_as(
        "WITH due AS (SELECT v.id, v.task_id FROM votes v
                        JOIN unnest($1::uuid[], $2::uuid[]) AS c(id, task_id)
                          ON v.id = c.id AND v.task_id = c.task_id
                      WHERE v.accounted_at IS NULL ORDER BY v.id FOR UPDATE OF v)
         UPDATE votes v SET accounted_at = now() FROM due
         WHERE v.id = due.id AND v.task_id = due.task_id
         RETURNING v.id, v.volunteer_id, v.verdict, v.seconds_taken,
                   (SELECT g.answer FROM gold_answers g WHERE g.task_id = v.task_id)",
    )
    .bind(&ids)
    .bind(&tasks)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    rows.sort_by_key(|r| r.0);
    let mut volunteers: Vec<Uuid> = rows.iter().map(|r| r.1).collect();
    volunteers.sort_unstable();
    volunteers.dedup();
    let mut locked = lock_many(conn, &volunteers, &learning.prior).await?;
    for (_, volunteer, verdict, seconds, gold) in &rows {
        let Some(r) = locked.get_mut(volunteer) else {
            continue;
        };
        let verdict: Verdict = verdict.parse().unwrap_or(Verdict::Unsure);
        if let Some(secs) = seconds {
            let stats = &mut r.stats;
            if stats.recent_votes >= PACE_WINDOW {
                stats.recent_votes /= 2;
                stats.recent_fast_votes /= 2;
            }
            stats.recent_votes += 1;
            stats.recent_fast_votes += u32::from(learning.abuse.is_fast(*secs));
        }
        if let Some(answer) = gold {
            let truth = answer == "counterfeit";
            let right = verdict == expected_verdict(truth);
            r.confusion.observe(truth, verdict, 1.0);
            r.stats.record_gold_answer(truth, verdict);
            metrics::counter!("spotcheck_gold_answers_total", "correct" => right.to_string())
                .increment(1);
        } else {
            r.stats.record_vote(verdict);
        }
    }
    let mut accounted: std::collections::HashMap<Uuid, i64> = std::collections::HashMap::new();
    for row in &rows {
        *accounted.entry(row.1).or_default() += 1;
    }
    let mut stopped = Vec::new();
    let mut updates = Vec::with_capacity(volunteers.len());
    for id in &volunteers {
        let r = &locked[id];
        let stop = learning
            .abuse
            .assess_with(
                &r.stats,
                &r.confusion,
                &learning.prior,
                learning.soft_margin,
            )
            .filter(|_| r.counting);
        if let Some(reason) = stop {
            metrics::counter!("spotcheck_volunteers_stopped_total", "reason" => reason.as_str())
                .increment(1);
            tracing::warn!(volunteer.id = %id, reason = reason.as_str(), "volunteer stopped counting");
            stopped.push((*id, reason));
        }
        updates.push((*id, r, stop, accounted[id]));
    }
    store_many(conn, &updates).await?;
    audit_stops(conn, &stopped).await?;
    Ok(stopped)
}

/// Applies agreement updates (of any number of decided audit tasks) to their
/// voters' confusion estimates: rows locked in id order, each update trimmed
/// to the room its voter's cap leaves ([`AgreementUpdate::apply`]), in the
/// caller's transaction, which also writes the decisions, so each task teaches
/// once. Returns the agreement weight added in all.
pub async fn apply_agreement(
    conn: &mut PgConnection,
    updates: &[AgreementUpdate<Uuid>],
    params: &AgreementParams,
    prior: &ReliabilityPrior,
) -> sqlx::Result<f64> {
    if updates.is_empty() {
        return Ok(0.0);
    }
    let mut volunteers: Vec<Uuid> = updates.iter().map(|u| u.voter).collect();
    volunteers.sort_unstable();
    volunteers.dedup();
    let mut locked = lock_many(conn, &volunteers, prior).await?;
    let mut added = 0.0;
    for update in updates {
        if let Some(r) = locked.get_mut(&update.voter) {
            added += update.apply(&mut r.confusion, params);
        }
    }
    let rows: Vec<Update<'_>> = volunteers
        .iter()
        .filter_map(|id| locked.get(id).map(|r| (*id, r, None, 0)))
        .collect();
    store_many(conn, &rows).await?;
    Ok(added)
}

/// Locks and reads the rows of `volunteers` (sorted), creating newcomers' rows.
async fn lock_many(
    conn: &mut PgConnection,
    volunteers: &[Uuid],
    prior: &ReliabilityPrior,
) -> sqlx::Result<std::collections::HashMap<Uuid, Reliability>> {
    sqlx::query(
        "INSERT INTO volunteer_reliability (volunteer_id, confusion, stats)
         SELECT id, $2, $3 FROM unnest($1::uuid[]) AS id ORDER BY id
         ON CONFLICT (volunteer_id) DO NOTHING",
    )
    .bind(volunteers)
    .bind(serde_json::to_value(Confusion::prior(prior)).expect("serializable"))
    .bind(serde_json::to_value(VolunteerStats::default()).expect("serializable"))
    .execute(&mut *conn)
    .await?;
    let rows: Vec<(Uuid, serde_json::Value, serde_json::Value, bool)> = sqlx::query_as(
        "SELECT volunteer_id, confusion, stats, counting FROM volunteer_reliability
         WHERE volunteer_id = ANY($1) ORDER BY volunteer_id FOR UPDATE",
    )
    .bind(volunteers)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, confusion, stats, counting)| {
            let r = Reliability {
                confusion: serde_json::from_value(confusion)
                    .unwrap_or_else(|_| Confusion::prior(prior)),
                stats: serde_json::from_value(stats).unwrap_or_default(),
                counting,
            };
            (id, r)
        })
        .collect())
}

/// Writes rows back in one statement; a `Some` stop stops that volunteer and
/// flags them to staff with the reason.
/// One volunteer's row to write back: id, reliability, a stop, and votes to add
/// to `votes_total`.
type Update<'a> = (Uuid, &'a Reliability, Option<AbuseReason>, i64);

async fn store_many(conn: &mut PgConnection, updates: &[Update<'_>]) -> sqlx::Result<()> {
    let ids: Vec<Uuid> = updates.iter().map(|u| u.0).collect();
    let added: Vec<i64> = updates.iter().map(|u| u.3).collect();
    let confusions: Vec<serde_json::Value> = updates
        .iter()
        .map(|u| serde_json::to_value(u.1.confusion).expect("serializable"))
        .collect();
    let stats: Vec<serde_json::Value> = updates
        .iter()
        .map(|u| serde_json::to_value(u.1.stats).expect("serializable"))
        .collect();
    let stops: Vec<bool> = updates.iter().map(|u| u.2.is_some()).collect();
    let flags: Vec<Option<&str>> = updates
        .iter()
        .map(|u| u.2.map(AbuseReason::as_str))
        .collect();
    sqlx::query(
        "UPDATE volunteer_reliability r SET confusion = c.confusion, stats = c.stats,
             updated_at = now(), counting = r.counting AND NOT c.stop,
             flag = CASE WHEN c.stop THEN c.flag ELSE r.flag END,
             flagged_at = CASE WHEN c.stop THEN now() ELSE r.flagged_at END,
             votes_total = r.votes_total + c.added
         FROM unnest($1::uuid[], $2::jsonb[], $3::jsonb[], $4::bool[], $5::text[], $6::bigint[])
              AS c(id, confusion, stats, stop, flag, added)
         WHERE r.volunteer_id = c.id",
    )
    .bind(&ids)
    .bind(&confusions)
    .bind(&stats)
    .bind(&stops)
    .bind(&flags)
    .bind(&added)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The verdict that is right for a truth.
pub fn expected_verdict(counterfeit: bool) -> Verdict {
    if counterfeit {
        Verdict::Counterfeit
    } else {
        Verdict::Genuine
    }
}

/// Applies a staff outcome (the truth of a task's listing) to the reliability
/// of every volunteer who voted on it, each vote once. Volunteers are locked in
/// id order so concurrent calls cannot deadlock. Returns the votes scored.
pub async fn score_outcome(
    conn: &mut PgConnection,
    task: Uuid,
    counterfeit: bool,
    learning: &Learning,
) -> sqlx::Result<u64> {
    let votes: Vec<(Uuid, String)> = sqlx::query_as(
        "UPDATE votes SET scored_at = now()
         WHERE task_id = $1 AND scored_at IS NULL
         RETURNING volunteer_id, verdict",
    )
    .bind(task)
    .fetch_all(&mut *conn)
    .await?;
    let mut votes = votes;
    votes.sort();
    for (volunteer, verdict) in &votes {
        let mut r = lock(conn, *volunteer, &learning.prior).await?;
        r.confusion
            .observe(counterfeit, verdict.parse().unwrap_or(Verdict::Unsure), 1.0);
        store(conn, *volunteer, &r, None).await?;
    }
    Ok(votes.len() as u64)
}

/// Corrects a staff outcome applied before (`was` counterfeit or not) to the
/// truth learned later (`now`): each vote already scored on the task is taken
/// back at the old truth and counted at the new one. Returns the votes rescored.
pub async fn rescore_outcome(
    conn: &mut PgConnection,
    task: Uuid,
    was: bool,
    now: bool,
    learning: &Learning,
) -> sqlx::Result<u64> {
    if was == now {
        return Ok(0);
    }
    let mut votes: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT volunteer_id, verdict FROM votes WHERE task_id = $1 AND scored_at IS NOT NULL",
    )
    .bind(task)
    .fetch_all(&mut *conn)
    .await?;
    votes.sort();
    for (volunteer, verdict) in &votes {
        let column = match verdict.parse().unwrap_or(Verdict::Unsure) {
            Verdict::Genuine => 0,
            Verdict::Counterfeit => 1,
            Verdict::Unsure => 2,
        };
        let mut r = lock(conn, *volunteer, &learning.prior).await?;
        // The answer moves from the old truth's row to the new one's.
        let counts = &mut r.confusion.counts;
        counts[usize::from(was)][column] = (counts[usize::from(was)][column] - 1.0).max(0.0);
        counts[usize::from(now)][column] += 1.0;
        store(conn, *volunteer, &r, None).await?;
    }
    Ok(votes.len() as u64)
}

/// Audits volunteers stopped from counting (an automatic action: no actor).
async fn audit_stops(conn: &mut PgConnection, stopped: &[(Uuid, AbuseReason)]) -> sqlx::Result<()> {
    if stopped.is_empty() {
        return Ok(());
    }
    let subjects: Vec<String> = stopped.iter().map(|(id, _)| format!("user:{id}")).collect();
    let reasons: Vec<&str> = stopped.iter().map(|(_, r)| r.as_str()).collect();
    sqlx::query(
        "INSERT INTO audit_log (actor_id, action, subject, old, new)
         SELECT NULL, 'volunteer.stop_counting', s, '{\"counting\": true}'::jsonb,
                jsonb_build_object('counting', false, 'reason', r)
         FROM unnest($1::text[], $2::text[]) AS u(s, r)",
    )
    .bind(&subjects)
    .bind(&reasons)
    .execute(conn)
    .await?;
    Ok(())
}
