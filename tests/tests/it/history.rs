//! `seed-history` writes a history the running system could have written: every
//! review task with three votes from three volunteers and one decision by their
//! majority, escalations of exactly the counterfeit decisions, audit rows for
//! both, votes spread over every month, and a stack that serves it.

use crate::harness::{TestEnv, count, metrics_text, wait_until};
use reqwest::Method;
use spotcheck_shared::Role;
use spotcheck_sim::seed_history::{SeedHistoryArgs, seed};

#[tokio::test(flavor = "multi_thread")]
async fn seeded_history_keeps_the_invariants_and_the_stack_serves_it() {
    let mut env = TestEnv::db_only().await;
    let args = SeedHistoryArgs {
        database_url: env.db_url.clone(),
        votes: 9_000,
        months: 3,
        volunteers: Some(60),
        counterfeit_share: 0.1,
    };
    let report = seed(&args).await.expect("seed the history");
    assert_eq!((report.tasks, report.votes), (3_000, 9_000));
    assert!(report.gold_votes > 0 && report.escalations > 0);
    let pool = &env.pool.clone();
    let checks: [(&str, &'static str, i64); 8] = [
        (
            "review tasks without exactly three votes",
            "SELECT count(*) FROM tasks t WHERE kind = 'review'
               AND (SELECT count(*) FROM votes v WHERE v.task_id = t.id) <> 3",
            0,
        ),
        (
            "review tasks without exactly one decision",
            "SELECT count(*) FROM tasks t WHERE kind = 'review'
               AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.task_id = t.id)",
            0,
        ),
        (
            "decisions other than the majority of their votes",
            "SELECT count(*) FROM decisions d CROSS JOIN LATERAL (
                 SELECT count(*) FILTER (WHERE verdict = 'counterfeit') AS c,
                        count(*) FILTER (WHERE verdict = 'genuine') AS g
                 FROM votes v WHERE v.task_id = d.task_id) n
             WHERE d.outcome <> CASE WHEN n.c > n.g THEN 'counterfeit'
                                     WHEN n.g > n.c THEN 'genuine' ELSE 'uncertain' END",
            0,
        ),
        (
            "escalations of decisions that were not counterfeit",
            "SELECT count(*) FROM escalations e JOIN decisions d ON d.task_id = e.task_id
             WHERE d.outcome <> 'counterfeit'",
            0,
        ),
        (
            "counterfeit decisions not escalated",
            "SELECT count(*) FROM decisions d WHERE d.outcome = 'counterfeit'
               AND NOT EXISTS (SELECT 1 FROM escalations e WHERE e.task_id = d.task_id)",
            0,
        ),
        (
            "votes counted beyond what a task asked (I2)",
            "SELECT count(*) FROM tasks WHERE votes_counted > votes_required",
            0,
        ),
        (
            "audit rows that are neither a decision nor an escalation's outcome",
            "SELECT (SELECT count(*) FROM audit_log)
                  - (SELECT count(*) FROM decisions) - (SELECT count(*) FROM escalations)",
            0,
        ),
        (
            "votes cast in the future",
            "SELECT count(*) FROM votes WHERE created_at > now()",
            0,
        ),
    ];
    for (what, sql, want) in checks {
        assert_eq!(count(pool, sql).await, want, "{what}");
    }
    let months = count(
        pool,
        "SELECT count(DISTINCT date_trunc('month', v.created_at)) FROM votes v
         JOIN tasks t ON t.id = v.task_id WHERE t.kind = 'review'",
    )
    .await;
    assert!(months >= 3, "votes over {months} calendar months");
    let confirmed = count(
        pool,
        "SELECT count(*) FROM escalations WHERE status = 'confirmed'",
    )
    .await;
    assert!(confirmed > 0 && confirmed < report.escalations);

    // A second run adds to the same database under its own names.
    let again = seed(&SeedHistoryArgs {
        votes: 300,
        months: 1,
        ..args
    })
    .await
    .expect("seed again");
    assert_eq!(again.votes, 300);
    assert_eq!(
        count(
            pool,
            "SELECT count(*) FROM votes v JOIN tasks t ON t.id = v.task_id WHERE t.kind = 'review'"
        )
        .await,
        9_300
    );

    // The stack starts over the history, and the staff routes answer.
    env.start_coordinator(|c| {
        c.recalibrate_secs = 1;
        c.audit_interval_ms = 200;
        c.capacity_interval_ms = 200;
    })
    .await;
    env.start_api(|_| {}).await;
    let staff = env.user("staff-history", Role::Staff).await;
    for path in [
        "/v1/staff/stats",
        "/v1/staff/prevalence",
        "/v1/staff/escalations?status=confirmed",
        "/v1/staff/volunteers?flagged=false",
        "/v1/staff/dashboard?window_secs=604800",
    ] {
        let (status, body) = env.call(Method::GET, path, Some(&staff), None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, stats) = env
        .call(Method::GET, "/v1/staff/stats", Some(&staff), None)
        .await;
    // The history's closed tasks; the round sweep may already be sampling its
    // (still active) listings for the current round.
    let closed =
        stats["tasks"]["decided"].as_i64().unwrap() + stats["tasks"]["escalated"].as_i64().unwrap();
    assert_eq!(closed, 3_100, "{stats}");
    // Staff outcomes come from running counts, and equal a direct count.
    let decided = (
        count(
            pool,
            "SELECT count(*) FROM escalations WHERE status = 'confirmed'",
        )
        .await,
        count(
            pool,
            "SELECT count(*) FROM escalations WHERE status = 'dismissed'",
        )
        .await,
    );
    assert!(decided.0 > 0 && decided.1 > 0, "{decided:?}");
    let reported = (
        stats["escalations"]["confirmed"].as_i64().unwrap(),
        stats["escalations"]["dismissed"].as_i64().unwrap(),
    );
    assert_eq!(reported, decided, "{stats}");

    // The over-collection figure counts vote rows: a fourth vote on a task
    // that asked for three shows at the next check, though the task's counter
    // says three.
    let (_, before) = env
        .call(Method::GET, "/v1/staff/stats", Some(&staff), None)
        .await;
    assert_eq!(before["votes_over_collected"], 0);
    let mark = |pool: &sqlx::PgPool| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
                "SELECT checked_to FROM figure_marks WHERE name = 'over_collected'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let first_mark = mark(pool).await;
    sqlx::query(
        "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence)
         SELECT gen_random_uuid(), t.id, u.id, 'genuine', '[]', 1
         FROM (SELECT id FROM tasks WHERE kind = 'review' AND state = 'decided' LIMIT 1) t,
              (SELECT id FROM users WHERE username = 'staff-history') u",
    )
    .execute(pool)
    .await
    .expect("a fourth vote");
    // The coordinators' gauges check every 5 s; the staff figure is their last.
    wait_until(
        "the fourth vote shows as over-collected",
        std::time::Duration::from_secs(30),
        || {
            let (env, staff) = (&env, &staff);
            async move {
                let (_, after) = env
                    .call(Method::GET, "/v1/staff/stats", Some(staff), None)
                    .await;
                after["votes_over_collected"] == 1
            }
        },
    )
    .await;
    assert_eq!(
        count(pool, spotcheck_platform::figures::OVER_COLLECTED_SQL).await,
        1,
        "the full count agrees"
    );
    assert!(mark(pool).await > first_mark, "each check moves its mark");

    // Every periodic job reports how long its runs take, on the history too.
    let ops = env.coordinator_ops[0];
    let http = env.http.clone();
    wait_until(
        "every periodic job timed",
        std::time::Duration::from_secs(30),
        || {
            let http = http.clone();
            async move {
                let text = metrics_text(&http, ops).await;
                [
                    "gauges",
                    "capacity",
                    "round_sweep",
                    "reaper",
                    "lease_audit",
                    "deadline_sweep",
                    "recalibration",
                ]
                .iter()
                .all(|job| text.contains(&format!("spotcheck_job_seconds_count{{job=\"{job}\"}}")))
            }
        },
    )
    .await;
}
