//! Periodic recalibration: a Dawid–Skene EM over the recent decisive votes
//! re-estimates every volunteer's confusion, and a collusion search flags
//! accounts that vote together far more often than chance.
//!
//! Each volunteer's confusion is rebuilt as the prior, plus every answer whose
//! truth is known and already applied (gold tasks, staff outcomes and test
//! purchases, all time), plus the EM's soft labels for their other recent
//! review votes; the rows are locked while they are rebuilt. One replica runs
//! it at a time (a transaction-scoped advisory lock); the others skip that turn.

use spotcheck_shared::Verdict;
use spotcheck_shared::abuse::{CollusionParams, collusion_groups};
use spotcheck_shared::dawid_skene::{DawidSkeneOptions, WarmStart, dawid_skene, dawid_skene_warm};
use spotcheck_shared::reliability::{Confusion, ReliabilityPrior};
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What one recalibration did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Decisive votes the EM saw.
    pub votes: u64,
    /// Tasks they were on.
    pub tasks: u64,
    /// Volunteers whose confusion was rebuilt.
    pub volunteers: u64,
    /// EM iterations.
    pub iterations: u32,
    /// Share of decided tasks whose EM label matches the decision.
    pub agreement: Option<f64>,
    /// New collusion groups flagged.
    pub collusion_groups: u64,
    /// Whether the EM started from the previous fit's confusions.
    pub warm_started: bool,
}

/// The previous fit's confusion of each worker (by dense index), as a warm
/// start: `None` when no worker of the window has one.
async fn previous_fit(
    conn: &mut sqlx::PgConnection,
    workers: &[Uuid],
) -> sqlx::Result<Option<WarmStart>> {
    let rows: Vec<(Uuid, f64, f64)> = sqlx::query_as(
        "SELECT volunteer_id, (recalibrated->>'genuine_right')::float8,
                (recalibrated->>'counterfeit_right')::float8
         FROM volunteer_reliability
         WHERE volunteer_id = ANY($1) AND recalibrated ? 'genuine_right'
           AND recalibrated ? 'counterfeit_right'",
    )
    .bind(workers)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let at: HashMap<Uuid, usize> = workers.iter().enumerate().map(|(i, w)| (*w, i)).collect();
    let mut confusions = vec![0.0; workers.len() * 4];
    for (volunteer, genuine_right, counterfeit_right) in rows {
        // Per true label (genuine, counterfeit), P(observed genuine), P(observed counterfeit).
        let m = [
            genuine_right,
            1.0 - genuine_right,
            1.0 - counterfeit_right,
            counterfeit_right,
        ];
        let i = at[&volunteer];
        confusions[i * 4..i * 4 + 4].copy_from_slice(&m);
    }
    Ok(Some(WarmStart { confusions }))
}

/// Gives each distinct key a dense index.
#[derive(Default)]
struct Index(HashMap<Uuid, u32>, Vec<Uuid>);

impl Index {
    fn of(&mut self, id: Uuid) -> u32 {
        *self.0.entry(id).or_insert_with(|| {
            self.1.push(id);
            (self.1.len() - 1) as u32
        })
    }
}

type VoteRow = (Uuid, Uuid, String, Option<String>);
type KnownRow = (Uuid, String, bool, i64);

/// Runs one recalibration over the last `days` days of votes; `None` when
/// another replica holds the lock.
pub async fn recalibrate(pool: &PgPool, days: u32) -> anyhow::Result<Option<Summary>> {
    recalibrate_from(pool, days, Start::Warm).await
}

/// Where the EM starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From the previous fit's confusions, where there is one (the periodic job).
    Warm,
    /// From the majority vote, as if there had been no previous fit.
    Cold,
}

/// [`recalibrate`] with the EM started as `start` says.
pub async fn recalibrate_from(
    pool: &PgPool,
    days: u32,
    start: Start,
) -> anyhow::Result<Option<Summary>> {
    recalibrate_window(pool, days, chrono::Utc::now(), start).await
}

/// [`recalibrate_from`] over the `days` days of votes up to `until` (the
/// recalibration benchmark fits an earlier window to warm-start from).
pub async fn recalibrate_window(
    pool: &PgPool,
    days: u32,
    until: chrono::DateTime<chrono::Utc>,
    start: Start,
) -> anyhow::Result<Option<Summary>> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('spotcheck.recalibrate'))")
            .fetch_one(&mut *tx)
            .await?;
    if !locked {
        return Ok(None);
    }
    // Review votes of the window (of volunteers who count) with each task's decision.
    let votes: Vec<VoteRow> = sqlx::query_as(
        "SELECT v.task_id, v.volunteer_id, v.verdict, d.outcome
         FROM votes v JOIN tasks t ON t.id = v.task_id
         LEFT JOIN decisions d ON d.task_id = v.task_id
         LEFT JOIN volunteer_reliability r ON r.volunteer_id = v.volunteer_id
         WHERE t.kind = 'review' AND v.verdict <> 'unsure' AND coalesce(r.counting, true)
           -- a task staff settled, or a vote a test purchase scored, is a
           -- known truth below, not an EM label
           AND NOT EXISTS (SELECT 1 FROM escalations e WHERE e.task_id = v.task_id
                           AND e.status IN ('confirmed', 'dismissed'))
           AND NOT EXISTS (SELECT 1 FROM test_purchases p WHERE p.listing_id = t.listing_id
                           AND p.created_at <= v.scored_at)
           AND v.created_at > $2 - make_interval(days => $1) AND v.created_at <= $2",
    )
    .bind(days as i32)
    .bind(until)
    .fetch_all(&mut *tx)
    .await?;
    let (mut tasks, mut workers) = (Index::default(), Index::default());
    let mut triples = Vec::with_capacity(votes.len());
    let mut verdicts = Vec::with_capacity(votes.len());
    for (task, volunteer, verdict, _) in &votes {
        let label = u8::from(verdict == "counterfeit");
        let (t, w) = (tasks.of(*task), workers.of(*volunteer));
        triples.push((t, w, label));
        verdicts.push((
            t,
            w,
            if label == 1 {
                Verdict::Counterfeit
            } else {
                Verdict::Genuine
            },
        ));
    }
    let mut summary = Summary {
        votes: triples.len() as u64,
        tasks: tasks.1.len() as u64,
        ..Summary::default()
    };
    if triples.is_empty() {
        return Ok(Some(summary));
    }
    let warm = match start {
        Start::Warm => previous_fit(&mut tx, &workers.1).await?,
        Start::Cold => None,
    };
    summary.warm_started = warm.is_some();
    let fit = match &warm {
        Some(warm) => dawid_skene_warm(&triples, 2, &DawidSkeneOptions::default(), warm)?,
        None => dawid_skene(&triples, 2, &DawidSkeneOptions::default())?,
    };
    summary.iterations = fit.iterations;
    // Agreement of the EM labels with the decisions taken.
    let decided: HashMap<u32, bool> = votes
        .iter()
        .filter_map(|(task, _, _, outcome)| {
            let o = outcome.as_deref()?;
            (o != "uncertain").then(|| (tasks.0[task], o == "counterfeit"))
        })
        .collect();
    if !decided.is_empty() {
        let same = decided
            .iter()
            .filter(|(t, c)| fit.labels[**t as usize] == Some(u8::from(**c)))
            .count();
        summary.agreement = Some(same as f64 / decided.len() as f64);
    }
    // From here on the rows are locked (in id order, as every writer takes them),
    // so no gold answer or staff outcome applied meanwhile is lost or counted twice.
    let mut em_workers = workers.1.clone();
    em_workers.sort();
    sqlx::query(
        "INSERT INTO volunteer_reliability (volunteer_id, confusion, stats)
         SELECT id, $2, '{}' FROM unnest($1::uuid[]) AS u(id) ORDER BY id
         ON CONFLICT (volunteer_id) DO NOTHING",
    )
    .bind(&em_workers)
    .bind(serde_json::to_value(Confusion::prior(
        &ReliabilityPrior::default(),
    ))?)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT volunteer_id FROM volunteer_reliability ORDER BY volunteer_id FOR UPDATE")
        .execute(&mut *tx)
        .await?;
    // Known truths applied so far: gold answers, staff outcomes and test purchases, all time.
    // Those of the votes retention dropped were rolled up before the drop.
    let known: Vec<KnownRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT volunteer_id, verdict, truth, sum(n)::bigint FROM (
             SELECT volunteer_id, verdict, truth, count(*) AS n FROM ({}) live GROUP BY 1, 2, 3
             UNION ALL
             SELECT volunteer_id, verdict, truth, n FROM known_truth_rollups) k
         GROUP BY 1, 2, 3",
        spotcheck_platform::partitions::known_truths_sql("votes")
    )))
    .fetch_all(&mut *tx)
    .await?;
    let prior = ReliabilityPrior::default();
    let mut rebuilt: HashMap<Uuid, Confusion> = HashMap::new();
    for (volunteer, verdict, truth, n) in known {
        rebuilt
            .entry(volunteer)
            .or_insert_with(|| Confusion::prior(&prior))
            .observe(truth, verdict.parse().unwrap_or(Verdict::Unsure), n as f64);
    }
    for (t, w, label) in &triples {
        let volunteer = workers.1[*w as usize];
        let posterior = fit.posterior(*t);
        let verdict = if *label == 1 {
            Verdict::Counterfeit
        } else {
            Verdict::Genuine
        };
        let confusion = rebuilt
            .entry(volunteer)
            .or_insert_with(|| Confusion::prior(&prior));
        confusion.observe(false, verdict, posterior[0]);
        confusion.observe(true, verdict, posterior[1]);
    }
    let mut ids: Vec<&Uuid> = rebuilt.keys().collect();
    ids.sort();
    for volunteer in ids {
        let confusion = &rebuilt[volunteer];
        let em = workers.0.get(volunteer).map(|w| {
            let m = &fit.confusions[*w as usize * 4..*w as usize * 4 + 4];
            serde_json::json!({"genuine_right": m[0], "counterfeit_right": m[3]})
        });
        sqlx::query(
            "INSERT INTO volunteer_reliability (volunteer_id, confusion, stats, recalibrated)
             VALUES ($1, $2, '{}', $3)
             ON CONFLICT (volunteer_id) DO UPDATE SET confusion = EXCLUDED.confusion,
                 recalibrated = EXCLUDED.recalibrated, updated_at = now()",
        )
        .bind(volunteer)
        .bind(serde_json::to_value(confusion)?)
        .bind(em)
        .execute(&mut *tx)
        .await?;
    }
    summary.volunteers = rebuilt.len() as u64;
    for group in collusion_groups(&verdicts, &CollusionParams::default()) {
        let mut members: Vec<Uuid> = group.iter().map(|w| workers.1[*w as usize]).collect();
        members.sort();
        let added = sqlx::query(
            "INSERT INTO collusion_flags (members) VALUES ($1)
             ON CONFLICT (members) DO NOTHING",
        )
        .bind(&members)
        .execute(&mut *tx)
        .await?;
        if added.rows_affected() > 0 {
            spotcheck_platform::enforcement::audit(
                &mut tx,
                None,
                "collusion.flag",
                "collusion",
                None,
                serde_json::json!({"members": members}),
            )
            .await?;
        }
        summary.collusion_groups += added.rows_affected();
    }
    sqlx::query(
        "INSERT INTO recalibrations (votes, tasks, volunteers, iterations, seconds, agreement)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(summary.votes as i64)
    .bind(summary.tasks as i64)
    .bind(summary.volunteers as i64)
    .bind(summary.iterations as i32)
    .bind(started.elapsed().as_secs_f64())
    .bind(summary.agreement)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("spotcheck_recalibrations_total").increment(1);
    tracing::info!(
        ?summary,
        secs = started.elapsed().as_secs_f64(),
        "recalibrated volunteer reliability"
    );
    Ok(Some(summary))
}

/// Recalibrates every `every` until `cancel` (the first run after one interval).
pub async fn run(
    pool: PgPool,
    every: Duration,
    days: u32,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
        let started = std::time::Instant::now();
        match recalibrate(&pool, days).await {
            Ok(_) => crate::ops::job_ran("recalibration", started),
            Err(e) => tracing::warn!(error = %e, "recalibration failed; will retry next interval"),
        }
    }
}
