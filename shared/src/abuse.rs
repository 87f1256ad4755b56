//! Rules that stop a volunteer's votes from counting: too many wrong gold
//! answers, answering too fast to have looked, or voting in step with another
//! volunteer far more often than honest judgement explains (collusion).
//!
//! The first two are per-volunteer checks on counters the services keep; the
//! collusion search runs over a batch of votes.

use crate::aggregate::Verdict;
use crate::reliability::{Confusion, ReliabilityPrior};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::str::FromStr;
use thiserror::Error;

/// Why a volunteer's votes stopped counting. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AbuseReason {
    /// Their gold answers are clearly worse than the accuracy we require.
    LowGoldAccuracy,
    /// Too many of their recent votes came faster than anyone can judge a listing.
    TooFast,
}

impl AbuseReason {
    /// The reason as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            AbuseReason::LowGoldAccuracy => "low_gold_accuracy",
            AbuseReason::TooFast => "too_fast",
        }
    }
}

impl FromStr for AbuseReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low_gold_accuracy" => Ok(AbuseReason::LowGoldAccuracy),
            "too_fast" => Ok(AbuseReason::TooFast),
            other => Err(format!("unknown abuse reason {other:?}")),
        }
    }
}

/// Reads the stored name (for columns decoded with `#[sqlx(try_from = "String")]`).
impl TryFrom<String> for AbuseReason {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Gold answers of one truth class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldTally {
    /// Gold tasks of this class answered.
    pub answered: u32,
    /// Of which answered right ("unsure" is not right).
    pub correct: u32,
    /// Of which answered "unsure" (kept since the random-answer test; older
    /// tallies load with 0, which counts their unsure answers as wrong).
    #[serde(default)]
    pub unsure: u32,
}

/// What the abuse rules look at for one volunteer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolunteerStats {
    /// Gold answers on genuine listings.
    pub gold_genuine: GoldTally,
    /// Gold answers on counterfeit listings.
    pub gold_counterfeit: GoldTally,
    /// Real votes in the recent window the services keep.
    pub recent_votes: u32,
    /// Of which faster than [`AbusePolicy::fast_vote_secs`].
    pub recent_fast_votes: u32,
    /// Real (not gold) votes ever given, for the random-answer test.
    #[serde(default)]
    pub votes: u32,
    /// Of which "unsure".
    #[serde(default)]
    pub unsure_votes: u32,
}

impl VolunteerStats {
    /// Counts one gold answer.
    pub fn record_gold(&mut self, truth_counterfeit: bool, correct: bool) {
        let tally = if truth_counterfeit {
            &mut self.gold_counterfeit
        } else {
            &mut self.gold_genuine
        };
        tally.answered += 1;
        tally.correct += u32::from(correct);
    }

    /// Counts one gold answer with its verdict, so that "unsure" answers are
    /// told apart from wrong ones (the random-answer test needs them).
    pub fn record_gold_answer(&mut self, truth_counterfeit: bool, verdict: Verdict) {
        let right = if truth_counterfeit {
            Verdict::Counterfeit
        } else {
            Verdict::Genuine
        };
        self.record_gold(truth_counterfeit, verdict == right);
        if verdict == Verdict::Unsure {
            let tally = if truth_counterfeit {
                &mut self.gold_counterfeit
            } else {
                &mut self.gold_genuine
            };
            tally.unsure += 1;
        }
    }

    /// Counts one real vote: how often a volunteer says "unsure" is evidence
    /// of random answering even where the truth is not known.
    pub fn record_vote(&mut self, verdict: Verdict) {
        self.votes += 1;
        self.unsure_votes += u32::from(verdict == Verdict::Unsure);
    }

    /// All gold answers.
    pub fn gold_answered(&self) -> u32 {
        self.gold_genuine.answered + self.gold_counterfeit.answered
    }
}

/// Thresholds of the per-volunteer rules.
///
/// Gold accuracy is judged with Wald's sequential probability ratio test of
/// "right with probability `careful_accuracy`" against "right with probability
/// `spammer_accuracy`" ("unsure" counts as not right), run three times: on
/// genuine gold, on counterfeit gold and on both. The per-class tests catch a
/// volunteer who always gives the same verdict however the gold pool is mixed;
/// the pooled one catches random answers sooner. A volunteer is stopped when
/// any log-likelihood ratio reaches ln(1 / `false_stop_rate`). The ratios
/// depend only on the tallies, and each is a martingale for a careful
/// volunteer, so one at least that accurate is ever stopped with probability
/// at most 3 x `false_stop_rate` over their whole life (far less when more
/// accurate: under 1e-4 at 0.9). Accuracy below about 0.66 drifts toward a
/// stop. In the default simulation (`crowdsim`) random answers are stopped
/// after 6 to 24 gold answers and "always genuine" after 8 to 19.
///
/// With a [`RandomTest`] a fourth test runs on all gold answers: answers at
/// random (a third each of right, wrong and "unsure") against careful ones
/// (right `careful_right`, "unsure" `careful_unsure`). Random
/// answers say "unsure" far more often than careful reviewers do, so it stops
/// them after fewer gold answers; the bound on a careful volunteer becomes
/// 4 x `false_stop_rate`.
///
/// Defaults: careful 0.8, spammer 0.5, false-stop rate 0.005, at least 5 gold
/// answers, the random-answer test off; votes under 3 s are fast, and half of
/// at least 20 recent votes being fast stops a volunteer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AbusePolicy {
    /// No accuracy verdict before this many gold answers.
    pub min_gold_answers: u32,
    /// The per-class accuracy a careful volunteer has (the hypothesis kept).
    pub careful_accuracy: f64,
    /// The per-class accuracy of a spammer (the hypothesis that stops).
    pub spammer_accuracy: f64,
    /// Bound on the chance that one of the three tests ever stops a careful volunteer.
    pub false_stop_rate: f64,
    /// The fourth test, of answers at random over the three verdicts against
    /// careful ones on all gold answers pooled (`None`: off).
    #[serde(default)]
    pub random_test: Option<RandomTest>,
    /// A vote faster than this (seconds) is "fast".
    pub fast_vote_secs: f64,
    /// Stop when at least this share of recent votes is fast.
    pub fast_share: f64,
    /// No speed verdict before this many recent votes.
    pub min_votes_for_speed: u32,
}

impl Default for AbusePolicy {
    fn default() -> Self {
        AbusePolicy {
            min_gold_answers: 5,
            careful_accuracy: 0.8,
            spammer_accuracy: 0.5,
            false_stop_rate: 0.005,
            random_test: None,
            fast_vote_secs: 3.0,
            fast_share: 0.5,
            min_votes_for_speed: 20,
        }
    }
}

/// An abuse policy whose numbers cannot work.
#[derive(Debug, Clone, PartialEq, Error)]
#[error(
    "abuse policy: need 0 < spammer_accuracy < careful_accuracy < 1, 0 < false_stop_rate < 1 and 0 < fast_share <= 1"
)]
pub struct InvalidPolicy;

/// How many nats above the gold tests' bar the tests on a volunteer's whole
/// confusion estimate must reach ([`AbusePolicy::assess_with`]) in the
/// services and the crowd benchmark's new policy.
pub const SOFT_STOP_MARGIN: f64 = 2.0;

impl AbusePolicy {
    /// The rules the services run and the crowd benchmark's new policy met its
    /// targets with (`docs/crowd.md`), tuned for asymmetric volunteers: careful
    /// 0.75 against spammer 0.4 per class, a false-stop rate of 0.002, and the
    /// random-answer test expecting careful volunteers right 85% and "unsure"
    /// 5% of the time; the speed rule as by default.
    pub fn learned() -> Self {
        AbusePolicy {
            careful_accuracy: 0.75,
            spammer_accuracy: 0.4,
            false_stop_rate: 0.002,
            random_test: Some(RandomTest {
                careful_right: 0.85,
                careful_unsure: 0.05,
            }),
            ..AbusePolicy::default()
        }
    }

    /// Checks 0 < spammer_accuracy < careful_accuracy < 1, a random test with
    /// 1/3 < careful_right, 0 < careful_unsure and their sum < 1,
    /// 0 < false_stop_rate < 1 and 0 < fast_share <= 1.
    pub fn validate(&self) -> Result<(), InvalidPolicy> {
        let accuracies = 0.0 < self.spammer_accuracy
            && self.spammer_accuracy < self.careful_accuracy
            && self.careful_accuracy < 1.0
            && self.random_test.is_none_or(|r| {
                r.careful_unsure > 0.0
                    && r.careful_right > 1.0 / 3.0
                    && r.careful_right + r.careful_unsure < 1.0
            });
        let rate = 0.0 < self.false_stop_rate && self.false_stop_rate < 1.0;
        let share = 0.0 < self.fast_share && self.fast_share <= 1.0;
        if accuracies && rate && share {
            Ok(())
        } else {
            Err(InvalidPolicy)
        }
    }

    /// Whether a vote that took `secs` counts as fast.
    pub fn is_fast(&self, secs: f64) -> bool {
        secs < self.fast_vote_secs
    }

    /// The log-likelihood ratio, spammer over careful, of one class's tally.
    pub fn spammer_evidence(&self, tally: GoldTally) -> f64 {
        let (careful, spammer) = (self.careful_accuracy, self.spammer_accuracy);
        let wrong = f64::from(tally.answered - tally.correct.min(tally.answered));
        f64::from(tally.correct) * (spammer / careful).ln()
            + wrong * ((1.0 - spammer) / (1.0 - careful)).ln()
    }

    /// The log-likelihood ratio, random answers over careful ones, of all gold
    /// answers (right with `careful_right`, "unsure" with `careful_unsure` and
    /// wrong otherwise, against a third each) and of the real votes ("unsure"
    /// with `careful_unsure` against a third). 0 while the test is off.
    pub fn random_evidence(&self, stats: &VolunteerStats) -> f64 {
        let (g, c) = (stats.gold_genuine, stats.gold_counterfeit);
        let right = f64::from(g.correct + c.correct);
        let unsure = f64::from(g.unsure + c.unsure);
        let wrong = (f64::from(stats.gold_answered()) - right - unsure).max(0.0);
        let votes_unsure = f64::from(stats.unsure_votes.min(stats.votes));
        let votes_decisive = f64::from(stats.votes) - votes_unsure;
        self.random_ratio(right, wrong, unsure)
            + self.random_vote_ratio(votes_decisive, votes_unsure)
    }

    /// The random-answer test on real votes, whose truth is unknown: random
    /// answers are "unsure" a third of the time, careful ones `careful_unsure`.
    fn random_vote_ratio(&self, decisive: f64, unsure: f64) -> f64 {
        let Some(test) = self.random_test else {
            return 0.0;
        };
        let u = test.careful_unsure;
        if !(u > 0.0 && u < 1.0) {
            return 0.0;
        }
        unsure * ((1.0 / 3.0) / u).ln() + decisive * ((2.0 / 3.0) / (1.0 - u)).ln()
    }

    /// The random-answer test's log-likelihood ratio for these counts.
    fn random_ratio(&self, right: f64, wrong: f64, unsure: f64) -> f64 {
        let Some(test) = self.random_test else {
            return 0.0;
        };
        let (right_p, unsure_p) = (test.careful_right, test.careful_unsure);
        let wrong_p = 1.0 - right_p - unsure_p;
        if !(unsure_p > 0.0 && wrong_p > 0.0 && right_p > 0.0) {
            return 0.0;
        }
        let third = 1.0f64 / 3.0;
        right * (third / right_p).ln()
            + wrong * (third / wrong_p).ln()
            + unsure * (third / unsure_p).ln()
    }

    /// The strongest evidence of the tests that the volunteer is a spammer
    /// rather than careful (a log-likelihood ratio; stop at ln(1 /
    /// `false_stop_rate`)).
    pub fn spammer_log_ratio(&self, stats: &VolunteerStats) -> f64 {
        let genuine = self.spammer_evidence(stats.gold_genuine);
        let counterfeit = self.spammer_evidence(stats.gold_counterfeit);
        let random = if self.random_test.is_some() {
            self.random_evidence(stats)
        } else {
            f64::NEG_INFINITY
        };
        genuine
            .max(counterfeit)
            .max(genuine + counterfeit)
            .max(random)
    }

    /// [`AbusePolicy::spammer_log_ratio`]'s tests on a confusion estimate
    /// instead of gold tallies: its (fractional) right, wrong and unsure
    /// counts per truth class beyond `prior` (staff outcomes and agreement
    /// included). Softer evidence than gold, fit to steer where gold goes.
    pub fn confusion_log_ratio(&self, confusion: &Confusion, prior: &ReliabilityPrior) -> f64 {
        let base = Confusion::prior(prior).counts;
        let mut c = confusion.counts;
        for (row, base) in c.iter_mut().zip(base) {
            for (x, b) in row.iter_mut().zip(base) {
                *x = (*x - b).max(0.0);
            }
        }
        let (careful, spammer) = (self.careful_accuracy, self.spammer_accuracy);
        let class = |t: usize| {
            let right = c[t][t];
            let not_right = c[t][1 - t] + c[t][2];
            right * (spammer / careful).ln() + not_right * ((1.0 - spammer) / (1.0 - careful)).ln()
        };
        let (genuine, counterfeit) = (class(0), class(1));
        let random = if self.random_test.is_some() {
            self.random_ratio(c[0][0] + c[1][1], c[0][1] + c[1][0], c[0][2] + c[1][2])
        } else {
            f64::NEG_INFINITY
        };
        genuine
            .max(counterfeit)
            .max(genuine + counterfeit)
            .max(random)
    }

    /// [`AbusePolicy::assess`], and besides the gold tests the same tests on
    /// the volunteer's whole confusion estimate beyond `prior` (staff outcomes
    /// and agreement with confident decisions included), which must reach the
    /// bar plus `soft_margin` nats: softer evidence, so a higher bar. Still no
    /// verdict before `min_gold_answers` gold answers.
    pub fn assess_with(
        &self,
        stats: &VolunteerStats,
        confusion: &Confusion,
        prior: &ReliabilityPrior,
        soft_margin: f64,
    ) -> Option<AbuseReason> {
        let bar = (1.0 / self.false_stop_rate).ln() + soft_margin.max(0.0);
        if stats.gold_answered() >= self.min_gold_answers
            && self.confusion_log_ratio(confusion, prior) >= bar
        {
            return Some(AbuseReason::LowGoldAccuracy);
        }
        self.assess(stats)
    }

    /// Why this volunteer should stop counting, if they should.
    pub fn assess(&self, stats: &VolunteerStats) -> Option<AbuseReason> {
        let bar = (1.0 / self.false_stop_rate).ln();
        let evidence = self.spammer_log_ratio(stats);
        if stats.gold_answered() >= self.min_gold_answers && evidence >= bar {
            return Some(AbuseReason::LowGoldAccuracy);
        }
        let fast = f64::from(stats.recent_fast_votes);
        if stats.recent_votes >= self.min_votes_for_speed.max(1)
            && fast >= self.fast_share * f64::from(stats.recent_votes)
        {
            return Some(AbuseReason::TooFast);
        }
        None
    }
}

/// The careful side of the random-answer test (the random side says each
/// verdict a third of the time). Pooled over both classes, so `careful_right`
/// is a careful volunteer's overall share of right answers on gold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RandomTest {
    /// Share of right answers.
    pub careful_right: f64,
    /// Share of "unsure" answers.
    pub careful_unsure: f64,
}

/// Thresholds of the collusion search.
///
/// Honest, accurate volunteers agree a lot because the truth is shared, so
/// chance agreement is not judged from each one's overall mix of verdicts.
/// The null model is conditional independence given the task's consensus: for
/// each shared task, the consensus is the plurality verdict of the *other*
/// voters (the pair left out; ties and tasks with no one else are skipped),
/// and each volunteer's verdict distribution given a consensus is learned from
/// all their votes (leave-self-out consensus, add-one smoothed). Expected
/// agreement on the task is `sum_v P_a(v | c) P_b(v | c)`; over the shared
/// tasks the agreement count is compared with that Poisson-binomial mean by a
/// one-sided z-score. Honest pairs then score like standard normals (the
/// largest of 1,225 honest pairs in the tests is about 3.2), so `z` must cover
/// the number of pairs judged: about N * P(Z > z) honest pairs are flagged,
/// 0.3 per million at z = 5. Defaults: at least 20 shared tasks, z >= 5, and
/// at least 75% agreement; a task with more than 30 votes adds only its first 30 voters
/// (by worker id) to the pair count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CollusionParams {
    /// Pairs with fewer shared tasks (with a consensus) are not judged.
    pub min_shared: u32,
    /// Flag when agreement exceeds the null mean by this many standard deviations.
    pub z: f64,
    /// ... and the pair agrees on at least this share of shared tasks.
    pub min_agreement: f64,
    /// Voters per task considered for pairs (bounds the work per task).
    pub max_task_votes: usize,
}

impl Default for CollusionParams {
    fn default() -> Self {
        CollusionParams {
            min_shared: 20,
            z: 5.0,
            min_agreement: 0.75,
            max_task_votes: 30,
        }
    }
}

fn index(v: Verdict) -> usize {
    match v {
        Verdict::Genuine => 0,
        Verdict::Counterfeit => 1,
        Verdict::Unsure => 2,
    }
}

/// The unique plurality verdict of `counts`, if any.
fn plurality(counts: [u32; 3]) -> Option<usize> {
    let max = *counts.iter().max()?;
    let mut winners = (0..3).filter(|v| counts[*v] == max);
    let first = winners.next()?;
    (max > 0 && winners.next().is_none()).then_some(first)
}

fn without(mut counts: [u32; 3], votes: &[usize]) -> [u32; 3] {
    for v in votes {
        counts[*v] -= 1;
    }
    counts
}

#[derive(Default, Clone, Copy)]
struct PairTally {
    shared: u32,
    agreed: u32,
    expected: f64,
    variance: f64,
}

/// Groups of volunteers whose votes agree far beyond what independent judgement
/// explains, from `(task, worker, verdict)` votes (a worker's second vote on a
/// task is ignored). Each group is sorted, and so is the list; volunteers are
/// grouped when a chain of flagged pairs links them.
pub fn collusion_groups(votes: &[(u32, u32, Verdict)], params: &CollusionParams) -> Vec<Vec<u32>> {
    let mut sorted: Vec<(u32, u32, usize)> =
        votes.iter().map(|&(t, w, v)| (t, w, index(v))).collect();
    // Stable: of duplicate (task, worker) votes, the first one given stays first.
    sorted.sort_by_key(|&(t, w, _)| (t, w));
    sorted.dedup_by_key(|&mut (t, w, _)| (t, w));
    let tasks: Vec<&[(u32, u32, usize)]> = sorted.chunk_by(|a, b| a.0 == b.0).collect();
    let counts = |task: &[(u32, u32, usize)]| {
        task.iter().fold([0u32; 3], |mut c, &(_, _, v)| {
            c[v] += 1;
            c
        })
    };

    // Each worker's verdicts given the consensus of the others.
    let mut profile: HashMap<u32, [[f64; 3]; 3]> = HashMap::new();
    for task in &tasks {
        let all = counts(task);
        for &(_, w, v) in *task {
            if let Some(c) = plurality(without(all, &[v])) {
                profile.entry(w).or_insert([[1.0; 3]; 3])[c][v] += 1.0;
            }
        }
    }
    for rows in profile.values_mut() {
        for row in rows.iter_mut() {
            let total: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= total);
        }
    }

    let mut pairs: HashMap<(u32, u32), PairTally> = HashMap::new();
    for task in &tasks {
        let all = counts(task);
        let voters = &task[..task.len().min(params.max_task_votes)];
        for (i, &(_, a, va)) in voters.iter().enumerate() {
            for &(_, b, vb) in &voters[i + 1..] {
                let Some(c) = plurality(without(all, &[va, vb])) else {
                    continue;
                };
                let (Some(pa), Some(pb)) = (profile.get(&a), profile.get(&b)) else {
                    continue;
                };
                let p0: f64 = (0..3).map(|v| pa[c][v] * pb[c][v]).sum();
                let tally = pairs.entry((a, b)).or_default();
                tally.shared += 1;
                tally.agreed += u32::from(va == vb);
                tally.expected += p0;
                tally.variance += p0 * (1.0 - p0);
            }
        }
    }

    let mut groups = UnionFind::default();
    let mut flagged: Vec<(u32, u32)> = pairs
        .into_iter()
        .filter(|(_, t)| {
            let agreed = f64::from(t.agreed);
            t.shared >= params.min_shared
                && agreed >= params.min_agreement * f64::from(t.shared)
                && agreed - t.expected >= params.z * t.variance.sqrt()
        })
        .map(|(pair, _)| pair)
        .collect();
    flagged.sort_unstable();
    for (a, b) in flagged {
        groups.union(a, b);
    }
    groups.groups()
}

/// Disjoint sets over worker ids.
#[derive(Default)]
struct UnionFind {
    parent: HashMap<u32, u32>,
}

impl UnionFind {
    fn find(&mut self, x: u32) -> u32 {
        let parent = *self.parent.entry(x).or_insert(x);
        if parent == x {
            return x;
        }
        let root = self.find(parent);
        self.parent.insert(x, root);
        root
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent.insert(ra.max(rb), ra.min(rb));
        }
    }

    fn groups(mut self) -> Vec<Vec<u32>> {
        let members: Vec<u32> = self.parent.keys().copied().collect();
        let mut by_root: HashMap<u32, Vec<u32>> = HashMap::new();
        for m in members {
            let root = self.find(m);
            by_root.entry(root).or_default().push(m);
        }
        let mut groups: Vec<Vec<u32>> = by_root
            .into_values()
            .map(|mut g| {
                g.sort_unstable();
                g
            })
            .collect();
        groups.sort_unstable();
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn stats(genuine: (u32, u32), counterfeit: (u32, u32)) -> VolunteerStats {
        VolunteerStats {
            gold_genuine: GoldTally {
                answered: genuine.0,
                correct: genuine.1,
                unsure: 0,
            },
            gold_counterfeit: GoldTally {
                answered: counterfeit.0,
                correct: counterfeit.1,
                unsure: 0,
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_volunteer_who_always_says_genuine_is_stopped_on_counterfeit_gold() {
        let policy = AbusePolicy::default();
        policy.validate().unwrap();
        assert_eq!(policy.assess(&stats((6, 6), (5, 0))), None, "not yet sure");
        assert_eq!(
            policy.assess(&stats((6, 6), (6, 0))),
            Some(AbuseReason::LowGoldAccuracy)
        );
        assert_eq!(
            policy.assess(&stats((0, 0), (4, 0))),
            None,
            "too few answers"
        );
    }

    #[test]
    fn a_careful_volunteer_with_an_unlucky_start_keeps_counting() {
        let policy = AbusePolicy::default();
        assert_eq!(policy.assess(&stats((5, 2), (5, 3))), None);
        assert_eq!(policy.assess(&stats((40, 30), (40, 31))), None);
        assert_eq!(policy.assess(&stats((400, 300), (400, 330))), None);
    }

    #[test]
    fn random_answers_are_stopped_sooner_once_unsure_answers_are_told_apart() {
        let binary = AbusePolicy::default();
        let multi = AbusePolicy {
            random_test: Some(RandomTest {
                careful_right: 0.85,
                careful_unsure: 0.05,
            }),
            ..binary
        };
        multi.validate().unwrap();
        // Nine gold answers at random: three right, three wrong, three unsure.
        let mut s = VolunteerStats::default();
        for (truth, v) in [
            (false, Verdict::Genuine),
            (false, Verdict::Counterfeit),
            (false, Verdict::Unsure),
            (true, Verdict::Counterfeit),
            (true, Verdict::Genuine),
            (true, Verdict::Unsure),
            (false, Verdict::Unsure),
            (true, Verdict::Genuine),
            (false, Verdict::Genuine),
        ] {
            s.record_gold_answer(truth, v);
        }
        assert_eq!(s.gold_genuine.unsure + s.gold_counterfeit.unsure, 3);
        assert_eq!(binary.assess(&s), None);
        assert_eq!(multi.assess(&s), Some(AbuseReason::LowGoldAccuracy));
        // A careful volunteer who is unsure now and then is not.
        let mut careful = VolunteerStats::default();
        for i in 0..60 {
            let truth = i % 2 == 0;
            let v = match (i % 15, truth) {
                (0, _) => Verdict::Unsure,
                (7, true) => Verdict::Genuine,
                (_, true) => Verdict::Counterfeit,
                (_, false) => Verdict::Genuine,
            };
            careful.record_gold_answer(truth, v);
        }
        assert_eq!(multi.assess(&careful), None);
        assert!(multi.random_evidence(&careful) < -10.0);
        // Real votes count too: a third of them unsure is evidence of random
        // answers, hardly ever unsure is evidence against.
        let before = multi.random_evidence(&careful);
        let mut guessing = careful;
        let mut steady = careful;
        for i in 0..30 {
            guessing.record_vote([Verdict::Genuine, Verdict::Counterfeit, Verdict::Unsure][i % 3]);
            steady.record_vote(Verdict::Genuine);
        }
        assert!(multi.random_evidence(&guessing) > before + 5.0);
        assert!(multi.random_evidence(&steady) < before);
    }

    #[test]
    fn inconsistent_policies_are_refused() {
        let base = AbusePolicy::default();
        for bad in [
            AbusePolicy {
                spammer_accuracy: 0.9,
                ..base
            },
            AbusePolicy {
                careful_accuracy: 1.0,
                ..base
            },
            AbusePolicy {
                false_stop_rate: 0.0,
                ..base
            },
            AbusePolicy {
                fast_share: 0.0,
                ..base
            },
            AbusePolicy {
                random_test: Some(RandomTest {
                    careful_right: 0.9,
                    careful_unsure: 0.2,
                }),
                ..base
            },
        ] {
            assert_eq!(bad.validate(), Err(InvalidPolicy), "{bad:?}");
        }
    }

    #[test]
    fn mostly_fast_voting_is_stopped_only_after_enough_votes() {
        let policy = AbusePolicy::default();
        assert!(policy.is_fast(1.0) && !policy.is_fast(3.0));
        let fast = |votes, fast| VolunteerStats {
            recent_votes: votes,
            recent_fast_votes: fast,
            ..Default::default()
        };
        assert_eq!(policy.assess(&fast(10, 10)), None);
        assert_eq!(policy.assess(&fast(20, 9)), None);
        assert_eq!(policy.assess(&fast(20, 10)), Some(AbuseReason::TooFast));
    }

    #[test]
    fn reasons_are_stored_under_stable_names() {
        for r in [AbuseReason::LowGoldAccuracy, AbuseReason::TooFast] {
            assert_eq!(r.as_str().parse::<AbuseReason>(), Ok(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }

    fn honest(rng: &mut ChaCha8Rng, accuracy: f64, truth: Verdict) -> Verdict {
        let wrong = if truth == Verdict::Genuine {
            Verdict::Counterfeit
        } else {
            Verdict::Genuine
        };
        let x: f64 = rng.random();
        if x < accuracy {
            truth
        } else if x < accuracy + 0.03 {
            Verdict::Unsure
        } else {
            wrong
        }
    }

    /// 50 honest volunteers of 80-95% accuracy, 7 votes per task; with
    /// colluders, two more (ids 1000 and 1001) join every third task, the
    /// first answering at random and the second copying.
    fn crowd(seed: u64, tasks: u32, with_colluders: bool) -> Vec<(u32, u32, Verdict)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let accuracy: Vec<f64> = (0..50).map(|_| rng.random_range(0.80..0.95)).collect();
        let mut votes = Vec::new();
        for t in 0..tasks {
            let truth = if rng.random_bool(0.1) {
                Verdict::Counterfeit
            } else {
                Verdict::Genuine
            };
            let mut chosen = Vec::new();
            while chosen.len() < 7 {
                let w = rng.random_range(0..50u32);
                if !chosen.contains(&w) {
                    chosen.push(w);
                }
            }
            for w in chosen {
                votes.push((t, w, honest(&mut rng, accuracy[w as usize], truth)));
            }
            if with_colluders && t % 3 == 0 {
                let random = [Verdict::Genuine, Verdict::Counterfeit, Verdict::Unsure]
                    [rng.random_range(0..3)];
                votes.push((t, 1000, random));
                votes.push((t, 1001, random));
            }
        }
        votes
    }

    #[test]
    fn two_volunteers_copying_random_answers_are_grouped_and_honest_ones_are_not() {
        for seed in 0..3 {
            let groups = collusion_groups(&crowd(seed, 3000, true), &CollusionParams::default());
            assert_eq!(groups, vec![vec![1000, 1001]], "seed {seed}");
        }
    }

    #[test]
    fn fifty_honest_volunteers_of_80_to_95_percent_accuracy_are_never_flagged() {
        for seed in 10..13 {
            let groups = collusion_groups(&crowd(seed, 3000, false), &CollusionParams::default());
            assert!(groups.is_empty(), "seed {seed}: {groups:?}");
        }
    }

    #[test]
    fn the_order_of_votes_does_not_change_the_groups() {
        let mut votes = crowd(5, 600, true);
        let first = collusion_groups(&votes, &CollusionParams::default());
        votes.reverse();
        assert_eq!(first, collusion_groups(&votes, &CollusionParams::default()));
    }
}
