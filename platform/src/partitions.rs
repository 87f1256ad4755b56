//! Month partitions in PostgreSQL: creating them ahead of time (moving any rows
//! their month left in the default partition), listing them, and removing an
//! archived one after rolling up what the estimates need from it.
//!
//! Each change is one transaction under the upkeep's advisory lock, so replicas
//! take turns and the second finds the work done. A new
//! partition is created as a plain table and then attached, which locks the
//! parent only in SHARE UPDATE EXCLUSIVE mode, so votes keep flowing; a drop
//! holds the parent exclusively for the detach alone. Every lock wait is cut
//! short by a `lock_timeout` well under the deadlock timeout, and a change that
//! backs off is tried again a few times, then on the next run: whatever the
//! upkeep contends with, the upkeep is the one that yields.

use chrono::{DateTime, Utc};
use spotcheck_shared::partitions::{Month, Table, months_to_create, uuid_floor};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// How long a partition change waits for a table lock before it backs off.
/// Well under `deadlock_timeout` (1 s): a transaction stuck behind one of ours
/// is released before PostgreSQL would pick a victim, so the victim of any
/// lock cycle is the upkeep, which tries again, never a vote or a staff action.
const LOCK_TIMEOUT: &str = "200ms";

/// Attempts of one partition change before it waits for the next run.
const ATTEMPTS: u32 = 10;

/// The oldest month looked for in a default partition.
const EPOCH_YEAR: i32 = 2000;

/// Backfill months handled per table in one run, so a run stays short.
const BACKFILL_PER_RUN: usize = 24;

/// Starts a partition change: a short lock timeout, then the upkeep's advisory
/// lock (held by another replica, it times out like any lock and the change is
/// tried again).
async fn begin(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
    )))
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('spotcheck.partitions'))")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Whether an error is a lock wait that timed out or a deadlock: the change
/// backed off and may simply be tried again.
fn backed_off(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "55P03" || c == "40P01")
}

/// Runs `change` until it goes through without backing off, at most
/// [`ATTEMPTS`] times with a short random pause between.
async fn retried<T, F, Fut>(what: &str, mut change: F) -> sqlx::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match change().await {
            Err(e) if backed_off(&e) && attempt < ATTEMPTS => {
                tracing::debug!(what, attempt, "partition change backed off; trying again");
                metrics::counter!("spotcheck_partition_lock_retries_total").increment(1);
                let pause = 50 + u64::from(rand_u8()) * 2;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A byte of noise from the clock, to spread retries of replicas apart.
fn rand_u8() -> u8 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        % 251) as u8
}

/// The months with a partition of `table` attached, oldest first.
pub async fn attached_months(conn: &mut PgConnection, table: Table) -> sqlx::Result<Vec<Month>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = $1::regclass",
    )
    .bind(table.name())
    .fetch_all(&mut *conn)
    .await?;
    let mut months: Vec<Month> = names.iter().filter_map(|n| table.month_of(n)).collect();
    months.sort();
    Ok(months)
}

/// The parent's columns, in order, as a SQL list.
async fn columns(conn: &mut PgConnection, table: Table) -> sqlx::Result<String> {
    sqlx::query_scalar(
        "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
         WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
    )
    .bind(table.name())
    .fetch_one(&mut *conn)
    .await
}

/// Creates `table`'s partition for `month` unless it exists: a plain table
/// like the parent, filled with the month's rows from the default partition,
/// then attached. Returns the rows moved, or `None` when it already existed.
pub async fn ensure_month(pool: &PgPool, table: Table, month: Month) -> sqlx::Result<Option<u64>> {
    retried("create a partition", || create_month(pool, table, month)).await
}

async fn create_month(pool: &PgPool, table: Table, month: Month) -> sqlx::Result<Option<u64>> {
    let name = table.partition(month);
    let mut tx = pool.begin().await?;
    begin(&mut tx).await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(&name)
        .fetch_one(&mut *tx)
        .await?;
    if exists {
        return Ok(None);
    }
    let (parent, default) = (table.name(), table.default_partition());
    let (from, to) = table.bounds(month);
    let key = table.key();
    // Nothing may enter the month's range of the default partition meanwhile.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {default} IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut *tx)
    .await?;
    let storage = if table == Table::Votes {
        // As the unpartitioned table had: room for the HOT updates of accounting.
        " WITH (fillfactor = 85)"
    } else {
        ""
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS){storage}"
    )))
    .execute(&mut *tx)
    .await?;
    let cols = columns(&mut tx, table).await?;
    let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH moved AS (DELETE FROM {default} WHERE {key} >= {from} AND {key} < {to}
                        RETURNING {cols})
         INSERT INTO {name} ({cols}) SELECT {cols} FROM moved"
    )))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES FROM ({from}) TO ({to})"
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(partition = %name, moved, "partition created");
    metrics::counter!("spotcheck_partitions_created_total", "table" => parent).increment(1);
    Ok(Some(moved))
}

/// The month of the oldest row of `table`'s default partition that belongs to
/// a month not after `last`, skipping ids that are not UUIDv7.
async fn oldest_in_default(
    conn: &mut PgConnection,
    table: Table,
    last: Month,
) -> sqlx::Result<Option<Month>> {
    let default = table.default_partition();
    let mut from = Month {
        year: EPOCH_YEAR,
        month: 1,
    };
    while from <= last {
        let found = match table {
            Table::AuditLog => {
                let at: Option<DateTime<Utc>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT min(at) FROM {default} WHERE at >= $1 AND at < $2"
                )))
                .bind(from.start())
                .bind(last.plus(1).start())
                .fetch_one(&mut *conn)
                .await?;
                return Ok(at.map(Month::of));
            }
            Table::Votes | Table::Decisions => {
                let id: Option<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT task_id FROM {default} WHERE task_id >= $1 AND task_id < $2
                     ORDER BY task_id LIMIT 1"
                )))
                .bind(uuid_floor(from.start()))
                .bind(uuid_floor(last.plus(1).start()))
                .fetch_optional(&mut *conn)
                .await?;
                id
            }
        };
        let Some(id) = found else {
            return Ok(None);
        };
        match Month::of_v7(id) {
            Some(month) => return Ok(Some(month)),
            // Not a v7 id: look again past the month its bytes would mean.
            None => from = Month::of_uuid_time(id).plus(1),
        }
    }
    Ok(None)
}

/// What one partition-maintenance run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Created {
    /// Partitions created.
    pub partitions: Vec<String>,
    /// Rows moved into them out of the default partitions.
    pub moved: u64,
}

/// Makes sure every table has its partitions from last month to `ahead` months
/// past the current one, and gives a partition of its own to the months that
/// left rows in a default partition (a month not created in time, or rows from
/// before partitioning), a bounded number per run.
pub async fn ensure(pool: &PgPool, now: DateTime<Utc>, ahead: u32) -> sqlx::Result<Created> {
    let mut created = Created::default();
    let months = months_to_create(now, ahead);
    let last = *months.last().expect("at least the current month");
    for table in Table::ALL {
        let attached = attached_months(&mut *pool.acquire().await?, table).await?;
        for month in months.iter().filter(|m| !attached.contains(m)) {
            if let Some(moved) = ensure_month(pool, table, *month).await? {
                created.partitions.push(table.partition(*month));
                created.moved += moved;
            }
        }
        for _ in 0..BACKFILL_PER_RUN {
            let left = oldest_in_default(&mut *pool.acquire().await?, table, last).await?;
            let Some(month) = left else { break };
            // `None`: it exists, so no row of its month can be in the default.
            let Some(moved) = ensure_month(pool, table, month).await? else {
                break;
            };
            created.partitions.push(table.partition(month));
            created.moved += moved;
        }
    }
    Ok(created)
}

/// Rows of the partition, read under a lock that keeps writers out (and lets
/// readers in).
async fn locked_rows(conn: &mut PgConnection, partition: &str) -> sqlx::Result<i64> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {partition} IN SHARE MODE"
    )))
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {partition}"
    )))
    .fetch_one(&mut *conn)
    .await
}

/// Why an archived partition was not dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Rows changed since the archive was written: it must be written again.
    Changed {
        /// Rows in the archive.
        archived: i64,
        /// Rows in the partition now.
        now: i64,
    },
    /// Not a partition of the table (already gone).
    Missing,
}

/// Rolls up what the estimates need from `table`'s partition for `month`, then
/// detaches and drops it, all in one transaction, but only while it holds
/// exactly `archived_rows` rows (what its archive holds).
///
/// Of votes, the known truths they were scored against (gold answers, staff
/// outcomes, test purchases) are added to `known_truth_rollups`, which
/// recalibration reads beside the live votes. Decisions need no rollup: the
/// prevalence estimate reads each task's `finding`, and tasks are kept.
pub async fn drop_archived(
    pool: &PgPool,
    table: Table,
    month: Month,
    archived_rows: i64,
) -> sqlx::Result<Result<(), Kept>> {
    retried("drop a partition", || {
        drop_month(pool, table, month, archived_rows)
    })
    .await
}

async fn drop_month(
    pool: &PgPool,
    table: Table,
    month: Month,
    archived_rows: i64,
) -> sqlx::Result<Result<(), Kept>> {
    let partition = table.partition(month);
    let mut tx = pool.begin().await?;
    begin(&mut tx).await?;
    if !attached_months(&mut tx, table).await?.contains(&month) {
        return Ok(Err(Kept::Missing));
    }
    // Writes to the month stop while it is counted and rolled up; the parent
    // is locked only for the detach itself, so votes pause for milliseconds.
    let rows = locked_rows(&mut tx, &partition).await?;
    if rows != archived_rows {
        return Ok(Err(Kept::Changed {
            archived: archived_rows,
            now: rows,
        }));
    }
    if table == Table::Votes {
        roll_up_known_truths(&mut tx, &partition).await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        table.name()
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {} DETACH PARTITION {partition}",
        table.name()
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {partition}")))
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE retention_archives SET dropped_at = now() WHERE partition = $1")
        .bind(&partition)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO audit_log (actor_id, action, subject, old, new)
         SELECT NULL, 'retention.drop', 'partition:' || partition, NULL,
                jsonb_build_object('rows', rows, 'sha256', sha256, 'path', path)
         FROM retention_archives WHERE partition = $1",
    )
    .bind(&partition)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(%partition, rows, "partition archived and dropped");
    metrics::counter!("spotcheck_partitions_dropped_total", "table" => table.name()).increment(1);
    Ok(Ok(()))
}

/// The known truths each vote was scored against, as `(volunteer_id, verdict,
/// truth)` rows over the votes `{votes}` names (a table or partition):
/// gold answers of accounted votes, staff outcomes of scored votes, and where
/// no staff outcome settled the task, the test purchase that scored the vote.
/// Reads outward from the truths, so it costs what the truths cost, not what
/// the votes do.
pub fn known_truths_sql(votes: &str) -> String {
    format!(
        "SELECT v.volunteer_id, v.verdict, g.answer = 'counterfeit' AS truth
         FROM gold_answers g JOIN {votes} v ON v.task_id = g.task_id
         WHERE v.accounted_at IS NOT NULL
         UNION ALL
         SELECT v.volunteer_id, v.verdict, e.status = 'confirmed'
         FROM escalations e JOIN {votes} v ON v.task_id = e.task_id
         WHERE e.status IN ('confirmed', 'dismissed') AND v.scored_at IS NOT NULL
         UNION ALL
         SELECT v.volunteer_id, v.verdict, k.truth
         FROM test_purchases p0
         JOIN tasks t ON t.listing_id = p0.listing_id
         JOIN {votes} v ON v.task_id = t.id AND v.scored_at IS NOT NULL
         JOIN LATERAL (
             SELECT p.result = 'counterfeit' AS truth, p.id FROM test_purchases p
             WHERE p.listing_id = t.listing_id AND p.created_at <= v.scored_at
             ORDER BY p.created_at DESC, p.id DESC LIMIT 1) k ON k.id = p0.id
         WHERE NOT EXISTS (SELECT 1 FROM escalations e WHERE e.task_id = v.task_id
                           AND e.status IN ('confirmed', 'dismissed'))"
    )
}

async fn roll_up_known_truths(conn: &mut PgConnection, partition: &str) -> sqlx::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO known_truth_rollups AS k (volunteer_id, verdict, truth, n)
         SELECT volunteer_id, verdict, truth, count(*) FROM ({}) s GROUP BY 1, 2, 3
         ON CONFLICT (volunteer_id, verdict, truth) DO UPDATE SET n = k.n + EXCLUDED.n",
        known_truths_sql(partition)
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
