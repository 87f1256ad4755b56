//! Operating figures both binaries report: Prometheus metrics (one recorder
//! per process) and the queries behind the gauges and the staff stats.

use chrono::{DateTime, Utc};
use lapin::Connection;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use std::sync::OnceLock;

use crate::amqp::{Names, timed};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use.
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Only fails if another recorder is installed; then ours still renders empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// `GET /metrics` in the Prometheus text format.
pub async fn render() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        prometheus().render(),
    )
}

/// Messages waiting in each dead-letter queue, by work queue.
pub async fn dead_letter_depths(
    conn: &Connection,
    names: &Names,
) -> anyhow::Result<Vec<(String, u32)>> {
    let channel = timed("open channel", conn.create_channel()).await?;
    let mut depths = Vec::new();
    for queue in names.work_queues() {
        let dead = Names::dead_queue(&queue);
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let q = timed(
            "inspect a dead-letter queue",
            channel.queue_declare(dead.as_str().into(), passive, FieldTable::default()),
        )
        .await?;
        depths.push((queue, q.message_count()));
    }
    let _ = timed("close channel", channel.close(200, "done".into())).await;
    Ok(depths)
}

/// Votes beyond what review tasks asked for (gold tasks are answered by every
/// volunteer once, so their answers are never over-collection), over every vote
/// ever cast: the fault run's full check. The gauges and staff figures use the
/// incremental [`over_collected`].
pub const OVER_COLLECTED_SQL: &str =
    "SELECT coalesce(sum(greatest(v.n - t.votes_required, 0)), 0)::bigint
     FROM tasks t JOIN (SELECT task_id, count(*) AS n FROM votes GROUP BY task_id) v ON v.task_id = t.id
     WHERE t.kind = 'review'";

/// Database-side figures: over-collected votes and outbox backlog.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DbFigures {
    /// Votes beyond what their task asked for (should stay 0).
    pub over_collected: i64,
    /// Outbox rows not yet published.
    pub outbox_unsent: i64,
    /// Age of the oldest unpublished outbox row, in seconds.
    pub outbox_lag_secs: f64,
}

/// Votes beyond what their task asked for (I2 says 0), counted from the vote
/// rows themselves (an independent check of the counters), but only for the
/// tasks voted on since the last check: the tasks found over are kept in
/// `over_collected_tasks`, and each check recounts just the tasks its window
/// touched. Replicas take turns (the mark's row lock); the first check ever
/// reads every vote.
pub async fn over_collected(pool: &PgPool) -> sqlx::Result<i64> {
    let mut tx = pool.begin().await?;
    // The mark as a value (text: it starts at -infinity), so the statement is
    // planned for the seconds of votes it reads.
    let checked_to: String = sqlx::query_scalar(
        "SELECT checked_to::text FROM figure_marks WHERE name = 'over_collected' FOR UPDATE",
    )
    .fetch_one(&mut *tx)
    .await?;
    // The next check starts where no vote can still appear behind it (see
    // `writers_bound`): each check reads seconds of votes, not the last 30 s.
    let until = writers_bound(&mut tx, RUNNING_COUNT_SLACK_SECS).await?;
    sqlx::query(
        "WITH touched AS (
             SELECT DISTINCT task_id FROM votes WHERE created_at > $1::timestamptz),
         counted AS (
             SELECT t.id, greatest(count(v.id) - t.votes_required, 0) AS extra
             FROM touched JOIN tasks t ON t.id = touched.task_id AND t.kind = 'review'
             JOIN votes v ON v.task_id = t.id
             GROUP BY t.id, t.votes_required),
         cleared AS (
             DELETE FROM over_collected_tasks o USING counted c
             WHERE o.task_id = c.id AND c.extra = 0)
         INSERT INTO over_collected_tasks (task_id, extra)
         SELECT id, extra FROM counted WHERE extra > 0
         ON CONFLICT (task_id) DO UPDATE SET extra = EXCLUDED.extra",
    )
    .bind(checked_to)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE figure_marks SET checked_to = $1 WHERE name = 'over_collected'")
        .bind(until)
        .execute(&mut *tx)
        .await?;
    let total: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(extra), 0)::bigint FROM over_collected_tasks")
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(total)
}

/// Counts that grow with the history, kept in `running_counts` as a total up to
/// a mark: each is the rows of one table stamped in a column, with a filter.
const RUNNING_COUNTS: [(&str, &str, &str); 9] = [
    ("listings", "listings", "first_seen_at"),
    ("review_votes", REVIEW_VOTES, "v.created_at"),
    (
        "review_tasks",
        "tasks WHERE kind = 'review' AND",
        "created_at",
    ),
    ("votes", "votes", "created_at"),
    (
        "decisions_genuine",
        "decisions WHERE outcome = 'genuine' AND",
        "decided_at",
    ),
    (
        "decisions_counterfeit",
        "decisions WHERE outcome = 'counterfeit' AND",
        "decided_at",
    ),
    (
        "decisions_uncertain",
        "decisions WHERE outcome = 'uncertain' AND",
        "decided_at",
    ),
    (
        "escalations_confirmed",
        "escalations WHERE status = 'confirmed' AND",
        "decided_at",
    ),
    (
        "escalations_dismissed",
        "escalations WHERE status = 'dismissed' AND",
        "decided_at",
    ),
];

/// Review votes, as a running count's source: the votes not on a gold task
/// (every task is one or the other). The anti-join reads the few gold tasks
/// from their index; a join to every vote's task made a parallel scan of the
/// tasks for a tail of seconds of votes (250 ms for 84,000 votes on a 10 M-vote
/// history, against 45 ms).
pub const REVIEW_VOTES: &str = "votes v WHERE NOT EXISTS
    (SELECT 1 FROM tasks g WHERE g.id = v.task_id AND g.kind = 'gold') AND";

/// How far behind the clock, and behind the start of the oldest transaction
/// that is writing to the database, the running counts' mark stays. Rows are
/// stamped with their transaction's start (or the clock just before it) and
/// become visible at its commit, so a mark that never passes an open writer's
/// start never skips a row; the slack covers clocks a moment apart. The rows
/// after the mark are read live on every call, so a short slack keeps that
/// read small (a 30 s slack made it 90,000 votes at 3,000 a second).
pub const RUNNING_COUNT_SLACK_SECS: f64 = 5.0;

/// The time before which every row stamped with its transaction's start is
/// visible: the clock, never past the start of the oldest transaction writing
/// to the database (a reader's long snapshot does not count), less
/// `slack_secs` for clocks a moment apart. Marks that read rows by their stamp
/// move up to it and never skip a row committed late. If the role cannot see
/// other sessions' `xact_start`, it is the clock less the slack.
pub async fn writers_bound(
    conn: &mut sqlx::PgConnection,
    slack_secs: f64,
) -> sqlx::Result<DateTime<Utc>> {
    // Writers are the transactions holding a transaction id; `least` skips
    // the null of a database with no other writer.
    sqlx::query_scalar(
        "SELECT least(clock_timestamp(),
                      (SELECT min(xact_start) FROM pg_stat_activity
                       WHERE datname = current_database() AND pid <> pg_backend_pid()
                         AND backend_xid IS NOT NULL))
                - make_interval(secs => $1)",
    )
    .bind(slack_secs)
    .fetch_one(conn)
    .await
}

/// `FROM ... WHERE` of one running count, before its time condition.
fn count_from(source: &str) -> String {
    if source.ends_with(" AND") {
        source.to_owned()
    } else {
        format!("{source} WHERE")
    }
}

/// Moves every running count's mark up to the slack behind now, adding the
/// rows stamped in between. Replicas take turns on the rows' locks, so each row
/// is added once; the first run after the migration counts everything.
pub async fn advance_running_counts(pool: &PgPool) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    let marks = marks(&mut tx, true).await?;
    let until = writers_bound(&mut tx, RUNNING_COUNT_SLACK_SECS).await?;
    // The review votes about to be counted, per minute, for the capacity pace.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH gone AS (DELETE FROM vote_minutes WHERE minute < now() - interval '90 days')
         INSERT INTO vote_minutes AS m (minute, review_votes)
         SELECT date_trunc('minute', v.created_at), count(*) FROM {REVIEW_VOTES}
             v.created_at > $1::timestamptz AND v.created_at <= $2
         GROUP BY 1
         ON CONFLICT (minute) DO UPDATE SET review_votes = m.review_votes + EXCLUDED.review_votes"
    )))
    .bind(mark_of(&marks, "review_votes"))
    .bind(until)
    .execute(&mut *tx)
    .await?;
    for (name, source, column) in RUNNING_COUNTS {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE running_counts SET counted_to = greatest(counted_to, $3),
                 total = total + (SELECT count(*) FROM {from} {column} > $2::timestamptz
                                  AND {column} <= $3)
             WHERE name = $1",
            from = count_from(source)
        )))
        .bind(name)
        .bind(mark_of(&marks, name))
        .bind(until)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Starts every running count again from nothing (and the per-minute pace with
/// it), for rows written straight into the database behind the marks (a seeded
/// history): the next advance counts every row once.
pub async fn restart_running_counts(conn: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    marks(&mut tx, true).await?;
    sqlx::query("UPDATE running_counts SET total = 0, counted_to = '-infinity'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM vote_minutes")
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Each running count's total and mark (as text: the first mark is
/// `-infinity`, which no chrono instant holds), locked when `lock` is set.
async fn marks(
    conn: &mut sqlx::PgConnection,
    lock: bool,
) -> sqlx::Result<std::collections::HashMap<String, (i64, String)>> {
    let lock = if lock {
        " ORDER BY name FOR UPDATE"
    } else {
        ""
    };
    let rows: Vec<(String, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT name, total, counted_to::text FROM running_counts{lock}"
    )))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(n, t, m)| (n, (t, m))).collect())
}

/// The mark of `name`, bound as a value so each statement is planned for it (a
/// mark seconds old selects a handful of rows; read from a subquery instead,
/// the planner guesses a third of the table, and starts parallel workers).
fn mark_of(marks: &std::collections::HashMap<String, (i64, String)>, name: &str) -> String {
    marks
        .get(name)
        .map_or_else(|| "-infinity".to_owned(), |(_, m)| m.clone())
}

/// The running counts named now: each its total plus the rows stamped since
/// its mark (a name that is no running count is left out).
pub async fn running_counts(
    pool: &PgPool,
    names: &[&str],
) -> sqlx::Result<std::collections::HashMap<String, i64>> {
    let mut conn = pool.acquire().await?;
    let marks = marks(&mut conn, false).await?;
    let wanted: Vec<&(&str, &str, &str)> = RUNNING_COUNTS
        .iter()
        .filter(|(name, _, _)| names.contains(name))
        .collect();
    if wanted.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let parts: Vec<String> = wanted
        .iter()
        .enumerate()
        .map(|(i, (name, source, column))| {
            format!(
                "SELECT '{name}', count(*) FROM {from} {column} > ${}::timestamptz",
                i + 1,
                from = count_from(source)
            )
        })
        .collect();
    let mut query =
        sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(parts.join(" UNION ALL ")));
    for (name, _, _) in &wanted {
        query = query.bind(mark_of(&marks, name));
    }
    let tails = query.fetch_all(&mut *conn).await?;
    Ok(tails
        .into_iter()
        .map(|(name, tail)| {
            let total = marks.get(&name).map_or(0, |(t, _)| *t);
            (name, total + tail)
        })
        .collect())
}

/// Tasks by state, from the running counts and the partial indexes of the
/// states that stay small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskFigures {
    /// Review tasks ever created.
    pub review: i64,
    /// Review tasks still open.
    pub review_open: i64,
    /// Review tasks handed to staff.
    pub escalated: i64,
    /// Votes the open review tasks still need.
    pub votes_still_needed: i64,
    /// Gold tasks.
    pub gold: i64,
    /// Gold tasks still open.
    pub gold_open: i64,
}

impl TaskFigures {
    /// Review tasks decided by their votes.
    pub fn review_decided(&self) -> i64 {
        (self.review - self.review_open - self.escalated).max(0)
    }
}

/// Reads [`TaskFigures`] (`review` from the running counts).
pub async fn task_figures(pool: &PgPool, review: i64) -> sqlx::Result<TaskFigures> {
    let (review_open, votes_still_needed, escalated, gold, gold_open): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE kind = 'review'),
                    coalesce(sum(votes_required - votes_counted) FILTER (WHERE kind = 'review'), 0)::bigint,
                    (SELECT count(*) FROM tasks WHERE state = 'escalated' AND kind = 'review'),
                    (SELECT count(*) FROM tasks WHERE kind = 'gold'),
                    count(*) FILTER (WHERE kind = 'gold')
             FROM tasks WHERE state = 'open'",
        )
        .fetch_one(pool)
        .await?;
    Ok(TaskFigures {
        review,
        review_open,
        escalated,
        votes_still_needed,
        gold,
        gold_open,
    })
}

/// Outbox messages not yet published (a row stands for `copies` of them), and
/// the age in seconds of the oldest.
pub async fn outbox_backlog(pool: &PgPool) -> sqlx::Result<(i64, f64)> {
    sqlx::query_as(
        "SELECT coalesce(sum(copies), 0)::bigint,
                coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
         FROM outbox WHERE sent_at IS NULL",
    )
    .fetch_one(pool)
    .await
}

/// Reads the database-side figures.
pub async fn db_figures(pool: &PgPool) -> sqlx::Result<DbFigures> {
    db_figures_with(pool, over_collected(pool).await?).await
}

/// The over-collection figure as the last check left it (the coordinators'
/// gauges check every few seconds), so a reader does not recount anything.
pub async fn over_collected_as_checked(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT coalesce(sum(extra), 0)::bigint FROM over_collected_tasks")
        .fetch_one(pool)
        .await
}

/// [`DbFigures`] with the over-collection figure given.
pub async fn db_figures_with(pool: &PgPool, over_collected: i64) -> sqlx::Result<DbFigures> {
    let (outbox_unsent, outbox_lag_secs) = outbox_backlog(pool).await?;
    Ok(DbFigures {
        over_collected,
        outbox_unsent,
        outbox_lag_secs,
    })
}
