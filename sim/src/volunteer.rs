//! One simulated volunteer: claim a task, think, vote the way its profile
//! answers, repeat until told to stop. With no think time this is the load generator.

use crate::api::{Api, ApiError, Claim};
use crate::session::Session;
use crate::stats::{CallKind, Recorder};
use crate::truth::Truth;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spotcheck_shared::Verdict;
use spotcheck_simulation::demo::Profile;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What every volunteer of a run shares.
#[derive(Debug)]
pub struct Crew {
    /// The API client (one connection pool for all).
    pub api: Api,
    /// The hidden truth the volunteers answer from.
    pub truth: Truth,
    /// Where every call is measured.
    pub rec: Arc<Recorder>,
    /// Mean think time between claim and vote, in milliseconds.
    pub think_ms: u64,
    /// Stop after this many accepted votes, if set.
    pub max_votes: Option<u64>,
    /// The run's seed; volunteer `i` draws from stream `i` of it.
    pub seed: u64,
}

/// A volunteer's own state.
#[derive(Debug)]
pub struct Volunteer {
    session: Session,
    profile: Profile,
    rng: ChaCha8Rng,
}

/// Think time drawn uniformly from `[0.5 t, 1.5 t]`; zero when `t` is zero.
pub fn think_time(think_ms: u64, rng: &mut impl Rng) -> Duration {
    if think_ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_micros(rng.random_range(think_ms * 500..=think_ms * 1500))
}

/// The verdict a volunteer of `profile` gives on `listing_id`: unsure of any listing it has no truth for.
pub fn verdict_on(
    profile: Profile,
    truth: &Truth,
    listing_id: &str,
    rng: &mut impl Rng,
) -> Verdict {
    match truth.is_counterfeit(listing_id) {
        Some(counterfeit) => profile.answer(counterfeit, rng),
        None => Verdict::Unsure,
    }
}

/// The reasons a simulated volunteer gives for `verdict`.
pub fn reasons(verdict: Verdict) -> &'static [&'static str] {
    match verdict {
        Verdict::Counterfeit => &["looks_counterfeit"],
        Verdict::Genuine => &[],
        Verdict::Unsure => &["not_enough_information"],
    }
}

/// Sleeps for `d` unless `stop` fires first; returns whether it was stopped.
pub async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

impl Volunteer {
    /// Volunteer `index` of a run seeded with `seed`, signed in as `session`.
    pub fn new(index: usize, seed: u64, session: Session) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index as u64);
        Self {
            session,
            profile: Profile::for_index(index),
            rng,
        }
    }

    /// Claims and votes until `stop` fires or the vote budget is spent.
    pub async fn run(mut self, crew: Arc<Crew>, stop: CancellationToken) {
        let crew: &Crew = &crew;
        let mut votes = 0;
        while !stop.is_cancelled() && crew.max_votes.is_none_or(|max| votes < max) {
            let claimed = self
                .session
                .call(&crew.api, &crew.rec, CallKind::Claim, |t| async move {
                    crew.api.claim(&t).await
                })
                .await;
            let claim = match claimed {
                Ok(Some(claim)) => claim,
                Ok(None) => {
                    crew.rec.empty_claim();
                    let backoff = Duration::from_millis(self.rng.random_range(100..=200));
                    if pause(&stop, backoff).await {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    if pause(&stop, e.backoff()).await {
                        break;
                    }
                    continue;
                }
            };
            crew.rec.granted();
            if pause(&stop, think_time(crew.think_ms, &mut self.rng)).await {
                self.release(crew, &claim).await;
                break;
            }
            match self.vote(crew, &claim).await {
                Ok(()) => {
                    crew.rec.vote(&claim.listing.listing_id);
                    votes += 1;
                }
                Err(e) => {
                    if pause(&stop, e.backoff()).await {
                        break;
                    }
                }
            }
        }
    }

    async fn vote(&mut self, crew: &Crew, claim: &Claim) -> Result<(), ApiError> {
        let verdict = verdict_on(
            self.profile,
            &crew.truth,
            &claim.listing.listing_id,
            &mut self.rng,
        );
        self.session
            .call(&crew.api, &crew.rec, CallKind::Vote, |t| async move {
                crew.api
                    .vote(&t, claim, verdict.as_str(), reasons(verdict))
                    .await
            })
            .await
    }

    /// Gives a claimed slot back when stopped mid-thought, so it need not wait for the lease to expire.
    async fn release(&mut self, crew: &Crew, claim: &Claim) {
        let _ = self
            .session
            .call(&crew.api, &crew.rec, CallKind::Release, |t| async move {
                crew.api.release(&t, claim).await
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotcheck_simulation::demo::generate;

    #[test]
    fn think_time_stays_within_half_to_one_and_a_half_times_the_mean() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(think_time(0, &mut rng), Duration::ZERO);
        for _ in 0..1000 {
            let d = think_time(200, &mut rng);
            assert!(
                d >= Duration::from_millis(100) && d <= Duration::from_millis(300),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_listing_without_truth_is_answered_unsure() {
        let listings = generate(9, 2000);
        let truth = Truth::from_demo(&listings);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        assert_eq!(
            verdict_on(Profile::Careful, &truth, "unknown", &mut rng),
            Verdict::Unsure
        );
        let fake = listings
            .iter()
            .find(|d| d.counterfeit)
            .expect("a counterfeit among 2000");
        let id = fake.listing.listing_id.as_str();
        let answers: Vec<_> = (0..50)
            .map(|_| verdict_on(Profile::Careful, &truth, id, &mut rng))
            .collect();
        assert!(
            answers
                .iter()
                .filter(|v| **v == Verdict::Counterfeit)
                .count()
                > 40
        );
    }

    #[test]
    fn volunteers_of_the_same_seed_and_index_draw_the_same_numbers() {
        let draw = |seed, index: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(index);
            rng.random::<u64>()
        };
        assert_eq!(draw(7, 3), draw(7, 3));
        assert_ne!(draw(7, 3), draw(7, 4));
    }
}
