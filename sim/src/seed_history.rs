//! `seed-history`: writes months of realistic history straight into a database,
//! generated inside PostgreSQL month by month (`INSERT ... SELECT` over
//! `generate_series`, no row crosses the network): listings and their review
//! tasks, three votes a task from volunteers of varied accuracy, one decision a
//! task by majority, escalations of the counterfeit decisions with staff
//! outcomes and their audit rows, and gold tasks answered along the way.
//!
//! What it writes is what the running system would have written: every task
//! decided, its votes counted, I2 and I3 holding (at most one vote per task and
//! volunteer, never more than asked), so the history benchmark and the staff
//! routes see a database as it would be after months in production.

use anyhow::Context;
use clap::Args;
use spotcheck_shared::partitions::{Month as CalendarMonth, Table};
use spotcheck_shared::reliability::{Confusion, ReliabilityPrior};
use sqlx::{Connection, PgConnection};
use std::time::Instant;

/// `seed-history` options.
#[derive(Debug, Clone, Args)]
pub struct SeedHistoryArgs {
    /// The database to fill (migrated first if needed).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Review votes to write in all (three a task).
    #[arg(long, default_value_t = 10_000_000)]
    pub votes: i64,
    /// Months of history (of 30 days), ending two days ago, so every task's
    /// votes, decision and staff outcome are in the past.
    #[arg(long, default_value_t = 12)]
    pub months: i64,
    /// Volunteers casting them (by default one per 2,000 votes, 50 to 50,000).
    #[arg(long)]
    pub volunteers: Option<i64>,
    /// Share of listings that are counterfeit.
    #[arg(long, default_value_t = 0.04)]
    pub counterfeit_share: f64,
}

/// What was written, and how fast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedReport {
    /// Review tasks (one listing each).
    pub tasks: i64,
    /// Review votes.
    pub votes: i64,
    /// Votes on gold tasks.
    pub gold_votes: i64,
    /// Escalations.
    pub escalations: i64,
    /// Seconds it took.
    pub secs: f64,
    /// Bytes the database grew by.
    pub bytes: i64,
}

/// Categories, regions and seller tiers the history is spread over.
const CATEGORIES: &str =
    "'{handbags,watches,sneakers,perfume,electronics,jewellery,apparel,cosmetics}'";
const REGIONS: &str = "'{cn,eu,us,jp}'";

/// A UUIDv7 for an instant (`ts`): its milliseconds, then random bits.
const UUID7_FN: &str = "CREATE FUNCTION pg_temp.uuid7(ts timestamptz) RETURNS uuid
    LANGUAGE sql VOLATILE AS $$
    SELECT encode(set_byte(b, 6, (get_byte(b, 6) & 15) | 112), 'hex')::uuid
    FROM (SELECT overlay(uuid_send(gen_random_uuid())
                 PLACING substring(int8send((extract(epoch FROM ts) * 1000)::bigint) FROM 3)
                 FROM 1 FOR 6) AS b) AS r
    $$";

/// Runs `seed-history` and prints what it wrote.
pub async fn run(args: SeedHistoryArgs) -> anyhow::Result<()> {
    let report = seed(&args).await?;
    println!(
        "seed-history: {} tasks, {} review votes and {} gold votes, {} escalations over {} months \
         in {:.1} s ({:.0} votes/s); the database grew by {:.2} GiB",
        report.tasks,
        report.votes,
        report.gold_votes,
        report.escalations,
        args.months,
        report.secs,
        (report.votes + report.gold_votes) as f64 / report.secs.max(1e-9),
        report.bytes as f64 / (1u64 << 30) as f64,
    );
    Ok(())
}

/// Fills the database of `args`; returns what it wrote.
pub async fn seed(args: &SeedHistoryArgs) -> anyhow::Result<SeedReport> {
    anyhow::ensure!(args.votes >= 3, "--votes must be at least 3");
    anyhow::ensure!(
        (1..=120).contains(&args.months),
        "--months must be 1 to 120"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.counterfeit_share),
        "--counterfeit-share must be between 0 and 1"
    );
    let volunteers = args
        .volunteers
        .unwrap_or((args.votes / 2_000).clamp(50, 50_000));
    anyhow::ensure!(volunteers >= 10, "--volunteers must be at least 10");
    let pool = spotcheck_platform::db::connect(&args.database_url, 2).await?;
    spotcheck_platform::db::migrate(&pool).await?;
    // Every month the history writes gets its partitions first (the gold tasks
    // are the oldest, 400 days back), as the coordinator would have made them.
    let now = chrono::Utc::now();
    let days = (30 * args.months + 2).max(400);
    let mut month = CalendarMonth::of(now - chrono::Duration::days(days));
    while month <= CalendarMonth::of(now).plus(2) {
        for table in Table::ALL {
            spotcheck_platform::partitions::ensure_month(&pool, table, month).await?;
        }
        month = month.plus(1);
    }
    pool.close().await;
    let mut db = PgConnection::connect(&args.database_url)
        .await
        .context("connecting to the database")?;
    let started = Instant::now();
    let size_before = database_size(&mut db).await?;
    sqlx::query(UUID7_FN).execute(&mut db).await?;
    // Each run writes under its own prefix, so a database can take several.
    let run: String = sqlx::query_scalar("SELECT substr(md5(random()::text), 1, 6)")
        .fetch_one(&mut db)
        .await?;
    people(&mut db, &run, volunteers).await?;
    let gold = gold_tasks(&mut db, &run).await?;
    let tasks_total = args.votes / 3;
    let mut report = SeedReport {
        tasks: 0,
        votes: 0,
        gold_votes: 0,
        escalations: 0,
        secs: 0.0,
        bytes: 0,
    };
    for month in 0..args.months {
        let first = tasks_total * month / args.months;
        let last = tasks_total * (month + 1) / args.months;
        let written = month_of_history(
            &mut db,
            &Month {
                run: &run,
                first,
                last,
                months_ago: args.months - month,
                volunteers,
                counterfeit_share: args.counterfeit_share,
                gold,
            },
        )
        .await?;
        report.tasks += written.0;
        report.votes += written.1;
        report.gold_votes += written.2;
        report.escalations += written.3;
        eprintln!(
            "seed-history: month {}/{}: {} votes so far, {:.0} s",
            month + 1,
            args.months,
            report.votes + report.gold_votes,
            started.elapsed().as_secs_f64()
        );
    }
    // What the aggregator keeps per volunteer as it accounts their votes.
    sqlx::query(
        "INSERT INTO volunteer_reliability (volunteer_id, confusion, stats, votes_total)
         SELECT h.id, $1, '{}', coalesce(c.n, 0)
         FROM hist_volunteers h
         LEFT JOIN (SELECT volunteer_id, count(*) AS n FROM votes GROUP BY volunteer_id) c
                ON c.volunteer_id = h.id
         ON CONFLICT (volunteer_id) DO UPDATE SET votes_total = EXCLUDED.votes_total",
    )
    .bind(serde_json::to_value(Confusion::prior(
        &ReliabilityPrior::default(),
    ))?)
    .execute(&mut db)
    .await?;
    // The history is stamped in the past, behind the marks of the running
    // counts the staff figures read: they start again from nothing, and the
    // coordinator's next run counts every row once.
    spotcheck_platform::figures::restart_running_counts(&mut db).await?;
    // As a database months old would be: vacuumed (pages all-visible, so the
    // first reads and autovacuum do not rewrite them all at once) and analyzed.
    sqlx::query("VACUUM (ANALYZE)").execute(&mut db).await?;
    report.secs = started.elapsed().as_secs_f64();
    report.bytes = database_size(&mut db).await? - size_before;
    Ok(report)
}

async fn database_size(db: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(db)
        .await
}

/// The volunteers (numbered 0 to n-1 by `seq`, each with an accuracy) and
/// three staff members.
async fn people(db: &mut PgConnection, run: &str, volunteers: i64) -> sqlx::Result<()> {
    sqlx::query(
        "CREATE TEMP TABLE hist_volunteers (seq bigint PRIMARY KEY, id uuid NOT NULL,
             accuracy float8 NOT NULL)",
    )
    .execute(&mut *db)
    .await?;
    sqlx::query("CREATE TEMP TABLE hist_staff (seq int PRIMARY KEY, id uuid NOT NULL)")
        .execute(&mut *db)
        .await?;
    sqlx::query(
        "INSERT INTO hist_volunteers
         SELECT i, gen_random_uuid(),
                -- most are good, a tenth are careless, a few answer at random
                CASE WHEN i % 50 = 0 THEN 0.5 WHEN i % 10 = 0 THEN 0.7 ELSE 0.85 + random() * 0.13 END
         FROM generate_series(0, $1 - 1) i",
    )
    .bind(volunteers)
    .execute(&mut *db)
    .await?;
    sqlx::query("INSERT INTO hist_staff SELECT i, gen_random_uuid() FROM generate_series(0, 2) i")
        .execute(&mut *db)
        .await?;
    sqlx::query(
        "INSERT INTO users (id, username, password_hash, role, created_at)
         SELECT id, 'hist-' || $1 || '-vol-' || seq, '!', 'volunteer', now() - interval '400 days'
         FROM hist_volunteers
         UNION ALL
         SELECT id, 'hist-' || $1 || '-staff-' || seq, '!', 'staff', now() - interval '400 days'
         FROM hist_staff",
    )
    .bind(run)
    .execute(&mut *db)
    .await?;
    Ok(())
}

/// 200 gold tasks with known answers (a fifth counterfeit); returns how many.
async fn gold_tasks(db: &mut PgConnection, run: &str) -> sqlx::Result<i64> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO listings (listing_id, version, seller_id, brand, category, region,
             seller_risk_tier, price, currency, title, description, image_urls, signals,
             first_seen_at, updated_at)
         SELECT 'hist-' || $1 || '-gold-' || i, 1, 'hist-gold-seller', 'Aurelia',
                ({CATEGORIES}::text[])[1 + i % 8], ({REGIONS}::text[])[1 + i % 4], 'standard',
                100 + i, 'USD', 'Reference listing ' || i, 'A listing with a known answer',
                '[]', '{{}}', now() - interval '400 days', now() - interval '400 days'
         FROM generate_series(0, 199) i"
    )))
    .bind(run)
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "CREATE TEMP TABLE hist_gold (seq bigint PRIMARY KEY, id uuid NOT NULL,
             listing_id text NOT NULL, answer text NOT NULL)",
    )
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "INSERT INTO hist_gold
         SELECT i, pg_temp.uuid7(now() - interval '400 days'), 'hist-' || $1 || '-gold-' || i,
                CASE WHEN i % 5 = 0 THEN 'counterfeit' ELSE 'genuine' END
         FROM generate_series(0, 199) i",
    )
    .bind(run)
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "INSERT INTO tasks (id, listing_id, listing_version, round, state, votes_required,
             votes_counted, inclusion_probability, stratum, sampling, created_at, kind)
         SELECT id, listing_id, 1, -1, 'open', 1, 0, 1, 'gold', '{}', now() - interval '400 days', 'gold'
         FROM hist_gold",
    )
    .execute(&mut *db)
    .await?;
    sqlx::query(
        "INSERT INTO gold_answers (task_id, answer, created_at)
         SELECT id, answer, now() - interval '400 days' FROM hist_gold",
    )
    .execute(&mut *db)
    .await?;
    Ok(200)
}

/// One month's slice of the history: tasks `first..last` of the run.
struct Month<'a> {
    run: &'a str,
    first: i64,
    last: i64,
    months_ago: i64,
    volunteers: i64,
    counterfeit_share: f64,
    gold: i64,
}

/// Writes a month; returns tasks, review votes, gold votes and escalations written.
async fn month_of_history(
    db: &mut PgConnection,
    m: &Month<'_>,
) -> anyhow::Result<(i64, i64, i64, i64)> {
    let mut tx = db.begin().await?;
    // The month's tasks: when each was created, and the hidden truth.
    sqlx::query(
        "CREATE TEMP TABLE hist_month (k bigint PRIMARY KEY, id uuid NOT NULL,
             at timestamptz NOT NULL, listing_id text NOT NULL, counterfeit bool NOT NULL)
         ON COMMIT DROP",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO hist_month
         SELECT k, pg_temp.uuid7(at), at, 'hist-' || $1 || '-' || k, random() < $5
         FROM (SELECT k, now() - interval '2 days' - make_interval(days => ($4::int * 30))
                     + make_interval(secs => random() * 30 * 86400) AS at
               FROM generate_series($2::bigint, $3::bigint - 1) k) s",
    )
    .bind(m.run)
    .bind(m.first)
    .bind(m.last)
    .bind(m.months_ago as i32)
    .bind(m.counterfeit_share)
    .execute(&mut *tx)
    .await?;
    let tasks = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO listings (listing_id, version, seller_id, brand, category, region,
             seller_risk_tier, price, currency, title, description, image_urls, signals,
             first_seen_at, updated_at, last_round)
         SELECT listing_id, 1, 'hist-seller-' || (k % 20000),
                (ARRAY['Aurelia','Veloce','Monarch','Kestrel','Orion'])[1 + k % 5],
                ({CATEGORIES}::text[])[1 + k % 8], ({REGIONS}::text[])[1 + (k / 8) % 4],
                CASE WHEN k % 7 = 0 THEN 'high' ELSE 'standard' END,
                round((CASE WHEN counterfeit THEN 40 ELSE 150 END * (0.5 + random()))::numeric, 2),
                'USD', 'Listing ' || k, 'A listing of the history', '[]',
                CASE WHEN counterfeit AND random() < 0.3 THEN '{{\"brand_complaint\": true}}'::jsonb
                     ELSE '{{}}'::jsonb END,
                at, at, floor(extract(epoch FROM at) / 86400)::bigint
         FROM hist_month"
    )))
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    sqlx::query(
        "INSERT INTO tasks (id, listing_id, listing_version, round, state, votes_required,
             votes_counted, inclusion_probability, stratum, sampling, created_at, decided_at, kind)
         SELECT h.id, h.listing_id, 1, l.last_round, 'decided', 3, 3,
                CASE WHEN l.seller_risk_tier = 'high' THEN 0.5 ELSE 0.05 END,
                l.category || '/' || l.region || '/' || l.seller_risk_tier,
                jsonb_build_object('probability', CASE WHEN l.seller_risk_tier = 'high' THEN 0.5 ELSE 0.05 END,
                                   'rule_index', NULL, 'base_rate', CASE WHEN l.seller_risk_tier = 'high' THEN 0.5 ELSE 0.05 END,
                                   'boosts', '{}'::jsonb),
                h.at, h.at + interval '2 hours', 'review'
         FROM hist_month h JOIN listings l ON l.listing_id = h.listing_id",
    )
    .execute(&mut *tx)
    .await?;
    // Three votes a task from three different volunteers, each right with their
    // accuracy, unsure a twentieth of the time.
    let votes = sqlx::query(
        "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence, created_at,
             accounted_at, seconds_taken)
         SELECT pg_temp.uuid7(v.at), v.id, hv.id,
                CASE WHEN v.r < 0.05 THEN 'unsure'
                     WHEN (v.r < hv.accuracy) = v.counterfeit THEN 'counterfeit'
                     ELSE 'genuine' END,
                CASE WHEN (v.r < hv.accuracy) = v.counterfeit AND v.r >= 0.05
                     THEN '[\"logo\", \"price\"]'::jsonb ELSE '[]'::jsonb END,
                1, v.at, v.at, 10 + v.r * 50
         FROM (SELECT h.id, h.counterfeit, h.at + make_interval(mins => 5 + j * 20) AS at,
                      (h.k * 3 + j * ($1 / 3 + 1)) % $1 AS who, random() AS r
               FROM hist_month h CROSS JOIN generate_series(0, 2) j) v
         JOIN hist_volunteers hv ON hv.seq = v.who",
    )
    .bind(m.volunteers)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    // One decision a task: the majority of its decisive votes.
    sqlx::query(
        "INSERT INTO decisions (task_id, outcome, tally, decided_at, posterior)
         SELECT t.id,
                CASE WHEN c.counterfeit > c.genuine THEN 'counterfeit'
                     WHEN c.genuine > c.counterfeit THEN 'genuine' ELSE 'uncertain' END,
                jsonb_build_object('genuine', c.genuine, 'counterfeit', c.counterfeit,
                                   'unsure', c.unsure, 'weighing', 0),
                t.decided_at, NULL
         FROM hist_month h JOIN tasks t ON t.id = h.id
         CROSS JOIN LATERAL (
             SELECT count(*) FILTER (WHERE verdict = 'genuine') AS genuine,
                    count(*) FILTER (WHERE verdict = 'counterfeit') AS counterfeit,
                    count(*) FILTER (WHERE verdict = 'unsure') AS unsure
             FROM votes v WHERE v.task_id = t.id) c",
    )
    .execute(&mut *tx)
    .await?;
    // Counterfeit decisions go to staff, who confirm the true ones.
    let escalations = sqlx::query(
        "INSERT INTO escalations (id, task_id, listing_id, status, reason, created_at,
             decided_by, decided_at, decision_note)
         SELECT pg_temp.uuid7(d.decided_at), d.task_id, h.listing_id,
                CASE WHEN h.counterfeit THEN 'confirmed' ELSE 'dismissed' END, 'counterfeit',
                d.decided_at, (SELECT id FROM hist_staff WHERE seq = h.k % 3),
                d.decided_at + interval '1 day', 'reviewed'
         FROM hist_month h JOIN decisions d ON d.task_id = h.id
         WHERE d.outcome = 'counterfeit'",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    sqlx::query(
        "UPDATE tasks t SET state = 'escalated' FROM escalations e, hist_month h
                 WHERE e.task_id = t.id AND h.id = t.id",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO audit_log (actor_id, action, subject, old, new, at)
         SELECT NULL, 'task.decide', 'task:' || d.task_id, NULL,
                jsonb_build_object('outcome', d.outcome), d.decided_at
         FROM hist_month h JOIN decisions d ON d.task_id = h.id
         UNION ALL
         SELECT e.decided_by, 'escalation.decide', 'escalation:' || e.id,
                jsonb_build_object('status', 'open'), jsonb_build_object('status', e.status),
                e.decided_at
         FROM hist_month h JOIN escalations e ON e.task_id = h.id",
    )
    .execute(&mut *tx)
    .await?;
    // Gold answers: each volunteer answers a few of the gold tasks this month
    // (a volunteer answers each gold task once in all).
    let gold_votes = sqlx::query(
        "INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, lease_fence, created_at,
             accounted_at, seconds_taken)
         SELECT pg_temp.uuid7(g.at), hg.id, hv.id,
                CASE WHEN g.r < hv.accuracy THEN hg.answer
                     WHEN hg.answer = 'genuine' THEN 'counterfeit' ELSE 'genuine' END,
                '[]', 1, g.at, g.at, 10 + g.r * 50
         FROM (SELECT hv.seq, ($2 * 2 + n) % $3 AS gold_seq, random() AS r,
                      now() - interval '2 days' - make_interval(days => ($1::int * 30))
                          + make_interval(secs => random() * 30 * 86400) AS at
               FROM hist_volunteers hv CROSS JOIN generate_series(0, 1) n) g
         JOIN hist_volunteers hv ON hv.seq = g.seq
         JOIN hist_gold hg ON hg.seq = (g.gold_seq + g.seq) % $3
         ON CONFLICT ON CONSTRAINT votes_task_volunteer_key DO NOTHING",
    )
    .bind(m.months_ago as i32)
    .bind(m.months_ago)
    .bind(m.gold)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    tx.commit().await?;
    Ok((tasks, votes, gold_votes, escalations))
}
