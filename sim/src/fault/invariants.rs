//! The invariant checker: SQL over the run's database together with the
//! simulator's record of what it was granted and acknowledged, one figure per
//! way an invariant of the design (I1 to I6) can break.

use crate::fault::ledger::{AckedVote, Ledger};
use serde::Serialize;
use sqlx::PgPool;

/// What the database holds, for progress lines and the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, sqlx::FromRow)]
pub struct Snapshot {
    /// Listings ingested.
    pub listings: i64,
    /// Tasks created.
    pub tasks: i64,
    /// Tasks still open.
    pub open: i64,
    /// Tasks decided.
    pub decided: i64,
    /// Tasks escalated.
    pub escalated: i64,
    /// Votes recorded.
    pub votes: i64,
    /// Decisions.
    pub decisions: i64,
    /// Escalations.
    pub escalations: i64,
    /// Outbox rows not yet published.
    pub outbox_unsent: i64,
}

impl Snapshot {
    /// Reads the figures.
    pub async fn read(pool: &PgPool) -> sqlx::Result<Self> {
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM listings) AS listings,
                    (SELECT count(*) FROM tasks) AS tasks,
                    (SELECT count(*) FROM tasks WHERE state = 'open') AS open,
                    (SELECT count(*) FROM tasks WHERE state = 'decided') AS decided,
                    (SELECT count(*) FROM tasks WHERE state = 'escalated') AS escalated,
                    (SELECT count(*) FROM votes) AS votes,
                    (SELECT count(*) FROM decisions) AS decisions,
                    (SELECT count(*) FROM escalations) AS escalations,
                    (SELECT count(*) FROM outbox WHERE sent_at IS NULL) AS outbox_unsent",
        )
        .fetch_one(pool)
        .await
    }
}

/// Every figure the checker computes; each one must be zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Findings {
    /// I1: tasks the simulator was granted a claim on that the database does not have.
    pub claimed_tasks_missing: i64,
    /// I1: tasks decided or escalated without a decision row.
    pub closed_without_decision: i64,
    /// I1: listings published (with confirms) that were never ingested.
    pub listings_missing: i64,
    /// I1: ingested listings without a task (every listing is sampled in a fault run).
    pub listings_without_task: i64,
    /// I2: tasks whose `votes_counted` differs from their vote rows.
    pub counted_mismatch: i64,
    /// I2: votes acknowledged with `201` whose id is not in the database.
    pub acknowledged_votes_missing: i64,
    /// I2: acknowledged vote ids recorded on another task or volunteer.
    pub acknowledged_votes_misfiled: i64,
    /// I2: (task, volunteer) pairs acknowledged with two different vote ids.
    pub pairs_acknowledged_twice: i64,
    /// I2: votes beyond what their task asked for (sum over tasks).
    pub over_collected_votes: i64,
    /// I3: (task, volunteer) pairs with more than one vote row.
    pub duplicate_pairs: i64,
    /// I4: probe votes accepted: with another volunteer's lease token, or an expired one.
    pub fence_breaches: i64,
    /// I5: escalations beyond one per task.
    pub duplicate_escalations: i64,
    /// I5: decisions beyond one per task.
    pub extra_decisions: i64,
    /// I6: tasks still open after the drain.
    pub tasks_not_decided: i64,
}

impl Findings {
    /// I1: tasks (or the listings that should have become tasks) lost.
    pub fn tasks_lost(&self) -> i64 {
        self.claimed_tasks_missing
            + self.closed_without_decision
            + self.listings_missing
            + self.listings_without_task
    }

    /// I2 and I3: votes counted twice, or acknowledged and then not counted.
    pub fn votes_double_counted(&self) -> i64 {
        self.counted_mismatch
            + self.acknowledged_votes_missing
            + self.acknowledged_votes_misfiled
            + self.pairs_acknowledged_twice
            + self.duplicate_pairs
    }

    /// One line per invariant that does not hold; empty when all hold.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut add = |n: i64, what: &str| {
            if n != 0 {
                v.push(format!("{what}: {n}"));
            }
        };
        add(self.tasks_lost(), "I1 tasks lost");
        add(self.votes_double_counted(), "I2 votes double-counted");
        add(self.over_collected_votes, "I2 over-collected votes");
        add(self.duplicate_pairs, "I3 duplicate (task, volunteer) votes");
        add(
            self.fence_breaches,
            "I4 votes accepted with another volunteer's lease token",
        );
        add(self.duplicate_escalations, "I5 duplicate escalations");
        add(self.extra_decisions, "I5 extra decisions");
        add(
            self.tasks_not_decided,
            "I6 tasks not decided after the drain",
        );
        v
    }
}

async fn count(pool: &PgPool, sql: &'static str) -> sqlx::Result<i64> {
    sqlx::query_scalar(sql).fetch_one(pool).await
}

/// Checks the database against itself, the published listings and the simulator's ledger.
pub async fn check(pool: &PgPool, published: &[String], ledger: &Ledger) -> sqlx::Result<Findings> {
    let claimed = ledger.claimed_tasks();
    let votes: Vec<AckedVote> = ledger.votes();
    let vote_ids: Vec<&str> = votes.iter().map(|v| v.vote_id.as_str()).collect();
    let vote_tasks: Vec<&str> = votes.iter().map(|v| v.task_id.as_str()).collect();
    let voters: Vec<&str> = votes.iter().map(|v| v.volunteer.as_str()).collect();

    let claimed_tasks_missing = sqlx::query_scalar(
        "SELECT count(*) FROM unnest($1::text[]) AS c(id)
         WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id::text = c.id)",
    )
    .bind(&claimed)
    .fetch_one(pool)
    .await?;
    let (listings_missing, listings_without_task): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE l.listing_id IS NULL),
                count(*) FILTER (WHERE l.listing_id IS NOT NULL
                                 AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.listing_id = p.id))
         FROM unnest($1::text[]) AS p(id) LEFT JOIN listings l ON l.listing_id = p.id",
    )
    .bind(published)
    .fetch_one(pool)
    .await?;
    let (acknowledged_votes_missing, acknowledged_votes_misfiled): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE v.id IS NULL),
                count(*) FILTER (WHERE v.id IS NOT NULL
                                 AND (v.task_id::text <> a.task_id OR u.username IS DISTINCT FROM a.volunteer))
         FROM unnest($1::text[], $2::text[], $3::text[]) AS a(vote_id, task_id, volunteer)
         LEFT JOIN votes v ON v.id::text = a.vote_id
         LEFT JOIN users u ON u.id = v.volunteer_id",
    )
    .bind(&vote_ids)
    .bind(&vote_tasks)
    .bind(&voters)
    .fetch_one(pool)
    .await?;

    Ok(Findings {
        claimed_tasks_missing,
        closed_without_decision: count(
            pool,
            "SELECT count(*) FROM tasks t WHERE t.state IN ('decided', 'escalated')
             AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.task_id = t.id)",
        )
        .await?,
        listings_missing,
        listings_without_task,
        counted_mismatch: count(
            pool,
            "SELECT count(*) FROM tasks t
             WHERE t.votes_counted <> (SELECT count(*) FROM votes v WHERE v.task_id = t.id)",
        )
        .await?,
        acknowledged_votes_missing,
        acknowledged_votes_misfiled,
        pairs_acknowledged_twice: ledger.pairs_with_two_votes() as i64,
        over_collected_votes: count(pool, spotcheck_platform::figures::OVER_COLLECTED_SQL).await?,
        fence_breaches: {
            let (stolen, expired) = ledger.probes();
            (stolen.accepted.len() + expired.accepted.len()) as i64
        },
        duplicate_pairs: count(
            pool,
            "SELECT count(*) FROM (SELECT 1 FROM votes GROUP BY task_id, volunteer_id
                                   HAVING count(*) > 1) AS d",
        )
        .await?,
        duplicate_escalations: count(
            pool,
            "SELECT count(*) - count(DISTINCT task_id) FROM escalations",
        )
        .await?,
        extra_decisions: count(
            pool,
            "SELECT count(*) - count(DISTINCT task_id) FROM decisions",
        )
        .await?,
        tasks_not_decided: count(pool, "SELECT count(*) FROM tasks WHERE state = 'open'").await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_run_violates_nothing() {
        assert!(Findings::default().violations().is_empty());
    }

    #[test]
    fn each_broken_invariant_is_named_with_its_count() {
        let f = Findings {
            listings_without_task: 2,
            claimed_tasks_missing: 1,
            acknowledged_votes_missing: 4,
            duplicate_escalations: 1,
            tasks_not_decided: 7,
            ..Findings::default()
        };
        assert_eq!((f.tasks_lost(), f.votes_double_counted()), (3, 4));
        assert_eq!(
            f.violations(),
            vec![
                "I1 tasks lost: 3",
                "I2 votes double-counted: 4",
                "I5 duplicate escalations: 1",
                "I6 tasks not decided after the drain: 7",
            ]
        );
    }
}
