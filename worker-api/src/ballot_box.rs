//! Votes are group-committed: concurrent vote requests wait in one queue, and a
//! few writers each take everything waiting (up to a batch) and commit it in
//! one transaction, so a vote costs a share of a handful of statements instead
//! of a transaction of its own, and the aggregator is woken once a batch.
//!
//! A batch, in order:
//! 1. locks the tasks voted on, in id order (concurrent batches cannot deadlock);
//! 2. finds earlier votes of the same volunteers on them: a repeat of the same
//!    vote is answered as the first (no charge, no lease needed), a different
//!    one is refused `already_voted`;
//! 3. refuses votes on closed tasks, and review votes of volunteers who do not
//!    count, as the record says (their votes never add slots);
//! 4. fences the rest in Redis in one script ([`LeaseStore::seal`]): the lease
//!    must be the voter's current, unexpired one and the daily quota unspent;
//!    the quota is charged there, and the lease is held for the commit; the
//!    slots a task still has go to sealed votes only, in arrival order;
//! 5. inserts the votes, bumps the tasks' counts, writes one outbox event for
//!    the batch, and commits; only then does any request get its `201`;
//! 6. ends the leases in Redis (voters move from the leases to the voted set).
//!
//! If the commit fails, the quota charges are given back and every vote of the
//! batch is answered 503; the leases stay, so the votes can simply be sent again.
//! The unique (task, volunteer) key and the count's CHECK stay the last guard.

use crate::error::ApiError;
use axum::http::StatusCode;
use spotcheck_platform::lease::{LeaseEnd, LeaseError, LeaseStore, SealRequest};
use spotcheck_platform::outbox;
use spotcheck_shared::lease_token::LeaseToken;
use spotcheck_shared::messages::{MESSAGE_VERSION, Topic, VoteRecorded, VotesRecorded};
use spotcheck_shared::{TaskId, UserId, Verdict};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// How long a sealed lease is held for its commit.
const SEAL_HOLD_MS: u64 = 30_000;

/// One vote request.
#[derive(Debug, Clone)]
pub struct Ballot {
    /// The task voted on.
    pub task: TaskId,
    /// The voter.
    pub volunteer: UserId,
    /// Whether the voter's votes count (from their standing).
    pub counting: bool,
    /// The lease token sent.
    pub token: LeaseToken,
    /// The verdict.
    pub verdict: Verdict,
    /// Reason codes.
    pub reasons: Vec<String>,
    /// Optional note.
    pub note: Option<String>,
    /// The voter's quota counter for today and its limit, if there is a quota.
    pub quota: Option<(String, u32)>,
}

/// A vote that was recorded (now, or by an earlier identical request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// The vote's id.
    pub vote_id: Uuid,
    /// On a gold task, its known answer.
    pub gold_answer: Option<Verdict>,
}

/// Why a vote was not recorded.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// The lease check or the quota refused it.
    Lease(LeaseError),
    /// The task no longer needs votes.
    TaskClosed,
    /// The volunteer voted differently before.
    AlreadyVoted,
    /// The volunteer's votes do not count: review tasks are closed to them.
    NotCounting,
    /// The batch could not be committed.
    Failed(Arc<anyhow::Error>),
}

impl Refusal {
    /// The API's answer.
    pub fn into_api(self) -> ApiError {
        match self {
            Refusal::Lease(e) => crate::claim::lease_refusal(e),
            Refusal::TaskClosed => ApiError::new(
                StatusCode::CONFLICT,
                "task_closed",
                "this task no longer needs votes",
            ),
            Refusal::AlreadyVoted => ApiError::new(
                StatusCode::CONFLICT,
                "already_voted",
                "you already voted on this task with a different verdict",
            ),
            Refusal::NotCounting => ApiError::new(
                StatusCode::FORBIDDEN,
                "not_counting",
                "your votes on review tasks are paused until staff review your account; the task was handed back",
            ),
            Refusal::Failed(e) => ApiError::unavailable(anyhow::anyhow!("{e:#}")),
        }
    }
}

type Answer = Result<Receipt, Refusal>;
type Pending = (Ballot, oneshot::Sender<Answer>);

/// How the writers work.
#[derive(Debug, Clone)]
pub struct BallotConfig {
    /// Votes a batch takes at most.
    pub max_batch: usize,
    /// Writers committing batches side by side.
    pub writers: usize,
    /// A pause before the fence, to test what a slow commit does (0 in service).
    pub fence_delay: Duration,
}

/// The queue of votes waiting for a batch.
#[derive(Clone)]
pub struct BallotBox {
    tx: mpsc::Sender<Pending>,
    stop: CancellationToken,
    writers: TaskTracker,
}

impl BallotBox {
    /// Starts the writers; they run until [`BallotBox::stop`] (or until every
    /// handle is dropped).
    pub fn start(pool: PgPool, leases: LeaseStore, config: BallotConfig) -> Self {
        let (tx, rx) = mpsc::channel::<Pending>(config.max_batch.max(1) * 16);
        let rx = Arc::new(Mutex::new(rx));
        let (stop, writers) = (CancellationToken::new(), TaskTracker::new());
        for _ in 0..config.writers.max(1) {
            let writer = Writer {
                pool: pool.clone(),
                leases: leases.clone(),
                config: config.clone(),
            };
            writers.spawn(writer.run(rx.clone(), stop.clone()));
        }
        writers.close();
        Self { tx, stop, writers }
    }

    /// Stops the writers once every vote already queued is committed and
    /// answered, and waits for them (called at shutdown, after the server
    /// stopped taking requests).
    pub async fn stop(&self) {
        self.stop.cancel();
        self.writers.wait().await;
    }

    /// Records a vote: answers once its batch committed (or refused it).
    pub async fn cast(&self, ballot: Ballot) -> Result<Receipt, ApiError> {
        let (answer, wait) = oneshot::channel();
        self.tx
            .send((ballot, answer))
            .await
            .map_err(|_| ApiError::unavailable(anyhow::anyhow!("the vote writers stopped")))?;
        match wait.await {
            Ok(answer) => answer.map_err(Refusal::into_api),
            Err(_) => Err(ApiError::unavailable(anyhow::anyhow!(
                "a vote writer stopped"
            ))),
        }
    }
}

struct Writer {
    pool: PgPool,
    leases: LeaseStore,
    config: BallotConfig,
}

impl Writer {
    async fn run(self, rx: Arc<Mutex<mpsc::Receiver<Pending>>>, stop: CancellationToken) {
        loop {
            let batch = {
                let mut rx = rx.lock().await;
                // Once stopped, what is queued is still written; then the writer ends.
                let first = tokio::select! {
                    biased;
                    next = rx.recv() => next,
                    () = stop.cancelled() => rx.try_recv().ok(),
                };
                let Some(first) = first else {
                    return;
                };
                let mut batch = vec![first];
                while batch.len() < self.config.max_batch {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                batch
            };
            metrics::histogram!("spotcheck_vote_batch_size").record(batch.len() as f64);
            self.commit(batch).await;
        }
    }

    /// Commits one batch and answers every request in it.
    async fn commit(&self, batch: Vec<Pending>) {
        let (ballots, waiters): (Vec<Ballot>, Vec<oneshot::Sender<Answer>>) =
            batch.into_iter().unzip();
        let answers = match self.decide(&ballots).await {
            Ok(answers) => answers,
            Err(e) => {
                tracing::warn!(error = %e, votes = ballots.len(), "a vote batch failed");
                let e = Arc::new(e);
                vec![Err(Refusal::Failed(e)); ballots.len()]
            }
        };
        for (waiter, answer) in waiters.into_iter().zip(answers) {
            let outcome = match &answer {
                Ok(_) => "counted",
                Err(Refusal::Failed(_)) => "failed",
                Err(_) => "refused",
            };
            metrics::counter!("spotcheck_votes_total", "outcome" => outcome).increment(1);
            // A request that went away still had its vote recorded.
            let _ = waiter.send(answer);
        }
    }

    async fn decide(&self, ballots: &[Ballot]) -> anyhow::Result<Vec<Answer>> {
        let mut answers: Vec<Option<Answer>> = vec![None; ballots.len()];
        // One candidate per (task, volunteer); repeats inside the batch follow it.
        let mut first_of: HashMap<(TaskId, UserId), usize> = HashMap::new();
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        for (i, b) in ballots.iter().enumerate() {
            match first_of.get(&(b.task, b.volunteer)) {
                Some(&first) => repeats.push((i, first)),
                None => {
                    first_of.insert((b.task, b.volunteer), i);
                }
            }
        }
        let candidates: Vec<usize> = {
            let mut c: Vec<usize> = first_of.values().copied().collect();
            c.sort_unstable();
            c
        };
        let mut tx = self.pool.begin().await?;
        let mut task_ids: Vec<Uuid> = candidates.iter().map(|&i| ballots[i].task.0).collect();
        task_ids.sort_unstable();
        task_ids.dedup();
        let rows: Vec<(Uuid, String, String, i32, i32, Option<String>)> = sqlx::query_as(
            "SELECT t.id, t.state, t.kind, t.votes_required, t.votes_counted, g.answer
             FROM tasks t LEFT JOIN gold_answers g ON g.task_id = t.id
             WHERE t.id = ANY($1) ORDER BY t.id FOR UPDATE OF t",
        )
        .bind(&task_ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut tasks: HashMap<Uuid, TaskState> = rows
            .into_iter()
            .map(|(id, state, kind, required, counted, gold)| {
                let gold_answer = gold.and_then(|a| a.parse().ok());
                let open = state == "open";
                let left = if kind == "gold" {
                    i32::MAX
                } else {
                    required - counted
                };
                (
                    id,
                    TaskState {
                        open,
                        gold: kind == "gold",
                        left,
                        gold_answer,
                    },
                )
            })
            .collect();
        let earlier = earlier_votes(&mut tx, ballots, &candidates).await?;
        // Whether a voter counts is read from the record too: a standing cached
        // before an abuse stop cannot let their review votes in.
        let stopped = not_counting(&mut tx, ballots, &candidates).await?;
        let mut to_seal: Vec<usize> = Vec::new();
        let mut repeated: Vec<usize> = Vec::new();
        let mut to_hand_back: Vec<usize> = Vec::new();
        for &i in &candidates {
            let b = &ballots[i];
            let gold_answer = tasks.get(&b.task.0).and_then(|t| t.gold_answer);
            if let Some((id, verdict, reasons)) = earlier.get(&(b.task, b.volunteer)) {
                // Any lease they hold on it (granted after Redis lost its set of
                // voters) ends with the answer.
                repeated.push(i);
                answers[i] = Some(if *verdict == b.verdict && *reasons == b.reasons {
                    Ok(Receipt {
                        vote_id: *id,
                        gold_answer,
                    })
                } else {
                    Err(Refusal::AlreadyVoted)
                });
                continue;
            }
            let Some(task) = tasks.get_mut(&b.task.0) else {
                answers[i] = Some(Err(Refusal::Lease(LeaseError::NotFound)));
                continue;
            };
            if !task.open || task.left <= 0 {
                answers[i] = Some(Err(Refusal::TaskClosed));
                to_hand_back.push(i);
                continue;
            }
            if !task.gold && (!b.counting || stopped.contains(&b.volunteer.0)) {
                answers[i] = Some(Err(Refusal::NotCounting));
                to_hand_back.push(i);
                continue;
            }
            to_seal.push(i);
        }
        if !self.config.fence_delay.is_zero() {
            tokio::time::sleep(self.config.fence_delay).await;
        }
        let quota_limit = to_seal
            .iter()
            .find_map(|&i| ballots[i].quota.as_ref().map(|(_, limit)| *limit))
            .unwrap_or(0);
        let seals: Vec<SealRequest<'_>> = to_seal
            .iter()
            .map(|&i| {
                let b = &ballots[i];
                SealRequest {
                    task: b.task,
                    volunteer: b.volunteer,
                    token: &b.token,
                    quota_key: b.quota.as_ref().map_or("", |(k, _)| k.as_str()),
                }
            })
            .collect();
        let fences = self.leases.seal(&seals, quota_limit, SEAL_HOLD_MS).await?;
        // Slots go to sealed votes only, in arrival order; a sealed vote past
        // what its task still needs gets its charge back and is refused.
        let mut sealed: Vec<(usize, i64)> = Vec::new();
        let mut surplus: Vec<&str> = Vec::new();
        for (&i, fence) in to_seal.iter().zip(fences) {
            let task = tasks.get_mut(&ballots[i].task.0);
            match (fence, task) {
                (Ok(fence), Some(task)) if task.left > 0 => {
                    task.left -= 1;
                    sealed.push((i, fence));
                }
                (Ok(_), _) => {
                    answers[i] = Some(Err(Refusal::TaskClosed));
                    to_hand_back.push(i);
                    surplus.extend(ballots[i].quota.as_ref().map(|(k, _)| k.as_str()));
                }
                (Err(e), _) => {
                    // A spent quota will not come back today: the slot goes to others.
                    if e == LeaseError::QuotaSpent {
                        to_hand_back.push(i);
                    }
                    answers[i] = Some(Err(Refusal::Lease(e)));
                }
            }
        }
        if let Err(e) = self.leases.unseal(&surplus).await {
            tracing::warn!(error = %e, "could not give back the quota of surplus votes");
        }
        let charged: Vec<&str> = sealed
            .iter()
            .filter_map(|(i, _)| ballots[*i].quota.as_ref().map(|(k, _)| k.as_str()))
            .collect();
        let written = write_votes(&mut tx, ballots, &sealed).await;
        let committed = match written {
            Ok(ids) => tx.commit().await.map(|()| ids).map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        let ids = match committed {
            Ok(ids) => ids,
            Err(e) => {
                if let Err(refund) = self.leases.unseal(&charged).await {
                    tracing::warn!(error = %refund, "could not give back the quota of a failed vote batch");
                }
                return Err(e);
            }
        };
        let finished: Vec<(TaskId, UserId, &LeaseToken)> = sealed
            .iter()
            .map(|(i, _)| *i)
            .chain(repeated.iter().copied())
            .map(|i| (ballots[i].task, ballots[i].volunteer, &ballots[i].token))
            .collect();
        if let Err(e) = self.leases.finish(&finished).await {
            // The votes are committed; the leases expire and their surplus offers are refused.
            tracing::warn!(error = %e, "could not end the leases of committed votes");
        }
        for ((i, _), id) in sealed.iter().zip(ids) {
            let gold_answer = tasks.get(&ballots[*i].task.0).and_then(|t| t.gold_answer);
            answers[*i] = Some(Ok(Receipt {
                vote_id: id,
                gold_answer,
            }));
        }
        for &i in &to_hand_back {
            let b = &ballots[i];
            // The slot goes back through the reaper; the lease may be gone already.
            let _ = self
                .leases
                .expire_now(b.task, b.volunteer, &b.token, 0, LeaseEnd::Expired)
                .await;
        }
        for (i, first) in repeats {
            answers[i] = Some(match &answers[first] {
                Some(Ok(r)) if same_vote(&ballots[i], &ballots[first]) => Ok(*r),
                Some(Ok(_)) => Err(Refusal::AlreadyVoted),
                Some(Err(e)) => Err(e.clone()),
                None => Err(Refusal::TaskClosed),
            });
        }
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or(Err(Refusal::TaskClosed)))
            .collect())
    }
}

struct TaskState {
    open: bool,
    gold: bool,
    /// Votes it can still count.
    left: i32,
    gold_answer: Option<Verdict>,
}

fn same_vote(a: &Ballot, b: &Ballot) -> bool {
    a.verdict == b.verdict && a.reasons == b.reasons
}

/// The candidates' voters whose votes do not count (stopped by the abuse rules).
async fn not_counting(
    conn: &mut sqlx::PgConnection,
    ballots: &[Ballot],
    candidates: &[usize],
) -> sqlx::Result<std::collections::HashSet<Uuid>> {
    let voters: Vec<Uuid> = candidates.iter().map(|&i| ballots[i].volunteer.0).collect();
    let stopped: Vec<Uuid> = sqlx::query_scalar(
        "SELECT volunteer_id FROM volunteer_reliability
         WHERE volunteer_id = ANY($1) AND NOT counting",
    )
    .bind(&voters)
    .fetch_all(&mut *conn)
    .await?;
    Ok(stopped.into_iter().collect())
}

type EarlierVotes = HashMap<(TaskId, UserId), (Uuid, Verdict, Vec<String>)>;
/// Task, volunteer, vote id, verdict, reasons.
type EarlierRow = (Uuid, Uuid, Uuid, String, sqlx::types::Json<Vec<String>>);

/// Votes already recorded for the candidates' (task, volunteer) pairs.
async fn earlier_votes(
    conn: &mut sqlx::PgConnection,
    ballots: &[Ballot],
    candidates: &[usize],
) -> sqlx::Result<EarlierVotes> {
    let tasks: Vec<Uuid> = candidates.iter().map(|&i| ballots[i].task.0).collect();
    let voters: Vec<Uuid> = candidates.iter().map(|&i| ballots[i].volunteer.0).collect();
    let rows: Vec<EarlierRow> = sqlx::query_as(
        "SELECT v.task_id, v.volunteer_id, v.id, v.verdict, v.reasons
         FROM votes v JOIN unnest($1::uuid[], $2::uuid[]) AS c(task_id, volunteer_id)
           ON v.task_id = c.task_id AND v.volunteer_id = c.volunteer_id",
    )
    .bind(&tasks)
    .bind(&voters)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(task, voter, id, verdict, reasons)| {
            let verdict = verdict.parse().unwrap_or(Verdict::Unsure);
            ((TaskId(task), UserId(voter)), (id, verdict, reasons.0))
        })
        .collect())
}

/// Inserts the sealed votes, counts them on their review tasks and writes
/// their events; returns the new votes' ids in order.
async fn write_votes(
    conn: &mut sqlx::PgConnection,
    ballots: &[Ballot],
    sealed: &[(usize, i64)],
) -> anyhow::Result<Vec<Uuid>> {
    if sealed.is_empty() {
        return Ok(Vec::new());
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let ids: Vec<Uuid> = sealed.iter().map(|_| Uuid::now_v7()).collect();
    let pick = |f: &dyn Fn(&Ballot) -> Uuid| {
        sealed
            .iter()
            .map(|(i, _)| f(&ballots[*i]))
            .collect::<Vec<_>>()
    };
    let tasks = pick(&|b| b.task.0);
    let voters = pick(&|b| b.volunteer.0);
    let verdicts: Vec<&str> = sealed
        .iter()
        .map(|(i, _)| ballots[*i].verdict.as_str())
        .collect();
    let reasons: Vec<serde_json::Value> = sealed
        .iter()
        .map(|(i, _)| serde_json::json!(ballots[*i].reasons))
        .collect();
    let notes: Vec<Option<&str>> = sealed
        .iter()
        .map(|(i, _)| ballots[*i].note.as_deref())
        .collect();
    let fences: Vec<i64> = sealed.iter().map(|(_, f)| *f).collect();
    let seconds: Vec<Option<f64>> = sealed
        .iter()
        .map(|(i, _)| ballots[*i].token.seconds_since_grant(now_ms))
        .collect();
    // One event for the whole batch: the relay and the broker carry a message
    // a batch, not a vote.
    let event = VotesRecorded {
        v: MESSAGE_VERSION,
        votes: sealed
            .iter()
            .zip(&ids)
            .map(|((i, _), id)| VoteRecorded {
                v: MESSAGE_VERSION,
                task_id: ballots[*i].task,
                vote_id: *id,
                volunteer_id: ballots[*i].volunteer,
            })
            .collect(),
    };
    let event = serde_json::to_value(&event)?;
    // One round trip while the batch holds its tasks' locks: the votes, the
    // review tasks' counts (gold tasks count no votes: every volunteer may
    // answer them once), the event and the relay's wake-up.
    let inserted: i64 = sqlx::query_scalar(
        "WITH ins AS (
           INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, note, lease_fence, seconds_taken)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::jsonb[],
                                $6::text[], $7::bigint[], $8::float8[])
           RETURNING task_id),
         counted AS (
           UPDATE tasks t SET votes_counted = t.votes_counted + c.n
           FROM (SELECT task_id, count(*)::int AS n FROM ins GROUP BY task_id) c
           WHERE t.id = c.task_id AND t.kind = 'review'
           RETURNING 1),
         event AS (
           INSERT INTO outbox (topic, payload) VALUES ($9, $10) RETURNING 1)
         SELECT (SELECT count(*) FROM ins) FROM (SELECT pg_notify($11, '')) AS wake",
    )
    .bind(&ids)
    .bind(&tasks)
    .bind(&voters)
    .bind(&verdicts)
    .bind(&reasons)
    .bind(&notes)
    .bind(&fences)
    .bind(&seconds)
    .bind(Topic::Votes.as_str())
    .bind(event)
    .bind(outbox::NOTIFY_CHANNEL)
    .fetch_one(&mut *conn)
    .await?;
    anyhow::ensure!(
        inserted == ids.len() as i64,
        "a vote batch inserted {inserted} of {} votes",
        ids.len()
    );
    Ok(ids)
}
