//! Votes are group-committed: each of a few writers has a queue of vote
//! requests (a task's votes always go to the same one, so two batches of one
//! process never wait on each other's task rows), takes everything waiting
//! (up to a batch) and commits it in one transaction, so a vote costs a share
//! of a handful of statements instead of a transaction of its own.
//!
//! A batch, in order:
//! 1. fences its votes in Redis in one script ([`LeaseStore::seal`]): the lease
//!    must be the voter's current, unexpired one and the daily quota unspent;
//!    the quota is charged there, and the lease is held for the commit;
//! 2. writes them in one statement, its own transaction, so task rows stay
//!    locked for that statement only: it locks the tasks voted on in id order
//!    (concurrent batches cannot deadlock), refuses votes on closed tasks and
//!    review votes of volunteers who do not count, as the record says (their
//!    votes never add slots), gives the slots a task still has to the rest in
//!    arrival order, inserts them (the unique (task, volunteer) key keeps a
//!    vote already there), bumps the tasks' counts and commits; only then
//!    does any request get its `201`;
//! 3. gives the quota back for every sealed vote that was not written;
//! 4. answers a vote that was refused but repeats one already recorded as
//!    the first (no charge, no lease needed), or `already_voted` if it differs;
//! 5. ends the leases in Redis (voters move from the leases to the voted set),
//!    and hands back the slots of votes refused for good;
//! 6. hands the counted votes to the announcer, which publishes them to the
//!    aggregator's queue with a publisher confirm, merging what waits into one
//!    message. No outbox row and no `NOTIFY` on the vote path: if the broker
//!    refuses, the announcer writes them to the outbox for the relay; if this
//!    process dies first, the coordinator's sweep of unaccounted votes
//!    announces them (`coordinator::announce`).
//!
//! If the statement fails, the quota charges are given back and every vote of
//! the batch is answered 503; the leases stay, so the votes can simply be sent
//! again. The count's CHECK stays the last guard.

use crate::error::ApiError;
use axum::http::StatusCode;
use spotcheck_platform::amqp::ResilientPublisher;
use spotcheck_platform::lease::{LeaseEnd, LeaseError, LeaseStore, SealRequest};
use spotcheck_platform::outbox;
use spotcheck_shared::lease_token::LeaseToken;
use spotcheck_shared::messages::{Topic, VoteRecorded, VotesRecorded};
use spotcheck_shared::{TaskId, UserId, Verdict};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
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

/// Where counted votes are announced: the aggregator's queue, through a
/// confirming publisher.
#[derive(Clone)]
pub struct Announcer {
    /// The publisher (shared with the offer hand-back).
    pub publisher: ResilientPublisher,
    /// The aggregator's queue.
    pub queue: String,
}

/// Votes one announcement names at most.
const ANNOUNCE_MAX: usize = 1000;

/// The queue of votes waiting for a batch.
#[derive(Clone)]
pub struct BallotBox {
    /// One queue per writer. A task's votes always go to the same writer, so
    /// two batches of this process never wait on each other's task rows.
    queues: Arc<[mpsc::Sender<Pending>]>,
    stop: CancellationToken,
    writers: TaskTracker,
}

impl BallotBox {
    /// Starts the writers; they run until [`BallotBox::stop`] (or until every
    /// handle is dropped).
    pub fn start(
        pool: PgPool,
        leases: LeaseStore,
        announcer: Announcer,
        config: BallotConfig,
    ) -> Self {
        let mut queues = Vec::new();
        let (stop, writers) = (CancellationToken::new(), TaskTracker::new());
        // Unbounded: a writer never waits on the broker; what waits is
        // merged into the next announcement.
        let (counted, to_announce) = mpsc::unbounded_channel();
        for _ in 0..config.writers.max(1) {
            let (tx, rx) = mpsc::channel::<Pending>(config.max_batch.max(1) * 16);
            queues.push(tx);
            let writer = Writer {
                pool: pool.clone(),
                leases: leases.clone(),
                config: config.clone(),
                counted: counted.clone(),
            };
            writers.spawn(writer.run(rx, stop.clone()));
        }
        drop(counted);
        // Ends once every writer has ended and what they counted is announced.
        writers.spawn(announce(pool, announcer, to_announce));
        writers.close();
        Self {
            queues: queues.into(),
            stop,
            writers,
        }
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
        // The low half of a v7 id is random.
        let writer = (ballot.task.0.as_u64_pair().1 % self.queues.len() as u64) as usize;
        self.queues[writer]
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
    counted: mpsc::UnboundedSender<Vec<VoteRecorded>>,
}

/// Announces counted votes until every writer has ended: takes everything
/// waiting (up to [`ANNOUNCE_MAX`] votes) as one [`VotesRecorded`], publishes
/// it with a confirm, and writes it to the outbox (for the relay) when the
/// broker does not confirm. Announcing twice is harmless: the aggregator
/// accounts each vote once.
async fn announce(
    pool: PgPool,
    announcer: Announcer,
    mut counted: mpsc::UnboundedReceiver<Vec<VoteRecorded>>,
) {
    while let Some(mut votes) = counted.recv().await {
        while votes.len() < ANNOUNCE_MAX {
            match counted.try_recv() {
                Ok(more) => votes.extend(more),
                Err(_) => break,
            }
        }
        let n = votes.len() as u64;
        let event = VotesRecorded::new(votes);
        let published = match serde_json::to_vec(&event) {
            Ok(body) => {
                announcer
                    .publisher
                    .publish_all("", &[(announcer.queue.clone(), body)])
                    .await
            }
            Err(e) => Err(e.into()),
        };
        let how = match published {
            Ok(()) => "published",
            Err(e) => {
                tracing::warn!(error = %e, votes = n, "could not publish counted votes; writing them to the outbox");
                let written = async {
                    let mut conn = pool.acquire().await?;
                    outbox::enqueue_many(&mut conn, Topic::Votes, std::slice::from_ref(&event))
                        .await
                }
                .await;
                match written {
                    Ok(()) => "outbox",
                    Err(e) => {
                        // Still unaccounted in the record: the coordinator's sweep finds them.
                        tracing::warn!(error = %e, votes = n, "could not write counted votes to the outbox; the sweep will announce them");
                        "left"
                    }
                }
            }
        };
        metrics::counter!("spotcheck_votes_announced_total", "how" => how).increment(n);
    }
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Pending>, stop: CancellationToken) {
        loop {
            let batch = {
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
        if !self.config.fence_delay.is_zero() {
            tokio::time::sleep(self.config.fence_delay).await;
        }
        // The fence first, outside any transaction: no task row is locked
        // while Redis answers.
        let quota_limit = candidates
            .iter()
            .find_map(|&i| ballots[i].quota.as_ref().map(|(_, limit)| *limit))
            .unwrap_or(0);
        let seals: Vec<SealRequest<'_>> = candidates
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
        let mut sealed: Vec<(usize, i64)> = Vec::new();
        // Refused by the fence, or not written: maybe a repeat of a vote
        // already recorded, which is answered as the first.
        let mut unanswered: Vec<(usize, Refusal)> = Vec::new();
        for (&i, fence) in candidates.iter().zip(fences) {
            match fence {
                Ok(fence) => sealed.push((i, fence)),
                Err(e) => unanswered.push((i, Refusal::Lease(e))),
            }
        }
        // Then one statement: it locks the tasks, writes what still fits and
        // commits, so the locks are held for that statement only.
        let written = match write_votes(&self.pool, ballots, &sealed).await {
            Ok(written) => written,
            Err(e) => {
                let charged: Vec<&str> = sealed
                    .iter()
                    .filter_map(|(i, _)| ballots[*i].quota.as_ref().map(|(k, _)| k.as_str()))
                    .collect();
                if let Err(refund) = self.leases.unseal(&charged).await {
                    tracing::warn!(error = %refund, "could not give back the quota of a failed vote batch");
                }
                return Err(e);
            }
        };
        let mut counted: Vec<usize> = Vec::new();
        let mut refunds: Vec<&str> = Vec::new();
        let mut announced: Vec<VoteRecorded> = Vec::new();
        for ((i, _), written) in sealed.iter().zip(written) {
            let refusal = match written.fate {
                Fate::Counted(vote_id) => {
                    counted.push(*i);
                    announced.push(VoteRecorded::new(
                        ballots[*i].task,
                        vote_id,
                        ballots[*i].volunteer,
                    ));
                    answers[*i] = Some(Ok(Receipt {
                        vote_id,
                        gold_answer: written.gold_answer,
                    }));
                    continue;
                }
                Fate::Closed => Refusal::TaskClosed,
                Fate::NotCounting => Refusal::NotCounting,
                Fate::NoTask => Refusal::Lease(LeaseError::NotFound),
                // Another batch wrote this volunteer's vote on the task first.
                Fate::Conflict => Refusal::TaskClosed,
            };
            refunds.extend(ballots[*i].quota.as_ref().map(|(k, _)| k.as_str()));
            unanswered.push((*i, refusal));
        }
        if !announced.is_empty() {
            // Only fails once the announcer has ended, which it does after the writers.
            let _ = self.counted.send(announced);
        }
        if let Err(e) = self.leases.unseal(&refunds).await {
            tracing::warn!(error = %e, "could not give back the quota of votes that did not count");
        }
        let earlier = if unanswered.is_empty() {
            EarlierVotes::new()
        } else {
            let pairs: Vec<usize> = unanswered.iter().map(|(i, _)| *i).collect();
            earlier_votes(&self.pool, ballots, &pairs).await?
        };
        let mut repeated: Vec<usize> = Vec::new();
        let mut to_hand_back: Vec<usize> = Vec::new();
        for (i, refusal) in unanswered {
            let b = &ballots[i];
            if let Some(e) = earlier.get(&(b.task, b.volunteer)) {
                // Any lease they hold on it (granted after Redis lost its set of
                // voters) ends with the answer.
                repeated.push(i);
                answers[i] = Some(if e.verdict == b.verdict && e.reasons == b.reasons {
                    Ok(Receipt {
                        vote_id: e.vote_id,
                        gold_answer: e.gold_answer,
                    })
                } else {
                    Err(Refusal::AlreadyVoted)
                });
                continue;
            }
            // The slot goes to others: the task is closed to this vote, or a
            // spent quota will not come back today.
            if matches!(
                refusal,
                Refusal::TaskClosed | Refusal::NotCounting | Refusal::Lease(LeaseError::QuotaSpent)
            ) {
                to_hand_back.push(i);
            }
            answers[i] = Some(Err(refusal));
        }
        let finished: Vec<(TaskId, UserId, &LeaseToken)> = counted
            .iter()
            .chain(&repeated)
            .map(|&i| (ballots[i].task, ballots[i].volunteer, &ballots[i].token))
            .collect();
        if let Err(e) = self.leases.finish(&finished).await {
            // The votes are committed; the leases expire and their surplus offers are refused.
            tracing::warn!(error = %e, "could not end the leases of committed votes");
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

fn same_vote(a: &Ballot, b: &Ballot) -> bool {
    a.verdict == b.verdict && a.reasons == b.reasons
}

/// A vote recorded before, found for a (task, volunteer) pair.
struct Earlier {
    vote_id: Uuid,
    verdict: Verdict,
    reasons: Vec<String>,
    gold_answer: Option<Verdict>,
}

type EarlierVotes = HashMap<(TaskId, UserId), Earlier>;
/// Task, volunteer, vote id, verdict, reasons, the task's gold answer.
type EarlierRow = (
    Uuid,
    Uuid,
    Uuid,
    String,
    sqlx::types::Json<Vec<String>>,
    Option<String>,
);

/// Votes already recorded for the given ballots' (task, volunteer) pairs.
async fn earlier_votes(
    pool: &PgPool,
    ballots: &[Ballot],
    which: &[usize],
) -> sqlx::Result<EarlierVotes> {
    let tasks: Vec<Uuid> = which.iter().map(|&i| ballots[i].task.0).collect();
    let voters: Vec<Uuid> = which.iter().map(|&i| ballots[i].volunteer.0).collect();
    let rows: Vec<EarlierRow> = sqlx::query_as(
        "SELECT v.task_id, v.volunteer_id, v.id, v.verdict, v.reasons, g.answer
         FROM votes v JOIN unnest($1::uuid[], $2::uuid[]) AS c(task_id, volunteer_id)
           ON v.task_id = c.task_id AND v.volunteer_id = c.volunteer_id
         LEFT JOIN gold_answers g ON g.task_id = v.task_id",
    )
    .bind(&tasks)
    .bind(&voters)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(task, voter, vote_id, verdict, reasons, gold)| {
            let earlier = Earlier {
                vote_id,
                verdict: verdict.parse().unwrap_or(Verdict::Unsure),
                reasons: reasons.0,
                gold_answer: gold.and_then(|a| a.parse().ok()),
            };
            ((TaskId(task), UserId(voter)), earlier)
        })
        .collect())
}

/// What became of one sealed vote in the batch's statement.
enum Fate {
    /// Written and counted, with this id.
    Counted(Uuid),
    /// The task is decided, or its slots were all taken.
    Closed,
    /// A review vote of a volunteer whose votes do not count.
    NotCounting,
    /// No such task.
    NoTask,
    /// The volunteer's vote on the task was already there.
    Conflict,
}

/// One sealed vote after the statement.
struct Written {
    fate: Fate,
    gold_answer: Option<Verdict>,
}

/// One row of the batch statement's answer: the vote's place in the batch,
/// its fate (see [`write_votes`]) and the task's gold answer.
type FateRow = (i64, i16, Option<String>);

/// Writes the sealed votes in one statement, which is its own transaction:
/// it locks their tasks in id order, gives the slots a review task still has
/// to counting voters in arrival order, inserts those votes (a vote already
/// there stays: the unique key decides) and counts them. Returns each sealed
/// vote's fate, in order.
async fn write_votes(
    pool: &PgPool,
    ballots: &[Ballot],
    sealed: &[(usize, i64)],
) -> anyhow::Result<Vec<Written>> {
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
    let mut task_ids = tasks.clone();
    task_ids.sort_unstable();
    task_ids.dedup();
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
    let counting: Vec<bool> = sealed.iter().map(|(i, _)| ballots[*i].counting).collect();
    // Fates: 0 counted, 1 closed (decided, or no slot left), 2 not counting,
    // 3 already there, 4 no such task. Whether a voter counts is read from the
    // record too: a standing cached before an abuse stop cannot let their
    // review votes in. No outbox row and no NOTIFY: the counted votes are
    // announced to the aggregator after the commit (see [`announce`]).
    let rows: Vec<FateRow> = sqlx::query_as(
        "WITH c AS MATERIALIZED (
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::jsonb[],
                                $6::text[], $7::bigint[], $8::float8[], $9::bool[])
             WITH ORDINALITY AS c(id, task_id, volunteer_id, verdict, reasons, note,
                                  lease_fence, seconds_taken, counting, ord)),
         locked AS MATERIALIZED (
           SELECT id, state, kind, votes_required - votes_counted AS slots_left
           FROM tasks WHERE id = ANY($10) ORDER BY id FOR UPDATE),
         eligible AS MATERIALIZED (
           SELECT c.*, l.kind, l.slots_left,
                  row_number() OVER (PARTITION BY c.task_id ORDER BY c.ord) AS rn
           FROM c JOIN locked l ON l.id = c.task_id
           WHERE l.state = 'open'
             AND (l.kind = 'gold'
                  OR (c.counting AND NOT EXISTS (
                        SELECT 1 FROM volunteer_reliability r
                        WHERE r.volunteer_id = c.volunteer_id AND NOT r.counting)))),
         ins AS (
           INSERT INTO votes (id, task_id, volunteer_id, verdict, reasons, note, lease_fence, seconds_taken)
           SELECT id, task_id, volunteer_id, verdict, reasons, note, lease_fence, seconds_taken
           FROM eligible WHERE kind = 'gold' OR rn <= slots_left
           ON CONFLICT ON CONSTRAINT votes_task_volunteer_key DO NOTHING
           RETURNING id, task_id, volunteer_id),
         counted AS (
           UPDATE tasks t SET votes_counted = t.votes_counted + n.n
           FROM (SELECT task_id, count(*)::int AS n FROM ins GROUP BY task_id) n
           WHERE t.id = n.task_id AND t.kind = 'review'
           RETURNING 1)
         SELECT c.ord,
                (CASE WHEN i.id IS NOT NULL THEN 0
                      WHEN l.id IS NULL THEN 4
                      WHEN l.state <> 'open' THEN 1
                      WHEN e.ord IS NULL THEN 2
                      WHEN e.kind = 'review' AND e.rn > e.slots_left THEN 1
                      ELSE 3 END)::int2,
                g.answer
         FROM c
         LEFT JOIN ins i ON i.id = c.id
         LEFT JOIN locked l ON l.id = c.task_id
         LEFT JOIN eligible e ON e.ord = c.ord
         LEFT JOIN gold_answers g ON g.task_id = c.task_id
         ORDER BY c.ord",
    )
    .bind(&ids)
    .bind(&tasks)
    .bind(&voters)
    .bind(&verdicts)
    .bind(&reasons)
    .bind(&notes)
    .bind(&fences)
    .bind(&seconds)
    .bind(&counting)
    .bind(&task_ids)
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(
        rows.len() == sealed.len(),
        "a vote batch answered {} of {} votes",
        rows.len(),
        sealed.len()
    );
    Ok(rows
        .into_iter()
        .zip(ids)
        .map(|((_, fate, gold), id)| Written {
            fate: match fate {
                0 => Fate::Counted(id),
                1 => Fate::Closed,
                2 => Fate::NotCounting,
                4 => Fate::NoTask,
                _ => Fate::Conflict,
            },
            gold_answer: gold.and_then(|a| a.parse().ok()),
        })
        .collect())
}
