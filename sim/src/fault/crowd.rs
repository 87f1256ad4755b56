//! The fault run's volunteers: claim and vote without pause, each claim on the
//! next worker-api and a vote retried on another one when a process does not
//! answer, and write every granted claim and acknowledged vote into the ledger.
//!
//! Like real volunteers, a few walk away from a claim (its lease must expire)
//! or skip it (release). A few also probe fencing (I4): they vote on another
//! volunteer's fresh claim with that volunteer's token, or vote on their own
//! claim only after its lease expired; both must be refused.

use crate::api::{Api, ApiError, Claim};
use crate::fault::ledger::{AckedVote, Ledger, Probe};
use crate::session::Session;
use crate::stats::{CallKind, Recorder};
use crate::truth::Truth;
use crate::volunteer::{pause, reasons, verdict_on};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spotcheck_shared::Verdict;
use spotcheck_simulation::demo::Profile;
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
/// How long past the lease's lifetime a late vote is sent.
const LATE_BY: Duration = Duration::from_secs(1);

/// How often volunteers leave the happy path, in percent of granted claims.
#[derive(Debug, Clone, Copy)]
pub struct Habits {
    /// Walk away: no vote, no release.
    pub abandon_percent: u32,
    /// Skip: release the lease.
    pub release_percent: u32,
    /// Vote only after the lease expired.
    pub late_percent: u32,
    /// The lease lifetime the late votes wait out.
    pub lease_ttl: Duration,
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
    /// Claims, acknowledged votes and probes.
    pub ledger: Arc<Ledger>,
    /// Seed of the answers.
    pub seed: u64,
    /// How often volunteers leave the happy path.
    pub habits: Habits,
    /// The latest claim posted for probing, and who holds it.
    pub board: Mutex<Option<(Claim, String)>>,
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

/// What a volunteer does with a granted claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Vote,
    Abandon,
    Release,
    VoteLate,
}

fn choose(habits: &Habits, roll: u32) -> Choice {
    let abandon = habits.abandon_percent;
    let release = abandon + habits.release_percent;
    let late = release + habits.late_percent;
    match roll {
        r if r < abandon => Choice::Abandon,
        r if r < release => Choice::Release,
        r if r < late => Choice::VoteLate,
        _ => Choice::Vote,
    }
}

/// One volunteer: claim, vote, repeat, on whichever worker-api answers.
async fn work(index: usize, mut session: Session, crowd: Arc<Crowd>, stop: CancellationToken) {
    let mut rng = ChaCha8Rng::seed_from_u64(crowd.seed);
    rng.set_stream(index as u64);
    let profile = Profile::for_index(index);
    let n = crowd.apis.len();
    let mut at = index % n;
    while !stop.is_cancelled() {
        // Each claim goes to the next worker-api, as a load balancer would spread
        // them: offers buffered in a replica nobody calls would wait there.
        at = (at + 1) % n;
        let api = &crowd.apis[at];
        let claimed = session
            .call(api, &crowd.rec, CallKind::Claim, |t| async move {
                api.claim(&t).await
            })
            .await;
        let claim = match claimed {
            Ok(Some(claim)) => claim,
            Ok(None) => {
                crowd.rec.empty_claim();
                let wait = Duration::from_millis(rng.random_range(100..=200));
                pause(&stop, wait).await;
                continue;
            }
            Err(e) => {
                // The next claim goes to the next worker-api anyway.
                let wait = match e {
                    ApiError::Transport(_) => Duration::from_millis(20),
                    _ => backoff(&e),
                };
                pause(&stop, wait).await;
                continue;
            }
        };
        crowd.rec.granted();
        crowd.ledger.claimed(&claim.task_id);
        if rng.random_ratio(1, PROBE_ONE_IN) {
            steal(&crowd, &session, &crowd.apis[at]).await;
        }
        if rng.random_ratio(1, PROBE_ONE_IN) {
            let posted = (claim.clone(), session.username().to_owned());
            *crowd.board.lock().unwrap_or_else(|e| e.into_inner()) = Some(posted);
        }
        match choose(&crowd.habits, rng.random_range(0..100)) {
            Choice::Abandon => crowd.ledger.dropped(true),
            Choice::Release => {
                crowd.ledger.dropped(false);
                let api = &crowd.apis[at];
                let claim = &claim;
                let _ = session
                    .call(api, &crowd.rec, CallKind::Release, |t| async move {
                        api.release(&t, claim).await
                    })
                    .await;
            }
            Choice::VoteLate => {
                if !pause(&stop, crowd.habits.lease_ttl + LATE_BY).await {
                    vote_late(&crowd, &session, &crowd.apis[at], &claim).await;
                }
            }
            Choice::Vote => {
                let verdict =
                    verdict_on(profile, &crowd.truth, &claim.listing.listing_id, &mut rng);
                vote(&crowd, &mut session, &claim, verdict, &mut at, &stop).await;
            }
        }
    }
}

/// Sends one probe vote on `claim` and records its answer.
async fn probe_vote(crowd: &Crowd, session: &Session, api: &Api, claim: &Claim, probe: Probe) {
    let me = session.username();
    let verdict = Verdict::Unsure;
    let answer = api
        .cast_vote(
            session.access_token(),
            claim,
            verdict.as_str(),
            reasons(verdict),
        )
        .await;
    let answer = match answer {
        Ok(voted) => Ok(AckedVote {
            task_id: claim.task_id.clone(),
            vote_id: voted.vote_id,
            volunteer: me.to_owned(),
        }),
        Err(e) => {
            // Unanswered or failed: the vote may have been recorded all the same.
            if retryable(&e) {
                crowd.ledger.vote_unknown(&claim.task_id, me);
            }
            Err(e.key())
        }
    };
    crowd.ledger.probed(probe, answer);
}

/// Votes on another volunteer's posted claim with that volunteer's lease token.
async fn steal(crowd: &Crowd, session: &Session, api: &Api) {
    let posted = crowd
        .board
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some((claim, holder)) = posted else {
        return;
    };
    let me = session.username();
    if holder != me && crowd.ledger.may_probe(&claim.task_id, me) {
        probe_vote(crowd, session, api, &claim, Probe::StolenToken).await;
    }
}

/// Votes on the caller's own claim after its lease has expired.
async fn vote_late(crowd: &Crowd, session: &Session, api: &Api, claim: &Claim) {
    if crowd.ledger.may_probe(&claim.task_id, session.username()) {
        probe_vote(crowd, session, api, claim, Probe::ExpiredToken).await;
    }
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

    #[test]
    fn the_habits_split_the_claims_by_percent() {
        let habits = Habits {
            abandon_percent: 5,
            release_percent: 5,
            late_percent: 2,
            lease_ttl: Duration::from_secs(3),
        };
        let choices: Vec<Choice> = (0..100).map(|r| choose(&habits, r)).collect();
        let count = |c: Choice| choices.iter().filter(|x| **x == c).count();
        assert_eq!(
            (
                count(Choice::Abandon),
                count(Choice::Release),
                count(Choice::VoteLate),
                count(Choice::Vote)
            ),
            (5, 5, 2, 88)
        );
    }
}
