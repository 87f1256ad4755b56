//! The fault run's volunteers: claim and vote without pause across every
//! worker-api, moving to the next one when a process does not answer, and
//! write down every granted claim and every acknowledged vote for the checker.
//!
//! Now and then a volunteer also probes fencing (I4): it votes on another
//! volunteer's freshly granted claim with that volunteer's lease token, which
//! must be refused.

use crate::api::{Api, ApiError, Claim};
use crate::session::Session;
use crate::stats::{CallKind, Recorder};
use crate::truth::Truth;
use crate::volunteer::{pause, reasons, verdict_on};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use spotcheck_shared::Verdict;
use spotcheck_shared::demo::Profile;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Attempts at one vote when the answer is lost (transport) or the server fails (5xx).
const VOTE_ATTEMPTS: u32 = 6;
/// The longest pause after a failed call: faults heal fast and the run is short.
const MAX_BACKOFF: Duration = Duration::from_millis(300);
/// One claim in this many is posted for others to probe, and one in this many probes.
const PROBE_ONE_IN: u32 = 10;

/// A vote the API acknowledged with `201`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AckedVote {
    /// The task voted on.
    pub task_id: String,
    /// The id the API answered.
    pub vote_id: String,
    /// The volunteer's username.
    pub volunteer: String,
}

#[derive(Debug, Default)]
struct Entries {
    claims: u64,
    claimed_tasks: HashSet<String>,
    votes: HashSet<AckedVote>,
    acks: u64,
    /// (task, volunteer) pairs with an acknowledged vote, or one whose outcome stayed unknown.
    voted_or_unknown: HashSet<(String, String)>,
    probes: u64,
    probe_refusals: BTreeMap<String, u64>,
    breaches: Vec<AckedVote>,
    abandoned: u64,
    released: u64,
}

/// What the fencing probes came to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Probes {
    /// Votes sent with another volunteer's lease token.
    pub sent: u64,
    /// Their refusals by `<status> <code>` (`transport` when no answer came).
    pub refused: BTreeMap<String, u64>,
    /// Those accepted: each a vote counted without the caller's own lease.
    pub accepted: Vec<AckedVote>,
}

/// Every claim granted and vote acknowledged during the run.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: Mutex<Entries>,
}

impl Ledger {
    fn with<T>(&self, f: impl FnOnce(&mut Entries) -> T) -> T {
        f(&mut self.entries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records a granted claim on `task_id`.
    pub fn claimed(&self, task_id: &str) {
        self.with(|e| {
            e.claims += 1;
            e.claimed_tasks.insert(task_id.to_owned());
        });
    }

    /// Records a `201` vote (a repeated acknowledgement of the same vote is kept once).
    pub fn voted(&self, vote: AckedVote) {
        self.with(|e| {
            e.acks += 1;
            e.voted_or_unknown
                .insert((vote.task_id.clone(), vote.volunteer.clone()));
            e.votes.insert(vote);
        });
    }

    /// Records a vote whose outcome stayed unknown (every attempt went unanswered).
    pub fn vote_unknown(&self, task_id: &str, volunteer: &str) {
        self.with(|e| {
            e.voted_or_unknown
                .insert((task_id.to_owned(), volunteer.to_owned()));
        });
    }

    /// Whether `volunteer` may probe `task_id`: it has no vote there, so any
    /// `201` it gets can only come from the stolen token.
    pub fn may_probe(&self, task_id: &str, volunteer: &str) -> bool {
        self.with(|e| {
            !e.voted_or_unknown
                .contains(&(task_id.to_owned(), volunteer.to_owned()))
        })
    }

    /// Records a probe's answer: `Ok` is a vote accepted without the caller's lease.
    pub fn probed(&self, answer: Result<AckedVote, String>) {
        self.with(|e| {
            e.probes += 1;
            match answer {
                Ok(breach) => e.breaches.push(breach),
                Err(key) => *e.probe_refusals.entry(key).or_default() += 1,
            }
        });
    }

    /// The probes so far.
    pub fn probes(&self) -> Probes {
        self.with(|e| Probes {
            sent: e.probes,
            refused: e.probe_refusals.clone(),
            accepted: e.breaches.clone(),
        })
    }

    /// Records a claim walked away from (`true`) or released (`false`).
    pub fn dropped(&self, abandoned: bool) {
        self.with(|e| {
            if abandoned {
                e.abandoned += 1;
            } else {
                e.released += 1;
            }
        });
    }

    /// Claims abandoned, claims released.
    pub fn drops(&self) -> (u64, u64) {
        self.with(|e| (e.abandoned, e.released))
    }

    /// Claims granted, distinct tasks claimed, `201` answers, distinct votes acknowledged.
    pub fn counts(&self) -> (u64, usize, u64, usize) {
        self.with(|e| (e.claims, e.claimed_tasks.len(), e.acks, e.votes.len()))
    }

    /// The distinct tasks claimed.
    pub fn claimed_tasks(&self) -> Vec<String> {
        self.with(|e| e.claimed_tasks.iter().cloned().collect())
    }

    /// The distinct votes acknowledged.
    pub fn votes(&self) -> Vec<AckedVote> {
        self.with(|e| e.votes.iter().cloned().collect())
    }

    /// (task, volunteer) pairs acknowledged with more than one vote id: a vote counted twice as the client saw it.
    pub fn pairs_with_two_votes(&self) -> usize {
        self.with(|e| {
            let mut ids: HashMap<(&str, &str), HashSet<&str>> = HashMap::new();
            for v in &e.votes {
                ids.entry((&v.task_id, &v.volunteer))
                    .or_default()
                    .insert(&v.vote_id);
            }
            ids.values().filter(|s| s.len() > 1).count()
        })
    }
}

/// What every volunteer of the run shares.
#[derive(Debug)]
pub struct Crowd {
    /// One client per worker-api.
    pub apis: Vec<Api>,
    /// The answers the volunteers give.
    pub truth: Truth,
    /// Latencies and errors by code.
    pub rec: Arc<Recorder>,
    /// Claims and acknowledged votes.
    pub ledger: Arc<Ledger>,
    /// Seed of the answers.
    pub seed: u64,
    /// The latest claim posted for probing, and who holds it.
    pub board: Mutex<Option<(Claim, String)>>,
    /// Percent of claims walked away from.
    pub abandon_percent: u32,
    /// Percent of claims released.
    pub release_percent: u32,
}

/// The volunteers at work.
pub struct CrowdRun {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl CrowdRun {
    /// Starts one task per signed-in volunteer.
    pub fn start(crowd: Arc<Crowd>, sessions: Vec<Session>) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        for (index, session) in sessions.into_iter().enumerate() {
            tasks.spawn(work(index, session, Arc::clone(&crowd), stop.clone()));
        }
        Self { stop, tasks }
    }

    /// Stops every volunteer and waits for them.
    pub async fn finish(mut self) {
        self.stop.cancel();
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined {
                eprintln!("a volunteer task failed: {e}");
            }
        }
    }
}

fn backoff(e: &ApiError) -> Duration {
    e.backoff().min(MAX_BACKOFF)
}

fn retryable(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Transport(_) | ApiError::Status { status: 500.., .. }
    )
}

/// One volunteer: claim, vote, repeat, on whichever worker-api answers.
async fn work(index: usize, mut session: Session, crowd: Arc<Crowd>, stop: CancellationToken) {
    let mut rng = ChaCha8Rng::seed_from_u64(crowd.seed);
    rng.set_stream(index as u64);
    let profile = Profile::for_index(index);
    let n = crowd.apis.len();
    let mut at = index % n;
    while !stop.is_cancelled() {
        let api = &crowd.apis[at];
        let claimed = session
            .call(api, &crowd.rec, CallKind::Claim, |t| async move {
                api.claim(&t).await
            })
            .await;
        match claimed {
            Ok(Some(claim)) => {
                crowd.rec.granted();
                crowd.ledger.claimed(&claim.task_id);
                if rng.random_ratio(1, PROBE_ONE_IN) {
                    probe(&crowd, &session, &crowd.apis[at]).await;
                }
                if rng.random_ratio(1, PROBE_ONE_IN) {
                    let posted = (claim.clone(), session.username().to_owned());
                    *crowd.board.lock().unwrap_or_else(|e| e.into_inner()) = Some(posted);
                }
                let roll = rng.random_range(0..100);
                if roll < crowd.abandon_percent {
                    crowd.ledger.dropped(true);
                    continue;
                }
                if roll < crowd.abandon_percent + crowd.release_percent {
                    crowd.ledger.dropped(false);
                    let api = &crowd.apis[at];
                    let _ = session
                        .call(api, &crowd.rec, CallKind::Release, |t| {
                            let claim = &claim;
                            async move { api.release(&t, claim).await }
                        })
                        .await;
                    continue;
                }
                let verdict =
                    verdict_on(profile, &crowd.truth, &claim.listing.listing_id, &mut rng);
                vote(&crowd, &mut session, &claim, verdict, &mut at, &stop).await;
            }
            Ok(None) => {
                crowd.rec.empty_claim();
                let wait = Duration::from_millis(rng.random_range(100..=200));
                pause(&stop, wait).await;
            }
            Err(e) => {
                if matches!(e, ApiError::Transport(_)) {
                    at = (at + 1) % n;
                }
                pause(&stop, backoff(&e)).await;
            }
        }
    }
}

/// Votes on another volunteer's posted claim with that volunteer's lease token.
async fn probe(crowd: &Crowd, session: &Session, api: &Api) {
    let posted = crowd
        .board
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some((claim, holder)) = posted else {
        return;
    };
    let me = session.username();
    if holder == me || !crowd.ledger.may_probe(&claim.task_id, me) {
        return;
    }
    let verdict = Verdict::Unsure;
    let answer = api
        .cast_vote(
            session.access_token(),
            &claim,
            verdict.as_str(),
            reasons(verdict),
        )
        .await;
    crowd.ledger.probed(match answer {
        Ok(voted) => Ok(AckedVote {
            task_id: claim.task_id.clone(),
            vote_id: voted.vote_id,
            volunteer: me.to_owned(),
        }),
        Err(e) => Err(e.key()),
    });
}

/// Votes on `claim`, sending the same vote again (to another worker-api if
/// the first did not answer) while the outcome is unknown.
async fn vote(
    crowd: &Crowd,
    session: &mut Session,
    claim: &Claim,
    verdict: Verdict,
    at: &mut usize,
    stop: &CancellationToken,
) {
    let why = reasons(verdict);
    for _ in 0..VOTE_ATTEMPTS {
        let api = &crowd.apis[*at];
        let cast = session
            .call(api, &crowd.rec, CallKind::Vote, |t| async move {
                api.cast_vote(&t, claim, verdict.as_str(), why).await
            })
            .await;
        match cast {
            Ok(voted) => {
                crowd.rec.vote(&claim.listing.listing_id);
                crowd.ledger.voted(AckedVote {
                    task_id: claim.task_id.clone(),
                    vote_id: voted.vote_id,
                    volunteer: session.username().to_owned(),
                });
                return;
            }
            Err(e) if retryable(&e) => {
                if matches!(e, ApiError::Transport(_)) {
                    *at = (*at + 1) % crowd.apis.len();
                }
                if pause(stop, backoff(&e)).await {
                    break;
                }
            }
            // Refused (lease gone, task closed...): counted by code; claim again.
            Err(_) => return,
        }
    }
    crowd
        .ledger
        .vote_unknown(&claim.task_id, session.username());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(task: &str, vote: &str, who: &str) -> AckedVote {
        AckedVote {
            task_id: task.into(),
            vote_id: vote.into(),
            volunteer: who.into(),
        }
    }

    #[test]
    fn the_ledger_keeps_repeated_acknowledgements_once_and_spots_two_votes_for_one_pair() {
        let ledger = Ledger::default();
        ledger.claimed("t1");
        ledger.claimed("t1");
        ledger.claimed("t2");
        ledger.voted(acked("t1", "v1", "a"));
        ledger.voted(acked("t1", "v1", "a"));
        ledger.voted(acked("t2", "v2", "a"));
        assert_eq!(ledger.counts(), (3, 2, 3, 2));
        assert_eq!(ledger.pairs_with_two_votes(), 0);
        ledger.voted(acked("t1", "v9", "a"));
        assert_eq!(ledger.pairs_with_two_votes(), 1);
    }

    #[test]
    fn a_volunteer_probes_only_tasks_it_has_no_vote_on() {
        let ledger = Ledger::default();
        ledger.voted(acked("t1", "v1", "a"));
        ledger.vote_unknown("t2", "a");
        assert!(!ledger.may_probe("t1", "a"));
        assert!(!ledger.may_probe("t2", "a"));
        assert!(ledger.may_probe("t1", "b"));
        ledger.probed(Err("409 lease_not_found".into()));
        ledger.probed(Ok(acked("t3", "v3", "b")));
        let probes = ledger.probes();
        assert_eq!((probes.sent, probes.accepted.len()), (2, 1));
        assert_eq!(probes.refused["409 lease_not_found"], 1);
    }

    #[test]
    fn lost_answers_and_server_failures_are_retried_refusals_are_not() {
        assert!(retryable(&ApiError::Transport("refused".into())));
        let status = |status: u16, code: &str| ApiError::Status {
            status,
            code: code.into(),
            retry_after: None,
        };
        assert!(retryable(&status(503, "unavailable")));
        assert!(!retryable(&status(410, "lease_expired")));
        assert!(!retryable(&status(409, "task_closed")));
    }
}
