//! Month partitions and retention: created ahead by two coordinators at once,
//! rows of a month without a partition kept (and moved when it is created),
//! partitions dropped only once archived exactly, and the prevalence estimate
//! and volunteer reliability the same after retention as before it; the
//! running counts' mark held back by a writer still open.

use crate::harness::{TestEnv, count};
use chrono::Utc;
use coordinator::recalibrate::{Start, recalibrate_from};
use coordinator::retention::{Upkeep, archive, run_once};
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use spotcheck_platform::partitions::{Kept, attached_months, drop_archived, ensure_month};
use spotcheck_shared::Role;
use spotcheck_shared::partitions::{Month, Retention, Table, months_to_create, uuid_floor};
use spotcheck_sim::seed_history::{SeedHistoryArgs, seed};
use sqlx::PgPool;
use std::io::Read;
use std::time::Duration;

fn upkeep(retention: Retention, dir: Option<std::path::PathBuf>) -> Upkeep {
    Upkeep {
        every: Duration::from_secs(3600),
        ahead: 2,
        retention,
        archive_dir: dir,
    }
}

/// Where a task's votes are stored: the partition's name.
async fn partition_of_votes(pool: &PgPool, task: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT tableoid::regclass::text FROM votes WHERE task_id = $1 LIMIT 1")
        .bind(task)
        .fetch_one(pool)
        .await
        .expect("the vote")
}

/// A listing, a review task with `task` as id, and a vote on it by `volunteer`.
async fn task_with_vote(pool: &PgPool, task: uuid::Uuid, volunteer: uuid::Uuid) {
    let listing = format!("part-{}", task.simple());
    sqlx::query(
        "INSERT INTO listings (listing_id, version, seller_id, brand, category, region,
             seller_risk_tier, price, currency, title, description, image_urls, signals)
         VALUES ($1, 1, 's-part', 'b', 'bags', 'eu', 'standard', 10, 'EUR', 't', 'd', '[]', '[]')",
    )
    .bind(&listing)
    .execute(pool)
    .await
    .expect("a listing");
    sqlx::query(
        "INSERT INTO tasks (id, listing_id, listing_version, round, votes_required,
             inclusion_probability, stratum, sampling)
         VALUES ($1, $2, 1, 999999, 3, 0.5, 'bags/eu/standard', '{}')",
    )
    .bind(task)
    .bind(&listing)
    .execute(pool)
    .await
    .expect("a task");
    sqlx::query(
        "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence)
         VALUES (gen_random_uuid(), $1, $2, 'genuine', '[]', 1)",
    )
    .bind(task)
    .bind(volunteer)
    .execute(pool)
    .await
    .expect("a vote");
}

/// A v7 id created at `at` (random low bits).
fn v7_at(at: chrono::DateTime<Utc>) -> uuid::Uuid {
    let mut bytes = *uuid::Uuid::now_v7().as_bytes();
    bytes[..6].copy_from_slice(&uuid_floor(at).as_bytes()[..6]);
    uuid::Uuid::from_bytes(bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_coordinators_create_the_partitions_ahead_and_a_month_without_one_keeps_its_votes() {
    let env = TestEnv::db_only().await;
    let pool = env.pool.clone();
    let now = Utc::now();
    // Two coordinators run their upkeep at the same moment, on their own pools.
    let other = spotcheck_platform::db::connect(&env.db_url, 4)
        .await
        .expect("a second pool");
    let keep = Upkeep {
        ahead: 5,
        ..upkeep(Retention::default(), None)
    };
    let (a, b) = tokio::join!(run_once(&pool, &keep, now), run_once(&other, &keep, now));
    let (a, b) = (a.expect("first upkeep"), b.expect("second upkeep"));
    let wanted = months_to_create(now, 5);
    let mut created: Vec<String> = a.created.iter().chain(&b.created).cloned().collect();
    created.sort();
    // The migration made last month's to two months ahead; the upkeep makes
    // the rest, each once, by one of the two.
    let migrated = months_to_create(now, 2);
    let mut expected: Vec<String> = Table::ALL
        .iter()
        .flat_map(|t| {
            wanted
                .iter()
                .filter(|m| !migrated.contains(m))
                .map(|m| t.partition(*m))
        })
        .collect();
    expected.sort();
    assert_eq!(
        created, expected,
        "each partition created once, by one of them"
    );
    for table in Table::ALL {
        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(attached_months(&mut conn, table).await.unwrap(), wanted);
        // The migration made some of them: its bounds are the upkeep's.
        let cast = if table == Table::AuditLog {
            "timestamptz"
        } else {
            "uuid"
        };
        for month in &wanted {
            let (from, to) = table.bounds(*month);
            let same: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT pg_get_expr(relpartbound, oid)
                        = format('FOR VALUES FROM (%L) TO (%L)', {from}::{cast}, {to}::{cast})
                 FROM pg_class WHERE relname = $1"
            )))
            .bind(table.partition(*month))
            .fetch_one(&pool)
            .await
            .unwrap();
            assert!(
                same,
                "{} has the bounds of its month",
                table.partition(*month)
            );
        }
    }

    // A vote whose task belongs to a month with no partition yet is stored (in
    // the default partition), and moves when its month is created.
    let volunteer = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO users (id, username, password_hash, role) VALUES ($1, 'part-vol', '!', 'volunteer')")
        .bind(volunteer)
        .execute(&pool)
        .await
        .unwrap();
    let later = Month::of(now).plus(9);
    let task = v7_at(later.start() + chrono::Duration::days(3));
    task_with_vote(&pool, task, volunteer).await;
    assert_eq!(partition_of_votes(&pool, task).await, "votes_default");
    let moved = ensure_month(&pool, Table::Votes, later).await.unwrap();
    assert_eq!(moved, Some(1));
    assert_eq!(
        partition_of_votes(&pool, task).await,
        Table::Votes.partition(later)
    );
    // The unique key (task, volunteer) still guards I2 and I3 across partitions.
    let again = sqlx::query(
        "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence)
         VALUES (gen_random_uuid(), $1, $2, 'genuine', '[]', 1)",
    )
    .bind(task)
    .bind(volunteer)
    .execute(&pool)
    .await;
    assert!(
        again.is_err(),
        "a second vote by the same volunteer is refused"
    );

    // Upkeep also finds months left in a default partition (here: a decision).
    let stray = v7_at(Month::of(now).plus(-4).start());
    task_with_vote(&pool, stray, volunteer).await;
    sqlx::query("INSERT INTO decisions (task_id, outcome, tally) VALUES ($1, 'genuine', '{}')")
        .bind(stray)
        .execute(&pool)
        .await
        .unwrap();
    let report = run_once(&pool, &keep, now).await.unwrap();
    assert!(
        report
            .created
            .contains(&Table::Decisions.partition(Month::of(now).plus(-4))),
        "{report:?}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM votes_default").await
            + count(&pool, "SELECT count(*) FROM decisions_default").await,
        0,
        "nothing left in the defaults"
    );
    // An id that is not v7 stays in the default partition, stored all the same.
    let v4 = uuid::Uuid::new_v4();
    task_with_vote(&pool, v4, volunteer).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM votes").await, 3);
    other.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_drops_only_what_was_archived_and_the_estimates_stay_the_same() {
    let mut env = TestEnv::db_only().await;
    let pool = env.pool.clone();
    seed(&SeedHistoryArgs {
        database_url: env.db_url.clone(),
        votes: 6_000,
        months: 3,
        volunteers: Some(40),
        counterfeit_share: 0.15,
    })
    .await
    .expect("seed the history");
    let now = Utc::now();
    let dir = std::env::temp_dir().join(format!("archive-{}", env.id));

    // Before: reliability (a recalibration over the last 20 days, which the
    // retention below keeps; started cold both times, so the two fits start
    // from the same point) and the estimate of every round.
    recalibrate_from(&pool, 20, Start::Cold)
        .await
        .unwrap()
        .expect("the recalibration lock");
    let reliability_before = reliability(&pool).await;
    env.start_api(|_| {}).await;
    let staff = env.user("staff-retention", Role::Staff).await;
    let rounds: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT round FROM tasks WHERE kind = 'review' AND origin = 'round' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!rounds.is_empty());
    let mut before = Vec::new();
    for round in &rounds {
        before.push(prevalence(&env, &staff, *round).await);
    }
    // The coordinators' gauges job moves the running counts every few seconds.
    spotcheck_platform::figures::advance_running_counts(&pool)
        .await
        .unwrap();
    let votes_before = stats_votes(&env, &staff).await;

    // Without an archive directory nothing is dropped.
    let keep_one = Retention {
        votes_months: 1,
        decisions_months: 1,
        audit_months: 84,
    };
    let report = run_once(&pool, &upkeep(keep_one, None), now).await.unwrap();
    assert!(
        report.dropped.is_empty() && !report.kept.is_empty(),
        "{report:?}"
    );

    // An archive that no longer matches the partition keeps it.
    let mut conn = pool.acquire().await.unwrap();
    let oldest = attached_months(&mut conn, Table::Votes).await.unwrap()[0];
    drop(conn);
    let written = archive(&pool, &dir, Table::Votes, oldest).await.unwrap();
    assert!(written.rows > 0);
    let volunteer: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE role = 'volunteer' LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    task_with_vote(
        &pool,
        v7_at(oldest.start() + chrono::Duration::hours(1)),
        volunteer,
    )
    .await;
    let kept = drop_archived(&pool, Table::Votes, oldest, written.rows)
        .await
        .unwrap();
    assert_eq!(
        kept,
        Err(Kept::Changed {
            archived: written.rows,
            now: written.rows + 1
        })
    );
    let mut conn = pool.acquire().await.unwrap();
    assert!(
        attached_months(&mut conn, Table::Votes)
            .await
            .unwrap()
            .contains(&oldest)
    );
    drop(conn);
    // That late vote carries no known truth: remove it again so "before" holds.
    sqlx::query(
        "DELETE FROM votes WHERE task_id IN (SELECT id FROM tasks WHERE listing_id LIKE 'part-%')",
    )
    .execute(&pool)
    .await
    .unwrap();

    // Retention with a directory: every month before the last is archived and dropped.
    let report = run_once(&pool, &upkeep(keep_one, Some(dir.clone())), now)
        .await
        .unwrap();
    assert!(report.kept.is_empty(), "{report:?}");
    let cutoff = Month::of(now).plus(-1);
    for table in [Table::Votes, Table::Decisions] {
        let mut conn = pool.acquire().await.unwrap();
        let months = attached_months(&mut conn, table).await.unwrap();
        assert!(months.iter().all(|m| *m >= cutoff), "{table:?}: {months:?}");
        assert!(
            report.dropped.iter().any(|p| p.starts_with(table.name())),
            "{report:?}"
        );
    }
    // Each archive holds what its record says, rows and hash.
    let archives: Vec<(String, i64, String, String)> = sqlx::query_as(
        "SELECT partition, rows, sha256, path FROM retention_archives WHERE dropped_at IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(archives.len(), report.dropped.len());
    for (partition, rows, sha256, path) in archives {
        let bytes = std::fs::read(&path).unwrap();
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, sha256, "{partition}");
        let mut csv = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut csv)
            .unwrap();
        assert_eq!(
            csv.lines().count() as i64,
            rows + 1,
            "{partition}: header and rows"
        );
    }
    assert!(
        count(
            &pool,
            "SELECT count(*) FROM audit_log WHERE action = 'retention.drop'"
        )
        .await
            > 0
    );

    // After: the same reliability and estimates, and the votes ever cast.
    recalibrate_from(&pool, 20, Start::Cold)
        .await
        .unwrap()
        .expect("the recalibration lock");
    let reliability_after = reliability(&pool).await;
    assert_eq!(reliability_before.len(), reliability_after.len());
    for ((id, a), (_, b)) in reliability_before.iter().zip(&reliability_after) {
        assert_close(a, b, &format!("volunteer {id}"));
    }
    for (round, was) in rounds.iter().zip(&before) {
        let now = prevalence(&env, &staff, *round).await;
        assert_close(was, &now, &format!("round {round}"));
    }
    assert_eq!(stats_votes(&env, &staff).await, votes_before);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn reliability(pool: &PgPool) -> Vec<(uuid::Uuid, Value)> {
    sqlx::query_as(
        "SELECT volunteer_id, confusion FROM volunteer_reliability ORDER BY volunteer_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn prevalence(env: &TestEnv, staff: &str, round: i64) -> Value {
    let (status, body) = env
        .call(
            Method::GET,
            &format!("/v1/staff/prevalence?round={round}"),
            Some(staff),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn stats_votes(env: &TestEnv, staff: &str) -> i64 {
    let (status, body) = env
        .call(Method::GET, "/v1/staff/stats", Some(staff), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["votes"].as_i64().expect("votes")
}

/// Equal JSON, numbers within a relative 1e-6 (sums taken in another order,
/// an EM started from another point).
fn assert_close(a: &Value, b: &Value, what: &str) {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
                "{what}: {x} then {y}"
            );
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{what}: {a} then {b}");
            for (k, v) in x {
                assert_close(v, &y[k], &format!("{what}.{k}"));
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{what}");
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                assert_close(v, w, &format!("{what}[{i}]"));
            }
        }
        _ => assert_eq!(a, b, "{what}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_transaction_older_than_the_slack_holds_the_running_counts_mark_back() {
    use spotcheck_platform::figures::{
        RUNNING_COUNT_SLACK_SECS, advance_running_counts, running_counts,
    };
    let env = TestEnv::db_only().await;
    let pool = env.pool.clone();
    advance_running_counts(&pool).await.unwrap();
    let before = running_counts(&pool, &["listings"]).await.unwrap()["listings"];
    // A writer stamps a listing at its start and stays open past the slack.
    let mut slow = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO listings (listing_id, version, seller_id, brand, category, region,
             seller_risk_tier, price, currency, title, description, image_urls, signals)
         VALUES ('slow-writer', 1, 's-slow', 'b', 'bags', 'eu', 'standard', 10, 'EUR', 't', 'd', '[]', '[]')",
    )
    .execute(&mut *slow)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs_f64(RUNNING_COUNT_SLACK_SECS + 1.0)).await;
    // The mark moves meanwhile, but not past the open writer's start.
    advance_running_counts(&pool).await.unwrap();
    let mark: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT counted_to FROM running_counts WHERE name = 'listings'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let started: chrono::DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *slow)
        .await
        .unwrap();
    assert!(
        mark < started,
        "mark {mark} passed the writer's start {started}"
    );
    slow.commit().await.unwrap();
    // Committed, the row is counted once: live now, then in the total.
    let live = running_counts(&pool, &["listings"]).await.unwrap()["listings"];
    assert_eq!(live, before + 1);
    tokio::time::sleep(Duration::from_secs_f64(RUNNING_COUNT_SLACK_SECS + 0.5)).await;
    advance_running_counts(&pool).await.unwrap();
    let (total, mark): (i64, chrono::DateTime<Utc>) =
        sqlx::query_as("SELECT total, counted_to FROM running_counts WHERE name = 'listings'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(mark > started, "the mark passed the committed row");
    assert_eq!(total, before + 1);
    assert_eq!(
        running_counts(&pool, &["listings"]).await.unwrap()["listings"],
        before + 1
    );
}
