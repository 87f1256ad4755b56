//! The simulator's record of a fault run, which the checker holds against the
//! database: every granted claim, every vote acknowledged with `201`, the votes
//! whose outcome stayed unknown, and what the fencing probes came to.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

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

/// The two ways the run probes fencing (I4); each vote must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A vote on another volunteer's claim with that volunteer's live lease token.
    StolenToken,
    /// A vote with the caller's own token after its lease expired.
    ExpiredToken,
}

/// What one kind of fencing probe came to.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Probes {
    /// Votes sent.
    pub sent: u64,
    /// Their refusals by `<status> <code>` (`transport` when no answer came).
    pub refused: BTreeMap<String, u64>,
    /// Those accepted: each a vote counted without a live lease of the caller's.
    pub accepted: Vec<AckedVote>,
}

impl Probes {
    fn record(&mut self, answer: Result<AckedVote, String>) {
        self.sent += 1;
        match answer {
            Ok(breach) => self.accepted.push(breach),
            Err(key) => *self.refused.entry(key).or_default() += 1,
        }
    }
}

#[derive(Debug, Default)]
struct Entries {
    claims: u64,
    claimed_tasks: HashSet<String>,
    votes: HashSet<AckedVote>,
    acks: u64,
    /// (task, volunteer) pairs with an acknowledged vote, or one whose outcome stayed unknown.
    voted_or_unknown: HashSet<(String, String)>,
    abandoned: u64,
    released: u64,
    stolen: Probes,
    expired: Probes,
}

/// Everything the simulator saw, shared by every volunteer.
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

    /// Records a vote whose outcome stayed unknown (no attempt was answered).
    pub fn vote_unknown(&self, task_id: &str, volunteer: &str) {
        self.with(|e| {
            e.voted_or_unknown
                .insert((task_id.to_owned(), volunteer.to_owned()));
        });
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

    /// Whether `volunteer` may probe `task_id`: it has no vote there, so a
    /// `201` can only mean the probe's token was accepted.
    pub fn may_probe(&self, task_id: &str, volunteer: &str) -> bool {
        self.with(|e| {
            !e.voted_or_unknown
                .contains(&(task_id.to_owned(), volunteer.to_owned()))
        })
    }

    /// Records a probe's answer: `Ok` is a vote accepted without the caller's live lease.
    pub fn probed(&self, probe: Probe, answer: Result<AckedVote, String>) {
        self.with(|e| match probe {
            Probe::StolenToken => e.stolen.record(answer),
            Probe::ExpiredToken => e.expired.record(answer),
        });
    }

    /// The stolen-token and expired-token probes so far.
    pub fn probes(&self) -> (Probes, Probes) {
        self.with(|e| (e.stolen.clone(), e.expired.clone()))
    }

    /// Claims granted, distinct tasks claimed, `201` answers, distinct votes acknowledged.
    pub fn counts(&self) -> (u64, usize, u64, usize) {
        self.with(|e| (e.claims, e.claimed_tasks.len(), e.acks, e.votes.len()))
    }

    /// Claims abandoned, claims released.
    pub fn drops(&self) -> (u64, u64) {
        self.with(|e| (e.abandoned, e.released))
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
    fn repeated_acknowledgements_count_once_and_two_votes_for_one_pair_are_spotted() {
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
        ledger.probed(Probe::StolenToken, Err("409 lease_not_found".into()));
        ledger.probed(Probe::StolenToken, Ok(acked("t3", "v3", "b")));
        ledger.probed(Probe::ExpiredToken, Err("410 lease_expired".into()));
        let (stolen, expired) = ledger.probes();
        assert_eq!((stolen.sent, stolen.accepted.len()), (2, 1));
        assert_eq!(stolen.refused["409 lease_not_found"], 1);
        assert_eq!((expired.sent, expired.refused["410 lease_expired"]), (1, 1));
    }
}
